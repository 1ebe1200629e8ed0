"""Benchmark of the sweep on the demo: ASHA against FIFO for the same trials, and where time goes.

    python bench/sweep.py [key=value ...]     (overrides go to both sweeps; default out: runs/bench)

Defaults: task=pair and training.patience=0 (so FIFO really trains every epoch). On the demo,
the span task's validation F1 sits at the no-answer rate after one epoch for almost any config,
so every trial ties and ASHA has nothing to stop; the pair task's F1 separates configs.

Runs ``python -m sweep.run`` twice as a user would (a fresh local Ray each time, same seed, so the
same first proposals), once with sweep.scheduler=asha and once with fifo, then prints for each:
total epochs trained, wall time, best validation metric, time from the command to the first
trial result, time the controller spent preparing and sharing features, and the trials' summed
training time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

DEFAULTS = ["task=pair", "training.patience=0"]


def run_sweep(scheduler: str, out: Path, overrides: list[str]) -> dict:
    cmd = [sys.executable, "-m", "sweep.run", f"out_dir={out}", f"sweep.scheduler={scheduler}",
           "sweep.verbose=0", *overrides]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("RAY_ADDRESS", None)
    shutil.rmtree(out, ignore_errors=True)  # the bench's own output: a fresh sweep each time
    started = time.time()
    with (out.parent / f"{scheduler}.log").open("w") as log:
        code = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.time() - started
    if code != 0:
        raise SystemExit(f"{scheduler} sweep failed ({code}); see {out.parent / f'{scheduler}.log'}")
    summary = json.loads((out / "summary.json").read_text())
    timings = json.loads((out / "timings.json").read_text())
    return {
        "scheduler": scheduler,
        "trials": summary["num_trials"],
        "epochs": summary["total_epochs"],
        "wall_s": wall,
        "best": summary["best"]["metric"] if summary["best"] else float("nan"),
        "first_result_s": timings["first_result_at"] - started,
        "features_s": timings["prepare_s"] + timings["put_s"],
        "put_s": timings["put_s"],
        "variants": timings["variants"],
        "train_s": sum(t["time_s"] for t in summary["trials"]),
        "stopped": summary["counts"],
    }


def main(argv: list[str]) -> None:
    out_root = Path(next((a.split("=", 1)[1] for a in argv if a.startswith("out_dir=")), "runs/bench"))
    overrides = DEFAULTS + [a for a in argv if not a.startswith("out_dir=")]  # later overrides win
    out_root.mkdir(parents=True, exist_ok=True)
    rows = [run_sweep(s, (out_root / s).resolve(), overrides) for s in ("asha", "fifo")]
    head = f"{'scheduler':<9} {'trials':>6} {'epochs':>6} {'wall s':>7} {'best':>8} {'1st result s':>12} " \
           f"{'features s':>10} {'(put s)':>8} {'trials train s':>14}  stopped"
    print(head)
    for r in rows:
        print(f"{r['scheduler']:<9} {r['trials']:>6} {r['epochs']:>6} {r['wall_s']:>7.1f} {r['best']:>8.4f} "
              f"{r['first_result_s']:>12.1f} {r['features_s']:>10.2f} {r['put_s']:>8.3f} {r['train_s']:>14.1f}"
              f"  {r['stopped']}")
    asha, fifo = rows
    print(f"ASHA trained {asha['epochs']} epochs vs {fifo['epochs']} for FIFO "
          f"({1 - asha['epochs'] / max(fifo['epochs'], 1):.0%} fewer) in {asha['wall_s']:.0f} s vs "
          f"{fifo['wall_s']:.0f} s; best {asha['best']:.4f} vs {fifo['best']:.4f}. "
          f"Features ({asha['variants']} variants) took {asha['features_s']:.1f} s of the controller's time; "
          f"the trials trained for {asha['train_s']:.0f} s in total.")
    (out_root / "bench.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])

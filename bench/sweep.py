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

    python bench/sweep.py --job [key=value ...]

Time to the first trial result of a sweep submitted as a job, beside the same sweep run as a
command, in one run: ``python -m sweep.run`` (a fresh local Ray), then a local head started as a
cluster node starts (``ray start --head``, own ports and temp dir, token authentication) and
``ray job submit --working-dir . -- python -m sweep.run ...`` to it, both with sweep.scheduler=asha
and the same cache_dir. Each is timed from its command (``python`` / ``ray job submit``) to the
driver's start and to the first result (``timings.json``); the head's own start-up is printed
apart, not counted. The head and every process it started are SIGKILLed by process group at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

DEFAULTS = ["task=pair", "training.patience=0"]
REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")
HEAD_START_S = 120
JOB_S = 1200


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
    return figures(scheduler, out, started, wall)


def figures(name: str, out: Path, started: float, wall: float) -> dict:
    """What one finished sweep in ``out`` took, from ``started`` (the wall clock at its command)."""
    summary = json.loads((out / "summary.json").read_text())
    timings = json.loads((out / "timings.json").read_text())
    return {
        "scheduler": name,
        "trials": summary["num_trials"],
        "epochs": summary["total_epochs"],
        "wall_s": wall,
        "best": summary["best"]["metric"] if summary["best"] else float("nan"),
        "driver_s": timings["started_at"] - started,
        "first_result_s": timings["first_result_at"] - started,
        "features_s": timings["prepare_s"] + timings["put_s"],
        "put_s": timings["put_s"],
        "variants": timings["variants"],
        "train_s": sum(t["time_s"] for t in summary["trials"]),
        "stopped": summary["counts"],
    }


# ---------------------------------------------------------------- --job: a sweep submitted to a local head


def client_env(temp: str) -> dict[str, str]:
    """A shell that talks to the token-authenticated head: its token is a file of its own in the head's
    temp dir (``ray start --head`` with token auth needs one; ~/.ray/auth_token is left alone)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
    return {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(Path(temp) / "auth_token"),
            "HF_HUB_OFFLINE": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"}


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def start_head(temp: str, log: Path) -> tuple[subprocess.Popen, str, float]:
    """``ray start --head --block`` in a session of its own; (process, dashboard URL, start-up s)."""
    (Path(temp) / "auth_token").write_text(secrets.token_hex(32))  # as `ray get-auth-token --generate` makes
    gcs, dashboard, client, agent = free_ports(4)
    started = time.time()
    proc = subprocess.Popen(
        [RAY, "start", "--head", f"--port={gcs}", f"--dashboard-port={dashboard}",
         f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}", "--num-cpus=2",
         f"--temp-dir={temp}", "--block"],
        env=client_env(temp), stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{dashboard}"
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/version", timeout=5)
            break
        except urllib.error.HTTPError:  # it answers (401 without the token): up
            break
        except OSError:
            if proc.poll() is not None or time.time() - started > HEAD_START_S:
                stop_head(proc, temp)
                raise SystemExit(f"the head did not start; see {log}") from None
            time.sleep(1)
    return proc, url, time.time() - started


def stop_head(proc: subprocess.Popen, temp: str) -> None:
    """SIGKILL the head's process group: ``ray start`` and every process it started (see RAY-NOTES)."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    shutil.rmtree(temp, ignore_errors=True)


def run_job(url: str, temp: str, out: Path, overrides: list[str]) -> dict:
    """``ray job submit --working-dir . -- python -m sweep.run ...`` (README), waiting for its end."""
    cmd = [RAY, "job", "submit", "--address", url, "--working-dir", ".", "--", "python", "-m", "sweep.run",
           f"out_dir={out}", "sweep.scheduler=asha", "sweep.verbose=0", *overrides]
    shutil.rmtree(out, ignore_errors=True)
    log = out.parent / "job.log"
    started = time.time()
    with log.open("w") as f:
        subprocess.run(cmd, env=client_env(temp), cwd=REPO, stdout=f, stderr=subprocess.STDOUT, timeout=JOB_S)
    wall = time.time() - started
    if not (out / "summary.json").is_file():
        raise SystemExit(f"the job's sweep did not finish; see {log}")
    return figures("job", out, started, wall)


def job_main(out_root: Path, overrides: list[str]) -> None:
    if not any(a.startswith("cache_dir=") for a in overrides):  # the job's cwd is a copy of the repo
        overrides = overrides + [f"cache_dir={Path('.cache/redsm5_sweep').resolve()}"]
    local = run_sweep("asha", (out_root / "local").resolve(), overrides)
    temp = tempfile.mkdtemp(prefix="rb-", dir="/tmp")  # short: Ray's unix socket paths are length-limited
    proc, url, head_s = start_head(temp, out_root / "head.log")
    try:
        job = run_job(url, temp, (out_root / "job").resolve(), overrides)
    finally:
        stop_head(proc, temp)
    print(f"{'how':<20} {'to driver s':>11} {'1st result s':>12} {'wall s':>7} {'trials':>6} {'epochs':>6}")
    for name, r in (("python -m sweep.run", local), ("ray job submit", job)):
        print(f"{name:<20} {r['driver_s']:>11.1f} {r['first_result_s']:>12.1f} {r['wall_s']:>7.1f} "
              f"{r['trials']:>6} {r['epochs']:>6}")
    print(f"First trial result {job['first_result_s']:.1f} s after `ray job submit` vs "
          f"{local['first_result_s']:.1f} s after `python -m sweep.run` "
          f"({job['first_result_s'] / local['first_result_s']:.2f}x); the head was up before the submit "
          f"(its start-up, {head_s:.1f} s, is not counted).")
    (out_root / "bench_job.json").write_text(json.dumps({"local": local, "job": job, "head_start_s": head_s},
                                                        indent=1))


def main(argv: list[str]) -> None:
    out_root = Path(next((a.split("=", 1)[1] for a in argv if a.startswith("out_dir=")), "runs/bench"))
    overrides = DEFAULTS + [a for a in argv if not a.startswith("out_dir=") and a != "--job"]  # later ones win
    out_root.mkdir(parents=True, exist_ok=True)
    if "--job" in argv:
        return job_main(out_root, overrides)
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

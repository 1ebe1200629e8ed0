"""Benchmark of the search on the demo: the product against what a user has without it.

    python bench/sweep.py [--seeds N [--reuse]] [key=value ...]   (overrides go to every sweep; out: runs/bench)

For each seed, three ``python -m sweep.run`` on the demo with the same number of trials, as a user
would run them (a fresh local Ray each): the product (seeded TPE + ASHA, its defaults), random
search + FIFO and TPE + FIFO (``training.patience=0``: every trial trains every epoch). It prints
for each: the best validation metric (mean and spread over seeds), epochs trained, wall time, and
the epochs it took until the best so far came within 0.01 of the sweep's final best (trials in
creation order, each trial's epochs read from the sweep's Optuna study); ``--reuse`` takes the
figures of an earlier run's sweeps that are still in place (delete one to run it again). From the FIFO sweeps,
whose trials all run to the end, it prints how well a rung ranks the trials against their final
best (Spearman): the best metric so far at the rung (what ASHA compares) and the epoch's own.

    python bench/sweep.py --startup [key=value ...]

Where a trial's start-up goes: the same sequential sweep (3 trials of 3 epochs, one at a time) with each
one-worker trial training in its own process (``sweep.in_process=true``) and through a Ray Train worker
group (``false``); per way, the first result's time split into what came before the loop, the loop's
setup and one epoch (``startup_phases``).

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

DEFAULTS = ["task=pair"]
ARMS = {  # name -> the overrides that make it
    "tpe+asha": ["sweep.searcher=tpe", "sweep.scheduler=asha"],
    "random+fifo": ["sweep.searcher=random", "sweep.scheduler=fifo", "training.patience=0"],
    "tpe+fifo": ["sweep.searcher=tpe", "sweep.scheduler=fifo", "training.patience=0"],
}
WITHIN = 0.01
RUNG_METRIC = "roc_auc"  # what the sweep's ASHA compares on pair by default (sweep.config.RUNG_METRIC)
STARTUP = {  # --startup: how a trial trains (sweep.in_process), in sequential sweeps of the same trials
    "in-process": ["sweep.in_process=true"],
    "worker-group": ["sweep.in_process=false"],
}
STARTUP_RUN = ["sweep.num_samples=3", "training.epochs=3", "training.patience=0", "sweep.max_concurrent=1",
               "sweep.scheduler=fifo", "sweep.final_test=false"]
REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")
HEAD_START_S = 120
JOB_S = 1200


def run_sweep(scheduler: str, out: Path, overrides: list[str]) -> dict:
    """``scheduler`` names the run (an ARMS or STARTUP key, or asha/fifo); ``overrides`` come after it and win."""
    arm = {**ARMS, **STARTUP}.get(scheduler, [f"sweep.scheduler={scheduler}"])
    cmd = [sys.executable, "-m", "sweep.run", f"out_dir={out}", *arm, "sweep.verbose=0", *overrides]
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
    """SIGKILL the head's process group: ``ray start`` and every process it started (SIGTERM to
    ``ray start --block`` leaves its processes running)."""
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


def curves(out: Path) -> list[list[float]]:
    """Each search trial's metric per epoch, in creation order, from the sweep's Optuna study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{out / 'study.db'}"
    study = optuna.load_study(study_name=f"{out.name}/search", storage=url)
    return [[t.intermediate_values[e] for e in sorted(t.intermediate_values)] for t in study.trials]


def epochs_to_best(trials: list[list[float]], final_best: float) -> int:
    """Epochs trained (trials in creation order) until the best so far came within WITHIN of final_best."""
    spent = 0
    for curve in trials:
        for value in curve:
            spent += 1
            if value >= final_best - WITHIN:
                return spent
    return spent


def spearman(a: list[float], b: list[float]) -> float:
    import pandas as pd

    return float(pd.Series(a).corr(pd.Series(b), method="spearman"))


def rung_curves(out: Path, key: str) -> list[list[float]]:
    """Each search trial's ``key`` (a result's ``val_*``) per epoch, in creation order, from Tune's result.json
    (read here, not through the sweep package: this script's name hides it from its imports)."""
    return [[json.loads(line)[key] for line in (t / "result.json").read_text().splitlines()]
            for t in sorted((out / "search").glob("trial_*"))]


def rank_correlations(fifo: list[tuple[list[list[float]], list[list[float]]]]) -> list[tuple[int, ...]]:
    """(rung epoch, Spearman against the final best metric of: the metric's best so far, the epoch's own
    metric, the rung metric's best so far), over the trials of every FIFO sweep (``fifo``: each sweep's
    metric curves and rung-metric curves; each sweep's trials ranked within it, then averaged)."""
    out = []
    longest = min(len(c) for trials, _ in fifo for c in trials)
    for rung in range(1, longest):
        so_far, own, rung_so_far = [], [], []
        for trials, rung_values in fifo:
            final = [max(c) for c in trials]
            so_far.append(spearman([max(c[:rung]) for c in trials], final))
            own.append(spearman([c[rung - 1] for c in trials], final))
            rung_so_far.append(spearman([max(c[:rung]) for c in rung_values], final))
        out.append((rung, *(sum(x) / len(x) for x in (so_far, own, rung_so_far))))
    return out


def compare_main(out_root: Path, overrides: list[str], seeds: list[int], reuse: bool = False) -> None:
    rung_metric = next((o.split("=", 1)[1] for o in reversed(overrides) if o.startswith("sweep.rung_metric=")),
                       RUNG_METRIC)
    rows: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    saved_path = out_root / "bench_search.json"
    saved = json.loads(saved_path.read_text()) if reuse and saved_path.is_file() else {}
    fifo_curves = []
    for seed in seeds:
        for arm in ARMS:
            out = (out_root / f"{arm}-s{seed}").resolve()
            kept = saved.get(arm, [])
            if reuse and (out / "summary.json").is_file() and seed < len(kept):
                row = kept[seed]  # --reuse: a sweep of an earlier run, still in place (delete it to run it again)
            else:
                row = run_sweep(arm, out, [*overrides, f"seed={seed}"])
            trials = curves(out)
            row["to_best"] = epochs_to_best(trials, row["best"])
            rows[arm].append(row)
            if arm.endswith("fifo"):
                fifo_curves.append((trials, rung_curves(out, f"val_{rung_metric}")))
            print(f"seed {seed} {arm}: best {row['best']:.4f}, {row['epochs']} epochs, {row['wall_s']:.0f} s",
                  flush=True)
    print(f"\n{len(seeds)} seed(s), {rows['tpe+asha'][0]['trials']} trials each")
    print(f"{'search':<12} {'best (mean)':>11} {'min..max':>15} {'epochs':>7} {'wall s':>7} {'epochs to best':>14}")
    mean = lambda rs, k: sum(r[k] for r in rs) / len(rs)  # noqa: E731
    for arm, rs in rows.items():
        bests = [r["best"] for r in rs]
        print(f"{arm:<12} {mean(rs, 'best'):>11.4f} {min(bests):>7.4f}..{max(bests):.4f} {mean(rs, 'epochs'):>7.1f} "
              f"{mean(rs, 'wall_s'):>7.0f} {mean(rs, 'to_best'):>14.1f}")
    product, baseline = rows["tpe+asha"], rows["random+fifo"]
    print(f"TPE + ASHA vs random + FIFO: best {mean(product, 'best'):.4f} vs {mean(baseline, 'best'):.4f} at "
          f"{mean(product, 'epochs') / mean(baseline, 'epochs'):.2f} of its epochs and "
          f"{mean(product, 'wall_s') / mean(baseline, 'wall_s'):.2f} of its wall time")
    print("rank correlation (Spearman) with the final best metric, FIFO trials:")
    print(f"{'rung epoch':>10} {'metric: best so far':>19} {'epoch value':>11} {rung_metric + ': best so far':>24}")
    for rung, so_far, own, rung_so_far in rank_correlations(fifo_curves):
        print(f"{rung:>10} {so_far:>19.3f} {own:>11.3f} {rung_so_far:>24.3f}")
    (out_root / "bench_search.json").write_text(json.dumps(rows, indent=1))


def startup_phases(out: Path) -> dict[str, float]:
    """Where a trial's time before its first result goes, averaged over the sweep's trials: the loop's own
    setup (``setup_s``: features from the object store, model, optimizer), an epoch (the median of the
    later ones, from Tune's ``time_this_iter_s``) and the rest of the first result's time, spent before
    the loop began (the trial's process, and for a worker group its controller, placement group and worker)."""
    from statistics import fmean, median

    # Tune's own result.json, read here: this script's name hides the sweep package from its imports
    runs = [[json.loads(line) for line in (t / "result.json").read_text().splitlines()]
            for t in sorted((out / "search").glob("trial_*"))]
    first = fmean(r[0]["time_this_iter_s"] for r in runs)
    epoch = fmean(median(x["time_this_iter_s"] for x in r[1:]) for r in runs)
    setup = fmean(r[0]["setup_s"] for r in runs)
    return {"first_result_s": first, "before_loop_s": first - setup - epoch, "setup_s": setup, "epoch_s": epoch}


def startup_main(out_root: Path, overrides: list[str]) -> None:
    """Both ways a one-worker trial trains, one trial at a time (nothing else competes for the CPUs)."""
    print(f"{'trial':<13} {'first result s':>14} {'before loop s':>13} {'setup s':>8} {'epoch s':>8} {'wall s':>7}")
    for name in STARTUP:
        out = (out_root / f"startup-{name}").resolve()
        wall = run_sweep(name, out, [*overrides, *STARTUP_RUN])["wall_s"]
        p = startup_phases(out)
        print(f"{name:<13} {p['first_result_s']:>14.1f} {p['before_loop_s']:>13.1f} {p['setup_s']:>8.1f} "
              f"{p['epoch_s']:>8.1f} {wall:>7.0f}", flush=True)


FLAGS = ("--seeds", "--reuse", "--startup", "--job")


def main(argv: list[str]) -> None:
    if {"-h", "--help"} & set(argv):
        return print(__doc__)
    unknown = [a for a in argv if a.startswith("-") and a not in FLAGS]
    if unknown:
        print(f"bench/sweep.py: unknown option {unknown[0]} (flags: {', '.join(FLAGS)}; "
              "anything else is a key=value override of every sweep)", file=sys.stderr)
        raise SystemExit(2)
    out_root = Path(next((a.split("=", 1)[1] for a in argv if a.startswith("out_dir=")), "runs/bench"))
    seeds = int(argv[argv.index("--seeds") + 1]) if "--seeds" in argv else 0
    flags = {"--job", "--startup", "--seeds", "--reuse", str(seeds)} if seeds else {"--job", "--startup"}
    overrides = DEFAULTS + [a for a in argv if not a.startswith("out_dir=") and a not in flags]  # later ones win
    out_root.mkdir(parents=True, exist_ok=True)
    if "--job" in argv:
        return job_main(out_root, overrides)
    if "--startup" in argv:
        return startup_main(out_root, overrides)
    if seeds:
        return compare_main(out_root, overrides, list(range(seeds)), reuse="--reuse" in argv)
    rows = [run_sweep(s, (out_root / s).resolve(), overrides + ["training.patience=0"]) for s in ("asha", "fifo")]
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

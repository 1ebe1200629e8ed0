"""A local Ray that dies with its sweep driver, however the driver ends (``kill -9`` included).

``ray.init`` without an address starts a Ray of its own and ties the processes it starts itself
(GCS, raylet, dashboard, log monitor) to the driver: the kernel kills them when the driver dies.
What the raylet starts is not tied to the driver. Measured here (Ray 2.60, a 2-trial demo sweep,
driver SIGKILLed mid-trial): GCS, raylet and dashboard went at once, the 16 worker processes
(trial drivers, Train controllers and workers, helper actors) within 2.5 s, re-parented to init,
but the dashboard agent and the runtime-env agent lived on for another 62 s.

So right after ``connect()`` starts a local Ray, the driver starts this watchdog,
``python -m raycluster.reaper DRIVER_PID SESSION_DIR``, in a session of its own. It sleeps until its
parent, the driver, is gone (its parent pid changes), then ends every process of that Ray session
still alive: SIGTERM, then SIGKILL after ``GRACE_S``; then it exits. A process belongs to the
session when the driver had it among its descendants (recorded every few seconds while the driver
lived), or when its command line names the session directory or it holds a file open under it
(every Ray process writes its logs there; Ray's workers rename themselves ``ray::...``, so their
command line says nothing). Only processes of this user are looked at. After a normal exit
Ray has already stopped them all, and the watchdog finds nothing and exits.

It never runs for a cluster the driver joined (``RAY_ADDRESS``, or a ``ray start`` head on this
machine): those processes are not the driver's children, so no session of ours is found.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

POLL_S = 1.0  # how often the watchdog looks at its parent
SNAPSHOT_EVERY = 3  # and every this many looks, at the driver's descendants
GRACE_S = 5.0  # SIGTERM, then SIGKILL for what is still alive after this
SETTLE_S = 15.0  # keep looking this long for what the raylet started just before it died
SESSION_FLAGS = ("--session_dir=", "--session-dir=")  # how Ray passes it to the raylet, the log monitor, ...
_STARTED: set[str] = set()  # session dirs guarded by this process: one watchdog each


def _psutil():
    """psutil: Ray ships its own copy, importable once ``ray`` is imported."""
    try:
        import psutil
    except ImportError:
        import importlib

        importlib.import_module("ray")  # puts ray/thirdparty_files on sys.path
        psutil = importlib.import_module("psutil")
    return psutil


def own_session_dir() -> str | None:
    """The session dir of a Ray this process started itself (its raylet is our child), else None."""
    psutil = _psutil()
    for child in psutil.Process().children():
        try:
            args = child.cmdline()
        except psutil.Error:  # it ended meanwhile
            continue
        for arg in args:
            if arg.startswith(SESSION_FLAGS):
                return arg.split("=", 1)[1]
    return None


def guard_local_ray() -> subprocess.Popen | None:
    """Start the watchdog for the local Ray this driver started; None when it joined a cluster.

    Call it after ``ray.init``. The watchdog inherits only stdin/stdout/stderr (Popen closes the
    rest), so it never holds the run directory's lock.
    """
    session = own_session_dir()
    if session is None or session in _STARTED:
        return None
    _STARTED.add(session)
    psutil_dir = os.path.dirname(os.path.dirname(_psutil().__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [psutil_dir, os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "raycluster.reaper", str(os.getpid()), session], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)


def session_processes(session_dir: str) -> list:
    """This user's processes whose command line or open files point into ``session_dir``."""
    psutil = _psutil()
    inside = re.compile(re.escape(session_dir.rstrip("/")) + r"(?![\w.-])")  # not session_..._1234 for _123
    found, me, uid = [], os.getpid(), os.getuid()
    for p in psutil.process_iter():
        try:
            if p.pid == me or p.uids().real != uid:
                continue
            if any(inside.search(x) for x in p.cmdline()) or any(inside.search(f.path) for f in p.open_files()):
                found.append(p)
        except psutil.Error:
            continue
    return found


def descendants(pid: int) -> dict[int, object]:
    psutil = _psutil()
    try:
        return {p.pid: p for p in psutil.Process(pid).children(recursive=True) if p.pid != os.getpid()}
    except psutil.Error:
        return {}


def stop(procs: list) -> list[str]:
    """SIGTERM, then SIGKILL after GRACE_S; the names of those that were alive."""
    psutil = _psutil()
    names = []
    for p in procs:
        try:
            names.append(p.name())
            p.terminate()  # psutil checks the pid is still the same process (its create time)
        except psutil.Error:
            continue
    _, alive = psutil.wait_procs(procs, timeout=GRACE_S)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    return names


def reap(session_dir: str, recorded: dict[int, object]) -> list[str]:
    """End what is left of the session: the recorded descendants, then whatever points into the
    session dir, until two looks in a row find nothing (at most SETTLE_S)."""
    stopped = stop([p for p in recorded.values() if alive(p)])
    deadline, quiet = time.monotonic() + SETTLE_S, 0
    while quiet < 2 and time.monotonic() < deadline:
        time.sleep(POLL_S)
        found = [p for p in session_processes(session_dir) if alive(p)]
        quiet = 0 if found else quiet + 1
        stopped += stop(found)
    return stopped


def alive(p) -> bool:
    psutil = _psutil()
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def watch(driver_pid: int, session_dir: str) -> None:
    recorded: dict[int, object] = {}
    polls = 0
    while os.getppid() == driver_pid:  # re-parented (to init or a subreaper) once the driver is gone
        if polls % SNAPSHOT_EVERY == 0:  # none once the driver has died: keep the last ones then
            recorded = descendants(driver_pid) or recorded
        polls += 1
        time.sleep(POLL_S)
    stopped = reap(session_dir, recorded)
    if stopped:
        try:
            print(f"raycluster.reaper: the sweep driver (pid {driver_pid}) has ended; stopped {len(stopped)} "
                  f"leftover process(es) of its local Ray {session_dir}: {', '.join(sorted(set(stopped)))}",
                  file=sys.stderr, flush=True)
        except OSError:  # the driver's terminal or log is gone
            pass


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m raycluster.reaper", description=(
        "The watchdog a sweep driver starts beside the local Ray it started: once the driver is gone, end "
        "what is left of that Ray session. Started by the driver (raycluster.reaper.guard_local_ray), not by hand."))
    parser.add_argument("driver_pid", type=int, help="the sweep driver's pid (this process's parent)")
    parser.add_argument("session_dir", help="the local Ray's session directory (/tmp/ray/session_...)")
    args = parser.parse_args()
    watch(args.driver_pid, args.session_dir)

"""The local provider's processes (a training worker, a model server): who they are, so that `down`
signals only the very process a run started — a pid alone is reused, and any imgcls process says
"imgcls" in its command line."""
from __future__ import annotations

import os
import signal
import time

import psutil


def identity(pid: int, argv: list[str] | None = None) -> dict:
    """What the ledger records of a process we started: pid, start time and command line (`argv` as we
    launched it: right after the fork the child may not have exec'd it yet)."""
    proc = psutil.Process(pid)
    return {"pid": pid, "started_at": proc.create_time(), "cmdline": list(argv) if argv else proc.cmdline()}


def matches(entry: dict) -> bool:
    """The process in `entry` is still the one we started: same pid, start time and command line.
    Entries from older ledgers (no start time) never match: we would rather leave a process running
    than stop a stranger."""
    pid, started = entry.get("pid"), entry.get("started_at")
    if not pid or started is None:
        return False
    try:
        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        # the interpreter's path may read differently (a venv's symlink): its arguments must all be there
        return abs(proc.create_time() - float(started)) < 0.05 \
            and _holds(proc.cmdline(), (entry.get("cmdline") or [None])[1:])
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, ValueError):
        return False


def _holds(cmdline: list[str], args: list) -> bool:
    return bool(args) and cmdline[1:len(args) + 1] == list(args)


def find(*needles: str) -> dict | None:
    """The newest process whose command line holds every one of `needles` (a server or worker started
    under a name we chose, whose pid a kill kept out of the ledger)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "create_time", "status"]):
        cmd = proc.info.get("cmdline") or []
        if proc.info.get("status") != psutil.STATUS_ZOMBIE and all(n in cmd for n in needles):
            found.append(proc.info)
    if not found:
        return None
    best = max(found, key=lambda p: p["create_time"])
    return {"pid": best["pid"], "started_at": best["create_time"], "cmdline": best["cmdline"]}


def stop(entry: dict, grace: float = 5.0) -> bool:
    """SIGTERM, then SIGKILL after `grace` seconds, the process in `entry` — only if it still matches.
    True when it was ours and is now gone."""
    if not matches(entry):
        return False
    pid = int(entry["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and matches(entry):
        time.sleep(0.1)
    if matches(entry):
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + grace        # gone when `down` returns, not still dying
        while time.monotonic() < deadline and matches(entry):
            time.sleep(0.05)
    try:  # our own child (deploy and down in one process): reap it, or it lingers as a zombie
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    return True

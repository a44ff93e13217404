"""Finding runs: the project's runs folder from any directory under it, a run by its id (a plain name,
never a path), the latest run of a config, the runs whose ledger is damaged (reported, not hidden), and
the lock under which a run is chosen or made."""
from __future__ import annotations

import difflib
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, DataError, UsageError
from .run import Run
from .store import LedgerDamaged

DEFAULT_RUNS_DIR = Path(".imgcls") / "runs"
_PLAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


@dataclass(frozen=True)
class DamagedRun:
    id: str
    path: Path
    reason: str


def project_runs_dir(start: Path | None = None) -> Path:
    """`.imgcls/runs` in the current folder or the nearest parent that has one (as git finds `.git`);
    the current folder's when none has."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / DEFAULT_RUNS_DIR).is_dir():
            return folder / DEFAULT_RUNS_DIR
    return here / DEFAULT_RUNS_DIR


def scan(runs_dir: Path) -> tuple[list[Run], list[DamagedRun]]:
    """Every run folder: the readable runs (newest first) and the damaged ones."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return [], []
    found, damaged = [], []
    for p in sorted(runs_dir.iterdir()):
        if not p.is_dir():
            continue
        missing = _missing_ledger(p)
        if missing:
            damaged.append(DamagedRun(p.name, p / "ledger.json", missing))
            continue
        if not (p / "ledger.json").exists():
            continue  # not a run folder
        try:
            found.append(Run(p))
        except LedgerDamaged as exc:
            damaged.append(DamagedRun(p.name, exc.path, exc.reason))
    found.sort(key=lambda r: (r.ledger.get("created", ""), r.id), reverse=True)
    return found, damaged


def list_runs(runs_dir: Path) -> list[Run]:
    """The readable runs, newest first."""
    return scan(runs_dir)[0]


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not _PLAIN_ID.fullmatch(run_id) or ".." in run_id:
        raise UsageError(f"--run {run_id!r} is not a run id (a plain name such as t-local-20260101-120000-ab12, "
                         "not a path)", hint="list the runs with `imgcls runs`")
    return run_id


def _missing_ledger(folder: Path) -> str | None:
    """Why a run folder has no ledger.json to read (its backup is there, or its config says it is a run
    folder); None when it has one, or is no run folder at all."""
    if (folder / "ledger.json").exists():
        return None
    if (folder / "ledger.json.bak").exists():
        return "ledger.json is missing (ledger.json.bak is there)"
    if (folder / "config.yaml").exists():
        return "ledger.json and its backup are missing"
    return None


def open_run(runs_dir: Path, run_id: str) -> Run:
    """The run `run_id` in `runs_dir`; an unknown id is a usage error naming the closest runs."""
    check_run_id(run_id)
    path = Path(runs_dir) / run_id
    if not path.is_dir():
        known = [p.name for p in Path(runs_dir).iterdir() if p.is_dir()] if Path(runs_dir).is_dir() else []
        close = difflib.get_close_matches(run_id, known, n=5, cutoff=0.3)
        rest = sorted((k for k in known if k not in close), reverse=True)[:max(0, 5 - len(close))]
        shown = close + rest
        raise UsageError(f"no run {run_id!r} in {runs_dir}",
                         hint=("runs there: " + ", ".join(shown) + (" …" if len(known) > len(shown) else ""))
                         if shown else "there are no runs yet; start one with `imgcls run -c CONFIG`",
                         runs=shown)
    missing = _missing_ledger(path)
    if missing:
        raise LedgerDamaged(path / "ledger.json", missing)
    if not (path / "ledger.json").exists():
        raise UsageError(f"{path} is not a run folder (it has no ledger.json)",
                         hint="list the runs with `imgcls runs`")
    return Run(path)


def latest(runs_dir: Path, name: str, provider: str, fingerprint: str | None = None,
           data_fingerprint: str | None = None) -> Run | None:
    """The newest run of this name and provider (and, when given, of the same config and data)."""
    for run in list_runs(runs_dir):
        led = run.ledger
        if led["name"] == name and led["provider"] == provider \
                and (fingerprint is None or led.get("config_fingerprint") == fingerprint) \
                and (data_fingerprint is None or led.get("data_fingerprint") == data_fingerprint):
            return run
    return None


@contextmanager
def choosing(root: Path, wait: float = 60.0):
    """The project's lock on choosing a run or making one (held for milliseconds): an flock on the runs
    folder itself, so no lock file sits among the runs."""
    if root.exists() and not root.is_dir():
        raise ConfigError(f"the runs folder {root} is a file", hint="set runs_dir to a folder (default: .imgcls/runs)")
    try:
        import fcntl
    except ImportError:  # no flock here (Windows): runs are still written atomically, one by one
        yield
        return
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root, os.O_RDONLY)
    except OSError as exc:
        raise DataError(f"cannot open the runs folder {root} ({exc.strerror})",
                        hint="check that it is a folder you can write to") from None
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DataError(f"the runs folder {root} stayed locked for {wait:g} s",
                                    hint="another imgcls is choosing a run there; try again") from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # closing it lets the lock go

"""Files that must never be half-written: atomic writes, and the ledger store — one JSON file per run,
changed only under a cross-process lock, with the previous version kept as ledger.json.bak."""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import tempfile
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError, ImgclsError

SCHEMA_VERSION = 2
LOCK_TIMEOUT = 60.0   # seconds; a writer holds the lock for one read-modify-write, milliseconds

# What every ledger holds; a file without these (a hand edit, `[]`) is damaged, not an empty run.
_REQUIRED = {"run_id": str, "name": str, "provider": str, "created": str, "steps": dict,
             "resources": list, "operations": list, "events": list}


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write via a temp file in the same folder, fsync, os.replace and fsync the folder: a crash at any
    instant leaves either the old file or the new one, never half of either."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _unwritable(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _unwritable(path, exc) from None
        raise
    _fsync_dir(path.parent)


def _unwritable(path: Path, exc: OSError) -> DataError:
    """A write refused by the system (a read-only folder, a full disk): the old file is still whole."""
    return DataError(f"cannot write {path}: {exc.strerror or exc} (the previous version is kept)",
                     hint="make the folder writable, or free disk space, then run the command again")


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform opens folders
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def to_jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return to_jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):  # JSON has no NaN or Infinity
        return None
    return value


def write_json(path: Path, value: Any) -> None:
    atomic_write(path, json.dumps(to_jsonable(value), indent=2, sort_keys=False) + "\n")


class LedgerDamaged(ImgclsError):
    """A run's ledger.json cannot be read as a ledger. Only that run is affected; like a manifest whose
    files changed, it is damaged data on disk (exit 4)."""
    exit_code = 4

    def __init__(self, path: Path, reason: str):
        backup = Path(f"{path}.bak")
        super().__init__(f"the ledger {path} is damaged: {reason}",
                         hint="`imgcls doctor --run " + Path(path).parent.name + "` rebuilds it"
                              + (f" from {backup.name}" if backup.exists() else " from the run folder"))
        self.path, self.reason = Path(path), reason


def check_ledger(data: Any, path: Path) -> dict:
    """`data` if it has a ledger's shape, else LedgerDamaged naming what is wrong."""
    if not isinstance(data, dict):
        raise LedgerDamaged(path, f"expected a JSON object, found {type(data).__name__}")
    for key, kind in _REQUIRED.items():
        if key not in data:
            raise LedgerDamaged(path, f"the key '{key}' is missing")
        if not isinstance(data[key], kind):
            raise LedgerDamaged(path, f"'{key}' should be a {kind.__name__}, found {type(data[key]).__name__}")
    for i, entry in enumerate(data["resources"]):
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("kind", "status")):
            raise LedgerDamaged(path, f"resources[{i}] is not a resource entry")
    for i, entry in enumerate(data["operations"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("kind"), str):
            raise LedgerDamaged(path, f"operations[{i}] is not an operation entry")
    for name, step in data["steps"].items():
        if not isinstance(step, dict):
            raise LedgerDamaged(path, f"the step '{name}' should be an object, found {type(step).__name__}")
    data.setdefault("schema_version", 1)
    return data


def read_ledger(path: Path) -> dict:
    """The ledger at `path`, checked. FileNotFoundError when there is none."""
    raw = Path(path).read_bytes()
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f", line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        empty = " (the file is empty)" if not raw.strip() else ""
        raise LedgerDamaged(path, f"not valid JSON{where}{empty}") from None
    return check_ledger(data, path)


class LedgerStore:
    """One run's ledger file. Readers never lock (every write is an atomic rename); writers take the
    run's lock, re-read the file, change it and write it back, keeping the old version as .bak."""

    def __init__(self, path: Path):
        from filelock import FileLock
        self.path = Path(path)
        self.backup = Path(f"{self.path}.bak")
        self._lock = FileLock(str(self.path.parent / ".ledger.lock"), timeout=LOCK_TIMEOUT)
        self._cached: dict | None = None
        self._stamp: tuple | None = None

    def read(self) -> dict:
        """The ledger as on disk, re-read only when the file changed since the last read."""
        stamp = self._disk_stamp()
        if stamp != self._stamp or self._cached is None:
            self._cached = read_ledger(self.path)
            self._stamp = stamp
        return self._cached

    @contextlib.contextmanager
    def transaction(self):
        """Yield the freshest ledger under the lock; what the block leaves in it is written on exit."""
        from filelock import Timeout
        try:
            with self._lock:
                self._stamp = None                # another process may have written a moment ago
                ledger = self.read()
                yield ledger
                self._write(ledger)
        except Timeout:
            raise ImgclsError(f"the ledger {self.path} stayed locked for {LOCK_TIMEOUT:.0f} s",
                              hint="another imgcls process is writing this run; wait for it, or remove "
                                   f"{self._lock.lock_file} if no imgcls process is running") from None

    def create(self, ledger: dict) -> None:
        with self._lock:
            write_json(self.path, check_ledger(ledger, self.path))

    def _write(self, ledger: dict) -> None:
        ledger["schema_version"] = SCHEMA_VERSION
        if self.path.exists():
            atomic_write(self.backup, self.path.read_bytes())
        write_json(self.path, ledger)
        self._stamp = self._disk_stamp()

    def restore(self, ledger: dict) -> None:
        """Write `ledger` over a damaged file (which is kept beside it, never lost)."""
        with self._lock:
            if self.path.exists():
                damaged = self.path.with_name(f"ledger.json.damaged-{dt.datetime.now():%Y%m%d-%H%M%S}")
                os.replace(self.path, damaged)
            ledger["schema_version"] = SCHEMA_VERSION
            write_json(self.path, check_ledger(ledger, self.path))
            self._stamp = None

    def _disk_stamp(self) -> tuple:
        # os.replace gives every write a new inode, so two writes within one clock tick still differ.
        st = self.path.stat()
        return (st.st_mtime_ns, st.st_size, st.st_ino)

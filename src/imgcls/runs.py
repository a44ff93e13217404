"""The run directory and its ledger: every resource and operation a run created, written atomically.

Layout of `.imgcls/runs/<run-id>/`: config.yaml (resolved), manifest.jsonl, ledger.json, results/,
artifacts/, report/. The ledger is the single source of truth for resume, status and `down`.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import tempfile
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write via a temp file in the same folder and os.replace, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        return value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def write_json(path: Path, value: Any) -> None:
    atomic_write(path, json.dumps(to_jsonable(value), indent=2, sort_keys=False) + "\n")


_RESERVED = {"kind", "id", "provider", "created", "status", "deleted"}


class Run:
    """One run's folder. `ledger` is a plain dict persisted on every change."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.id = self.path.name
        self.ledger_path = self.path / "ledger.json"
        self._ledger: dict = {}
        self._stamp: tuple | None = None
        try:
            self.ledger  # noqa: B018 - load now, so a missing or broken ledger fails here
        except FileNotFoundError:
            raise UsageError(f"run {self.id!r} has no ledger at {self.ledger_path}",
                             hint="list runs with `imgcls status`") from None
        except json.JSONDecodeError as exc:
            raise UsageError(f"the ledger {self.ledger_path} is not valid JSON ({exc.msg}, line {exc.lineno})",
                             hint="restore it from a backup or start a new run") from None

    # -- creation and lookup -------------------------------------------------------------
    @classmethod
    def create(cls, runs_dir: Path, name: str, provider: str, fingerprint: str | None = None) -> Run:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_id = f"{name}-{provider}-{stamp}-{secrets.token_hex(2)}"
        path = Path(runs_dir) / run_id
        path.mkdir(parents=True, exist_ok=False)
        ledger = {"run_id": run_id, "name": name, "provider": provider, "created": now(),
                  "config_fingerprint": fingerprint,
                  "steps": {}, "resources": [], "operations": [], "events": []}
        write_json(path / "ledger.json", ledger)
        return cls(path)

    @classmethod
    def open(cls, runs_dir: Path, run_id: str) -> Run:
        path = Path(run_id) if os.sep in run_id else Path(runs_dir) / run_id
        if not (path / "ledger.json").exists():
            known = [r.name for r in list_runs(runs_dir)][:10]
            raise UsageError(f"no run {run_id!r} in {runs_dir}",
                             hint=("known runs: " + ", ".join(known)) if known else "start one with `imgcls run -c CONFIG`")
        return cls(path)

    @classmethod
    def latest(cls, runs_dir: Path, name: str, provider: str, fingerprint: str | None = None) -> Run | None:
        """The newest run of this name and provider (and, when given, of the same model-defining config)."""
        for run in list_runs(runs_dir):
            if run.ledger.get("name") == name and run.ledger.get("provider") == provider and (
                    fingerprint is None or run.ledger.get("config_fingerprint") == fingerprint):
                return run
        return None

    # -- persistence ---------------------------------------------------------------------
    @property
    def ledger(self) -> dict:
        """The ledger as on disk: re-read when another Run object or process has written it since."""
        stamp = self._disk_stamp()
        if stamp != self._stamp:
            self._ledger = json.loads(self.ledger_path.read_text())
            self._stamp = stamp
        return self._ledger

    def save(self) -> None:
        write_json(self.ledger_path, self._ledger)
        self._stamp = self._disk_stamp()

    def _disk_stamp(self) -> tuple:
        # os.replace gives every write a new inode, so two writes within one clock tick still differ.
        st = self.ledger_path.stat()
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def config(self):
        """The RunConfig the run was started with (workers and resumed runs read it back)."""
        import yaml

        from .config import RunConfig
        return RunConfig.model_validate(yaml.safe_load(self.file("config.yaml").read_text()))

    @property
    def provider(self) -> str:
        return self.ledger["provider"]

    def file(self, *parts: str) -> Path:
        return self.path.joinpath(*parts)

    # -- steps: what each command produced --------------------------------------------------
    def step(self, name: str) -> dict | None:
        return self.ledger["steps"].get(name)

    def set_step(self, name: str, value: dict) -> None:
        self.ledger["steps"][name] = {**to_jsonable(value), "updated": now()}
        self.save()

    def event(self, message: str) -> None:
        self.ledger["events"].append({"at": now(), "message": message})
        self.save()

    # -- resources: recorded the moment their id is known ------------------------------------
    def record(self, kind: str, id: str, **info: Any) -> dict:
        """Record a created cloud resource (or a local process) before anything waits on it."""
        clash = _RESERVED & set(info)
        if clash:
            raise ValueError(f"ledger fields {sorted(clash)} are the ledger's own; name them otherwise")
        for res in self.ledger["resources"]:
            if res["kind"] == kind and res["id"] == id:
                res.update(to_jsonable(info))
                res["status"] = "active"
                self.save()
                return res
        res = {"kind": kind, "id": id, "provider": self.provider, "created": now(), "status": "active",
               **to_jsonable(info)}
        self.ledger["resources"].append(res)
        self.save()
        return res

    def record_operation(self, kind: str, id: str, **info: Any) -> dict:
        op = {"kind": kind, "id": id, "started": now(), "state": "running", **to_jsonable(info)}
        self.ledger["operations"] = [o for o in self.ledger["operations"] if not (o["kind"] == kind and o["id"] == id)]
        self.ledger["operations"].append(op)
        self.save()
        return op

    def update_operation(self, kind: str, id: str, **info: Any) -> None:
        for op in self.ledger["operations"]:
            if op["kind"] == kind and op["id"] == id:
                op.update(to_jsonable(info))
        self.save()

    def operation(self, kind: str) -> dict | None:
        ops = [o for o in self.ledger["operations"] if o["kind"] == kind]
        return ops[-1] if ops else None

    def resources(self, kind: str | None = None, active: bool = True) -> list[dict]:
        return [r for r in self.ledger["resources"]
                if (kind is None or r["kind"] == kind) and (not active or r["status"] == "active")]

    def resource(self, kind: str) -> dict | None:
        found = self.resources(kind)
        return found[-1] if found else None

    def mark_deleted(self, res: dict, note: str = "deleted") -> None:
        for r in self.ledger["resources"]:
            if r["kind"] == res["kind"] and r["id"] == res["id"]:
                r["status"] = note
                r["deleted"] = now()
        self.save()


def list_runs(runs_dir: Path) -> list[Run]:
    """Runs, newest first."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    found = []
    for p in runs_dir.iterdir():
        if (p / "ledger.json").is_file():
            try:
                found.append(Run(p))
            except UsageError:
                continue
    return sorted(found, key=lambda r: (r.ledger.get("created", ""), r.id), reverse=True)

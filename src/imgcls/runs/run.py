"""One run's folder and its ledger: every resource and operation the run made, recorded before anything
waits on it. Layout of `.imgcls/runs/<run-id>/`: config.yaml (resolved), manifest.jsonl, ledger.json
(+ .bak), results/, artifacts/, report/. The ledger is the single source of truth for resume, status
and `down`.

A resource entry: {kind, id, provider, created, status, ours, name?, …}. `ours` is whether imgcls
created it (only those are ever deleted). Before a call that creates something the entry is written
as `pending` with the name imgcls chose (id still null); the id fills in when the call returns, and a
pending entry left by a kill is reconciled with the provider by that name.
"""
from __future__ import annotations

import datetime as dt
import re
import secrets
from pathlib import Path
from typing import Any

from .store import LedgerStore, now, to_jsonable

_RESERVED = {"kind", "id", "provider", "created", "status", "deleted"}
LIVE = ("active", "pending")        # statuses `down` still has to deal with


ID_PARTS = re.compile(r"^(?P<name>.+)-(?P<provider>[a-z0-9_]+)-(?P<stamp>\d{8}-\d{6})-[0-9a-f]+$")
ID_STAMP = "%Y%m%d-%H%M%S"  # local time, as Run.create names a run


def id_parts(run_id: str) -> tuple[str, str, dt.datetime] | None:
    """(name, provider, creation time) of an id Run.create made; None for any other folder name."""
    m = ID_PARTS.match(run_id)
    if m is None:
        return None
    return m["name"], m["provider"], dt.datetime.strptime(m["stamp"], ID_STAMP).astimezone(dt.timezone.utc)


def same_entry(a: dict, b: dict) -> bool:
    """Entries are the same resource: by id, or (a pending one) by the name imgcls chose for it."""
    if a["kind"] != b["kind"]:
        return False
    if a.get("id") is not None and b.get("id") is not None:
        return a["id"] == b["id"]
    return a.get("id") is None and b.get("id") is None and a.get("name") == b.get("name")


class Run:
    """One run's folder. Read `ledger`; change it only through the methods below (each one locked)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.id = self.path.name
        self.ledger_path = self.path / "ledger.json"
        self.store = LedgerStore(self.ledger_path)
        self.store.read()  # a missing (FileNotFoundError) or damaged (LedgerDamaged) ledger fails here

    @classmethod
    def create(cls, runs_dir: Path, name: str, provider: str, fingerprint: str | None = None,
               data_fingerprint: str | None = None) -> Run:
        stamp = dt.datetime.now().strftime(ID_STAMP)
        run_id = f"{name}-{provider}-{stamp}-{secrets.token_hex(2)}"
        path = Path(runs_dir) / run_id
        path.mkdir(parents=True, exist_ok=False)
        LedgerStore(path / "ledger.json").create(
            {"schema_version": 2, "run_id": run_id, "name": name, "provider": provider, "created": now(),
             "config_fingerprint": fingerprint, "data_fingerprint": data_fingerprint,
             "steps": {}, "resources": [], "operations": [], "events": []})
        return cls(path)

    @classmethod
    def open(cls, runs_dir: Path, run_id: str) -> Run:
        from .lookup import open_run
        return open_run(runs_dir, run_id)

    @classmethod
    def latest(cls, runs_dir: Path, name: str, provider: str, fingerprint: str | None = None) -> Run | None:
        from .lookup import latest
        return latest(runs_dir, name, provider, fingerprint)

    # -- reading ----------------------------------------------------------------------------
    @property
    def ledger(self) -> dict:
        """The ledger as on disk: re-read when another Run object or process has written it since."""
        return self.store.read()

    @property
    def provider(self) -> str:
        return self.ledger["provider"]

    @property
    def name(self) -> str:
        return self.ledger["name"]

    def file(self, *parts: str) -> Path:
        return self.path.joinpath(*parts)

    def config(self):
        """The RunConfig the run was started with (workers, resumed runs and `--run` alone read it back)."""
        import yaml
        from pydantic import ValidationError

        from ..config import RunConfig
        from ..errors import ConfigError
        path = self.file("config.yaml")
        try:
            return RunConfig.model_validate({**yaml.safe_load(path.read_text()), "from_run": self.id})
        except (OSError, yaml.YAMLError, TypeError, ValidationError) as exc:
            raise ConfigError(f"run {self.id} has no readable config at {path} ({type(exc).__name__})",
                              hint="pass the config the run was started with: -c CONFIG --run " + self.id) from None

    def step(self, name: str) -> dict | None:
        return self.ledger["steps"].get(name)

    def operation(self, kind: str) -> dict | None:
        ops = [o for o in self.ledger["operations"] if o["kind"] == kind]
        return ops[-1] if ops else None

    def resources(self, kind: str | None = None, active: bool = True) -> list[dict]:
        return [r for r in self.ledger["resources"]
                if (kind is None or r["kind"] == kind) and (not active or r["status"] == "active")]

    def resource(self, kind: str) -> dict | None:
        found = self.resources(kind)
        return found[-1] if found else None

    def pending(self, kind: str | None = None) -> list[dict]:
        return [r for r in self.ledger["resources"]
                if r["status"] == "pending" and (kind is None or r["kind"] == kind)]

    def live(self) -> list[dict]:
        """What `down` has to deal with: active and pending entries."""
        return [r for r in self.ledger["resources"] if r["status"] in LIVE]

    # -- steps and events ---------------------------------------------------------------------
    def set_step(self, name: str, value: dict) -> None:
        with self.store.transaction() as ledger:
            ledger["steps"][name] = {**to_jsonable(value), "updated": now()}

    def drop_step(self, name: str) -> None:
        with self.store.transaction() as ledger:
            ledger["steps"].pop(name, None)

    def event(self, message: str) -> None:
        with self.store.transaction() as ledger:
            ledger["events"].append({"at": now(), "message": message})

    def set_fields(self, **fields: Any) -> None:
        """Top-level ledger fields (a data fingerprint, a repair note)."""
        with self.store.transaction() as ledger:
            ledger.update(to_jsonable(fields))

    # -- resources ----------------------------------------------------------------------------
    def intend(self, kind: str, name: str, **info: Any) -> dict:
        """Record, before the call that creates it, a resource imgcls is about to create under `name`.
        If a pending entry of that kind and name is already there (a resumed run), it is returned as is."""
        _check_fields(info)
        with self.store.transaction() as ledger:
            for res in ledger["resources"]:
                if res["kind"] == kind and res.get("name") == name and res["status"] == "pending":
                    return dict(res)
            res = {"kind": kind, "id": None, "name": name, "provider": ledger["provider"], "created": now(),
                   "status": "pending", "ours": True, **to_jsonable(info)}
            ledger["resources"].append(res)
        return dict(res)

    def record(self, kind: str, id: str, ours: bool | None = None, **info: Any) -> dict:
        """Record a resource (or a local process) the moment its id is known. `ours`: imgcls created it
        (False: the run only uses it, and `down` leaves it alone; None: as recorded before, else True).
        A pending entry of this kind whose name is `info["name"]` becomes this entry."""
        _check_fields(info)
        fields = to_jsonable(info)
        with self.store.transaction() as ledger:
            same = [r for r in ledger["resources"] if r["kind"] == kind and r.get("id") == id]
            target = next((r for r in same if r["status"] in LIVE), None)
            if target is None and info.get("name") is not None:
                target = next((r for r in ledger["resources"] if r["kind"] == kind and r.get("id") is None
                               and r.get("name") == info["name"] and r["status"] == "pending"), None)
            # A name the service reuses as the id (Azure) may belong to an entry `down` deleted: made again,
            # it is the pending entry above that becomes active, else that old entry comes back.
            target = target or (same[0] if same else None)
            if target is None:
                target = {"kind": kind, "id": id, "provider": ledger["provider"], "created": now()}
                ledger["resources"].append(target)
            target.update(fields)
            target["ours"] = target.get("ours", True) if ours is None else ours
            target["id"] = id
            target["status"] = "active"
            target.pop("deleted", None)
        return dict(target)

    def update_resource(self, res: dict, **info: Any) -> None:
        with self.store.transaction() as ledger:
            for r in ledger["resources"]:
                if same_entry(r, res):
                    r.update(to_jsonable(info))

    def mark_deleted(self, res: dict, note: str = "deleted") -> None:
        with self.store.transaction() as ledger:
            for r in ledger["resources"]:
                if same_entry(r, res):
                    r["status"] = note
                    r["deleted"] = now()

    # -- operations ---------------------------------------------------------------------------
    def record_operation(self, kind: str, id: str, **info: Any) -> dict:
        op = {"kind": kind, "id": id, "started": now(), "state": "running", **to_jsonable(info)}
        with self.store.transaction() as ledger:
            ledger["operations"] = [o for o in ledger["operations"] if not (o["kind"] == kind and o["id"] == id)]
            ledger["operations"].append(op)
        return op

    def update_operation(self, kind: str, id: str, **info: Any) -> None:
        with self.store.transaction() as ledger:
            for op in ledger["operations"]:
                if op["kind"] == kind and op["id"] == id:
                    op.update(to_jsonable(info))


def _check_fields(info: dict) -> None:
    clash = _RESERVED & set(info)
    if clash:
        raise ValueError(f"ledger fields {sorted(clash)} are the ledger's own; name them otherwise")

"""Runs and their ledgers: the run folder (run.py), the locked ledger store and atomic writes (store.py),
and how runs are found (lookup.py)."""
from .lookup import (
    DEFAULT_RUNS_DIR,
    DamagedRun,
    check_run_id,
    choosing,
    latest,
    list_runs,
    open_run,
    project_runs_dir,
    scan,
)
from .run import LIVE, Run, id_parts, same_entry
from .store import LedgerDamaged, atomic_write, now, read_ledger, to_jsonable, write_json

__all__ = ["DEFAULT_RUNS_DIR", "LIVE", "DamagedRun", "LedgerDamaged", "Run", "atomic_write", "check_run_id", "choosing", "id_parts",
           "latest", "list_runs", "now", "open_run", "project_runs_dir", "read_ledger", "same_entry", "scan",
           "to_jsonable", "write_json"]

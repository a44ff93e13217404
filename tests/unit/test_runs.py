"""The run ledger: atomic writes, records kept the moment they are made, lookups."""
import json
import os

import pytest

from imgcls.errors import UsageError
from imgcls.runs import Run, atomic_write, list_runs


def test_record_is_on_disk_before_returning(tmp_path):
    run = Run.create(tmp_path, "exp", "local")
    run.record("endpoint", "e-1", url="http://x")
    on_disk = json.loads((run.path / "ledger.json").read_text())
    assert on_disk["resources"][0]["id"] == "e-1" and on_disk["resources"][0]["status"] == "active"
    run.record("endpoint", "e-1", url="http://y")  # the same resource is updated, not duplicated
    assert len(Run(run.path).ledger["resources"]) == 1
    run.mark_deleted(run.resource("endpoint"))
    assert Run(run.path).resources() == [] and Run(run.path).ledger["resources"][0]["status"] == "deleted"


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    atomic_write(target, "old")

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]  # no temp file left behind


def test_operations_and_latest(tmp_path):
    a = Run.create(tmp_path, "exp", "local")
    a.record_operation("train", "op1", pid=1)
    a.update_operation("train", "op1", state="succeeded")
    assert Run(a.path).operation("train")["state"] == "succeeded"
    b = Run.create(tmp_path, "exp", "vertex")
    assert Run.latest(tmp_path, "exp", "local").id == a.id
    assert Run.latest(tmp_path, "exp", "vertex").id == b.id
    assert Run.latest(tmp_path, "other", "local") is None
    assert {r.id for r in list_runs(tmp_path)} == {a.id, b.id}


def test_open_unknown_and_corrupt(tmp_path):
    with pytest.raises(UsageError, match="no run"):
        Run.open(tmp_path, "missing")
    run = Run.create(tmp_path, "exp", "local")
    (run.path / "ledger.json").write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        Run(run.path)

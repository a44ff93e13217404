"""The run ledger: atomic writes, records kept the moment they are made, a lock across processes,
a backup, damaged ledgers reported per run, run ids that are names (not paths), pending entries."""
import json
import multiprocessing
import os
import threading

import pytest

from imgcls.errors import UsageError
from imgcls.runs import LedgerDamaged, Run, atomic_write, list_runs, open_run, scan


def test_record_is_on_disk_before_returning(tmp_path):
    run = Run.create(tmp_path, "exp", "local")
    run.record("endpoint", "e-1", url="http://x")
    on_disk = json.loads((run.path / "ledger.json").read_text())
    assert on_disk["resources"][0]["id"] == "e-1" and on_disk["resources"][0]["status"] == "active"
    run.record("endpoint", "e-1", url="http://y")  # the same resource is updated, not duplicated
    assert len(Run(run.path).ledger["resources"]) == 1
    run.mark_deleted(run.resource("endpoint"))
    assert Run(run.path).resources() == [] and Run(run.path).ledger["resources"][0]["status"] == "deleted"


def test_a_name_made_again_after_down_settles_its_own_pending_entry(tmp_path):
    """Azure names are the ids: an endpoint `down` deleted and a later step makes again under the same name
    is the new pending entry become active, not the deleted one brought back beside a stray pending one."""
    run = Run.create(tmp_path, "exp", "azureml")
    run.intend("batch_endpoint", "ep")
    run.record("batch_endpoint", "ep", name="ep")
    run.mark_deleted(run.resource("batch_endpoint"))
    run.intend("batch_endpoint", "ep")
    run.record("batch_endpoint", "ep", name="ep")
    assert [r["status"] for r in Run(run.path).ledger["resources"]] == ["deleted", "active"]
    assert run.pending() == []
    run.record("endpoint", "other")                     # no pending entry: a deleted one comes back, as before
    run.mark_deleted(run.resource("endpoint"))
    run.record("endpoint", "other")
    assert [r["status"] for r in Run(run.path).ledger["resources"] if r["kind"] == "endpoint"] == ["active"]


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    atomic_write(target, "old")

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    from imgcls.errors import DataError
    with pytest.raises(DataError, match="disk full"):             # named, with the file: not a traceback
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
    with pytest.raises(LedgerDamaged, match="not valid JSON") as err:
        Run(run.path)
    assert err.value.exit_code == 4 and "imgcls doctor" in err.value.hint


def test_unknown_id_names_the_closest_runs(tmp_path):
    a = Run.create(tmp_path, "flowers", "local")
    Run.create(tmp_path, "other", "vertex")
    with pytest.raises(UsageError) as err:
        open_run(tmp_path, a.id[:-1] + "x")        # one character off
    assert err.value.exit_code == 2 and err.value.details["runs"][0] == a.id
    with pytest.raises(UsageError, match="no runs yet"):
        open_run(tmp_path / "empty", "nope")


@pytest.mark.parametrize("bad", ["../x", "a/b", "/etc", "..", ".hidden", "", "x" * 300, "a\nb"])
def test_a_run_id_is_a_name_not_a_path(tmp_path, bad):
    (tmp_path / "x").mkdir()
    with pytest.raises(UsageError, match="not a run id"):
        open_run(tmp_path / "runs", bad)


@pytest.mark.parametrize("content,reason", [
    ("[]", "expected a JSON object"),
    ('{"run_id": "r"}', "'name' is missing"),
    ('{"run_id": "r", "name": "n", "provider": "local", "created": "x", "steps": {}, "resources": {}, '
     '"operations": [], "events": []}', "'resources' should be a list"),
    ('{"run_id": "r", "name": "n", "provider": "local", "created": "x", "steps": {"train": "succeeded"}, '
     '"resources": [], "operations": [], "events": []}', "the step 'train' should be an object"),  # valid JSON
    ('{"run_id": "r", "name": "n", "provider": "local", "created": "x", "steps": {}, "resources": '
     '[{"kind": "server", "status": null}], "operations": [], "events": []}', "resources[0] is not a resource"),
    ('{"run_id": "r", "name": "n", "provider": "local", "created": "x", "steps": {}, "resources": [], '
     '"operations": ["train"], "events": []}', "operations[0] is not an operation"),
    ('{"run_id": "r", "na', "not valid JSON"),     # truncated
    ("", "the file is empty"),
])
def test_a_damaged_ledger_is_reported_for_that_run_only(tmp_path, content, reason):
    good = Run.create(tmp_path, "exp", "local")
    bad = Run.create(tmp_path, "exp", "local")
    (bad.path / "ledger.json").write_text(content)
    found, damaged = scan(tmp_path)
    assert [r.id for r in found] == [good.id]
    assert [d.id for d in damaged] == [bad.id] and reason in damaged[0].reason
    assert [r.id for r in list_runs(tmp_path)] == [good.id]


def test_every_write_keeps_the_previous_version_and_a_schema_version(tmp_path):
    run = Run.create(tmp_path, "exp", "local")
    run.record("endpoint", "e-1")
    run.record("endpoint", "e-2")
    now = json.loads(run.ledger_path.read_text())
    before = json.loads((run.path / "ledger.json.bak").read_text())
    assert now["schema_version"] == 2 and [r["id"] for r in now["resources"]] == ["e-1", "e-2"]
    assert [r["id"] for r in before["resources"]] == ["e-1"]


def test_a_pending_entry_becomes_the_resource_when_its_id_is_known(tmp_path):
    run = Run.create(tmp_path, "exp", "vertex")
    pending = run.intend("dataset", "exp-run-1", display_name="exp-run-1")
    assert pending["status"] == "pending" and pending["id"] is None and pending["ours"] is True
    assert run.intend("dataset", "exp-run-1") == pending          # a resumed run finds the same intent
    assert run.pending("dataset") and run.resources("dataset") == []
    rec = run.record("dataset", "projects/p/datasets/7", name="exp-run-1")
    assert rec["status"] == "active" and rec["name"] == "exp-run-1"
    assert len(run.ledger["resources"]) == 1 and run.pending() == []
    run.record("compute", "shared", ours=False)
    run.record("compute", "shared", size=3)                        # a later update keeps ours=False
    assert run.resource("compute")["ours"] is False


def _writer(path: str, tag: str, n: int) -> None:
    run = Run(path)
    for i in range(n):
        run.record("blob", f"{tag}-{i}")


def test_two_processes_writing_one_ledger_lose_nothing(tmp_path):
    run = Run.create(tmp_path, "exp", "local")
    stop, seen = threading.Event(), {"reads": 0, "partial": 0}

    def reader():                       # a reader during the writes never sees half a file
        while not stop.is_set():
            try:
                json.loads(run.ledger_path.read_text())
                seen["reads"] += 1
            except ValueError:
                seen["partial"] += 1

    t = threading.Thread(target=reader)
    t.start()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(run.path), tag, 200)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    stop.set()
    t.join()
    assert [p.exitcode for p in procs] == [0, 0]
    ids = {r["id"] for r in Run(run.path).ledger["resources"]}
    assert ids == {f"{tag}-{i}" for tag in ("a", "b") for i in range(200)}
    assert seen["partial"] == 0 and seen["reads"] > 0


def test_status_lists_damaged_runs_and_doctor_rebuilds_from_the_backup(tmp_path, capsys):
    from imgcls import api
    from imgcls.progress import Progress
    root = tmp_path / ".imgcls" / "runs"
    good = Run.create(root, "exp", "local")
    bad = Run.create(root, "exp", "local")
    (bad.path / "config.yaml").write_text("name: exp\nprovider: local\ndataset: {source: data}\n")
    bad.record("server", "pid:1", url="http://x")
    bad.record("server", "pid:2", url="http://y")                 # the .bak holds pid:1 only
    bad.ledger_path.write_text('{"run_id": "')                      # truncated
    listed = api.status(runs_root=str(root))
    assert [r["run"] for r in listed["runs"]] == [good.id]
    assert listed["damaged"][0]["run"] == bad.id and "not valid JSON" in listed["damaged"][0]["reason"]
    assert api.status(run_id=good.id, runs_root=str(root))["run"] == good.id
    out = api.doctor(bad.id, runs_root=str(root), progress=Progress(warnings=True, enabled=True))
    assert out["repaired"][0]["from"] == "ledger.json.bak"
    assert [r["id"] for r in Run(bad.path).ledger["resources"]] == ["pid:1"]
    assert list(bad.path.glob("ledger.json.damaged-*"))              # the damaged file is kept
    assert api.doctor(runs_root=str(root))["message"] == "no damaged ledger found"


def test_down_of_a_config_with_a_damaged_run_fails_instead_of_saying_nothing_is_live(tmp_path):
    from imgcls import api
    from imgcls.errors import DataError
    root = tmp_path / ".imgcls" / "runs"
    (tmp_path / "exp.yaml").write_text("name: exp\ndataset: {source: data}\n")
    cfg = api.load(tmp_path / "exp.yaml")
    other = Run.create(root, "exp-big", "local")                    # another config whose name starts the same
    (other.path / "ledger.json").write_text("")
    assert api.down(cfg, runs_root=str(root))["message"].startswith("nothing live")
    bad = Run.create(root, "exp", "local")
    (bad.path / "ledger.json").write_text('{"run_id": "')           # truncated: its server is unknown
    with pytest.raises(DataError) as err:
        api.down(cfg, runs_root=str(root))
    assert err.value.exit_code == 4 and bad.id in err.value.message and f"doctor --run {bad.id}" in err.value.hint


def test_a_ledger_write_the_system_refuses_is_a_data_error_and_keeps_the_old_file(tmp_path):
    import resource
    import signal

    from imgcls.errors import DataError
    run = Run.create(tmp_path, "exp", "local")
    run.record("server", "pid:1")
    before = run.ledger_path.read_text()
    # A file-size limit refuses the write as a full disk would (a read-only folder does not stop root).
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64, hard))
    try:
        with pytest.raises(DataError) as err:
            run.record("server", "pid:2")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert str(run.path) in err.value.message and err.value.exit_code == 4 and "kept" in err.value.message
    assert run.ledger_path.read_text() == before and not list(run.path.glob(".ledger.json.*.tmp"))


def test_a_run_that_lost_both_ledger_files_is_listed_damaged_and_doctor_finds_its_server_again(tmp_path):
    import subprocess
    import sys

    from imgcls import api
    root = tmp_path / ".imgcls" / "runs"
    run = Run.create(root, "exp-big", "local")                      # a name with a dash: not "exp"
    (run.path / "config.yaml").write_text("name: exp-big\nprovider: local\ndataset: {source: data}\n")
    (run.path / "results").mkdir()
    (run.path / "results" / "train.json").write_text('{"provider": "local", "model_id": "m", "status": "succeeded"}')
    created = run.ledger["created"]
    # A stand-in server: a process whose command line is what deploy starts for this run's model.
    argv = [sys.executable, "-c", "import time; time.sleep(60)", "imgcls.providers.local.serve",
            str(run.file("artifacts", "model")), "--host", "127.0.0.1", "--port", "9"]
    server = subprocess.Popen(argv)
    try:
        run.ledger_path.unlink()
        (run.path / "ledger.json.bak").unlink(missing_ok=True)
        found, damaged = scan(root)
        assert found == [] and [d.id for d in damaged] == [run.id] and "backup are missing" in damaged[0].reason
        with pytest.raises(LedgerDamaged):
            open_run(root, run.id)
        out = api.doctor(run.id, runs_root=str(root))
        assert out["repaired"][0]["found_again"] == [{"kind": "server", "id": f"pid:{server.pid}", "name": "serve:9"}]
        rebuilt = Run(run.path)
        assert rebuilt.name == "exp-big" and rebuilt.step("train")["status"] == "succeeded"
        assert rebuilt.ledger["created"][:16] == created[:16]      # made then, not now
        assert [r["id"] for r in rebuilt.live()] == [f"pid:{server.pid}"]
    finally:
        server.kill()
        server.wait()


def test_json_documents_never_hold_nan_or_infinity():
    import numpy as np

    from imgcls.runs import to_jsonable
    doc = to_jsonable({"inf": float("inf"), "nan32": np.float32("nan"), "ninf": np.float64("-inf"), "n": np.int64(3)})
    assert json.loads(json.dumps(doc, allow_nan=False)) == {"inf": None, "nan32": None, "ninf": None, "n": 3}


def test_down_refuses_a_kind_to_keep_that_no_run_holds(tmp_path):
    """`--keep sever` (a typo) must not take the server down: refused before anything is deleted."""
    import imgcls.api as api

    run = Run.create(tmp_path, "exp", "local")
    run.record("server", "http://127.0.0.1:9", pid=2**22 + 1)
    with pytest.raises(UsageError, match=r"--keep sever: no run here holds .* \(they hold: server\); nothing was"):
        api.down(None, run_id=run.id, keep=("sever",), runs_root=tmp_path)
    assert [r["kind"] for r in open_run(tmp_path, run.id).live()] == ["server"]
    kept = api.down(None, run_id=run.id, keep="server", runs_root=tmp_path, dry_run=True)  # a str is one kind
    assert [k["kind"] for k in kept["kept"]] == ["server"] and not kept["deleted"]
    assert api.down(None, run_id=run.id, keep=("model",), runs_root=tmp_path, dry_run=True)["deleted"]  # shorthand


def test_down_stops_a_local_server_whose_run_lost_its_config(tmp_path):
    """A local ledger entry locates its process: no saved config is needed to take it down. A cloud run
    without one is refused (its config says where to look), unless a config of its provider is given."""
    import subprocess
    import sys

    import psutil

    import imgcls.api as api
    from imgcls.errors import ConfigError

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run = Run.create(tmp_path, "exp", "local")  # no config.yaml: as if deleted after deploy
        run.record("server", f"pid:{proc.pid}", pid=proc.pid, started_at=psutil.Process(proc.pid).create_time(),
                   cmdline=psutil.Process(proc.pid).cmdline())
        out = api.down(None, run_id=run.id, runs_root=tmp_path)
        assert [d["kind"] for d in out["deleted"]] == ["server"] and proc.wait(timeout=10) is not None
    finally:
        proc.kill()
    cloud = Run.create(tmp_path, "exp", "vertex")
    cloud.record("endpoint", "projects/p/locations/l/endpoints/1")
    with pytest.raises(ConfigError, match="no readable config"):
        api.down(None, run_id=cloud.id, runs_root=tmp_path)
    assert cloud.id in [r.id for r in list_runs(tmp_path) if r.live()]

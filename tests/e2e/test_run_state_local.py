"""Run state on `local`, through the CLI as a user and a CI runner meet it: run ids, data that changed,
`down` after an edit, processes that are not ours, and SIGKILL at each step of `imgcls run`."""
from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from imgcls.runs import Run, list_runs
from tests.conftest import make_dataset, make_image
from tests.e2e.test_cli_local import ENV
from tests.e2e.test_cli_local import imgcls as _imgcls


def imgcls(*args, cwd, code=0):
    return _imgcls(*args, cwd=cwd, check_code=code)


def jimgcls(*args, cwd, code=0) -> dict:
    return json.loads(imgcls("--json", *args, cwd=cwd, code=code).stdout)


@pytest.fixture
def project(tmp_path):
    data = make_dataset(tmp_path / "data", {"red": 8, "blue": 8}, size=(64, 48))
    cfg = tmp_path / "my.yaml"
    cfg.write_text(f"name: rs\ndataset:\n  source: {data}\nsplit: {{validation: 0.2, test: 0.3}}\n"
                   "deploy: {port: 0}\nevaluate: {report: false}\n")
    return tmp_path, cfg, data


def _servers(root: Path) -> list[dict]:
    return [r for run in list_runs(root / ".imgcls" / "runs") for r in run.resources("server")]


def _our_processes(root: Path) -> list[psutil.Process]:
    """Every process whose command line names a folder of this test (servers, workers)."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        if any(str(root) in part for part in (p.info.get("cmdline") or [])) and p.pid != os.getpid() \
                and p.info.get("status") != psutil.STATUS_ZOMBIE:
            found.append(p)
    return found


def test_unknown_or_path_like_run_ids_are_usage_errors(project):
    root, cfg, _ = project
    run = jimgcls("train", "-c", str(cfg), cwd=root)["run"]
    for cmd in (["status"], ["train", "-c", str(cfg)], ["down", "-c", str(cfg)]):
        proc = imgcls(*cmd, "--run", run[:-1] + "z", cwd=root, code=2)
        assert f"no run '{run[:-1]}z'" in proc.stderr and run in proc.stderr   # the closest run is named
        proc = imgcls(*cmd, "--run", "../x", cwd=root, code=2)
        assert "not a run id" in proc.stderr


def test_changed_data_start_a_new_run_and_the_new_label_is_predicted(project):
    root, cfg, data = project
    first = jimgcls("train", "-c", str(cfg), cwd=root)["run"]
    for i in range(8):
        make_image(data / "green" / f"g{i}.jpg", (40, 180, 60), 9000 + i)
    proc = imgcls("--json", "train", "-c", str(cfg), cwd=root)
    second = json.loads(proc.stdout)["run"]
    assert second != first and "labels added: 1 (green)" in proc.stderr
    preds = jimgcls("predict", "-c", str(cfg), str(data / "green" / "g0.jpg"), "--top-k", "3", cwd=root)
    assert "green" in preds["predictions"][0]["scores"]
    # --run on the old run with the new data is refused, naming the difference, unless allowed
    proc = imgcls("train", "-c", str(cfg), "--run", first, cwd=root, code=4)
    assert "labels added: 1 (green)" in proc.stderr and "--allow-data-change" in proc.stderr
    imgcls("train", "-c", str(cfg), "--run", first, "--allow-data-change", cwd=root, code=0)


def test_status_picks_the_run_of_the_data_as_other_commands_do(project):
    root, cfg, data = project
    first = jimgcls("train", "-c", str(cfg), cwd=root)["run"]
    extra = make_image(data / "red" / "extra.jpg", (200, 30, 30), 77)
    second = jimgcls("train", "-c", str(cfg), cwd=root)["run"]
    assert second != first and jimgcls("status", "-c", str(cfg), cwd=root)["run"] == second
    extra.unlink()                                                  # back to the first run's data
    assert jimgcls("status", "-c", str(cfg), cwd=root)["run"] == first
    assert jimgcls("train", "-c", str(cfg), cwd=root)["run"] == first


def test_a_changed_image_under_a_resumed_run_is_a_data_error(project):
    root, cfg, data = project
    run = jimgcls("dataset-import", "-c", str(cfg), cwd=root)["run"]
    victim = sorted((data / "red").iterdir())[0]
    make_image(victim, (10, 10, 10), 424242)
    proc = imgcls("train", "--run", run, cwd=root, code=4)
    assert victim.name in proc.stderr and "changed" in proc.stderr


def test_run_commands_work_from_the_run_folder_alone_in_a_subfolder(project):
    root, cfg, data = project
    run = jimgcls("train", "-c", str(cfg), cwd=root)["run"]
    sub = root / "deeper" / "still"
    sub.mkdir(parents=True)
    img = str(next((data / "red").iterdir()))
    assert jimgcls("predict", "--run", run, img, cwd=sub)["predictions"][0]["image"] == img
    assert jimgcls("status", "--run", run, cwd=sub)["run"] == run
    listed = jimgcls("runs", cwd=sub)["runs"]
    assert [r["run"] for r in listed] == [run] and listed[0]["state"] == "trained"
    assert jimgcls("down", "--run", run, cwd=sub)["message"].startswith("nothing live")


def test_down_after_an_edit_stops_every_live_run_of_the_config(project):
    root, cfg, _ = project
    first = jimgcls("deploy", "-c", str(cfg), "--detach", cwd=root)
    url = first["deployment"]["endpoint"]
    cfg.write_text(cfg.read_text() + "train: {budget_minutes: 2}\n")    # an edit: a new run on the next train
    second = jimgcls("run", "-c", str(cfg), cwd=root)
    assert second["run"] != first["run"]
    dry = jimgcls("down", "-c", str(cfg), "--dry-run", cwd=root)
    assert sorted(d["run"] for d in dry["deleted"]) == sorted([first["run"], second["run"]])
    assert len(_servers(root)) == 2                                      # a dry run changes nothing
    out = jimgcls("down", "-c", str(cfg), cwd=root)
    assert sorted(d["run"] for d in out["deleted"]) == sorted([first["run"], second["run"]])
    assert _servers(root) == [] and not _our_processes(root)
    with pytest.raises(OSError):
        import urllib.request
        urllib.request.urlopen(url + "/health", timeout=2)
    assert jimgcls("down", "-c", str(cfg), cwd=root)["message"].startswith("nothing live")


def test_two_deploys_at_once_leave_one_server(project):
    root, cfg, _ = project
    run = jimgcls("train", "-c", str(cfg), cwd=root)["run"]
    argv = [sys.executable, "-m", "imgcls.cli", "--json", "deploy", "-c", str(cfg), "--detach"]
    procs = [subprocess.Popen(argv, cwd=root, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    outs = [json.loads(p.communicate(timeout=180)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert {o["run"] for o in outs} == {run} and len({o["deployment"]["endpoint"] for o in outs}) == 1
    assert len([r for r in _servers(root) if r["status"] == "active"]) == 1
    assert len(_our_processes(root)) == 1                      # one server process serves the run
    jimgcls("down", "-c", str(cfg), cwd=root)
    assert not _our_processes(root)


def test_down_never_signals_a_process_it_did_not_start(project):
    root, cfg, _ = project
    out = jimgcls("deploy", "-c", str(cfg), "--detach", cwd=root)
    run = Run(root / ".imgcls" / "runs" / out["run"])
    server = run.resource("server")
    os.kill(server["pid"], signal.SIGKILL)                        # the server dies behind our back…
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "imgcls", "serve"])
    try:
        run.record("server", server["id"], pid=stranger.pid)      # …and its pid now names another imgcls-ish process
        status = jimgcls("status", "--run", run.id, cwd=root)
        assert {r["kind"]: r["observed"] for r in status["resources"] if r["status"] == "active"}["server"] == "gone"
        jimgcls("down", "--run", run.id, cwd=root)
        assert stranger.poll() is None                             # still running: it was never ours
    finally:
        stranger.kill()
        stranger.wait()


def test_status_after_a_killed_training_reports_and_does_not_train(project):
    root, cfg, _ = project
    cfg.write_text(cfg.read_text() + "train: {preset: best, budget_minutes: 1}\n")
    proc = subprocess.Popen([sys.executable, "-m", "imgcls.cli", "train", "-c", str(cfg)], cwd=root, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs_dir = root / ".imgcls" / "runs"
    _wait_for(proc, lambda: any((r.operation("train") or {}).get("state") == "running" for r in list_runs(runs_dir)))
    proc.kill()
    proc.wait()
    (run,) = list_runs(runs_dir)
    started = time.monotonic()
    status = jimgcls("status", "-c", str(cfg), cwd=root)
    assert status["training"]["state"] == "interrupted" and "train --run" in status["training"]["status"]
    assert time.monotonic() - started < 30 and not (run.path / "artifacts" / "model" / "model.onnx").exists()


def _wait_for(proc, condition, limit: float = 240) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if condition():
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"the condition never held (exit {proc.poll()})")


KILL_POINTS = {
    "after import": lambda run: run.step("import") is not None,
    "mid-train": lambda run: (run.operation("train") or {}).get("state") == "running",
    "after deploy": lambda run: bool(run.resources("server")) or bool(run.pending("server")),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_matrix_resume_and_down_leave_nothing(project, point):
    """SIGKILL `imgcls run` at a step; status only reads, `run --run` resumes, `down` leaves no process."""
    root, cfg, _ = project
    runs_dir = root / ".imgcls" / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "imgcls.cli", "run", "-c", str(cfg)], cwd=root, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(proc, lambda: any(KILL_POINTS[point](r) for r in list_runs(runs_dir)))
    proc.kill()
    assert proc.wait() == -9, f"`imgcls run` ended before the kill point '{point}'"
    (run,) = list_runs(runs_dir)
    before = json.loads(run.ledger_path.read_text())
    jimgcls("status", "--run", run.id, cwd=root)
    assert json.loads(run.ledger_path.read_text()) == before          # status wrote nothing
    out = jimgcls("run", "--run", run.id, cwd=root)
    assert out["run"] == run.id and out["evaluation"]["metrics"]["n_images"] > 0
    jimgcls("down", "--run", run.id, cwd=root)
    assert not _our_processes(root), [p.cmdline() for p in _our_processes(root)]
    assert Run(run.path).live() == []
    shutil.rmtree(runs_dir)


DOWN_FROM_ANOTHER_THREAD = """
import sys, threading, time
import imgcls.api as api
cfg = api.load(sys.argv[1])
run, _ = api.train(cfg)
done = []
serving = threading.Thread(target=lambda: done.append(api.deploy(cfg, run.id)[1]), daemon=True)
serving.start()
while not run.resources("server") and serving.is_alive():
    time.sleep(0.1)
out = api.down(cfg, run.id)
serving.join(timeout=30)
print("deleted", [d["kind"] for d in out["deleted"]], "deploy returned", done[0].status, "alive", serving.is_alive())
"""


def test_down_from_another_thread_stops_a_foreground_server_not_the_caller(project):
    """A notebook serves in a thread (deploy in the foreground) and calls down: the ledger's pid is its own,
    and down used to SIGTERM it; now the server stops and the caller goes on."""
    root, cfg, _ = project
    proc = subprocess.run([sys.executable, "-c", DOWN_FROM_ANOTHER_THREAD, str(cfg)], cwd=root, capture_output=True,
                          text=True, timeout=300, env=ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "deleted ['server'] deploy returned stopped alive False" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    assert not _our_processes(root)


TRAIN_FROM_TWO_THREADS = """
import sys, threading
import imgcls.api as api
cfgs = [api.load(path) for path in sys.argv[1:]]
got = {}
def train(i, cfg):
    try:
        got[i] = api.train(cfg)[0].id
    except BaseException as exc:
        got[i] = f"{type(exc).__name__}: {exc}"
threads = [threading.Thread(target=train, args=(i, c)) for i, c in enumerate(cfgs)]
for t in threads: t.start()
for t in threads: t.join()
print(sorted(got.values()))
"""


def test_two_threads_training_one_config_share_one_run_and_both_succeed(project):
    """Two threads of one process training at once: one run per config and data (both used to make a run),
    and torch's exporter taken in turns (one thread failed with torch's AssertionError)."""
    root, cfg, _ = project
    other = root / "other.yaml"
    other.write_text(cfg.read_text().replace("name: rs", "name: rs2"))
    proc = subprocess.run([sys.executable, "-c", TRAIN_FROM_TWO_THREADS, str(cfg), str(cfg), str(other)], cwd=root,
                          capture_output=True, text=True, timeout=600, env=ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ids = ast.literal_eval(proc.stdout.strip().splitlines()[-1])
    assert all("-local-" in i and ":" not in i for i in ids), ids
    assert len(set(ids)) == 2 and sorted(r.name for r in list_runs(root / ".imgcls" / "runs")) == ["rs", "rs2"]


def test_predict_scores_offline_when_the_server_died_and_endpoint_says_so(project):
    """A deployed run whose server is gone (killed, a reboot): predict scores with the exported model and
    says so; predict --endpoint, which asked for the server, is a provider error (exit 6)."""
    root, cfg, data = project
    jimgcls("deploy", "-c", str(cfg), "--detach", cwd=root)
    (server,) = _our_processes(root)
    server.kill()
    server.wait(timeout=10)
    image = str(next((data / "red").iterdir()))
    proc = imgcls("--json", "predict", "-c", str(cfg), image, cwd=root)
    assert json.loads(proc.stdout)["predictions"][0]["labels"][0] == "red"
    assert "server is not running: scoring with its exported model here" in proc.stderr
    proc = imgcls("predict", "-c", str(cfg), "--endpoint", image, cwd=root, code=6)
    assert "the run's model server is not running" in proc.stderr
    jimgcls("down", "-c", str(cfg), cwd=root)

"""The CLI end to end on `local`: --json documents, gates (exit 9), compare, --no-wait + status, timeouts."""
from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import make_dataset

ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}
# the allocator path a training process reports (providers/local/allocator.py)
ALLOCATOR = ("glibc-tuned" if platform.libc_ver()[0] == "glibc" else "default") if not ENV.get("LD_PRELOAD") else None


def imgcls(*args, cwd, check_code=None):
    proc = subprocess.run([sys.executable, "-m", "imgcls.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=ENV, timeout=300)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    if check_code is not None:
        assert proc.returncode == check_code, (proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A config on generated images and one evaluated run, shared by the tests below."""
    root = tmp_path_factory.mktemp("cli")
    data = make_dataset(root / "data", {"red": 10, "green": 10, "blue": 10}, size=(96, 72))
    cfg = root / "run.yaml"
    cfg.write_text(f"name: cli\ndataset:\n  source: {data}\nsplit: {{validation: 0.2, test: 0.3}}\n"
                   f"deploy: {{port: 0}}\nevaluate: {{report: false}}\n")
    proc = imgcls("--json", "evaluate", "-c", str(cfg), cwd=root, check_code=0)
    doc = json.loads(proc.stdout)
    return root, cfg, doc


def test_evaluate_json_is_one_document(project):
    _, _, doc = project
    ev = doc["evaluation"]
    assert doc["run"] and ev["provider"] == "local" and ev["metrics"]["n_images"] == 9
    assert set(ev["metrics"]["per_label"]) == {"red", "green", "blue"}


def test_gate_that_fails_exits_9_and_json_carries_gates(project):
    root, cfg, doc = project
    # accuracy > 1.0 can never hold (a bound past 1, such as >=1.01, is refused as a usage error up front)
    proc = imgcls("--json", "evaluate", "-c", str(cfg), "--run", doc["run"], "--gate", "accuracy>1.0",
                  "--gate", "recall@red>=0.0", cwd=root, check_code=9)
    out = json.loads(proc.stdout)
    gates = {g["metric"]: g for g in out["gates"]}
    assert gates["accuracy"]["passed"] is False and gates["accuracy"]["bound"] == 1.0
    assert gates["recall@red"]["passed"] is True
    assert out["error"]["exit_code"] == 9
    proc = imgcls("evaluate", "-c", str(cfg), "--run", doc["run"], "--gate", "accuracy>1.0", cwd=root,
                  check_code=9)
    assert "accuracy = " in proc.stderr and "needs > 1.0" in proc.stderr


def test_gate_that_holds_exits_0(project):
    root, cfg, doc = project
    proc = imgcls("--json", "evaluate", "-c", str(cfg), "--run", doc["run"], "--gate", "accuracy>=0.0",
                  "--set", "evaluate.gates.macro_f1=0.0", cwd=root, check_code=0)
    gates = json.loads(proc.stdout)["evaluation"]["gates"]
    assert [g["passed"] for g in gates] == [True, True]


def test_bad_gate_syntax_is_usage_error(project):
    root, cfg, doc = project
    proc = imgcls("evaluate", "-c", str(cfg), "--run", doc["run"], "--gate", "accuracy=high", cwd=root,
                  check_code=2)
    assert "METRIC>=VALUE" in proc.stderr


def test_compare_two_runs_on_the_same_split(project):
    root, cfg, doc = project
    second = json.loads(imgcls("--json", "run", "-c", str(cfg), "--set", "local.tta=true", cwd=root,
                               check_code=0).stdout)
    down = imgcls("down", "-c", str(cfg), "--run", second["run"], cwd=root, check_code=0)
    said = [line.split()[1:3] for line in down.stdout.splitlines() if line.startswith("deleted ")]
    assert said, down.stdout  # each deleted resource said once: what happens on stderr, the outcome on stdout
    assert all(" ".join(["deleting", *r]) in down.stderr for r in said) and "deleted" not in down.stderr
    proc = imgcls("compare", doc["run"], second["run"], "--html", str(root / "cmp.html"), cwd=root, check_code=0)
    assert doc["run"] in proc.stdout and "McNemar p" in proc.stdout and "bootstrap CI" in proc.stdout
    assert (root / "cmp.html").read_text().count("<tr>") == 3
    out = json.loads(imgcls("--json", "compare", doc["run"], second["run"], cwd=root, check_code=0).stdout)
    assert out["n_images"] == 9 and len(out["pairwise"]) == 1


def test_compare_refuses_different_splits(project, tmp_path):
    root, cfg, doc = project
    other = tmp_path / "other.yaml"
    other.write_text(cfg.read_text().replace("test: 0.3", "test: 0.4") + f"runs_dir: {root / '.imgcls/runs'}\n")
    run2 = json.loads(imgcls("--json", "evaluate", "-c", str(other), cwd=root, check_code=0).stdout)["run"]
    proc = imgcls("compare", doc["run"], run2, cwd=root, check_code=4)
    assert "different images" in proc.stderr and "--force" in proc.stderr
    imgcls("compare", doc["run"], run2, "--force", cwd=root, check_code=0)


def test_a_run_given_twice_to_compare_is_a_usage_error(project):
    root, _, doc = project
    proc = imgcls("compare", doc["run"], doc["run"], cwd=root, check_code=2)
    assert f"run {doc['run']} is given twice" in proc.stderr


def test_an_undecodable_input_is_named_by_its_path(project, tmp_path):
    root, cfg, _ = project
    good, empty = next((root / "data").rglob("*.jpg")), tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    proc = imgcls("predict", "-c", str(cfg), str(good), str(empty), cwd=root, check_code=4)
    assert f"{empty} is not a decodable image" in proc.stderr and "image #" not in proc.stderr


def test_predict_batch_gives_the_endpoints_predictions_in_input_order(project, tmp_path, monkeypatch):
    """`predict --batch` (in-process, over the exported model) against online `predict` through the run's
    HTTP endpoint: the same labels and scores, input order kept, a repeated image and an import file's
    images each once per mention."""
    from imgcls import api
    root, cfg, doc = project
    monkeypatch.chdir(root)
    new = make_dataset(tmp_path / "new", {"red": 3, "green": 3, "blue": 3}, seed=11, size=(96, 72))
    paths = [str(p) for trio in zip(*[sorted((new / c).iterdir()) for c in ("red", "green", "blue")]) for p in trio]
    listing = tmp_path / "more.csv"
    listing.write_text(f"{paths[1]}\n{paths[0]}\n")
    given = [*paths, paths[3], str(listing)]
    expected = [*paths, paths[3], paths[1], paths[0]]
    deployed = api.load(cfg, overrides=["deploy.detach=true"])
    api.deploy(deployed, doc["run"])
    try:
        online = api.predict(deployed, given, doc["run"])
        batch = json.loads(imgcls("--json", "predict", "--batch", "--run", doc["run"], *given, cwd=root,
                                  check_code=0).stdout)["predictions"]
    finally:
        api.down(deployed, doc["run"])
    assert [p.image for p in online] == [b["image"] for b in batch] == expected
    assert [p.labels for p in online] == [b["labels"] for b in batch]
    for o, b in zip(online, batch):
        assert list(o.scores) == list(b["scores"])
        assert all(abs(o.scores[k] - b["scores"][k]) <= 1e-5 for k in o.scores)
    assert sum((p.labels or [""])[0] == Path(p.image).parent.name for p in online) >= 7


def test_no_wait_trains_in_the_background_and_status_sees_it(tmp_path):
    data = make_dataset(tmp_path / "data", {"red": 6, "blue": 6}, size=(64, 48))
    cfg = tmp_path / "bg.yaml"
    cfg.write_text(f"name: bg\ndataset:\n  source: {data}\nsplit: {{validation: 0.2, test: 0.3}}\n")
    out = json.loads(imgcls("--json", "train", "-c", str(cfg), "--no-wait", cwd=tmp_path, check_code=0).stdout)
    assert out["train"]["status"] == "running"
    run = out["run"]
    deadline = time.monotonic() + 180
    state = None
    while time.monotonic() < deadline:
        status = json.loads(imgcls("--json", "status", "-c", str(cfg), "--run", run, cwd=tmp_path,
                                   check_code=0).stdout)
        state = status["training"]["state"]
        if state != "running":
            break
        time.sleep(2)
    assert state == "succeeded"
    out = json.loads(imgcls("--json", "train", "-c", str(cfg), "--run", run, cwd=tmp_path, check_code=0).stdout)
    assert out["train"]["status"] == "succeeded" and Path(out["train"]["model_id"], "model.onnx").exists()
    assert out["train"]["extra"]["allocator"] == ALLOCATOR or ALLOCATOR is None  # the worker's own process


def start_best_training(tmp_path, name: str, budget_minutes: float, until: str, output=subprocess.PIPE):
    """`imgcls --json train` of a `best` config on 16 generated images, in the background, returned once
    `until` (a glob under tmp_path: work/checkpoint.pt…) exists or the process ended: (process, config)."""
    data = make_dataset(tmp_path / "data", {"red": 8, "blue": 8}, size=(64, 48))
    cfg = tmp_path / "best.yaml"
    cfg.write_text(f"name: {name}\ndataset:\n  source: {data}\nsplit: {{validation: 0.25, test: 0.25}}\n"
                   f"train: {{preset: best, budget_minutes: {budget_minutes}}}\nevaluate: {{report: false}}\n")
    proc = subprocess.Popen([sys.executable, "-m", "imgcls.cli", "--json", "train", "-c", str(cfg)], cwd=tmp_path,
                            env=ENV, stdout=output, stderr=output, text=True)
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline and not list(tmp_path.rglob(until)):
        time.sleep(0.1)
    return proc, cfg


def test_a_killed_best_training_resumes_from_its_checkpoint_with_run(tmp_path):
    """SIGKILL, not Ctrl-C: no handler runs, so only the checkpoint written after every epoch is left."""
    proc, cfg = start_best_training(tmp_path, "killed", 1, "work/checkpoint.pt", output=subprocess.DEVNULL)
    proc.kill()
    assert proc.wait() == -9, "training ended before its first checkpoint"
    (ckpt,) = tmp_path.rglob("work/checkpoint.pt")
    run = ckpt.parent.parent.name
    out = json.loads(imgcls("--json", "train", "-c", str(cfg), "--run", run, cwd=tmp_path, check_code=0).stdout)
    assert out["run"] == run and out["train"]["status"] == "succeeded"
    assert out["train"]["extra"]["allocator"] == ALLOCATOR or ALLOCATOR is None
    status = json.loads((ckpt.parent / "status.json").read_text())
    assert status["resumed"] and status["start_epoch"] >= 1 and status["epochs"] > status["start_epoch"]


def test_ctrl_c_names_the_run_to_resume(tmp_path):
    proc, _ = start_best_training(tmp_path, "stopped", 1, "work/checkpoint.pt")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    (ckpt,) = tmp_path.rglob("work/checkpoint.pt")
    doc = json.loads(out)
    assert doc["error"] == "Interrupted" and doc["run"] == ckpt.parent.parent.name
    assert f"--run {doc['run']}" in doc["hint"]


def test_a_second_train_on_the_same_run_waits_for_the_first_instead_of_training_too(tmp_path):
    first, cfg = start_best_training(tmp_path, "twice", 0.3, "work/.training.pid")
    (holder,) = tmp_path.rglob("work/.training.pid")
    assert first.poll() is None, "the first training ended before the second could start"
    run = holder.parent.parent.name
    second = imgcls("train", "-c", str(cfg), "--run", run, cwd=tmp_path, check_code=0)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err[-2000:]
    assert json.loads(out)["train"]["status"] == "succeeded" and "succeeded" in second.stdout
    assert f"another imgcls process (pid {first.pid})" in second.stderr, second.stderr[-2000:]
    assert "training 'best'" not in second.stderr  # one trained, the other waited for it
    assert json.loads((holder.parent / "status.json").read_text())["resumed"] is False


def test_init_writes_a_valid_config(tmp_path):
    imgcls("init", "starter.yaml", "--source", "imgs/", cwd=tmp_path, check_code=0)
    imgcls("config", "show", "-c", "starter.yaml", cwd=tmp_path, check_code=0)
    imgcls("init", "starter.yaml", cwd=tmp_path, check_code=2)  # no overwrite without --force


def test_a_config_of_another_task_is_refused_with_run_and_train_settings_are_said_not_to_apply(project, tmp_path):
    """--run with a multilabel config on a multiclass run used to score its softmax model as multilabel and
    overwrite its evaluation; other train settings on a trained run silently did nothing."""
    root, cfg, doc = project
    evaluation = next((root / ".imgcls" / "runs" / doc["run"]).rglob("evaluation.json"))
    before = evaluation.read_bytes()
    other = tmp_path / "other.yaml"
    other.write_text(cfg.read_text() + "task: multilabel\n")
    proc = imgcls("evaluate", "-c", str(other), "--run", doc["run"], cwd=root, check_code=2)
    assert f"run {doc['run']} is a multiclass run; this config says task: multilabel" in proc.stderr
    assert evaluation.read_bytes() == before
    proc = imgcls("evaluate", "-c", str(cfg), "--run", doc["run"], "--set", "train.preset=best", cwd=root, check_code=0)
    assert f"run {doc['run']} is trained already; this config's train.preset do not apply" in proc.stderr

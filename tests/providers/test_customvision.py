"""The customvision provider against the fake Custom Vision service, through the real SDK: the whole
flow from the repo's config by CLI, per-image refusals, throttling, interrupted imports, keys, reused
projects, export, and golden files of the requests we send."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("azure.cognitiveservices.vision.customvision")

from imgcls import api
from imgcls.errors import AuthError, DataError, ProviderError, UnsupportedError
from imgcls.progress import Progress
from imgcls.runs import Run
from tests.conftest import COLOURS, assert_golden, make_dataset, make_image
from tests.fakes.customvision import FakeCustomVision

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "customvision.yaml"
GOLDEN = REPO / "tests" / "golden" / "customvision"
TRAINING_KEY, PREDICTION_KEY = "cv-training-key-0f1e2d", "cv-prediction-key-9a8b7c"
UPLOAD = re.compile(r"/training/projects/[^/]+/images/files$")


@pytest.fixture
def fake(monkeypatch):
    with FakeCustomVision(training_key=TRAINING_KEY, prediction_key=PREDICTION_KEY,
                          train_seconds=0.1, export_seconds=0.1) as f:
        for name, value in f.env().items():
            monkeypatch.setenv(name, value)
        yield f


def cli(*args: str, cwd: Path, env: dict | None = None, as_json: bool = True) -> tuple[int, dict | None, str, str]:
    """Run `python -m imgcls.cli [--json] ARGS`: (exit code, the JSON document, stdout, stderr)."""
    flags = ["--json"] if as_json else []
    proc = subprocess.run([sys.executable, "-m", "imgcls.cli", *flags, *args], cwd=cwd, text=True, check=False,
                          capture_output=True, env=env if env is not None else dict(os.environ), timeout=120)
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        doc = None
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc.returncode, doc, proc.stdout, proc.stderr


def write_cfg(tmp_path: Path, source: Path, extra: str = "", name: str = "cvtest") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\nprovider: customvision\ndataset:\n  source: {source}\n"
                    f"split: {{validation: 0.1, test: 0.2}}\n{extra}")
    return path


def upload_bodies(fake, since: int = 0, ok_only: bool = True) -> list[dict]:
    return [json.loads(r.body) for r in fake.requests[since:]
            if r.method == "POST" and UPLOAD.search(r.path) and (r.status in (200, 207) or not ok_only)]


def only_project(fake):
    (project,) = fake.state.projects.values()
    return project


def train_val(run: Run) -> list[dict]:
    rows = [json.loads(line) for line in run.file("manifest.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] in ("train", "validation")]


# -- 1. the repo's config end to end, by CLI; down leaves nothing; --keep-project keeps the project --

def test_run_from_repo_config_then_down_leaves_nothing(fake, tmp_path):
    data = make_dataset(tmp_path / "data", {"red": 12, "green": 12, "blue": 12}, size=(96, 72))
    code, doc, out, err = cli("run", "-c", str(CONFIG), "--set", f"dataset.source={data}", cwd=tmp_path)
    assert code == 0, err
    run = Run(tmp_path / ".imgcls" / "runs" / doc["run"])
    assert doc["deployment"]["status"] == "published" and len(doc["predictions"]) == 3
    assert doc["evaluation"]["metrics"]["accuracy"] >= 0.7
    service = doc["evaluation"]["service_metrics"]
    assert set(service["per_label"]) == {"red", "green", "blue"} and 0 <= service["precision"] <= 1
    # train+validation went up, the test split did not: it was scored through the publication
    project = only_project(fake)
    uploaded = {im.sha256 for im in project.images.values()}
    assert uploaded == {r["sha256"] for r in train_val(run)}
    tests = [r for r in (json.loads(x) for x in run.file("manifest.jsonl").read_text().splitlines())
             if r["split"] == "test"]
    assert tests and not uploaded & {r["sha256"] for r in tests}
    assert doc["evaluation"]["metrics"]["n_images"] == len(tests)
    (iteration,) = project.iterations.values()
    assert iteration.publish_name == f"flowers-{run.id.removeprefix('flowers-customvision-')}"
    # keys reach neither the output nor the run folder
    files = "".join(p.read_text(errors="replace") for p in run.path.rglob("*") if p.is_file())
    for key in (TRAINING_KEY, PREDICTION_KEY):
        assert key not in out + err + files

    code, doc, _, err = cli("down", "-c", str(CONFIG), "--run", run.id, "--keep-project", cwd=tmp_path)
    assert code == 0, err
    assert {r["kind"] for r in doc["kept"]} == {"project", "image"}
    project = only_project(fake)
    assert len(project.images) == len(uploaded) and project.iterations == {}

    result = api.down(api.load(CONFIG, overrides=[f"dataset.source={data}"]), run.id)
    assert {r["kind"] for r in result["deleted"]} == {"project", "image"}
    assert fake.state.is_empty() and Run(run.path).resources() == []


# -- 2. the service refuses one image: named, the rest uploaded; the re-run sends only it -----------

def test_refused_image_is_named_and_only_it_is_sent_again(fake, tmp_path):
    data = make_dataset(tmp_path / "data", {"red": 12, "green": 12, "blue": 12}, size=(96, 72))
    cfg_path = write_cfg(tmp_path, data)
    manifest = api.build_manifest(api.load(cfg_path))
    bad = manifest[manifest["split"] == "train"].iloc[0]
    fake.refuse_images[bad["sha256"]] = "ErrorImageFormat"   # its decoder refuses what Pillow reads

    code, doc, _, err = cli("dataset-import", "-c", str(cfg_path), cwd=tmp_path)
    assert code == 4, err
    assert bad["uri"] in doc["message"] and "ErrorImageFormat" in doc["message"]
    assert doc["details"]["failed"] == {bad["uri"]: "ErrorImageFormat"}
    n_up = int((manifest["split"] != "test").sum())
    assert len(only_project(fake).images) == n_up - 1          # the good ones are in
    run_id = next((tmp_path / ".imgcls" / "runs").iterdir()).name

    Image.open(bad["uri"]).save(bad["uri"], "JPEG", quality=80)   # the user fixes the file
    before = len(fake.requests)
    _, ref = api.import_dataset(api.load(cfg_path), run_id)
    bodies = upload_bodies(fake, before)
    assert [len(b["images"]) for b in bodies] == [1] and bodies[0]["images"][0]["name"] == Path(bad["uri"]).name
    assert len(only_project(fake).images) == n_up and ref.extra["uploaded"] == n_up


# -- 3. a 429 storm slows the upload, honouring Retry-After, and loses nothing ----------------------

def test_throttling_storm_slows_upload_but_loses_nothing(fake, tmp_path):
    data = make_dataset(tmp_path / "data", {"red": 10, "green": 10, "blue": 10}, size=(96, 72))
    cfg = api.load(write_cfg(tmp_path, data))
    fake.faults.add("POST", UPLOAD.pattern, 429, times=3, headers={"Retry-After": "1"})
    log = io.StringIO()
    started = time.monotonic()
    run, ref = api.import_dataset(cfg, progress=Progress(stream=log))
    assert time.monotonic() - started >= 3.0                   # three answers of Retry-After: 1
    statuses = [r.status for r in fake.requests if UPLOAD.search(r.path)]
    assert statuses == [429, 429, 429, 200]
    assert {im.sha256 for im in only_project(fake).images.values()} == {r["sha256"] for r in train_val(run)}
    assert ref.extra["uploaded"] == len(train_val(run))
    assert log.getvalue().count("429") == 3 and "retrying in 1.0 s" in log.getvalue()


# -- 4. an import interrupted on its 2nd batch fails (exit 6); the re-run sends only what is missing -

@pytest.mark.parametrize("status", [500, 0], ids=["server-error", "dropped-connection"])
def test_interrupted_import_resumes_with_only_the_missing_images(fake, tmp_path, status):
    data = make_dataset(tmp_path / "data", {"red": 30, "green": 30, "blue": 30}, size=(64, 48))
    cfg_path = write_cfg(tmp_path, data, "customvision: {retries: 1}\n")
    fake.faults.add("POST", UPLOAD.pattern, status, times=None, after=1)   # every try of batch 2 fails
    if status == 500:       # by CLI, for the exit code
        code, doc, _, err = cli("dataset-import", "-c", str(cfg_path), cwd=tmp_path)
        assert code == 6 and "Injected fault 500. (ErrorUnknown) after 2 attempts" in doc["message"], err
    else:
        with pytest.raises(ProviderError) as e:
            api.import_dataset(api.load(cfg_path))
        assert e.value.exit_code == 6 and "cannot reach" in e.value.message
    first = upload_bodies(fake)
    assert [len(b["images"]) for b in first] == [64]
    assert len(only_project(fake).images) == 64

    fake.faults.clear()
    run = Run(next((tmp_path / ".imgcls" / "runs").iterdir()))
    before = len(fake.requests)
    _, ref = api.import_dataset(api.load(cfg_path), run.id)
    wanted = len(train_val(run))
    resent = upload_bodies(fake, before)
    assert [len(b["images"]) for b in resent] == [wanted - 64]
    sent_names = [e["name"] for b in first + resent for e in b["images"]]
    assert len(sent_names) == len(set(sent_names)) == wanted   # nothing sent twice
    assert len(only_project(fake).images) == wanted and ref.extra["uploaded"] == wanted


def test_batches_stay_within_64_images_and_20_tags(fake, tmp_path):
    labels = {f"c{i:02d}": 5 for i in range(25)}
    data = make_dataset(tmp_path / "data", labels, size=(32, 32))
    cfg = api.load(write_cfg(tmp_path, data), overrides=["split.validation=0", "split.test=0"])
    api.import_dataset(cfg)
    bodies = upload_bodies(fake)
    assert all(len(b["images"]) <= 64 for b in bodies)
    assert all(len({t for e in b["images"] for t in e["tagIds"]}) <= 20 for b in bodies)
    assert sum(len(b["images"]) for b in bodies) == 125 == len(only_project(fake).images)
    assert len(only_project(fake).tags) == 25


# -- 5. missing or wrong keys: exit 5, the setting named, the key never printed -----------------------

def test_missing_or_wrong_training_key_exits_5_naming_the_setting(fake, tmp_path):
    data = make_dataset(tmp_path / "data", {"red": 6, "green": 6}, size=(64, 48))
    env = {k: v for k, v in os.environ.items() if k != "VISION_TRAINING_KEY"}
    args = ("dataset-import", "-c", str(CONFIG), "--set", f"dataset.source={data}")
    code, doc, out, err = cli(*args, cwd=tmp_path, env=env)
    assert code == 5 and doc["error"] == "AuthError", out + err
    assert "customvision.training_key" in doc["message"] and "VISION_TRAINING_KEY" in doc["message"]

    wrong = "wrong-key-5d4c3b2a"
    code, doc, out, err = cli(*args, cwd=tmp_path, env={**env, "VISION_TRAINING_KEY": wrong})
    assert code == 5 and "customvision.training_key" in doc["message"] + doc["hint"], out + err
    code_h, _, out_h, err_h = cli(*args, cwd=tmp_path, env={**env, "VISION_TRAINING_KEY": wrong}, as_json=False)
    assert code_h == 5 and "customvision.training_key" in err_h
    for key in (wrong, TRAINING_KEY, PREDICTION_KEY):
        assert key not in out + err + out_h + err_h
    assert fake.state.is_empty()


def test_wrong_prediction_key_names_its_setting(fake, tmp_path, monkeypatch):
    data = make_dataset(tmp_path / "data", {"red": 8, "green": 8}, size=(64, 48))
    cfg = api.load(write_cfg(tmp_path, data))
    run, _ = api.train(cfg)
    monkeypatch.setenv("VISION_PREDICTION_KEY", "not-the-prediction-key")
    with pytest.raises(AuthError) as e:
        api.evaluate(cfg, run.id)
    assert "customvision.prediction_key" in str(e.value) and "not-the-prediction-key" not in str(e.value)
    api.down(cfg, run.id)
    assert fake.state.is_empty()


# -- 6. training: Advanced from preset best, --no-wait then pick-up, a failed iteration ----------------

def test_no_wait_then_pick_up_with_advanced_training(fake, tmp_path):
    data = make_dataset(tmp_path / "data", {"red": 8, "green": 8}, size=(64, 48))
    cfg = api.load(write_cfg(tmp_path, data, "train: {preset: best, node_hours: 2.5}\n"))
    fake.train_seconds = 1.0
    run, started = api.train(cfg, wait=False)
    assert started.status == "running"
    op = Run(run.path).operation("train")
    (train_req,) = [r for r in fake.requests if r.path.endswith("/train")]
    assert train_req.query["trainingtype"] == "Advanced" and train_req.query["reservedbudgetinhours"] == "3"
    assert op["id"] in only_project(fake).iterations            # recorded at once, before any wait
    assert api.status(cfg, run.id)["training"]["state"] == "running"
    _, done = api.train(cfg, run.id)
    assert done.status == "succeeded" and done.model_id == op["id"]
    assert len([r for r in fake.requests if r.path.endswith("/train")]) == 1   # picked up, not restarted
    with pytest.raises(UnsupportedError) as e:                 # General [A2] is not a compact domain
        api.export(cfg, run.id)
    assert e.value.exit_code == 7 and "compact" in e.value.hint
    api.down(cfg, run.id)
    assert fake.state.is_empty()


def test_failed_iteration_exits_6_with_the_service_reason(fake, tmp_path):
    data = make_dataset(tmp_path / "data", {"red": 8, "green": 8}, size=(64, 48))
    cfg_path = write_cfg(tmp_path, data)
    fake.fail_next_training("Training failed: the images of every tag look alike.")
    code, doc, _, err = cli("train", "-c", str(cfg_path), cwd=tmp_path)
    assert code == 6, err
    assert "the images of every tag look alike" in doc["message"]
    run = Run(next((tmp_path / ".imgcls" / "runs").iterdir()))
    _, result = api.train(api.load(cfg_path), run.id)       # trying again trains a new iteration
    assert result.status == "succeeded" and len(only_project(fake).iterations) == 2
    api.down(api.load(cfg_path), run.id)
    assert fake.state.is_empty()


# -- 7. export from a compact domain, by CLI, into the run's artifacts ---------------------------------

def test_export_from_compact_domain(fake, tmp_path):
    data = make_dataset(tmp_path / "data", {"red": 8, "green": 8}, size=(64, 48))
    cfg_path = write_cfg(tmp_path, data, "customvision:\n  domain: General (compact)\n"
                                         "  export_platforms: [onnx, TensorFlow]\n")
    run, _ = api.train(api.load(cfg_path))
    code, doc, _, err = cli("export", "-c", str(cfg_path), "--run", run.id, cwd=tmp_path)
    assert code == 0, err
    files = [Path(f) for f in doc["files"]]
    assert [f.name for f in files] == ["cvtest-onnx.zip", "cvtest-tensorflow.zip"]
    assert all(f.parent == run.file("artifacts", "export") for f in files)
    with zipfile.ZipFile(files[0]) as zf:
        assert json.loads(zf.read("manifest.json"))["platform"] == "ONNX"
        assert sorted(zf.read("labels.txt").decode().split()) == ["green", "red"]
    assert only_project(fake).target_export_platforms == ["ONNX", "TensorFlow"]


# -- 8. a project that existed before the run is used, never deleted -----------------------------------

def test_reused_project_survives_down(fake, tmp_path):
    from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
    from azure.cognitiveservices.vision.customvision.training.models import (
        ImageFileCreateBatch,
        ImageFileCreateEntry,
    )
    from msrest.authentication import ApiKeyCredentials

    data = make_dataset(tmp_path / "data", {"red": 8, "green": 8}, size=(64, 48))
    cfg_path = write_cfg(tmp_path, data)
    manifest = api.build_manifest(api.load(cfg_path))
    shared = manifest[(manifest["split"] == "train") & (manifest["labels"].map(tuple) == ("red",))].iloc[0]
    trainer = CustomVisionTrainingClient(fake.url, ApiKeyCredentials(in_headers={"Training-key": TRAINING_KEY}))
    mine = trainer.create_project("the user's own")
    red = trainer.create_tag(mine.id, "Red")
    own = [make_image(tmp_path / "own" / f"{i}.jpg", COLOURS["red"], 900 + i).read_bytes() for i in range(3)]
    own.append(Path(shared["uri"]).read_bytes())             # one of ours is already there
    trainer.create_images_from_files(mine.id, ImageFileCreateBatch(images=[
        ImageFileCreateEntry(name=f"{i}.jpg", contents=c, tag_ids=[red.id]) for i, c in enumerate(own)]))
    before = {im.id for im in fake.state.projects[mine.id].images.values()}

    cfg = api.load(write_cfg(tmp_path, data, f"customvision: {{project_id: {mine.id}}}\n"))
    run, ref = api.import_dataset(cfg)
    assert ref.id == mine.id and ref.extra["tags"]["red"] == red.id and ref.extra["duplicates"] == 1
    _, evaluation = api.evaluate(cfg, run.id)
    assert set(evaluation.metrics["per_label"]) == {"green", "red"}   # 'Red' answers as our 'red'
    assert evaluation.metrics["accuracy"] >= 0.6
    api.down(cfg, run.id)
    project = fake.state.projects[mine.id]                   # still there, as the user had it
    assert {im.id for im in project.images.values()} == before
    assert [t.name for t in project.tags.values()] == ["Red"] and project.iterations == {}
    statuses = {r["kind"]: r["status"] for r in Run(run.path).ledger["resources"]}
    assert statuses["project"] == "released" and statuses["iteration"] == "deleted"


# -- 9. big files: re-encoded client-side under 6 MB (training) and 4 MB (prediction), and said so -----

def noise_png(path: Path, side: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path, "PNG", compress_level=1)
    return path


def test_oversized_images_are_reencoded_and_reported(fake, tmp_path):
    data = tmp_path / "data"
    make_dataset(data / "train", {"red": 6, "green": 6}, size=(64, 48))
    make_dataset(data / "test", {"red": 2, "green": 2}, seed=7, size=(64, 48))
    big_train = noise_png(data / "train" / "red" / "big.png", 1500, 1)   # ~6.8 MB
    big_test = noise_png(data / "test" / "red" / "big.png", 1250, 2)     # ~4.7 MB
    assert big_train.stat().st_size > 6 * 2**20 and 4 * 2**20 < big_test.stat().st_size < 6 * 2**20
    cfg = api.load(write_cfg(tmp_path, data))
    log = io.StringIO()
    run, ref = api.import_dataset(cfg, progress=Progress(stream=log))
    assert ref.extra["reencoded"] == [str(big_train)]
    assert f"{big_train}: " in log.getvalue() and "6 MB limit" in log.getvalue()
    assert max(len(im.data) for im in only_project(fake).images.values()) <= 6 * 2**20
    api.evaluate(cfg, run.id, progress=Progress(stream=log))
    assert f"{big_test}: re-encoded" in log.getvalue() and "4 MB prediction limit" in log.getvalue()


# -- 10. golden files: the requests we send to create, tag, upload, train and publish -----------------

def _normalise(fake, run: Run, files: dict[str, str]) -> list[dict]:
    ids: dict[str, str] = {}
    short = run.id.removeprefix("golden-customvision-")

    def norm(text: str) -> str:
        text = text.replace(run.id, "<run>").replace(short, "<run-short>")
        return re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                      lambda m: ids.setdefault(m.group(0), f"<id-{len(ids) + 1}>")
                      if m.group(0) != "2e37d7fb-3a54-486a-b4d6-cfc369af0018" else m.group(0), text)

    out = []
    for r in fake.requests:
        if r.method == "GET":
            continue
        body = json.loads(r.body) if r.body else None
        for entry in (body or {}).get("images", []) if isinstance(body, dict) else []:
            digest = hashlib.sha256(base64.b64decode(entry["contents"])).hexdigest()
            entry["contents"] = f"sha256 of {files.get(digest, digest)}"
        out.append({"method": r.method, "path": norm(r.path),
                    "query": {k: norm(v) for k, v in sorted(r.query.items())},
                    "body": json.loads(norm(json.dumps(body))) if body is not None else None})
    return out


def test_golden_requests(fake, tmp_path):
    data = make_dataset(tmp_path / "data", {"red": 7, "green": 7}, size=(64, 48))
    cfg = api.load(write_cfg(tmp_path, data, name="golden"))
    run, _ = api.train(cfg)
    api.deploy(cfg, run.id)
    files = {hashlib.sha256(p.read_bytes()).hexdigest(): p.relative_to(data).as_posix()
             for p in data.rglob("*.jpg")}
    got = _normalise(fake, run, files)
    assert_golden(GOLDEN / "requests.json", json.dumps(got, indent=2) + "\n")
    api.down(cfg, run.id)
    assert fake.state.is_empty()


def test_too_few_images_outside_the_test_split_stop_before_anything_is_created(fake, tmp_path):
    data = make_dataset(tmp_path / "data", {"red": 5, "green": 8}, size=(64, 48))
    cfg = api.load(write_cfg(tmp_path, data))                 # 5 red pass validation; one goes to test
    with pytest.raises(DataError) as e:
        api.import_dataset(cfg)
    assert "'red' has 4" in e.value.message and e.value.exit_code == 4
    assert fake.state.is_empty()


def test_an_answer_that_is_not_json_is_a_provider_error_and_run_says_how_to_resume(fake, tmp_path):
    """A 200 whose body is junk (a proxy, a cut answer) was "unexpected error" (exit 1) from the SDK's
    deserializer; it is exit 6 naming the provider and step. `imgcls run` then names its run: the same
    command without --run would start a second run (and a second project)."""
    data = make_dataset(tmp_path / "data", {"red": 6, "green": 6, "blue": 6}, size=(64, 48))
    cfg_path = write_cfg(tmp_path, data)
    fake.faults.add("POST", r"/training/projects$", 200, headers={"Content-Type": "application/json"},
                    body=b"<html>proxy</html>")
    code, doc, _, err = cli("run", "-c", str(cfg_path), cwd=tmp_path)
    assert code == 6 and doc["message"].startswith("customvision upload: an answer imgcls could not use"), err
    assert doc["run"] and f"imgcls run --run {doc['run']}` resumes it" in doc["hint"] and "Traceback" not in err
    code, doc2, _, err = cli("run", "-c", str(cfg_path), "--run", doc["run"], cwd=tmp_path)
    assert code == 0 and doc2["run"] == doc["run"] and len(fake.state.projects) == 1, err
    assert cli("down", "-c", str(cfg_path), cwd=tmp_path)[0] == 0


def test_status_says_why_a_resource_shows_as_unknown(fake, tmp_path):
    """A 401 while status asks about the project: still exit 0 and "unknown", and now the reason is given."""
    data = make_dataset(tmp_path / "data", {"red": 6, "green": 6, "blue": 6}, size=(64, 48))
    cfg = api.load(write_cfg(tmp_path, data))
    run, _ = api.import_dataset(cfg)
    fake.faults.add("GET", r"/training/projects/[^/]+$", 401, times=None)
    out = api.status(cfg, run.id)
    assert "unknown" in [r["observed"] for r in out["resources"]]
    assert out["unchecked"].startswith("resources not checked with customvision: ") and "401" in out["unchecked"]
    fake.faults.clear()
    api.down(cfg, run.id)

"""The Custom Vision fake, driven by the real SDK: the vendor quickstart unchanged, then the
service's rules (batches, training, publishing, export, limits) and injected faults."""
from __future__ import annotations

import io
import json
import os
import re
import runpy
import sys
import time
import types
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("azure.cognitiveservices.vision.customvision")

from azure.cognitiveservices.vision.customvision.prediction import CustomVisionPredictionClient
from azure.cognitiveservices.vision.customvision.prediction.models import (
    CustomVisionErrorException as PredictionError,
)
from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
from azure.cognitiveservices.vision.customvision.training.models import (
    CustomVisionErrorException,
    ImageFileCreateBatch,
    ImageFileCreateEntry,
)
from msrest.authentication import ApiKeyCredentials

from tests.fakes.customvision import FakeCustomVision
from tests.fakes.toymodel import ToyModel

pytest_plugins = ["tests.fakes.customvision_fixtures"]  # customvision_fake, customvision_clients

SAMPLE = Path(__file__).parent / "samples" / "customvision_quickstart.py"
GENERAL = "ee85a74c-405e-4adc-bb47-ffa8ca0c9f31"
GENERAL_COMPACT = "0732100f-1a38-4e49-a514-c9b44c697ab5"
GREEN, PINK = (30, 110, 40), (240, 160, 190)


def jpeg(colour, seed: int, size=(32, 32)) -> bytes:
    """A distinct JPEG per seed, clearly of its colour."""
    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(colour, np.float32) + rng.normal(0, 20, (size[1], size[0], 3)), 0, 255)
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def error_of(excinfo) -> tuple[int, str | None]:
    e = excinfo.value
    return e.response.status_code, getattr(e.error, "code", None)


def wait_trained(trainer, project_id, iteration_id, timeout=5.0):
    deadline = time.time() + timeout
    while True:
        iteration = trainer.get_iteration(project_id, iteration_id)
        if iteration.status != "Training" or time.time() > deadline:
            return iteration
        time.sleep(0.02)


def make_project(trainer, domain_id=GENERAL, per_tag=5):
    """A two-tag project (green "Hemlock", pink "Cherry") with per_tag images each."""
    project = trainer.create_project("p", description="d", domain_id=domain_id)
    green = trainer.create_tag(project.id, "Hemlock")
    pink = trainer.create_tag(project.id, "Cherry")
    entries = [ImageFileCreateEntry(name=f"g{i}.jpg", contents=jpeg(GREEN, i), tag_ids=[green.id])
               for i in range(per_tag)]
    entries += [ImageFileCreateEntry(name=f"p{i}.jpg", contents=jpeg(PINK, 100 + i), tag_ids=[pink.id])
                for i in range(per_tag)]
    summary = trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=entries))
    assert summary.is_batch_successful
    return project, green, pink


def train_and_publish(fake, trainer, project, name="m1"):
    iteration = wait_trained(trainer, project.id, trainer.train_project(project.id).id)
    assert iteration.status == "Completed"
    assert trainer.publish_iteration(project.id, iteration.id, name, fake.prediction_resource_id) is True
    return iteration


# --- the vendor quickstart ----------------------------------------------------------------------

def test_vendor_quickstart_runs_unchanged(tmp_path, monkeypatch, capsys):
    images = tmp_path / "samples"
    for i in range(1, 11):
        for folder, stem, colour, seed in (("Hemlock", "hemlock", GREEN, i),
                                           ("Japanese Cherry", "japanese_cherry", PINK, 100 + i)):
            path = images / "images" / folder / f"{stem}_{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpeg(colour, seed))
    (images / "images" / "Test").mkdir()
    (images / "images" / "Test" / "test_image.jpg").write_bytes(jpeg(GREEN, 999))

    # train_seconds=0: the quickstart sleeps a second per poll, one poll is enough.
    with FakeCustomVision(training_key="k1", prediction_key="k2", train_seconds=0) as fake:
        for name, value in fake.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("CUSTOMVISION_SAMPLE_IMAGES", str(images))
        runpy.run_path(str(SAMPLE), run_name="__main__")
        out = capsys.readouterr().out

        assert "Image batch upload failed" not in out
        assert "Training status: Completed" in out
        assert out.count("Done!") == 2  # the quickstart publishes twice; the service accepts that
        scores = dict(re.findall(r"\t(.+): ([\d.]+)%", out))
        assert list(scores) == ["Hemlock", "Japanese Cherry"]  # sorted by probability
        assert float(scores["Hemlock"]) > 90 > float(scores["Japanese Cherry"])

        (project,) = fake.state.projects.values()
        assert project.name == "My New Project" and project.domain_id == GENERAL
        assert project.classification_type == "Multiclass"
        assert sorted(t.name for t in project.tags.values()) == ["Hemlock", "Japanese Cherry"]
        assert len(project.images) == 20
        (iteration,) = project.iterations.values()
        assert (iteration.status, iteration.publish_name) == ("Completed", "classifyModel")
        assert iteration.publish_resource_id == fake.prediction_resource_id
        assert len(project.predictions) == 1  # classify_image stores; the /nostore route would not


# --- the service's rules --------------------------------------------------------------------------

def test_domains_are_the_real_ones(customvision_clients):
    trainer, _ = customvision_clients
    domains = {d.id: d for d in trainer.get_domains()}
    assert domains[GENERAL].name == "General" and not domains[GENERAL].exportable
    compact = trainer.get_domain(GENERAL_COMPACT)
    assert (compact.name, compact.type, compact.exportable) == ("General (compact)", "Classification", True)
    assert "ONNX" in compact.exportable_platforms
    with pytest.raises(CustomVisionErrorException) as e:
        trainer.get_domain("00000000-0000-0000-0000-000000000000")
    assert error_of(e) == (404, "NotFoundDomain")


def test_project_fields_and_update(customvision_clients):
    trainer, _ = customvision_clients
    project = trainer.create_project("birds", description="a test", domain_id=GENERAL_COMPACT,
                                     classification_type="Multilabel", target_export_platforms=["ONNX"])
    assert (project.settings.domain_id, project.settings.classification_type) == (GENERAL_COMPACT, "Multilabel")
    assert project.settings.target_export_platforms == ["ONNX"] and project.created is not None
    project.name = "birds-2"
    assert trainer.update_project(project.id, project).name == "birds-2"
    assert [p.name for p in trainer.get_projects()] == ["birds-2"]
    with pytest.raises(CustomVisionErrorException) as e:
        trainer.create_project("x", domain_id=GENERAL, target_export_platforms=["ONNX"])
    assert error_of(e) == (400, "BadRequestProjectUnsupportedExportPlatform")
    trainer.create_tag(project.id, "dup")
    with pytest.raises(CustomVisionErrorException) as e:
        trainer.create_tag(project.id, "DUP")
    assert error_of(e) == (400, "BadRequestTagNameNotUnique")


def test_partial_batch_reports_each_image(customvision_clients, customvision_fake):
    trainer, _ = customvision_clients
    project = trainer.create_project("p")
    tag = trainer.create_tag(project.id, "green")
    good, again = jpeg(GREEN, 1), jpeg(GREEN, 2)
    entries = [ImageFileCreateEntry(name="good.jpg", contents=good),
               ImageFileCreateEntry(name="corrupt.jpg", contents=b"\xff\xd8 not really a jpeg"),
               ImageFileCreateEntry(name="huge.jpg", contents=b"\xff\xd8" + bytes(6 * 1024 * 1024)),
               ImageFileCreateEntry(name="same-bytes.jpg", contents=good),
               ImageFileCreateEntry(name="again.jpg", contents=again)]
    summary = trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=entries, tag_ids=[tag.id]))
    assert not summary.is_batch_successful
    assert [(r.source_url, r.status) for r in summary.images] == [
        ("good.jpg", "OK"), ("corrupt.jpg", "ErrorImageFormat"), ("huge.jpg", "ErrorImageSize"),
        ("same-bytes.jpg", "OKDuplicate"), ("again.jpg", "OK")]
    assert summary.images[3].image.id == summary.images[0].image.id
    assert summary.images[1].image is None
    assert summary.images[0].image.tags[0].tag_name == "green"
    assert trainer.get_tagged_image_count(project.id) == 2

    # The multipart route (create_images_from_data) sees a re-upload as a duplicate too.
    again_result = trainer.create_images_from_data(project.id, io.BytesIO(again), tag_ids=[tag.id])
    assert [(r.status, r.image.id) for r in again_result.images] == [("OKDuplicate", summary.images[4].image.id)]
    fresh = io.BytesIO(jpeg(GREEN, 3))
    fresh.name = "/somewhere/fresh.jpg"
    result = trainer.create_images_from_data(project.id, fresh)
    assert (result.is_batch_successful, result.images[0].source_url) == (True, '"fresh.jpg"')
    assert trainer.get_untagged_image_count(project.id) == 1
    assert [len(trainer.get_tagged_images(project.id, take=1)), len(trainer.get_untagged_images(project.id))] == [1, 1]

    too_many = [ImageFileCreateEntry(name=f"{i}.jpg", contents=jpeg(PINK, i)) for i in range(65)]
    with pytest.raises(CustomVisionErrorException) as e:
        trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=too_many))
    assert error_of(e) == (400, "BadRequestImageBatch")
    assert len(customvision_fake.state.projects[project.id].images) == 3  # nothing of the bad batch

    customvision_fake.max_images_per_project = 3
    over = trainer.create_images_from_data(project.id, jpeg(PINK, 4))
    assert [(r.status, r.image) for r in over.images] == [("ErrorLimitExceed", None)]


def test_training_rules(customvision_clients, customvision_fake):
    trainer, _ = customvision_clients
    project, green, pink = make_project(trainer, per_tag=4)
    with pytest.raises(CustomVisionErrorException) as e:
        trainer.train_project(project.id)
    assert error_of(e) == (400, "BadRequestTrainingValidationFailed")

    trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=[
        ImageFileCreateEntry(name="g", contents=jpeg(GREEN, 50), tag_ids=[green.id]),
        ImageFileCreateEntry(name="p", contents=jpeg(PINK, 150), tag_ids=[pink.id])]))
    customvision_fake.train_seconds = 60
    first = trainer.train_project(project.id)
    assert (first.status, first.name, first.training_type) == ("Training", "Iteration 1", "Regular")
    with pytest.raises(CustomVisionErrorException) as e:
        trainer.train_project(project.id)
    assert error_of(e) == (400, "BadRequestTrainingAlreadyInProgress")
    customvision_fake.finish_pending()
    assert trainer.get_iteration(project.id, first.id).status == "Completed"
    with pytest.raises(CustomVisionErrorException) as e:
        trainer.train_project(project.id)
    assert error_of(e) == (400, "BadRequestTrainingNotNeeded")
    second = trainer.train_project(project.id, force_train=True)
    assert second.name == "Iteration 2"

    perf = trainer.get_iteration_performance(project.id, first.id, threshold=0.5)
    assert perf.precision == 1.0 and perf.recall == 1.0 and perf.average_precision == 1.0
    assert sorted(t.name for t in perf.per_tag_performance) == ["Cherry", "Hemlock"]
    # At a threshold above every score nothing is predicted: recall falls to 0.
    assert trainer.get_iteration_performance(project.id, first.id, threshold=1.01).recall == 0.0


def test_failed_training_cannot_be_published(customvision_clients, customvision_fake):
    trainer, _ = customvision_clients
    project, _, _ = make_project(trainer)
    customvision_fake.fail_next_training("Out of capacity")
    iteration = wait_trained(trainer, project.id, trainer.train_project(project.id).id)
    assert (iteration.status, iteration.training_error_details) == ("Failed", "Out of capacity")
    with pytest.raises(CustomVisionErrorException) as e:
        trainer.publish_iteration(project.id, iteration.id, "m", customvision_fake.prediction_resource_id)
    assert error_of(e) == (400, "BadRequestIterationIsNotTrained")
    # The same data trains again: a failure does not count as "nothing changed".
    assert wait_trained(trainer, project.id, trainer.train_project(project.id).id).status == "Completed"


def test_prediction_follows_the_images(customvision_clients, customvision_fake):
    trainer, predictor = customvision_clients
    fake = customvision_fake
    project, green, pink = make_project(trainer)
    iteration = train_and_publish(fake, trainer, project)

    result = predictor.classify_image_with_no_store(project.id, "m1", jpeg(PINK, 7))
    assert (result.project, result.iteration) == (project.id, iteration.id)
    assert [p.tag_name for p in result.predictions] == ["Cherry", "Hemlock"]
    assert result.predictions[0].tag_id == pink.id and result.predictions[0].probability > 0.9
    assert fake.state.projects[project.id].predictions == []  # nostore kept nothing

    # A url the fake itself serves (an uploaded image's originalImageUri) is downloaded and classified.
    green_image = trainer.get_tagged_images(project.id, tag_ids=[green.id], take=1)[0]
    by_url = predictor.classify_image_url(project.id, "m1", url=green_image.original_image_uri)
    assert by_url.predictions[0].tag_name == "Hemlock"
    assert len(fake.state.projects[project.id].predictions) == 1

    with pytest.raises(PredictionError) as e:
        predictor.classify_image_url(project.id, "m1", url="http://example.com/cat.jpg")
    assert error_of(e) == (400, "BadRequestImageUrl")
    with pytest.raises(PredictionError) as e:
        predictor.classify_image(project.id, "unknown", jpeg(PINK, 8))
    assert error_of(e) == (404, "NotFound")
    with pytest.raises(PredictionError) as e:
        predictor.classify_image(project.id, "m1", b"\xff\xd8" + bytes(4 * 1024 * 1024))
    assert error_of(e) == (400, "BadRequestImageSizeBytes")
    with pytest.raises(PredictionError) as e:
        predictor.classify_image(project.id, "m1", b"not an image")
    assert error_of(e) == (400, "BadRequestImageFormat")
    with pytest.raises(CustomVisionErrorException) as e:
        trainer.publish_iteration(project.id, iteration.id, "m2", "/subscriptions/x/other")
    assert error_of(e) == (400, "BadRequestInvalidPublishTarget")


def test_export_only_from_compact_domains(customvision_clients, customvision_fake):
    trainer, _ = customvision_clients
    general, _, _ = make_project(trainer)
    general_it = wait_trained(trainer, general.id, trainer.train_project(general.id).id)
    with pytest.raises(CustomVisionErrorException) as e:
        trainer.export_iteration(general.id, general_it.id, "ONNX")
    assert error_of(e) == (400, "BadRequestExportValidationFailed")

    compact, _, _ = make_project(trainer, domain_id=GENERAL_COMPACT)
    iteration = train_and_publish(customvision_fake, trainer, compact)
    assert iteration.exportable and "ONNX" in iteration.exportable_to
    customvision_fake.export_seconds = 60
    export = trainer.export_iteration(compact.id, iteration.id, "ONNX", flavor="ONNX12")
    assert (export.platform, export.flavor, export.status, export.download_uri) == ("ONNX", "ONNX12",
                                                                                    "Exporting", None)
    with pytest.raises(CustomVisionErrorException) as e:
        trainer.export_iteration(compact.id, iteration.id, "ONNX", flavor="ONNX12")
    assert error_of(e) == (400, "BadRequestExportAlreadyInProgress")
    assert trainer.get_exports(compact.id, iteration.id)[0].status == "Exporting"
    customvision_fake.finish_pending()
    exports = trainer.get_exports(compact.id, iteration.id)
    assert [(x.platform, x.status) for x in exports] == [("ONNX", "Done")]
    with urllib.request.urlopen(exports[0].download_uri) as response:
        package = zipfile.ZipFile(io.BytesIO(response.read()))
    assert sorted(package.read("labels.txt").decode().split()) == ["Cherry", "Hemlock"]
    exported = ToyModel.from_dict(json.loads(package.read("toymodel.json")))
    scores = exported.predict(jpeg(PINK, 9))
    assert max(scores, key=scores.get) == "Cherry"


def test_deletes_follow_the_service_and_leave_nothing(customvision_clients, customvision_fake):
    trainer, _ = customvision_clients
    project, green, _ = make_project(trainer)
    iteration = train_and_publish(customvision_fake, trainer, project)

    with pytest.raises(CustomVisionErrorException) as e:
        trainer.delete_project(project.id)
    assert error_of(e) == (400, "BadRequestIterationIsPublished")
    with pytest.raises(CustomVisionErrorException) as e:
        trainer.delete_iteration(project.id, iteration.id)
    assert error_of(e) == (400, "BadRequestIterationIsPublished")

    trainer.unpublish_iteration(project.id, iteration.id)
    with pytest.raises(CustomVisionErrorException) as e:
        trainer.unpublish_iteration(project.id, iteration.id)
    assert error_of(e) == (400, "BadRequestIterationNotPublished")
    trainer.delete_iteration(project.id, iteration.id)
    trainer.delete_tag(project.id, green.id)
    assert trainer.get_untagged_image_count(project.id) == 5
    trainer.delete_images(project.id, all_images=True, all_iterations=True)
    assert trainer.get_image_count(project.id) == 0
    trainer.delete_project(project.id)

    assert trainer.get_projects() == []
    assert customvision_fake.state.is_empty()
    with pytest.raises(CustomVisionErrorException) as e:
        trainer.get_project(project.id)
    assert error_of(e) == (404, "NotFoundProject")


# --- keys and injected faults ---------------------------------------------------------------------

def test_wrong_or_missing_key_is_401(customvision_fake):
    fake = customvision_fake
    for key in ("wrong", fake.prediction_key):  # the prediction key does not open the training API
        trainer = CustomVisionTrainingClient(fake.url, ApiKeyCredentials(in_headers={"Training-key": key}))
        with pytest.raises(CustomVisionErrorException) as e:
            trainer.create_project("p")
        assert e.value.response.status_code == 401
        assert e.value.response.json()["error"]["code"] == "401"
        assert str(e.value) == "Operation returned an invalid status code 'Access Denied'"
    predictor = CustomVisionPredictionClient(fake.url, ApiKeyCredentials(in_headers={"Prediction-key": "x"}))
    with pytest.raises(PredictionError) as e:
        predictor.classify_image("00000000-0000-0000-0000-000000000000", "m", b"x")
    assert e.value.response.status_code == 401
    assert fake.state.is_empty()


def test_throttling_is_retried_by_the_sdk_only_on_get_with_retry_after(customvision_clients, customvision_fake):
    trainer, _ = customvision_clients
    fake = customvision_fake
    # POST: the SDK never retries, the caller sees the 429 and its Retry-After.
    fake.faults.add("POST", r"/training/projects$", 429, headers={"Retry-After": "1"})
    with pytest.raises(CustomVisionErrorException) as e:
        trainer.create_project("p")
    assert e.value.response.status_code == 429 and e.value.response.headers["Retry-After"] == "1"
    assert fake.state.is_empty()
    assert trainer.create_project("p").name == "p"  # the caller's own retry goes through

    # GET: urllib3 under msrest honours Retry-After on 429/503 and tries again by itself.
    fake.faults.add("GET", r"/training/projects$", 429, headers={"Retry-After": "1"})
    started, before = time.time(), len(fake.requests)
    assert [p.name for p in trainer.get_projects()] == ["p"]
    assert len(fake.requests) - before == 2 and time.time() - started >= 0.9


def test_server_errors(customvision_clients, customvision_fake):
    trainer, _ = customvision_clients
    fake = customvision_fake
    fake.faults.add("GET", r"/training/projects$", 500)  # GET: retried at once, the caller sees nothing
    before = len(fake.requests)
    assert trainer.get_projects() == []
    assert len(fake.requests) - before == 2
    fault = fake.faults.add("POST", r"/train$", 500)  # POST: no retry
    project, _, _ = make_project(trainer)
    with pytest.raises(CustomVisionErrorException) as e:
        trainer.train_project(project.id)
    assert error_of(e) == (500, "ErrorUnknown") and fault.hits == 1
    assert fake.state.projects[project.id].iterations == {}
    assert not fake.faults.pending


# --- more of Microsoft's published samples ------------------------------------------------------------

EXPORT_SAMPLE = Path(__file__).parent / "samples" / "customvision_export_model.py"
LAB_TRAIN = Path(__file__).parent / "samples" / "customvision_mslearn_train_classifier.py"
LAB_TEST = Path(__file__).parent / "samples" / "customvision_mslearn_test_classifier.py"
FRUITS = {"apple": (200, 30, 40), "banana": (235, 225, 60), "orange": (245, 140, 20)}  # tag -> colour


@pytest.fixture
def sleeps(monkeypatch):
    """The samples poll with time.sleep(5 or 10): record the waits instead of sleeping them."""
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", lambda seconds: waits.append(seconds))
    return waits


@pytest.fixture
def lab_shell(monkeypatch):
    """What the Microsoft Learn lab's terminal provides: python-dotenv (not a dependency here, so a
    minimal stand-in that loads ./.env without overriding set variables) and a console to clear."""
    def load_dotenv(dotenv_path=None, override=False, **_):
        path = Path(dotenv_path or ".env")
        if not path.is_file():
            return False
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, value = (s.strip() for s in line.split("=", 1))
            if override or key not in os.environ:
                monkeypatch.setenv(key, value)
        return True

    monkeypatch.setitem(sys.modules, "dotenv", types.SimpleNamespace(load_dotenv=load_dotenv))
    cleared: list[str] = []
    monkeypatch.setattr(os, "system", lambda command: cleared.append(command) or 0)
    for key in ("TrainingEndpoint", "TrainingKey", "PredictionEndpoint", "PredictionKey", "ProjectID",
                "ModelName"):
        monkeypatch.delenv(key, raising=False)
    return cleared


def write_images(folder: Path, colour, seeds) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        (folder / f"IMG_{seed}.jpg").write_bytes(jpeg(colour, seed))


def test_mslearn_lab_trains_more_images_and_classifies(customvision_fake, customvision_clients, tmp_path,
                                                      monkeypatch, capsys, sleeps, lab_shell):
    fake, (trainer, _) = customvision_fake, customvision_clients
    fake.train_seconds = 0  # the lab polls every 5 s (not slept here): one poll finds it done
    # The lab's portal steps: a Multiclass project in the Food domain, 15 images per fruit, trained.
    food = next(d.id for d in trainer.get_domains() if d.name == "Food")
    project = trainer.create_project("Classify Fruit", description="Image classification for fruit",
                                     domain_id=food, classification_type="Multiclass")
    entries = []
    for i, (name, colour) in enumerate(FRUITS.items()):
        tag = trainer.create_tag(project.id, name)
        entries += [ImageFileCreateEntry(name=f"{name}{s}.jpg", contents=jpeg(colour, 1000 * i + s),
                                         tag_ids=[tag.id]) for s in range(15)]
    assert trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=entries)).is_batch_successful
    first = wait_trained(trainer, project.id, trainer.train_project(project.id).id)
    assert first.status == "Completed"

    # python train-classifier.py, from its folder with its .env and more-training-images/<tag>/.
    train_dir = tmp_path / "train-classifier"
    for i, (name, colour) in enumerate(FRUITS.items()):
        write_images(train_dir / "more-training-images" / name, colour, range(500 + 10 * i, 505 + 10 * i))
    (train_dir / ".env").write_text(
        f"TrainingEndpoint={fake.url}\nTrainingKey={fake.training_key}\nProjectID={project.id}\n")
    monkeypatch.chdir(train_dir)
    runpy.run_path(str(LAB_TRAIN), run_name="__main__")
    out = capsys.readouterr().out
    assert out.splitlines() == ["Uploading images...", "apple", "banana", "orange", "Training ...",
                                "Completed ...", "Model trained!"]
    assert sleeps == [5]
    state = fake.state.projects[project.id]
    assert len(state.images) == 60
    second = [it for it in state.iterations.values() if it.id != first.id]
    assert [(it.name, it.status, len(it.examples)) for it in second] == [("Iteration 2", "Completed", 60)]

    # The portal publishes the new iteration as fruit-classifier; python test-classifier.py.
    trainer.publish_iteration(project.id, second[0].id, "fruit-classifier", fake.prediction_resource_id)
    test_dir = tmp_path / "test-classifier"
    (test_dir / "test-images").mkdir(parents=True)
    for n, colour in enumerate(FRUITS.values(), start=1):
        (test_dir / "test-images" / f"IMG_TEST_{n}.jpg").write_bytes(jpeg(colour, 9000 + n))
    (test_dir / ".env").write_text(
        "# Easiest way to find these details is by clicking on Prediction URL under Performance\n"
        f"PredictionEndpoint={fake.url}\nPredictionKey={fake.prediction_key}\nProjectID={project.id}\n"
        "ModelName=fruit-classifier\n")
    monkeypatch.chdir(test_dir)
    runpy.run_path(str(LAB_TEST), run_name="__main__")
    matches = [re.fullmatch(r"(\S+) : (\w+) \((\d+)%\)", line) for line in capsys.readouterr().out.splitlines()]
    assert all(matches), matches  # nothing else printed (the lab prints any exception and goes on)
    found = {m.groups()[:2] for m in matches}
    assert found == {("IMG_TEST_1.jpg", "apple"), ("IMG_TEST_2.jpg", "banana"), ("IMG_TEST_3.jpg", "orange")}
    assert len(state.predictions) == 3  # classify_image stores each prediction
    assert lab_shell == ["clear", "clear"]


def test_export_howto_downloads_the_onnx_package_once(customvision_fake, customvision_clients, tmp_path,
                                                      monkeypatch, capsys, sleeps):
    fake, (trainer, _) = customvision_fake, customvision_clients
    fake.train_seconds = fake.export_seconds = 0  # the how-to waits 10 s (not slept here) before its one look
    project, _, _ = make_project(trainer, domain_id=GENERAL_COMPACT)
    iteration = wait_trained(trainer, project.id, trainer.train_project(project.id).id)
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CUSTOMVISION_PROJECT_ID", project.id)
    monkeypatch.setenv("CUSTOMVISION_ITERATION_ID", iteration.id)
    monkeypatch.chdir(tmp_path)

    runpy.run_path(str(EXPORT_SAMPLE), run_name="__main__")
    assert capsys.readouterr().out.splitlines() == ["Waiting 10 seconds...", "Export status is:  Done"]
    assert sleeps == [10]
    package = zipfile.ZipFile(tmp_path / "export.zip")
    manifest = json.loads(package.read("manifest.json"))
    assert (manifest["platform"], manifest["flavor"], manifest["iterationId"]) == ("ONNX", "ONNX10", iteration.id)
    assert sorted(package.read("labels.txt").decode().split()) == ["Cherry", "Hemlock"]

    # The article warns: an iteration already exported cannot be exported again (the service
    # answers "<iteration id> is already queued for export"); get_exports gives its link.
    with pytest.raises(CustomVisionErrorException) as e:
        runpy.run_path(str(EXPORT_SAMPLE), run_name="__main__")
    assert error_of(e) == (400, "BadRequestExportAlreadyInProgress")
    assert e.value.error.message == f"{iteration.id} is already queued for export"
    exports = fake.state.projects[project.id].iterations[iteration.id].exports
    assert [(x.platform, x.flavor, x.status) for x in exports] == [("ONNX", "ONNX10", "Done")]
    # Another flavor of the same platform is a separate export.
    assert trainer.export_iteration(project.id, iteration.id, "ONNX", flavor="ONNX12").status == "Exporting"

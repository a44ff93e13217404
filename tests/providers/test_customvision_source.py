"""`customvision:<project>` as a dataset source, against the fake Custom Vision service loaded through
Microsoft's own SDK: every tagged image byte-identical with its tags, untagged ones reported, paging
past 256 images, project names, resumed imports that fetch only what is missing, renewed image links."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("azure.cognitiveservices.vision.customvision")

from imgcls.cli import main
from tests.fakes.customvision import FakeCustomVision

IMAGE_GET = re.compile(r"^/_fake/images/")
PER_TAG = 88            # 3 tags x 88 = 264 tagged images: two pages of GetTaggedImages (take <= 256)


def png(n: int) -> bytes:
    """A distinct small PNG per n (the service refuses exact duplicates)."""
    buf = io.BytesIO()
    Image.new("RGB", (10, 8), (n % 256, (n // 256) * 40 % 256, (n * 7) % 256)).save(buf, "PNG")
    return buf.getvalue()


def make_project(trainer, name: str, classification: str, tagged: list[tuple[str, ...]], untagged: int,
                 start: int) -> str:
    """A project made the way a Custom Vision user made it: through the SDK."""
    from azure.cognitiveservices.vision.customvision.training import models as tm
    project = trainer.create_project(name, classification_type=classification)
    tag_ids = {}
    for tags in tagged:
        for t in tags:
            if t not in tag_ids:
                tag_ids[t] = trainer.create_tag(project.id, t).id
    entries = [tm.ImageFileCreateEntry(name=f"{i}.png", contents=png(start + i), tag_ids=[tag_ids[t] for t in tags])
               for i, tags in enumerate(tagged)]
    entries += [tm.ImageFileCreateEntry(name=f"u{i}.png", contents=png(start + len(tagged) + i))
                for i in range(untagged)]
    for at in range(0, len(entries), 64):
        summary = trainer.create_images_from_files(project.id, tm.ImageFileCreateBatch(images=entries[at:at + 64]))
        assert summary.is_batch_successful
    return project.id


@pytest.fixture(scope="module")
def cv():
    from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
    from msrest.authentication import ApiKeyCredentials
    with FakeCustomVision(training_key="src-training-key", prediction_key="src-prediction-key") as fake:
        trainer = CustomVisionTrainingClient(fake.url, ApiKeyCredentials(in_headers={"Training-key": fake.training_key}))
        multiclass = make_project(trainer, "Flowers CV", "Multiclass",
                                  [(t,) for t in ("red", "green", "blue") for _ in range(PER_TAG)], 3, 0)
        multilabel = make_project(trainer, "multi-cv", "Multilabel",
                                  [("a",)] * 3 + [("b",)] * 3 + [("a", "b")] * 3, 1, 1000)
        yield fake, multiclass, multilabel


@pytest.fixture
def fake(cv, monkeypatch):
    fake = cv[0]
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    fake.faults.clear()
    yield fake
    fake.faults.clear()


def image_gets(fake, since: int) -> list[str]:
    return [r.path for r in fake.requests[since:] if r.method == "GET" and IMAGE_GET.match(r.path)]


def rows_of(tmp_path: Path, run_id: str) -> list[dict]:
    text = (tmp_path / ".imgcls" / "runs" / run_id / "manifest.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def invoke(*args):
    result = CliRunner().invoke(main, ["--json", *args])
    doc = json.loads(result.stdout) if result.stdout.strip() else None
    return result.exit_code, doc, result.stderr


def test_import_by_id_every_tagged_image_byte_identical(fake, cv, tmp_path):
    _, pid, _ = cv
    since = len(fake.requests)
    proc = subprocess.run([sys.executable, "-m", "imgcls.cli", "--json", "dataset-import", f"customvision:{pid}"],
                          cwd=tmp_path, env=dict(os.environ), text=True, capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    rows = rows_of(tmp_path, doc["run"])
    project = fake.state.projects[pid]
    tagged = {i.id: i for i in project.images.values() if i.tag_ids}
    assert len(rows) == len(tagged) == 3 * PER_TAG
    for row in rows:
        image = tagged[row["source_uri"].rsplit("/", 1)[1]]
        assert Path(row["uri"]).read_bytes() == image.data
        assert row["labels"] == sorted(project.tags[t].name for t in image.tag_ids)
    assert "3 untagged image(s) skipped" in proc.stderr
    listing = [r for r in fake.requests[since:] if r.path.endswith("/images/tagged")]
    assert [(r.query["take"], r.query["skip"]) for r in listing] == [("256", "0"), ("256", "256")]
    assert len(image_gets(fake, since)) == 3 * PER_TAG          # untagged images are never fetched
    assert "task: multiclass" in (tmp_path / ".imgcls" / "runs" / doc["run"] / "config.yaml").read_text()


def test_multilabel_project_by_name(fake, cv, tmp_path):
    code, doc, err = invoke("dataset-import", "customvision:multi-cv")
    assert code == 0, err
    rows = rows_of(tmp_path, doc["run"])
    assert sorted(tuple(r["labels"]) for r in rows) == [("a",)] * 3 + [("a", "b")] * 3 + [("b",)] * 3
    assert "task: multilabel" in (tmp_path / ".imgcls" / "runs" / doc["run"] / "config.yaml").read_text()
    assert "1 untagged image(s) skipped" in err


def test_interrupted_import_resumes_without_refetching(fake, cv, tmp_path, monkeypatch):
    _, _, pid = cv
    monkeypatch.setattr("imgcls.data.sources.cache.BACKOFF_S", 0.01)
    broken = next(i.id for i in fake.state.projects[pid].images.values() if len(i.tag_ids) == 2)
    fake.faults.add("GET", rf"/_fake/images/{pid}/{broken}$", 500, times=None)
    since = len(fake.requests)
    code, doc, err = invoke("dataset-import", f"customvision:{pid}")
    assert code == 4 and broken in doc["message"], err
    assert not list((tmp_path / ".imgcls" / "runs").glob("*/manifest.jsonl"))   # nothing left as if complete
    first = image_gets(fake, since)
    assert len(set(first)) == 9
    fake.faults.clear()
    since = len(fake.requests)
    code, doc, err = invoke("dataset-import", f"customvision:{pid}")
    assert code == 0, err
    assert image_gets(fake, since) == [f"/_fake/images/{pid}/{broken}"]
    assert len(rows_of(tmp_path, doc["run"])) == 9


def test_expired_image_link_is_renewed(fake, cv, tmp_path):
    _, _, pid = cv
    image = next(iter(fake.state.projects[pid].images.values()))
    fake.faults.add("GET", rf"/_fake/images/{pid}/{image.id}$", 403, times=1)
    since = len(fake.requests)
    code, _, err = invoke("dataset-import", f"customvision:{pid}")
    assert code == 0, err
    renewed = [r for r in fake.requests[since:] if r.path.endswith("/images/id")]
    assert len(renewed) == 1 and renewed[0].query["imageids"] == image.id


def test_unknown_project_exit_4_naming_it(fake, tmp_path):
    code, doc, _ = invoke("dataset-import", "customvision:no such project")
    assert code == 4 and "'no such project'" in doc["message"] and "Flowers CV" in doc["hint"]
    code, doc, _ = invoke("dataset-import", "customvision:00000000-0000-0000-0000-000000000000")
    assert code == 4


def test_wrong_key_exit_5(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("VISION_TRAINING_KEY", "not-the-key")
    code, doc, _ = invoke("dataset-import", "customvision:multi-cv")
    assert code == 5 and "training key" in doc["message"]

"""pytest fixtures for the fake Vertex AI, `vertex_fake` and `vertex_images`; import them into a
test module (`from tests.fakes.vertex_fixtures import fixture_vertex_fake, fixture_vertex_images`)."""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import pytest
from PIL import Image

from tests.fakes.vertex import FakeVertex

COLOURS = {"red": (210, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 210)}
ML_USES = ["training", "training", "training", "training", "validation", "test"]


@pytest.fixture(name="vertex_fake")
def fixture_vertex_fake(monkeypatch):
    """A running fake, aiplatform and google-cloud-storage pointed at it, the SDK's waits cut short.

    `aiplatform.init` is process-global and cumulative: after this fixture the SDK keeps the
    (stopped) fake's endpoint until something calls init again.
    """
    pytest.importorskip("google.cloud.aiplatform")
    from google.api_core.retry import Retry
    from google.cloud import aiplatform
    from google.cloud.aiplatform import base, jobs, training_jobs

    with FakeVertex(project="test-project", location="us-central1",
                    pipeline_seconds=0.2, batch_seconds=0.1) as fake:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake.gcs_url)
        # The SDK sleeps 5 s between polls of a training pipeline or a batch job...
        monkeypatch.setattr(training_jobs, "_JOB_WAIT_TIME", 0.02)
        monkeypatch.setattr(jobs, "_JOB_WAIT_TIME", 0.02)
        # ...and retries a failed GET of a resource for 120 s, first after up to 1 s.
        monkeypatch.setattr(base, "_DEFAULT_RETRY", Retry(initial=0.01, maximum=0.05, timeout=5))
        aiplatform.init(**fake.init_kwargs())
        yield fake
        assert not fake.crashes, fake.crashes[0]
        assert not fake.unhandled, f"requests the fake has no route for: {fake.unhandled}"


def png(rgb: tuple[int, int, int], shade: int, second: tuple[int, int, int] | None = None) -> bytes:
    """A 32x32 PNG of one colour, or of two halves when `second` is given."""
    colour = tuple(max(0, min(255, c + shade)) for c in rgb)
    im = Image.new("RGB", (32, 32), colour)
    if second:
        im.paste(Image.new("RGB", (16, 32), second), (16, 0))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


@dataclass
class VertexImages:
    """Images and import files already in the fake's GCS."""

    bucket: str
    csv: str  # single label: ML_USE,GCS_URI,LABEL
    jsonl: str  # single label JSONL with dataItemResourceLabels
    multilabel_jsonl: str  # red, green, and red+green images
    images: dict[str, list[bytes]] = field(default_factory=dict)

    def sample(self, label: str, shade: int = 7) -> bytes:
        """A fresh image of `label`, not one of the imported ones."""
        return png(COLOURS[label], shade)


@pytest.fixture(name="vertex_images")
def fixture_vertex_images(vertex_fake) -> VertexImages:
    gcs, bucket = vertex_fake.gcs, "imgcls-data"
    gcs.create_bucket(bucket)
    csv_rows, jsonl_rows, multi_rows = [], [], []
    images: dict[str, list[bytes]] = {}
    for label, rgb in COLOURS.items():
        for i, use in enumerate(ML_USES):
            uri = f"gs://{bucket}/images/{label}_{i}.png"
            images.setdefault(label, []).append(png(rgb, 4 * i - 10))
            gcs.write(uri, images[label][-1], "image/png")
            csv_rows.append(f"{use},{uri},{label}")
            jsonl_rows.append({"imageGcsUri": uri, "classificationAnnotation": {"displayName": label},
                               "dataItemResourceLabels": {"aiplatform.googleapis.com/ml_use": use}})
            if label != "blue":
                multi_rows.append({"imageGcsUri": uri, "classificationAnnotations": [{"displayName": label}],
                                   "dataItemResourceLabels": {"aiplatform.googleapis.com/ml_use": use}})
    for i, use in enumerate(ML_USES):
        uri = f"gs://{bucket}/images/both_{i}.png"
        gcs.write(uri, png(COLOURS["red"], 4 * i - 10, COLOURS["green"]), "image/png")
        multi_rows.append({"imageGcsUri": uri, "classificationAnnotations": [{"displayName": "red"},
                                                                             {"displayName": "green"}],
                           "dataItemResourceLabels": {"aiplatform.googleapis.com/ml_use": use}})
    paths = {"csv": "import/single.csv", "jsonl": "import/single.jsonl", "multi": "import/multi.jsonl"}
    gcs.write(f"gs://{bucket}/{paths['csv']}", "\n".join(csv_rows).encode(), "text/csv")
    gcs.write(f"gs://{bucket}/{paths['jsonl']}", "\n".join(map(json.dumps, jsonl_rows)).encode())
    gcs.write(f"gs://{bucket}/{paths['multi']}", "\n".join(map(json.dumps, multi_rows)).encode())
    return VertexImages(bucket, f"gs://{bucket}/{paths['csv']}", f"gs://{bucket}/{paths['jsonl']}",
                        f"gs://{bucket}/{paths['multi']}", images)

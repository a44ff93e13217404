"""pytest fixtures for the fake Azure ML workspace: the running fake, an MLClient bound to it, a tiny image set.

Import the ones a test module needs: `from tests.fakes.azureml_fixtures import azureml_fake, ml_client`.
"""
from __future__ import annotations

import io
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.fakes.azureml import FakeAzureML, FakeCredential

# Colours far apart, so the toy model separates them and predictions in tests are not a coin toss.
FRIDGE_COLOURS = {"can": (200, 30, 30), "carton": (30, 180, 40), "milk_bottle": (235, 235, 235),
                  "water_bottle": (30, 60, 210)}


@pytest.fixture
def azureml_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAzureML]:
    """A started fake, with the process environment pointing azure-ai-ml at it for this test only."""
    fake = FakeAzureML(job_seconds=0.3, lro_polls=1, poll_seconds=0.05)
    with fake:
        for key, value in fake.env().items():
            monkeypatch.setenv(key, value)
        # azure-ai-ml reads AZUREML_RUN_POLLING_INTERVAL_* once, at import, and another test may have
        # imported it first: set the values it actually uses.
        from azure.ai.ml.operations._run_history_constants import RunHistoryConstants
        monkeypatch.setattr(RunHistoryConstants, "_WAIT_COMPLETION_POLLING_INTERVAL_MIN", 1)
        monkeypatch.setattr(RunHistoryConstants, "_WAIT_COMPLETION_POLLING_INTERVAL_MAX", 1)
        # (env() also sets AZUREML_CURRENT_CLOUD, which MLClient() writes into os.environ: monkeypatch
        # now restores it after the test too.)
        # online_endpoints.invoke adds its Authorization and azureml-model-deployment headers to the shared
        # class attribute EndpointInvokeFields.DEFAULT_HEADER (azure-ai-ml 1.35.2), so a deployment named in one
        # invoke is still sent by every later invoke in the process: give each test a clean copy.
        from azure.ai.ml.constants._endpoint import EndpointInvokeFields
        monkeypatch.setattr(EndpointInvokeFields, "DEFAULT_HEADER", {"Content-Type": "application/json"})
        yield fake


@pytest.fixture
def ml_client(azureml_fake: FakeAzureML):
    from azure.ai.ml import MLClient

    ws = azureml_fake.workspace
    return MLClient(FakeCredential(), ws.subscription_id, ws.resource_group, ws.name, enable_telemetry=False)


def make_image(rgb: tuple[int, int, int], shade: int = 0, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 24), tuple(max(0, min(255, c - shade)) for c in rgb)).save(buf, fmt)
    return buf.getvalue()


def make_fridge_dataset(parent: Path, per_class: int = 5) -> Path:
    """A stand-in for fridgeObjects.zip: parent/fridgeObjects/{class}/{i}.jpg."""
    root = parent / "fridgeObjects"
    for label, rgb in FRIDGE_COLOURS.items():
        os.makedirs(root / label, exist_ok=True)
        for i in range(per_class):
            (root / label / f"{i}.jpg").write_bytes(make_image(rgb, shade=4 * i))
    return root


# multilabelFridgeObjects' labels: each label alone, then each pair (an image split into vertical bands)
MULTILABEL_COMBOS = [[name] for name in sorted(FRIDGE_COLOURS)] + [
    list(pair) for pair in itertools.combinations(sorted(FRIDGE_COLOURS), 2)]


def make_band_image(labels: list[str], shade: int = 0) -> bytes:
    """A JPEG with one vertical band per label, in that label's colour."""
    im = Image.new("RGB", (24, 24))
    width = 24 // len(labels)
    for k, label in enumerate(labels):
        rgb = tuple(max(0, c - shade) for c in FRIDGE_COLOURS[label])
        im.paste(rgb, (k * width, 0, 24 if k == len(labels) - 1 else (k + 1) * width, 24))
    buf = io.BytesIO()
    im.save(buf, "JPEG")
    return buf.getvalue()


def make_multilabel_fridge_dataset(parent: Path, count: int = 20) -> dict[str, list[str]]:
    """A stand-in for multilabelFridgeObjects.zip: parent/multilabelFridgeObjects/images/{1..count}.jpg and
    labels.csv (`filename,labels`, labels space-separated). Image i has MULTILABEL_COMBOS[(i - 1) % 10].
    Returns {file name: labels}."""
    root = parent / "multilabelFridgeObjects"
    os.makedirs(root / "images", exist_ok=True)
    truth = {}
    for i in range(1, count + 1):
        labels = MULTILABEL_COMBOS[(i - 1) % len(MULTILABEL_COMBOS)]
        (root / "images" / f"{i}.jpg").write_bytes(make_band_image(labels, shade=4 * ((i - 1) // 10)))
        truth[f"{i}.jpg"] = labels
    (root / "labels.csv").write_text("filename,labels\n" + "".join(
        f"{name},{' '.join(labels)}\n" for name, labels in truth.items()))
    return truth

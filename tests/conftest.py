"""Shared fixtures: generated images (a fresh clone has no ../shared), isolated runs dirs, --live."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "flowers-sample"

COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200), "yellow": (220, 210, 40)}


def pytest_addoption(parser):
    parser.addoption("--live", action="store_true", help="run tests against real clouds (needs credentials)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--live"):
        return
    skip = pytest.mark.skip(reason="needs --live and real credentials")
    for item in items:
        if "live" in item.keywords:
            item.add_marker(skip)


def make_image(path: Path, colour, seed: int, size=(64, 48), fmt="JPEG") -> Path:
    """A distinct image per seed: the label's colour plus noise and a bright square placed by the seed."""
    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(colour, dtype=np.float32) + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255)
    x, y = rng.integers(0, size[0] // 2), rng.integers(0, size[1] // 2)
    arr[y:y + size[1] // 4, x:x + size[0] // 4] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8)).save(path, fmt)
    return path


def make_dataset(root: Path, counts: dict[str, int], seed: int = 0, size=(64, 48)) -> Path:
    """root/<label>/<label>_<i>.jpg with colours from COLOURS (or grey for unknown labels)."""
    for k, (label, n) in enumerate(counts.items()):
        for i in range(n):
            make_image(root / label / f"{label}_{i:03d}.jpg", COLOURS.get(label, (128, 128, 128)),
                       seed * 100_000 + k * 1000 + i, size)
    return root


@pytest.fixture
def images(tmp_path) -> Path:
    """Three colour labels, 12 images each."""
    return make_dataset(tmp_path / "data", {"red": 12, "green": 12, "blue": 12})


@pytest.fixture(autouse=True)
def _isolated_runs(tmp_path, monkeypatch):
    """Every test gets its own cwd-relative .imgcls and feature cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IMGCLS_CACHE", str(tmp_path / "cache"))
    for var in ("VISION_TRAINING_KEY", "VISION_PREDICTION_KEY", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(var, raising=False)
    yield


def write_config(path: Path, source: Path, provider: str = "local", extra: str = "") -> Path:
    path.write_text(f"name: t\nprovider: {provider}\ndataset:\n  source: {source}\n{extra}")
    return path


def assert_golden(path: Path, got) -> None:
    """Compare what we sent with its golden file; IMGCLS_REGEN_GOLDEN=1 rewrites the file instead."""
    text = got if isinstance(got, str) else json.dumps(got, indent=2, sort_keys=True) + "\n"
    if os.environ.get("IMGCLS_REGEN_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path} (IMGCLS_REGEN_GOLDEN=1 writes it)"
    assert text == path.read_text(), f"{path.name} differs from the golden file (IMGCLS_REGEN_GOLDEN=1 rewrites it)"

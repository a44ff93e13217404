"""Shared fixtures: generated images (a fresh clone has no ../shared), isolated runs dirs, --live."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "flowers-sample"

from imgcls.testing.images import COLOURS, make_dataset, make_image  # noqa: F401 - tests import them from here


def pytest_addoption(parser):
    parser.addoption("--live", action="store_true", help="run tests against real clouds (needs credentials)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--live"):
        return
    skip = pytest.mark.skip(reason="needs --live and real credentials")
    for item in items:
        if "live" in item.keywords:
            item.add_marker(skip)


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


def run_cli(*args: str, cwd: Path, env: dict, timeout: float) -> tuple[int, dict | None, str]:
    """`imgcls --json ARGS` in a child process: (exit code, its JSON document or None, stderr). A traceback
    anywhere fails the test: bad input must end in one message."""
    proc = subprocess.run([sys.executable, "-m", "imgcls.cli", "--json", *args], cwd=cwd, text=True, check=False,
                          capture_output=True, env=env, timeout=timeout)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        doc = None
    return proc.returncode, doc, proc.stderr

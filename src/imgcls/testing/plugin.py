"""The pytest plugin of the kit (entry point group `pytest11`): fixtures a provider's own tests share.

It only adds fixtures; the contract suite itself runs where a test module subclasses ProviderContract.
"""
from __future__ import annotations

import pytest


def isolate(tmp_path, monkeypatch) -> None:
    """A test's runs and feature cache under its own tmp folder; no credentials from the caller's shell."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IMGCLS_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def imgcls_workdir(tmp_path, monkeypatch):
    """The test's folder as cwd, with its own .imgcls/runs and feature cache."""
    isolate(tmp_path, monkeypatch)
    return tmp_path


@pytest.fixture
def imgcls_dataset(tmp_path):
    """A factory: imgcls_dataset({"red": 12, "blue": 12}) -> a folder of <label>/ images (distinct colours)."""
    from .images import make_dataset

    def build(counts: dict[str, int] | None = None, name: str = "data", **kwargs):
        return make_dataset(tmp_path / name, counts or {"red": 12, "green": 12, "blue": 12}, **kwargs)
    return build

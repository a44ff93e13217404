"""Against real clouds, opt-in: `pytest --live` with IMGCLS_LIVE_CONFIG_<PROVIDER>=path/to/config.yaml.

Each run creates billable resources and tears them down at the end (`down`), even when a step fails.
"""
from __future__ import annotations

import os

import pytest

import imgcls.api as api
from imgcls.runs import Run

pytestmark = pytest.mark.live


@pytest.mark.parametrize("provider", ["vertex", "customvision", "azureml"])
def test_live_run_and_down(provider):
    path = os.environ.get(f"IMGCLS_LIVE_CONFIG_{provider.upper()}")
    if not path:
        pytest.skip(f"set IMGCLS_LIVE_CONFIG_{provider.upper()} to a config with credentials for {provider}")
    cfg = api.load(path, provider=provider)
    run_id = None
    try:
        result = api.run(cfg)
        run_id = result["run"]
        assert 0.0 <= result["evaluation"].metrics["accuracy"] <= 1.0
        assert result["predictions"]
    finally:
        latest = Run.open(api.runs_dir(cfg), run_id) if run_id else None
        api.down(cfg, latest.id if latest else None)
    assert Run.open(api.runs_dir(cfg), run_id).resources() == []

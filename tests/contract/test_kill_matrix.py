"""The kill matrix on the clouds: `imgcls run` SIGKILLed (as a CI runner's timeout does) at each step —
after import (as training is asked for), mid-train (at its first poll), after deploy (as the deploy
call is answered) — then `status` (which must write nothing), `run --run ID` to resume, and `down`.
Afterwards the fake holds nothing the run created. The local provider's matrix is in
tests/e2e/test_run_state_local.py; single kill points per vendor in tests/providers/test_run_state_clouds.py."""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import pytest

from imgcls.runs import Run
from tests.conftest import make_dataset
from tests.providers.test_run_state_clouds import REPO, run_killed

# provider -> step -> (method, path, when): the request at which the fake kills the CLI
KILLS = {
    "customvision": {
        "after import": ("POST", r"/training/projects/[^/]+/train$", "before"),
        "mid-train": ("GET", r"/training/projects/[^/]+/iterations/[^/]+$", "after"),
        "after deploy": ("POST", r"/training/projects/[^/]+/iterations/[^/]+/publish$", "after"),
    },
    "vertex": {
        "after import": ("POST", r"/trainingPipelines$", "before"),
        "mid-train": ("GET", r"/trainingPipelines/[^/:]+$", "after"),
        "after deploy": ("POST", r"/endpoints/[^/:]+:deployModel$", "after"),
    },
    "azureml": {
        "after import": ("PUT", r"/jobs/[^/]+$", "before"),
        "mid-train": ("GET", r"/jobs/[^/]+$", "after"),
        "after deploy": ("PUT", r"/onlineEndpoints/[^/]+/deployments/[^/]+$", "after"),
    },
    "aws": {
        "after import": ("POST", r"^/CreateProjectVersion$", "before"),
        "mid-train": ("POST", r"^/DescribeProjectVersions$", "after"),
        "after deploy": ("POST", r"^/StartProjectVersion$", "after"),
    },
}
NO_REPORT = "evaluate:\n  report: false\n"
CASES = [(p, step) for p, steps in KILLS.items() for step in steps]


def _cli(args, cwd, env) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "imgcls.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize("provider,step", CASES, ids=[f"{p}-{s.replace(' ', '-')}" for p, s in CASES])
def test_kill_status_resume_down_leaves_nothing(provider, step, tmp_path, monkeypatch):
    module = importlib.import_module(f"tests.contract.harness_{provider}")
    with module.start(tmp_path, monkeypatch) as harness:
        fake = harness.fake
        data = make_dataset(tmp_path / "data", {"red": 10, "green": 10, "blue": 10}, size=(96, 72))
        cfg = tmp_path / "kill.yaml"
        section = harness.config.replace(NO_REPORT, "")      # said once below (a duplicate key is refused)
        cfg.write_text(f"name: kill\nprovider: {provider}\ndataset:\n  source: {data}\n"
                       f"split:\n  validation: 0.2\n  test: 0.25\ntrain:\n  budget_minutes: 2\n{NO_REPORT}{section}")
        env = {**os.environ, "PYTHONWARNINGS": "ignore",
               "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
        method, path, when = KILLS[provider][step]
        run_killed(fake, ["run", "-c", str(cfg)], env, tmp_path, method, path, when)
        (folder,) = (tmp_path / ".imgcls" / "runs").iterdir()
        before = (folder / "ledger.json").read_bytes()

        status = _cli(["--json", "status", "--run", folder.name], tmp_path, env)
        assert status.returncode == 0, status.stderr[-2000:]
        assert (folder / "ledger.json").read_bytes() == before             # status only reads

        resumed = _cli(["--json", "run", "--run", folder.name], tmp_path, env)
        assert resumed.returncode == 0, (resumed.stdout[-2000:], resumed.stderr[-3000:])
        assert json.loads(resumed.stdout)["run"] == folder.name

        down = _cli(["--json", "down", "--run", folder.name], tmp_path, env)
        assert down.returncode == 0, (down.stdout[-2000:], down.stderr[-3000:])
        run = Run(folder)
        assert run.live() == []
        assert harness.leftovers(run) == []

"""Contract harness for `customvision`: the real SDK against the stateful fake Custom Vision service.

Endpoints and keys reach the provider the way a user's do, through the VISION_* variables.
"""
from __future__ import annotations

import contextlib

from tests.fakes.customvision import FakeCustomVision


class CustomVisionHarness:
    provider = "customvision"
    config = "customvision:\n  retries: 2\n"

    def __init__(self, fake: FakeCustomVision):
        self.fake = fake

    def leftovers(self, run) -> list[str]:
        """Projects the run created, and iterations or publications it made in any project, still there."""
        resources = run.ledger["resources"]
        created = {r["id"] for r in resources if r["kind"] == "project" and r.get("ours")}
        iterations = {r["id"] for r in resources if r["kind"] == "iteration" and r.get("ours", True)}
        marker = f"imgcls run {run.id}"
        left = []
        with self.fake.lock:
            for pid, project in self.fake.state.projects.items():
                if pid in created or project.description == marker:
                    left.append(f"project {pid}")
                    continue
                left += [f"iteration {i}" for i in project.iterations if i in iterations]
                left += [f"publication {it.publish_name}" for it in project.iterations.values()
                         if it.id in iterations and it.publish_name]
        return left


@contextlib.contextmanager
def start(tmp_path, monkeypatch):
    with FakeCustomVision(training_key="contract-training-key", prediction_key="contract-prediction-key",
                          train_seconds=0.2, export_seconds=0.2) as fake:
        for name, value in fake.env().items():
            monkeypatch.setenv(name, value)
        yield CustomVisionHarness(fake)

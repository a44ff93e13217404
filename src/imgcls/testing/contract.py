"""The contract suite: import → validate → train → evaluate → deploy → predict → down, multiclass and
multilabel, training picked up after the process that started it went away, and `down` leaving nothing
(twice: it is idempotent). A provider passes it against its own fake through a harness."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import pytest

from .images import make_dataset
from .plugin import isolate


class Harness(Protocol):
    """What a provider's test gives the suite, for one test, with its fake started."""

    provider: str   # the registered provider name
    config: str     # YAML appended to the run config: the provider's own section (fake's endpoint, names…)

    def leftovers(self, run) -> list[str]:
        """What the fake still holds that the run created (or a server process still alive): [] after down."""


def contract_config(harness: Harness, tmp_path: Path, task: str = "multiclass", counts: dict | None = None,
                    extra: str = ""):
    """The suite's run config for `harness`: three colour labels, 12 images each, 9 of them test."""
    import imgcls.api as api

    data = make_dataset(tmp_path / "data", counts or {"red": 12, "green": 12, "blue": 12}, size=(96, 72))
    path = tmp_path / "run.yaml"
    path.write_text(f"name: contract\nprovider: {harness.provider}\ntask: {task}\n"
                    f"dataset:\n  source: {data}\nsplit:\n  validation: 0.2\n  test: 0.25\n"
                    f"train:\n  budget_minutes: 2\n{harness.config}{extra}")
    return api.load(path)


class ProviderContract:
    """Subclass it in a test module and define the `harness` fixture (parametrize it for several)."""

    min_accuracy = 0.6   # colours this distinct must be learnt by every provider

    @pytest.fixture
    def harness(self):
        pytest.fail("a ProviderContract subclass must define the `harness` fixture (see imgcls.testing)")

    @pytest.fixture(autouse=True)
    def _imgcls_isolated(self, tmp_path, monkeypatch):
        isolate(tmp_path, monkeypatch)

    def test_full_flow(self, harness, tmp_path):
        import imgcls.api as api
        from imgcls.runs import Run

        cfg = contract_config(harness, tmp_path)
        report = api.validate(cfg)
        assert report["errors"] == 0

        run, dataset = api.import_dataset(cfg)
        assert dataset.images == 36 and dataset.labels == ["blue", "green", "red"]
        manifest_rows = (run.path / "manifest.jsonl").read_text().splitlines()
        assert len(manifest_rows) == 36

        run2, trained = api.train(cfg, run.id)
        assert run2.id == run.id and trained.status == "succeeded"
        assert Run(run.path).step("train")["status"] == "succeeded"

        _, evaluation = api.evaluate(cfg, run.id)
        n_test = sum(json.loads(r)["split"] == "test" for r in manifest_rows)
        assert evaluation.metrics["n_images"] == n_test == 9
        assert 0.0 <= evaluation.metrics["accuracy"] <= 1.0
        assert evaluation.metrics["accuracy"] >= self.min_accuracy
        assert set(evaluation.metrics["per_label"]) == {"blue", "green", "red"}

        detached = cfg.model_copy(update={"deploy": cfg.deploy.model_copy(update={"detach": True})})
        _, deployment = api.deploy(detached, run.id)
        assert deployment.status in ("serving", "published", "deployed", "succeeded")
        preds = api.predict(cfg, [str(tmp_path / "data" / "red" / "red_000.jpg"),
                                  str(tmp_path / "data" / "blue")], run.id)
        assert len(preds) == 1 + 12
        assert preds[0].labels in (["red"], []) and list(preds[0].scores)[0] == "red"

        ledger = Run(run.path).ledger
        assert ledger["resources"], "the ledger must record what the run created"
        assert all(r["status"] != "pending" for r in ledger["resources"]), \
            "every resource intended must be recorded with its id once created"
        result = api.down(cfg, run.id)
        assert result["failed"] == [] and Run(run.path).resources() == []
        assert harness.leftovers(Run(run.path)) == []

    def test_multilabel_resume_and_down(self, harness, tmp_path):
        import imgcls.api as api
        from imgcls.runs import Run

        cfg = contract_config(harness, tmp_path, task="multilabel")
        # --no-wait: the training is started and recorded, then this "process" goes away …
        run, started = api.train(cfg, wait=False)
        assert started.status in ("running", "succeeded") and run.step("import")["images"] == 36
        first = [o["id"] for o in Run(run.path).ledger["operations"] if o["kind"] == "train"]
        assert len(first) == 1, "the training operation must be in the ledger before train returns"
        # … and a new one picks the same training up from the ledger instead of starting another
        _, trained = api.train(cfg, run.id)
        assert trained.status == "succeeded"
        again = [o["id"] for o in Run(run.path).ledger["operations"] if o["kind"] == "train"]
        assert again == first, "resuming must not start a second training"

        _, evaluation = api.evaluate(cfg, run.id)
        assert evaluation.metrics["task"] == "multilabel"
        result = api.down(cfg, run.id)
        assert result["failed"] == [] and Run(run.path).resources() == []
        assert harness.leftovers(Run(run.path)) == []
        # down is idempotent: a second one finds nothing to do and fails on nothing
        second = api.down(cfg, run.id)
        assert second["failed"] == [] and second["deleted"] == []
        assert harness.leftovers(Run(run.path)) == []

"""`predict --batch` against the cloud fakes, through the real SDKs: the same predictions as online
`predict` (labels, scores within float tolerance, input order), each image scored exactly once by one
batch job, what it creates removed by `down`, a kill between the ledger's intent and the create call
reconciled; and the providers without batch prediction refusing with exit 7. (local: tests/e2e.)"""
from __future__ import annotations

import csv
import importlib
import io
import json
import os
from pathlib import Path

import pytest

from imgcls import api
from imgcls.errors import UnsupportedError
from imgcls.runs import Run
from tests.conftest import make_dataset
from tests.providers.test_concurrent_scoring import deployed, to_score
from tests.providers.test_run_state_clouds import run_killed

TOLERANCE = 1e-5


@pytest.fixture(params=["vertex", "azureml"])
def harness(request, tmp_path, monkeypatch):
    module = importlib.import_module(f"tests.contract.harness_{request.param}")
    with module.start(tmp_path, monkeypatch) as h:
        yield h


@pytest.fixture(autouse=True)
def _quick_polls(monkeypatch):
    """The fakes finish jobs in 0.3 s: look every 0.1 s, not after 1 s growing to 30."""
    from imgcls.providers.azureml.provider import AzureMLProvider
    monkeypatch.setattr(AzureMLProvider, "poll_interval", 0.1)


def trained(harness, tmp_path):
    data = make_dataset(tmp_path / "data", {"red": 12, "green": 12, "blue": 12}, size=(96, 72))
    path = tmp_path / "run.yaml"
    path.write_text(f"name: batch\nprovider: {harness.provider}\ndataset:\n  source: {data}\n"
                    f"split:\n  validation: 0.2\n  test: 0.25\n{harness.config}")
    cfg = api.load(path)
    run, _ = api.train(cfg)
    return cfg, run


def inputs(tmp_path) -> list[str]:
    """Nine new images, one given twice, and an import file listing two of them again."""
    paths = to_score(tmp_path, 9)
    listing = tmp_path / "more.csv"
    listing.write_text("".join(f"{p}\n" for p in paths[:2]))
    return [*paths, paths[4], str(listing)]


def scored_by_the_job(harness, run: Run) -> list[bytes]:
    """The image bytes each batch job of the run read, one item per image the job scored."""
    fake = harness.fake
    if harness.provider == "vertex":
        out = []
        for job in fake.state.batch_jobs.values():
            for line in fake.gcs.read(job.resource["inputConfig"]["gcsSource"]["uris"][0]).decode().splitlines():
                out.append(fake.gcs.read(json.loads(line)["content"]))
        return out
    rows = []
    for container, name in fake.blobs:
        if name.startswith(f"imgcls/runs/{run.id}/batch/") and name.endswith("/output/predictions.csv"):
            folder = name.removesuffix("output/predictions.csv") + "inputs/"
            for row in csv.reader(io.StringIO(fake.blobs.get(container, name).decode())):
                rows.append(fake.blobs.get(container, folder + row[0]))
    return rows


def test_batch_predictions_equal_online_ones_each_image_once(harness, tmp_path):
    cfg, run, _ = deployed(harness, tmp_path)
    given = inputs(tmp_path)
    online = api.predict(cfg, given, run.id)
    batch = api.predict(cfg, given, run.id, batch=True)

    expected = [*to_score(tmp_path, 9), to_score(tmp_path, 9)[4], *to_score(tmp_path, 9)[:2]]
    assert [p.image for p in online] == expected
    assert [p.image for p in batch] == expected                       # order kept, every input once
    assert [p.labels for p in batch] == [p.labels for p in online]
    for b, o in zip(batch, online):
        assert list(b.scores) == list(o.scores)
        assert all(abs(b.scores[k] - o.scores[k]) <= TOLERANCE for k in o.scores)
    read = scored_by_the_job(harness, run)
    distinct = {Path(p).read_bytes() for p in expected}
    assert len(read) == len(distinct) == 9 and set(read) == distinct   # each image scored exactly once

    # the same images again: no second upload, no second job
    sent = len(harness.fake.requests)
    again = api.predict(cfg, given[:9], run.id, batch=True)
    assert [p.scores for p in again] == [p.scores for p in batch[:9]]
    assert len(scored_by_the_job(harness, run)) == 9
    uploads = [r for r in harness.fake.requests[sent:] if r.method in ("PUT", "POST") and
               ("/images/" in r.path or "/inputs/" in r.path)]
    assert uploads == []

    api.down(cfg, run.id)
    assert harness.leftovers(Run(run.path)) == []


def test_azureml_kill_after_the_endpoint_is_asked_for_then_down_finds_it_and_leaves_nothing(tmp_path, monkeypatch):
    from tests.contract import harness_azureml

    with harness_azureml.start(tmp_path, monkeypatch) as h:
        fake = h.fake
        cfg, run = trained(h, tmp_path)                      # batch prediction needs no online endpoint
        images = to_score(tmp_path, 3)
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        # killed once the service has made the batch endpoint, before its answer: the ledger says pending
        run_killed(fake, ["predict", "--batch", "--run", run.id, *images], env, tmp_path,
                   "PUT", r"/batchEndpoints/[^/]+$", "after")
        (entry,) = [r for r in Run(run.path).ledger["resources"] if r["kind"] == "batch_endpoint"]
        assert entry["status"] == "pending" and entry["name"] in fake.state.batch_endpoints

        down = api.down(cfg, run.id)                                    # finds it by the name it chose
        assert [r["name"] for r in down["deleted"] if r["kind"] == "batch_endpoint"] == [entry["name"]]
        assert fake.state.batch_endpoints == {} and down["abandoned"] == []

        preds = api.predict(cfg, images, run.id, batch=True)            # and again, from nothing
        assert [p.image for p in preds] == images
        assert len(fake.state.batch_endpoints) == len(fake.state.batch_deployments) == 1
        kept = api.down(cfg, run.id, keep=("batch_endpoint",))          # --keep as for any other kind
        assert [r["kind"] for r in kept["kept"]] == ["batch_endpoint"]
        assert "batch_deployment" in {r["kind"] for r in kept["deleted"]}
        assert len(fake.state.batch_endpoints) == 1 and fake.state.batch_deployments == {}
        result = api.down(cfg, run.id)
        assert [r["kind"] for r in result["deleted"]] == ["batch_endpoint"]
        assert fake.state.batch_endpoints == {} and fake.state.batch_deployments == {}
        assert harness_azureml.leftovers(fake, Run(run.path)) == []


@pytest.mark.parametrize("provider", ["customvision", "aws"])
def test_providers_without_batch_prediction_exit_7_naming_online_predict(provider, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"name: nb\nprovider: {provider}\ndataset:\n  source: {tmp_path}\n")
    image = to_score(tmp_path, 3)[0]
    with pytest.raises(UnsupportedError) as err:
        api.predict(api.load(cfg), [image], batch=True)
    assert err.value.exit_code == 7
    assert f"the {provider} provider has no batch prediction" in err.value.message
    assert "without --batch" in err.value.hint
    assert not (tmp_path / ".imgcls").exists()                      # nothing was made for it

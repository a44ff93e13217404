"""`imgcls adopt`: models imgcls did not train, made the way a user makes them (each vendor's own SDK
against its fake), registered as runs; evaluate, compare and predict work on them, and `down` releases
them without touching the service (the fake still holds every one)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imgcls import api
from imgcls.errors import ConfigError, UsageError
from imgcls.runs import Run
from tests.conftest import COLOURS, make_dataset, make_image

pytest_plugins = ["tests.fakes.vertex_fixtures"]  # vertex_fake, vertex_images

REPO = Path(__file__).resolve().parents[2]
LABELS = ("red", "green", "blue")


def cli(*args: str, cwd: Path) -> tuple[int, dict, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    proc = subprocess.run([sys.executable, "-m", "imgcls.cli", "--json", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=120, check=False)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def jpeg(label: str, seed: int) -> bytes:
    """A training image of the label's colour, not one of the dataset's."""
    path = make_image(Path(f"/tmp/imgcls-adopt-{os.getpid()}-{label}-{seed}.jpg"), COLOURS[label], 900 + seed)
    data = path.read_bytes()
    path.unlink()
    return data


@pytest.fixture
def data(tmp_path) -> Path:
    return make_dataset(tmp_path / "data", dict.fromkeys(LABELS, 10), seed=3)


@pytest.fixture
def no_report(tmp_path) -> Path:
    """A config that brings only settings (no HTML report: matplotlib costs seconds); --data the images."""
    path = tmp_path / "settings.yaml"
    path.write_text("name: settings\ndataset:\n  source: unused\nevaluate:\n  report: false\n")
    return path


def assert_released(result: dict, kinds: list[str]) -> None:
    assert result["failed"] == [] and result["deleted"] == []
    assert sorted(k["kind"] for k in result["kept"]) == sorted(kinds)
    assert all(k["reason"] == "not created by imgcls (the run only used it)" for k in result["kept"])


def test_adopt_checks_its_argument_before_anything(data, tmp_path):
    from imgcls.errors import UnsupportedError
    with pytest.raises(UnsupportedError, match="local provider cannot adopt"):
        api.adopt("local:model", data=str(data))
    with pytest.raises(UsageError, match="names no model"):
        api.adopt("customvision", data=str(data))
    with pytest.raises(UsageError, match="unknown provider"):
        api.adopt("sagemaker:x", data=str(data))
    assert not (tmp_path / ".imgcls").exists()


# -- Custom Vision: a published iteration -----------------------------------------------------------

@pytest.fixture
def cv(monkeypatch):
    pytest.importorskip("azure.cognitiveservices.vision.customvision")
    from tests.fakes.customvision import FakeCustomVision
    with FakeCustomVision(training_key="tk", prediction_key="pk", train_seconds=0.05) as fake:
        for name, value in fake.env().items():
            monkeypatch.setenv(name, value)
        yield fake


def cv_published(fake, publish_name: str, tags=LABELS, per_tag=5, project_name="shop", seed=0):
    """What a user did in the portal or with the SDK: a project, tagged images, a trained iteration
    published under `publish_name`. (project id, iteration id)"""
    from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
    from azure.cognitiveservices.vision.customvision.training.models import (
        ImageFileCreateBatch,
        ImageFileCreateEntry,
    )
    from msrest.authentication import ApiKeyCredentials
    trainer = CustomVisionTrainingClient(fake.url, ApiKeyCredentials(in_headers={"Training-key": "tk"}))
    project = next((p for p in trainer.get_projects() if p.name == project_name), None) \
        or trainer.create_project(project_name)
    existing = {t.name: t for t in trainer.get_tags(project.id)}
    tag_ids = {label: (existing.get(label) or trainer.create_tag(project.id, label)).id for label in tags}
    entries = [ImageFileCreateEntry(name=f"{label}{i}.jpg", contents=jpeg(label, seed + 10 * k + i),
                                    tag_ids=[tag_ids[label]]) for k, label in enumerate(tags) for i in range(per_tag)]
    assert trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=entries)).is_batch_successful
    iteration = trainer.train_project(project.id)
    while trainer.get_iteration(project.id, iteration.id).status == "Training":
        time.sleep(0.02)
    assert trainer.publish_iteration(project.id, iteration.id, publish_name, fake.prediction_resource_id)
    return project.id, iteration.id


def test_customvision_published_iteration(cv, data, no_report, tmp_path):
    project_id, iteration_id = cv_published(cv, "production")
    code, out, err = cli("adopt", f"customvision:{project_id}/production", "-c", str(no_report), "--data", str(data),
                         "--name", "shop", cwd=tmp_path)
    assert code == 0, err
    run = Run(tmp_path / ".imgcls" / "runs" / out["run"])
    assert out["model"]["model_id"] == iteration_id and run.provider == "customvision"
    assert {(r["kind"], r["ours"]) for r in run.resources()} == {("project", False), ("iteration", False),
                                                                 ("publication", False)}
    assert api.status(run_id=run.id)["state"] == "adopted"

    _, ev = api.evaluate(None, run_id=run.id)
    n_test = sum(json.loads(x)["split"] == "test" for x in run.file("manifest.jsonl").read_text().splitlines())
    assert ev.metrics["n_images"] == n_test > 0 and ev.metrics["accuracy"] >= 0.8
    assert ev.service_metrics["precision"] is not None          # the service's own figures, read only
    (pred,) = api.predict(None, [str(data / "blue" / "blue_000.jpg")], run_id=run.id)
    assert pred.labels == ["blue"]

    # a second iteration (the project's images, a few more), published as 'staging', adopted by name; compared
    cv_published(cv, "staging", tags=("red", "green"), per_tag=5, seed=100)
    staging, result = api.adopt("customvision:shop/staging", api.load(no_report), data=str(data), name="staging")
    assert result.extra["labels"] == ["blue", "green", "red"]       # the project's tags, all three
    api.evaluate(None, run_id=staging.id)
    table = api.compare([run.id, staging.id])
    assert [r["name"] for r in table["table"]] == [run.id, staging.id] and table["n_images"] == n_test
    assert table["pairwise"][0]["mcnemar"] is not None

    before = json.dumps([it.to_json() for p in cv.state.projects.values() for it in p.iterations.values()],
                        sort_keys=True, default=str)
    for adopted in (run, staging):
        assert_released(api.down(run_id=adopted.id), ["project", "iteration", "publication"])
    (project,) = cv.state.projects.values()
    assert sorted(it.publish_name for it in project.iterations.values()) == ["production", "staging"]
    assert len(project.images) == 25 and set(t.name for t in project.tags.values()) == set(LABELS)
    assert json.dumps([it.to_json() for p in cv.state.projects.values() for it in p.iterations.values()],
                      sort_keys=True, default=str) == before
    assert [r for r in Run(run.path).resources()] == []

    # used again after down: adopted again from the ledger's reference, still nothing created
    (pred,) = api.predict(None, [str(data / "red" / "red_001.jpg")], run_id=run.id)
    assert pred.labels == ["red"] and {r["ours"] for r in Run(run.path).resources()} == {False}


def test_customvision_mistakes(cv, data, tmp_path):
    project_id, _ = cv_published(cv, "production")
    with pytest.raises(UsageError, match="published as 'prod'") as err:
        api.adopt(f"customvision:{project_id}/prod", data=str(data))
    assert "production" in err.value.hint
    with pytest.raises(UsageError, match="needs the dataset"):
        api.adopt(f"customvision:{project_id}/production")
    with pytest.raises(ConfigError, match="multiclass model; the run's task is multilabel"):
        api.adopt(f"customvision:{project_id}/production", data=str(data), task="multilabel")
    with pytest.raises(UsageError, match="no Custom Vision project 'nope'"):
        api.adopt("customvision:nope/production", data=str(data))
    assert not (tmp_path / ".imgcls" / "runs").exists() or list((tmp_path / ".imgcls" / "runs").iterdir()) == []


# -- Vertex AI: an endpoint, and a model with no endpoint --------------------------------------------

def test_vertex_endpoint_and_model(vertex_fake, vertex_images, data, tmp_path, monkeypatch):
    from google.cloud import aiplatform

    ds = aiplatform.ImageDataset.create(display_name="colours", gcs_source=[vertex_images.jsonl],
                                        import_schema_uri=aiplatform.schema.dataset.ioformat.image
                                        .single_label_classification)
    job = aiplatform.AutoMLImageTrainingJob(display_name="train", prediction_type="classification")
    model = job.run(dataset=ds, budget_milli_node_hours=8000, model_display_name="colours")
    endpoint = aiplatform.Endpoint.create(display_name="colours-endpoint")
    model.deploy(endpoint=endpoint, min_replica_count=1, max_replica_count=1)

    monkeypatch.setenv("IMGCLS_VERTEX_ANONYMOUS", "1")
    cfg_path = tmp_path / "v.yaml"
    cfg_path.write_text(f"name: colours\nprovider: local\ndataset:\n  source: {data}\n"
                        "evaluate:\n  report: false\n"
                        f"vertex:\n  project: test-project\n  api_endpoint: {vertex_fake.url}\n")
    cfg = api.load(cfg_path)
    by_endpoint, m = api.adopt(f"vertex:{endpoint.name}", cfg)                 # a bare endpoint id
    assert m.model_id == model.resource_name and by_endpoint.step("deploy")["endpoint"] == endpoint.resource_name
    by_model, _ = api.adopt(f"vertex:models/{model.name}", cfg, name="colours-model")
    assert by_model.step("deploy") is None

    _, ev = api.evaluate(cfg, run_id=by_endpoint.id)       # a config of another provider brings the data
    assert ev.metrics["accuracy"] >= 0.8
    endpoints_before = set(vertex_fake.state.endpoints)
    _, ev2 = api.evaluate(None, run_id=by_model.id)        # deployed to an endpoint of the run's own
    assert ev2.metrics["accuracy"] == ev.metrics["accuracy"]
    (ours,) = set(vertex_fake.state.endpoints) - endpoints_before
    assert api.compare([by_endpoint.id, by_model.id])["n_images"] == ev.metrics["n_images"]
    (pred,) = api.predict(None, [str(data / "green" / "green_002.jpg")], run_id=by_endpoint.id)
    assert pred.labels == ["green"]

    assert_released(api.down(run_id=by_endpoint.id), ["model", "endpoint"])
    down = api.down(run_id=by_model.id)
    assert [d["kind"] for d in down["deleted"]] == ["endpoint"] and down["deleted"][0]["id"].endswith(ours)
    assert [k["kind"] for k in down["kept"]] == ["model"]
    # the user's model and endpoint, and the model deployed on it, are all still there
    assert set(vertex_fake.state.endpoints) == endpoints_before
    assert aiplatform.Endpoint(endpoint.resource_name).list_models()[0].model == model.resource_name
    assert aiplatform.Model(model.resource_name).resource_name == model.resource_name


# -- Azure ML: a managed online endpoint and its deployment --------------------------------------------

def test_azureml_online_endpoint(data, tmp_path, monkeypatch):
    pytest.importorskip("azure.ai.ml")
    from azure.ai.ml import Input, MLClient, automl
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import AmlCompute, ManagedOnlineDeployment, ManagedOnlineEndpoint, Model
    from azure.storage.blob import ContainerClient

    from tests.contract.harness_azureml import RG, SUB, WS
    from tests.fakes.azureml import FakeAzureML, FakeCredential

    with FakeAzureML(SUB, RG, WS, job_seconds=0.3, lro_polls=1, poll_seconds=0.05) as fake:
        for key, value in {**fake.env(), "IMGCLS_AZURE_CREDENTIAL": "tests.fakes.azureml:FakeCredential"}.items():
            monkeypatch.setenv(key, value)
        ml = MLClient(FakeCredential(), SUB, RG, WS, enable_telemetry=False)
        # the user's AutoML job, model, endpoint and deployment, as the fridge-objects notebook makes them
        container = ContainerClient(account_url=fake.blob_account_url, container_name=fake.workspace.container,
                                    credential=fake.storage_key)
        rows = []
        for label in LABELS:
            for i in range(6):
                name = f"mine/images/{label}{i}.jpg"
                container.upload_blob(name, jpeg(label, i))
                rows.append({"image_url": f"azureml://datastores/workspaceblobstore/paths/{name}", "label": label})
        container.upload_blob("mine/train/train.jsonl", "\n".join(json.dumps(r) for r in rows))
        container.upload_blob("mine/train/MLTable", "paths:\n  - file: ./train.jsonl\n")
        ml.begin_create_or_update(AmlCompute(name="gpu", size="Standard_NC6s_v3", max_instances=1)).result()
        job = ml.jobs.create_or_update(automl.image_classification(
            compute="gpu", experiment_name="mine", target_column_name="label",
            training_data=Input(type=AssetTypes.MLTABLE, path="azureml://datastores/workspaceblobstore/paths/mine/train/")))
        while ml.jobs.get(job.name).status != "Completed":
            time.sleep(0.1)
        best = ml.jobs.get(job.name).tags["automl_best_child_run_id"]
        registered = ml.models.create_or_update(Model(
            name="colours", type=AssetTypes.MLFLOW_MODEL,
            path=f"azureml://jobs/{best}/outputs/artifacts/paths/outputs/mlflow-model/"))
        endpoint = ManagedOnlineEndpoint(name="colours-prod", auth_mode="key")
        ml.begin_create_or_update(endpoint).result()
        ml.online_deployments.begin_create_or_update(ManagedOnlineDeployment(
            name="blue-dep", endpoint_name="colours-prod", model=registered.id, instance_type="Standard_DS3_v2",
            instance_count=1)).result()
        endpoint.traffic = {"blue-dep": 100}
        ml.begin_create_or_update(endpoint).result()

        cfg_path = tmp_path / "a.yaml"
        cfg_path.write_text(f"name: colours\nprovider: azureml\ndataset:\n  source: {data}\n"
                            f"azureml:\n  subscription_id: {SUB}\n  resource_group: {RG}\n  workspace: {WS}\n"
                            "evaluate:\n  report: false\n")
        run, model = api.adopt("azureml:colours-prod", api.load(cfg_path))
        assert model.model_id == registered.id and model.extra["deployment"] == "blue-dep"
        _, ev = api.evaluate(None, run_id=run.id)
        assert ev.metrics["accuracy"] >= 0.8
        (pred,) = api.predict(None, [str(data / "red" / "red_004.jpg")], run_id=run.id)
        assert pred.labels == ["red"]
        # evaluated on another dataset: an adopted run takes it as its own
        other = make_dataset(tmp_path / "other", dict.fromkeys(LABELS, 5), seed=8)
        _, ev_other = api.evaluate(None, run_id=run.id, data=str(other))
        assert ev_other.metrics["n_images"] == 3 and Run(run.path).config().dataset.source == str(other)

        assert_released(api.down(run_id=run.id), ["endpoint", "deployment"])
        assert fake.state.billable()["endpoints"] == ["colours-prod"]
        assert fake.state.billable()["deployments"] == [("colours-prod", "blue-dep")]
        assert ml.online_endpoints.get("colours-prod").traffic == {"blue-dep": 100}
        assert not any(r.method == "DELETE" for r in fake.requests)

        with pytest.raises(UsageError, match="no online endpoint 'nope'"):
            api.adopt("azureml:nope", api.load(cfg_path))
        with pytest.raises(UsageError, match="--data evaluates an adopted run"):
            trained_like = Run.create(tmp_path / ".imgcls" / "runs", "x", "azureml")
            api.evaluate(None, run_id=trained_like.id, data=str(other))



def test_customvision_without_a_publication_name_takes_the_latest_published(cv, data, tmp_path):
    project_id, _ = cv_published(cv, "production")
    run, model = api.adopt(f"customvision:{project_id}", data=str(data))
    assert model.extra["adopted"] == f"customvision:{project_id}/production"
    assert run.resource("publication")["name"] == "production"

"""The fake Azure ML workspace, driven through the real azure-ai-ml and azure-storage-blob SDKs."""
from __future__ import annotations

import base64
import json

import pytest
import requests

pytest.importorskip("azure.ai.ml")
pytest.register_assert_rewrite("tests.fakes.azureml_fixtures")  # imported below and loaded as a plugin

from azure.ai.ml import Input, MLClient, automl
from azure.ai.ml.constants import AssetTypes
from azure.ai.ml.entities import AmlCompute, ManagedOnlineDeployment, ManagedOnlineEndpoint, Model
from azure.ai.ml.exceptions import JobException
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from tests.fakes.azureml import FakeAzureML, FakeCredential
from tests.fakes.azureml_fixtures import FRIDGE_COLOURS, make_fridge_dataset, make_image
from tests.fakes.samples import azureml_automl_image_classification_multiclass as fridge_sample

pytest_plugins = ["tests.fakes.azureml_fixtures"]  # azureml_fake, ml_client


def _upload_multilabel_set(fake: FakeAzureML, prefix: str = "imgcls/ml") -> str:
    """The seam imgcls uses: upload with azure-storage-blob to an explicit account URL, then point the
    job at the azureml://datastores/... path of the MLTable folder."""
    ws = fake.workspace
    container = ContainerClient(account_url=fake.blob_account_url, container_name=ws.container,
                                credential=fake.storage_key)
    rows = []
    for i, (labels, rgb) in enumerate([(["red"], (210, 20, 20)), (["blue"], (20, 20, 210)),
                                       (["red", "blue"], (150, 20, 150))] * 3):
        name = f"{prefix}/images/{i}.png"
        container.upload_blob(name, make_image(rgb, shade=i, fmt="PNG"), overwrite=True)
        rows.append({"image_url": f"azureml://datastores/workspaceblobstore/paths/{name}", "label": labels})
    container.upload_blob(f"{prefix}/train/train.jsonl", "\n".join(json.dumps(r) for r in rows), overwrite=True)
    container.upload_blob(f"{prefix}/train/MLTable", "paths:\n  - file: ./train.jsonl\n", overwrite=True)
    return f"azureml://datastores/workspaceblobstore/paths/{prefix}/train/"


def _compute(ml_client: MLClient, name: str = "cpu") -> str:
    ml_client.begin_create_or_update(AmlCompute(name=name, size="Standard_DS3_v2", min_instances=0,
                                                max_instances=1)).result()
    return name


def test_vendor_sample_runs_end_to_end(azureml_fake, ml_client, tmp_path):
    make_fridge_dataset(tmp_path)

    result = fridge_sample.main(ml_client, str(tmp_path))

    jobs = [azureml_fake.state.jobs[name] for name in result["jobs"]]
    assert [j.status for j in jobs] == ["Completed"] * 3
    automode, single, sweep = (j.body["properties"]["taskDetails"] for j in jobs)
    assert automode["taskType"] == "ImageClassification" and automode["primaryMetric"] == "Accuracy"
    assert automode["limitSettings"] == {"maxTrials": 10, "maxConcurrentTrials": 2}
    assert automode["trainingData"]["jobInputType"] == "mltable"
    assert automode["trainingData"]["uri"].startswith("azureml://datastores/workspaceblobstore/paths/LocalUpload/")
    assert single["modelSettings"] == {"modelName": "vitb16r224"}
    assert sweep["sweepSettings"]["samplingAlgorithm"] == "Random" and len(sweep["searchSpace"]) == 2
    assert sweep["sweepSettings"]["earlyTermination"]["policyType"] == "Bandit"
    trials = [azureml_fake.state.jobs[f"{sweep_job}_HD_{i}"] for i in range(2) for sweep_job in result["jobs"][-1:]]
    assert [t.params["model_name"] for t in trials] == ["vitb16r224", "vits16r224"]   # from the search space
    # the local folder went up through the SDK's own upload, into the blob fake
    assert result["data_path"].endswith("/")
    assert sum(name.endswith(".jpg") for _, name in azureml_fake.blobs) == 4 * 5
    assert result["best_child_run_id"] == f"{result['jobs'][-1]}_HD_0"
    assert sorted(result["prediction"]["labels"]) == result["prediction"]["labels"] == sorted(FRIDGE_COLOURS)
    probs = result["prediction"]["probs"]
    assert result["prediction"]["labels"][probs.index(max(probs))] == "milk_bottle"
    assert result["model_id"].endswith("/models/ic-mc-fridge-items-model/versions/1")
    # the endpoint delete took its deployment with it; the compute stays, scaled to zero
    assert azureml_fake.state.billable() == {"computes": ["gpu-cluster-nc6"], "endpoints": [], "deployments": []}


def test_multilabel_flow_through_the_blob_seam(azureml_fake, ml_client):
    training = _upload_multilabel_set(azureml_fake)
    job = automl.image_classification_multilabel(
        compute=_compute(ml_client), experiment_name="imgcls",
        training_data=Input(type=AssetTypes.MLTABLE, path=training), target_column_name="label")
    submitted = ml_client.jobs.create_or_update(job)
    assert submitted.status == "NotStarted"
    ml_client.jobs.stream(submitted.name)

    parent = ml_client.jobs.get(submitted.name)
    assert parent.status == "Completed"
    best = parent.tags["automl_best_child_run_id"]
    (hd,) = ml_client.jobs.list(parent_job_name=submitted.name)
    trials = list(ml_client.jobs.list(parent_job_name=hd.name))
    assert hd.name == f"{submitted.name}_HD" and hd.properties["best_child_run_id"] == best
    assert best in [t.name for t in trials] and all("score" in t.properties for t in trials)
    # metrics as azureml-mlflow reads them
    mlflow = requests.get(f"{azureml_fake.url}/mlflow/v1.0{azureml_fake.workspace.id}/api/2.0/mlflow/runs/get",
                          params={"run_id": best}, headers={"Authorization": "Bearer t"},
                          verify=azureml_fake.ca_file).json()
    assert {m["key"] for m in mlflow["run"]["data"]["metrics"]} >= {"iou", "accuracy"}

    model = ml_client.models.create_or_update(Model(
        name="ml", type=AssetTypes.MLFLOW_MODEL, path=f"azureml://jobs/{best}/outputs/artifacts/paths/outputs/mlflow-model/"))
    endpoint = ManagedOnlineEndpoint(name="imgcls-ml", auth_mode="key")
    ml_client.begin_create_or_update(endpoint).result()
    ml_client.online_deployments.begin_create_or_update(ManagedOnlineDeployment(
        name="blue", endpoint_name="imgcls-ml", model=model.id, instance_type="Standard_DS3_v2",
        instance_count=2)).result()
    assert ml_client.online_deployments.get("blue", "imgcls-ml").instance_count == 2
    endpoint.traffic = {"blue": 100}
    ml_client.begin_create_or_update(endpoint).result()

    scoring_uri = ml_client.online_endpoints.get("imgcls-ml").scoring_uri
    body = {"input_data": {"columns": ["image"], "index": [0, 1],
                           "data": [base64.b64encode(make_image(rgb, fmt="PNG")).decode()
                                    for rgb in [(210, 20, 20), (20, 20, 210)]]}}
    key = ml_client.online_endpoints.get_keys("imgcls-ml").primary_key
    wrong = requests.post(scoring_uri, json=body, headers={"Authorization": "Bearer nope"},
                          verify=azureml_fake.ca_file)
    assert wrong.status_code == 401
    scored = requests.post(scoring_uri, json=body, headers={"Authorization": f"Bearer {key}"},
                           verify=azureml_fake.ca_file).json()
    assert [r["labels"] for r in scored] == [["blue", "red"]] * 2
    assert [r["labels"][r["probs"].index(max(r["probs"]))] for r in scored] == ["red", "blue"]
    assert "blue" in ml_client.online_deployments.get_logs("blue", "imgcls-ml", lines=10)

    ml_client.online_endpoints.begin_delete("imgcls-ml").result()
    ml_client.compute.begin_delete("cpu").result()
    assert azureml_fake.state.billable() == {"computes": [], "endpoints": [], "deployments": []}


def test_failed_job_surfaces_its_error(azureml_fake, ml_client):
    azureml_fake.fail_next_job("Not enough quota for Standard_NC6 in eastus.")
    job = automl.image_classification(
        compute=_compute(ml_client), experiment_name="imgcls", target_column_name="label",
        training_data=Input(type=AssetTypes.MLTABLE, path=_upload_multilabel_set(azureml_fake)))
    name = ml_client.jobs.create_or_update(job).name

    with pytest.raises(JobException, match="Not enough quota"):
        ml_client.jobs.stream(name)
    failed = ml_client.jobs.get(name)
    assert failed.status == "Failed" and "automl_best_child_run_id" not in failed.tags


def test_unreadable_training_data_fails_the_job(azureml_fake, ml_client):
    job = automl.image_classification(
        compute=_compute(ml_client), experiment_name="imgcls", target_column_name="label",
        training_data=Input(type=AssetTypes.MLTABLE, path="azureml://datastores/workspaceblobstore/paths/nope/"))
    name = ml_client.jobs.create_or_update(job).name
    with pytest.raises(JobException, match="DataPathNotFound"):
        ml_client.jobs.stream(name)


def test_cancel(azureml_fake, ml_client):
    azureml_fake.job_seconds = 60
    job = automl.image_classification(
        compute=_compute(ml_client), experiment_name="imgcls", target_column_name="label",
        training_data=Input(type=AssetTypes.MLTABLE, path=_upload_multilabel_set(azureml_fake)))
    name = ml_client.jobs.create_or_update(job).name
    ml_client.jobs.begin_cancel(name).result()
    assert ml_client.jobs.get(name).status == "Canceled"
    assert name in [j.name for j in ml_client.jobs.list()]


def test_throttling_is_retried_after_retry_after(azureml_fake, ml_client):
    azureml_fake.faults.add("GET", r"/datastores$", 429, times=1, headers={"Retry-After": "1"})
    assert ml_client.datastores.get_default().name == "workspaceblobstore"
    assert [r.status for r in azureml_fake.requests if r.path.endswith("/datastores")] == [429, 200]


def test_503_is_retried_then_surfaces(azureml_fake):
    ws = azureml_fake.workspace
    client = MLClient(FakeCredential(), ws.subscription_id, ws.resource_group, ws.name, retry_total=1)
    azureml_fake.faults.add("GET", r"/computes/cpu$", 503, times=1)
    with pytest.raises(ResourceNotFoundError):           # one 503, retried, then the real answer
        client.compute.get("cpu")
    azureml_fake.faults.add("GET", r"/computes/cpu$", 503, times=5)
    with pytest.raises(HttpResponseError) as raised:
        client.compute.get("cpu")
    assert raised.value.status_code == 503 and "ServiceUnavailable" in str(raised.value)


def test_missing_authorization_is_401(azureml_fake):
    response = requests.get(f"{azureml_fake.url}{azureml_fake.workspace.id}?api-version=2024-10-01-preview",
                            verify=azureml_fake.ca_file)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AuthenticationFailed"
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")


def test_blob_rest_subset(azureml_fake):
    ws = azureml_fake.workspace
    container = ContainerClient(account_url=azureml_fake.blob_account_url, container_name=ws.container,
                                credential=azureml_fake.storage_key, max_single_put_size=4 * 1024,
                                max_block_size=4 * 1024)
    big = bytes(range(256)) * 64                          # 16 KiB: Put Block x4 + Put Block List
    container.upload_blob("a/big.bin", big)
    container.upload_blob("a/b/small.txt", b"hi", metadata={"k": "v"})
    with pytest.raises(HttpResponseError, match="BlobAlreadyExists"):
        container.upload_blob("a/b/small.txt", b"again")
    assert container.download_blob("a/big.bin").readall() == big
    assert container.download_blob("a/big.bin", offset=100, length=10).readall() == big[100:110]
    assert container.get_blob_client("a/b/small.txt").get_blob_properties().metadata == {"k": "v"}
    assert [b.name for b in container.walk_blobs("a/")] == ["a/b/", "a/big.bin"]
    container.delete_blob("a/big.bin")
    assert not container.get_blob_client("a/big.bin").exists()
    anonymous = requests.get(f"{azureml_fake.blob_account_url}/{ws.container}/a/b/small.txt",
                             verify=azureml_fake.ca_file)
    assert anonymous.status_code == 401 and anonymous.headers["x-ms-error-code"] == "NoAuthenticationInformation"

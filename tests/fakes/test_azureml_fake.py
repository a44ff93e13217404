"""The fake Azure ML workspace, driven through the real azure-ai-ml and azure-storage-blob SDKs."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import requests

pytest.importorskip("azure.ai.ml")
pytest.register_assert_rewrite("tests.fakes.azureml_fixtures")  # imported below and loaded as a plugin

from azure.ai.ml import Input, MLClient, automl
from azure.ai.ml.constants import AssetTypes
from azure.ai.ml.entities import AmlCompute, ManagedOnlineDeployment, ManagedOnlineEndpoint, Model
from azure.ai.ml.exceptions import JobException, MlException
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from tests.fakes.azureml import FakeAzureML, FakeCredential
from tests.fakes.azureml_fixtures import (
    FRIDGE_COLOURS,
    make_fridge_dataset,
    make_image,
    make_multilabel_fridge_dataset,
)
from tests.fakes.samples import azureml_automl_image_classification_multiclass as fridge_sample
from tests.fakes.samples import azureml_automl_image_classification_multilabel as multilabel_sample
from tests.fakes.samples import azureml_online_endpoints_safe_rollout as rollout_sample

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


def test_vendor_multilabel_sample_runs_end_to_end(azureml_fake, ml_client, tmp_path):
    truth = make_multilabel_fridge_dataset(tmp_path)
    assert truth["7.jpg"] == ["can", "water_bottle"]

    result = multilabel_sample.main(ml_client, str(tmp_path), sample_image_name="7.jpg")

    # the converter's JSONL: one line per labels.csv row, labels as lists, URLs under the uploaded folder
    assert [row["label"] for row in result["annotations"]] == list(truth.values())
    assert all(row["image_url"].startswith(result["data_path"] + "images/") for row in result["annotations"])
    jobs = [azureml_fake.state.jobs[name] for name in result["jobs"]]
    assert [j.status for j in jobs] == ["Completed"] * 3
    automode, single, sweep = (j.body["properties"]["taskDetails"] for j in jobs)
    assert {t["taskType"] for t in (automode, single, sweep)} == {"ImageClassificationMultilabel"}
    assert automode["primaryMetric"] == sweep["primaryMetric"] == "IOU"
    assert automode["limitSettings"] == {"maxTrials": 10, "maxConcurrentTrials": 2}
    assert single["modelSettings"] == {"modelName": "vitb16r224"} and single["limitSettings"]["timeout"] == "PT1H"
    assert [s["modelName"] for s in sweep["searchSpace"]] == ["choice('vitb16r224')", "choice('seresnext')"]
    assert sweep["sweepSettings"]["earlyTermination"]["policyType"] == "Bandit"
    assert all(t["trainingData"]["jobInputType"] == "mltable" and t["validationData"]["uri"] for t in
               (automode, single, sweep))
    hd = azureml_fake.state.jobs[f"{result['jobs'][-1]}_HD"]
    assert hd.metrics.keys() == {"iou"} and result["best_child_run_id"] == hd.properties["best_child_run_id"]
    # the uploaded folder holds every image and labels.csv
    names = {name for _, name in azureml_fake.blobs}
    assert sum(n.endswith(".jpg") for n in names) == 20 and any(n.endswith("/labels.csv") for n in names)

    # scoring: every label the model knows, in its order; the notebook's 0.5 threshold keeps the image's two
    prediction = result["prediction"]
    assert prediction["labels"] == sorted(FRIDGE_COLOURS) and len(prediction["probs"]) == 4
    assert sorted(result["labels_above_threshold"]) == ["can", "water_bottle"]
    # XAI: one visualisation per label scoring >= confidence_score_threshold_multilabel (0.8), no attributions
    explanation = result["explanation"]
    above = [p for p in explanation["probs"] if p >= 0.8]
    assert len(explanation["visualizations"]) == len(above) >= 1 and "attributions" not in explanation
    assert result["explanation_image_size"] == (24, 24)
    assert azureml_fake.state.billable() == {"computes": ["gpu-cluster"], "endpoints": [], "deployments": []}


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


def _two_models(azureml_fake, ml_client) -> tuple[str, str]:
    """Two registered AutoML image models (trials 0 and 1 of one multi-label job)."""
    job = automl.image_classification_multilabel(
        compute=_compute(ml_client), experiment_name="imgcls", target_column_name="label",
        training_data=Input(type=AssetTypes.MLTABLE, path=_upload_multilabel_set(azureml_fake)))
    name = ml_client.jobs.create_or_update(job).name
    ml_client.jobs.stream(name)
    return tuple(ml_client.models.create_or_update(Model(
        name="rollout", type=AssetTypes.MLFLOW_MODEL,
        path=f"azureml://jobs/{name}_HD_{i}/outputs/artifacts/paths/outputs/mlflow-model/")).id for i in (0, 1))


def _request_file(tmp_path, rgb) -> str:
    path = tmp_path / f"request-{rgb[0]}-{rgb[2]}.json"
    path.write_text(json.dumps({"input_data": {"columns": ["image"], "data": [
        base64.encodebytes(make_image(rgb, fmt="PNG")).decode("utf-8")]}}))
    return str(path)


def test_vendor_safe_rollout_sample(azureml_fake, ml_client, tmp_path):
    model_1, model_2 = _two_models(azureml_fake, ml_client)
    assert model_1.endswith("/models/rollout/versions/1") and model_2.endswith("/versions/2")

    seen = rollout_sample.main(ml_client, model_1, model_2, _request_file(tmp_path, (210, 20, 20)),
                               _request_file(tmp_path, (20, 20, 210)))

    (blue,), (green,) = json.loads(seen["blue"]), json.loads(seen["green"])
    assert blue["labels"] == green["labels"] == ["blue", "red"]
    assert blue["probs"][1] > 0.5 > blue["probs"][0] and green["probs"][0] > 0.5 > green["probs"][1]
    assert seen["traffic_after_blue"] == {"blue": 100}
    # the scale-out cell PUT the deployment it had read back, with capacity 2
    endpoint = seen["endpoint_name"]
    puts = [r.body for r in azureml_fake.requests if r.method == "PUT" and r.path.endswith(f"/{endpoint}/deployments/blue")]
    assert [b["sku"]["capacity"] for b in puts] == [1, 2]
    assert puts[1]["properties"]["model"] == model_1
    # the endpoint PUTs went through the documented traffic states, all accepted
    endpoint_puts = [r for r in azureml_fake.requests if r.method == "PUT" and r.path.endswith(f"/onlineEndpoints/{endpoint}")]
    assert [r.status for r in endpoint_puts] == [201] + [200] * 5
    assert [(r.body["properties"].get("traffic"), r.body["properties"].get("mirrorTraffic"))
            for r in endpoint_puts[1:]] == [
        # (the SDK strips 0% entries before sending, and get() puts them back for deployments without traffic)
        ({"blue": 100}, {}), ({"blue": 100}, {"green": 10}), ({"blue": 100}, {}),
        ({"blue": 90, "green": 10}, {}), ({"green": 100}, {})]
    # The notebook expects these 20 invokes to go to blue, 10% mirrored to green. But azure-ai-ml 1.35.2 keeps
    # the deployment header of the last invoke that named one (green, cell 7.1) in the shared
    # EndpointInvokeFields.DEFAULT_HEADER, so it sends `azureml-model-deployment: green` every time: green
    # answers them all as named requests, which are never mirrored - as the service does with that header.
    green_on_red = json.loads(seen["mirrored_answers"][0])
    assert green_on_red != [blue] and green_on_red[0]["labels"] == ["blue", "red"]
    assert [json.loads(a) for a in seen["mirrored_answers"]] == [green_on_red] * 20
    assert seen["green_logs"].count("POST /score 200\n") == 21 and "(mirrored)" not in seen["green_logs"]
    assert seen["blue_logs"].count("POST /score 200") == 1
    assert azureml_fake.state.billable()["endpoints"] == [] and azureml_fake.state.billable()["deployments"] == []


def test_online_endpoint_how_to_calls_and_traffic_rules(azureml_fake, ml_client, tmp_path):
    model_1, model_2 = _two_models(azureml_fake, ml_client)
    endpoint = ManagedOnlineEndpoint(name="howto", auth_mode="key")
    ml_client.online_endpoints.begin_create_or_update(endpoint).result()
    for name, model in (("blue", model_1), ("green", model_2)):
        ml_client.online_deployments.begin_create_or_update(ManagedOnlineDeployment(
            name=name, endpoint_name="howto", model=model, instance_type="Standard_DS3_v2",
            instance_count=1)).result()
    assert [e.name for e in ml_client.online_endpoints.list()] == ["howto"]
    assert sorted(d.name for d in ml_client.online_deployments.list("howto")) == ["blue", "green"]
    got = ml_client.online_endpoints.get("howto")
    # get() lists every deployment, at 0% when the endpoint gives it no traffic
    assert got.provisioning_state == "Succeeded" and got.traffic == {"blue": 0, "green": 0} and got.auth_mode == "key"
    keys = ml_client.online_endpoints.get_keys("howto")
    assert keys.primary_key and keys.secondary_key and keys.primary_key != keys.secondary_key

    def put(traffic, mirror=None):
        endpoint.traffic, endpoint.mirror_traffic = traffic, mirror or {}
        return ml_client.online_endpoints.begin_create_or_update(endpoint).result()

    for traffic, mirror, message in [({"blue": 60}, None, "sum to 0 or 100"),
                                     ({"blue": 100}, {"green": 60}, "at most 50%"),
                                     ({"blue": 50, "green": 50}, {"green": 10}, "not both"),
                                     ({"blue": 100}, {"nope": 10}, "does not exist")]:
        with pytest.raises(HttpResponseError, match=message) as raised:
            put(traffic, mirror)
        assert raised.value.status_code == 400
    assert put({"blue": 0, "green": 0}).traffic == {}            # the SDK sends {}: no live traffic at all
    assert ml_client.online_endpoints.get("howto").traffic == {"blue": 0, "green": 0}
    # no live traffic: only a request naming its deployment is served
    request_file = _request_file(tmp_path, (210, 20, 20))
    with pytest.raises(MlException, match="No valid deployments to route to"):   # a text/plain 404
        ml_client.online_endpoints.invoke(endpoint_name="howto", request_file=request_file)
    assert json.loads(ml_client.online_endpoints.invoke(endpoint_name="howto", request_file=request_file,
                                                        deployment_name="green"))[0]["labels"] == ["blue", "red"]
    # mirroring: requests the endpoint routes itself go to blue, about 10% are copied to green
    put({"blue": 100}, {"green": 10})
    body = Path(request_file).read_text()

    def score(**headers):  # the scoring URI itself, whose answer names the deployment that served it
        return requests.post(got.scoring_uri, data=body, verify=azureml_fake.ca_file, headers={
            "Authorization": f"Bearer {keys.primary_key}", "Content-Type": "application/json", **headers})

    answers = [score() for _ in range(30)]
    assert {a.headers["azureml-model-deployment"] for a in answers} == {"blue"}
    green_log = ml_client.online_deployments.get_logs("green", "howto", lines=100)
    assert 1 <= green_log.count("POST /score 200 (mirrored)") <= 8
    assert ml_client.online_deployments.get_logs("blue", "howto", lines=100).count("POST /score 200") == 30
    # a named request is never mirrored
    before = green_log.count("(mirrored)")
    score(**{"azureml-model-deployment": "blue"})
    assert ml_client.online_deployments.get_logs("green", "howto", lines=100).count("(mirrored)") == before
    put({"blue": 0, "green": 100})
    with pytest.raises(HttpResponseError, match="traffic"):     # green still takes live traffic
        ml_client.online_deployments.begin_delete(name="green", endpoint_name="howto").result()
    ml_client.online_deployments.begin_delete(name="blue", endpoint_name="howto").result()
    assert ml_client.online_endpoints.get("howto").traffic == {"green": 100}   # blue's 0% share went with it
    assert "POST /score 200" in ml_client.online_deployments.get_logs("green", "howto", lines=1)
    ml_client.online_endpoints.begin_delete(name="howto").result()
    with pytest.raises(ResourceNotFoundError):
        ml_client.online_endpoints.get("howto")
    assert azureml_fake.state.billable() == {"computes": ["cpu"], "endpoints": [], "deployments": []}
    assert azureml_fake.state.scoring_log == {}


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

"""The fake Vertex AI and Cloud Storage through the real SDKs: Google's own samples, the
high-level flow, Cloud Storage calls, and injected faults."""
from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("google.cloud.aiplatform")

from google.api_core import exceptions
from google.cloud import aiplatform, storage
from google.cloud.aiplatform.compat.types import job_state, pipeline_state
from google.cloud.storage.retry import DEFAULT_RETRY

from tests.fakes.samples import vertex_gapic_lifecycle_samples as life
from tests.fakes.samples import vertex_gapic_samples as gapic
from tests.fakes.samples import vertex_sdk_samples as sdk
from tests.fakes.vertex_fixtures import fixture_vertex_fake, fixture_vertex_images  # noqa: F401

PROJECT, LOCATION = "test-project", "us-central1"
SINGLE = aiplatform.schema.dataset.ioformat.image.single_label_classification
MULTI = aiplatform.schema.dataset.ioformat.image.multi_label_classification
# google-cloud-storage retries for 120 s by default; a broken route must fail fast instead. Keep
# its own predicate: upload errors arrive as InvalidResponse, which api_core's default ignores.
FAST = DEFAULT_RETRY.with_delay(initial=0.01, maximum=0.05).with_timeout(3)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def train(dataset, multi_label=False, model_type="CLOUD", budget=8000, **kwargs):
    job = aiplatform.AutoMLImageTrainingJob(display_name="train", prediction_type="classification",
                                            multi_label=multi_label, model_type=model_type)
    kwargs.setdefault("model_display_name", "toy")
    return job, job.run(dataset=dataset, budget_milli_node_hours=budget, **kwargs)


# (a) Google's samples, unchanged but for how they reach the fake.

def test_sdk_samples_run_on_the_fake(vertex_fake, vertex_images, tmp_path, capsys):
    ds = sdk.create_and_import_dataset_image_sample(PROJECT, LOCATION, "colours", vertex_images.csv)
    model = sdk.create_training_pipeline_image_classification_sample(
        PROJECT, LOCATION, "colours-training", ds.name, model_display_name="colours-model")
    endpoint = sdk.create_endpoint_sample(PROJECT, "colours-endpoint", LOCATION)
    sdk.deploy_model_with_automatic_resources_sample(PROJECT, LOCATION, model.resource_name, endpoint=endpoint)
    image = tmp_path / "red.png"
    image.write_bytes(vertex_images.sample("red"))
    capsys.readouterr()
    sdk.predict_image_classification_sample(PROJECT, LOCATION, endpoint.name, [str(image)])
    assert re.search(r"'displayNames': \['red', ", capsys.readouterr().out)

    vertex_fake.gcs.write("gs://imgcls-data/batch/in.jsonl", "".join(
        json.dumps({"content": f"gs://imgcls-data/images/{label}_5.png", "mimeType": "image/png"}) + "\n"
        for label in ("red", "green", "blue")).encode())
    job = sdk.create_batch_prediction_job_sample(PROJECT, LOCATION, model.resource_name, "colours-batch",
                                                 "gs://imgcls-data/batch/in.jsonl", "gs://imgcls-data/batch/out")
    assert job.state == job_state.JobState.JOB_STATE_SUCCEEDED
    # iter_outputs lists the output directory through google-cloud-storage and STORAGE_EMULATOR_HOST.
    (blob,) = job.iter_outputs()
    assert re.fullmatch(r"batch/out/prediction-colours-model-[\dT_Z]+/predictions_00001\.jsonl", blob.name)
    lines = [json.loads(x) for x in blob.download_as_bytes(timeout=5, retry=FAST).splitlines()]
    assert [line["prediction"]["displayNames"][0] for line in lines] == ["red", "green", "blue"]
    assert lines[0]["instance"]["content"] == "gs://imgcls-data/images/red_5.png"


def test_gapic_samples_run_on_the_fake(vertex_fake, vertex_images, tmp_path, capsys):
    url = vertex_fake.url
    gapic.create_dataset_image_sample(PROJECT, "colours", api_endpoint=url)
    (dataset_id,) = vertex_fake.state.datasets
    gapic.import_data_image_classification_single_label_sample(PROJECT, dataset_id, vertex_images.csv,
                                                               api_endpoint=url)
    assert len(vertex_fake.state.datasets[dataset_id].items) == 18
    # The operations answered done=false, and the REST transport polled them under /ui/.
    assert any(r.path.startswith("/ui/projects/") and "/operations/" in r.path for r in vertex_fake.requests)

    vertex_fake.pipeline_seconds = 0
    gapic.create_training_pipeline_image_classification_sample(PROJECT, "colours-training", dataset_id,
                                                               "colours-model", api_endpoint=url)
    vertex_fake.advance()
    (pipeline,) = vertex_fake.state.pipelines.values()
    assert pipeline.resource["state"] == "PIPELINE_STATE_SUCCEEDED", pipeline.resource.get("error")

    gapic.create_endpoint_sample(PROJECT, "colours-endpoint", api_endpoint=url)
    (endpoint_id,) = vertex_fake.state.endpoints
    gapic.deploy_model_sample(PROJECT, endpoint_id, pipeline.resource["modelToUpload"]["name"],
                              "colours-deployed", api_endpoint=url)
    image = tmp_path / "green.png"
    image.write_bytes(vertex_images.sample("green"))
    capsys.readouterr()
    gapic.predict_image_classification_sample(PROJECT, endpoint_id, str(image), api_endpoint=url)
    out = capsys.readouterr().out
    deployed = vertex_fake.state.endpoints[endpoint_id].resource["deployedModels"][0]["id"]
    assert f"deployed_model_id: {deployed}" in out
    assert re.search(r"'displayNames': \['green'", out)


def test_gapic_lifecycle_samples_run_on_the_fake(vertex_fake, vertex_images, capsys):
    """Read, evaluate, export, undeploy and delete, each through Google's own sample."""
    url = vertex_fake.url
    ds = aiplatform.ImageDataset.create(display_name="colours", gcs_source=vertex_images.csv,
                                        import_schema_uri=SINGLE)
    job, model = train(ds, model_type="MOBILE_TF_LOW_LATENCY_1", budget=1000)
    pipeline_id, model_id = job.name, model.name
    capsys.readouterr()

    life.get_training_pipeline_sample(PROJECT, pipeline_id, api_endpoint=url)
    out = capsys.readouterr().out
    assert "state: PIPELINE_STATE_SUCCEEDED" in out and f'model_id: "{model_id}"' in out
    assert f'name: "projects/123456789012/locations/{LOCATION}/models/{model_id}"' in out

    life.get_model_sample(PROJECT, model_id, api_endpoint=url)
    out = capsys.readouterr().out
    assert 'display_name: "toy"' in out and 'id: "tflite"' in out

    (evaluation,) = vertex_fake.state.models[model_id].evaluations
    evaluation_id = evaluation["name"].rsplit("/", 1)[1]
    life.get_model_evaluation_image_classification_sample(PROJECT, model_id, evaluation_id, api_endpoint=url)
    out = capsys.readouterr().out
    assert 'metrics_schema_uri: "gs://google-cloud-aiplatform/schema/modelevaluation/classification_metrics_1.0.0.yaml"' in out
    assert re.search(r'key: "auPrc"\s+value \{\s+number_value: 1\b', out)

    life.list_model_evaluation_slices_sample(PROJECT, model_id, evaluation_id, api_endpoint=url)
    out = capsys.readouterr().out
    assert out.count("model_evaluation_slice:") == 3
    assert sorted(re.findall(r'dimension: "annotationSpec"\s+value: "(\w+)"', out)) == ["blue", "green", "red"]
    slice_id = re.search(r"/slices/(\d+)", out)[1]
    life.get_model_evaluation_slice_sample(PROJECT, model_id, evaluation_id, slice_id, api_endpoint=url)
    assert 'dimension: "annotationSpec"' in capsys.readouterr().out

    vertex_fake.gcs.create_bucket("exports")
    life.export_model_sample(PROJECT, model_id, "gs://exports/edge/", api_endpoint=url)
    out = capsys.readouterr().out
    exported = re.search(r'artifact_output_uri: "(gs://exports/edge/model-\d+/tf-saved-model/'
                         r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)"', out)
    assert exported and "export_model_response:" in out
    assert vertex_fake.gcs.list(exported[1]) == [f"{exported[1]}/dict.txt", f"{exported[1]}/saved_model.pb"]

    # Edge models are exported, not served ("You cannot use an Edge model in Vertex AI to serve
    # predictions", export-edge-model docs): a CLOUD model goes to the endpoint.
    cloud_job, cloud = train(ds)
    endpoint = aiplatform.Endpoint.create(display_name="colours-endpoint")
    cloud.deploy(endpoint=endpoint, min_replica_count=1, max_replica_count=1)
    deployed_id = endpoint.list_models()[0].id
    with pytest.raises(exceptions.BadRequest, match="deployed"):
        life.delete_model_sample(PROJECT, cloud.name, api_endpoint=url)
    with pytest.raises(exceptions.BadRequest, match="deployed"):
        life.delete_endpoint_sample(PROJECT, endpoint.name, api_endpoint=url)
    capsys.readouterr()

    life.undeploy_model_sample(PROJECT, endpoint.name, deployed_id, api_endpoint=url)  # the v1beta1 surface
    out = capsys.readouterr().out
    assert "undeploy_model_response:" in out
    assert any(r.path.startswith("/v1beta1/") and r.path.endswith(":undeployModel") for r in vertex_fake.requests)
    assert "deployedModels" not in vertex_fake.state.endpoints[endpoint.name].resource
    assert "deployedModels" not in vertex_fake.state.models[cloud.name].resource

    life.delete_endpoint_sample(PROJECT, endpoint.name, api_endpoint=url)
    for some_model in (model_id, cloud.name):
        life.delete_model_sample(PROJECT, some_model, api_endpoint=url)
    for pipeline in (pipeline_id, cloud_job.name):
        life.delete_training_pipeline_sample(PROJECT, pipeline, api_endpoint=url)
    life.delete_dataset_sample(PROJECT, ds.name, api_endpoint=url)
    out = capsys.readouterr().out
    for kind in ("endpoint", "model", "training_pipeline", "dataset"):
        assert re.search(rf"Long running operation: projects/\S+/operations/\d+\ndelete_{kind}_response: \n", out), kind
    assert vertex_fake.state.counts() == dict.fromkeys(vertex_fake.state.counts(), 0)
    with pytest.raises(exceptions.NotFound):
        life.get_model_sample(PROJECT, model_id, api_endpoint=url)
    with pytest.raises(exceptions.NotFound):
        life.delete_dataset_sample(PROJECT, ds.name, api_endpoint=url)


def test_cancel_training_pipeline_sample(vertex_fake, vertex_images, capsys):
    url = vertex_fake.url
    ds = aiplatform.ImageDataset.create(display_name="colours", gcs_source=vertex_images.csv,
                                        import_schema_uri=SINGLE)
    vertex_fake.pipeline_seconds = 60
    gapic.create_training_pipeline_image_classification_sample(PROJECT, "slow", ds.name, "slow-model",
                                                               api_endpoint=url)
    (pipeline_id,) = vertex_fake.state.pipelines
    with pytest.raises(exceptions.BadRequest, match="cannot be deleted"):
        life.delete_training_pipeline_sample(PROJECT, pipeline_id, api_endpoint=url)
    capsys.readouterr()

    life.cancel_training_pipeline_sample(PROJECT, pipeline_id, api_endpoint=url)
    assert capsys.readouterr().out == "response: None\n"  # CancelTrainingPipeline answers Empty
    life.get_training_pipeline_sample(PROJECT, pipeline_id, api_endpoint=url)
    out = capsys.readouterr().out
    assert "state: PIPELINE_STATE_CANCELLED" in out and "code: 1" in out and "model_id" not in out
    with pytest.raises(exceptions.BadRequest, match="PIPELINE_STATE_CANCELLED"):
        life.cancel_training_pipeline_sample(PROJECT, pipeline_id, api_endpoint=url)

    life.delete_training_pipeline_sample(PROJECT, pipeline_id, api_endpoint=url)
    assert not vertex_fake.state.pipelines and not vertex_fake.state.models
    with pytest.raises(exceptions.NotFound):
        life.get_training_pipeline_sample(PROJECT, pipeline_id, api_endpoint=url)


def test_sdk_registry_evaluation_and_teardown(vertex_fake, vertex_images):
    """The SDK's own readers and deleters, and the Model Registry samples, on a trained model."""
    ds = sdk.create_and_import_dataset_image_sample(PROJECT, LOCATION, "colours", vertex_images.csv)
    job, first = train(ds)
    _, second = train(ds, model_display_name="toy-2")
    assert [m.resource_name for m in aiplatform.Model.list(order_by="create_time desc")] == [
        second.resource_name, first.resource_name]
    assert [m.display_name for m in aiplatform.Model.list(order_by="display_name")] == ["toy", "toy-2"]
    assert [m.name for m in aiplatform.Model.list(filter='display_name="toy-2"')] == [second.name]
    with pytest.raises(exceptions.BadRequest):
        aiplatform.Model.list(order_by="labels")

    model = aiplatform.Model(first.name)
    evaluation = model.get_model_evaluation()  # the first (only) one
    (listed,) = model.list_model_evaluations()
    assert evaluation.resource_name == listed.resource_name
    by_id = model.get_model_evaluation(evaluation_id=evaluation.name)
    assert by_id.metrics["auPrc"] == pytest.approx(evaluation.metrics["auPrc"])
    with pytest.raises(exceptions.NotFound):
        model.get_model_evaluation(evaluation_id="123")

    info = sdk.get_model_version_info_sample(first.name, "1", PROJECT, LOCATION)
    assert info.version_id == "1" and info.model_display_name == "toy"
    assert info.model_resource_name == first.resource_name and "default" in info.version_aliases
    (version,) = sdk.list_model_versions_sample(first.name, PROJECT, LOCATION)
    assert version.version_id == "1" and version.model_resource_name == first.resource_name
    with pytest.raises(exceptions.NotFound):
        sdk.get_model_version_info_sample(first.name, "2", PROJECT, LOCATION)

    endpoint = aiplatform.Endpoint.create(display_name="colours-endpoint")
    first.deploy(endpoint=endpoint, traffic_percentage=100, min_replica_count=1, max_replica_count=1)
    second.deploy(endpoint=endpoint, traffic_percentage=50, min_replica_count=1, max_replica_count=1)
    assert sorted(endpoint.traffic_split.values()) == [50, 50]
    endpoint.undeploy_all()
    assert endpoint.list_models() == [] and not endpoint.traffic_split
    endpoint.delete()
    assert aiplatform.Endpoint.list() == []
    with pytest.raises(exceptions.NotFound):
        aiplatform.Endpoint(endpoint.name).list_models()  # the constructor defers the read

    sdk.delete_model_sample(first.name, PROJECT, LOCATION)
    second.delete()
    assert aiplatform.Model.list() == []
    job.delete()
    ds.delete()
    assert vertex_fake.state.counts() == {"datasets": 0, "pipelines": 1, "models": 0, "endpoints": 0,
                                          "batch_jobs": 0}  # the second training's pipeline stays


# (b) The high-level SDK flow a provider uses.

def test_single_label_flow_and_teardown(vertex_fake, vertex_images):
    ds = aiplatform.ImageDataset.create(display_name="colours", gcs_source=[vertex_images.jsonl],
                                        import_schema_uri=SINGLE)
    assert ds.resource_name.startswith("projects/123456789012/")  # the service answers with the number
    job, model = train(ds)
    assert job.state == pipeline_state.PipelineState.PIPELINE_STATE_SUCCEEDED
    assert model.gca_resource.training_pipeline == job.resource_name

    (evaluation,) = model.list_model_evaluations()
    assert evaluation.gca_resource.metrics_schema_uri.endswith("/classification_metrics_1.0.0.yaml")
    metrics = evaluation.metrics
    assert metrics["auPrc"] == pytest.approx(1.0) and metrics["logLoss"] < 0.5
    matrix = metrics["confusionMatrix"]
    assert sorted(s["displayName"] for s in matrix["annotationSpecs"]) == ["blue", "green", "red"]
    assert [list(row) for row in matrix["rows"]] == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]  # one test image each
    point = next(p for p in metrics["confidenceMetrics"] if p["confidenceThreshold"] == 0.5)
    assert {"recall", "precision", "f1Score", "precisionAt1"} <= set(point)

    endpoint = aiplatform.Endpoint.create(display_name="colours-endpoint")
    model.deploy(endpoint=endpoint, min_replica_count=1, max_replica_count=1)
    with pytest.raises(exceptions.BadRequest, match="deployed"):
        model.delete()  # FAILED_PRECONDITION while deployed, as the service does

    answer = endpoint.predict(instances=[{"content": b64(vertex_images.sample("blue"))}],
                              parameters={"confidenceThreshold": 0.0, "maxPredictions": 2})
    (prediction,) = answer.predictions
    assert prediction["displayNames"][0] == "blue" and len(prediction["ids"]) == 2
    assert list(prediction["confidences"]) == sorted(prediction["confidences"], reverse=True)
    assert answer.deployed_model_id == endpoint.list_models()[0].id and answer.model_version_id == "1"
    strict = endpoint.predict(instances=[{"content": b64(vertex_images.sample("blue"))}],
                              parameters={"confidenceThreshold": 0.99})
    assert list(strict.predictions[0]["displayNames"]) in ([], ["blue"])
    with pytest.raises(exceptions.BadRequest, match="payload size"):
        endpoint.predict(instances=[{"content": b64(b"\0" * 1_600_000)}])

    with pytest.raises(exceptions.BadRequest, match="deployed"):
        endpoint.delete()
    endpoint.undeploy_all()
    endpoint.delete()
    model.delete()
    job.delete()
    ds.delete()
    assert vertex_fake.state.counts() == dict.fromkeys(vertex_fake.state.counts(), 0)


def test_multi_label_mobile_model_exports(vertex_fake, vertex_images):
    ds = aiplatform.ImageDataset.create(display_name="mixed", gcs_source=vertex_images.multilabel_jsonl,
                                        import_schema_uri=MULTI)
    _, model = train(ds, multi_label=True, model_type="MOBILE_TF_LOW_LATENCY_1", budget=1000)
    (evaluation,) = model.list_model_evaluations()
    assert "confusionMatrix" not in evaluation.metrics  # multi-label evaluations have none

    vertex_fake.gcs.create_bucket("exports")
    out = model.export_model(export_format_id="tflite", artifact_destination="gs://exports/toy/")
    files = vertex_fake.gcs.list(out["artifactOutputUri"])
    assert [f.rsplit("/", 1)[1] for f in files] == ["dict.txt", "model.tflite"]
    assert vertex_fake.gcs.read(files[0]).decode().split() == ["green", "red"]

    cloud_ds = aiplatform.ImageDataset.create(display_name="colours", gcs_source=vertex_images.csv,
                                              import_schema_uri=SINGLE)
    _, cloud = train(cloud_ds)
    client = aiplatform.gapic.ModelServiceClient(**vertex_fake.client_kwargs())
    with pytest.raises(exceptions.BadRequest, match="does not support export"):
        client.export_model(name=cloud.resource_name, output_config={
            "export_format_id": "tflite", "artifact_destination": {"output_uri_prefix": "gs://exports/x/"}})


def test_import_checks_every_image(vertex_fake, vertex_images):
    rows = ["gs://imgcls-data/images/red_0.png,red", "gs://imgcls-data/images/green_0.png,green",
            "gs://imgcls-data/missing.png,red", "gs://imgcls-data/import/single.csv,blue"]
    vertex_fake.gcs.write("gs://imgcls-data/partly.csv", "\n".join(rows).encode())
    ds = aiplatform.ImageDataset.create(display_name="partly", gcs_source="gs://imgcls-data/partly.csv",
                                        import_schema_uri=SINGLE)
    (dataset,) = vertex_fake.state.datasets.values()
    assert sorted(dataset.items) == ["gs://imgcls-data/images/green_0.png", "gs://imgcls-data/images/red_0.png"]
    import_op = next(op for op in vertex_fake.state.operations.values()
                     if op.resource["metadata"]["@type"].endswith("ImportDataOperationMetadata"))
    failures = import_op.resource["metadata"]["genericMetadata"]["partialFailures"]
    assert [f["message"].split(": ", 1)[1] for f in failures] == [
        "Image gs://imgcls-data/missing.png does not exist.",
        "Image gs://imgcls-data/import/single.csv is not a valid image."]

    vertex_fake.gcs.write("gs://imgcls-data/bad.csv", b"gs://imgcls-data/missing.png,red\n")
    with pytest.raises(exceptions.InvalidArgument, match="No valid data items"):
        ds.import_data(gcs_source="gs://imgcls-data/bad.csv", import_schema_uri=SINGLE)


def test_pipeline_cancel_list_and_delete(vertex_fake, vertex_images):
    ds = aiplatform.ImageDataset.create(display_name="colours", gcs_source=vertex_images.csv,
                                        import_schema_uri=SINGLE)
    vertex_fake.pipeline_seconds = 60
    client = aiplatform.gapic.PipelineServiceClient(**vertex_fake.client_kwargs())
    parent = f"projects/{PROJECT}/locations/{LOCATION}"
    pipeline = client.create_training_pipeline(parent=parent, training_pipeline={
        "display_name": "slow", "training_task_definition": aiplatform.schema.training_job.definition
        .automl_image_classification, "input_data_config": {"dataset_id": ds.name},
        "training_task_inputs": {"modelType": "CLOUD", "budgetMilliNodeHours": 8000}})
    def listed(expression):
        return [p.name for p in client.list_training_pipelines({"parent": parent, "filter": expression})]

    assert listed('display_name="slow"') == [pipeline.name] and listed('display_name="other"') == []
    with pytest.raises(exceptions.BadRequest, match="cannot be deleted"):
        client.delete_training_pipeline(name=pipeline.name)
    client.cancel_training_pipeline(name=pipeline.name)
    cancelled = client.get_training_pipeline(name=pipeline.name)
    assert cancelled.state == pipeline_state.PipelineState.PIPELINE_STATE_CANCELLED and cancelled.error.code == 1
    client.delete_training_pipeline(name=pipeline.name).result()
    assert not vertex_fake.state.pipelines and not vertex_fake.state.models


# Cloud Storage, as google-cloud-storage 3.x calls it through STORAGE_EMULATOR_HOST.

def test_gcs_json_api(vertex_fake):
    client = storage.Client(project=PROJECT)
    bucket = client.create_bucket("b1", timeout=5, retry=FAST)
    with pytest.raises(exceptions.Conflict):
        client.create_bucket("b1", timeout=5, retry=None)
    assert client.get_bucket("b1", timeout=5, retry=FAST).name == "b1"

    bucket.blob("a/small.txt").upload_from_string(b"hello", timeout=5)  # multipart
    big = os.urandom(600_000)
    bucket.blob("a/big.bin", chunk_size=256 * 1024).upload_from_string(big, timeout=5)  # resumable, 3 chunks
    assert vertex_fake.gcs.read("gs://b1/a/big.bin") == big
    with pytest.raises(exceptions.PreconditionFailed):
        bucket.blob("a/small.txt").upload_from_string(b"again", if_generation_match=0, timeout=5)

    assert [b.name for b in client.list_blobs("b1", prefix="a/", page_size=1, timeout=5, retry=FAST)] == [
        "a/big.bin", "a/small.txt"]
    top = client.list_blobs("b1", delimiter="/", timeout=5, retry=FAST)
    assert list(top) == [] and top.prefixes == {"a/"}
    blob = bucket.get_blob("a/big.bin", timeout=5, retry=FAST)
    assert blob.size == len(big) and blob.crc32c
    assert blob.download_as_bytes(timeout=5, retry=FAST) == big  # checksum verified by the client
    assert bucket.blob("a/big.bin").download_as_bytes(start=10, end=19, timeout=5, retry=FAST) == big[10:20]
    assert bucket.get_blob("nope", timeout=5, retry=FAST) is None

    with pytest.raises(exceptions.Conflict):
        bucket.delete(timeout=5, retry=None)
    bucket.delete(force=True, timeout=5, retry=FAST)
    assert vertex_fake.gcs.buckets == {}


# (c) Faults.

def test_vertex_429_is_raised_and_the_next_call_succeeds(vertex_fake):
    fault = vertex_fake.faults.add("POST", r"/datasets$", 429, headers={"Retry-After": "1"})
    with pytest.raises(exceptions.TooManyRequests):
        aiplatform.ImageDataset.create(display_name="empty")  # creates are not retried by the SDK
    aiplatform.ImageDataset.create(display_name="empty")
    assert fault.hits == 1 and len(vertex_fake.state.datasets) == 1


def test_sdk_retries_503_on_reads_and_operation_polls(vertex_fake, vertex_images):
    polls = vertex_fake.faults.add("GET", r"^/ui/.*/operations/", 503)
    reads = vertex_fake.faults.add("GET", r"/trainingPipelines/", 503, times=2)
    ds = aiplatform.ImageDataset.create(display_name="colours", gcs_source=vertex_images.csv,
                                        import_schema_uri=SINGLE)
    _, model = train(ds)
    assert polls.hits == 1 and reads.hits == 2 and model.display_name == "toy"


def test_gcs_503_then_success(vertex_fake):
    vertex_fake.gcs.create_bucket("b2")
    fault = vertex_fake.faults.add("POST", r"^/upload/storage/v1/b/b2/o$", 503, times=2)
    bucket = storage.Client(project=PROJECT).bucket("b2")
    bucket.blob("x.txt").upload_from_string(b"x", timeout=5, retry=FAST)  # uploads retry only when asked
    assert fault.hits == 2 and vertex_fake.gcs.read("gs://b2/x.txt") == b"x"


def test_failed_pipeline_surfaces_its_error(vertex_fake, vertex_images):
    ds = aiplatform.ImageDataset.create(display_name="colours", gcs_source=vertex_images.csv,
                                        import_schema_uri=SINGLE)
    vertex_fake.fail_next_pipeline("Training failed: internal error in the AutoML backend.")
    job = aiplatform.AutoMLImageTrainingJob(display_name="doomed", prediction_type="classification")
    with pytest.raises(RuntimeError, match="internal error in the AutoML backend"):
        job.run(dataset=ds, budget_milli_node_hours=8000)
    assert job.state == pipeline_state.PipelineState.PIPELINE_STATE_FAILED
    assert job.gca_resource.error.code == 13 and not vertex_fake.state.models


@pytest.mark.parametrize("budget", [7999, 800_001])
def test_budget_out_of_range_is_400(vertex_fake, budget):
    ds = aiplatform.ImageDataset.create(display_name="empty")
    with pytest.raises(exceptions.BadRequest, match="budget_milli_node_hours"):
        train(ds, budget=budget)
    assert not vertex_fake.state.pipelines


def test_other_project_is_denied(vertex_fake):
    with pytest.raises(exceptions.Forbidden):
        aiplatform.ImageDataset.create(display_name="x", project="someone-else")


def test_runs_standalone():
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.vertex", "--port", "0", "--bucket", "b"],
                            cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
        url = lines[0].split(" at ")[1].strip()
        assert lines[2].strip() == f"export STORAGE_EMULATOR_HOST={url}"
        with urllib.request.urlopen(f"{url}/storage/v1/b", timeout=5) as response:
            assert [b["name"] for b in json.load(response)["items"]] == ["b"]
    finally:
        proc.terminate()
        proc.wait(timeout=5)

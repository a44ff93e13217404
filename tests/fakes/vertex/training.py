"""AutoML image classification training pipelines and the models they upload: evaluations and export.

A pipeline moves PENDING -> RUNNING -> SUCCEEDED (or FAILED/CANCELLED) as time passes,
checked whenever a request arrives. At the end it reads the dataset's images from the fake
GCS, fits the toy model on the training and validation items and evaluates it on the test
items, the way the service splits them.
"""
from __future__ import annotations

import hashlib
import json
import time

from tests.fakes.toymodel import ToyModel
from tests.fakes.vertex import datasets
from tests.fakes.vertex.evaluation import METRICS_SCHEMA, classification_metrics, label_slice
from tests.fakes.vertex.state import ApiError, Model, Pipeline, matches_filter, now, ordered, page

DEFINITION = "gs://google-cloud-aiplatform/schema/trainingjob/definition/automl_image_classification_1.0.0.yaml"
PREDICT = "gs://google-cloud-aiplatform/schema/predict/"
CLOUD_TYPES = {"CLOUD", "CLOUD_1", "EFFICIENTNET", "MAXVIT", "VIT", "COCA"}
MOBILE_TYPES = {"MOBILE_TF_LOW_LATENCY_1", "MOBILE_TF_VERSATILE_1", "MOBILE_TF_HIGH_ACCURACY_1"}
# (min, max, default) milli node hours, from the SDK's docs and the AutoML pricing pages.
BUDGETS = {"cloud": (8_000, 800_000, 192_000), "mobile": (1_000, 100_000, 24_000)}
# What an edge model exports, and the files each export writes.
EXPORTS = {"tflite": ["model.tflite", "dict.txt"], "edgetpu-tflite": ["edgetpu_model.tflite", "dict.txt"],
           "tf-saved-model": ["saved_model.pb", "dict.txt"], "tf-js": ["model.json", "group1-shard1of1.bin", "dict.txt"],
           "core-ml": ["model.mlmodel", "dict.txt"]}
RUNNING = ("PIPELINE_STATE_PENDING", "PIPELINE_STATE_RUNNING", "PIPELINE_STATE_CANCELLING")


def _number(value, field: str) -> float:
    try:  # a Struct carries it as a double, or as a string when built from the int64 proto
        return float(value)
    except (TypeError, ValueError):
        raise ApiError("INVALID_ARGUMENT", f"{field} must be a number, got {value!r}.")


def create_pipeline(fake, req, m):
    body = req.json()
    if not body.get("displayName"):
        raise ApiError("INVALID_ARGUMENT", "TrainingPipeline.display_name is required.")
    if body.get("trainingTaskDefinition") != DEFINITION:
        raise ApiError("INVALID_ARGUMENT", f"fake Vertex trains only {DEFINITION}, got "
                                           f"{body.get('trainingTaskDefinition')!r}.")
    inputs = body.get("trainingTaskInputs") or {}
    model_type = inputs.get("modelType", "CLOUD")
    if model_type not in CLOUD_TYPES | MOBILE_TYPES:
        raise ApiError("INVALID_ARGUMENT", f"Invalid model type {model_type!r} for image classification.")
    low, high, default = BUDGETS["mobile" if model_type in MOBILE_TYPES else "cloud"]
    budget = _number(inputs.get("budgetMilliNodeHours", default), "budgetMilliNodeHours")
    if not low <= budget <= high:
        raise ApiError("INVALID_ARGUMENT", f"budget_milli_node_hours for {model_type} models must be "
                                           f"between {low} and {high}, got {budget:g}.")
    config = body.get("inputDataConfig") or {}
    if not config.get("datasetId"):
        raise ApiError("INVALID_ARGUMENT", "input_data_config.dataset_id is required for AutoML training.")
    datasets.get(fake, config["datasetId"])
    fractions = config.get("fractionSplit")
    if fractions and sum(_number(v, "fraction") for v in fractions.values()) > 1.0 + 1e-9:
        raise ApiError("INVALID_ARGUMENT", "The sum of the split fractions must not exceed 1.")
    pipeline_id = fake.state.new_id()
    stamp = now()
    resource = {**body, "name": f"{fake.state.parent}/trainingPipelines/{pipeline_id}",
                "state": "PIPELINE_STATE_PENDING", "createTime": stamp, "updateTime": stamp,
                "modelToUpload": {"displayName": body["displayName"], **(body.get("modelToUpload") or {})}}
    failure, fake.state.next_pipeline_failure = fake.state.next_pipeline_failure, None
    fake.state.pipelines[pipeline_id] = Pipeline(resource, time.monotonic(), failure)
    return resource


def get_pipeline(fake, pipeline_id: str) -> Pipeline:
    pipeline = fake.state.pipelines.get(pipeline_id)
    if pipeline is None:
        raise ApiError("NOT_FOUND", f"The TrainingPipeline does not exist: "
                                    f"{fake.state.parent}/trainingPipelines/{pipeline_id}")
    return pipeline


def read_pipeline(fake, req, m):
    return get_pipeline(fake, m["id"]).resource


def list_pipelines(fake, req, m):
    found = [p.resource for p in fake.state.pipelines.values()
             if matches_filter(p.resource, req.query.get("filter"))]
    return page(found, req.query, "trainingPipelines")


def cancel_pipeline(fake, req, m):
    pipeline = get_pipeline(fake, m["id"])
    if pipeline.resource["state"] not in RUNNING:
        raise ApiError("FAILED_PRECONDITION", f"Cannot cancel TrainingPipeline in state "
                                              f"{pipeline.resource['state']}.")
    pipeline.cancel_requested = True
    pipeline.resource.update(state="PIPELINE_STATE_CANCELLING", updateTime=now())
    return {}


def delete_pipeline(fake, req, m):
    pipeline = get_pipeline(fake, m["id"])
    if pipeline.resource["state"] in RUNNING:
        raise ApiError("FAILED_PRECONDITION", f"TrainingPipeline {pipeline.resource['name']} is in "
                                              f"state {pipeline.resource['state']} and cannot be deleted.")
    del fake.state.pipelines[m["id"]]
    return fake.state.operation(pipeline.resource["name"], "DeleteOperationMetadata")


def advance(fake):
    """Move every unfinished pipeline along the clock; run the training when its time is up."""
    for pipeline in fake.state.pipelines.values():
        res = pipeline.resource
        if res["state"] not in RUNNING:
            continue
        elapsed = time.monotonic() - pipeline.created
        if pipeline.cancel_requested:
            _end(res, "PIPELINE_STATE_CANCELLED", ApiError("CANCELLED", "CANCELED"))
        elif elapsed >= fake.state.pipeline_seconds:
            try:
                if pipeline.failure:
                    raise pipeline.failure
                _train(fake, pipeline)
                _end(res, "PIPELINE_STATE_SUCCEEDED")
            except ApiError as e:
                _end(res, "PIPELINE_STATE_FAILED", e)
        elif res["state"] == "PIPELINE_STATE_PENDING" and elapsed >= fake.state.pipeline_seconds / 3:
            res.update(state="PIPELINE_STATE_RUNNING", startTime=now(), updateTime=now())


def _end(res: dict, state: str, error: ApiError | None = None):
    stamp = now()
    res.update(state=state, endTime=stamp, updateTime=stamp)
    res.setdefault("startTime", stamp)
    if error:
        res["error"] = error.as_status()


def _split(items: list, config: dict) -> dict[str, list]:
    """Items per ML use, as Vertex assigns them: filters, fractions, ml_use labels, else 80/10/10."""
    # Content-free but stable order: the same dataset splits the same way on every run.
    items = sorted(items, key=lambda i: hashlib.sha256(i.gcs_uri.encode()).hexdigest())
    uses = ("training", "validation", "test")
    if config.get("filterSplit"):
        filters = config["filterSplit"]
        split = {u: [] for u in uses}
        for item in items:
            for use in uses:
                expr = filters.get(f"{use}Filter", "-")
                if expr == "*" or (expr != "-" and matches_filter({"labels": item.resource_labels}, expr)):
                    split[use].append(item)
                    break
        return split
    if not config.get("fractionSplit") and any(i.ml_use for i in items):
        return {u: [i for i in items if (i.ml_use or "training") == u] for u in uses}
    f = config.get("fractionSplit") or {"trainingFraction": 0.8, "validationFraction": 0.1,
                                        "testFraction": 0.1}
    n = len(items)
    train_end = round(n * float(f.get("trainingFraction", 0)))
    val_end = train_end + round(n * float(f.get("validationFraction", 0)))
    test_end = val_end + round(n * float(f.get("testFraction", 0)))
    return {"training": items[:train_end], "validation": items[train_end:val_end],
            "test": items[val_end:test_end]}


def _train(fake, pipeline: Pipeline):
    res = pipeline.resource
    config = res["inputDataConfig"]
    dataset = fake.state.datasets.get(config["datasetId"])
    if dataset is None:
        raise ApiError("NOT_FOUND", f"Dataset {config['datasetId']} was deleted during training.")
    inputs = res.get("trainingTaskInputs") or {}
    multilabel = bool(inputs.get("multiLabel", False))
    split = _split(list(dataset.items.values()), config)
    fit_items = split["training"] + split["validation"]
    labels = sorted({label for item in split["training"] for label in item.labels})
    if len(labels) < 2:
        raise ApiError("INVALID_ARGUMENT", f"The training split must hold at least 2 labels, it "
                                           f"holds {len(labels)} ({len(split['training'])} images).")
    toy = ToyModel(multilabel).fit([(fake.gcs.read(i.gcs_uri), i.labels) for i in fit_items if i.labels])
    model_id = fake.state.new_id()
    name = f"{fake.state.parent}/models/{model_id}"
    stamp = now()
    model_type = inputs.get("modelType", "CLOUD")
    resource = {
        "name": name, "displayName": res["modelToUpload"]["displayName"],
        "predictSchemata": {"instanceSchemaUri": PREDICT + "instance/image_classification_1.0.0.yaml",
                            "parametersSchemaUri": PREDICT + "params/image_classification_1.0.0.yaml",
                            "predictionSchemaUri": PREDICT + "prediction/classification_1.0.0.yaml"},
        "trainingPipeline": res["name"], "supportedDeploymentResourcesTypes": ["AUTOMATIC_RESOURCES"],
        "supportedInputStorageFormats": ["jsonl"], "supportedOutputStorageFormats": ["jsonl"],
        "createTime": stamp, "updateTime": stamp, "etag": "AMEw9yN",
        "labels": (res.get("modelToUpload") or {}).get("labels", {}),
        "versionId": "1", "versionAliases": ["default"], "versionCreateTime": stamp,
        "versionUpdateTime": stamp, "modelSourceInfo": {"sourceType": "AUTOML"}}
    if model_type in MOBILE_TYPES:
        resource["supportedExportFormats"] = [{"id": f, "exportableContents": ["ARTIFACT"]} for f in EXPORTS]
    specs = {label: dataset.specs[label] for label in toy.labels}
    model = Model(resource, toy, model_type, specs)
    _evaluate(fake, model, split["test"])
    fake.state.models[model_id] = model
    res["modelToUpload"] = {**res["modelToUpload"], "name": name, "versionId": "1"}
    res["modelId"] = model_id
    budget = float(inputs.get("budgetMilliNodeHours") or 0)
    res["trainingTaskMetadata"] = {"costMilliNodeHours": str(int(budget)),
                                   "successfulStopReason": "MODEL_CONVERGED"}


def _evaluate(fake, model: Model, test_items: list):
    items = [i for i in test_items if i.labels]
    truths = [i.labels for i in items]
    scores = [model.toy.predict(fake.gcs.read(i.gcs_uri)) for i in items]
    labels = sorted((spec_id, label) for label, spec_id in model.specs.items())
    eval_id = fake.state.new_id()
    name = f"{model.resource['name']}/evaluations/{eval_id}"
    model.evaluations.append({
        "name": name, "metricsSchemaUri": METRICS_SCHEMA,
        "metrics": classification_metrics(labels, truths, scores, model.toy.multilabel),
        "createTime": now(), "sliceDimensions": ["annotationSpec"],
        "dataItemSchemaUri": "gs://google-cloud-aiplatform/schema/dataset/dataitem/image_1.0.0.yaml",
        "annotationSchemaUri": "gs://google-cloud-aiplatform/schema/dataset/annotation/"
                               "image_classification_1.0.0.yaml"})
    model.slices[eval_id] = [
        {"name": f"{name}/slices/{fake.state.new_id()}", "slice": {"dimension": "annotationSpec", "value": label},
         "metricsSchemaUri": METRICS_SCHEMA, "metrics": label_slice(label, truths, scores), "createTime": now()}
        for _, label in labels]


def get_model(fake, model_id: str, version: str | None = None) -> Model:
    model = fake.state.models.get(model_id)
    if model is None or version not in (None, "1", "default"):
        raise ApiError("NOT_FOUND", f"The Model does not exist: {fake.state.parent}/models/{model_id}"
                                    + (f"@{version}" if version else ""))
    return model


def read_model(fake, req, m):
    return get_model(fake, m["id"], m.get("version")).resource


def list_models(fake, req, m):
    found = [x.resource for x in fake.state.models.values()
             if matches_filter(x.resource, req.query.get("filter"))]
    return page(ordered(found, req.query), req.query, "models")


def list_versions(fake, req, m):
    """ListModelVersions: every model here has its one version, "1"; names carry no "@version"."""
    model = get_model(fake, m["id"])
    found = [model.resource] if matches_filter(model.resource, req.query.get("filter")) else []
    return page(ordered(found, req.query, ("create_time", "update_time")), req.query, "models")


def delete_model(fake, req, m):
    model = get_model(fake, m["id"], m.get("version"))
    deployed = model.resource.get("deployedModels")
    if deployed:
        raise ApiError("FAILED_PRECONDITION", f"The Model \"{model.resource['name']}\" is deployed or being "
                                              f"deployed at the following Endpoint(s): "
                                              f"{', '.join(d['endpoint'] for d in deployed)}.")
    del fake.state.models[m["id"]]
    return fake.state.operation(model.resource["name"], "DeleteOperationMetadata")


def export_model(fake, req, m):
    model = get_model(fake, m["id"], m.get("version"))
    config = req.json().get("outputConfig") or {}
    formats = [f["id"] for f in model.resource.get("supportedExportFormats", [])]
    if not formats:
        raise ApiError("FAILED_PRECONDITION", f"Model {model.resource['name']} (type "
                                              f"{model.model_type}) does not support export.")
    fmt = config.get("exportFormatId")
    if fmt not in formats:
        raise ApiError("INVALID_ARGUMENT", f"Export format {fmt!r} is not supported; use one of {formats}.")
    prefix = (config.get("artifactDestination") or {}).get("outputUriPrefix")
    if not prefix:
        raise ApiError("INVALID_ARGUMENT", "output_config.artifact_destination is required.")
    # As the edge-export docs show it: {prefix}/model-MODEL_ID/EXPORT_FORMAT/YYYY-MM-DDThh:mm:ss.sssZ
    stamp = now()[:23] + "Z"
    out_dir = f"{prefix.rstrip('/')}/model-{m['id']}/{fmt}/{stamp}"
    error = None
    try:
        # The artifact is the toy model's JSON: a provider test can load it back and predict.
        payload = json.dumps(model.toy.to_dict()).encode()
        for file_name in EXPORTS[fmt]:
            data = "\n".join(model.toy.labels).encode() if file_name == "dict.txt" else payload
            fake.gcs.write(f"{out_dir}/{file_name}", data)
    except ApiError as e:
        error = ApiError("NOT_FOUND" if e.status == "NOT_FOUND" else "INVALID_ARGUMENT",
                         f"Cannot write to {prefix}: {e.message}")
    return fake.state.operation(model.resource["name"], "ExportModelOperationMetadata",
                                response_type="ExportModelResponse", error=error,
                                metadata={"outputInfo": {"artifactOutputUri": out_dir}})


def list_evaluations(fake, req, m):
    return page(get_model(fake, m["id"], m.get("version")).evaluations, req.query, "modelEvaluations")


def read_evaluation(fake, req, m):
    for evaluation in get_model(fake, m["id"], m.get("version")).evaluations:
        if evaluation["name"].rsplit("/", 1)[1] == m["eval"]:
            return evaluation
    raise ApiError("NOT_FOUND", f"ModelEvaluation {m['eval']} does not exist.")


def list_slices(fake, req, m):
    slices = get_model(fake, m["id"], m.get("version")).slices.get(m["eval"])
    if slices is None:
        raise ApiError("NOT_FOUND", f"ModelEvaluation {m['eval']} does not exist.")
    return page(slices, req.query, "modelEvaluationSlices")


def read_slice(fake, req, m):
    for item in get_model(fake, m["id"], m.get("version")).slices.get(m["eval"], []):
        if item["name"].rsplit("/", 1)[1] == m["slice"]:
            return item
    raise ApiError("NOT_FOUND", f"ModelEvaluationSlice {m['slice']} does not exist.")


def routes(p: str):
    tp = rf"{p}/trainingPipelines/(?P<id>[^/:]+)"
    md = rf"{p}/models/(?P<id>[^/:@]+)(?:@(?P<version>[^/:]+))?"
    ev = rf"{md}/evaluations/(?P<eval>[^/:]+)"
    return [
        ("POST", rf"{p}/trainingPipelines", create_pipeline),
        ("GET", rf"{p}/trainingPipelines", list_pipelines),
        ("GET", tp, read_pipeline),
        ("DELETE", tp, delete_pipeline),
        ("POST", rf"{tp}:cancel", cancel_pipeline),
        ("GET", rf"{p}/models", list_models),
        ("GET", md, read_model),
        ("GET", rf"{p}/models/(?P<id>[^/:@]+):listVersions", list_versions),
        ("DELETE", md, delete_model),
        ("POST", rf"{md}:export", export_model),
        ("GET", rf"{md}/evaluations", list_evaluations),
        ("GET", ev, read_evaluation),
        ("GET", rf"{ev}/slices", list_slices),
        ("GET", rf"{ev}/slices/(?P<slice>[^/:]+)", read_slice),
    ]

"""AutoML image-classification jobs: the ARM job resource, its run-history view, the HyperDrive trials under
it, their metrics (through the MLflow REST API, as azureml-mlflow reads them) and the toy training itself.

A job is NotStarted, then Running, then - on the first look after `fake.job_seconds` - it trains the toy
model from the training MLTable in the blob fake and ends Completed, or Failed with a UserError when the
data cannot be read or `fake.fail_next_job()` asked for it. Like the service, the parent run is tagged
`automl_best_child_run_id` = the best trial, named `{job}_HD_{i}` under `{job}_HD`.
"""
from __future__ import annotations

import copy
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..toymodel import ToyModel, is_image
from .http import Request, Response, error, not_found
from .state import PROVIDER, now_iso, start_operation, system_data
from .workspace import WS, page

HISTORY = r"/history/v1\.0" + WS
MLFLOW = r"/mlflow/v[12]\.0" + WS + r"/api/2\.0/mlflow"
TERMINAL = {"Completed", "Failed", "Canceled"}
# primaryMetric as the job body spells it -> the metric the runs log; the fake ranks trials by accuracy
# for the primary metrics it does not compute (AUCWeighted, PrecisionScoreWeighted, ...)
PRIMARY_METRICS = {"Accuracy": "accuracy", "IOU": "iou"}
ARTIFACT_CONTAINER = "azureml"          # the workspaceartifactstore's container


class DataProblem(Exception):
    """The training data cannot be read; the job fails with this message, as AutoML's validation does."""


@dataclass
class Run:
    name: str
    experiment: str
    created: float
    body: dict | None = None          # the job PUT body exactly as the SDK sent it (parents only)
    parent: str | None = None
    compute: str = ""
    status: str = "NotStarted"
    started: str | None = None
    ended: str | None = None
    error: dict | None = None
    tags: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)
    model: ToyModel | None = None
    failure: str | None = None        # from fake.fail_next_job(), applied when the job would finish
    batch: dict | None = None         # a batch endpoint's scoring job (batch.invoke): what it scores, where to
    system_data: dict = field(default_factory=system_data)
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def task(self) -> dict:
        return ((self.body or {}).get("properties") or {}).get("taskDetails") or {}


def register(router: Any) -> None:
    router.add("GET", WS + r"/jobs", list_jobs)
    router.add("GET", WS + r"/jobs/(?P<name>[^/]+)", get_job)
    router.add("PUT", WS + r"/jobs/(?P<name>[^/]+)", put_job)
    router.add("DELETE", WS + r"/jobs/(?P<name>[^/]+)", delete_job)
    router.add("POST", WS + r"/jobs/(?P<name>[^/]+)/cancel", cancel_job)
    router.add("GET", HISTORY + r"(?:/experiments/[^/]+)?/runs/(?P<name>[^/]+)", get_run)
    router.add("PATCH", HISTORY + r"(?:/experiments/[^/]+)?/runs/(?P<name>[^/]+)", patch_run)
    router.add("GET", HISTORY + r"(?:/experiments/[^/]+)?/runs/(?P<name>[^/]+)/details", get_run_details)
    router.add("GET", HISTORY + r"(?:/experiments/[^/]+)?/runs/(?P<name>[^/]+)/children", get_children)
    router.add("POST", HISTORY + r"/rundata", get_run_data)
    router.add("GET", MLFLOW + r"/runs/get", mlflow_get_run)
    router.add("POST", MLFLOW + r"/runs/search", mlflow_search_runs)
    router.add("GET", MLFLOW + r"/metrics/get-history", mlflow_metric_history)


# -- lifecycle ----------------------------------------------------------------------------

def refresh(fake: Any, run: Run) -> Run:
    """Advance a top-level job by the clock; children only change with their parent."""
    with fake.state.lock:
        if run.parent or run.status not in ("NotStarted", "Running"):
            return run
        elapsed = time.monotonic() - run.created
        if elapsed >= fake.job_seconds:
            _finish(fake, run)
        elif elapsed >= fake.job_seconds / 3 and run.status == "NotStarted":
            run.status, run.started = "Running", now_iso()
    return run


def _fail(run: Run, message: str, code: str = "UserError") -> None:
    run.status, run.ended = "Failed", now_iso()
    run.error = {"error": {"code": code, "message": message, "messageFormat": message,
                           "details": [], "innerError": {"code": "BadArgument"}},
                 "time": now_iso(), "componentName": "automl"}


def _finish(fake: Any, run: Run) -> None:
    run.started = run.started or now_iso()
    if run.failure:
        _fail(run, run.failure)
        return
    if run.batch is not None:
        from .batch import finish_job
        finish_job(fake, run)
        return
    try:
        train, valid = _examples(fake, run)
    except DataProblem as exc:
        _fail(run, str(exc))
        return
    multilabel = run.task.get("taskType") == "ImageClassificationMultilabel"
    metric = PRIMARY_METRICS.get(run.task.get("primaryMetric") or "", "iou" if multilabel else "accuracy")
    if metric == "iou" and not multilabel:
        metric = "accuracy"
    hd = _child(fake, run, f"{run.name}_HD", {"runTemplate": "HyperDrive", "primary_metric_config": json.dumps(
        {"name": metric, "goal": "maximize"})})
    # trial i tries the i-th model the settings or the search space name (choice('a','b') strings)
    model_names = [m for space in run.task.get("searchSpace") or []
                   for m in re.findall(r"'([^']+)'", space.get("modelName") or "")]
    model_names = model_names or [(run.task.get("modelSettings") or {}).get("modelName") or "seresnext"]
    best: Run | None = None
    for i in range(max(1, fake.trials)):
        # trial 0 sees every training image, later ones a thinning subset, so trials differ
        subset = train if i == 0 else train[::i + 1]
        model = ToyModel(multilabel).fit(subset)
        trial = _child(fake, hd, f"{run.name}_HD_{i}", {"runTemplate": "automl_child"})
        trial.metrics = _metrics(model, valid, multilabel)
        model_name = model_names[i % len(model_names)]
        trial.params = {"model_name": model_name}
        trial.properties["score"] = str(trial.metrics[metric])
        trial.properties["hyperparameters"] = json.dumps({"model_name": model_name})
        trial.model = model
        _write_mlflow_model(fake, trial)
        _write_onnx_model(fake, trial, subset)
        if best is None or trial.metrics[metric] > best.metrics[metric]:
            best = trial
    assert best is not None
    hd.properties["best_child_run_id"] = best.name      # HyperDrive's own property for the best trial
    hd.metrics = {metric: best.metrics[metric]}
    run.tags["automl_best_child_run_id"] = best.name    # what the samples read from the parent
    run.metrics = dict(best.metrics)
    run.properties["score"] = best.properties["score"]
    run.model = best.model
    run.status, run.ended = "Completed", now_iso()


def _child(fake: Any, parent: Run, name: str, properties: dict[str, str]) -> Run:
    child = Run(name, parent.experiment, time.monotonic(), parent=parent.name, compute=parent.compute,
                status="Completed", started=now_iso(), ended=now_iso(), properties=dict(properties))
    fake.state.jobs[name] = child
    parent.children.append(name)
    return child


def _metrics(model: ToyModel, examples: list[tuple[bytes, list[str]]], multilabel: bool) -> dict[str, float]:
    if not examples:
        return {"accuracy": 0.0, "iou": 0.0}
    truths = [set(labels) for _, labels in examples]
    scores = [model.predict(data) for data, _ in examples]
    if multilabel:
        preds = [{k for k, v in s.items() if v >= 0.5} for s in scores]
        ious = [len(p & t) / len(p | t) if p | t else 1.0 for p, t in zip(preds, truths)]
        return {"iou": sum(ious) / len(ious),
                "accuracy": sum(p == t for p, t in zip(preds, truths)) / len(truths)}
    preds = [{max(s, key=s.get)} if s else set() for s in scores]
    per_label = []
    for label in model.labels:
        tp = sum(label in p and label in t for p, t in zip(preds, truths))
        fp = sum(label in p and label not in t for p, t in zip(preds, truths))
        fn = sum(label not in p and label in t for p, t in zip(preds, truths))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label.append((precision, recall, f1))
    n = max(1, len(per_label))
    return {"accuracy": sum(p == t for p, t in zip(preds, truths)) / len(truths),
            "precision_score_macro": sum(x[0] for x in per_label) / n,
            "recall_score_macro": sum(x[1] for x in per_label) / n,
            "f1_score_macro": sum(x[2] for x in per_label) / n}


def _write_mlflow_model(fake: Any, trial: Run) -> None:
    """Where AutoML leaves a trial's model: ExperimentRun/dcid.{run}/outputs/mlflow-model/ in the artifact store."""
    prefix = f"ExperimentRun/dcid.{trial.name}/outputs/mlflow-model/"
    mlmodel = {"artifact_path": "outputs/mlflow-model", "run_id": trial.name,
               "flavors": {"python_function": {"loader_module": "mlflow.pyfunc.model",
                                               "python_model": "python_model.pkl", "env": "conda.yaml"}}}
    fake.blobs.containers.setdefault(ARTIFACT_CONTAINER, {})
    fake.blobs.put(ARTIFACT_CONTAINER, prefix + "MLmodel", yaml.safe_dump(mlmodel).encode(), "text/plain")
    fake.blobs.put(ARTIFACT_CONTAINER, prefix + "toy-model.json", json.dumps(trial.model.to_dict()).encode(),
                   "application/json")


def _write_onnx_model(fake: Any, trial: Run, examples: list) -> None:
    """AutoML for images also leaves the trial's model as ONNX, with the labels in its output order, in
    the trial's train_artifacts/ (Azure ML studio: the best trial's "Outputs + logs")."""
    from ..toymodel import onnx_model

    prefix = f"ExperimentRun/dcid.{trial.name}/train_artifacts/"
    data, labels = onnx_model(examples)
    fake.blobs.put(ARTIFACT_CONTAINER, prefix + "model.onnx", data, "application/octet-stream")
    fake.blobs.put(ARTIFACT_CONTAINER, prefix + "labels.json", json.dumps(labels).encode(), "application/json")


# -- reading the training data ---------------------------------------------------------------

def _examples(fake: Any, run: Run) -> tuple[list, list]:
    target = run.task.get("targetColumnName") or "label"
    train = _read_mltable(fake, (run.task.get("trainingData") or {}).get("uri") or "", target)
    valid_uri = (run.task.get("validationData") or {}).get("uri")
    if valid_uri:
        return train, _read_mltable(fake, valid_uri, target)
    if len(train) < 5:
        return train, train
    # without validation data AutoML holds out a share of the training data (validation_data_size 0.2)
    return [e for i, e in enumerate(train) if i % 5], train[::5]


def resolve_path(fake: Any, uri: str) -> tuple[str, str]:
    """(container, blob path) behind a datastore URI, a data asset reference or a blob URL."""
    asset = (re.match(r"azureml:([^:/][^:]*):([^:]+)$", uri)
             or re.search(r"/data/([^/]+)/versions/([^/]+)$", uri))
    if asset:
        found = fake.state.data.get(asset[1], {}).get(asset[2])
        if not found:
            raise DataProblem(f"Data asset {asset[1]}:{asset[2]} not found.")
        return resolve_path(fake, found["properties"]["dataUri"])
    ds = re.search(r"datastores/([^/]+)/paths/(.*)$", uri)
    if ds:
        containers = {"workspaceblobstore": fake.workspace.container, "workspaceartifactstore": ARTIFACT_CONTAINER}
        if ds[1] not in containers:
            raise DataProblem(f"Datastore {ds[1]} not found.")
        return containers[ds[1]], ds[2]
    blob = re.match(r"https://[^/]+/([^/]+)/(.*)$", uri)
    if blob:
        return blob[1], blob[2]
    raise DataProblem(f"Unsupported data path {uri!r}: expected azureml://datastores/<name>/paths/<path>.")


def _read_blob(fake: Any, container: str, path: str) -> bytes:
    data = fake.blobs.get(container, path)
    if data is None:
        raise DataProblem(f"DataPathNotFound: {path} does not exist in the datastore.")
    return data


def _read_mltable(fake: Any, uri: str, target: str) -> list[tuple[bytes, list[str]]]:
    container, folder = resolve_path(fake, uri)
    folder = folder.rstrip("/")
    spec = yaml.safe_load(_read_blob(fake, container, f"{folder}/MLTable")) or {}
    examples = []
    for entry in spec.get("paths") or []:
        ref = entry.get("file") or entry.get("folder") or entry.get("pattern") or ""
        c, p = resolve_path(fake, ref) if "://" in ref else (container, f"{folder}/{ref.lstrip('./')}")
        names = [p] if entry.get("file") else [n for n in fake.blobs.names(c, p.split("*")[0].rstrip("/"))
                                                if n.endswith(".jsonl")]
        for name in names:
            for n, line in enumerate(_read_blob(fake, c, name).decode().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    labels = row[target]
                    image = _read_blob(fake, *resolve_path(fake, row["image_url"]))
                except (ValueError, KeyError) as exc:
                    raise DataProblem(f"{name} line {n}: {exc!r}") from exc
                if not is_image(image):
                    raise DataProblem(f"{name} line {n}: {row['image_url']} is not an image.")
                examples.append((image, labels if isinstance(labels, list) else [labels]))
    if not examples:
        raise DataProblem(f"The MLTable at {uri} yields no rows.")
    return examples


# -- ARM job routes -------------------------------------------------------------------------

def _arm_job(fake: Any, run: Run) -> dict:
    ws = fake.workspace
    if run.parent:
        # children are not served by the job API: the SDK sees no properties and asks run history
        return {"id": f"{ws.id}/jobs/{run.name}", "name": run.name, "type": f"{PROVIDER}/workspaces/jobs",
                "systemData": run.system_data, "properties": None}
    props = copy.deepcopy((run.body or {}).get("properties") or {})
    host = ws.base_url.split("://", 1)[1]
    props.update({
        "status": run.status, "experimentName": run.experiment, "displayName": props.get("displayName") or run.name,
        "computeId": f"{ws.id}/computes/{run.compute}" if run.compute else None,
        "tags": dict(run.tags), "properties": dict(run.properties),
        "outputs": props.get("outputs") or {"default": {
            "jobOutputType": "uri_folder", "mode": "ReadWriteMount",
            "uri": f"azureml://datastores/workspaceartifactstore/ExperimentRun/dcid.{run.name}"}},
        "services": {"Tracking": {"jobServiceType": "Tracking",
                                  "endpoint": f"azureml://{host}/mlflow/v1.0{ws.id}?"},
                     "Studio": {"jobServiceType": "Studio",
                                "endpoint": f"https://ml.azure.com/runs/{run.name}?wsid={ws.id}"}},
    })
    return {"id": f"{ws.id}/jobs/{run.name}", "name": run.name, "type": f"{PROVIDER}/workspaces/jobs",
            "systemData": run.system_data, "properties": props}


def put_job(fake: Any, request: Request, match: Any) -> Response:
    name = match["name"]
    body = request.json() or {}
    props = body.get("properties") or {}
    existing = fake.state.jobs.get(name)
    if existing and existing.batch is not None:
        # a batch scoring job (made by invoking a batch endpoint): only its tags and properties change
        existing.tags.update(props.get("tags") or {})
        return Response(200, _arm_job(fake, existing))
    if props.get("jobType") != "AutoML":
        return error(400, "UserError", f"The fake runs AutoML jobs only, not {props.get('jobType')}.",
                     inner="BadArgument")
    task = props.get("taskDetails") or {}
    if task.get("taskType") not in ("ImageClassification", "ImageClassificationMultilabel"):
        return error(400, "UserError", f"The fake runs image classification only, not {task.get('taskType')}.",
                     inner="BadArgument")
    if not (task.get("trainingData") or {}).get("uri"):
        return error(400, "UserError", "trainingData is required.", inner="BadArgument")
    compute = (props.get("computeId") or "").split("/")[-1]
    if compute and compute not in fake.state.computes:
        return error(400, "UserError", f"Compute {compute} not found in workspace {fake.workspace.name}.",
                     inner="NotFound")
    with fake.state.lock:
        existing = fake.state.jobs.get(name)
        if existing:
            # the service only lets a submitted job's description, tags and properties change
            existing.tags.update(props.get("tags") or {})
            existing.properties.update(props.get("properties") or {})
            return Response(200, _arm_job(fake, existing))
        run = Run(name, props.get("experimentName") or "Default", time.monotonic(), body=body, compute=compute,
                  tags=dict(props.get("tags") or {}), failure=fake.take_job_failure())
        multilabel = task["taskType"] == "ImageClassificationMultilabel"
        run.properties.update({
            "runTemplate": "AutoML", "azureml.runsource": "automl",
            "display_task_type": "image_classification_multilabel" if multilabel else "image_classification",
            **(props.get("properties") or {})})
        fake.state.jobs[name] = run
    return Response(201, _arm_job(fake, refresh(fake, run)))


def get_job(fake: Any, request: Request, match: Any) -> Response:
    run = fake.state.jobs.get(match["name"])
    if run is None:
        return not_found("Job", match["name"])
    return Response(200, _arm_job(fake, refresh(fake, run)))


def list_jobs(fake: Any, request: Request, match: Any) -> Response:
    view = request.query.get("listviewtype", "ActiveOnly")
    runs = [refresh(fake, r) for r in list(fake.state.jobs.values()) if not r.parent]
    runs = [r for r in runs if view == "All" or bool((r.body or {}).get("properties", {}).get("isArchived"))
            == (view == "ArchivedOnly")]
    return page([_arm_job(fake, r) for r in reversed(runs)])


def cancel_job(fake: Any, request: Request, match: Any) -> Response:
    run = fake.state.jobs.get(match["name"])
    if run is None:
        return not_found("Job", match["name"])
    refresh(fake, run)
    if run.status not in TERMINAL:
        run.status = "CancelRequested"

    def finish() -> None:
        if run.status == "CancelRequested":
            run.status, run.ended = "Canceled", now_iso()

    return start_operation(fake, request, finish, status=202, location=True)


def delete_job(fake: Any, request: Request, match: Any) -> Response:
    name = match["name"]
    if name not in fake.state.jobs:
        return Response(204)

    def finish() -> None:
        with fake.state.lock:
            pending = [name]
            while pending:
                gone = fake.state.jobs.pop(pending.pop(), None)
                pending.extend(gone.children if gone else [])

    return start_operation(fake, request, finish, status=202, location=True)


# -- run history -----------------------------------------------------------------------------

def _history_run(fake: Any, run: Run, details: bool = False) -> dict:
    refresh(fake, run)
    root = run
    while root.parent and root.parent in fake.state.jobs:
        root = fake.state.jobs[root.parent]
    body: dict[str, Any] = {
        "runId": run.name, "runUuid": run.uuid, "parentRunId": run.parent, "rootRunId": root.name,
        "status": run.status, "createdUtc": run.system_data["createdAt"], "startTimeUtc": run.started,
        "endTimeUtc": run.ended, "target": run.compute, "tags": dict(run.tags),
        "properties": dict(run.properties), "error": run.error,
        "createdBy": {"userName": "fake@imgcls.test", "userObjectId": fake.workspace.tenant_id},
    }
    if details:
        body.update({"createdTimeUtc": body.pop("createdUtc"), "logFiles": {}, "warnings": []})
    else:
        body.update({"name": run.name, "displayName": run.name, "experimentId": str(
            uuid.uuid5(uuid.NAMESPACE_URL, run.experiment)), "runType": "automl" if not run.parent else
            "hyperdrive" if run.name.endswith("_HD") else "azureml.scriptrun",
            "compute": {"target": run.compute} if run.compute else None})
    return body


def _find(fake: Any, match: Any) -> Run | None:
    return fake.state.jobs.get(match["name"])


def get_run(fake: Any, request: Request, match: Any) -> Response:
    run = _find(fake, match)
    return Response(200, _history_run(fake, run)) if run else not_found("Run", match["name"])


def get_run_details(fake: Any, request: Request, match: Any) -> Response:
    run = _find(fake, match)
    return Response(200, _history_run(fake, run, details=True)) if run else not_found("Run", match["name"])


def get_run_data(fake: Any, request: Request, match: Any) -> Response:
    """Run history's rundata, which `jobs.download` asks first for a job's named outputs: AutoML trials
    have none, so the SDK goes on to the default artifact store, ExperimentRun/dcid.<run>/."""
    name = (request.json() or {}).get("runId") or ""
    run = fake.state.jobs.get(name)
    if run is None:
        return not_found("Run", name)
    return Response(200, {"runMetadata": {**_history_run(fake, run), "outputs": {}}})


def patch_run(fake: Any, request: Request, match: Any) -> Response:
    run = _find(fake, match)
    if run is None:
        return not_found("Run", match["name"])
    body = request.json() or {}
    run.tags.update(body.get("tags") or {})
    run.properties.update(body.get("properties") or {})
    return Response(200, _history_run(fake, run))


def get_children(fake: Any, request: Request, match: Any) -> Response:
    run = _find(fake, match)
    if run is None:
        return not_found("Run", match["name"])
    refresh(fake, run)
    children = [_history_run(fake, fake.state.jobs[c]) for c in run.children if c in fake.state.jobs]
    top = int(request.query.get("$top") or 0)
    return Response(200, {"value": children[:top] if top else children, "continuationToken": None,
                          "nextLink": None})


# -- MLflow tracking (what azureml-mlflow calls under azureml://.../mlflow/v1.0/...) ---------------

def _mlflow_run(fake: Any, run: Run) -> dict:
    refresh(fake, run)
    status = {"Completed": "FINISHED", "Failed": "FAILED", "Canceled": "KILLED"}.get(run.status, "RUNNING")
    tags = dict(run.tags)
    if run.parent:
        tags["mlflow.parentRunId"] = run.parent
    tags["mlflow.runName"] = run.name
    ms = int(time.time() * 1000)
    return {
        "info": {"run_id": run.name, "run_uuid": run.name, "run_name": run.name, "status": status,
                 "experiment_id": str(uuid.uuid5(uuid.NAMESPACE_URL, run.experiment)), "user_id": "",
                 "start_time": ms, "end_time": ms if run.status in TERMINAL else None,
                 "lifecycle_stage": "active", "artifact_uri": f"azureml://experiments/{run.experiment}/runs/"
                 f"{run.name}/artifacts"},
        "data": {"metrics": [{"key": k, "value": v, "timestamp": ms, "step": 0} for k, v in run.metrics.items()],
                 "params": [{"key": k, "value": v} for k, v in run.params.items()],
                 "tags": [{"key": k, "value": v} for k, v in tags.items()]},
    }


def mlflow_get_run(fake: Any, request: Request, match: Any) -> Response:
    name = request.query.get("run_id") or request.query.get("run_uuid") or ""
    run = fake.state.jobs.get(name)
    if run is None:
        return Response(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Run {name} not found."})
    return Response(200, {"run": _mlflow_run(fake, run)})


def mlflow_search_runs(fake: Any, request: Request, match: Any) -> Response:
    """Supports the one filter the AutoML notebooks use: tags.mlflow.parentRunId = '<run>'."""
    body = request.json() or {}
    parent = re.search(r"tags\.(?:`mlflow\.parentRunId`|mlflow\.parentRunId)\s*=\s*'([^']+)'",
                       body.get("filter") or "")
    runs = [r for r in fake.state.jobs.values() if not parent or r.parent == parent[1]]
    return Response(200, {"runs": [_mlflow_run(fake, r) for r in runs]})


def mlflow_metric_history(fake: Any, request: Request, match: Any) -> Response:
    run = fake.state.jobs.get(request.query.get("run_id") or "")
    key = request.query.get("metric_key") or ""
    if run is None or key not in run.metrics:
        return Response(200, {"metrics": []})
    return Response(200, {"metrics": [{"key": key, "value": run.metrics[key], "timestamp": 0, "step": 0}]})

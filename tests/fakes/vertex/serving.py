"""Serving: endpoints, deploying and undeploying models, online predict, and batch prediction jobs."""
from __future__ import annotations

import base64
import binascii
import json
import re
import time

from tests.fakes.toymodel import is_image
from tests.fakes.vertex import training
from tests.fakes.vertex.state import ApiError, BatchJob, Endpoint, Model, matches_filter, now, ordered, page

MAX_PAYLOAD = 1.5 * 1024 * 1024  # AutoML image online prediction refuses bigger requests
JOB_RUNNING = ("JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_CANCELLING")


def _tidy(resource: dict) -> dict:
    # proto3 JSON leaves out empty lists and maps; code that indexes them must cope, as with the service.
    for key in ("deployedModels", "trafficSplit"):
        if not resource.get(key):
            resource.pop(key, None)
    return resource


def get_endpoint(fake, endpoint_id: str) -> Endpoint:
    endpoint = fake.state.endpoints.get(endpoint_id)
    if endpoint is None:
        raise ApiError("NOT_FOUND", f"Endpoint `{fake.state.parent}/endpoints/{endpoint_id}` not found.")
    return endpoint


def create_endpoint(fake, req, m):
    body = req.json()
    if not body.get("displayName"):
        raise ApiError("INVALID_ARGUMENT", "Endpoint.display_name is required.")
    endpoint_id = req.query.get("endpointId") or fake.state.new_id()
    if endpoint_id in fake.state.endpoints:
        raise ApiError("ALREADY_EXISTS", f"Endpoint {endpoint_id} already exists.")
    stamp = now()
    resource = _tidy({**body, "name": f"{fake.state.parent}/endpoints/{endpoint_id}",
                      "createTime": stamp, "updateTime": stamp, "etag": "AMEw9yN"})
    fake.state.endpoints[endpoint_id] = Endpoint(resource)
    return fake.state.operation(resource["name"], "CreateEndpointOperationMetadata",
                                response=resource, response_type="Endpoint")


def read_endpoint(fake, req, m):
    return get_endpoint(fake, m["id"]).resource


def list_endpoints(fake, req, m):
    found = [e.resource for e in fake.state.endpoints.values()
             if matches_filter(e.resource, req.query.get("filter"))]
    return page(ordered(found, req.query), req.query, "endpoints")


def delete_endpoint(fake, req, m):
    endpoint = get_endpoint(fake, m["id"])
    if endpoint.resource.get("deployedModels"):
        raise ApiError("FAILED_PRECONDITION", f"Endpoint {endpoint.resource['name']} has deployed or being "
                                              f"deployed DeployedModel(s).")
    del fake.state.endpoints[m["id"]]
    return fake.state.operation(endpoint.resource["name"], "DeleteOperationMetadata")


def _model_of(fake, name: str) -> tuple[str, Model]:
    m = re.fullmatch(r"projects/([^/]+)/locations/([^/]+)/models/([^/@]+)(?:@([^/]+))?", name or "")
    if not m:
        raise ApiError("INVALID_ARGUMENT", f"Invalid model resource name {name!r}.")
    if m[1] not in (fake.state.project, fake.state.project_number) or m[2] != fake.state.location:
        raise ApiError("NOT_FOUND", f"Model {name} not found.")
    return m[3], training.get_model(fake, m[3], m[4])


def _check_split(split: dict, deployed_ids: set[str]):
    unknown = set(split) - deployed_ids
    if unknown:
        raise ApiError("INVALID_ARGUMENT", f"Traffic split names DeployedModels that do not exist: {sorted(unknown)}.")
    if split and sum(int(v) for v in split.values()) != 100:
        raise ApiError("INVALID_ARGUMENT", f"Traffic split percentages must add up to 100, got {split}.")


def deploy_model(fake, req, m):
    endpoint = get_endpoint(fake, m["id"])
    body = req.json()
    spec = dict(body.get("deployedModel") or {})
    _, model = _model_of(fake, spec.get("model"))
    supported = model.resource["supportedDeploymentResourcesTypes"]
    if "dedicatedResources" in spec and "DEDICATED_RESOURCES" not in supported:
        raise ApiError("INVALID_ARGUMENT", f"Model {model.resource['name']} does not support dedicated "
                                           f"resources; AutoML image models take automatic_resources.")
    if "automaticResources" not in spec and "dedicatedResources" not in spec:
        raise ApiError("INVALID_ARGUMENT", "deployed_model.automatic_resources is required for this Model.")
    resources = spec.get("automaticResources") or spec.get("dedicatedResources") or {}
    low, high = int(resources.get("minReplicaCount", 1)), int(resources.get("maxReplicaCount", 1) or 1)
    if low < 1 or high < low:
        raise ApiError("INVALID_ARGUMENT", f"Invalid replica counts: min {low}, max {high}.")
    deployed_id = fake.state.new_id()
    deployed = {**spec, "id": deployed_id, "model": model.resource["name"], "modelVersionId": "1",
                "displayName": spec.get("displayName") or model.resource["displayName"],
                "createTime": now()}
    existing = {d["id"] for d in endpoint.resource.get("deployedModels", [])}
    split = {(deployed_id if k == "0" else k): int(v) for k, v in (body.get("trafficSplit") or {}).items()}
    _check_split(split, existing | {deployed_id})
    endpoint.resource.setdefault("deployedModels", []).append(deployed)
    if split:
        endpoint.resource["trafficSplit"] = split
    endpoint.resource["updateTime"] = now()
    _tidy(endpoint.resource)
    model.resource.setdefault("deployedModels", []).append(
        {"endpoint": endpoint.resource["name"], "deployedModelId": deployed_id})
    return fake.state.operation(endpoint.resource["name"], "DeployModelOperationMetadata",
                                response={"deployedModel": deployed}, response_type="DeployModelResponse")


def undeploy_model(fake, req, m):
    endpoint = get_endpoint(fake, m["id"])
    body = req.json()
    deployed_id = body.get("deployedModelId")
    models = endpoint.resource.get("deployedModels", [])
    gone = next((d for d in models if d["id"] == deployed_id), None)
    if gone is None:
        raise ApiError("NOT_FOUND", f"DeployedModel {deployed_id} not found on {endpoint.resource['name']}.")
    remaining = {d["id"] for d in models} - {deployed_id}
    if "trafficSplit" in body:
        split = {k: int(v) for k, v in body["trafficSplit"].items() if k != deployed_id}
    else:
        split = {k: v for k, v in endpoint.resource.get("trafficSplit", {}).items() if k != deployed_id}
        if remaining and endpoint.resource.get("trafficSplit", {}).get(deployed_id):
            raise ApiError("FAILED_PRECONDITION", f"DeployedModel {deployed_id} still receives traffic; "
                                                  f"pass a traffic_split for the remaining models.")
    _check_split(split, remaining)
    endpoint.resource["deployedModels"] = [d for d in models if d["id"] != deployed_id]
    endpoint.resource["trafficSplit"] = split
    endpoint.resource["updateTime"] = now()
    _tidy(endpoint.resource)
    model = fake.state.models.get(gone["model"].rsplit("/", 1)[1])
    if model:
        model.resource["deployedModels"] = [d for d in model.resource.get("deployedModels", [])
                                            if d["deployedModelId"] != deployed_id]
        _tidy(model.resource)
    return fake.state.operation(endpoint.resource["name"], "UndeployModelOperationMetadata",
                                response_type="UndeployModelResponse")


def _classify(model: Model, image: bytes, parameters: dict) -> dict:
    """The image_classification prediction: labels at or above the threshold, best first."""
    threshold = float(parameters.get("confidenceThreshold", 0.0))
    limit = int(parameters.get("maxPredictions", 10))
    ranked = sorted(model.toy.predict(image).items(), key=lambda kv: -kv[1])
    kept = [(label, score) for label, score in ranked if score >= threshold][:limit]
    return {"ids": [model.specs[label] for label, _ in kept],  # int64: strings in JSON
            "displayNames": [label for label, _ in kept],
            "confidences": [score for _, score in kept]}


def predict(fake, req, m):
    if len(req.body) > MAX_PAYLOAD:
        raise ApiError("INVALID_ARGUMENT", f"Request payload size exceeds the limit: {int(MAX_PAYLOAD)} bytes.")
    endpoint = get_endpoint(fake, m["id"])
    split = endpoint.resource.get("trafficSplit", {})
    if not endpoint.resource.get("deployedModels") or not any(split.values()):
        raise ApiError("FAILED_PRECONDITION", f"Endpoint {endpoint.resource['name']} has no DeployedModel "
                                              f"receiving traffic.")
    deployed_id = max(split, key=lambda k: (split[k], k))  # the fake serves from the largest share
    deployed = next(d for d in endpoint.resource["deployedModels"] if d["id"] == deployed_id)
    _, model = _model_of(fake, deployed["model"])
    body = req.json()
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        raise ApiError("INVALID_ARGUMENT", "instances must be a non-empty list.")
    predictions = []
    for instance in instances:
        try:
            image = base64.b64decode((instance or {}).get("content", ""), validate=True)
        except (binascii.Error, AttributeError, TypeError):
            image = b""
        if not is_image(image):
            raise ApiError("INVALID_ARGUMENT", "Provided image is not valid.")
        predictions.append(_classify(model, image, body.get("parameters") or {}))
    return {"predictions": predictions, "deployedModelId": deployed_id, "model": model.resource["name"],
            "modelDisplayName": model.resource["displayName"], "modelVersionId": "1"}


def get_job(fake, job_id: str) -> BatchJob:
    job = fake.state.batch_jobs.get(job_id)
    if job is None:
        raise ApiError("NOT_FOUND", f"BatchPredictionJob {fake.state.parent}/batchPredictionJobs/{job_id} not found.")
    return job


def create_job(fake, req, m):
    body = req.json()
    if not body.get("displayName"):
        raise ApiError("INVALID_ARGUMENT", "BatchPredictionJob.display_name is required.")
    _model_of(fake, body.get("model"))
    source = body.get("inputConfig") or {}
    target = body.get("outputConfig") or {}
    if source.get("instancesFormat") != "jsonl" or not (source.get("gcsSource") or {}).get("uris"):
        raise ApiError("INVALID_ARGUMENT", "AutoML image models read jsonl instances from gcs_source.")
    if target.get("predictionsFormat") != "jsonl" or not (target.get("gcsDestination") or {}).get("outputUriPrefix"):
        raise ApiError("INVALID_ARGUMENT", "AutoML image models write jsonl predictions to gcs_destination.")
    job_id = fake.state.new_id()
    stamp = now()
    resource = {**body, "name": f"{fake.state.parent}/batchPredictionJobs/{job_id}",
                "state": "JOB_STATE_PENDING", "createTime": stamp, "updateTime": stamp}
    fake.state.batch_jobs[job_id] = BatchJob(resource, time.monotonic())
    return resource


def read_job(fake, req, m):
    return get_job(fake, m["id"]).resource


def list_jobs(fake, req, m):
    found = [j.resource for j in fake.state.batch_jobs.values()
             if matches_filter(j.resource, req.query.get("filter"))]
    return page(found, req.query, "batchPredictionJobs")


def cancel_job(fake, req, m):
    job = get_job(fake, m["id"])
    if job.resource["state"] not in JOB_RUNNING:
        raise ApiError("FAILED_PRECONDITION", f"Cannot cancel a job in state {job.resource['state']}.")
    job.resource.update(state="JOB_STATE_CANCELLING", updateTime=now())
    return {}


def delete_job(fake, req, m):
    job = get_job(fake, m["id"])
    if job.resource["state"] in JOB_RUNNING:
        raise ApiError("FAILED_PRECONDITION", f"BatchPredictionJob {job.resource['name']} is still running.")
    del fake.state.batch_jobs[m["id"]]
    # Not under the job's name: the SDK's REST LRO client only polls the resource kinds it
    # lists (datasets, endpoints, models, trainingPipelines, ...), and location-level names.
    return fake.state.operation(fake.state.parent, "DeleteOperationMetadata")


def advance(fake):
    """Move unfinished batch jobs along the clock; predict and write outputs when time is up."""
    for job in fake.state.batch_jobs.values():
        res = job.resource
        if res["state"] not in JOB_RUNNING:
            continue
        elapsed = time.monotonic() - job.created
        if res["state"] == "JOB_STATE_CANCELLING":
            _end_job(res, "JOB_STATE_CANCELLED", ApiError("CANCELLED", "CANCELED"))
        elif elapsed >= fake.state.batch_seconds:
            try:
                _run_job(fake, res)
                _end_job(res, "JOB_STATE_SUCCEEDED")
            except ApiError as e:
                _end_job(res, "JOB_STATE_FAILED", e)
        elif res["state"] == "JOB_STATE_PENDING" and elapsed >= fake.state.batch_seconds / 3:
            res.update(state="JOB_STATE_RUNNING", startTime=now(), updateTime=now())


def _end_job(res: dict, state: str, error: ApiError | None = None):
    stamp = now()
    res.update(state=state, endTime=stamp, updateTime=stamp)
    res.setdefault("startTime", stamp)
    if error:
        res["error"] = error.as_status()


def _run_job(fake, res: dict):
    _, model = _model_of(fake, res["model"])
    parameters = res.get("modelParameters") or {}
    lines, errors = [], []
    for uri in res["inputConfig"]["gcsSource"]["uris"]:
        for text in fake.gcs.read(uri).decode().splitlines():
            if not text.strip():
                continue
            instance = json.loads(text)
            image_uri = instance.get("content", "")
            try:
                image = fake.gcs.read(image_uri)
                if not is_image(image):
                    raise ApiError("INVALID_ARGUMENT", f"{image_uri} is not a valid image.")
                lines.append({"instance": instance, "prediction": _classify(model, image, parameters)})
            except ApiError as e:
                errors.append({"instance": instance, "error": e.as_status()})
    stamp = now().replace("-", "_").replace(":", "_").replace(".", "_")
    prefix = res["outputConfig"]["gcsDestination"]["outputUriPrefix"].rstrip("/")
    out_dir = f"{prefix}/prediction-{model.resource['displayName']}-{stamp}"
    fake.gcs.write(f"{out_dir}/predictions_00001.jsonl", "".join(json.dumps(x) + "\n" for x in lines).encode(),
                   "application/jsonl")
    if errors:
        fake.gcs.write(f"{out_dir}/errors_00001.jsonl", "".join(json.dumps(x) + "\n" for x in errors).encode(),
                       "application/jsonl")
    res["outputInfo"] = {"gcsOutputDirectory": out_dir}
    res["completionStats"] = {"successfulCount": str(len(lines)), "failedCount": str(len(errors)),
                              "incompleteCount": "0"}


def routes(p: str):
    ep = rf"{p}/endpoints/(?P<id>[^/:]+)"
    bj = rf"{p}/batchPredictionJobs/(?P<id>[^/:]+)"
    return [
        ("POST", rf"{p}/endpoints", create_endpoint),
        ("GET", rf"{p}/endpoints", list_endpoints),
        ("GET", ep, read_endpoint),
        ("DELETE", ep, delete_endpoint),
        ("POST", rf"{ep}:deployModel", deploy_model),
        ("POST", rf"{ep}:undeployModel", undeploy_model),
        ("POST", rf"{ep}:predict", predict),
        ("POST", rf"{p}/batchPredictionJobs", create_job),
        ("GET", rf"{p}/batchPredictionJobs", list_jobs),
        ("GET", bj, read_job),
        ("DELETE", bj, delete_job),
        ("POST", rf"{bj}:cancel", cancel_job),
    ]

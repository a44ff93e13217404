"""Batch endpoints and their deployments (ARM, as azure-ai-ml's batch_endpoints / batch_deployments send
them), and invoking one: POST to the endpoint's scoring URI starts a batch scoring job, which azure-ai-ml
then reads as a job (`jobs.get`). The job scores every file of its input folder with the deployment's
model, by the clock like a training job, and writes one CSV row per file to `outputFileName` in its
output folder: `file,probs,labels` (probs and labels JSON lists, as AutoML's scorer returns them).
"""
from __future__ import annotations

import csv
import io
import json
import time
from typing import Any

from ..toymodel import is_image
from .http import Request, Response, error, not_found
from .state import PROVIDER, now_iso, start_operation
from .workspace import WS, find_model, page

ENDPOINT = WS + r"/batchEndpoints/(?P<endpoint>[^/]+)"
DEFAULT_OUTPUT = "azureml://datastores/workspaceblobstore/paths/azureml/{job}/score/"


def register(router: Any) -> None:
    router.add("GET", WS + r"/batchEndpoints", list_endpoints)
    router.add("GET", ENDPOINT, get_endpoint)
    router.add("PUT", ENDPOINT, put_endpoint)
    router.add("DELETE", ENDPOINT, delete_endpoint)
    router.add("GET", ENDPOINT + r"/deployments", list_deployments)
    router.add("GET", ENDPOINT + r"/deployments/(?P<name>[^/]+)", get_deployment)
    router.add("PUT", ENDPOINT + r"/deployments/(?P<name>[^/]+)", put_deployment)
    router.add("DELETE", ENDPOINT + r"/deployments/(?P<name>[^/]+)", delete_deployment)


# -- endpoints -----------------------------------------------------------------------------------

def list_endpoints(fake: Any, request: Request, match: Any) -> Response:
    return page(list(fake.state.batch_endpoints.values()))


def get_endpoint(fake: Any, request: Request, match: Any) -> Response:
    found = fake.state.batch_endpoints.get(match["endpoint"])
    return Response(200, found) if found else not_found("Batch endpoint", match["endpoint"])


def put_endpoint(fake: Any, request: Request, match: Any) -> Response:
    name = match["endpoint"]
    body = request.json() or {}
    props = dict(body.get("properties") or {})
    if (props.get("authMode") or "AADToken").lower() != "aadtoken":
        # batch endpoints take Microsoft Entra tokens only; the service reads enums case-insensitively
        # (azure-ai-ml sends "aadToken")
        return error(400, "UserError", f"authMode {props.get('authMode')!r} is not supported for batch endpoints; "
                     "use AADToken.", inner="BadArgument")
    existing = fake.state.batch_endpoints.get(name)
    if existing and existing["properties"]["provisioningState"] in ("Creating", "Updating", "Deleting"):
        return error(409, "UserError", f"Endpoint {name} is {existing['properties']['provisioningState']}; "
                     "wait for that operation to finish.", inner="Conflict")
    defaults = props.get("defaults") or {}
    chosen = defaults.get("deploymentName")
    if chosen and (name, chosen) not in fake.state.batch_deployments:
        return error(400, "UserError", f"Deployment {chosen} does not exist in batch endpoint {name}.",
                     inner="BadArgument")
    ws = fake.workspace
    props.update({
        "authMode": "AADToken", "defaults": {"deploymentName": chosen} if chosen else {},
        # real: https://{name}.{region}.inference.ml.azure.com/jobs
        "scoringUri": f"{ws.base_url}/batch/{name}/jobs",
        "swaggerUri": f"{ws.base_url}/batch/{name}/swagger.json",
        "provisioningState": "Updating" if existing else "Creating",
    })
    resource = ws.resource("batchEndpoints", name, props, location=body.get("location") or ws.location,
                           kind="Batch", tags=body.get("tags") or {})
    with fake.state.lock:
        fake.state.batch_endpoints[name] = resource

    def finish() -> None:
        resource["properties"]["provisioningState"] = "Succeeded"

    return start_operation(fake, request, finish, status=200 if existing else 201, body=resource)


def delete_endpoint(fake: Any, request: Request, match: Any) -> Response:
    name = match["endpoint"]
    found = fake.state.batch_endpoints.get(name)
    if not found:
        return Response(204)
    found["properties"]["provisioningState"] = "Deleting"

    def finish() -> None:
        with fake.state.lock:      # deleting a batch endpoint deletes its deployments
            fake.state.batch_endpoints.pop(name, None)
            for key in [k for k in fake.state.batch_deployments if k[0] == name]:
                fake.state.batch_deployments.pop(key)

    return start_operation(fake, request, finish, status=202, location=True)


# -- deployments ---------------------------------------------------------------------------------

def list_deployments(fake: Any, request: Request, match: Any) -> Response:
    return page([d for (e, _), d in fake.state.batch_deployments.items() if e == match["endpoint"]])


def get_deployment(fake: Any, request: Request, match: Any) -> Response:
    found = fake.state.batch_deployments.get((match["endpoint"], match["name"]))
    return Response(200, found) if found else not_found("Deployment", match["name"])


def put_deployment(fake: Any, request: Request, match: Any) -> Response:
    endpoint, name = match["endpoint"], match["name"]
    if endpoint not in fake.state.batch_endpoints:
        return not_found("Batch endpoint", endpoint)
    body = request.json() or {}
    props = dict(body.get("properties") or {})
    model = (props.get("model") or {}).get("assetId") or ""
    if find_model(fake, model) is None:
        return error(400, "UserError", f"Model {model!r} was not found or is not a model the fake can serve "
                     "(register it from a completed job's mlflow-model output).", inner="BadArgument")
    compute = (props.get("compute") or "").rstrip("/").split("/")[-1]
    if not compute:
        return error(400, "UserError", "A compute cluster is required for a batch deployment.", inner="BadArgument")
    if compute not in fake.state.computes:
        return error(400, "UserError", f"Compute {compute} not found in workspace {fake.workspace.name}.",
                     inner="NotFound")
    # what the service fills in when the request leaves it out
    props.setdefault("outputAction", "AppendRow")
    props.setdefault("outputFileName", "predictions.csv")
    props.setdefault("miniBatchSize", 10)
    props.setdefault("maxConcurrencyPerInstance", 1)
    props.setdefault("errorThreshold", -1)
    props.setdefault("loggingLevel", "Info")
    props.setdefault("retrySettings", {"maxRetries": 3, "timeout": "PT30S"})
    props.setdefault("resources", {"instanceCount": 1})
    existing = fake.state.batch_deployments.get((endpoint, name))
    props["provisioningState"] = "Updating" if existing else "Creating"
    resource = fake.workspace.resource(f"batchEndpoints/{endpoint}/deployments", name, props,
                                       location=body.get("location") or fake.workspace.location,
                                       kind="Batch", tags=body.get("tags") or {})
    with fake.state.lock:
        fake.state.batch_deployments[(endpoint, name)] = resource

    def finish() -> None:
        resource["properties"]["provisioningState"] = "Succeeded"

    return start_operation(fake, request, finish, status=200 if existing else 201, body=resource)


def delete_deployment(fake: Any, request: Request, match: Any) -> Response:
    endpoint, name = match["endpoint"], match["name"]
    found = fake.state.batch_deployments.get((endpoint, name))
    if not found:
        return Response(204)
    default = ((fake.state.batch_endpoints.get(endpoint) or {}).get("properties", {}).get("defaults") or {})
    if default.get("deploymentName") == name:
        return error(400, "UserError", f"Deployment {name} is the default deployment of batch endpoint {endpoint}; "
                     "make another deployment the default or delete the endpoint.", inner="BadArgument")
    found["properties"]["provisioningState"] = "Deleting"

    def finish() -> None:
        with fake.state.lock:
            fake.state.batch_deployments.pop((endpoint, name), None)

    return start_operation(fake, request, finish, status=202, location=True)


# -- invoke: the scoring URI starts a job --------------------------------------------------------

def invoke(fake: Any, request: Request) -> Response:
    """POST https://…/batch/{endpoint}/jobs with an Entra token: {"properties": {"inputData": {…},
    "outputData"?: {…}, "name"?: job name}} -> the batch job (BatchJobResource), status NotStarted."""
    from .jobs import Run, refresh

    parts = request.path.strip("/").split("/")
    name = parts[1] if len(parts) > 2 else ""
    endpoint = fake.state.batch_endpoints.get(name)
    if endpoint is None or request.method != "POST" or parts[-1] != "jobs":
        return Response(404, "Not Found", {"Content-Type": "text/plain"})
    if not request.headers.get("authorization", "").lower().startswith("bearer "):
        return error(401, "AuthenticationFailed", "Batch endpoints take a Microsoft Entra token (Bearer).")
    deployment = (request.headers.get("azureml-model-deployment")
                  or (endpoint["properties"].get("defaults") or {}).get("deploymentName"))
    if not deployment:
        return error(400, "UserError", f"Batch endpoint {name} has no default deployment; name one with the "
                     "azureml-model-deployment header.", inner="BadArgument")
    dep = fake.state.batch_deployments.get((name, deployment))
    if dep is None:
        return error(404, "UserError", f"Deployment {deployment} not found in batch endpoint {name}.",
                     inner="NotFound")
    props = (request.json() or {}).get("properties") or {}
    inputs = props.get("inputData") or {}
    if len(inputs) != 1 or not (next(iter(inputs.values())) or {}).get("uri"):
        return error(400, "UserError", "inputData must hold one input with a uri (UriFolder or UriFile).",
                     inner="BadArgument")
    job_name = props.get("name") or f"batchjob-{int(time.time() * 1000)}"
    outputs = props.get("outputData") or {}
    output_uri = (next(iter(outputs.values())) or {}).get("uri") if outputs else None
    output_uri = output_uri or DEFAULT_OUTPUT.format(job=job_name)
    with fake.state.lock:
        if job_name in fake.state.jobs:
            return error(409, "UserError", f"A job named {job_name} already exists.", inner="Conflict")
        input_ = next(iter(inputs.values()))
        body = {"properties": {
            "jobType": "Pipeline", "displayName": job_name, "experimentName": name, "isArchived": False,
            "inputs": {"input_data": {"jobInputType": "uri_folder", "uri": input_["uri"]}},
            "outputs": {"score": {"jobOutputType": "uri_folder", "uri": output_uri}},
            "jobs": {}, "settings": {}, "tags": {}, "properties": {"azureml.batchrun": "true"}}}
        run = Run(job_name, name, time.monotonic(), body=body, compute=_compute(dep), tags={},
                  properties={"azureml.batchrun": "true", "azureml.endpoint": name, "azureml.deployment": deployment})
        run.batch = {"endpoint": name, "deployment": deployment, "input": input_["uri"], "output": output_uri,
                     "file": dep["properties"].get("outputFileName") or "predictions.csv"}
        fake.state.jobs[job_name] = run
    refresh(fake, run)
    ws = fake.workspace
    return Response(200, {
        "id": f"{ws.id}/batchEndpoints/{name}/deployments/{deployment}/jobs/{job_name}", "name": job_name,
        "type": f"{PROVIDER}/workspaces/batchEndpoints/deployments/jobs", "systemData": run.system_data,
        "properties": {"status": run.status, "inputData": inputs, "outputData": outputs or {"score": {
            "jobOutputType": "UriFolder", "uri": output_uri}}, "compute": {"target": run.compute},
            "interactionEndpoints": {"Studio": {"endpoint": f"https://ml.azure.com/runs/{job_name}"}},
            "createdDateTime": now_iso()}})


def _compute(deployment: dict) -> str:
    return (deployment["properties"].get("compute") or "").rstrip("/").split("/")[-1]


def finish_job(fake: Any, run: Any) -> None:
    """Score every file of the job's input folder with the deployment's model (the same scores as its
    online scoring) and write the output file; a folder with no image fails the job."""
    from .jobs import DataProblem, _fail, _read_blob, resolve_path

    spec = run.batch
    dep = fake.state.batch_deployments.get((spec["endpoint"], spec["deployment"]))
    model = find_model(fake, ((dep or {}).get("properties", {}).get("model") or {}).get("assetId") or "")
    if model is None:
        _fail(run, f"Deployment {spec['deployment']} of batch endpoint {spec['endpoint']} has no model to score with.")
        return
    try:
        container, folder = resolve_path(fake, spec["input"])
        names = [n for n in fake.blobs.names(container, folder.rstrip("/") + "/") if not n.endswith("/")]
        out = io.StringIO()
        writer = csv.writer(out)
        scored = 0
        for blob in names:
            data = _read_blob(fake, container, blob)
            if not is_image(data):
                continue            # errorThreshold -1: a file that fails is skipped, the job goes on
            scores = model.predict(data)
            writer.writerow([blob.rsplit("/", 1)[-1], json.dumps([scores[l] for l in model.labels]),
                             json.dumps(list(model.labels))])
            scored += 1
        if not scored:
            raise DataProblem(f"No image files found in the input {spec['input']}.")
        out_container, out_folder = resolve_path(fake, spec["output"])
    except DataProblem as exc:
        _fail(run, str(exc))
        return
    fake.blobs.put(out_container, f"{out_folder.rstrip('/')}/{spec['file']}", out.getvalue().encode(), "text/csv")
    run.properties["azureml.batch.scored"] = str(scored)
    run.status, run.ended = "Completed", now_iso()

"""Managed online endpoints and deployments, their keys and logs, and the scoring URI that answers
like an AutoML image model: [{"probs": [...], "labels": [...]}] per image, labels in the model's order.
"""
from __future__ import annotations

import base64
import json
import random
import secrets
import threading
from typing import Any

from .http import Request, Response, error, not_found
from .state import start_operation
from .workspace import WS, find_model, page

ENDPOINT = WS + r"/onlineEndpoints/(?P<endpoint>[^/]+)"
_pick = random.Random(0)          # traffic split: seeded, so a canary test is repeatable
_pick_lock = threading.Lock()


def register(router: Any) -> None:
    router.add("GET", WS + r"/onlineEndpoints", list_endpoints)
    router.add("GET", ENDPOINT, get_endpoint)
    router.add("PUT", ENDPOINT, put_endpoint)
    router.add("PATCH", ENDPOINT, patch_endpoint)
    router.add("DELETE", ENDPOINT, delete_endpoint)
    router.add("POST", ENDPOINT + r"/listKeys", list_keys)
    router.add("POST", ENDPOINT + r"/regenerateKeys", regenerate_keys)
    router.add("POST", ENDPOINT + r"/token", get_token)
    router.add("GET", ENDPOINT + r"/deployments", list_deployments)
    router.add("GET", ENDPOINT + r"/deployments/(?P<name>[^/]+)", get_deployment)
    router.add("PUT", ENDPOINT + r"/deployments/(?P<name>[^/]+)", put_deployment)
    router.add("DELETE", ENDPOINT + r"/deployments/(?P<name>[^/]+)", delete_deployment)
    router.add("POST", ENDPOINT + r"/deployments/(?P<name>[^/]+)/getLogs", get_logs)


# -- endpoints -------------------------------------------------------------------------------

def list_endpoints(fake: Any, request: Request, match: Any) -> Response:
    return page(list(fake.state.endpoints.values()))


def get_endpoint(fake: Any, request: Request, match: Any) -> Response:
    found = fake.state.endpoints.get(match["endpoint"])
    return Response(200, found) if found else not_found("Online endpoint", match["endpoint"])


def _check_traffic(fake: Any, endpoint: str, traffic: dict[str, int]) -> str | None:
    for name in traffic:
        if (endpoint, name) not in fake.state.deployments:
            return f"Deployment {name} does not exist in endpoint {endpoint}; traffic cannot be routed to it."
    total = sum(int(v) for v in traffic.values())
    if traffic and total != 100:
        return f"Traffic allocation for endpoint {endpoint} must sum to 100, not {total}."
    return None


def put_endpoint(fake: Any, request: Request, match: Any) -> Response:
    name = match["endpoint"]
    body = request.json() or {}
    props = dict(body.get("properties") or {})
    if props.get("authMode") not in ("Key", "AMLToken", "AADToken"):
        return error(400, "UserError", f"authMode {props.get('authMode')!r} is not valid.", inner="BadArgument")
    existing = fake.state.endpoints.get(name)
    if existing and existing["properties"]["provisioningState"] in ("Creating", "Updating", "Deleting"):
        return error(409, "UserError", f"Endpoint {name} is {existing['properties']['provisioningState']}; "
                     "wait for that operation to finish.", inner="Conflict")
    traffic = {k: int(v) for k, v in (props.get("traffic") or {}).items()}
    problem = _check_traffic(fake, name, traffic)
    if problem:
        return error(400, "UserError", problem, inner="BadArgument")
    ws = fake.workspace
    props.update({
        "traffic": traffic, "mirrorTraffic": props.get("mirrorTraffic") or {},
        "scoringUri": f"{ws.base_url}/endpoints/{name}/score",          # real: https://{name}.{region}.inference.ml.azure.com/score
        "swaggerUri": f"{ws.base_url}/endpoints/{name}/swagger.json",
        "publicNetworkAccess": props.get("publicNetworkAccess") or "Enabled",
        "provisioningState": "Updating" if existing else "Creating",
    })
    resource = ws.resource("onlineEndpoints", name, props, location=body.get("location") or ws.location,
                           kind="Managed", tags=body.get("tags") or {},
                           identity={"type": "SystemAssigned", "principalId": ws.workspace_id,
                                     "tenantId": ws.tenant_id})
    with fake.state.lock:
        fake.state.endpoints[name] = resource
        fake.state.endpoint_keys.setdefault(name, {"primaryKey": secrets.token_urlsafe(24),
                                                   "secondaryKey": secrets.token_urlsafe(24)})

    def finish() -> None:
        resource["properties"]["provisioningState"] = "Succeeded"

    return start_operation(fake, request, finish, status=200 if existing else 201, body=resource)


def patch_endpoint(fake: Any, request: Request, match: Any) -> Response:
    found = fake.state.endpoints.get(match["endpoint"])
    if not found:
        return not_found("Online endpoint", match["endpoint"])
    body = request.json() or {}
    found["tags"] = body.get("tags", found.get("tags"))
    return start_operation(fake, request, lambda: None, status=202, location=True)


def delete_endpoint(fake: Any, request: Request, match: Any) -> Response:
    name = match["endpoint"]
    found = fake.state.endpoints.get(name)
    if not found:
        return Response(204)
    found["properties"]["provisioningState"] = "Deleting"

    def finish() -> None:
        # deleting an endpoint takes its deployments (and their VMs) with it
        with fake.state.lock:
            fake.state.endpoints.pop(name, None)
            fake.state.endpoint_keys.pop(name, None)
            for key in [k for k in fake.state.deployments if k[0] == name]:
                fake.state.deployments.pop(key)

    return start_operation(fake, request, finish, status=202, location=True)


def list_keys(fake: Any, request: Request, match: Any) -> Response:
    endpoint = fake.state.endpoints.get(match["endpoint"])
    if not endpoint:
        return not_found("Online endpoint", match["endpoint"])
    if endpoint["properties"]["authMode"] != "Key":
        return error(400, "UserError", "Keys are only available for endpoints with authMode Key.",
                     inner="BadArgument")
    return Response(200, dict(fake.state.endpoint_keys[match["endpoint"]]))


def regenerate_keys(fake: Any, request: Request, match: Any) -> Response:
    keys = fake.state.endpoint_keys.get(match["endpoint"])
    if keys is None:
        return not_found("Online endpoint", match["endpoint"])
    which = "secondaryKey" if ((request.json() or {}).get("keyType") or "").lower() == "secondary" else "primaryKey"

    def finish() -> None:
        keys[which] = secrets.token_urlsafe(24)

    return start_operation(fake, request, finish, status=202, location=True)


def get_token(fake: Any, request: Request, match: Any) -> Response:
    endpoint = fake.state.endpoints.get(match["endpoint"])
    if not endpoint:
        return not_found("Online endpoint", match["endpoint"])
    keys = fake.state.endpoint_keys[match["endpoint"]]
    return Response(200, {"accessToken": keys["primaryKey"], "tokenType": "Bearer",
                          "expiryTimeUtc": 4_102_444_800, "refreshAfterTimeUtc": 4_102_444_000})


# -- deployments -----------------------------------------------------------------------------

def list_deployments(fake: Any, request: Request, match: Any) -> Response:
    return page([d for (e, _), d in fake.state.deployments.items() if e == match["endpoint"]])


def get_deployment(fake: Any, request: Request, match: Any) -> Response:
    found = fake.state.deployments.get((match["endpoint"], match["name"]))
    return Response(200, found) if found else not_found("Deployment", match["name"])


def put_deployment(fake: Any, request: Request, match: Any) -> Response:
    endpoint, name = match["endpoint"], match["name"]
    if endpoint not in fake.state.endpoints:
        return not_found("Online endpoint", endpoint)
    body = request.json() or {}
    props = dict(body.get("properties") or {})
    model = props.get("model") or ""
    if find_model(fake, model) is None:
        return error(400, "UserError", f"Model {model!r} was not found or is not a model the fake can serve "
                     "(register it from a completed job's mlflow-model output).", inner="BadArgument")
    if not (props.get("instanceType") or "").lower().startswith("standard_"):
        return error(400, "UserError", f"Instance type {props.get('instanceType')!r} is not a supported SKU.",
                     inner="BadArgument")
    sku = body.get("sku") or {"name": "Default", "capacity": 1}
    if int(sku.get("capacity", 1)) < 1:
        return error(400, "UserError", "Instance count must be at least 1.", inner="BadArgument")
    # what the service fills in when the request leaves it out
    props.setdefault("scaleSettings", {"scaleType": "Default"})
    props.setdefault("requestSettings", {"requestTimeout": "PT5S", "maxConcurrentRequestsPerInstance": 1})
    for probe in ("livenessProbe", "readinessProbe"):
        props.setdefault(probe, {"initialDelay": "PT10M", "period": "PT10S", "timeout": "PT2S",
                                 "successThreshold": 1, "failureThreshold": 30})
    props.setdefault("appInsightsEnabled", False)
    props.setdefault("egressPublicNetworkAccess", "Enabled")
    existing = fake.state.deployments.get((endpoint, name))
    props["provisioningState"] = "Updating" if existing else "Creating"
    resource = fake.workspace.resource(f"onlineEndpoints/{endpoint}/deployments", name, props,
                                       location=body.get("location") or fake.workspace.location,
                                       kind="Managed", sku=sku, tags=body.get("tags") or {})
    with fake.state.lock:
        fake.state.deployments[(endpoint, name)] = resource

    def finish() -> None:
        resource["properties"]["provisioningState"] = "Succeeded"

    return start_operation(fake, request, finish, status=200 if existing else 201, body=resource)


def delete_deployment(fake: Any, request: Request, match: Any) -> Response:
    endpoint, name = match["endpoint"], match["name"]
    found = fake.state.deployments.get((endpoint, name))
    if not found:
        return Response(204)
    traffic = (fake.state.endpoints.get(endpoint) or {}).get("properties", {}).get("traffic") or {}
    if traffic.get(name, 0) > 0:
        return error(400, "UserError", f"Deployment {name} receives {traffic[name]}% of the traffic of endpoint "
                     f"{endpoint}; set its traffic to 0 before deleting it.", inner="BadArgument")
    found["properties"]["provisioningState"] = "Deleting"

    def finish() -> None:
        with fake.state.lock:
            fake.state.deployments.pop((endpoint, name), None)

    return start_operation(fake, request, finish, status=202, location=True)


def get_logs(fake: Any, request: Request, match: Any) -> Response:
    found = fake.state.deployments.get((match["endpoint"], match["name"]))
    if not found:
        return not_found("Deployment", match["name"])
    lines = [("Instance status: SystemSetup: Succeeded, UserContainerImagePull: Succeeded, "
              "ModelDownload: Succeeded, UserContainerStart: Succeeded"),
             (f"Deployment {match['name']} on {found['properties'].get('instanceType')} "
              f"x{found['sku'].get('capacity', 1)}: model {found['properties'].get('model')}"),
             "Scoring server listening on port 5001"]
    tail = int((request.json() or {}).get("tail") or len(lines))
    return Response(200, {"content": "\n".join(lines[-tail:]) + "\n"})


# -- scoring ---------------------------------------------------------------------------------

def _decode_image(item: Any) -> bytes:
    """An image as AutoML's scoring script takes it: base64 text, or a JSON string with image_base64."""
    if isinstance(item, str) and item.lstrip().startswith("{"):
        item = json.loads(item).get("image_base64", "")
    return base64.b64decode(item)


def score(fake: Any, request: Request) -> Response:
    parts = request.path.strip("/").split("/")
    name = parts[1] if len(parts) > 1 else ""
    endpoint = fake.state.endpoints.get(name)
    if endpoint is None or request.method != "POST" or parts[-1] != "score":
        return Response(404, "Not Found", {"Content-Type": "text/plain"})
    props = endpoint["properties"]
    token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    keys = fake.state.endpoint_keys.get(name, {})
    if props["authMode"] != "AADToken" and token not in (keys.get("primaryKey"), keys.get("secondaryKey")):
        return Response(401, "Unauthorized: the key or token is missing or not valid for this endpoint.",
                        {"Content-Type": "text/plain"})
    deployment = request.headers.get("azureml-model-deployment")
    if deployment:
        if (name, deployment) not in fake.state.deployments:
            return Response(404, f"Deployment {deployment} not found in endpoint {name}.",
                            {"Content-Type": "text/plain"})
    else:
        live = [(d, w) for d, w in (props.get("traffic") or {}).items() if w > 0]
        if not live:
            return Response(404, "No valid deployments to route to. Please check that the endpoint has at least "
                            "one deployment with positive weight values or use a deployment specific header to "
                            "route.", {"Content-Type": "text/plain"})
        with _pick_lock:
            deployment = _pick.choices([d for d, _ in live], weights=[w for _, w in live])[0]
    model = find_model(fake, fake.state.deployments[(name, deployment)]["properties"]["model"])
    results = []
    try:
        for item in (request.json() or {})["input_data"]["data"]:
            scores = model.predict(_decode_image(item))
            results.append({"probs": [scores[label] for label in model.labels], "labels": list(model.labels)})
    except (ValueError, KeyError, TypeError, OSError) as exc:  # bad JSON, bad base64, not an image
        return Response(400, {"error": "Expected {'input_data': {'columns': ['image'], 'data': [<base64 image>, "
                              f"...]}}: {exc!r}"}, {"azureml-model-deployment": deployment})
    return Response(200, results, {"azureml-model-deployment": deployment})

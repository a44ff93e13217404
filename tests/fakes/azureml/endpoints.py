"""Managed online endpoints and deployments, their keys and logs, and the scoring URI that answers
like an AutoML image model: [{"probs": [...], "labels": [...]}] per image, labels in the model's order,
plus "visualizations"/"attributions" when an image asks for model_explainability. Live traffic, mirrored
traffic and the deployment header route requests as the service documents; each deployment's logs end
with an access line per request it scored.
"""
from __future__ import annotations

import base64
import io
import json
import random
import secrets
import threading
import time
from typing import Any

import numpy as np
from PIL import Image

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


def _check_traffic(fake: Any, endpoint: str, traffic: dict[str, int], mirror: dict[str, int]) -> str | None:
    """The service's rules for live and mirrored traffic (how-to-safely-rollout-managed-endpoints): live
    traffic adds up to 0 or 100; mirroring goes to one deployment only, at most 50%, and never to a
    deployment that also takes live traffic."""
    for name in [*traffic, *mirror]:
        if (endpoint, name) not in fake.state.deployments:
            return f"Deployment {name} does not exist in endpoint {endpoint}; traffic cannot be routed to it."
    if any(v < 0 or v > 100 for v in [*traffic.values(), *mirror.values()]):
        return f"Traffic values for endpoint {endpoint} must be between 0 and 100."
    total = sum(traffic.values())
    if total not in (0, 100):
        return f"Traffic allocation for endpoint {endpoint} must sum to 0 or 100, not {total}."
    mirrored = {name: v for name, v in mirror.items() if v > 0}
    if len(mirrored) > 1:
        return f"Mirror traffic can be sent to only one deployment of endpoint {endpoint}, not {sorted(mirrored)}."
    for name, value in mirrored.items():
        if value > 50:
            return f"Mirror traffic to deployment {name} is {value}%; at most 50% can be mirrored."
        if traffic.get(name, 0) > 0:
            return (f"Deployment {name} receives live traffic ({traffic[name]}%); a deployment can receive live "
                    "traffic or mirrored traffic, not both.")
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
    mirror = {k: int(v) for k, v in (props.get("mirrorTraffic") or {}).items()}
    problem = _check_traffic(fake, name, traffic, mirror)
    if problem:
        return error(400, "UserError", problem, inner="BadArgument")
    ws = fake.workspace
    props.update({
        "traffic": traffic, "mirrorTraffic": mirror,
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
                fake.state.scoring_log.pop(key, None)

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
            fake.state.scoring_log.pop((endpoint, name), None)
            # the endpoint forgets the deployment's (zero) live and mirror shares
            props = (fake.state.endpoints.get(endpoint) or {}).get("properties") or {}
            for key in ("traffic", "mirrorTraffic"):
                (props.get(key) or {}).pop(name, None)

    return start_operation(fake, request, finish, status=202, location=True)


def get_logs(fake: Any, request: Request, match: Any) -> Response:
    found = fake.state.deployments.get((match["endpoint"], match["name"]))
    if not found:
        return not_found("Deployment", match["name"])
    lines = [("Instance status: SystemSetup: Succeeded, UserContainerImagePull: Succeeded, "
              "ModelDownload: Succeeded, UserContainerStart: Succeeded"),
             (f"Deployment {match['name']} on {found['properties'].get('instanceType')} "
              f"x{found['sku'].get('capacity', 1)}: model {found['properties'].get('model')}"),
             "Scoring server listening on port 5001",
             *fake.state.scoring_log.get((match["endpoint"], match["name"]), [])]
    tail = int((request.json() or {}).get("tail") or len(lines))
    return Response(200, {"content": "\n".join(lines[-tail:]) + "\n"})


# -- scoring ---------------------------------------------------------------------------------

XAI_ALGORITHMS = ("xrai", "integrated_gradients", "guided_gradcam", "guided_backprop")


def _decode_image(item: Any) -> tuple[bytes, dict | None]:
    """An image as AutoML's scoring script takes it: base64 text, or a JSON string with image_base64 (and,
    for explanations, model_explainability + xai_parameters). Returns (image, xai parameters or None)."""
    xai = None
    if isinstance(item, str) and item.lstrip().startswith("{"):
        request = json.loads(item)
        item = request.get("image_base64", "")
        if request.get("model_explainability"):
            xai = {"xai_algorithm": "xrai", "visualizations": True, "attributions": False,
                   "confidence_score_threshold_multilabel": 0.5, **(request.get("xai_parameters") or {})}
            if xai["xai_algorithm"] not in XAI_ALGORITHMS:
                raise ValueError(f"xai_algorithm {xai['xai_algorithm']!r} is not one of {XAI_ALGORITHMS}")
    return base64.b64decode(item), xai


def _explain(image: bytes, label_rgb: tuple[float, float, float]) -> tuple[str, list]:
    """A stand-in explanation for one class: a PNG heat map of how close each pixel is to the class's mean
    colour (base64), and the per-channel attributions [3][H][W] behind it."""
    with Image.open(io.BytesIO(image)) as im:
        pixels = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    closeness = 1.0 - np.abs(pixels - np.asarray(label_rgb, dtype=np.float32))          # H x W x 3
    heat = (closeness.mean(axis=2) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.stack([heat, np.zeros_like(heat), 255 - heat], axis=2), "RGB").save(buf, "PNG")
    attributions = np.round(closeness.transpose(2, 0, 1) - 0.5, 4).tolist()
    return base64.b64encode(buf.getvalue()).decode(), attributions


def _label_colours(model: Any) -> dict[str, tuple[float, float, float]]:
    """Each label's mean colour, read back from the toy model's 8x8 thumbnail centroid."""
    colours = {}
    for label, centroid in zip(model.labels, model.centroids if model.centroids is not None else []):
        thumb = np.asarray(centroid[:192]).reshape(64, 3)
        norm = float(np.abs(thumb).max()) or 1.0
        colours[label] = tuple(float(c) for c in thumb.mean(axis=0) / norm)
    return colours


def _score_one(model: Any, item: Any) -> dict:
    image, xai = _decode_image(item)
    scores = model.predict(image)
    result: dict[str, Any] = {"probs": [scores[label] for label in model.labels], "labels": list(model.labels)}
    if xai is None:
        return result
    # AutoML explains the top class (multi-class) or every class scoring above
    # confidence_score_threshold_multilabel (multi-label, then both keys are lists)
    if model.multilabel:
        threshold = float(xai["confidence_score_threshold_multilabel"])
        chosen = [label for label in model.labels if scores[label] > threshold]
    else:
        chosen = [max(model.labels, key=scores.get)] if model.labels else []
    colours = _label_colours(model)
    explained = [_explain(image, colours[label]) for label in chosen]
    for key, part in (("visualizations", 0), ("attributions", 1)):
        if xai[key]:  # _decode_image filled in the defaults: visualizations on, attributions off
            values = [e[part] for e in explained]
            result[key] = values if model.multilabel else (values[0] if values else None)
    return result


def score(fake: Any, request: Request) -> Response:
    latency = fake.prediction_latency  # a deployment's time to answer; requests overlap in it
    time.sleep(latency() if callable(latency) else latency)
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
    mirror_to = None
    if not deployment:
        live = [(d, w) for d, w in (props.get("traffic") or {}).items() if w > 0]
        if not live:
            return Response(404, "No valid deployments to route to. Please check that the endpoint has at least "
                            "one deployment with positive weight values or use a deployment specific header to "
                            "route.", {"Content-Type": "text/plain"})
        with _pick_lock:
            deployment = _pick.choices([d for d, _ in live], weights=[w for _, w in live])[0]
            # only traffic the endpoint routes itself is mirrored, never a request naming its deployment
            mirror_to = next((d for d, w in (props.get("mirrorTraffic") or {}).items()
                              if w > 0 and _pick.random() * 100 < w), None)
    status, body = _score(fake, name, deployment, request)
    if mirror_to and (name, mirror_to) in fake.state.deployments:
        _score(fake, name, mirror_to, request, mirrored=True)      # the client never sees this answer
    return Response(status, body, {"azureml-model-deployment": deployment})


def _score(fake: Any, endpoint: str, deployment: str, request: Request, mirrored: bool = False) -> tuple[int, Any]:
    model = find_model(fake, fake.state.deployments[(endpoint, deployment)]["properties"]["model"])
    try:
        status, body = 200, [_score_one(model, item) for item in (request.json() or {})["input_data"]["data"]]
    except (ValueError, KeyError, TypeError, OSError) as exc:  # bad JSON, bad base64, not an image
        status, body = 400, {"error": "Expected {'input_data': {'columns': ['image'], 'data': [<base64 image>, "
                                      f"...]}}: {exc!r}"}
    with fake.state.lock:
        fake.state.scoring_log.setdefault((endpoint, deployment), []).append(
            f"POST /score {status}{' (mirrored)' if mirrored else ''}")
    return status, body

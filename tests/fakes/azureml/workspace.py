"""The workspace itself and its plain resources: discovery, datastores, data and model assets, computes.

Bodies follow the Microsoft.MachineLearningServices REST reference as azure-ai-ml 1.35 reads it;
versioned assets keep whatever properties the client sent and add what the service adds.
"""
from __future__ import annotations

import re
from typing import Any

from .http import Request, Response, error, not_found
from .state import PROVIDER, now_iso, operation_result, operation_status, start_operation, system_data

WS = (r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
      r"Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)")
OPS = r"/subscriptions/[^/]+/providers/Microsoft\.MachineLearningServices/locations/[^/]+"


def register(router: Any) -> None:
    router.add("GET", WS, get_workspace)
    router.add("GET", OPS + r"/mfeOperationsStatus/(?P<op>[^/]+)", operation_status)
    router.add("GET", OPS + r"/mfeOperationResults/(?P<op>[^/]+)", operation_result)
    router.add("GET", WS + r"/datastores", list_datastores)
    router.add("GET", WS + r"/datastores/(?P<name>[^/]+)", get_datastore)
    router.add("POST", WS + r"/datastores/(?P<name>[^/]+)/listSecrets", list_secrets)
    for kind in ("data", "models"):
        router.add("GET", WS + rf"/(?P<kind>{kind})", list_containers)
        router.add("GET", WS + rf"/(?P<kind>{kind})/(?P<name>[^/]+)", get_container)
        router.add("DELETE", WS + rf"/(?P<kind>{kind})/(?P<name>[^/]+)", delete_container)
        router.add("GET", WS + rf"/(?P<kind>{kind})/(?P<name>[^/]+)/versions", list_versions)
        router.add("GET", WS + rf"/(?P<kind>{kind})/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", get_version)
        router.add("PUT", WS + rf"/(?P<kind>{kind})/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", put_version)
        router.add("DELETE", WS + rf"/(?P<kind>{kind})/(?P<name>[^/]+)/versions/(?P<version>[^/]+)",
                   delete_version)
    router.add("GET", WS + r"/computes", list_computes)
    router.add("GET", WS + r"/computes/(?P<name>[^/]+)", get_compute)
    router.add("PUT", WS + r"/computes/(?P<name>[^/]+)", put_compute)
    router.add("DELETE", WS + r"/computes/(?P<name>[^/]+)", delete_compute)


def page(items: list) -> Response:
    return Response(200, {"value": items, "nextLink": None})


# -- workspace and discovery ----------------------------------------------------------------

def get_workspace(fake: Any, request: Request, match: Any) -> Response:
    ws = fake.workspace
    host = ws.base_url.split("://", 1)[1]
    storage = (f"/subscriptions/{ws.subscription_id}/resourceGroups/{ws.resource_group}"
               f"/providers/Microsoft.Storage/storageAccounts/{ws.storage_account}")
    return Response(200, {
        "id": ws.id, "name": ws.name, "type": f"{PROVIDER}/workspaces", "location": ws.location,
        "kind": "Default", "tags": {}, "systemData": system_data(),
        "sku": {"name": "Basic", "tier": "Basic"},
        "identity": {"type": "SystemAssigned", "principalId": ws.workspace_id, "tenantId": ws.tenant_id},
        "properties": {
            "friendlyName": ws.name, "description": "", "provisioningState": "Succeeded",
            "workspaceId": ws.workspace_id, "tenantId": ws.tenant_id,
            "storageAccount": storage,
            "keyVault": storage.replace("Microsoft.Storage/storageAccounts", "Microsoft.KeyVault/vaults"),
            "applicationInsights": storage.replace("Microsoft.Storage/storageAccounts",
                                                   "Microsoft.insights/components"),
            "hbiWorkspace": False, "publicNetworkAccess": "Enabled", "v1LegacyMode": False,
            "storageHnsEnabled": False, "enableDataIsolation": False,
            # The real values are https://{region}.api.azureml.ms/discovery and azureml://{region}.api...
            "discoveryUrl": f"{ws.base_url}/discovery",
            "mlFlowTrackingUri": f"azureml://{host}/mlflow/v1.0{ws.id}",
        },
    })


def discovery(fake: Any, request: Request) -> Response:
    """Where the workspace's data-plane services live; run history is the one the SDK uses."""
    base = fake.workspace.base_url
    return Response(200, {k: base for k in ("api", "catalog", "experimentation", "gallery", "history",
                                            "hyperdrive", "labeling", "modelmanagement", "pipelines")}
                    | {"studio": "https://ml.azure.com"})


# -- datastores ----------------------------------------------------------------------------

DATASTORES = ("workspaceblobstore", "workspaceartifactstore")


def _datastore(fake: Any, name: str = "workspaceblobstore") -> dict:
    ws = fake.workspace
    container = ws.container if name == "workspaceblobstore" else "azureml"
    return ws.resource("datastores", name, {
        "datastoreType": "AzureBlob", "accountName": ws.storage_account, "containerName": container,
        "endpoint": "core.windows.net", "protocol": "https", "isDefault": name == "workspaceblobstore",
        "serviceDataAccessAuthIdentity": "WorkspaceSystemAssignedIdentity",
        "subscriptionId": ws.subscription_id, "resourceGroup": ws.resource_group,
        "credentials": {"credentialsType": "AccountKey"},
        "description": None, "tags": {}, "properties": {},
    })


def list_datastores(fake: Any, request: Request, match: Any) -> Response:
    stores = [_datastore(fake, n) for n in DATASTORES]
    if request.query.get("isdefault", "").lower() == "true":        # datastores.get_default()
        stores = [s for s in stores if s["properties"]["isDefault"]]
    return page(stores)


def get_datastore(fake: Any, request: Request, match: Any) -> Response:
    if match["name"] not in DATASTORES:
        return not_found("Datastore", match["name"])
    return Response(200, _datastore(fake, match["name"]))


def list_secrets(fake: Any, request: Request, match: Any) -> Response:
    if match["name"] not in DATASTORES:
        return not_found("Datastore", match["name"])
    body = request.json() or {}
    if body.get("expirableSecret"):
        # what uploads ask for; the blob fake accepts any signature
        return Response(200, {"secretsType": "Sas", "sasToken": "sv=2023-11-03&ss=b&srt=sco&sp=rwdlac"
                              "&se=2100-01-01T00:00:00Z&sig=ZmFrZQ%3D%3D"})
    return Response(200, {"secretsType": "AccountKey", "key": fake.storage_key})


# -- versioned assets: data and models ------------------------------------------------------

def _store(fake: Any, kind: str) -> dict[str, dict[str, dict]]:
    return fake.state.data if kind.lower() == "data" else fake.state.models


def _container(fake: Any, kind: str, name: str, versions: dict[str, dict]) -> dict:
    numeric = [int(v) for v in versions if v.isdigit()]
    latest = max(versions, key=lambda v: (versions[v]["systemData"]["createdAt"], v))
    return fake.workspace.resource(kind.lower(), name, {
        "latestVersion": latest, "nextVersion": str(max(numeric, default=0) + 1),
        "isArchived": all(v["properties"].get("isArchived") for v in versions.values()),
        "description": None, "tags": {}, "properties": {},
        **({"dataType": next(iter(versions.values()))["properties"].get("dataType")} if kind == "data" else {}),
    })


def list_containers(fake: Any, request: Request, match: Any) -> Response:
    store = _store(fake, match["kind"])
    return page([_container(fake, match["kind"], n, v) for n, v in store.items() if v])


def get_container(fake: Any, request: Request, match: Any) -> Response:
    versions = _store(fake, match["kind"]).get(match["name"])
    if not versions:
        return not_found("Container", match["name"])
    return Response(200, _container(fake, match["kind"], match["name"], versions))


def delete_container(fake: Any, request: Request, match: Any) -> Response:
    with fake.state.lock:
        found = _store(fake, match["kind"]).pop(match["name"], None)
    return Response(200 if found else 204)


def list_versions(fake: Any, request: Request, match: Any) -> Response:
    versions = _store(fake, match["kind"]).get(match["name"], {})
    archived = request.query.get("listviewtype", "ActiveOnly")
    items = [v for v in versions.values()
             if archived == "All" or bool(v["properties"].get("isArchived")) == (archived == "ArchivedOnly")]
    items.sort(key=lambda v: v["systemData"]["createdAt"], reverse=True)
    return page(items)


def get_version(fake: Any, request: Request, match: Any) -> Response:
    found = _store(fake, match["kind"]).get(match["name"], {}).get(match["version"])
    if not found:
        return not_found("Version", f"{match['name']}:{match['version']}")
    return Response(200, found)


def put_version(fake: Any, request: Request, match: Any) -> Response:
    kind, name, version = match["kind"].lower(), match["name"], match["version"]
    props = dict((request.json() or {}).get("properties") or {})
    if kind == "models":
        # Workspace model versions are positive integers (data and environment versions may be any
        # string): https://github.com/Azure/azureml-examples/issues/2725
        problem = None if version.isdigit() and int(version) > 0 else (
            f"Model version '{version}' is not valid: a model version must be a positive integer.")
        problem = problem or _check_model(fake, props)
        if problem:
            return error(400, "UserError", problem, inner="BadArgument")
        props.setdefault("flavors", {"python_function": {"data": {"loader_module": "mlflow.pyfunc.model"}}}
                         if props.get("modelType") == "mlflow_model" else None)
        job = re.match(r"azureml://jobs/([^/]+)/", props.get("modelUri") or "")
        if job:
            props.setdefault("jobName", job[1])
    else:
        if not props.get("dataUri"):
            return error(400, "UserError", "dataUri is required.", inner="BadArgument")
        if props.get("dataType") == "uri_folder" and not props["dataUri"].endswith("/"):
            # the service stores folders with a trailing slash; the AutoML notebooks append file names to it
            props["dataUri"] += "/"
    props.setdefault("isArchived", False)
    props.setdefault("isAnonymous", False)
    props["provisioningState"] = "Succeeded"
    with fake.state.lock:
        versions = _store(fake, kind).setdefault(name, {})
        existed = version in versions
        resource = fake.workspace.resource(f"{kind}/{name}/versions", version, props)
        if existed:
            resource["systemData"]["createdAt"] = versions[version]["systemData"]["createdAt"]
        versions[version] = resource
    return Response(200 if existed else 201, resource)


def _check_model(fake: Any, props: dict) -> str | None:
    """The service reads a job-output model's MLmodel file; a path with none is refused."""
    uri = props.get("modelUri") or ""
    job = re.match(r"azureml://jobs/([^/]+)/outputs/artifacts/(?:paths/)?(.+?)/?$", uri)
    if not job:
        return None
    run = fake.state.jobs.get(job[1])
    if run is None:
        return f"Job {job[1]} not found."
    if run.model is None or not job[2].rstrip("/").endswith("mlflow-model"):
        return f"Could not find an MLmodel file under {uri}."
    return None


def delete_version(fake: Any, request: Request, match: Any) -> Response:
    with fake.state.lock:
        versions = _store(fake, match["kind"]).get(match["name"], {})
        found = versions.pop(match["version"], None)
        if not versions:
            _store(fake, match["kind"]).pop(match["name"], None)
    return Response(200 if found else 204)


def find_model(fake: Any, asset_id: str) -> Any:
    """The ToyModel behind a model asset id (ARM id or azureml:name:version), or None."""
    m = re.search(r"/models/([^/]+)/versions/([^/]+)$", asset_id) or re.match(r"azureml:([^:]+):(.+)$", asset_id)
    if not m:
        return None
    asset = fake.state.models.get(m[1], {}).get(m[2])
    if asset is None:
        return None
    run = re.match(r"azureml://jobs/([^/]+)/", asset["properties"].get("modelUri") or "")
    job = fake.state.jobs.get(run[1]) if run else None
    return job.model if job else None


# -- computes --------------------------------------------------------------------------------

def list_computes(fake: Any, request: Request, match: Any) -> Response:
    return page(list(fake.state.computes.values()))


def get_compute(fake: Any, request: Request, match: Any) -> Response:
    found = fake.state.computes.get(match["name"])
    if not found:
        return not_found("Compute", match["name"])
    return Response(200, found)


def put_compute(fake: Any, request: Request, match: Any) -> Response:
    name = match["name"]
    body = request.json() or {}
    props = dict(body.get("properties") or {})
    if props.get("computeType") != "AmlCompute":
        return error(400, "UserError", f"The fake only provisions AmlCompute, not {props.get('computeType')}.",
                     inner="BadArgument")
    scale = (props.get("properties") or {}).get("scaleSettings") or {}
    if int(scale.get("minNodeCount", 0)) > int(scale.get("maxNodeCount", 1)):
        return error(400, "UserError", "minNodeCount cannot exceed maxNodeCount.", inner="BadArgument")
    inner = dict(props.get("properties") or {})
    inner.update({"allocationState": "Steady", "allocationStateTransitionTime": now_iso(),
                  "currentNodeCount": 0, "targetNodeCount": 0,
                  "nodeStateCounts": {k: 0 for k in ("idleNodeCount", "runningNodeCount", "preparingNodeCount",
                                                     "unusableNodeCount", "leavingNodeCount",
                                                     "preemptedNodeCount")}})
    props.update({"properties": inner, "provisioningState": "Creating", "createdOn": now_iso(),
                  "modifiedOn": now_iso(), "isAttachedCompute": False, "disableLocalAuth": True})
    resource = fake.workspace.resource("computes", name, props, location=body.get("location")
                                       or fake.workspace.location, tags=body.get("tags") or {},
                                       identity=body.get("identity"), sku=body.get("sku"))
    existed = name in fake.state.computes
    with fake.state.lock:
        fake.state.computes[name] = resource

    def finish() -> None:
        resource["properties"]["provisioningState"] = "Succeeded"

    return start_operation(fake, request, finish, status=200 if existed else 201, body=resource)


def delete_compute(fake: Any, request: Request, match: Any) -> Response:
    name = match["name"]
    found = fake.state.computes.get(name)
    if not found:
        return Response(204)
    found["properties"]["provisioningState"] = "Deleting"

    def finish() -> None:
        with fake.state.lock:
            fake.state.computes.pop(name, None)

    return start_operation(fake, request, finish, status=202, location=True)

"""What the fake workspace holds, and the ARM conventions every resource shares (ids, systemData, LROs).

Tests read this state directly, e.g. to assert that `imgcls down` left no endpoint or compute behind.
"""
from __future__ import annotations

import datetime
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .http import Request, Response

PROVIDER = "Microsoft.MachineLearningServices"


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def system_data() -> dict[str, str]:
    t = now_iso()
    return {"createdAt": t, "createdBy": "fake@imgcls.test", "createdByType": "User",
            "lastModifiedAt": t, "lastModifiedBy": "fake@imgcls.test", "lastModifiedByType": "User"}


@dataclass
class Operation:
    """A long-running operation: "InProgress" for `polls` status reads, then it applies `finish`. Like
    the service's, it also finishes on its own once `deadline` (time.monotonic()) has passed, whether
    or not anyone polls it: a client killed mid-wait finds the resource done when it looks again."""

    id: str
    polls: int
    finish: Callable[[], None]
    status: str = "InProgress"
    error: dict | None = None
    deadline: float = float("inf")

    def settle(self, now: float) -> None:
        if self.status == "InProgress" and now >= self.deadline:
            self.polls = 0
            self.advance()

    def advance(self) -> None:
        if self.status != "InProgress":
            return
        if self.polls > 0:
            self.polls -= 1
            return
        self.finish()
        self.status = "Succeeded"


@dataclass
class State:
    """Resources by name. Assets are {name: {version: resource}}; deployments are keyed by
    (endpoint, deployment). Values are the JSON bodies the service would return."""

    computes: dict[str, dict] = field(default_factory=dict)
    data: dict[str, dict[str, dict]] = field(default_factory=dict)
    models: dict[str, dict[str, dict]] = field(default_factory=dict)
    jobs: dict[str, Any] = field(default_factory=dict)          # name -> jobs.Run
    endpoints: dict[str, dict] = field(default_factory=dict)
    deployments: dict[tuple[str, str], dict] = field(default_factory=dict)
    endpoint_keys: dict[str, dict[str, str]] = field(default_factory=dict)
    batch_endpoints: dict[str, dict] = field(default_factory=dict)
    batch_deployments: dict[tuple[str, str], dict] = field(default_factory=dict)
    # what each deployment has scored, (endpoint, deployment) -> access-log lines: get_logs shows them
    scoring_log: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    operations: dict[str, Operation] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def billable(self) -> dict[str, list]:
        """What would still cost money on a real subscription: computes, endpoints, deployments. (Batch
        endpoints and deployments cost nothing between jobs: `batch_endpoints`, `batch_deployments`.)"""
        return {"computes": sorted(self.computes), "endpoints": sorted(self.endpoints),
                "deployments": sorted(self.deployments)}


class Workspace:
    """Names, ids and URLs of the one workspace the fake serves."""

    def __init__(self, subscription_id: str, resource_group: str, name: str, location: str,
                 storage_account: str, container: str) -> None:
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.name = name
        self.location = location
        self.storage_account = storage_account
        self.container = container
        self.workspace_id = str(uuid.uuid4())
        self.tenant_id = str(uuid.uuid4())
        self.base_url = ""                 # set once the server has a port

    @property
    def id(self) -> str:
        return (f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
                f"/providers/{PROVIDER}/workspaces/{self.name}")

    def matches(self, sub: str, rg: str, ws: str) -> bool:
        return (sub == self.subscription_id and rg.lower() == self.resource_group.lower()
                and ws.lower() == self.name.lower())

    def resource(self, collection: str, name: str, properties: dict, **extra: Any) -> dict:
        """The ARM envelope around a workspace child resource."""
        return {"id": f"{self.id}/{collection}/{name}", "name": name,
                "type": f"{PROVIDER}/workspaces/{collection.split('/')[-2 if '/' in collection else 0]}", "systemData": system_data(),
                "properties": properties, **extra}


def start_operation(fake: Any, request: Request, finish: Callable[[], None], *, status: int,
                    body: Any = None, location: bool = False) -> Response:
    """Answer a create/delete as Azure ML does: 201/202 with Azure-AsyncOperation (and, for
    deletes, Location) pointing at an operation the client polls until it reports Succeeded."""
    op = Operation(str(uuid.uuid4()), fake.lro_polls, finish,
                   deadline=time.monotonic() + (fake.lro_polls + 1) * fake.poll_seconds)
    with fake.state.lock:
        fake.state.operations[op.id] = op
    ws = fake.workspace
    base = (f"{ws.base_url}/subscriptions/{ws.subscription_id}/providers/{PROVIDER}"
            f"/locations/{ws.location}")
    query = f"?api-version={request.api_version}&type=async"
    headers = {"Azure-AsyncOperation": f"{base}/mfeOperationsStatus/{op.id}{query}",
               "x-ms-async-operation-timeout": "PT1H", **fake.poll_headers()}
    if location:
        headers["Location"] = f"{base}/mfeOperationResults/{op.id}{query}"
    return Response(status, body, headers)


def operation_status(fake: Any, request: Request, match: Any) -> Response:
    op = fake.state.operations.get(match["op"])
    if op is None:
        return Response(404, {"error": {"code": "NotFound", "message": "Operation not found."}})
    with fake.state.lock:
        op.advance()
    body: dict[str, Any] = {"id": request.path, "name": op.id, "status": op.status,
                            "startTime": now_iso()}
    if op.error:
        body["error"] = op.error
    headers = fake.poll_headers() if op.status == "InProgress" else {}
    return Response(200, body, headers)


def operation_result(fake: Any, request: Request, match: Any) -> Response:
    """The Location leg of a delete: 202 while running, 200 once done."""
    op = fake.state.operations.get(match["op"])
    if op is None:
        return Response(404, {"error": {"code": "NotFound", "message": "Operation not found."}})
    with fake.state.lock:
        op.advance()
    if op.status == "InProgress":
        return Response(202, None, {"Location": fake.workspace.base_url + request.path + "?"
                                    + "&".join(f"{k}={v}" for k, v in request.query.items()),
                                    **fake.poll_headers()})
    return Response(200, None)

"""What the fake Vertex AI holds: resources, long-running operations, ids, and the API error.

Resources keep the REST JSON the service would return (camelCase) next to what only the fake
needs (data items, the toy model), so a handler answers with `record.resource` as it is.
"""
from __future__ import annotations

import itertools
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone

from tests.fakes.toymodel import ToyModel

# google.rpc.Code -> (HTTP status, canonical name), as the JSON error body spells them.
CODES = {
    1: (499, "CANCELLED"),
    3: (400, "INVALID_ARGUMENT"),
    4: (504, "DEADLINE_EXCEEDED"),
    5: (404, "NOT_FOUND"),
    6: (409, "ALREADY_EXISTS"),
    7: (403, "PERMISSION_DENIED"),
    8: (429, "RESOURCE_EXHAUSTED"),
    9: (400, "FAILED_PRECONDITION"),
    10: (409, "ABORTED"),
    12: (501, "UNIMPLEMENTED"),
    13: (500, "INTERNAL"),
    14: (503, "UNAVAILABLE"),
    16: (401, "UNAUTHENTICATED"),
}
STATUS_NAMES = {name: code for code, (_, name) in CODES.items()}
HTTP_TO_CODE = {400: 3, 401: 16, 403: 7, 404: 5, 409: 10, 412: 9, 429: 8, 499: 1, 500: 13, 501: 12,
                503: 14, 504: 4}

V1 = "type.googleapis.com/google.cloud.aiplatform.v1."
EMPTY = "type.googleapis.com/google.protobuf.Empty"


class ApiError(Exception):
    """Raised by a handler; the server turns it into `{"error": {"code", "message", "status"}}`."""

    def __init__(self, status: str, message: str, http: int | None = None):
        super().__init__(message)
        self.grpc_code = STATUS_NAMES[status]
        self.http_status, self.status = CODES[self.grpc_code]
        self.http_status = http or self.http_status  # Cloud Storage says 412/416 where gRPC has none
        self.message = message

    def as_status(self) -> dict:
        """The google.rpc.Status an operation or a job carries in its `error` field."""
        return {"code": self.grpc_code, "message": self.message}


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class DataItem:
    id: str
    gcs_uri: str
    labels: list[str]
    resource_labels: dict[str, str]
    create_time: str
    # annotation set (the import schema's title, e.g. image_classification_single_label_1.0.0) -> labels
    label_sets: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ml_use(self) -> str | None:
        return self.resource_labels.get("aiplatform.googleapis.com/ml_use")


@dataclass
class Dataset:
    resource: dict
    items: dict[str, DataItem] = field(default_factory=dict)  # gcs uri -> item: re-imports dedupe
    specs: dict[str, str] = field(default_factory=dict)  # label -> annotation spec id
    sets: dict[str, str] = field(default_factory=dict)  # annotation set title -> its id (a saved query's)


@dataclass
class Pipeline:
    resource: dict
    created: float
    failure: ApiError | None = None  # set by fault injection; surfaces when the run "ends"
    cancel_requested: bool = False


@dataclass
class Model:
    resource: dict
    toy: ToyModel
    model_type: str  # trainingTaskInputs.modelType: CLOUD models serve, MOBILE_* ones also export
    specs: dict[str, str]  # label -> annotation spec id, copied from the dataset at training time
    evaluations: list[dict] = field(default_factory=list)
    slices: dict[str, list[dict]] = field(default_factory=dict)  # evaluation id -> slices


@dataclass
class Endpoint:
    resource: dict


@dataclass
class BatchJob:
    resource: dict
    created: float


@dataclass
class Operation:
    resource: dict
    polls_left: int
    outcome: dict  # {"response": ...} or {"error": ...}, revealed once polls_left reaches 0
    api: str = "v1"  # the surface that started it: its Any types are spelt for that one


class State:
    """Every resource by id, plus the settings that shape timing; guarded by one lock."""

    def __init__(self, project: str, project_number: str, location: str):
        self.project = project
        self.project_number = project_number
        self.location = location
        self.lock = threading.RLock()
        self.datasets: dict[str, Dataset] = {}
        self.pipelines: dict[str, Pipeline] = {}
        self.models: dict[str, Model] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self.batch_jobs: dict[str, BatchJob] = {}
        self.operations: dict[str, Operation] = {}
        # Vertex ids are int64s printed as decimal strings; a counter keeps them readable.
        self._ids = itertools.count(1_000_000_000_000_000_001)
        self.lro_polls = 1  # polls that answer done=false before an operation completes
        self.pipeline_seconds = 0.3
        self.batch_seconds = 0.2
        self.next_pipeline_failure: ApiError | None = None

    @property
    def parent(self) -> str:
        # The service answers with the project number even when asked by project id.
        return f"projects/{self.project_number}/locations/{self.location}"

    def new_id(self) -> str:
        return str(next(self._ids))

    def counts(self) -> dict[str, int]:
        """How many of each resource exist; `imgcls down` should bring them all to zero."""
        return {"datasets": len(self.datasets), "pipelines": len(self.pipelines),
                "models": len(self.models), "endpoints": len(self.endpoints),
                "batch_jobs": len(self.batch_jobs)}

    def operation(self, owner: str, metadata_type: str, *, response: dict | None = None,
                  response_type: str = EMPTY, error: ApiError | None = None,
                  metadata: dict | None = None, partial_failures: list[dict] | None = None) -> dict:
        """Start an LRO whose work is already done; it reports done=false until polled."""
        name = f"{owner}/operations/{self.new_id()}"
        stamp = now()
        generic = {"createTime": stamp, "updateTime": stamp}
        if partial_failures:
            generic["partialFailures"] = partial_failures
        meta = {"@type": V1 + metadata_type, "genericMetadata": generic, **(metadata or {})}
        if error is not None:
            outcome = {"error": error.as_status()}
        else:
            outcome = {"response": {"@type": response_type if "/" in response_type
                                    else V1 + response_type, **(response or {})}}
        op = Operation({"name": name, "metadata": meta, "done": False}, self.lro_polls, outcome)
        if op.polls_left <= 0:
            op.resource.update(done=True, **outcome)
        self.operations[name] = op
        return dict(op.resource)

    def poll(self, name: str) -> dict:
        op = self.operations.get(name)
        if op is None:
            raise ApiError("NOT_FOUND", f"Operation {name} is not found.")
        if not op.resource["done"]:
            op.polls_left -= 1
            if op.polls_left <= 0:
                op.resource.update(done=True, **op.outcome)
        return op.resource


def page(items: list[dict], query: dict, key: str) -> dict:
    """One page of a List call: `pageSize`/`pageToken` as the service pages (token = offset)."""
    try:
        start = int(query.get("pageToken") or 0)
        size = int(query.get("pageSize") or 100)
    except ValueError:
        raise ApiError("INVALID_ARGUMENT", "Invalid page token or page size.")
    body = {key: items[start:start + size]} if items[start:start + size] else {}
    if start + size < len(items):
        body["nextPageToken"] = str(start + size)
    return body


ORDERABLE = ("display_name", "create_time", "update_time")


def ordered(items: list[dict], query: dict, fields: tuple[str, ...] = ORDERABLE) -> list[dict]:
    """`items` sorted by the request's `orderBy` ("display_name, create_time desc"), as List calls
    that take one do; without it, in the order they were made."""
    expression = (query.get("orderBy") or "").strip()
    if not expression:
        return items
    keys = []
    for term in expression.split(","):
        words = term.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise ApiError("INVALID_ARGUMENT", f"Invalid order_by: {expression!r}.")
        snake = re.sub(r"([A-Z])", lambda c: "_" + c.group(1).lower(), words[0])
        if snake not in fields:
            raise ApiError("INVALID_ARGUMENT", f"Unsupported order_by field {words[0]!r}; supported: "
                                               f"{', '.join(fields)}.")
        keys.append((re.sub(r"_(\w)", lambda c: c.group(1).upper(), snake),
                     len(words) == 2 and words[1].lower() == "desc"))
    result = list(items)
    for camel, descending in reversed(keys):  # stable sorts, least significant key first
        result.sort(key=lambda r: str(r.get(camel, "")), reverse=descending)
    return result


_TERM = re.compile(r'^\s*([\w.\-/]+)\s*=\s*"?([^"]*?)"?\s*$')


def matches_filter(resource: dict, expression: str | None) -> bool:
    """The slice of the AIP-160 list filter the SDK sends: `field="v"` and `labels.k=v`, ANDed.

    Anything richer is refused loudly rather than ignored, so a test never passes on a filter
    the fake did not apply.
    """
    if not expression:
        return True
    for term in re.split(r"\s+AND\s+", expression.strip(), flags=re.IGNORECASE):
        m = _TERM.match(term)
        if not m:
            raise ApiError("INVALID_ARGUMENT", f"fake Vertex: unsupported filter term {term!r}")
        path, want = m.groups()
        if path.startswith("labels."):
            have = resource.get("labels", {}).get(path[len("labels."):])
        else:
            camel = re.sub(r"_(\w)", lambda c: c.group(1).upper(), path)
            have = resource.get(camel)
        if str(have) != want:
            return False
    return True


"""The HTTP side of the fake: one threaded server for Vertex AI v1 REST and Cloud Storage JSON,
request routing, the request log, fault injection, and `FakeVertex`, the object tests hold.
"""
from __future__ import annotations

import json
import re
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

from tests.fakes.hooks import Hooks
from tests.fakes.vertex import datasets, serving, training
from tests.fakes.vertex.gcs import Gcs
from tests.fakes.vertex.state import CODES, HTTP_TO_CODE, V1, ApiError, State

# v1 and v1beta1 share the resources and their JSON; only the `@type` of an Any names the surface.
PROJECT_PATH = r"/(?P<api>v1|v1beta1)/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except ValueError:
            raise ApiError("INVALID_ARGUMENT", "Invalid JSON payload received.")


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def error_body(http_status: int, message: str, status_name: str | None = None) -> bytes:
    name = status_name or CODES.get(HTTP_TO_CODE.get(http_status, 2), (0, "UNKNOWN"))[1]
    return json.dumps({"error": {"code": http_status, "message": message, "status": name}}).encode()


@dataclass
class Fault:
    method: str
    path: re.Pattern
    status: int
    times: int
    headers: dict[str, str]
    body: bytes | None
    delay: float
    hits: int = 0


class Faults:
    """Canned failures matched before routing: `add("POST", r":predict$", 503, times=2)`."""

    def __init__(self):
        self._rules: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, method: str, path_regex: str, status: int, *, times: int = 1,
            headers: dict[str, str] | None = None, message: str | None = None,
            body: bytes | None = None, delay: float = 0.0) -> Fault:
        """Answer the next `times` matching requests with `status` (times=-1: forever).

        `path_regex` is searched in the path without the query string. With status 0 the
        request is only delayed by `delay` seconds and then served normally.
        """
        if body is None and status:
            body = error_body(status, message or f"fake Vertex: injected HTTP {status}")
        rule = Fault(method.upper(), re.compile(path_regex), status, times, dict(headers or {}),
                     body, delay)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self):
        with self._lock:
            self._rules.clear()

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for rule in self._rules:
                if rule.times != 0 and rule.method in (method, "*") and rule.path.search(path):
                    rule.times -= 1
                    rule.hits += 1
                    return rule
        return None


@dataclass
class Logged:
    method: str
    path: str
    query: dict[str, str]
    body: object  # parsed JSON, or the byte count of anything else
    status: int = 0


class FakeVertex:
    """A stateful Vertex AI + Cloud Storage fake on 127.0.0.1.

        with FakeVertex(project="p", location="us-central1") as fake:
            aiplatform.init(**fake.init_kwargs())
            os.environ.update(fake.env())   # STORAGE_EMULATOR_HOST for google-cloud-storage
    """

    def __init__(self, project: str = "test-project", location: str = "us-central1", *,
                 project_number: str = "123456789012", host: str = "127.0.0.1", port: int = 0,
                 pipeline_seconds: float = 0.3, batch_seconds: float = 0.2, lro_polls: int = 1):
        self.state = State(project, project_number, location)
        self.state.pipeline_seconds = pipeline_seconds
        self.state.batch_seconds = batch_seconds
        self.state.lro_polls = lro_polls
        self.gcs = Gcs(lambda: self.url)
        self.faults = Faults()
        self.hooks = Hooks()  # a test's code at a chosen request (e.g. SIGKILL the client there)
        self.requests: list[Logged] = []
        self.unhandled: list[str] = []  # "METHOD path" of requests no route knew: a fake gap
        self.crashes: list[str] = []  # tracebacks of handler bugs, answered as HTTP 500
        # seconds each online prediction takes to answer (or a function returning them, for jitter)
        self.prediction_latency: float | Callable[[], float] = 0.0
        self._routes = [(method, re.compile(pattern), handler) for method, pattern, handler in
                        self.gcs.routes() + datasets.routes(PROJECT_PATH)
                        + training.routes(PROJECT_PATH) + serving.routes(PROJECT_PATH)
                        + [("GET", r"/(?:ui|v1|v1beta1)/(?P<name>projects/[^:]+/operations/[^/:]+)",
                            self._get_operation)]]
        self._httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # Settings tests turn.

    @property
    def pipeline_seconds(self) -> float:
        return self.state.pipeline_seconds

    @pipeline_seconds.setter
    def pipeline_seconds(self, value: float):
        self.state.pipeline_seconds = value

    def fail_next_pipeline(self, message: str = "Internal error occurred during training.",
                           status: str = "INTERNAL"):
        """The next training pipeline created ends in PIPELINE_STATE_FAILED with this error."""
        self.state.next_pipeline_failure = ApiError(status, message)

    def advance(self):
        """Let pipelines and batch jobs catch up with the clock, as any request would."""
        with self.state.lock:
            training.advance(self)
            serving.advance(self)

    # What a client needs.

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def gcs_url(self) -> str:
        return self.url  # one server answers both APIs; they never share a path

    def init_kwargs(self) -> dict:
        """Arguments for `aiplatform.init(**kwargs)`."""
        from google.auth.credentials import AnonymousCredentials

        return {"project": self.state.project, "location": self.state.location,
                "api_endpoint": self.url, "api_transport": "rest",
                "credentials": AnonymousCredentials()}

    def client_kwargs(self) -> dict:
        """Arguments for a low-level `aiplatform.gapic.*ServiceClient(**kwargs)`."""
        from google.auth.credentials import AnonymousCredentials

        return {"client_options": {"api_endpoint": self.url}, "transport": "rest",
                "credentials": AnonymousCredentials()}

    def env(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": self.gcs_url}

    # Lifecycle.

    def start(self) -> FakeVertex:
        # A short poll interval: shutdown() waits for it, once per test.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        name="fake-vertex", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # Request handling.

    @staticmethod
    def response(status: int, body: bytes = b"", headers: dict | None = None) -> Response:
        return Response(status, body, dict(headers or {}))

    def _get_operation(self, fake, req, m):
        resource = self.state.poll(m["name"])
        return _retype(resource, self.state.operations[m["name"]].api)

    def handle(self, req: Request) -> Response | None:
        logged = Logged(req.method, req.path, req.query, _loggable(req))
        self.requests.append(logged)
        rule = self.faults.take(req.method, req.path)
        if rule:
            time.sleep(rule.delay)
            if rule.status:
                logged.status = rule.status
                return Response(rule.status, rule.body or b"",
                                {"Content-Type": "application/json; charset=UTF-8", **rule.headers})
        if self.hooks.fire("before", req.method, req.path):
            return None                                  # dropped: the connection closes unanswered
        if req.method == "POST" and req.path.endswith(":predict"):
            # a model server's time to answer, outside the state lock: concurrent predictions overlap
            latency = self.prediction_latency
            time.sleep(latency() if callable(latency) else latency)
        response = self._route(req)
        logged.status = response.status
        self.hooks.fire("after", req.method, req.path)
        return response

    def _route(self, req: Request) -> Response:
        known_path = False
        # Object names arrive percent-encoded and may hold "/"; Vertex names may hold "%40" for "@".
        path = req.path if req.path.startswith(("/storage/", "/upload/", "/download/")) else unquote(req.path)
        for method, pattern, handler in self._routes:
            m = pattern.fullmatch(path)
            if not m:
                continue
            known_path = True
            if method != req.method:
                continue
            groups = {k: unquote(v) if path is req.path else v
                      for k, v in m.groupdict().items() if v is not None}
            try:
                with self.state.lock:
                    self._check_scope(groups)
                    self.advance()
                    result = handler(self, req, groups)
            except ApiError as e:
                return Response(e.http_status, error_body(e.http_status, e.message, e.status),
                                {"Content-Type": "application/json; charset=UTF-8"})
            except Exception:
                # 501, not 500: the SDKs retry 500s for minutes, and a bug in the fake should
                # fail the test at once (the traceback is in fake.crashes).
                self.crashes.append(traceback.format_exc())
                return Response(501, error_body(501, "fake Vertex crashed: "
                                                + self.crashes[-1].splitlines()[-1]))
            if isinstance(result, Response):
                return result
            if groups.get("api", "v1") != "v1":
                op = self.state.operations.get(result.get("name", "")) if isinstance(result, dict) else None
                if op is not None:  # its later polls arrive under /ui/, which names no surface
                    op.api = groups["api"]
                result = _retype(result, groups["api"])
            return Response(200, json.dumps(result).encode(),
                            {"Content-Type": "application/json; charset=UTF-8"})
        self.unhandled.append(f"{req.method} {req.path}")
        status = 405 if known_path else 404
        return Response(status, error_body(status, f"fake Vertex: no route for {req.method} {req.path}"))

    def _check_scope(self, groups: dict):
        project, location = groups.get("project"), groups.get("location")
        if project and project not in (self.state.project, self.state.project_number):
            raise ApiError("PERMISSION_DENIED", f"Permission denied on resource project {project}.")
        if location and location != self.state.location:
            raise ApiError("INVALID_ARGUMENT", f"Location {location} is not served by this fake "
                                               f"(it serves {self.state.location}).")


def _retype(body: object, api: str) -> object:
    """`body` as the `api` surface spells it: the Any types it holds say `...aiplatform.{api}.`."""
    if api == "v1":
        return body
    return json.loads(json.dumps(body).replace('"' + V1, f'"{V1[:-3]}{api}.'))


def _loggable(req: Request) -> object:
    if req.body and req.headers.get("Content-Type", "").startswith("application/json"):
        try:
            return json.loads(req.body)
        except ValueError:
            pass
    return len(req.body)


def _handler_for(fake: FakeVertex):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as requests' pooled sessions expect

        def _serve(self):
            parts = urlsplit(self.path)
            req = Request(self.command, parts.path, dict(parse_qsl(parts.query, keep_blank_values=True)),
                          {k: v for k, v in self.headers.items()}, self._body())
            # The headers dict is case-sensitive; the SDKs vary the case of what they send.
            req.headers = _Caseless(req.headers)
            res = fake.handle(req)
            if res is None:
                self.close_connection = True
                return
            try:
                self.send_response(res.status)
                for key, value in res.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(res.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(res.body)
            except (BrokenPipeError, ConnectionResetError):   # the client is gone (killed by a test)
                self.close_connection = True

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

        def log_message(self, format, *args):  # the request log lives in fake.requests
            pass

    return Handler


class _Caseless(dict):
    def __init__(self, data: dict):
        super().__init__({k.lower(): v for k, v in data.items()})

    def get(self, key, default=None):
        return super().get(key.lower(), default)

    def __getitem__(self, key):
        return super().__getitem__(key.lower())

    def __contains__(self, key):
        return super().__contains__(key.lower())

"""The HTTP side of the fake: routing, key checks, fault injection and the FakeCustomVision object
tests start; the routes themselves live in training.py, images.py, export.py and prediction.py."""
from __future__ import annotations

import http.client
import json
import re
import socket
import sys
import threading
import time
import traceback
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.fakes.customvision.state import ServiceError, State, bad_request
from tests.fakes.hooks import Hooks

DEFAULT_PREDICTION_RESOURCE_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/imgcls-fake"
    "/providers/Microsoft.CognitiveServices/accounts/imgcls-fake-prediction")

# The SDK 3.1.1 calls training v3.4-preview and prediction v3.1; older SDKs call v3.0-v3.3.
_PREFIXES = {
    "training": r"/customvision/v3\.[0-4](?:-preview)?/training",
    "prediction": r"/customvision/v3\.[0-1]/prediction",
    "public": r"/_fake",  # stands in for blob SAS urls (export downloads, image uris): no key
}
_KEY_HEADERS = {"training": "Training-Key", "prediction": "Prediction-Key"}

# Messages of the API gateway in front of the service; its errors use {"error": {...}}, unlike the
# service's own errors, and its 401 reason phrase is "Access Denied" (which the SDK then reports).
_MISSING_KEY = ("Access denied due to missing subscription key. Make sure to include subscription key "
                "when making requests to an API.")
_WRONG_KEY = ("Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide "
              "a valid key for an active subscription and use a correct regional API endpoint for your "
              "resource.")


class GatewayError(Exception):
    def __init__(self, status: int, message: str, reason: str | None = None):
        super().__init__(message)
        self.status, self.message, self.reason = status, message, reason


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]  # keys lower-cased: the service binds query parameters case-insensitively
    headers: Any
    body: bytes
    base_url: str

    def arg(self, name: str, default: str | None = None) -> str | None:
        value = self.query.get(name.lower())
        return default if value in (None, "") else value

    def flag(self, name: str) -> bool:
        return (self.arg(name) or "").lower() in ("true", "1")

    def ids(self, name: str) -> list[str]:
        return [s.strip().lower() for s in (self.arg(name) or "").split(",") if s.strip()]

    def number(self, name: str, default: float) -> float:
        try:
            return float(self.arg(name, str(default)))
        except ValueError:
            raise bad_request("BadRequestInvalid", f"The value of '{name}' is not a number.") from None

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            raise bad_request("BadRequestInvalid", "The request body is not valid JSON.") from None

    def files(self) -> list[tuple[str | None, bytes]]:
        """(filename, bytes) of each image in a multipart/form-data or application/octet-stream body."""
        ctype = self.headers.get("Content-Type", "")
        if "multipart/form-data" not in ctype.lower():
            return [(None, self.body)] if self.body else []
        match = re.search(r'boundary="?([^";]+)"?', ctype)
        if not match:
            raise bad_request("BadRequestImageStream", "Multipart body without a boundary.")
        files = []
        for part in self.body.split(b"--" + match.group(1).encode())[1:]:
            if part.startswith(b"--"):
                break
            head, _, data = part.partition(b"\r\n\r\n")
            filename = re.search(rb'filename="([^"]*)"', head)
            files.append((filename.group(1).decode() if filename else None, data[:-2]))
        return files


Reply = tuple  # (status, payload[, content type]); payload None = empty, bytes = raw, else JSON


def fetch_image_url(url: str, limit: int) -> bytes | None:
    """The bytes at url, or None where the real service would fail to download it. Only loopback
    hosts are fetched, so a test can never reach the internet through the fake."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return None
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # ignore *_proxy variables
    try:
        with opener.open(url, timeout=5) as response:
            return response.read(limit + 1)
    except (OSError, ValueError, http.client.HTTPException):
        return None


@dataclass
class Route:
    method: str
    pattern: re.Pattern
    handler: Callable[..., Reply]
    api: str
    locked: bool  # False for handlers that fetch urls (maybe from this very server) before locking


def routes(api: str, table: list[tuple]) -> list[Route]:
    """Turn ("GET", "/projects/{project_id}", handler[, locked]) rows into matchable routes."""
    out = []
    for method, template, handler, *rest in table:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        out.append(Route(method, re.compile(_PREFIXES[api] + regex + "/?$", re.IGNORECASE), handler, api,
                         rest[0] if rest else True))
    return out


@dataclass
class Fault:
    method: str
    pattern: re.Pattern
    status: int  # 0 closes the connection without answering
    times: int | None  # None = every matching request
    headers: dict[str, str]
    body: Any
    delay: float
    after: int = 0  # let this many matching requests through first
    hits: int = 0


class Faults:
    """Answers chosen requests with an injected status before the service sees them."""

    def __init__(self):
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, method: str, path_regex: str, status: int, times: int | None = 1,
            headers: dict[str, str] | None = None, body: Any = None, delay: float = 0.0,
            after: int = 0) -> Fault:
        """`after`: the first `after` matching requests pass untouched (e.g. fail the 2nd upload batch)."""
        fault = Fault(method.upper(), re.compile(path_regex), status, times, dict(headers or {}), body, delay,
                      after)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def pending(self) -> list[Fault]:
        with self._lock:
            return [f for f in self._faults if f.times is None or f.times > 0]

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if (fault.times is None or fault.times > 0) and fault.method in ("*", method) \
                        and fault.pattern.search(path):
                    if fault.after > 0:
                        fault.after -= 1
                        continue
                    fault.hits += 1
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None


def fault_body(status: int) -> dict:
    if status in (401, 403, 429):
        message = ("Rate limit is exceeded. Try again in 1 seconds." if status == 429 else _WRONG_KEY)
        return {"error": {"code": str(status), "message": message}}
    code = {400: "BadRequest", 404: "NotFound", 409: "Conflict"}.get(status, "ErrorUnknown")
    return {"code": code, "message": f"Injected fault {status}."}


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: dict[str, str]
    status: int = 0
    body: bytes = b""  # what the client sent, for golden files of our request payloads


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # the SDK keeps connections alive; every answer carries a length
    server: _Server

    def log_message(self, format, *args):
        if self.server.fake.verbose:
            super().log_message(format, *args)

    def do_GET(self):
        self._handle()

    do_POST = do_PATCH = do_DELETE = do_PUT = do_GET

    def _read_body(self) -> bytes:
        # Read the whole body even when answering an error, or the next request on this
        # kept-alive connection would start in the middle of it.
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                chunk = self.rfile.read(size + 2)[:size]
                if size == 0:
                    break
                chunks.append(chunk)
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        fake = self.server.fake
        parts = urlsplit(self.path)
        path = re.sub(r"/+", "/", parts.path)  # endpoints copied with a trailing slash give "//"
        query = {k.lower(): v for k, v in parse_qsl(parts.query, keep_blank_values=True)}
        body = self._read_body()
        logged = LoggedRequest(self.command, path, query, body=body)
        fake.requests.append(logged)

        fault = fake.faults.take(self.command, path)
        if fault is not None:
            time.sleep(fault.delay)
            if fault.status == 0:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            payload = fault.body if fault.body is not None else fault_body(fault.status)
            logged.status = fault.status
            return self._send(fault.status, payload, extra=fault.headers)

        request = Request(self.command, path, query, self.headers, body, fake.url)
        if fake.hooks.fire("before", self.command, path):
            self.close_connection = True
            return
        try:
            reply = fake.dispatch(request)
        except GatewayError as e:
            reply = (e.status, {"error": {"code": str(e.status), "message": e.message}}, None, e.reason)
        except ServiceError as e:
            reply = (e.status, {"code": e.code, "message": e.message})
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            reply = (500, {"code": "ErrorUnknown", "message": f"{type(e).__name__}: {e}"})
        logged.status = reply[0]
        fake.hooks.fire("after", self.command, path)
        self._send(*reply)

    def _send(self, status: int, payload: Any, ctype: str | None = None, reason: str | None = None,
              extra: dict[str, str] | None = None) -> None:
        if payload is None:
            data = b""
        elif isinstance(payload, bytes):
            data, ctype = payload, ctype or "application/octet-stream"
        else:
            data, ctype = json.dumps(payload).encode(), "application/json; charset=utf-8"
        self.send_response(status, reason)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("apim-request-id", str(uuid.uuid4()))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):   # the client is gone (killed by a test)
                self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeCustomVision


class FakeCustomVision:
    """A Custom Vision training + prediction endpoint on 127.0.0.1, for the real SDK.

    `state` holds everything created (assert on it), `faults` injects errors, `hooks` runs a test's
    code at chosen requests, `requests` logs every call with its answer's status, `train_seconds`/`export_seconds` set how long work takes.
    """

    def __init__(self, training_key: str = "fake-training-key", prediction_key: str = "fake-prediction-key",
                 prediction_resource_id: str = DEFAULT_PREDICTION_RESOURCE_ID, host: str = "127.0.0.1",
                 port: int = 0, train_seconds: float = 0.2, export_seconds: float = 0.2,
                 verbose: bool = False):
        from tests.fakes.customvision import export, images, prediction, training  # they import this module

        self.training_key, self.prediction_key = training_key, prediction_key
        self.prediction_resource_id = prediction_resource_id
        self.train_seconds, self.export_seconds = train_seconds, export_seconds
        self.verbose = verbose
        self.state = State()
        self.faults = Faults()
        self.hooks = Hooks()  # a test's code at a chosen request (e.g. SIGKILL the client there)
        self.requests: list[LoggedRequest] = []
        self.lock = threading.RLock()
        self.training_failures: list[str] = []  # error details for the next trainings to fail
        self.max_images_per_project = 100_000  # the S0 quota; lower it to see ErrorLimitExceed
        # sha256 of image bytes -> the per-image status to answer for them (e.g. "ErrorImageFormat"):
        # a file the service's decoder refuses although the client's own checks accept it.
        self.refuse_images: dict[str, str] = {}
        # seconds each prediction takes to answer (or a function returning them, for jitter); spent
        # outside the fake's lock, so concurrent predictions overlap as on the service
        self.prediction_latency: float | Callable[[], float] = 0.0
        self._routes = training.ROUTES + images.ROUTES + export.ROUTES + prediction.ROUTES
        self._server = _Server((host, port), _Handler)
        self._server.fake = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def env(self) -> dict[str, str]:
        """The environment variables the vendor quickstart (and imgcls) read."""
        return {"VISION_TRAINING_ENDPOINT": self.url, "VISION_TRAINING_KEY": self.training_key,
                "VISION_PREDICTION_ENDPOINT": self.url, "VISION_PREDICTION_KEY": self.prediction_key,
                "VISION_PREDICTION_RESOURCE_ID": self.prediction_resource_id}

    def fail_next_training(self, details: str = "Training failed: injected fault.") -> None:
        self.training_failures.append(details)

    def finish_pending(self) -> None:
        """End every running training and export now, whatever train/export_seconds said."""
        with self.lock:
            now = time.time()
            for project in self.state.projects.values():
                for iteration in project.iterations.values():
                    iteration.ready_at = min(iteration.ready_at, now)
                    for export in iteration.exports:
                        export.ready_at = min(export.ready_at, now)
            self.state.advance(now)

    def start(self) -> FakeCustomVision:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-customvision",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeCustomVision:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def dispatch(self, request: Request) -> Reply:
        for route in self._routes:
            match = route.pattern.match(request.path)
            if match is None:
                continue
            if route.method != request.method:
                continue
            self._check_key(route.api, request)
            if route.api == "prediction":
                latency = self.prediction_latency
                time.sleep(latency() if callable(latency) else latency)
            if not route.locked:
                return route.handler(self, request, **match.groupdict())
            with self.lock:
                self.state.advance()
                return route.handler(self, request, **match.groupdict())
        raise GatewayError(404, "Resource not found")

    def _check_key(self, api: str, request: Request) -> None:
        if api == "public":
            return
        sent = request.headers.get(_KEY_HEADERS[api])
        expected = self.training_key if api == "training" else self.prediction_key
        if sent is None:
            raise GatewayError(401, _MISSING_KEY, "Access Denied")
        if sent != expected:
            raise GatewayError(401, _WRONG_KEY, "Access Denied")

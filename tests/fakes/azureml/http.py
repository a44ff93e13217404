"""The HTTP plumbing of the fake: request and response values, the route table, the TLS server.

Route handlers are plain functions `(fake, request, match) -> Response`; they never touch sockets,
so each resource module reads like the REST reference it imitates.
"""
from __future__ import annotations

import fnmatch
import json
import re
import socket
import ssl
import threading
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .tls import PROXIED_HOSTS


@dataclass
class Request:
    method: str
    path: str                      # percent-decoded, without the query string
    query: dict[str, str]          # keys lower-cased: the services treat them case-insensitively
    headers: dict[str, str]        # keys lower-cased
    body: bytes
    host: str = ""

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    @property
    def api_version(self) -> str:
        return self.query.get("api-version", "")


@dataclass
class Response:
    status: int = 200
    body: Any = None               # bytes/str are sent as they are, anything else as JSON
    headers: dict[str, str] = field(default_factory=dict)

    def payload(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


def error(status: int, code: str, message: str, inner: str | None = None, headers: dict | None = None) -> Response:
    """The error envelope ARM and the Azure ML front end share: {"error": {"code", "message", ...}}."""
    body: dict[str, Any] = {"code": code, "message": message, "details": []}
    if inner:
        body["innerError"] = {"code": inner}
    return Response(status, {"error": body}, {"x-ms-error-code": code, **(headers or {})})


def not_found(kind: str, name: str) -> Response:
    return error(404, "UserError", f"{kind} {name} not found.", inner="NotFound")


Handler = Callable[[Any, Request, "re.Match[str]"], Response]


class Router:
    """(method, path regex) -> handler; the first route that matches wins."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method, re.compile(pattern + r"/?$", re.IGNORECASE), handler))

    def find(self, method: str, path: str) -> tuple[Handler, re.Match[str]] | None:
        for m, pattern, handler in self.routes:
            if m == method:
                match = pattern.match(path)
                if match:
                    return handler, match
        return None


@dataclass
class Fault:
    method: str
    path_regex: re.Pattern[str]
    status: int
    times: int
    headers: dict[str, str]
    body: Any


_FAULT_CODES = {429: "TooManyRequests", 500: "InternalServerError", 502: "BadGateway",
                503: "ServiceUnavailable", 504: "GatewayTimeout", 401: "AuthenticationFailed",
                403: "AuthorizationFailed", 404: "NotFound", 409: "Conflict"}


class Faults:
    """Answers chosen requests with an error a number of times before letting them through."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, method: str, path_regex: str, status: int, *, times: int = 1,
            headers: dict[str, str] | None = None, body: Any = None) -> None:
        """Fail the next `times` requests whose method matches ("*" for any) and whose path
        `re.search`es `path_regex`. Send Retry-After "1" rather than "0" when you want one:
        azure-core treats 0 as "no advice" and falls back to its own, much longer, waits."""
        with self._lock:
            self._faults.append(Fault(method.upper(), re.compile(path_regex), status, times,
                                      dict(headers or {}), body))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(f.times for f in self._faults)

    def take(self, request: Request) -> Response | None:
        with self._lock:
            for f in self._faults:
                if f.times > 0 and f.method in ("*", request.method) and f.path_regex.search(request.path):
                    f.times -= 1
                    if f.body is not None:
                        return Response(f.status, f.body, dict(f.headers))
                    code = _FAULT_CODES.get(f.status, "InjectedFault")
                    return error(f.status, code, f"Injected fault: {code}.", headers=f.headers)
        return None


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: dict[str, str]
    status: int
    body: Any                      # parsed JSON when the request carried JSON, else its length


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        request = Request(
            method=self.command,
            path=unquote(split.path),
            query={k.lower(): v for k, v in parse_qsl(split.query, keep_blank_values=True)},
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            host=self.headers.get("Host", ""),
        )
        try:
            response = self.server.dispatch(request)
        except Exception as exc:
            traceback.print_exc()
            response = error(500, "InternalServerError", f"fake crashed: {exc!r}")
        if response is None:                             # dropped by a test's hook: no answer
            self.close_connection = True
            return
        payload = response.payload()
        self.send_response(response.status)
        headers = {"x-ms-request-id": str(uuid.uuid4()), **response.headers}
        if response.body is not None and not isinstance(response.body, (bytes, str)):
            headers.setdefault("Content-Type", "application/json; charset=utf-8")
        for k, v in headers.items():
            self.send_header(k, v)
        if "content-length" not in {k.lower() for k in headers}:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _read_chunked(self) -> bytes:
        data = b""
        while True:
            size = int(self.rfile.readline().strip(), 16)
            if size == 0:
                self.rfile.readline()
                return data
            data += self.rfile.read(size)
            self.rfile.readline()

    def do_CONNECT(self) -> None:
        # HTTPS_PROXY support: the SDK's own uploads go to https://{account}.blob.core.windows.net,
        # a host no setting redirects; tunnelled through here they land in the blob fake.
        host = self.path.split(":")[0].lower()
        if not any(fnmatch.fnmatch(host, pattern) for pattern in PROXIED_HOSTS):
            # refuse at once: a test must not wait on, or reach, the internet
            self.send_response(403, "The fake only proxies " + ", ".join(PROXIED_HOSTS))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200, "Connection Established")
        self.end_headers()
        self.connection = self.server.tls.wrap_socket(self.connection, server_side=True)
        self.rfile = self.connection.makefile("rb", self.rbufsize)
        self.wfile = self.connection.makefile("wb", 0)
        self.close_connection = False
        try:
            while not self.close_connection:
                self.handle_one_request()
        finally:
            self.connection.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], dispatch: Callable[[Request], Response | None],
                 tls: ssl.SSLContext) -> None:
        super().__init__(address, _Handler)
        self.dispatch = dispatch
        self.tls = tls

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Runs in the connection's own thread. Peek at the first byte: a TLS ClientHello (0x16) is
        # wrapped, anything else is plain http - which only the CONNECT proxy uses - so one port
        # serves both.
        request.settimeout(30)
        try:
            first = request.recv(1, socket.MSG_PEEK)
        except OSError:
            return
        if first != b"\x16":
            self.RequestHandlerClass(request, client_address, self)
            return
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up mid-request (retries, timeouts) are not test failures


def start_server(host: str, port: int, dispatch: Callable[[Request], Response | None], cert_file: str,
                 key_file: str) -> tuple[_Server, threading.Thread]:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    server = _Server((host, port), dispatch, tls)
    # a short poll interval: shutdown() waits for it, once per test
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="fake-azureml", daemon=True)
    thread.start()
    return server, thread

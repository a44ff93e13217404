"""The local endpoint under generated and hostile requests, run as its own process as `deploy --detach` runs it:
no 5xx, /health keeps answering, and the server's peak memory (VmHWM) stays under 1.5 GiB with the default
limits. Schemathesis drives /openapi.json; hypothesis sends raw requests off the schema; then hand-made bombs."""
from __future__ import annotations

import base64
import http.client
import io
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("uvicorn")
schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from imgcls.providers.local.app import openapi_document
from tests.unit.test_serve import LABELS, write_artifact

PEAK_LIMIT = int(1.5 * 1024**3)
READ_TIMEOUT = 2  # seconds; short so the slow-loris tests finish quickly
PATHS = ["/predict", "/score", "/v1/endpoints/local:predict"]
FAST = settings(database=None, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


class Server:
    def __init__(self, proc: subprocess.Popen, url: str, log: list[str]):
        self.proc, self.url, self.log = proc, url, log
        self.host, port = url.removeprefix("http://").split(":")
        self.port = int(port)

    def peak_bytes(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as fh:
            return int(re.search(r"VmHWM:\s+(\d+) kB", fh.read()).group(1)) * 1024

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 30) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def check(self) -> None:
        """Still answering, still small, nothing crashed inside."""
        assert self.proc.poll() is None, "the server died"
        status, _, body = self.request("GET", "/health", timeout=10)
        assert status == 200 and json.loads(body)["labels"] == LABELS
        assert self.peak_bytes() < PEAK_LIMIT, f"peak RSS {self.peak_bytes() / 2**20:.0f} MiB"
        assert not [line for line in self.log if "Traceback" in line or "Exception in ASGI" in line], self.log


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    artifact = write_artifact(tmp_path_factory.mktemp("artifact"))
    # Default limits (what the memory bound is promised for), except a short read timeout.
    proc = subprocess.Popen([sys.executable, "-m", "imgcls.providers.local.serve", str(artifact), "--port", "0",
                             "--read-timeout", str(READ_TIMEOUT), "--keep-alive-timeout", "2"],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    first = proc.stderr.readline()
    match = re.search(r"on (http://[\d.]+:\d+)", first)
    assert match, f"the server did not start: {first}{proc.stderr.read() if proc.poll() is not None else ''}"
    log: list[str] = []
    threading.Thread(target=lambda: log.extend(proc.stderr), daemon=True).start()
    srv = Server(proc, match.group(1), log)
    yield srv
    print(f"\nendpoint peak RSS {srv.peak_bytes() / 2**20:.0f} MiB")
    proc.terminate()
    proc.wait(timeout=20)


# -- images ----------------------------------------------------------------------------------------
def encode(img: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def png_declaring(w: int, h: int, rows: int = 4) -> bytes:
    """A small PNG whose header declares w x h RGBA pixels (only `rows` rows of data follow)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * (4 * w + 1) * rows, 9)) + chunk(b"IEND", b""))


GOOD = {fmt: encode(Image.new("RGB", (40, 30), (20, 200, 20)), fmt) for fmt in ("JPEG", "PNG", "GIF", "BMP", "TIFF")}
SAMPLES = [*GOOD.values(), png_declaring(12000, 12000), png_declaring(1, 60000, rows=1),
           encode(Image.new("RGBA", (3, 2000)), "PNG"), b"", b"not an image", GOOD["JPEG"][:50],
           encode(Image.new("RGB", (40, 30)), "JPEG", progressive=True)]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- schemathesis: every documented operation, bodies generated from /openapi.json ------------------
# The document is built without a model at collection time (the server is not up yet); the first test
# checks the server publishes the same one.
schema = schemathesis.openapi.from_dict(openapi_document())


def test_the_server_publishes_the_document_the_fuzzing_uses(server):
    status, _, answer = server.request("GET", "/openapi.json")
    assert status == 200 and json.loads(answer) == openapi_document()
    status, _, page = server.request("GET", "/docs")
    assert status == 200 and b"/openapi.json" in page


@schema.parametrize()
@settings(FAST, max_examples=135)
def test_openapi_operations_never_fail(case, server):
    case.call_and_validate(base_url=server.url, checks=[not_a_server_error, status_code_conformance,
                                                        content_type_conformance, response_schema_conformance],
                           timeout=30)


# -- hypothesis: requests the schema does not describe ---------------------------------------------
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                          max_leaves=20)
image_b64 = st.one_of(st.sampled_from(SAMPLES).map(b64), st.binary(max_size=64).map(b64), st.text(max_size=30))
vertex = st.fixed_dictionaries(
    {"instances": st.one_of(st.lists(st.one_of(st.fixed_dictionaries({"content": image_b64}), json_value),
                                     max_size=5), json_value)},
    optional={"parameters": st.one_of(json_value, st.fixed_dictionaries({}, optional={
        "confidenceThreshold": st.one_of(st.floats(), st.integers(), json_value),
        "maxPredictions": st.one_of(st.integers(), st.floats(), json_value)}))})
azureml = st.fixed_dictionaries({"input_data": st.one_of(json_value, st.fixed_dictionaries(
    {"data": st.lists(st.one_of(image_b64, st.lists(st.one_of(image_b64, json_value), max_size=3)), max_size=5)},
    optional={"columns": st.one_of(st.lists(st.sampled_from(["image", "x", ""]), max_size=3), json_value),
              "index": json_value}))})
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
content_types = st.one_of(st.sampled_from(["application/json", "application/json; charset=utf-8", "image/png",
                                           "image/jpeg", "application/octet-stream", "text/plain", "",
                                           "multipart/form-data", "application/x-www-form-urlencoded"]),
                          header_text)
bodies = st.one_of(st.one_of(vertex, azureml, json_value).map(lambda v: json.dumps(v).encode()),
                   st.sampled_from(SAMPLES), st.binary(max_size=300))


@given(method=st.sampled_from(["POST"] * 6 + ["GET", "PUT", "DELETE", "OPTIONS", "HEAD"]),
       path=st.one_of(st.sampled_from([*PATHS, "/health", "/openapi.json", "/nope", "/predict/", "/score?x=1"]),
                      header_text.map(lambda t: "/" + t.replace(" ", "%20").replace("#", "").replace("?", ""))),
       ctype=content_types, body=bodies)
@settings(FAST, max_examples=650)
def test_generated_requests_never_fail(server, method, path, ctype, body):
    status, headers, answer = server.request(method, path, body, {"Content-Type": ctype} if ctype else {})
    assert status < 500, (status, answer[:300])
    if status == 200 and method == "POST" and path.split("?")[0] in PATHS:
        payload = json.loads(answer)
        assert isinstance(payload, list) or "predictions" in payload
    elif status >= 400 and method != "HEAD" and answer:
        assert "error" in json.loads(answer) or "detail" in json.loads(answer)


# -- hand-made bombs ------------------------------------------------------------------------------
def raw_exchange(server, data: bytes, wait: float = 10) -> bytes:
    """Send bytes on a fresh socket; what comes back until the server closes or `wait` passes."""
    with socket.create_connection((server.host, server.port), timeout=wait) as sock:
        sock.sendall(data)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return out


def post_json(server, body, path="/predict"):
    status, headers, answer = server.request("POST", path, json.dumps(body).encode(),
                                             {"Content-Type": "application/json"})
    return status, headers, json.loads(answer)


def test_images_declaring_too_many_pixels_are_refused_from_their_header(server):
    bombs = [("12000x12000 PNG", png_declaring(12000, 12000), 413),
             ("1x60000 PNG (thin)", png_declaring(1, 60000, rows=1), 413),
             ("1x60000 GIF (thin)", encode(Image.new("P", (1, 60000)), "GIF"), 413),
             ("8000x6000 JPEG", encode(Image.new("L", (8000, 6000)), "JPEG", quality=1), 413),
             ("2000x2000 RGBA PNG (allowed)", png_declaring(2000, 2000, rows=2000), 200)]
    assert len(bombs[0][1]) < 20_000  # the issue's 17 KB bomb
    for name, data, expected in bombs:
        status, _, answer = server.request("POST", "/predict", data, {"Content-Type": "image/png"})
        assert status == expected, (name, answer[:300])
        if expected == 413:
            assert b"max_pixels" in answer, answer
    # Eight at once, in both JSON shapes: each refused before decoding, memory untouched.
    big = b64(png_declaring(12000, 12000))
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: post_json(server, {"instances": [{"content": big}] * 3} if i % 2 else
                                                    {"input_data": {"data": [big]}})[0], range(16)))
    assert set(results) == {413}
    server.check()


def test_large_real_images_are_decoded_within_the_memory_budget(server):
    # Three 20 MP RGBA PNGs (legal: under max_pixels) at once: decoding waits for the budget.
    data = png_declaring(4500, 4500, rows=4500)
    with ThreadPoolExecutor(3) as pool:
        statuses = list(pool.map(lambda _: server.request("POST", "/predict", data,
                                                          {"Content-Type": "image/png"})[0], range(3)))
    assert statuses == [200] * 3
    server.check()


def test_malformed_framing(server):
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    for length in [b"-1", b"1e3", b"5\r\nContent-Length: 7"]:  # answered in JSON, naming the fault
        answer = raw_exchange(server, head + b"Content-Length: " + length + b"\r\n\r\n{}")
        assert answer.startswith(b"HTTP/1.1 400"), answer
        error = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert error["code"] == 400 and "malformed HTTP request" in error["error"] and "Content-Length" in error["error"]
    # A length that lies short: the rest is read as the next request, which is garbage.
    answer = raw_exchange(server, head + b"Content-Length: 2\r\n\r\n{}GARBAGE\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400") and answer.count(b"HTTP/1.1 ") == 2
    # A length that lies long: the client stops sending; the read deadline answers 408 and closes.
    started = time.monotonic()
    answer = raw_exchange(server, head + b"Content-Length: 1000\r\n\r\n{\"instances\": [", wait=READ_TIMEOUT + 8)
    assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - started < READ_TIMEOUT + 5
    # Announced over the limit: 413 before a byte of the body is read.
    assert raw_exchange(server, head + b"Content-Length: 999999999\r\n\r\n").startswith(b"HTTP/1.1 413")
    # Chunked and over the limit.
    chunk = b"%x\r\n%s\r\n" % (1 << 20, b"A" * (1 << 20))
    answer = raw_exchange(server, head + b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 9 + b"0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413")
    server.check()


def test_bodies_that_would_be_expensive_to_parse(server):
    for raw, expected in [(b"[" * 200_000, 413), (b'{"instances": ' + b"[" * 300 + b"]" * 300 + b"}", 400),
                          (b"[[]," * 500_000 + b"[]]", 413), (b'{"instances": [' + b'{"content": ""},' * 2000 + b"]}", 413),
                          (b'{"instances": [{"content": ""}], "parameters": {"maxPredictions": 1e400}}', 422),
                          (b'{"instances": [{"content": ""}], "parameters": {"maxPredictions": ' + b"9" * 5000 + b"}}", 400),
                          (json.dumps({"instances": [{"content": "A" * (9 << 20)}]}).encode(), 413)]:
        status, _, answer = server.request("POST", "/predict", raw, {"Content-Type": "application/json"})
        assert status == expected, (raw[:60], answer[:200])
    # Over the limit from a client that sends it all and asks to close (urllib does): the answer, not a reset.
    for ctype in ("application/json", "image/png", "text/plain"):
        status, headers, _ = server.request("POST", "/predict", b"A" * (9 << 20),
                                            {"Content-Type": ctype, "Connection": "close"})
        assert status == (413 if ctype != "text/plain" else 415)
    too_many = {"instances": [{"content": b64(GOOD["PNG"])}] * 33}
    status, _, answer = post_json(server, too_many)
    assert status == 413 and "max_images" in answer["error"]
    server.check()


def test_slow_loris_clients_are_cut_off_and_do_not_hold_the_server(server):
    socks = []
    for i in range(60):  # headers that never end, a byte at a time
        sock = socket.create_connection((server.host, server.port), timeout=READ_TIMEOUT + 8)
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Slow-" + str(i).encode())
        socks.append(sock)
    started = time.monotonic()
    while time.monotonic() - started < READ_TIMEOUT / 2:
        for sock in socks:
            try:
                sock.send(b"a")
            except OSError:
                pass
        assert server.request("GET", "/health", timeout=5)[0] == 200  # answered meanwhile
        time.sleep(0.2)
    for sock in socks:  # each gets a 408 (or is closed) once the read deadline passes
        try:
            data = sock.recv(4096)
        except (ConnectionResetError, TimeoutError):
            data = b""
        assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:100]
        sock.close()
    assert time.monotonic() - started < READ_TIMEOUT + 6
    server.check()


def test_slow_headers_on_a_kept_alive_connection_are_cut_off_too(server):
    with socket.create_connection((server.host, server.port), timeout=READ_TIMEOUT + 8) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while b'"limits"' not in first:
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # the second request's headers never end
        started, answer = time.monotonic(), b""
        try:
            while time.monotonic() - started < READ_TIMEOUT + 6:
                sock.sendall(b"X-Slow: a\r\n")
                time.sleep(0.25)
        except OSError:  # closed by the server: what it answered first is in the receive buffer
            pass
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    assert time.monotonic() - started < READ_TIMEOUT + 5, "the connection was not cut off"
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    server.check()


def test_clients_trickling_their_bodies_keep_nobody_out(server):
    """Twice max_concurrent clients that send a body a byte at a time hold no prediction slot (a slot is
    taken once a body is in): a good request is answered at once, and they are cut off at read_timeout.
    (The bodies' own memory budget is tested on small limits in test_serve.py.)"""
    limit = json.loads(server.request("GET", "/health")[2])["limits"]["max_concurrent"]
    holders = [socket.create_connection((server.host, server.port), timeout=READ_TIMEOUT + 8)
               for _ in range(2 * limit)]
    for sock in holders:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{")
    started = time.monotonic()
    status, _, answer = post_json(server, {"instances": [{"content": b64(GOOD["JPEG"])}]})
    assert status == 200 and answer["predictions"][0]["displayNames"][0] == "green", answer
    assert time.monotonic() - started < READ_TIMEOUT, "the good request waited for the slow ones"
    for sock in holders:
        sock.close()
    server.check()


def test_wrong_content_types_and_methods(server):
    for ctype in ["text/plain", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "x"]:
        status, _, answer = server.request("POST", "/predict", b"{}", {"Content-Type": ctype})
        assert status == 415 and b"application/octet-stream" in answer
    assert server.request("GET", "/predict")[0] == 405
    assert server.request("DELETE", "/health")[0] == 405
    assert server.request("POST", "/nowhere", b"{}")[0] == 404
    status, _, answer = server.request("POST", "/predict", GOOD["GIF"], {"Content-Type": "image/gif"})
    assert status == 200 and json.loads(answer)["predictions"][0]["tagName"] == "green"
    server.check()

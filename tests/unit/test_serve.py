"""The local HTTP endpoint, on a tiny hand-built ONNX model that names an image's dominant colour."""
from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import pytest
from PIL import Image

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper

from imgcls.providers.local.preprocess import Preprocessing
from imgcls.providers.local.serve import make_server

LABELS = ["red", "green", "blue"]
COLOURS = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220)}
MAX_BODY = 64 * 1024


def colour_model() -> onnx.ModelProto:
    """probabilities = softmax(8 * mean colour per channel): the dominant channel wins."""
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("Gemm", ["flat", "w", "b"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)]
    graph = helper.make_graph(
        nodes, "colour",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor("w", TensorProto.FLOAT, [3, 3], (8 * np.eye(3)).ravel().tolist()),
         helper.make_tensor("b", TensorProto.FLOAT, [3], [0, 0, 0])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def write_artifact(path):
    """The colour model as `train` leaves a model: ONNX file, labels, preprocessing, metadata."""
    onnx.save(colour_model(), str(path / "model.onnx"))
    (path / "labels.json").write_text(json.dumps(LABELS))
    (path / "preprocessing.json").write_text(Preprocessing(size=32, resize=36).to_json())
    (path / "model.json").write_text(json.dumps({"task": "multiclass", "backbone": "toy", "preset": "quick",
                                                "created": "2024-01-01T00:00:00+00:00"}))
    return path


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return write_artifact(tmp_path_factory.mktemp("artifact"))


@pytest.fixture(scope="module")
def server(artifact):
    srv = make_server(artifact, max_body_bytes=MAX_BODY, max_batch=16, batch_wait_ms=20)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    thread.join(timeout=5)


def jpeg(colour: str, size=(64, 48)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, COLOURS[colour]).save(buf, "JPEG")
    return base64.b64encode(buf.getvalue()).decode()


def request(server, method, path, body=None, raw: bytes | None = None):
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    payload = json.loads(resp.read())
    conn.close()
    return resp.status, payload


def test_health_lists_labels_and_model(server):
    status, body = request(server, "GET", "/health")
    assert status == 200
    assert body["status"] == "ok" and body["labels"] == LABELS and body["model"]["backbone"] == "toy"


@pytest.mark.parametrize("path", ["/predict", "/score"])
def test_azureml_body(server, path):
    status, body = request(server, "POST", path,
                           {"input_data": {"columns": ["image"], "data": [jpeg("green"), [jpeg("blue")]]}})
    assert status == 200
    assert [LABELS[int(np.argmax(r["probs"]))] for r in body] == ["green", "blue"]
    assert body[0]["labels"] == LABELS and abs(sum(body[0]["probs"]) - 1) < 1e-4


def test_vertex_body_sorted_and_filtered(server):
    status, body = request(server, "POST", "/v1/endpoints/local:predict",
                           {"instances": [{"content": jpeg("red")}, {"content": jpeg("blue")}],
                            "parameters": {"confidenceThreshold": 0.0, "maxPredictions": 2}})
    assert status == 200 and body["deployedModelId"] == "local"
    first = body["predictions"][0]
    assert first["displayNames"][0] == "red" and len(first["ids"]) == 2
    assert first["confidences"] == sorted(first["confidences"], reverse=True)
    assert body["predictions"][1]["displayNames"][0] == "blue"
    _, high = request(server, "POST", "/predict",
                      {"instances": [{"content": jpeg("red")}], "parameters": {"confidenceThreshold": 0.9}})
    assert all(c >= 0.9 for c in high["predictions"][0]["confidences"])


@pytest.mark.parametrize("raw, fragment", [
    (b"{not json", "not valid JSON"),
    (json.dumps({"images": []}).encode(), "unknown body"),
    (json.dumps({"instances": [{"content": jpeg("red")}, {"content": "!!!"}]}).encode(), "image #1"),
    (json.dumps({"instances": [{"content": base64.b64encode(b"plain text").decode()}]}).encode(), "image #0"),
])
def test_bad_requests_get_400_and_the_server_keeps_serving(server, raw, fragment):
    status, body = request(server, "POST", "/predict", raw=raw)
    assert status == 400 and fragment in body["error"]
    assert request(server, "GET", "/health")[0] == 200


def test_base64_is_strict_and_says_what_is_wrong(server):
    good = jpeg("red")
    wrapped = "\n".join(good[i:i + 76] for i in range(0, len(good), 76))  # what `base64 file.jpg` prints
    status, body = request(server, "POST", "/predict", {"instances": [{"content": wrapped}]})
    assert status == 200 and body["predictions"][0]["displayNames"][0] == "red"
    for content, fragment in [("!!!!" + good, "invalid base64"),  # the lenient decoder drops the junk: a 200
                              ("data:image/jpeg;base64," + good, "data: URL"),
                              (good.replace("+", "-").replace("/", "_") + "-_", "URL-safe")]:
        status, body = request(server, "POST", "/predict", {"instances": [{"content": content}]})
        assert status == 400 and "image #0" in body["error"] and fragment in body["error"], body


@pytest.mark.parametrize("body, field", [({"instances": []}, "instances"),
                                         ({"input_data": {"columns": ["image"], "data": []}}, "input_data.data")])
def test_a_request_without_images_gets_422(server, body, field):
    status, answer = request(server, "POST", "/predict", body)
    assert status == 422 and field in answer["error"] and "at least 1" in answer["error"], answer


def test_an_unknown_key_is_named_but_not_echoed_in_full(server):
    status, answer = request(server, "POST", "/predict", {"instances": [{"content": jpeg("red"), "k" * 30_000: 1}]})
    assert status == 422 and "kkkk" in answer["error"] and len(json.dumps(answer)) < 2_000


def test_head_health_and_no_trailing_slash_redirects(server):
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("HEAD", "/health")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == b""
    conn.request("POST", "/predict/", body=b"{}", headers={"Content-Type": "application/json", "Host": "evil.example"})
    resp = conn.getresponse()
    assert resp.status == 404 and "location" not in {k.lower() for k in resp.headers}
    resp.read()
    conn.close()


def test_not_an_image_is_named_without_internal_reprs(server):
    status, body = request_raw(server, "/predict", b"GIF89 but not really", "image/gif")
    assert status == 400 and "image #0" in body["error"] and "BytesIO" not in body["error"], body


def test_oversized_body_gets_413(server):
    big = {"instances": [{"content": "A" * (MAX_BODY + 10)}]}
    status, body = request(server, "POST", "/predict", big)
    assert status == 413 and "over the limit" in body["error"]
    assert request(server, "GET", "/health")[0] == 200


def test_oversized_announced_length_is_refused_before_reading(server):
    host, port = server.server_address[:2]
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n")
        head = sock.recv(4096).decode()
    assert head.startswith("HTTP/1.1 413")
    assert request(server, "GET", "/health")[0] == 200


def test_concurrent_requests_are_batched_and_answered_right(server):
    colours = [LABELS[i % 3] for i in range(24)]
    before = server.batcher.stats["largest"]

    def ask(colour):
        status, body = request(server, "POST", "/predict", {"instances": [{"content": jpeg(colour)}]})
        return status, body["predictions"][0]["displayNames"][0]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, colours))
    assert answers == [(200, c) for c in colours]
    assert max(before, server.batcher.stats["largest"]) > 1


def test_shutdown_closes_the_port(artifact):
    srv = make_server(artifact)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    assert request(srv, "GET", "/health")[0] == 200
    srv.shutdown()
    thread.join(timeout=5)
    assert not thread.is_alive()
    with pytest.raises(OSError):
        socket.create_connection(srv.server_address[:2], timeout=2).close()


def request_raw(server, path, data: bytes, content_type: str):
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("POST", path, body=data, headers={"Content-Type": content_type})
    resp = conn.getresponse()
    payload = json.loads(resp.read())
    conn.close()
    return resp.status, payload


@pytest.mark.parametrize("content_type", ["image/jpeg", "application/octet-stream"])
def test_raw_image_bytes_get_a_custom_vision_answer(server, content_type):
    status, body = request_raw(server, "/predict", base64.b64decode(jpeg("blue")), content_type)
    assert status == 200 and set(body) == {"id", "project", "iteration", "created", "predictions"}
    best = body["predictions"][0]
    assert best["tagName"] == "blue" and best["tagId"] == "2" and len(body["predictions"]) == 3
    assert [p["probability"] for p in body["predictions"]] == sorted((p["probability"] for p in body["predictions"]),
                                                                      reverse=True)


@pytest.mark.parametrize("body, field", [
    ({"input_data": {"columns": ["image", "id"], "data": [[jpeg("red")]]}}, "input_data.data[0] has 1 cells"),
    ({"input_data": {"columns": {"image": 0}, "data": [jpeg("red")]}}, "input_data.columns"),
    ({"input_data": {"columns": ["a", "b"], "data": [[jpeg("red"), 1]]}}, 'no "image" column'),
    ({"instances": [{"content": jpeg("red")}], "parameters": {"maxPredictions": "many"}}, "parameters.maxPredictions"),
    ({"instances": [{"content": jpeg("red")}], "parameters": {"confidenceThreshold": 2}},
     "parameters.confidenceThreshold"),
    ({"instances": [{"contents": jpeg("red")}]}, "instances.0.contents"),
    ({"instances": [jpeg("red")]}, "instances.0"),
])
def test_a_wrong_field_gets_422_naming_it(server, body, field):
    status, answer = request(server, "POST", "/predict", body)
    assert status == 422 and field in answer["error"], answer
    assert answer["detail"] and request(server, "GET", "/health")[0] == 200


def test_huge_numbers_are_422_not_500(server):
    raw = b'{"instances": [{"content": ""}], "parameters": {"maxPredictions": 1e400}}'
    status, answer = request(server, "POST", "/predict", raw=raw)
    assert status == 422 and answer["detail"][0]["loc"] == ["parameters", "maxPredictions"]


def test_other_content_types_get_415(server):
    status, answer = request_raw(server, "/predict", b"{}", "text/plain")
    assert status == 415 and "application/octet-stream" in answer["error"]


def test_health_advertises_the_limits(server):
    limits = request(server, "GET", "/health")[1]["limits"]
    assert limits["max_body_bytes"] == MAX_BODY and limits["max_images"] >= 1 and limits["max_pixels"] > 0


@contextmanager
def running(artifact, **options):
    """A server of its own (options as make_server's), serving in a thread until the block ends."""
    srv = make_server(artifact, **options)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        thread.join(timeout=5)


def test_pixel_limit_is_read_from_the_header(artifact):
    with running(artifact, max_pixels=10_000) as srv:
        assert request(srv, "POST", "/predict", {"instances": [{"content": jpeg("red", (100, 100))}]})[0] == 200
        status, answer = request(srv, "POST", "/predict", {"instances": [{"content": jpeg("red", (101, 100))}]})
        assert status == 413 and "10100 pixels" in answer["error"] and "deploy.limits.max_pixels" in answer["error"]


def stalled_bodies(srv, n: int, sent: int, length: int) -> list[socket.socket]:
    """`n` connections that declare a JSON body of `length` bytes, send `sent` of them and stall."""
    socks = []
    for _ in range(n):
        sock = socket.create_connection(srv.server_address[:2], timeout=10)
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % length + b" " * sent)
        socks.append(sock)
    return socks


def test_slow_bodies_hold_no_prediction_slot(artifact):
    """Twice max_concurrent clients trickling their bodies: the others are still answered at once."""
    with running(artifact, max_concurrent=2, read_timeout=60) as srv:
        socks = stalled_bodies(srv, 4, 10, 1000)
        try:
            time.sleep(0.3)
            started = time.monotonic()
            status, answer = request(srv, "POST", "/predict", {"instances": [{"content": jpeg("green")}]})
            assert status == 200 and answer["predictions"][0]["displayNames"][0] == "green"
            assert time.monotonic() - started < 5
        finally:
            for sock in socks:
                sock.close()


def test_bodies_in_memory_have_a_budget(artifact):
    """Bodies arriving count their bytes: past max_concurrent x max_body_bytes, 503 with Retry-After."""
    with running(artifact, max_concurrent=2, max_body_bytes=4096, read_timeout=60) as srv:
        socks = stalled_bodies(srv, 2, 4000, 4096)  # 8000 of the 8192 bytes the two may hold
        try:
            deadline, status = time.monotonic() + 5, None
            while status != 503 and time.monotonic() < deadline:  # until the server has read what they sent
                status, answer = request(srv, "POST", "/predict", {"instances": [{"content": jpeg("green")}]})
            assert status == 503 and "bytes of request bodies in memory" in answer["error"], answer
        finally:
            for sock in socks:
                sock.close()
        deadline = time.monotonic() + 5
        while status != 200 and time.monotonic() < deadline:  # their bytes are given back
            status, answer = request(srv, "POST", "/predict", {"instances": [{"content": jpeg("green")}]})
        assert status == 200


def test_requests_being_answered_hold_their_slots(artifact):
    """max_concurrent counts requests whose body is in: one waiting in the batcher keeps a second out (503)."""
    with running(artifact, max_concurrent=1, batch_wait_ms=3000) as srv:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(request, srv, "POST", "/predict", {"instances": [{"content": jpeg("red")}]})
            deadline = time.monotonic() + 5
            while request(srv, "GET", "/health")[1]["in_flight"] == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            status, answer = request(srv, "POST", "/predict", {"instances": [{"content": jpeg("blue")}]})
            assert status == 503 and "max_concurrent" in answer["error"], answer
            assert first.result()[0] == 200
        assert request(srv, "GET", "/health")[1]["in_flight"] == 0


@pytest.mark.parametrize("file, content, says", [
    ("labels.json", b"[1,2", "labels.json in .* is damaged"),
    ("labels.json", b'["red"]', r"labels.json .* \(it names 1 labels; model.onnx scores 3\)"),
    ("model.json", b"{", "model.json in .* is damaged"),
    ("preprocessing.json", b'{"size": "x"}', "preprocessing.json in .* is damaged"),
    ("model.onnx", b"\x08\x07garbage", "model.onnx in .* is damaged"),
])
def test_a_damaged_model_file_is_a_data_error_naming_it(artifact, tmp_path, file, content, says):
    """A file of the exported model changed after training: a DataError naming it, not onnxruntime's or
    json's error; a labels.json shorter than the model's output used to score under the wrong names."""
    import shutil

    from imgcls.errors import DataError
    from imgcls.providers.local.predict import OnnxClassifier

    copy = shutil.copytree(artifact, tmp_path / "model")
    (copy / file).write_bytes(content)
    with pytest.raises(DataError, match=says):
        OnnxClassifier(copy)

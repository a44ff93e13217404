"""`predict --endpoint` against the local endpoint: requests sized by the server's advertised limits, 503s
retried after Retry-After, and `deploy --port 0` choosing a free port. The model is the hand-built colour
model of test_serve.py, put in a run as if trained (no training here)."""
from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("uvicorn")

import imgcls.api as api
from imgcls.errors import DataError
from imgcls.providers.local.client import EndpointClient
from imgcls.providers.local.client import batches as _batches
from imgcls.providers.local.client import json_size as _json_size
from imgcls.providers.local.preprocess import Preprocessing
from imgcls.providers.local.provider import LocalProvider
from imgcls.runs import Run
from tests.conftest import make_dataset
from tests.unit.test_serve import LABELS, colour_model

MiB = 1024 * 1024


@pytest.mark.parametrize("sizes, max_body, max_images", [
    ([1_500_000] * 6, 8 * MiB, 32),         # the six photos, 9.2 MB of body in one request
    ([10_000] * 40, 8 * MiB, 16),           # many small ones: the image limit
    ([100, 7 * MiB, 100, 100], 8 * MiB, 32),  # one too large for JSON goes alone
    ([], 8 * MiB, 32),
])
def test_batches_fit_the_body_and_image_limits(sizes, max_body, max_images):
    groups = _batches(sizes, max_body, max_images)
    assert [i for g in groups for i in g] == list(range(len(sizes)))  # every image once, in order
    for group in groups:
        assert len(group) <= max_images
        assert len(group) == 1 or _json_size([sizes[i] for i in group]) <= max_body
    if sizes == [1_500_000] * 6:
        assert _json_size(sizes) > max_body and len(groups) == 2


class Busy(http.server.BaseHTTPRequestHandler):
    """/health like the local endpoint; POST /predict answers 503 (Retry-After: 0) `busy` times, then 200."""
    busy = 2
    posts = 0

    def log_message(self, *args):
        pass

    def _send(self, status, payload, headers=()):
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._send(200, {"status": "ok", "labels": LABELS, "limits": {"max_body_bytes": MiB, "max_images": 4}})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).posts += 1
        if type(self).posts <= self.busy:
            return self._send(503, {"error": "busy", "code": 503}, [("Retry-After", "0")])
        self._send(200, {"predictions": [{"displayNames": ["red"], "confidences": [0.9]}
                                         for _ in body["instances"]], "deployedModelId": "local"})


@pytest.fixture
def busy_server():
    Busy.posts = 0
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_503_is_retried_and_batches_follow_the_advertised_limits(busy_server):
    provider = LocalProvider.__new__(LocalProvider)  # only the HTTP client is under test here
    scores = provider._score_http(busy_server, [b"x" * 1000] * 10, [f"img{i}.jpg" for i in range(10)])
    assert scores == [{"red": 0.9}] * 10
    assert Busy.posts == 2 + 3  # two 503s retried, then 10 images in requests of at most 4


def test_503_retries_are_bounded(busy_server):
    Busy.busy = 100
    try:
        provider = LocalProvider.__new__(LocalProvider)
        with pytest.raises(Exception, match="503"):
            provider._score_http(busy_server, [b"x"], ["a.jpg"])
        assert Busy.posts == 7  # the first try and six retries
    finally:
        Busy.busy = 2


def noise(path, size, fmt, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, fmt, quality=95)
    return path


def imgcls(*args, cwd):
    proc = subprocess.run([sys.executable, "-m", "imgcls.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=180)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_deploy_port_0_and_predicting_large_photos_through_the_endpoint(tmp_path):
    data = make_dataset(tmp_path / "data", {"red": 4, "green": 4, "blue": 4})
    cfg_path = tmp_path / "run.yaml"
    # deploy.port stays at its default (8080): --port 0 on the command line must win over it.
    cfg_path.write_text(f"name: ep\nprovider: local\nruns_dir: {tmp_path / 'runs'}\ndataset:\n  source: {data}\n")
    run, _ = api.import_dataset(api.load(cfg_path))
    artifact = run.file("artifacts", "model")
    artifact.mkdir(parents=True)
    onnx.save(colour_model(), str(artifact / "model.onnx"))
    assert sorted(run.step("import")["labels"]) == sorted(LABELS)
    (artifact / "labels.json").write_text(json.dumps(LABELS))  # the colour model's output order
    (artifact / "preprocessing.json").write_text(Preprocessing(size=32, resize=36).to_json())
    (artifact / "model.json").write_text(json.dumps({"task": "multiclass", "backbone": "toy"}))
    run.set_step("train", {"provider": "local", "model_id": str(artifact), "status": "succeeded"})

    proc = imgcls("--json", "deploy", "--port", "0", "--detach", "--run", run.id, "-c", str(cfg_path), cwd=tmp_path)
    try:
        assert proc.returncode == 0, proc.stderr
        url = json.loads(proc.stdout)["deployment"]["endpoint"]
        port = int(url.rsplit(":", 1)[1])
        assert port not in (0, 8080)
        # Six 1.5 MB photos (9+ MB of base64 together, over the 8 MiB limit) and one whose base64 alone
        # is over it (sent as raw bytes).
        photos = tmp_path / "photos"
        photos.mkdir()
        for i in range(6):
            noise(photos / f"p{i}.jpg", (1100, 900), "JPEG", i)
        noise(photos / "big.png", (1500, 1500), "PNG", 9)
        sizes = [p.stat().st_size for p in sorted(photos.iterdir())]
        assert sum(sizes[:6]) * 4 / 3 > 8 * MiB or sizes[-1] * 4 / 3 > 8 * MiB, sizes
        proc = imgcls("--json", "predict", "--endpoint", "--run", run.id, "-c", str(cfg_path), str(photos),
                      cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        preds = json.loads(proc.stdout)["predictions"]
        assert len(preds) == 7 and all(set(p["scores"]) <= set(LABELS) and p["scores"] for p in preds)
    finally:
        down = imgcls("down", "--run", run.id, "-c", str(cfg_path), cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    time.sleep(0.2)
    assert Run(run.path).resources() == []


def test_an_image_over_the_servers_limit_is_named(tmp_path):
    client = EndpointClient("http://x")
    client._limits = (2048, 4)                     # what GET /health would have said
    with pytest.raises(DataError, match="huge.jpg is 4096 bytes, over the endpoint's limit of 2048"):
        client.score([b"y" * 4096], ["huge.jpg"])

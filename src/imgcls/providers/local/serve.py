"""The local HTTP endpoint: Azure ML and Vertex AI request bodies on one port, micro-batched,
standard library only (ONNX Runtime underneath)."""
from __future__ import annotations

import base64
import binascii
import json
import queue
import signal
import sys
import threading
import time
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from imgcls.errors import DataError
from imgcls.providers.local.predict import OnnxClassifier

PREDICT_PATHS = ("/predict", "/score", "/v1/endpoints/local:predict")
DRAIN_LIMIT = 64 * 1024 * 1024  # an oversized body up to this is read and dropped so the client sees the 413


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class Batcher:
    """One worker that runs the model on up to `max_batch` images gathered from concurrent requests."""

    def __init__(self, classifier: OnnxClassifier, max_batch: int, wait_ms: float):
        self.classifier, self.max_batch, self.wait = classifier, max_batch, wait_ms / 1000
        self._queue: queue.Queue = queue.Queue()
        self.stats = {"batches": 0, "images": 0, "largest": 0}  # how well micro-batching works
        self._worker = threading.Thread(target=self._run, name="imgcls-batcher", daemon=True)
        self._worker.start()

    def predict(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        futures = []
        for array in arrays:
            futures.append(Future())
            self._queue.put((array, futures[-1]))
        return [f.result() for f in futures]

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=5)

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            jobs, deadline = [job], time.monotonic() + self.wait
            while len(jobs) < self.max_batch:
                try:
                    job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                jobs.append(job)
            self.stats.update(batches=self.stats["batches"] + 1, images=self.stats["images"] + len(jobs),
                              largest=max(self.stats["largest"], len(jobs)))
            try:
                probs = self.classifier.predict_arrays(np.stack([array for array, _ in jobs]))
                for (_, future), row in zip(jobs, probs):
                    future.set_result(row)
            except Exception as exc:
                for _, future in jobs:
                    future.set_exception(exc)


def parse_body(body: dict):
    """(kind, list of base64 strings, parameters) for an Azure ML or a Vertex AI body."""
    if isinstance(body, dict) and isinstance(body.get("input_data"), dict):
        table = body["input_data"]
        columns = table.get("columns") or ["image"]
        column = columns.index("image") if "image" in columns else 0
        rows = table.get("data")
        if not isinstance(rows, list):
            raise BadRequest('input_data.data must be a list of base64-encoded images')
        # Rows come as plain strings or as pandas "split" rows, [image, ...].
        return "azureml", [row[column] if isinstance(row, list) and row else row for row in rows], {}
    if isinstance(body, dict) and isinstance(body.get("instances"), list):
        contents = [inst.get("content") if isinstance(inst, dict) else None for inst in body["instances"]]
        params = body.get("parameters") or {}
        if not isinstance(params, dict):
            raise BadRequest("parameters must be an object")
        return "vertex", contents, params
    raise BadRequest('unknown body: expected {"input_data": {"columns": ["image"], "data": [<base64>, ...]}} '
                     'or {"instances": [{"content": <base64>}, ...]}')


def decode_images(classifier: OnnxClassifier, items: list) -> list[np.ndarray]:
    arrays = []
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise BadRequest(f"image #{i}: expected a base64 string")
        try:
            raw = base64.b64decode(item)
        except (binascii.Error, ValueError):
            raise BadRequest(f"image #{i}: invalid base64") from None
        try:
            arrays.append(classifier.prepare(raw, i))
        except DataError as exc:
            raise BadRequest(exc.message) from None
    return arrays


def render(kind: str, labels: list[str], probs: list[np.ndarray], params: dict):
    if kind == "azureml":
        return [{"probs": [round(float(p), 6) for p in row], "labels": labels} for row in probs]
    try:
        threshold = float(params.get("confidenceThreshold", 0.0))
        limit = int(params.get("maxPredictions", 10))
    except (TypeError, ValueError):
        raise BadRequest("confidenceThreshold must be a number and maxPredictions an integer") from None
    predictions = []
    for row in probs:
        order = [i for i in np.argsort(-row, kind="stable") if row[i] >= threshold][:max(limit, 0)]
        predictions.append({"ids": [str(i) for i in order], "displayNames": [labels[i] for i in order],
                            "confidences": [round(float(row[i]), 6) for i in order]})
    return {"predictions": predictions, "deployedModelId": "local"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client's second request skips the TCP handshake
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's delayed
    # ACK (~40 ms on Linux).
    disable_nagle_algorithm = True
    server: ModelServer

    def log_message(self, format, *args):  # one line per request would drown the CLI's stderr
        pass

    def do_GET(self):
        if self.path.split("?")[0] != "/health":
            return self._reply(404, {"error": f"no route GET {self.path}", "code": 404})
        clf = self.server.classifier
        self._reply(200, {"status": "ok", "labels": clf.labels, "model": clf.info})

    def do_POST(self):
        try:
            if self.path.split("?")[0] not in PREDICT_PATHS:
                self._drain(self._length())
                raise BadRequest(f"no route POST {self.path}; use one of {', '.join(PREDICT_PATHS)}", 404)
            body = self._read_json()
            kind, items, params = parse_body(body)
            probs = self.server.batcher.predict(decode_images(self.server.classifier, items))
            self._reply(200, render(kind, self.server.classifier.labels, probs, params))
        except BadRequest as exc:
            self._reply(exc.status, {"error": str(exc), "code": exc.status})
        except Exception as exc:
            self._reply(500, {"error": f"prediction failed: {type(exc).__name__}: {exc}", "code": 500})

    def _length(self) -> int:
        try:
            return int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise BadRequest("a Content-Length header is required", 411) from None

    def _read_json(self):
        length = self._length()
        if length > self.server.max_body_bytes:
            self._drain(length)
            raise BadRequest(f"request body of {length} bytes is over the limit of "
                             f"{self.server.max_body_bytes} bytes", 413)
        try:
            return json.loads(self.rfile.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequest(f"the body is not valid JSON: {exc}") from None

    def _drain(self, length: int) -> None:
        if length > DRAIN_LIMIT:
            self.close_connection = True  # not worth reading; the client may see a reset
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                break
            length -= len(chunk)

    def _reply(self, status: int, payload) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


class ModelServer(ThreadingHTTPServer):
    daemon_threads = True  # a client holding a keep-alive connection must not block shutdown

    def __init__(self, address, classifier: OnnxClassifier, max_body_bytes: int, max_batch: int,
                 batch_wait_ms: float):
        self.classifier, self.max_body_bytes = classifier, max_body_bytes
        self.batcher = Batcher(classifier, max_batch, batch_wait_ms)
        super().__init__(address, Handler)

    def server_close(self) -> None:
        super().server_close()
        self.batcher.close()
        self.classifier.close()

    def shutdown(self) -> None:
        super().shutdown()
        self.server_close()


def make_server(artifact_dir: Path, host: str = "127.0.0.1", port: int = 0, max_body_bytes: int = 8 * 1024 * 1024,
                max_batch: int = 16, batch_wait_ms: float = 5) -> ModelServer:
    """A ready server (not yet serving): call .serve_forever(), and .shutdown() from another thread."""
    return ModelServer((host, port), OnnxClassifier(Path(artifact_dir)), max_body_bytes, max_batch, batch_wait_ms)


def serve(artifact_dir: Path, host: str = "127.0.0.1", port: int = 8080, **options) -> None:
    """Serve in the foreground until Ctrl-C or SIGTERM."""
    server = make_server(artifact_dir, host, port, **options)

    def stop(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
    address = server.server_address
    print(f"serving {artifact_dir} on http://{address[0]}:{address[1]} (Ctrl-C to stop)", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    """`python -m imgcls.providers.local.serve ARTIFACT_DIR --host H --port P` (what `deploy --detach` runs)."""
    import argparse
    parser = argparse.ArgumentParser(prog="python -m imgcls.providers.local.serve")
    parser.add_argument("artifact_dir", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    serve(args.artifact_dir, args.host, args.port)


if __name__ == "__main__":
    main()

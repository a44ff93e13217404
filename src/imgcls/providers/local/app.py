"""The local endpoint as an ASGI app (FastAPI): its routes, and one ONNX Runtime session per worker that
requests share, micro-batched. uvicorn runs it (serve.py); bodies.py and limits.py hold what it accepts."""
from __future__ import annotations

import asyncio
import base64
import binascii
import os
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException

from imgcls.config import EndpointLimits
from imgcls.errors import DataError
from imgcls.providers.local import bodies
from imgcls.providers.local.limits import (
    BYTES_PER_PIXEL,
    DecodeBudget,
    Refused,
    check_json_values,
    decode_cost,
)
from imgcls.providers.local.predict import OnnxClassifier

PREDICT_PATHS = ("/predict", "/score", "/v1/endpoints/local:predict")
RETRY_AFTER_SECONDS = 1
DRAIN_BYTES = 64 * 1024 * 1024


class Batcher:
    """One worker that runs the model on up to `max_batch` images gathered from concurrent requests."""

    def __init__(self, classifier: OnnxClassifier, max_batch: int, wait_ms: float):
        self.classifier, self.max_batch, self.wait = classifier, max_batch, wait_ms / 1000
        self._queue: queue.Queue = queue.Queue()
        self.stats = {"batches": 0, "images": 0, "largest": 0}  # how well micro-batching works
        self._worker = threading.Thread(target=self._run, name="imgcls-batcher", daemon=True)
        self._worker.start()

    def submit(self, array: np.ndarray) -> Future:
        future: Future = Future()
        self._queue.put((array, future))
        return future

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


class Model:
    """What a worker shares between requests: the session, its batcher, the limits and their budgets."""

    def __init__(self, artifact_dir: Path, limits: EndpointLimits, max_batch: int, batch_wait_ms: float):
        self.classifier = OnnxClassifier(Path(artifact_dir))
        self.limits = limits
        self.batcher = Batcher(self.classifier, max_batch, batch_wait_ms)
        self.budget = DecodeBudget(BYTES_PER_PIXEL * limits.max_pixels)
        # JSON parsing and base64 hold the GIL: one thread for them keeps the event loop answering.
        self.parser = ThreadPoolExecutor(1, thread_name_prefix="imgcls-parse")
        # Decoding is Pillow C code that releases the GIL: a thread per core, within the decode budget.
        self.decoder = ThreadPoolExecutor(max(2, os.cpu_count() or 1), thread_name_prefix="imgcls-decode")
        # Prediction slots are taken once a body is in; the bodies' bytes (arriving or being answered) have
        # a budget of their own, so a slow client holds only what it sent, never a slot.
        self.in_flight = 0
        self.held, self.held_budget = 0, limits.max_concurrent * limits.max_body_bytes
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.batcher.close()
            self.parser.shutdown(wait=False, cancel_futures=True)
            self.decoder.shutdown(wait=False, cancel_futures=True)
            self.classifier.close()

    def health(self) -> dict:
        limits = self.limits.model_dump(include={"max_body_bytes", "max_images", "max_pixels", "max_concurrent"})
        return {"status": "ok", "labels": self.classifier.labels, "model": self.classifier.info, "limits": limits,
                "in_flight": self.in_flight}

    def check_slot(self, refusal=Refused) -> None:
        if self.in_flight >= self.limits.max_concurrent:
            raise refusal(503, f"busy: {self.in_flight} requests in progress (deploy.limits.max_concurrent); "
                               f"retry after {RETRY_AFTER_SECONDS} s", headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    def read(self, raw: bytes, kind: str) -> tuple[str, list[bytes], list[int], bodies.VertexParameters | None]:
        """(answer shape, image bytes, decode costs, Vertex parameters) of a body; Refused when it is wrong."""
        params = None
        if kind == "raw":
            images = [raw]
        else:
            check_json_values(raw, self.limits)
            try:
                body = bodies.REQUEST.validate_json(raw)
            except ValidationError as exc:
                raise _invalid(exc) from None
            if isinstance(body, bodies.VertexRequest):
                kind, params = "vertex", body.parameters
                encoded = [instance.content for instance in body.instances]
            else:
                kind, encoded = "azureml", body.input_data.images()
            if len(encoded) > self.limits.max_images:
                raise Refused(413, f"{len(encoded)} images in one request, over the limit of "
                                   f"{self.limits.max_images} (deploy.limits.max_images): send fewer at a time")
            images = [_from_base64(item, i) for i, item in enumerate(encoded)]
        prep = self.classifier.preprocessing
        costs = [decode_cost(image, i, self.limits, prep) for i, image in enumerate(images)]
        return kind, images, costs, params

    async def predict(self, images: list[bytes], costs: list[int]) -> list[np.ndarray]:
        return list(await asyncio.gather(*(self._one(image, i, cost) for i, (image, cost)
                                           in enumerate(zip(images, costs)))))

    async def _one(self, image: bytes, index: int, cost: int) -> np.ndarray:
        loop = asyncio.get_running_loop()
        async with self.budget.hold(cost):
            try:
                array = await loop.run_in_executor(self.decoder, self.classifier.prepare, image, index)
            except DataError as exc:
                raise Refused(400, exc.message) from None
        return await asyncio.wrap_future(self.batcher.submit(array))


def _from_base64(text: str, index: int) -> bytes:
    """Strict base64 (the standard alphabet, padded), line breaks allowed (`base64` wraps at 76): a stray
    character is an error to name, not one to drop silently as the lenient decoder does."""
    if text.startswith("data:"):
        raise Refused(400, f"image #{index}: a data: URL, not base64: send only what follows 'base64,'")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        alphabet = " (URL-safe '-' and '_' are not accepted)" if "-" in text or "_" in text else ""
        raise Refused(400, f"image #{index}: invalid base64: expected the standard alphabet A-Z a-z 0-9 + / "
                           f"padded with ={alphabet}") from None


def _invalid(exc: ValidationError) -> Refused:
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    if any(e["type"] == "unknown_body" for e in errors):
        return Refused(400, bodies.UNKNOWN_BODY)
    if any(e["type"] == "json_invalid" for e in errors):
        return Refused(400, f"the body is not valid JSON: {errors[0]['msg'].removeprefix('Invalid JSON: ')}")
    for e in errors:  # the first element is the body's shape (vertex, azureml), not a field; an unknown
        #              key is named, but never echoed at its full length
        e["loc"] = [part if not isinstance(part, str) or len(part) <= 64 else part[:64] + "…"
                    for part in e["loc"][1:]]
    lines = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in errors[:10]]
    return Refused(422, "invalid body: " + "; ".join(lines), detail=errors)


class Unread(Refused):
    """Refused while the client may still be sending its body."""


def _body_kind(request: Request) -> str:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("", "application/json", "text/json") or ctype.endswith("+json"):
        return "json"
    if ctype == "application/octet-stream" or ctype.startswith("image/"):
        return "raw"
    raise Unread(415, f"unsupported Content-Type {ctype!r}: send application/json (a Vertex AI or Azure ML "
                      f"body) or the image itself as application/octet-stream or image/*")


def _check_length(request: Request, limit: int) -> None:
    length = request.headers.get("content-length")
    if length is not None and int(length) > limit:  # h11 has already refused a malformed Content-Length
        raise Unread(413, f"request body of {length} bytes is over the limit of {limit} bytes "
                          f"(deploy.limits.max_body_bytes)")


async def _read_body(request: Request, model: Model) -> bytes:
    """The whole body, its bytes counted in `model.held` as they arrive (the caller gives back len(body) once
    answered; a refused body's are given back here): 503 when the bodies in memory would pass their budget,
    whatever the slots say."""
    limit, chunks, size = model.limits.max_body_bytes, [], 0
    try:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":  # gone, or cut off by the read deadline: nobody reads this
                raise Refused(408, "the client went away before sending the whole body")
            chunk, more = message.get("body", b""), message.get("more_body", False)
            refusal = Unread if more else Refused
            if size + len(chunk) > limit:
                raise refusal(413, f"request body is over the limit of {limit} bytes (deploy.limits.max_body_bytes)")
            if model.held + len(chunk) > model.held_budget:
                raise refusal(503, f"busy: {model.held} bytes of request bodies in memory, the most the endpoint "
                                   f"holds (deploy.limits.max_concurrent x max_body_bytes); retry after "
                                   f"{RETRY_AFTER_SECONDS} s", headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
            chunks.append(chunk)
            size += len(chunk)
            model.held += len(chunk)
            if not more:
                return b"".join(chunks)
    except BaseException:
        model.held -= size
        raise


async def _drained(request: Request) -> bool:
    """Read and drop the rest of the body, so that a client still sending it (urllib, which also asks to
    close after the answer) sees the answer rather than a reset. False when it is not worth it: over
    DRAIN_BYTES, or a client waiting for 100-continue (it has not sent the body; it will get the answer)."""
    length = request.headers.get("content-length")
    if "100-continue" in request.headers.get("expect", "").lower() or (length and int(length) > DRAIN_BYTES):
        return False
    seen = 0
    while seen <= DRAIN_BYTES:  # within read_timeout too: the protocol's deadline still runs
        message = await request.receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            return True
        seen += len(message.get("body", b""))
    return False


def _answer(status: int, payload, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(payload, status_code=status, headers=headers)


def create_app(artifact_dir: Path, limits: EndpointLimits | None = None, max_batch: int = 16,
               batch_wait_ms: float = 5) -> FastAPI:
    """The app, with its model loaded: one per worker process."""
    app = _routes()
    app.state.model = Model(artifact_dir, limits or EndpointLimits(), max_batch, batch_wait_ms)
    return app


def openapi_document() -> dict:
    """/openapi.json, without loading a model."""
    return _routes().openapi()


@asynccontextmanager
async def _lifespan(app: FastAPI):
    yield
    app.state.model.close()


async def health(request: Request) -> dict:
    return request.app.state.model.health()


async def predict(request: Request) -> JSONResponse:
    model: Model = request.app.state.model
    try:
        kind = _body_kind(request)
        _check_length(request, model.limits.max_body_bytes)
        model.check_slot(Unread)  # none free now: say so before the client sends its body
    except Refused as exc:
        return await _refusal(request, exc)
    # The body's bytes count from the first (model.held); a slot is taken once it is all in, so a slow
    # client keeps no slot from the others (read_timeout cuts it off), as a buffering proxy in front would.
    size, slot = 0, False
    try:
        raw = await _read_body(request, model)
        size = len(raw)
        model.check_slot()
        model.in_flight, slot = model.in_flight + 1, True
        loop = asyncio.get_running_loop()
        kind, images, costs, params = await loop.run_in_executor(model.parser, model.read, raw, kind)
        del raw
        probs = await model.predict(images, costs)
        return _answer(200, bodies.render(kind, model.classifier.labels, probs, params))
    except Refused as exc:
        return await _refusal(request, exc)
    finally:
        model.held -= size
        model.in_flight -= slot


async def _refusal(request: Request, exc: Refused) -> JSONResponse:
    payload = {"error": exc.message, "code": exc.status}
    if exc.detail:
        payload["detail"] = exc.detail
    headers = dict(exc.headers)
    if isinstance(exc, Unread) and _has_body(request) and not await _drained(request):
        headers["Connection"] = "close"
    return _answer(exc.status, payload, headers)


def _has_body(request: Request) -> bool:
    return request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers


def _routes() -> FastAPI:
    # No redirects from /predict/ to /predict: a 307 built from the client's Host header helps nobody.
    app = FastAPI(title="imgcls local endpoint", version="1", lifespan=_lifespan, redoc_url=None,
                  redirect_slashes=False,
                  description="Image classification with the Vertex AI, Azure ML and Custom Vision bodies.")
    app.add_api_route("/health", health, methods=["HEAD"], include_in_schema=False)  # load balancers probe so
    app.add_api_route("/health", health, methods=["GET"], response_model=bodies.Health,
                      summary="Labels, model and limits")
    for path in PREDICT_PATHS:
        app.add_api_route(path, predict, methods=["POST"], summary="Classify images",
                          description=PREDICT_DOC, openapi_extra=REQUEST_DOC, responses=ANSWERS,
                          operation_id="predict" + path.replace("/", "_").replace(":", "_").replace(".", "_"))

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):  # 404, 405 in the same shape as every other error
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        return _answer(exc.status_code, {"error": f"{detail}: {request.method} {request.url.path}",
                                         "code": exc.status_code}, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request, exc: RequestValidationError):
        return _answer(422, {"error": "invalid request", "code": 422, "detail": list(exc.errors())})

    @app.exception_handler(Exception)
    async def failed(request, exc: Exception):  # a fault of ours: still JSON, and it names the exception
        return _answer(500, {"error": f"prediction failed: {type(exc).__name__}: {exc}", "code": 500})

    app.openapi = lambda: _openapi(app)
    return app


PREDICT_DOC = """One body, three shapes: the answer has the request's shape.

* `application/json` `{"instances": [{"content": <base64>}], "parameters": {...}}` (Vertex AI) → `VertexAnswer`
* `application/json` `{"input_data": {"columns": ["image"], "data": [<base64>]}}` (Azure ML) → a list of `AzureMLRow`
* `application/octet-stream` or `image/*`: the image file itself (Custom Vision) → `ImagePrediction`

Limits (see `GET /health`): 413 over `max_body_bytes`, `max_images` or `max_pixels`; 503 with `Retry-After`
when `max_concurrent` requests are being answered, or when the bodies in memory (arriving or being answered)
would pass `max_concurrent` × `max_body_bytes`; 408 when a request is not received within `read_timeout`.
A slot is taken once a body is all in: a slow client holds none."""

REQUEST_DOC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"oneOf": [{"$ref": "#/components/schemas/VertexRequest"},
                                              {"$ref": "#/components/schemas/AzureMLRequest"}]}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    "image/*": {"schema": {"type": "string", "format": "binary"}}}}}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


ANSWERS = {
    200: {"description": "Predictions, in the request's shape", "content": {"application/json": {"schema": {"anyOf": [
        _ref("VertexAnswer"), {"type": "array", "items": _ref("AzureMLRow")}, _ref("ImagePrediction")]}}}},
    **{code: {"description": text, "content": {"application/json": {"schema": _ref("ErrorAnswer")}}}
       for code, text in [(400, "Not JSON, an unknown body, invalid base64, or not an image"), (408, "Request not received in time"),
                          (413, "Over max_body_bytes, max_images or max_pixels"),
                          (415, "Content-Type neither JSON nor an image"), (422, "A field is wrong (named in loc)"),
                          (503, "Over max_concurrent requests: retry after Retry-After seconds")]},
}
MODELS = (bodies.VertexRequest, bodies.AzureMLRequest, bodies.VertexAnswer, bodies.AzureMLRow,
          bodies.ImagePrediction, bodies.ErrorAnswer)


def _openapi(app: FastAPI) -> dict:
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        _, defs = models_json_schema([(m, "validation") for m in MODELS],
                                     ref_template="#/components/schemas/{model}")
        schema.setdefault("components", {}).setdefault("schemas", {}).update(defs["$defs"])
        for path in PREDICT_PATHS:  # FastAPI documents its own 422 shape; ours is ErrorAnswer
            schema["paths"][path]["post"]["responses"]["422"] = {
                "description": ANSWERS[422]["description"], "content": ANSWERS[422]["content"]}
        app.openapi_schema = schema
    return app.openapi_schema


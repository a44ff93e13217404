"""The HTTP side of the fake AWS: one threaded server on one port for Rekognition (AWS JSON 1.1, told apart by
its `X-Amz-Target` header) and path-style S3 (REST + XML), credential checks, fault injection, and `FakeAws`.
"""
from __future__ import annotations

import json
import re
import threading
import traceback
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit
from xml.sax.saxutils import escape

from tests.fakes.aws import rekognition, sigv4
from tests.fakes.aws.state import AwsError, State, iso
from tests.fakes.hooks import Hooks

ACCESS_KEY = "AKIAFAKEIMGCLS000001"
SECRET_KEY = "fake-secret-imgcls"
_CREDENTIAL = re.compile(r"Credential=([^/]+)/")


@dataclass
class Fault:
    operation: str       # a Rekognition operation ("DetectCustomLabels") or "s3:<METHOD>"
    code: str
    status: int
    times: int
    hits: int = 0


class FakeAws:
    """`with FakeAws() as fake:` serves on 127.0.0.1 (a free port unless given); `fake.env()` is what boto3 needs."""

    def __init__(self, region: str = "us-east-1", host: str = "127.0.0.1", port: int = 0,
                 train_seconds: float = 0.5, start_seconds: float = 0.3):
        self.state = State(region, train_seconds, start_seconds)
        self.calls: list[str] = []           # every operation served, in order ("CreateProject", "s3:PUT", …)
        self.crashes: list[str] = []
        self.faults: list[Fault] = []
        # A test's code at a chosen request (e.g. SIGKILL the client there): Rekognition calls are matched as
        # ("POST", "/<Operation>"), S3 ones by their method and path.
        self.hooks = Hooks()
        self._host, self._port = host, port
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": self.state.region}

    def fail(self, operation: str, code: str, status: int = 400, times: int = 1) -> Fault:
        """Answer the next `times` calls of `operation` with the error `code` (times=-1: forever)."""
        fault = Fault(operation, code, status, times)
        self.faults.append(fault)
        return fault

    def __enter__(self) -> FakeAws:
        fake = self

        class Handler(_Handler):
            owner = fake

        self._server = ThreadingHTTPServer((self._host, self._port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _fault(self, operation: str) -> Fault | None:
        for f in self.faults:
            if f.operation == operation and (f.times < 0 or f.hits < f.times):
                f.hits += 1
                return f
        return None


class _Handler(BaseHTTPRequestHandler):
    owner: FakeAws
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet: tests read fake.calls instead
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else b""
        self.raw = data
        if "aws-chunked" in (self.headers.get("Content-Encoding") or ""):
            data = _unchunk(data)
        return data

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", "fake-request")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        body = self._body()
        target = self.headers.get("X-Amz-Target")
        fake = self.owner
        try:
            if target:
                self._rekognition(target, body)
            else:
                self._s3(body)
        except (BrokenPipeError, ConnectionResetError):   # the client died before its answer (kill tests)
            self.close_connection = True
        except Exception:  # a fake bug: answer 500 and keep it for the test to show
            fake.crashes.append(traceback.format_exc())
            self._send(500, b'{"__type": "InternalServerError", "message": "fake crashed"}')

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    def _key_ok(self) -> bool:
        m = _CREDENTIAL.search(self.headers.get("Authorization") or "")
        return bool(m) and m.group(1) == ACCESS_KEY

    def _signed(self) -> bool:
        """The signature covers the body as sent (for S3, its hash header), so the raw bytes are checked."""
        host = self.headers.get("Host", "")
        return sigv4.valid(self.command, f"http://{host}{self.path}", self.headers, self.raw, SECRET_KEY)

    # -- Rekognition ----------------------------------------------------------------------------
    def _rekognition(self, target: str, body: bytes) -> None:
        fake = self.owner
        operation = target.rpartition(".")[2]
        fake.calls.append(operation)
        try:
            if not self._key_ok():
                raise AwsError("UnrecognizedClientException", "The security token included in the request is "
                                                              "invalid.")
            if not self._signed():
                raise AwsError("InvalidSignatureException", "The request signature we calculated does not match "
                                                            "the signature you provided. Check your AWS Secret "
                                                            "Access Key and signing method.")
            fault = fake._fault(operation)
            if fault:
                raise AwsError(fault.code, f"fake AWS: injected {fault.code}", fault.status)
            fn = rekognition.OPERATIONS.get(operation)
            if fn is None:
                raise AwsError("UnknownOperationException", f"fake AWS does not serve {operation}")
            try:
                request = json.loads(body or b"{}")
            except ValueError:
                raise AwsError("SerializationException", "Start of structure or map found where not expected.")
            if fake.hooks.fire("before", "POST", f"/{operation}"):
                self.close_connection = True             # dropped: the connection closes unanswered
                return
            with fake.state.lock:
                answer = fn(fake.state, request)
            fake.hooks.fire("after", "POST", f"/{operation}")
            self._send(200, json.dumps(answer).encode(), {"Content-Type": "application/x-amz-json-1.1"})
        except AwsError as e:
            self._send(e.status, json.dumps({"__type": e.code, "message": e.message}).encode(),
                       {"Content-Type": "application/x-amz-json-1.1"})

    # -- S3 (path style) -------------------------------------------------------------------------
    def _s3(self, body: bytes) -> None:
        fake, state = self.owner, self.owner.state
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        bucket, _, key = unquote(parts.path).lstrip("/").partition("/")
        fake.calls.append(f"s3:{self.command}")
        try:
            if not self._key_ok():
                raise AwsError("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our "
                                                     "records.", 403)
            if not self._signed():
                raise AwsError("SignatureDoesNotMatch", "The request signature we calculated does not match the "
                                                        "signature you provided. Check your key and signing "
                                                        "method.", 403)
            fault = fake._fault(f"s3:{self.command}")
            if fault:
                raise AwsError(fault.code, f"fake AWS: injected {fault.code}", fault.status)
            if fake.hooks.fire("before", self.command, parts.path):
                self.close_connection = True
                return
            with state.lock:
                self._s3_op(state, bucket, key, query, body)
        except AwsError as e:
            xml = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{e.code}</Code>"
                   f"<Message>{escape(e.message)}</Message></Error>").encode()
            self._send(e.status, xml, {"Content-Type": "application/xml"})

    def _s3_op(self, state: State, bucket: str, key: str, query: dict, body: bytes) -> None:
        method = self.command
        if not bucket:
            names = "".join(f"<Bucket><Name>{b}</Name></Bucket>" for b in sorted(state.buckets))
            return self._send(200, f"<ListAllMyBucketsResult><Buckets>{names}</Buckets></ListAllMyBucketsResult>"
                              .encode(), {"Content-Type": "application/xml"})
        if not key:
            if method == "PUT":
                if bucket in state.buckets:
                    raise AwsError("BucketAlreadyOwnedByYou", "Your previous request to create the named bucket "
                                                              "succeeded and you already own it.", 409)
                state.buckets[bucket] = {}
                return self._send(200, headers={"Location": f"/{bucket}"})
            objects = state.bucket(bucket)
            if method == "HEAD":
                return self._send(200)
            if method == "DELETE":
                if objects:
                    raise AwsError("BucketNotEmpty", "The bucket you tried to delete is not empty", 409)
                del state.buckets[bucket]
                return self._send(204)
            if method == "GET":
                return self._list(bucket, objects, query)
            raise AwsError("MethodNotAllowed", f"{method} on a bucket is not served by the fake", 405)
        objects = state.bucket(bucket)
        if method == "PUT":
            objects[key] = body
            return self._send(200, headers={"ETag": '"fake"'})
        if method == "DELETE":
            objects.pop(key, None)
            return self._send(204)
        if key not in objects:
            if method == "HEAD":
                return self._send(404)
            raise AwsError("NoSuchKey", "The specified key does not exist.", 404)
        return self._send(200, objects[key], {"Content-Type": "application/octet-stream", "ETag": '"fake"'})

    def _list(self, bucket: str, objects: dict[str, bytes], query: dict) -> None:
        prefix = query.get("prefix", "")
        names = sorted(k for k in objects if k.startswith(prefix))
        start = query.get("continuation-token") or query.get("start-after") or ""
        names = [n for n in names if n > start] if start else names
        limit = int(query.get("max-keys") or 1000)
        page, more = names[:limit], len(names) > limit
        items = "".join(f"<Contents><Key>{escape(k)}</Key><Size>{len(objects[k])}</Size>"
                        f"<LastModified>{iso(0)}</LastModified><ETag>\"fake\"</ETag></Contents>" for k in page)
        token = f"<NextContinuationToken>{escape(page[-1])}</NextContinuationToken>" if more else ""
        xml = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult><Name>{bucket}</Name>"
               f"<Prefix>{escape(prefix)}</Prefix><KeyCount>{len(page)}</KeyCount><MaxKeys>{limit}</MaxKeys>"
               f"<IsTruncated>{'true' if more else 'false'}</IsTruncated>{items}{token}</ListBucketResult>")
        self._send(200, xml.encode(), {"Content-Type": "application/xml"})


def _unchunk(data: bytes) -> bytes:
    """The body of an aws-chunked upload: `<hex size>[;chunk-signature=…]\\r\\n<bytes>\\r\\n` … `0\\r\\n` + trailers."""
    out, pos = bytearray(), 0
    while pos < len(data):
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end].split(b";")[0], 16)
        if size == 0:
            break
        out += data[end + 2:end + 2 + size]
        pos = end + 2 + size + 2
    return bytes(out)

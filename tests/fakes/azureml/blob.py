"""The Azure Blob Storage subset the workspace's datastore needs: containers, block blobs, ranges, listing.

Two ways in, both on the fake's port:
  * path style, like Azurite: https://127.0.0.1:PORT/{account}/{container}/{blob} - what
    `ContainerClient(account_url=fake.blob_account_url, ...)` uses;
  * the real host, https://{account}.blob.core.windows.net/{container}/{blob}, reached through the
    fake acting as HTTPS_PROXY - what the SDK's own uploads of local paths use.
Errors are the XML <Error><Code/><Message/></Error> the service sends, with x-ms-error-code.
"""
from __future__ import annotations

import base64
import hashlib
import itertools
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from xml.sax.saxutils import escape

from .http import Request, Response

HOST_SUFFIX = ".blob.core.windows.net"
ACCOUNT_KEY = base64.b64encode(b"fake-azureml-storage-account-key").decode()
_etags = itertools.count(0x8DC0000000000)


@dataclass
class Blob:
    data: bytes
    content_type: str = "application/octet-stream"
    metadata: dict[str, str] = field(default_factory=dict)
    etag: str = ""
    modified: float = 0.0
    created: float = 0.0

    def touch(self) -> None:
        self.etag = f'"0x{next(_etags):X}"'
        self.modified = time.time()
        self.created = self.created or self.modified


class BlobStore:
    """Blobs by (container, name); one storage account's worth, whatever account name is used."""

    def __init__(self) -> None:
        self.containers: dict[str, dict[str, Blob]] = {}
        self.blocks: dict[tuple[str, str], dict[str, bytes]] = {}
        self.lock = threading.RLock()

    def put(self, container: str, name: str, data: bytes, content_type: str = "application/octet-stream",
            metadata: dict[str, str] | None = None) -> Blob:
        with self.lock:
            blob = Blob(data, content_type, dict(metadata or {}))
            old = self.containers.setdefault(container, {}).get(name)
            blob.created = old.created if old else 0.0
            blob.touch()
            self.containers[container][name] = blob
            return blob

    def get(self, container: str, name: str) -> bytes | None:
        blob = self.containers.get(container, {}).get(name)
        return None if blob is None else blob.data

    def names(self, container: str, prefix: str = "") -> list[str]:
        return sorted(n for n in self.containers.get(container, {}) if n.startswith(prefix))

    def __len__(self) -> int:
        return sum(len(c) for c in self.containers.values())

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for container, blobs in sorted(self.containers.items()):
            for name in sorted(blobs):
                yield container, name


def _error(status: int, code: str, message: str) -> Response:
    body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
            f"<Message>{escape(message)}\nRequestId:fake\nTime:{formatdate(usegmt=True)}</Message></Error>")
    return Response(status, body, {"x-ms-error-code": code, "Content-Type": "application/xml"})


def _http_date(t: float) -> str:
    return formatdate(t, usegmt=True)


def _blob_headers(blob: Blob) -> dict[str, str]:
    headers = {"ETag": blob.etag, "Last-Modified": _http_date(blob.modified),
               "x-ms-creation-time": _http_date(blob.created), "x-ms-blob-type": "BlockBlob",
               "Content-Type": blob.content_type, "Accept-Ranges": "bytes",
               "x-ms-server-encrypted": "true", "x-ms-lease-status": "unlocked",
               "x-ms-lease-state": "available", "x-ms-access-tier": "Hot", "x-ms-access-tier-inferred": "true"}
    headers.update({f"x-ms-meta-{k}": v for k, v in blob.metadata.items()})
    return headers


def handle(fake: Any, request: Request) -> Response:
    host = request.host.split(":")[0].lower()
    parts = request.path.lstrip("/").split("/", 2 if not host.endswith(HOST_SUFFIX) else 1)
    if not host.endswith(HOST_SUFFIX):
        parts = parts[1:]                          # drop the account segment of a path-style URL
    container = parts[0] if parts and parts[0] else ""
    name = parts[1] if len(parts) > 1 else ""
    auth = request.headers.get("authorization", "")
    if not (auth.startswith(("SharedKey ", "Bearer ")) or "sig" in request.query):
        return _error(401, "NoAuthenticationInformation",
                      "Server failed to authenticate the request. Please refer to the information in the "
                      "www-authenticate header.")
    response = _route(fake.blobs, request, container, name)
    response.headers.setdefault("x-ms-version", request.headers.get("x-ms-version", "2025-01-05"))
    response.headers.setdefault("Date", _http_date(time.time()))
    return response


def _route(store: BlobStore, request: Request, container: str, name: str) -> Response:
    q, method = request.query, request.method
    if not container:
        return _error(400, "InvalidUri", "The requested URI does not represent any resource on the server.")
    if not name:
        if q.get("restype") != "container":
            return _error(400, "InvalidQueryParameterValue", "restype=container is required.")
        if q.get("comp") == "list" and method == "GET":
            return _list(store, request, container)
        if method == "PUT":
            with store.lock:
                if container in store.containers:
                    return _error(409, "ContainerAlreadyExists", "The specified container already exists.")
                store.containers[container] = {}
            return Response(201, None, {"ETag": '"0x1"', "Last-Modified": _http_date(time.time())})
        if container not in store.containers:
            return _error(404, "ContainerNotFound", "The specified container does not exist.")
        if method in ("GET", "HEAD"):
            return Response(200, None, {"ETag": '"0x1"', "Last-Modified": _http_date(time.time()),
                                        "x-ms-lease-status": "unlocked", "x-ms-lease-state": "available"})
        if method == "DELETE":
            with store.lock:
                store.containers.pop(container, None)
            return Response(202)
        return _error(405, "UnsupportedHttpVerb", "The resource doesn't support the specified HTTP verb.")

    if container not in store.containers:
        return _error(404, "ContainerNotFound", "The specified container does not exist.")
    blobs = store.containers[container]
    comp = q.get("comp", "")
    if method == "PUT" and comp == "block":
        with store.lock:
            store.blocks.setdefault((container, name), {})[q["blockid"]] = request.body
        return Response(201, None, {"Content-MD5": base64.b64encode(hashlib.md5(request.body).digest()).decode(),
                                    "x-ms-request-server-encrypted": "true"})
    if method == "PUT" and comp == "blocklist":
        staged = store.blocks.pop((container, name), {})
        ids = [el.text or "" for el in ET.fromstring(request.body)]
        # The fake keeps no committed block list: a commit may only name blocks staged since the last one.
        if any(i not in staged for i in ids):
            return _error(400, "InvalidBlockList", "The specified block list is invalid.")
        return _commit(store, request, container, name, b"".join(staged[i] for i in ids), blobs.get(name))
    if method == "PUT" and comp == "metadata":
        blob = blobs.get(name)
        if blob is None:
            return _error(404, "BlobNotFound", "The specified blob does not exist.")
        with store.lock:
            blob.metadata = _metadata(request)
            blob.touch()
        return Response(200, None, {"ETag": blob.etag, "Last-Modified": _http_date(blob.modified)})
    if method == "PUT" and not comp:
        if request.headers.get("x-ms-copy-source"):
            return _error(400, "UnsupportedHeader", "The fake does not copy blobs.")
        return _commit(store, request, container, name, request.body, blobs.get(name))

    blob = blobs.get(name)
    if blob is None:
        return _error(404, "BlobNotFound", "The specified blob does not exist.")
    if method == "HEAD" or (method == "GET" and comp == "properties"):
        return Response(200, None, {**_blob_headers(blob), "Content-Length": str(len(blob.data)),
                                    "Content-MD5": base64.b64encode(hashlib.md5(blob.data).digest()).decode()})
    if method == "GET" and comp == "metadata":
        return Response(200, None, {f"x-ms-meta-{k}": v for k, v in blob.metadata.items()} | {"ETag": blob.etag})
    if method == "GET" and not comp:
        return _download(request, blob)
    if method == "DELETE":
        with store.lock:
            blobs.pop(name, None)
        return Response(202, None, {"x-ms-delete-type-permanent": "true"})
    return _error(400, "UnsupportedQueryParameter", f"The fake does not support comp={comp} on {method}.")


def _metadata(request: Request) -> dict[str, str]:
    return {k[len("x-ms-meta-"):]: v for k, v in request.headers.items() if k.startswith("x-ms-meta-")}


def _commit(store: BlobStore, request: Request, container: str, name: str, data: bytes,
            old: Blob | None) -> Response:
    if old is not None and request.headers.get("if-none-match") == "*":
        return _error(409, "BlobAlreadyExists", "The specified blob already exists.")
    content_type = request.headers.get("x-ms-blob-content-type") or "application/octet-stream"
    blob = store.put(container, name, data, content_type, _metadata(request))
    return Response(201, None, {"ETag": blob.etag, "Last-Modified": _http_date(blob.modified),
                                "Content-MD5": base64.b64encode(hashlib.md5(data).digest()).decode(),
                                "x-ms-request-server-encrypted": "true"})


def _download(request: Request, blob: Blob) -> Response:
    size = len(blob.data)
    spec = request.headers.get("x-ms-range") or request.headers.get("range")
    headers = _blob_headers(blob)
    if not spec:
        headers["Content-MD5"] = base64.b64encode(hashlib.md5(blob.data).digest()).decode()
        return Response(200, blob.data, headers)
    start_s, _, end_s = spec.split("=", 1)[1].partition("-")
    start = int(start_s)
    end = min(int(end_s) if end_s else size - 1, size - 1)
    if start >= size:
        return Response(416, _error(416, "InvalidRange", "The range specified is invalid for the current size "
                                    "of the resource.").body,
                        {"x-ms-error-code": "InvalidRange", "Content-Range": f"bytes */{size}",
                         "Content-Type": "application/xml"})
    chunk = blob.data[start:end + 1]
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    if request.headers.get("x-ms-range-get-content-md5") == "true":
        headers["Content-MD5"] = base64.b64encode(hashlib.md5(chunk).digest()).decode()
    return Response(206, chunk, headers)


def _list(store: BlobStore, request: Request, container: str) -> Response:
    if container not in store.containers:
        return _error(404, "ContainerNotFound", "The specified container does not exist.")
    q = request.query
    prefix, delimiter, marker = q.get("prefix", ""), q.get("delimiter", ""), q.get("marker", "")
    limit = int(q.get("maxresults", "5000"))
    with_meta = "metadata" in q.get("include", "")
    entries: list[tuple[str, Blob | None]] = []
    seen_prefixes: set[str] = set()
    for name, blob in sorted(store.containers[container].items()):
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix):]
        if delimiter and delimiter in rest:
            sub = prefix + rest.split(delimiter, 1)[0] + delimiter
            if sub not in seen_prefixes:
                seen_prefixes.add(sub)
                entries.append((sub, None))
            continue
        entries.append((name, blob))
    entries = [e for e in entries if e[0] > marker] if marker else entries
    page, rest = entries[:limit], entries[limit:]
    out = ['<?xml version="1.0" encoding="utf-8"?>',
           f'<EnumerationResults ServiceEndpoint="https://fake{HOST_SUFFIX}/" ContainerName="{escape(container)}">',
           f"<Prefix>{escape(prefix)}</Prefix><Marker>{escape(marker)}</Marker><MaxResults>{limit}</MaxResults>",
           f"<Delimiter>{escape(delimiter)}</Delimiter><Blobs>"]
    for name, blob in page:
        if blob is None:
            out.append(f"<BlobPrefix><Name>{escape(name)}</Name></BlobPrefix>")
            continue
        meta = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in blob.metadata.items())
        out.append(
            f"<Blob><Name>{escape(name)}</Name><Properties>"
            f"<Creation-Time>{_http_date(blob.created)}</Creation-Time>"
            f"<Last-Modified>{_http_date(blob.modified)}</Last-Modified><Etag>{blob.etag}</Etag>"
            f"<Content-Length>{len(blob.data)}</Content-Length><Content-Type>{escape(blob.content_type)}"
            f"</Content-Type><Content-MD5>{base64.b64encode(hashlib.md5(blob.data).digest()).decode()}"
            "</Content-MD5><BlobType>BlockBlob</BlobType><LeaseStatus>unlocked</LeaseStatus>"
            "<LeaseState>available</LeaseState><ServerEncrypted>true</ServerEncrypted>"
            "<AccessTier>Hot</AccessTier><AccessTierInferred>true</AccessTierInferred></Properties>"
            + (f"<Metadata>{meta}</Metadata>" if with_meta else "") + "</Blob>")
    out.append(f"</Blobs><NextMarker>{escape(page[-1][0]) if rest else ''}</NextMarker></EnumerationResults>")
    return Response(200, "".join(out), {"Content-Type": "application/xml"})

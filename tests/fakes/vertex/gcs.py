"""The Cloud Storage JSON API subset google-cloud-storage uses, and the buckets behind it.

Buckets: create, get, list, delete. Objects: media, multipart and resumable upload, get,
list (prefix, delimiter, paging), download (with Range), delete. The Vertex side of the fake
reads import files and images, and writes exports and batch predictions, through `Gcs` in
process.
"""
from __future__ import annotations

import base64
import hashlib
import json
import struct
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import quote

import google_crc32c

from tests.fakes.vertex.state import ApiError, now


@dataclass
class Blob:
    data: bytes
    content_type: str
    generation: int
    created: str
    metadata: dict = field(default_factory=dict)

    def hashes(self) -> tuple[str, str]:
        """(md5, crc32c), base64 as the API prints them; the client checks one of them."""
        md5 = base64.b64encode(hashlib.md5(self.data).digest()).decode()
        crc = base64.b64encode(struct.pack(">I", google_crc32c.value(self.data))).decode()
        return md5, crc


class Gcs:
    """`buckets[name][object name] -> Blob`; uris are `gs://bucket/name`."""

    def __init__(self, base_url_getter):
        self.buckets: dict[str, dict[str, Blob]] = {}
        self._bucket_meta: dict[str, dict] = {}
        self._uploads: dict[str, dict] = {}  # resumable upload id -> {"bucket","name","meta","data"}
        self._generation = 1_700_000_000_000_000
        self._base_url = base_url_getter

    # In-process access, for the Vertex side and for tests.

    @staticmethod
    def split(uri: str) -> tuple[str, str]:
        if not uri.startswith("gs://") or "/" not in uri[5:]:
            raise ApiError("INVALID_ARGUMENT", f"Invalid Cloud Storage URI: {uri}")
        bucket, _, name = uri[5:].partition("/")
        return bucket, name

    def create_bucket(self, name: str, location: str = "US") -> dict:
        if name in self.buckets:
            raise ApiError("ALREADY_EXISTS", "Your previous request to create the named bucket "
                                             "succeeded and you already own it.")
        self.buckets[name] = {}
        stamp = now()
        self._bucket_meta[name] = {"kind": "storage#bucket", "id": name, "name": name,
                                   "projectNumber": "0", "metageneration": "1",
                                   "location": location.upper(), "storageClass": "STANDARD",
                                   "locationType": "multi-region", "timeCreated": stamp,
                                   "updated": stamp, "etag": "CAE="}
        return self._bucket_meta[name]

    def write(self, uri: str, data: bytes, content_type: str = "application/octet-stream",
              metadata: dict | None = None) -> Blob:
        bucket, name = self.split(uri)
        objects = self._bucket(bucket)
        self._generation += 1
        blob = Blob(data, content_type, self._generation, now(), dict(metadata or {}))
        objects[name] = blob
        return blob

    def read(self, uri: str) -> bytes:
        bucket, name = self.split(uri)
        blob = self._bucket(bucket).get(name)
        if blob is None:
            raise ApiError("NOT_FOUND", f"No such object: {bucket}/{name}")
        return blob.data

    def exists(self, uri: str) -> bool:
        bucket, name = self.split(uri)
        return name in self.buckets.get(bucket, {})

    def list(self, prefix_uri: str) -> list[str]:
        """Uris of the objects under `gs://bucket[/prefix]`, sorted."""
        bucket, _, prefix = prefix_uri.removeprefix("gs://").partition("/")
        return [f"gs://{bucket}/{n}" for n in sorted(self._bucket(bucket)) if n.startswith(prefix)]

    def _bucket(self, name: str) -> dict[str, Blob]:
        if name not in self.buckets:
            raise ApiError("NOT_FOUND", "The specified bucket does not exist.")
        return self.buckets[name]

    def resource(self, bucket: str, name: str, blob: Blob) -> dict:
        md5, crc = blob.hashes()
        path = f"b/{bucket}/o/{quote(name, safe='')}"
        body = {"kind": "storage#object", "id": f"{bucket}/{name}/{blob.generation}",
                "selfLink": f"{self._base_url()}/storage/v1/{path}",
                "mediaLink": f"{self._base_url()}/download/storage/v1/{path}"
                             f"?generation={blob.generation}&alt=media",
                "name": name, "bucket": bucket, "generation": str(blob.generation),
                "metageneration": "1", "contentType": blob.content_type,
                "storageClass": "STANDARD", "size": str(len(blob.data)), "md5Hash": md5,
                "crc32c": crc, "etag": base64.b64encode(str(blob.generation).encode()).decode(),
                "timeCreated": blob.created, "updated": blob.created,
                "timeStorageClassUpdated": blob.created}
        if blob.metadata:
            body["metadata"] = blob.metadata
        return body

    # HTTP handlers: (fake, request, match) -> dict | Response.

    def insert_bucket(self, fake, req, m):
        body = req.json()
        if not body.get("name"):
            raise ApiError("INVALID_ARGUMENT", "Required parameter: name")
        return self.create_bucket(body["name"], body.get("location", "US"))

    def get_bucket(self, fake, req, m):
        self._bucket(m["bucket"])
        return self._bucket_meta[m["bucket"]]

    def list_buckets(self, fake, req, m):
        return {"kind": "storage#buckets", "items": [self._bucket_meta[b] for b in sorted(self.buckets)]}

    def delete_bucket(self, fake, req, m):
        if self._bucket(m["bucket"]):
            raise ApiError("ABORTED", "The bucket you tried to delete is not empty.")
        del self.buckets[m["bucket"]], self._bucket_meta[m["bucket"]]
        return fake.response(204)

    def get_object(self, fake, req, m, media: bool = False):
        bucket, name = m["bucket"], m["object"]
        blob = self._bucket(bucket).get(name)
        if blob is None:
            raise ApiError("NOT_FOUND", f"No such object: {bucket}/{name}")
        self._check_generation(req, blob)
        if media or req.query.get("alt") == "media":
            return self._media(fake, req, blob)
        return self.resource(bucket, name, blob)

    def list_objects(self, fake, req, m):
        bucket, q = m["bucket"], req.query
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter")
        names = sorted(n for n in self._bucket(bucket) if n.startswith(prefix)
                       and n >= q.get("startOffset", "") and (not q.get("endOffset") or n < q["endOffset"]))
        items, prefixes = [], []
        for n in names:
            cut = n.find(delimiter, len(prefix)) if delimiter else -1
            if cut >= 0:
                if n[:cut + len(delimiter)] not in prefixes:
                    prefixes.append(n[:cut + len(delimiter)])
            else:
                items.append(n)
        start = int(q.get("pageToken") or 0)
        size = int(q.get("maxResults") or 1000)
        body = {"kind": "storage#objects"}
        if items[start:start + size]:
            body["items"] = [self.resource(bucket, n, self.buckets[bucket][n])
                             for n in items[start:start + size]]
        if prefixes and start == 0:
            body["prefixes"] = prefixes
        if start + size < len(items):
            body["nextPageToken"] = str(start + size)
        return body

    def delete_object(self, fake, req, m):
        objects = self._bucket(m["bucket"])
        if m["object"] not in objects:
            raise ApiError("NOT_FOUND", f"No such object: {m['bucket']}/{m['object']}")
        self._check_generation(req, objects[m["object"]])
        del objects[m["object"]]
        return fake.response(204)

    def download(self, fake, req, m):
        return self.get_object(fake, req, m, media=True)

    def upload(self, fake, req, m):
        bucket, kind = m["bucket"], req.query.get("uploadType")
        self._bucket(bucket)
        if kind == "media":
            meta, data = {"name": req.query.get("name")}, req.body
            content_type = req.headers.get("Content-Type")
        elif kind == "multipart":
            meta, data, content_type = self._multipart(req)
        elif kind == "resumable":
            meta = req.json()
            meta.setdefault("name", req.query.get("name"))
            upload_id = fake.state.new_id()
            self._uploads[upload_id] = {"bucket": bucket, "meta": meta, "data": b"",
                                        "type": req.headers.get("X-Upload-Content-Type"),
                                        "query": dict(req.query)}
            location = (f"{self._base_url()}/upload/storage/v1/b/{bucket}/o"
                        f"?uploadType=resumable&upload_id={upload_id}")
            return fake.response(200, b"", {"Location": location})
        else:
            raise ApiError("INVALID_ARGUMENT", f"Invalid upload type: {kind}")
        return self._store(bucket, meta, data, content_type, req.query)

    def upload_chunk(self, fake, req, m):
        upload = self._uploads.get(req.query.get("upload_id", ""))
        if upload is None or req.query.get("uploadType") != "resumable":
            raise ApiError("NOT_FOUND", "No such upload session.")
        # Content-Range: "bytes a-b/total", "bytes a-b/*", or "bytes */total" (a status query).
        spec = req.headers.get("Content-Range", "bytes */*").split(" ", 1)[1]
        span, _, total = spec.partition("/")
        if span != "*":
            first = int(span.split("-")[0])
            upload["data"] = upload["data"][:first] + req.body
        if total != "*" and len(upload["data"]) >= int(total):
            del self._uploads[req.query["upload_id"]]
            return self._store(upload["bucket"], upload["meta"], upload["data"], upload["type"],
                               upload["query"])
        headers = {"Range": f"bytes=0-{len(upload['data']) - 1}"} if upload["data"] else {}
        return fake.response(308, b"", headers)

    def _store(self, bucket, meta, data, content_type, query):
        name = meta.get("name")
        if not name:
            raise ApiError("INVALID_ARGUMENT", "Required parameter: name")
        existing = self.buckets[bucket].get(name)
        expected = existing.generation if existing else 0  # 0: "only if the object does not exist"
        if "ifGenerationMatch" in query and int(query["ifGenerationMatch"]) != expected:
            raise ApiError("FAILED_PRECONDITION", "At least one of the pre-conditions you "
                                                  "specified did not hold.", http=412)
        content_type = meta.get("contentType") or content_type or "application/octet-stream"
        blob = self.write(f"gs://{bucket}/{name}", data, content_type, meta.get("metadata"))
        return self.resource(bucket, name, blob)

    @staticmethod
    def _multipart(req) -> tuple[dict, bytes, str]:
        head = f"Content-Type: {req.headers.get('Content-Type')}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(head + req.body)
        parts = list(message.iter_parts())
        if len(parts) != 2:
            raise ApiError("INVALID_ARGUMENT", "Multipart upload needs metadata and media parts.")
        meta = json.loads(parts[0].get_payload(decode=True) or b"{}")
        return meta, parts[1].get_payload(decode=True), parts[1].get_content_type()

    @staticmethod
    def _check_generation(req, blob: Blob):
        want = req.query.get("ifGenerationMatch") or req.query.get("generation")
        if want and int(want) != blob.generation:
            raise ApiError("FAILED_PRECONDITION", "At least one of the pre-conditions you "
                                                  "specified did not hold.", http=412)

    def _media(self, fake, req, blob):
        md5, crc = blob.hashes()
        headers = {"Content-Type": blob.content_type, "x-goog-hash": f"crc32c={crc},md5={md5}",
                   "x-goog-generation": str(blob.generation),
                   "x-goog-stored-content-length": str(len(blob.data)),
                   "x-goog-stored-content-encoding": "identity", "Accept-Ranges": "bytes"}
        rng = req.headers.get("Range")
        if rng and rng.startswith("bytes="):
            first, _, last = rng[6:].partition("-")
            start = int(first) if first else max(0, len(blob.data) - int(last))
            end = int(last) if first and last else len(blob.data) - 1
            if start >= len(blob.data) and blob.data:
                raise ApiError("INVALID_ARGUMENT", "The requested range cannot be satisfied.", http=416)
            end = min(end, len(blob.data) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(blob.data)}"
            return fake.response(206, blob.data[start:end + 1], headers)
        return fake.response(200, blob.data, headers)

    def routes(self):
        b, o = r"(?P<bucket>[^/]+)", r"(?P<object>.+)"
        return [
            ("POST", r"/storage/v1/b", self.insert_bucket),
            ("GET", r"/storage/v1/b", self.list_buckets),
            ("GET", rf"/storage/v1/b/{b}", self.get_bucket),
            ("DELETE", rf"/storage/v1/b/{b}", self.delete_bucket),
            ("GET", rf"/storage/v1/b/{b}/o", self.list_objects),
            ("GET", rf"/storage/v1/b/{b}/o/{o}", self.get_object),
            ("DELETE", rf"/storage/v1/b/{b}/o/{o}", self.delete_object),
            ("GET", rf"/download/storage/v1/b/{b}/o/{o}", self.download),
            ("POST", rf"/upload/storage/v1/b/{b}/o", self.upload),
            ("PUT", rf"/upload/storage/v1/b/{b}/o", self.upload_chunk),
        ]

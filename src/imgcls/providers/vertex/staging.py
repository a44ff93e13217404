"""Images into the staging bucket under content-addressed names, and the files Vertex reads from there.

`{prefix}/images/{sha256}{ext}`: the same bytes always get the same name, so images are uploaded once
and shared by every run and config that uses them; what is already there is found with one listing.
Images already in gs:// are referenced where they are. Run-specific files (import file, batch
prediction input/output, exports) live under `{prefix}/runs/{run id}/`.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import pandas as pd

from ...data import exporters
from ...errors import DataError
from . import bodies
from .settings import Settings

WORKERS = 8
EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "gif": ".gif", "bmp": ".bmp", "ico": ".ico", "webp": ".webp",
              "tiff": ".tif"}


def split_uri(uri: str) -> tuple[str, str]:
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    return bucket, name


def object_name(s: Settings, row) -> str:
    suffix = EXTENSIONS.get(row["format"] or "") or ("." + str(row["uri"]).rsplit(".", 1)[-1].lower())
    return s.name("images", f"{row['sha256']}{suffix}")


def gcs_uris(s: Settings, manifest: pd.DataFrame) -> dict[str, str]:
    """Manifest uri -> the gs:// uri Vertex reads it from."""
    out = {}
    for row in manifest.to_dict("records"):
        uri = row["uri"]
        out[uri] = uri if uri.startswith("gs://") else f"gs://{s.bucket}/{object_name(s, row)}"
    return out


def check_sources(manifest: pd.DataFrame) -> None:
    other = [u for u in manifest["uri"] if "://" in u and not u.startswith("gs://")]
    if other:
        raise DataError(f"Vertex AI reads images from Cloud Storage; {len(other)} images are other URIs, "
                        f"e.g. {other[0]}", hint="download them and point dataset.source at the local copies, "
                                                 "or copy them to gs://")
    unhashed = [u for u, h in zip(manifest["uri"], manifest["sha256"]) if "://" not in u and not h]
    if unhashed:
        raise DataError(f"cannot read {unhashed[0]} to upload it", hint="check the file (imgcls validate)")


@dataclass
class Staged:
    uris: dict[str, str]                               # manifest uri -> gs:// uri
    uploaded: list[str] = field(default_factory=list)  # object names this run wrote
    present: int = 0                                   # already in the bucket
    referenced: int = 0                                # gs:// images used where they are


def stage_images(client, s: Settings, manifest: pd.DataFrame, progress,
                 before_upload: Callable[[list[str]], None] = lambda names: None) -> Staged:
    """Upload the local images the bucket does not hold yet, 8 at a time."""
    uris = gcs_uris(s, manifest)
    wanted: dict[str, str] = {}
    for uri, gs in uris.items():
        if uri != gs:
            wanted.setdefault(split_uri(gs)[1], uri)
    existing = client.list_names(s.bucket, s.name("images") + "/") if wanted else set()
    todo = {name: path for name, path in wanted.items() if name not in existing}
    staged = Staged(uris, present=len(wanted) - len(todo), referenced=sum(u == g for u, g in uris.items()))
    if not todo:
        return staged
    before_upload(sorted(todo))
    progress.log(f"uploading {len(todo)} images to gs://{s.bucket}/{s.name('images')}/ "
                 f"({staged.present} already there)")
    done = 0
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = {pool.submit(client.upload_file, s.bucket, name, path, bodies.mime_type(name)): name
                   for name, path in sorted(todo.items())}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for fut in finished:
                if fut.exception() is not None:
                    for other in pending:
                        other.cancel()
                    raise fut.exception()
                if fut.result():
                    staged.uploaded.append(futures[fut])
                done += 1
            progress.advance("uploading", done, len(todo))
    staged.uploaded.sort()
    return staged


def import_file(s: Settings, manifest: pd.DataFrame, uris: dict[str, str]) -> tuple[str, str]:
    """(text, content type) of the import file: every image with its labels and our split as ML_USE."""
    def uri_of(row) -> str:
        return uris[row["uri"]]

    if s.import_format == "csv":
        return exporters.vertex_csv(manifest, uri_of), "text/csv"
    return exporters.vertex_jsonl(manifest, uri_of, s.multilabel), "application/jsonl"


def batch_instances(uris: list[str]) -> str:
    return "".join(json.dumps({"content": u, "mimeType": bodies.mime_type(u)}) + "\n" for u in uris)


def read_predictions(files: dict[str, bytes]) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Batch prediction output -> (instance content uri -> label -> score, error messages)."""
    scores: dict[str, dict[str, float]] = {}
    errors: list[str] = []
    for name in sorted(files):
        for line in files[name].decode("utf-8").splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            uri = (rec.get("instance") or {}).get("content", "")
            if "prediction" in rec:
                pred = rec["prediction"]
                scores[uri] = {n: float(c) for n, c in zip(pred.get("displayNames", []), pred.get("confidences", []))}
            elif "error" in rec:
                errors.append(f"{uri}: {(rec['error'] or {}).get('message', rec['error'])}")
    return scores, errors

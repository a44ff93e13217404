"""Uploading the train+validation images into a Custom Vision project: batches within the service's
limits, oversized files re-encoded, and a per-run record (sha256 -> image id) written after every
batch, so an interrupted or partly failed import re-sends only what is missing."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import ProviderError
from ...runs import write_json
from . import shrink

if TYPE_CHECKING:
    import pandas as pd

    from ...progress import Progress
    from ...runs import Run
    from .client import Client

MAX_BATCH_IMAGES = 64
MAX_BATCH_TAGS = 20
MAX_TRAINING_BYTES = 6 * 1024 * 1024
# Our own cap on one request's images (sent base64 in JSON): 64 photos of 6 MB would be half a gigabyte.
MAX_BATCH_BYTES = 48 * 1024 * 1024


def record_path(run: Run) -> Path:
    return run.file("customvision", "uploads.json")


def load_record(run: Run, project_id: str) -> dict:
    """What this run has put into `project_id` so far: images (ours to delete), kept (images the
    project already had), tags it created, and the files the service refused last time."""
    try:
        record = json.loads(record_path(run).read_text())
    except (FileNotFoundError, ValueError):
        record = None
    if not record or record.get("project_id") != project_id:
        record = {"project_id": project_id, "images": {}, "kept": {}, "tags_created": [], "failed": {}}
    return record


def save_record(run: Run, record: dict) -> None:
    write_json(record_path(run), record)


@dataclass
class Outcome:
    uploaded: int = 0            # sent now and created
    duplicates: int = 0          # sent now, already in the project (counted as uploaded)
    already: int = 0             # in the record from an earlier attempt: not sent again
    reencoded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)   # uri -> the service's status


def upload(client: Client, run: Run, progress: Progress, project_id: str, reused: bool,
           rows: pd.DataFrame, tag_ids: dict[str, str]) -> Outcome:
    """Upload `rows` (train+validation) not yet in the record; per-image refusals are collected, not raised."""
    from ...data import exporters  # pandas: not at import time (`imgcls providers` stays fast)

    record = load_record(run, project_id)
    done = set(record["images"]) | set(record["kept"])
    pending = rows[~rows["sha256"].isin(done)].reset_index(drop=True)
    out = Outcome(already=len(rows) - len(pending))
    if out.already:
        progress.log(f"{out.already} images already in project {project_id} from an earlier attempt; "
                     f"uploading the other {len(pending)}")
    waiting = set(pending["uri"])
    record["failed"] = {u: s for u, s in record["failed"].items() if u in waiting}
    total, sent = len(pending), 0
    batches = (part for batch in exporters.batches(pending, MAX_BATCH_IMAGES, MAX_BATCH_TAGS)
               for part in _by_bytes(batch, MAX_BATCH_BYTES))
    for batch in batches:
        entries, sent_rows = [], []
        for uri, sha, labels in zip(batch["uri"], batch["sha256"], batch["labels"]):
            try:
                data = Path(uri).read_bytes()
            except OSError as exc:
                out.failed[uri] = record["failed"][uri] = f"unreadable ({exc.strerror})"
                continue
            fitted = shrink.fit(data, MAX_TRAINING_BYTES)
            if fitted is not data:
                out.reencoded.append(uri)
                progress.log(f"{uri}: {len(data) / 1e6:.1f} MB re-encoded to {len(fitted) / 1e6:.1f} MB "
                             "to fit Custom Vision's 6 MB limit")
            entries.append((Path(uri).name, fitted, [tag_ids[l] for l in labels]))
            sent_rows.append((uri, sha, labels))
        results = client.upload(project_id, entries) if entries else []
        if len(results) != len(entries):
            raise ProviderError(f"Custom Vision answered {len(results)} results for a batch of "
                                f"{len(entries)} images",
                                hint="run the import again: images already uploaded are not sent twice")
        retag = []
        for (uri, sha, labels), res in zip(sent_rows, results):
            if res["status"] == "OK":
                record["images"][sha] = res["image_id"]
                out.uploaded += 1
            elif res["status"] == "OKDuplicate":
                # Already there: from a lost answer of ours, or (reused project) the user's own copy,
                # which `down` must leave alone. Its tags may differ, so ours are added.
                (record["kept"] if reused else record["images"])[sha] = res["image_id"]
                retag += [(res["image_id"], tag_ids[l]) for l in labels]
                out.duplicates += 1
            else:
                out.failed[uri] = record["failed"][uri] = res["status"]
                continue
            record["failed"].pop(uri, None)
        if retag:
            client.tag_images(project_id, retag)
        save_record(run, record)
        sent += len(batch)
        progress.advance("uploading", sent, total)
    return out


def _by_bytes(batch: pd.DataFrame, limit: int):
    """Split a batch so the files in each part add up to at most `limit` bytes (one file may exceed it)."""
    start, total = 0, 0
    sizes = [min(b or 0, MAX_TRAINING_BYTES) for b in batch["bytes"]]
    for i, size in enumerate(sizes):
        if i > start and total + size > limit:
            yield batch.iloc[start:i]
            start, total = i, 0
        total += size
    if start < len(sizes):
        yield batch.iloc[start:]


def failure_message(failed: dict[str, str]) -> str:
    why = {"ErrorImageFormat": "not an image format the service reads",
           "ErrorImageSize": "too large", "ErrorImageDimensions": "too many pixels a side",
           "ErrorLimitExceed": "the project's image quota is full", "ErrorSource": "could not be read",
           "ErrorInvalidTag": "unknown tag", "ErrorTagLimitExceed": "too many tags on the image"}
    lines = [f"{uri}: {status} ({why.get(status, 'refused')})" for uri, status in sorted(failed.items())]
    shown = "\n  ".join(lines[:20]) + (f"\n  … and {len(lines) - 20} more" if len(lines) > 20 else "")
    return shown

"""Uploading the train+validation images into a Custom Vision project: batches within the service's
limits, oversized files re-encoded, and a per-run record (sha256 -> image id) with each batch's intent
written before it is sent and its ids after, so an interrupted import re-sends only what is missing
and neither a resume nor `down` loses track of images (or tags) whose answer never came."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import ProviderError
from ...runs import now, write_json
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
# Image metadata the run puts on every image it creates: the service keeps it and lists it, so an image
# whose upload answer was lost is still provably the run's (a user's identical image never carries it).
MARK_KEY = "imgcls_run"


def record_path(run: Run) -> Path:
    return run.file("customvision", "uploads.json")


def load_record(run: Run, project_id: str) -> dict:
    """What this run has put into `project_id` so far: images (ours to delete), kept (images the
    project already had), tags it created, and the files the service refused last time; pending: the
    batch (sha256 -> file name, and when) and the tag names asked for whose answer has not come back;
    found: images found by the run's mark after a lost answer, not yet matched to a file (ours too)."""
    try:
        record = json.loads(record_path(run).read_text())
    except (FileNotFoundError, ValueError):
        record = None
    if not record or record.get("project_id") != project_id:
        record = {"project_id": project_id, "images": {}, "kept": {}, "tags_created": [], "failed": {}}
    for key in ("pending", "found", "tags_pending"):
        record.setdefault(key, [])
    return record


def save_record(run: Run, record: dict) -> None:
    write_json(record_path(run), record)


def mark(run: Run) -> dict[str, str]:
    return {MARK_KEY: run.id}


def settle(client: Client, run: Run, project_id: str, record: dict) -> None:
    """Batches sent by an attempt that stopped before their answer: the project's images that carry the
    run's mark are the run's (kept in `found` until a re-send names their file); no other is taken."""
    if not record["pending"]:
        return
    known = set(record["images"].values())
    marked = {im["id"] for im in client.images(project_id) if im["metadata"].get(MARK_KEY) == run.id}
    record["found"] = sorted(set(record["found"]) | (marked - known))
    record["pending"] = []
    save_record(run, record)


def settle_tags(run: Run, record: dict, tags: dict[str, str]) -> None:
    """Tag names asked for by an attempt that stopped before the answer: a tag of that name now is the
    run's (the name is recorded only when the project had no such tag). `tags`: name -> id, as listed."""
    if not record["tags_pending"]:
        return
    by_name = {name.lower(): tid for name, tid in tags.items()}
    for name in record["tags_pending"]:
        tid = by_name.get(name.lower())
        if tid is not None and tid not in record["tags_created"]:
            record["tags_created"].append(tid)
    record["tags_pending"] = []
    save_record(run, record)


def image_ids(record: dict) -> list[str]:
    """Every image the run made in the project: matched to a file or found by its mark."""
    return list(dict.fromkeys([*record["images"].values(), *record["found"]]))


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
    settle(client, run, project_id, record)
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
        if entries:
            # Intent first: if the answer is lost, resume and `down` know a batch went out and look for it.
            record["pending"] = [{"asked": now(),
                                  "images": {sha: Path(uri).name for uri, sha, _ in sent_rows}}]
            save_record(run, record)
        results = client.upload(project_id, entries, mark(run)) if entries else []
        if len(results) != len(entries):
            raise ProviderError(f"Custom Vision answered {len(results)} results for a batch of "
                                f"{len(entries)} images",
                                hint="run the import again: images already uploaded are not sent twice")
        retag = []
        mine = _marked(client, run, project_id, record, reused,
                       [r["image_id"] for r in results if r["status"] == "OKDuplicate"])
        for (uri, sha, labels), res in zip(sent_rows, results):
            if res["status"] == "OK":
                record["images"][sha] = res["image_id"]
                out.uploaded += 1
            elif res["status"] == "OKDuplicate":
                # Already there: from a lost answer of ours (it carries the run's mark), or (reused
                # project) the user's own copy, which `down` must leave alone. Its tags may differ, so
                # ours are added.
                (record["images"] if res["image_id"] in mine else record["kept"])[sha] = res["image_id"]
                retag += [(res["image_id"], tag_ids[l]) for l in labels]
                out.duplicates += 1
            else:
                out.failed[uri] = record["failed"][uri] = res["status"]
                continue
            record["failed"].pop(uri, None)
        matched = set(record["images"].values())
        record["found"] = [i for i in record["found"] if i not in matched]
        record["pending"] = []
        save_record(run, record)
        if retag:
            client.tag_images(project_id, retag)
        sent += len(batch)
        progress.advance("uploading", sent, total)
    return out


def _marked(client: Client, run: Run, project_id: str, record: dict, reused: bool, ids: list[str]) -> set[str]:
    """Of the images the service answered as duplicates, those the run made: in a project it created,
    all; in a reused one, those carrying the run's mark (a lost answer, or a retried batch)."""
    if not reused:
        return set(ids)
    found = set(record["found"])
    ask = [i for i in ids if i not in found]
    return {i for i in ids if i in found} | {
        im["id"] for im in (client.images_by_ids(project_id, ask) if ask else [])
        if im["metadata"].get(MARK_KEY) == run.id}


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

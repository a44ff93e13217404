"""The neutral dataset: one pandas row per image (uri, labels, split, sha256, width, height, bytes), and
for an image fetched from a source by URI, `source_uri`: where it came from (uri is then the local copy).

Every importer produces it, every exporter and provider consumes it; on disk it is JSON Lines.
"""
from __future__ import annotations

import hashlib
import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from ..errors import DataError
from ..runs import atomic_write

COLUMNS = ["uri", "labels", "split", "sha256", "width", "height", "bytes", "format"]
# Written only when set, so a manifest of local files reads (and is written) as it always was.
OPTIONAL = ["source_uri"]
SPLITS = ("train", "validation", "test")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ico"}


def probe(uri: str) -> dict:
    """Hash and measure one local image. Unreadable ones get width/height None (validation reports them)."""
    info = {"sha256": None, "width": None, "height": None, "bytes": None, "format": None}
    if "://" in uri:
        return info  # remote (gs://, https://): referenced, never read here
    try:
        data = Path(uri).read_bytes()
    except OSError:
        return info
    info["bytes"] = len(data)
    info["sha256"] = hashlib.sha256(data).hexdigest()
    try:
        from PIL import Image
        with Image.open(io.BytesIO(data)) as im:
            info["width"], info["height"] = im.size
            info["format"] = (im.format or "").lower() or None
    except Exception:
        pass
    return info


def build(rows: list[dict], workers: int = 8) -> pd.DataFrame:
    """Rows of {uri, labels, split?} -> a manifest with hashes and sizes filled in."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        probes = list(pool.map(probe, [r["uri"] for r in rows]))
    records = []
    for row, info in zip(rows, probes):
        labels = sorted({str(l).strip() for l in row.get("labels", []) if str(l).strip()})
        records.append({"uri": row["uri"], "labels": labels, "split": row.get("split"), **info,
                        "source_uri": row.get("source_uri")})
    return frame(records)


def frame(records: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame.from_records(records, columns=COLUMNS + OPTIONAL)
    df["labels"] = df["labels"].map(lambda v: list(v) if isinstance(v, (list, tuple)) else [])
    # Missing values are None, not NaN: NaN is truthy and not JSON.
    for col in ("split", "sha256", "width", "height", "bytes", "format", *OPTIONAL):
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    for col in ("width", "height", "bytes"):
        df[col] = df[col].map(lambda v: None if v is None else int(v))
    return df


def labels_of(df: pd.DataFrame) -> list[str]:
    return sorted({l for labels in df["labels"] for l in labels})


def write(df: pd.DataFrame, path: Path) -> None:
    def record(row) -> dict:
        rec = {c: _plain(row[c]) for c in COLUMNS}
        rec.update({c: _plain(row[c]) for c in OPTIONAL if c in row and _plain(row[c]) is not None})
        return rec
    lines = (json.dumps(record(row)) for _, row in df.iterrows())
    atomic_write(path, "\n".join(lines) + ("\n" if len(df) else ""))


def iter_jsonl(path: Path):
    """(line number, object) for each non-blank line; a bad line is a DataError naming file:line."""
    try:
        fh = open(path, encoding="utf-8")  # noqa: SIM115 - closed by the with below; only opening is caught
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}")
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{n}: not valid JSON ({exc.msg})", hint="each line must be one JSON object")
            if not isinstance(rec, dict):
                raise DataError(f"{path}:{n}: expected a JSON object")
            yield n, rec


def read(path: Path) -> pd.DataFrame:
    records = []
    for n, rec in iter_jsonl(path):
        if "uri" not in rec:
            raise DataError(f"{path}:{n}: a manifest row needs at least a 'uri'")
        records.append(rec)
    return frame(records)


def _plain(value):
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def summary(df: pd.DataFrame) -> dict:
    counts = {}
    for labels, split in zip(df["labels"], df["split"]):
        for label in labels:
            counts.setdefault(label, {s: 0 for s in SPLITS})
            counts[label][split or "train"] = counts[label].get(split or "train", 0) + 1
    return {"images": int(len(df)), "labels": len(counts),
            "splits": {s: int((df["split"] == s).sum()) for s in SPLITS}, "per_label": counts,
            "skipped_hidden": int(df.attrs.get("skipped_hidden", 0))}

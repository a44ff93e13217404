"""Readers that turn a user's dataset (folder tree, Vertex CSV/JSONL, Azure ML JSONL, our manifest) into rows.

Rows are {uri, labels, split}; manifest.build() hashes and measures them. The frame's `attrs` carry what
validation reports but the manifest does not keep: `skipped_hidden` (images under hidden names, left out
like hidden files) and `origins` (the import file's file:line of each image, to name the row).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd

from ..errors import DataError
from . import formats, manifest
from .formats import ImportFormat

ML_USE = {"training": "train", "train": "train", "validation": "validation", "val": "validation",
          "test": "test", "unassigned": None}
SPLIT_DIRS = {"train": "train", "training": "train", "validation": "validation", "val": "validation",
              "valid": "validation", "test": "test"}


def detect_format(source: Path) -> str:
    """The registered format that claims `source`: by being a folder, by suffix, or by a JSON Lines
    file's first object's keys."""
    known = formats.all_formats()
    if source.is_dir():
        return next(f.name for f in known if f.folder)
    name = source.name.lower()
    by_suffix = [f for f in known if not f.keys and name.endswith(f.suffixes or ("\0",))]
    if by_suffix:
        return by_suffix[0].name
    if name.endswith((".jsonl", ".json")):
        with open(source, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    try:
                        first = json.loads(line)
                    except json.JSONDecodeError:
                        raise DataError(f"{source}:1: not JSON Lines", hint="each line must be one JSON object")
                    if not isinstance(first, dict):
                        raise DataError(f"{source}:1: expected one JSON object per line, not a "
                                        f"{type(first).__name__}", hint="each line must be one JSON object")
                    found = next((f for f in known if f.keys and all(k in first for k in f.keys)), None)
                    if found:
                        return found.name
                    break
        jsonl = ", ".join(f.name for f in known if f.keys)
        raise DataError(f"cannot tell the format of {source}", hint=f"set dataset.format to one of: {jsonl}")
    raise DataError(f"cannot tell the format of {source}: expected a folder, .csv or .jsonl",
                    hint="set dataset.format in the config")


def load(source: str, fmt: str = "auto", multilabel: bool = False, default_split: str | None = None) -> pd.DataFrame:
    """Read a dataset source into a manifest (splits from the source kept, others None)."""
    if "://" in source and not source.startswith("file://"):
        raise DataError(f"dataset.source {source!r} is remote; give a local folder or import file",
                        hint="import files may list gs:// images, but the file itself must be local")
    path = Path(_file_uri_path(source))
    if not path.exists():
        raise DataError(f"dataset source not found: {path}", hint="check dataset.source in the config")
    try:
        fmt = detect_format(path) if fmt == "auto" else fmt
        if path.is_dir() != (fmt == "folder"):
            raise DataError(f"dataset.format is {fmt}, but {path} is {'a folder' if path.is_dir() else 'a file'}",
                            hint="set dataset.format to auto (or folder for a folder)")
        if fmt == "manifest":
            return manifest.read(path)
        rows = formats.get(fmt).read(path)
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    skipped = sum(1 for r in rows if r.get("hidden"))
    rows = [r for r in rows if not r.get("hidden")]
    if default_split:
        for row in rows:
            row["split"] = row.get("split") or default_split
    if not rows:
        raise DataError(f"no images found in {path}",
                        hint="a folder needs <label>/ sub-folders with images (.jpg, .png, …)")
    if multilabel:
        rows = merge_duplicates(rows)
    df = manifest.build(rows)
    df.attrs["skipped_hidden"] = skipped
    df.attrs["origins"] = {r["uri"]: f"{path}:{r['line']}" for r in rows if "line" in r}
    return df


def _not_utf8(path: Path) -> DataError:
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
        at = ""
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        at = f":{line}"
    return DataError(f"{path}{at}: not UTF-8 text", hint="save the import file as UTF-8")


def _file_uri_path(uri: str) -> str:
    """file:///a/b.jpg -> /a/b.jpg; anything else unchanged."""
    return unquote(urlparse(uri).path) if uri.startswith("file://") else uri


def merge_duplicates(rows: list[dict]) -> list[dict]:
    """Multilabel from folders: the same file under several label folders is one image with several labels."""
    by_uri: dict[str, dict] = {}
    for row in rows:
        key = row["uri"] if "://" in row["uri"] else str(Path(row["uri"]).resolve())
        if key in by_uri:
            by_uri[key]["labels"] = sorted(set(by_uri[key]["labels"]) | set(row["labels"]))
        else:
            by_uri[key] = dict(row)
    return list(by_uri.values())


def read_folder(root: Path) -> list[dict]:
    subdirs = [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    if subdirs and all(d.name.lower() in SPLIT_DIRS for d in subdirs):
        return [row for d in subdirs for row in _label_dirs(d, SPLIT_DIRS[d.name.lower()])]
    return _label_dirs(root, None)


def _label_dirs(root: Path, split: str | None) -> list[dict]:
    """Rows of images under root/<label>/. Hidden names (.thumbs/, .x.jpg) are left out at any depth,
    kept as rows marked `hidden` only to be counted. Symlinked folders inside a label are not followed."""
    rows = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):  # a hidden file or label folder: counted, never read
            inside = sorted(entry.rglob("*")) if entry.is_dir() and not entry.is_symlink() else [entry]
            rows += [{"uri": str(f), "labels": [], "split": split, "hidden": True}
                     for f in inside if f.is_file() and _looks_like_image(f)]
            continue
        if entry.is_dir():
            for f in sorted(entry.rglob("*")):
                if f.is_file() and _looks_like_image(f):
                    hidden = any(part.startswith(".") for part in f.relative_to(entry).parts)
                    rows.append({"uri": str(f.resolve()), "labels": [entry.name], "split": split,
                                 **({"hidden": True} if hidden else {})})
        elif _looks_like_image(entry):
            rows.append({"uri": str(entry.resolve()), "labels": [], "split": split})  # unlabelled: validate says so
    return rows


def _looks_like_uri(cell: str) -> bool:
    """An image's URI or path, not a label: a scheme, or a name ending in an image suffix."""
    return "://" in cell or _looks_like_image(Path(cell))


def _looks_like_image(path: Path) -> bool:
    return path.suffix.lower() in manifest.IMAGE_SUFFIXES


def _local(uri: str, base: Path) -> str:
    uri = _file_uri_path(uri)
    if "://" in uri:
        return uri
    p = Path(uri)
    return str(p if p.is_absolute() else (base / p).resolve())


def read_vertex_csv(path: Path) -> list[dict]:
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for n, rec in enumerate(csv.reader(fh), 1):
            cells = [c.strip() for c in rec]
            if not any(cells):
                continue
            split = None
            if cells[0].lower() in ML_USE:
                split, cells = ML_USE[cells[0].lower()], cells[1:]
            elif len(cells) > 2 and _looks_like_uri(cells[1]) and not _looks_like_uri(cells[0]):
                raise DataError(f"{path}:{n}: unknown ML use {cells[0]!r} before the image {cells[1]!r}",
                                hint=f"the first column, when there is one, is one of: {', '.join(ML_USE)} "
                                     f"(rows are [ML_USE,]GCS_URI,LABEL[,LABEL…])")
            if not cells or not cells[0]:
                raise DataError(f"{path}:{n}: no image URI", hint="rows are [ML_USE,]GCS_URI,LABEL[,LABEL…]")
            rows.append({"uri": _local(cells[0], path.parent), "labels": [c for c in cells[1:] if c],
                         "split": split, "line": n})
    return rows


def read_vertex_jsonl(path: Path) -> list[dict]:
    rows = []
    for n, rec in manifest.iter_jsonl(path):
        uri = rec.get("imageGcsUri")
        if not uri:
            raise DataError(f"{path}:{n}: no 'imageGcsUri'", hint="see Vertex's image classification JSONL format")
        annotations = rec.get("classificationAnnotations") or (
            [rec["classificationAnnotation"]] if rec.get("classificationAnnotation") else [])
        labels = [a.get("displayName") for a in annotations if a.get("displayName")]
        ml_use = (rec.get("dataItemResourceLabels") or {}).get("aiplatform.googleapis.com/ml_use")
        rows.append({"uri": _local(uri, path.parent), "labels": labels,
                     "split": ML_USE.get(str(ml_use).lower()) if ml_use else None, "line": n})
    return rows


def read_azureml_jsonl(path: Path) -> list[dict]:
    rows = []
    for n, rec in manifest.iter_jsonl(path):
        uri = rec.get("image_url")
        if not uri:
            raise DataError(f"{path}:{n}: no 'image_url'", hint="see Azure ML's image classification JSONL schema")
        label = rec.get("label")
        labels = label if isinstance(label, list) else ([label] if label not in (None, "") else [])
        rows.append({"uri": _local(uri, path.parent), "labels": [str(l) for l in labels], "split": None,
                     "line": n})
    return rows


# The built-in formats (data/formats.py names them; a package adds its own through "imgcls.formats").
FOLDER = ImportFormat("folder", read_folder, folder=True,
                      description="<label>/ sub-folders of images, optionally under train/ validation/ test/")
MANIFEST = ImportFormat("manifest", manifest.read, keys=("uri", "sha256"), description="an imgcls manifest.jsonl")
VERTEX_CSV = ImportFormat("vertex-csv", read_vertex_csv, suffixes=(".csv",),
                          description="Vertex AI image classification import CSV")
VERTEX_JSONL = ImportFormat("vertex-jsonl", read_vertex_jsonl, keys=("imageGcsUri",),
                            description="Vertex AI image classification import JSON Lines")
AZUREML_JSONL = ImportFormat("azureml-jsonl", read_azureml_jsonl, keys=("image_url",),
                             description="Azure ML image classification JSON Lines (MLTable)")

"""Writers from the neutral manifest to each vendor's import format, and `write` (dataset-export): a
manifest as files in a folder — an import file or MLTables, or a folder tree of image copies.

`uri_of` maps a manifest row to the URI the service will read (e.g. the gs:// copy of a local file).
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import DataError
from ..paths import confined

VERTEX_ML_USE = {"train": "training", "validation": "validation", "test": "test"}
Row = dict


def _rows(df: pd.DataFrame) -> Iterator[Row]:
    yield from df.to_dict("records")


def vertex_csv(df: pd.DataFrame, uri_of: Callable[[Row], str]) -> str:
    """`ML_USE,GCS_URI,LABEL[,LABEL…]` — Vertex's CSV import format for image classification."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for row in _rows(df):
        writer.writerow([VERTEX_ML_USE[row["split"]], uri_of(row), *row["labels"]])
    return buf.getvalue()


def vertex_jsonl(df: pd.DataFrame, uri_of: Callable[[Row], str], multilabel: bool) -> str:
    lines = []
    for row in _rows(df):
        rec: dict = {"imageGcsUri": uri_of(row)}
        if multilabel:
            rec["classificationAnnotations"] = [{"displayName": l} for l in row["labels"]]
        else:
            rec["classificationAnnotation"] = {"displayName": row["labels"][0]}
        rec["dataItemResourceLabels"] = {"aiplatform.googleapis.com/ml_use": VERTEX_ML_USE[row["split"]]}
        lines.append(json.dumps(rec))
    return "\n".join(lines) + "\n"


def azureml_jsonl(df: pd.DataFrame, uri_of: Callable[[Row], str], multilabel: bool) -> str:
    """Azure ML's image classification JSONL: `image_url`, `label` (a list for multilabel), `image_details`."""
    lines = []
    for row in _rows(df):
        rec = {"image_url": uri_of(row), "label": list(row["labels"]) if multilabel else row["labels"][0]}
        if row.get("width"):
            rec["image_details"] = {"format": row.get("format") or "jpeg",
                                    "width": f"{int(row['width'])}px", "height": f"{int(row['height'])}px"}
        lines.append(json.dumps(rec))
    return "\n".join(lines) + "\n"


def mltable(jsonl_name: str) -> str:
    """The MLTable file that makes a JSONL file an Azure ML table with image URLs as stream info."""
    return (
        "paths:\n"
        f"  - file: ./{jsonl_name}\n"
        "transformations:\n"
        "  - read_json_lines:\n"
        "      encoding: utf8\n"
        "      invalid_lines: error\n"
        "      include_path_column: false\n"
        "  - convert_column_types:\n"
        "      - columns: image_url\n"
        "        column_type: stream_info\n"
    )


def batches(df: pd.DataFrame, max_images: int, max_tags: int | None = None) -> Iterator[pd.DataFrame]:
    """Upload batches within a service's per-request limits (Custom Vision: 64 images, 20 tags)."""
    current: list[int] = []
    tags: set[str] = set()
    for idx, labels in zip(df.index, df["labels"]):
        new_tags = tags | set(labels)
        if current and (len(current) >= max_images or (max_tags and len(new_tags) > max_tags)):
            yield df.loc[current]
            current, new_tags = [], set(labels)
        current.append(idx)
        tags = new_tags
    if current:
        yield df.loc[current]


# -- dataset-export: the way out ---------------------------------------------------------------

@dataclass(frozen=True)
class OutFormat:
    name: str
    description: str
    tree: bool = False                 # a folder tree of image copies, not an import file


OUT_FORMATS = {f.name: f for f in (
    OutFormat("vertex-csv", "Vertex AI import CSV (import.csv: ML_USE,URI,LABEL…)"),
    OutFormat("vertex-jsonl", "Vertex AI import JSON Lines (import.jsonl, ML use per image)"),
    OutFormat("azureml-mltable", "Azure ML MLTable + JSON Lines, one folder per split (train/, validation/, test/)"),
    OutFormat("manifest", "imgcls manifest.jsonl (every column, any provider)"),
    OutFormat("folder", "<split>/<label>/ image copies (train/, validation/, test/)", tree=True),
    OutFormat("label-folders", "<label>/ image copies, splits dropped (Custom Vision: one upload per tag)",
              tree=True),
)}
_SUFFIX_OF_FORMAT = {"jpeg": ".jpg", "png": ".png", "bmp": ".bmp", "gif": ".gif", "tiff": ".tiff",
                     "webp": ".webp", "ico": ".ico"}


@dataclass
class Written:
    files: list[Path] = field(default_factory=list)      # import files / MLTables written
    copied: int = 0                                      # image files written under the folder
    skipped_unlabelled: int = 0
    warnings: list[str] = field(default_factory=list)


def write(df: pd.DataFrame, fmt: str, out: Path, multilabel: bool, uri_prefix: str | None = None) -> Written:
    """Write the manifest `df` into the folder `out` in format `fmt` (OUT_FORMATS).

    Cloud formats list each image by its manifest URI, or — with `uri_prefix` (gs://bucket/path,
    azureml://datastores/…/paths/…) — by `{uri_prefix}/images/{sha256}{ext}`, the images then copied to
    `out/images/` under those names, so uploading that folder to the prefix makes the file true.
    Tree formats copy every image (hard-linked when the file system allows)."""
    kind = OUT_FORMATS[fmt]
    out = Path(out)
    done = Written()
    labelled = df[df["labels"].map(len) > 0]
    done.skipped_unlabelled = len(df) - len(labelled)
    if done.skipped_unlabelled:
        done.warnings.append(f"{done.skipped_unlabelled} image(s) without a label left out")
    if labelled.empty:
        raise DataError("nothing to export: no labelled image in the selection", hint="check --split and the dataset")
    out.mkdir(parents=True, exist_ok=True)
    if kind.tree:
        _write_tree(labelled, out, by_split=fmt == "folder", done=done)
        return done
    uri_of = _uri_mapper(labelled, out, uri_prefix, done)
    if fmt == "vertex-csv":
        done.files.append(_put(out / "import.csv", vertex_csv(labelled, uri_of)))
    elif fmt == "vertex-jsonl":
        done.files.append(_put(out / "import.jsonl", vertex_jsonl(labelled, uri_of, multilabel)))
    elif fmt == "azureml-mltable":
        for split in ("train", "validation", "test"):
            part = labelled[labelled["split"] == split]
            if len(part):
                done.files.append(_put(out / split / "images.jsonl", azureml_jsonl(part, uri_of, multilabel)))
                done.files.append(_put(out / split / "MLTable", mltable("images.jsonl")))
    else:
        from . import manifest
        copy = labelled.copy()
        copy["uri"] = [uri_of(r) for r in copy.to_dict("records")]
        manifest.write(copy, out / "manifest.jsonl")
        done.files.append(out / "manifest.jsonl")
    return done


def _put(path: Path, text: str) -> Path:
    from ..runs import atomic_write
    atomic_write(path, text)
    return path


def _image_name(row: Row) -> str:
    """The content-addressed name of an image copy: the same bytes always get the same name."""
    suffix = Path(str(row["uri"])).suffix.lower() or _SUFFIX_OF_FORMAT.get(row.get("format") or "", ".jpg")
    return f"{row['sha256']}{suffix}"


def _uri_mapper(df: pd.DataFrame, out: Path, prefix: str | None, done: Written) -> Callable[[Row], str]:
    local = [u for u in df["uri"] if "://" not in u]
    if prefix is None:
        if local:
            done.warnings.append(f"{len(local)} image(s) are listed by their local path; give --uri-prefix "
                                 "(e.g. gs://bucket/path) to list them where you will upload them")
        return lambda row: row["uri"]
    prefix = prefix.rstrip("/")
    scheme = prefix.split("://", 1)[0] if "://" in prefix else None
    remote = [u for u in df["uri"] if "://" in u]
    foreign = [u for u in remote if scheme is None or not u.startswith(f"{scheme}://")]
    if foreign:
        raise DataError(f"{len(foreign)} image(s) are already remote under another scheme than --uri-prefix "
                        f"{prefix}, e.g. {foreign[0]}", hint="copy them next to the others first, or drop --uri-prefix")
    names = {}
    for row in df.to_dict("records"):
        if "://" in row["uri"]:
            continue                   # already where the service reads it from: listed as it is
        if not row["sha256"]:
            raise DataError(f"cannot read {row['uri']} to copy it", hint="check the file (imgcls validate)")
        names[row["uri"]] = name = _image_name(row)
        done.copied += _copy(Path(row["uri"]), out / "images" / name)
    return lambda row: f"{prefix}/images/{names[row['uri']]}" if row["uri"] in names else row["uri"]


def _write_tree(df: pd.DataFrame, out: Path, by_split: bool, done: Written) -> None:
    """Each image copied into its label's folder; an image of several labels is copied once and linked
    (a relative symbolic link) from its other labels' folders, so reading the tree back as multilabel
    finds one image with all its labels."""
    remote = [u for u in df["uri"] if "://" in u]
    if remote:
        raise DataError(f"a folder tree holds image files; {len(remote)} image(s) are remote, e.g. {remote[0]}",
                        hint="export an import file instead (--format vertex-csv / azureml-mltable)")
    taken: dict[Path, str] = {}                # file written -> the sha256 it holds
    for row in df.to_dict("records"):
        first: Path | None = None
        for label in row["labels"]:
            if "/" in label or "\\" in label or label in (".", ".."):
                raise DataError(f"label {label!r} cannot be a folder name",
                                hint="rename the label, or export an import file instead")
            folder = out / (row["split"] or "train") / label if by_split else out / label
            name = Path(row["uri"]).name
            target = confined(folder, name, "the manifest", DataError)
            if taken.get(target, row["sha256"]) != row["sha256"]:      # two files of one name in a label
                target = confined(folder, f"{(row['sha256'] or '')[:12]}-{name}", "the manifest", DataError)
            if target not in taken:
                taken[target] = row["sha256"]
                done.copied += _copy(Path(row["uri"]), target, link_to=first)
            first = first or target


def _copy(source: Path, target: Path, link_to: Path | None = None) -> int:
    """1 when `target` was written (a copy of `source`, or a link to `link_to`); 0 when it was there."""
    if target.is_symlink() or target.exists():
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    if link_to is not None:
        try:
            target.symlink_to(os.path.relpath(link_to, target.parent))
            return 1
        except OSError:
            pass                       # no symbolic links here: a copy reads back as a separate image
    try:
        shutil.copy2(source, target)
    except OSError as exc:
        raise DataError(f"cannot copy {source}: {exc.strerror}", hint="check the file (imgcls validate)") from None
    return 1

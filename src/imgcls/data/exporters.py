"""Writers from the neutral manifest to each vendor's import format.

`uri_of` maps a manifest row to the URI the service will read (e.g. the gs:// copy of a local file).
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator

import pandas as pd

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

"""The SageMaker Ground Truth manifests Custom Labels builds its datasets from: one JSON line per image,
`source-ref` plus a label attribute with its `-metadata` (class-name for one label, class-map for several)."""
from __future__ import annotations

import json
from collections.abc import Callable

import pandas as pd

from ...errors import DataError

ATTRIBUTE = "imgcls-label"
CREATED = "2026-01-01T00:00:00.000000"     # fixed: the same data gives the same manifest bytes


def line(uri: str, labels: list[str], multilabel: bool, classes: list[str]) -> str:
    if not multilabel:
        if len(labels) != 1:
            raise DataError(f"{uri}: a multiclass image needs exactly one label, it has {len(labels)}",
                            hint="fix its labels, or set task: multilabel")
        label = labels[0]
        meta = {"confidence": 1, "class-name": label, "human-annotated": "yes", "creation-date": CREATED,
                "type": "groundtruth/image-classification", "job-name": "labeling-job/imgcls"}
        return json.dumps({"source-ref": uri, ATTRIBUTE: classes.index(label), f"{ATTRIBUTE}-metadata": meta})
    ids = [classes.index(l) for l in labels]
    meta = {"job-name": "labeling-job/imgcls", "class-map": {str(i): classes[i] for i in ids},
            "human-annotated": "yes", "objects": [{"confidence": 1} for _ in ids], "creation-date": CREATED,
            "type": "groundtruth/image-classification-multilabel"}
    return json.dumps({"source-ref": uri, ATTRIBUTE: ids, f"{ATTRIBUTE}-metadata": meta})


def manifests(manifest: pd.DataFrame, uri_of: Callable[[dict], str], multilabel: bool,
              classes: list[str]) -> dict[str, str]:
    """{"TRAIN": text, "TEST": text}: our train+validation rows train, our test rows test (the same test
    split every provider is scored on)."""
    out: dict[str, list[str]] = {"TRAIN": [], "TEST": []}
    for row in manifest.sort_values("uri").to_dict("records"):
        kind = "TEST" if row["split"] == "test" else "TRAIN"
        out[kind].append(line(uri_of(row), list(row["labels"]), multilabel, classes))
    return {k: "".join(l + "\n" for l in v) for k, v in out.items()}

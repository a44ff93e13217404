"""One image a source lists, before it is fetched: where it is, its labels and split, and how to read it.

Every lister (fsspec buckets, Custom Vision, Vertex, Azure ML) returns these; the cache fetches them.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RemoteImage:
    uri: str                  # the original URI (gs://, https://, azureml://..., customvision image id URI)
    labels: tuple[str, ...]   # empty tuple = untagged (reported and skipped)
    split: str | None         # "train"/"validation"/"test" when the source says so, else None
    read: Callable[[], bytes] # fetches the bytes (may be called again on retry)
    sha256: str | None = None # when the source knows it already


# What a lister returns: the images and the source's task type.
TASK_TYPES = ("multiclass", "multilabel")

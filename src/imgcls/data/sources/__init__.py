"""Dataset sources by URI: a scheme (`gs`, `s3`, `customvision`, …) -> a lister, imported only when used.

A lister is `list_fn(ref: str, cfg) -> (list[RemoteImage], task)` with task "multiclass" or "multilabel";
`ref` is the whole URI for `scheme://…` sources (fsspec needs it) and the part after the colon for
`scheme:ref` ones (`customvision:<project>`). `cfg` is the loaded config, or None (credentials then come
from the environment, as the provider reads them).
"""
from __future__ import annotations

import re
from collections.abc import Callable

from ...errors import DataError
from ...plugins import Registry
from .remote import TASK_TYPES, RemoteImage

GROUP = "imgcls.sources"
Lister = Callable[[str, object], "tuple[list[RemoteImage], str]"]

schemes = Registry(GROUP, "dataset source scheme", builtin={
    "gs": "imgcls.data.sources.buckets:list_images",
    "gcs": "imgcls.data.sources.buckets:list_images",
    "s3": "imgcls.data.sources.buckets:list_images",
    "az": "imgcls.data.sources.buckets:list_images",
    "abfs": "imgcls.data.sources.buckets:list_images",
    "abfss": "imgcls.data.sources.buckets:list_images",
    "memory": "imgcls.data.sources.buckets:list_images",
    "customvision": "imgcls.providers.customvision.source:list_images",
    "vertex": "imgcls.providers.vertex.source:list_images",
    "azureml": "imgcls.providers.azureml.source:list_images",
})

# A scheme is 2+ letters, so `C:\data` stays a local path.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):(?!\\)")


def register_scheme(name: str, list_fn: Lister | str) -> None:
    """Add (or replace) the lister of `name:`; `list_fn` may be "module:attr", imported when first used."""
    schemes.register(name, list_fn)


def scheme_of(source: str) -> str | None:
    """The scheme `source` names (`customvision`, `gs`), or None for a local path or file:// URI."""
    m = _SCHEME.match(str(source))
    if not m or m.group(1).lower() == "file":
        return None
    return m.group(1).lower()


def is_remote(source: str) -> bool:
    return scheme_of(source) is not None


def lister(scheme: str) -> Lister:
    """The lister of `scheme`; an unknown one is a UsageError naming the known schemes, a missing extra a
    MissingDependency naming it."""
    return schemes.load(scheme)


def list_images(source: str, cfg=None) -> tuple[list[RemoteImage], str]:
    """Every image `source` lists (tagged or not) and its task type, nothing fetched yet."""
    scheme = scheme_of(source)
    if scheme is None:
        raise DataError(f"{source!r} is not a source URI", hint="give scheme:ref, e.g. gs://bucket/flowers/ "
                                                                "or customvision:<project>")
    ref = source if source[len(scheme) + 1:].startswith("//") else source[len(scheme) + 1:]
    images, task = lister(scheme)(ref, cfg)
    if task not in TASK_TYPES:
        raise DataError(f"{source}: the source's task type {task!r} is not one of {', '.join(TASK_TYPES)}")
    return list(images), task


def resolve(source: str, cfg=None) -> list[RemoteImage]:
    """The images `source` lists (see list_images), without the task type."""
    return list_images(source, cfg)[0]


__all__ = ["GROUP", "TASK_TYPES", "RemoteImage", "is_remote", "list_images", "lister", "register_scheme", "resolve",
           "scheme_of", "schemes"]

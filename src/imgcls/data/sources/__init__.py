"""Dataset sources by URI: a scheme (`gs`, `s3`, `customvision`, …) -> a lister, imported only when used.

A lister is `list_fn(ref: str, cfg) -> (list[RemoteImage], task)` with task "multiclass" or "multilabel";
`ref` is the whole URI for `scheme://…` sources (fsspec needs it) and the part after the colon for
`scheme:ref` ones (`customvision:<project>`). `cfg` is the loaded config, or None (credentials then come
from the environment, as the provider reads them).
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

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


# A listing kept for the next load() of the same source in this process: `dataset-import SOURCE` lists
# once to learn the task before the config exists, and a large project is not listed twice.
_kept: dict[str, tuple[float, list[RemoteImage], str]] = {}
KEEP_S = 600.0


def list_images(source: str, cfg=None, keep: bool = False) -> tuple[list[RemoteImage], str]:
    """Every image `source` lists (tagged or not) and its task type, nothing fetched yet. `keep`: the
    next load() of this source (within KEEP_S seconds) uses this listing instead of asking again."""
    scheme = scheme_of(source)
    if scheme is None:
        raise DataError(f"{source!r} is not a source URI", hint="give scheme:ref, e.g. gs://bucket/flowers/ "
                                                                "or customvision:<project>")
    ref = source if source[len(scheme) + 1:].startswith("//") else source[len(scheme) + 1:]
    list_fn = lister(scheme)
    try:
        images, task = list_fn(ref, cfg)
    except OSError as exc:   # a lister's network or file error that it did not name itself
        raise DataError(f"cannot read {source}: {type(exc).__name__}: {str(exc)[:200]}",
                        hint="check that the source exists and can be reached, then run the command again") from None
    if task not in TASK_TYPES:
        raise DataError(f"{source}: the source's task type {task!r} is not one of {', '.join(TASK_TYPES)}")
    images = list(images)
    if keep:
        _kept[source] = (time.monotonic(), images, task)
    return images, task


def resolve(source: str, cfg=None) -> list[RemoteImage]:
    """The images `source` lists (see list_images), without the task type."""
    return list_images(source, cfg)[0]


def load(source: str, cfg=None, progress=None, workers: int = 8, cache_root: Path | None = None):
    """The source as a manifest of local copies: every tagged image fetched into the content-addressed
    cache (only what is not there yet), `uri` the cached file and `source_uri` where it came from.
    Untagged images are counted, warned about and left out. Returns (manifest frame, task type).
    `cache_root`: default $IMGCLS_CACHE/images, else .imgcls/cache/images in the project."""
    from .. import manifest
    from .cache import ImageCache, default_root
    kept = _kept.pop(source, None)
    images, task = kept[1:] if kept and time.monotonic() - kept[0] < KEEP_S else list_images(source, cfg)
    tagged = [i for i in images if i.labels]
    untagged = len(images) - len(tagged)
    if untagged and progress is not None:
        progress.warn(f"{source}: {untagged} untagged image(s) skipped (tag them at the source to use them)")
    if not tagged:
        raise DataError(f"{source}: no tagged images found ({len(images)} image(s) listed, none with a label)",
                        hint="check the source: a folder tree needs <label>/ sub-folders, a project tagged images")
    cache = ImageCache(cache_root or default_root())
    if progress is not None:
        progress.log(f"{source}: {len(tagged)} tagged image(s); fetching into {cache.root}")
    fetched = cache.fetch(tagged, workers=workers, progress=progress, source=source)
    rows, by_sha, dupes = [], {}, []
    for f in fetched:
        if f.sha256 in by_sha:   # the same bytes listed twice: one image, its labels merged
            row = by_sha[f.sha256]
            row["labels"] = sorted(set(row["labels"]) | set(f.image.labels))
            dupes.append(f.image.uri)
            continue
        row = {"uri": str(f.path), "labels": list(f.image.labels), "split": f.image.split,
               "source_uri": f.image.uri}
        by_sha[f.sha256] = row
        rows.append(row)
    if dupes and progress is not None:
        progress.warn(f"{source}: {len(dupes)} image(s) have the same bytes as another and were kept once: "
                      + ", ".join(dupes[:3]) + (" …" if len(dupes) > 3 else ""))
    df = manifest.build(rows)
    df.attrs["origins"] = {r["uri"]: r["source_uri"] for r in rows}
    df.attrs["source"] = {"source": source, "task": task, "listed": len(images), "untagged": untagged,
                          "downloaded": sum(f.downloaded for f in fetched), "cached": sum(not f.downloaded for f in fetched)}
    return df, task


__all__ = ["GROUP", "TASK_TYPES", "RemoteImage", "is_remote", "list_images", "lister", "load", "register_scheme",
           "resolve", "scheme_of", "schemes"]

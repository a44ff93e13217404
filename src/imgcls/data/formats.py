"""Dataset import formats by name: the data layer's own, and any a package adds through the
"imgcls.formats" entry points (an ImportFormat object), each imported only when used."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..plugins import Registry

GROUP = "imgcls.formats"


@dataclass(frozen=True)
class ImportFormat:
    name: str
    read: Callable[[Path], list[dict]]      # rows {uri, labels, split, line?}; uris relative to the file resolved
    folder: bool = False                    # reads a folder, not a file
    suffixes: tuple[str, ...] = ()          # auto-detection by file name, e.g. (".csv",)
    keys: tuple[str, ...] = ()              # auto-detection of a JSON Lines file: keys its first object has
    description: str = ""


formats = Registry(GROUP, "dataset format", builtin={
    "folder": "imgcls.data.importers:FOLDER",
    "manifest": "imgcls.data.importers:MANIFEST",
    "vertex-csv": "imgcls.data.importers:VERTEX_CSV",
    "vertex-jsonl": "imgcls.data.importers:VERTEX_JSONL",
    "azureml-jsonl": "imgcls.data.importers:AZUREML_JSONL",
})


def names() -> list[str]:
    return formats.names()


def get(name: str) -> ImportFormat:
    return formats.load(name)


def all_formats() -> list[ImportFormat]:
    return [get(n) for n in names()]

"""Provider name -> class, found through the "imgcls.providers" entry points and imported only when used."""
from __future__ import annotations

import difflib
import functools
import importlib
import importlib.util
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from ..errors import MissingDependency, UsageError

if TYPE_CHECKING:
    from .base import Provider

GROUP = "imgcls.providers"
# Which top-level SDK module each provider needs, so a missing extra is named before import fails deep inside.
_EXTRA_MODULES = {"local": ("onnxruntime", "PIL"), "vertex": ("google.cloud.aiplatform", "google.cloud.storage"),
                  "customvision": ("azure.cognitiveservices.vision.customvision",),
                  "azureml": ("azure.ai.ml", "azure.identity", "azure.storage.blob"),
                  "aws": ("boto3",)}
_registered: dict[str, type] = {}


def register(name: str, cls: type) -> None:
    """Add a provider at run time (tests, plug-ins without packaging)."""
    _registered[name] = cls


@functools.lru_cache(maxsize=1)
def _entry_points() -> tuple:
    # Scanning every installed distribution's metadata is the slow part of start-up: do it once.
    return tuple(entry_points(group=GROUP))


def names() -> list[str]:
    found = {ep.name for ep in _entry_points()}
    return sorted(found | set(_registered))


def missing_modules(name: str) -> list[str]:
    missing = []
    for module in _EXTRA_MODULES.get(name, ()):
        try:
            if importlib.util.find_spec(module) is None:
                missing.append(module)
        except ModuleNotFoundError:
            missing.append(module)
    return missing


def check_name(name: str) -> str:
    known = names()
    if name in known:
        return name
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.4)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise UsageError(f"unknown provider '{name}'", hint=f"{hint}known providers: {', '.join(known)}")


def get(name: str) -> type[Provider]:
    check_name(name)
    if name in _registered:
        return _registered[name]
    missing = missing_modules(name)
    if missing:
        raise MissingDependency(name, missing[0])
    try:
        return _load_entry_point(name)
    except ModuleNotFoundError as exc:
        raise MissingDependency(name, exc.name or str(exc)) from None


def describe(config=None) -> list[dict]:
    """Each provider: capabilities, limits, whether its SDK extra is installed, whether credentials are found.

    Provider modules import their SDK only in client.py, so this never pays for an SDK import.
    """
    from ..runs import to_jsonable
    rows = []
    for name in names():
        missing = missing_modules(name)
        row: dict = {"name": name, "installed": not missing}
        if missing:
            row["missing"] = missing
        try:
            cls = _registered.get(name) or _load_entry_point(name)
        except Exception as exc:  # a broken plug-in must not hide the others
            rows.append({**row, "error": f"{type(exc).__name__}: {exc}"})
            continue
        row["capabilities"] = to_jsonable(cls.capabilities)
        row["limits"] = to_jsonable(cls.limits)
        creds = cls.check_credentials(config)
        row["credentials"] = {"found": creds.found, "detail": creds.detail}
        rows.append(row)
    return rows


def _load_entry_point(name: str):
    (ep,) = [ep for ep in _entry_points() if ep.name == name]
    return ep.load()

"""Provider name -> class, found through the "imgcls.providers" entry points and imported only when used.

A provider module imports its SDK only in its client.py, so loading the class (its capabilities, limits,
settings model and the SDK modules it `requires`) is cheap; `get` checks those modules before handing it out.
"""
from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from ..errors import MissingDependency
from ..plugins import Registry

if TYPE_CHECKING:
    from .base import Provider

GROUP = "imgcls.providers"
providers = Registry(GROUP, "provider")


def register(name: str, cls: type) -> None:
    """Add a provider at run time (tests, plug-ins without packaging)."""
    providers.register(name, cls)


def names() -> list[str]:
    return providers.names()


def check_name(name: str) -> str:
    return providers.check(name)


def provider_class(name: str) -> type[Provider]:
    """The class, without checking its SDK is installed (settings, capabilities, credentials status)."""
    return providers.load(name)


def missing_modules(name: str, cls: type | None = None) -> list[str]:
    """The SDK modules the provider declares in `requires` that cannot be found."""
    cls = cls or provider_class(name)
    missing = []
    for module in getattr(cls, "requires", ()):
        try:
            if importlib.util.find_spec(module) is None:
                missing.append(module)
        except ModuleNotFoundError:
            missing.append(module)
    return missing


def get(name: str) -> type[Provider]:
    cls = provider_class(name)
    missing = missing_modules(name, cls)
    if missing:
        raise MissingDependency(name, missing[0])
    return cls


def settings_model(name: str):
    """The pydantic model of the provider's config section (named after the provider), or None."""
    return getattr(provider_class(name), "settings_model", None)


def describe(config=None) -> list[dict]:
    """Each provider: capabilities, limits, whether its SDK extra is installed, whether credentials are found.

    Provider modules import their SDK only in client.py, so this never pays for an SDK import.
    """
    from ..runs import to_jsonable
    rows = []
    for name in names():
        row: dict = {"name": name}
        try:
            cls = provider_class(name)
            missing = missing_modules(name, cls)
        except Exception as exc:  # a broken plug-in must not hide the others
            rows.append({**row, "installed": False, "error": f"{type(exc).__name__}: {exc}"})
            continue
        row["installed"] = not missing
        if missing:
            row["missing"] = missing
        row["capabilities"] = to_jsonable(cls.capabilities)
        row["limits"] = to_jsonable(cls.limits)
        creds = cls.check_credentials(config)
        row["credentials"] = {"found": creds.found, "detail": creds.detail}
        rows.append(row)
    return rows

"""One registry pattern for everything pluggable: a name -> an implementation found through an entry point
group (or registered at run time) and imported only when first used (fsspec's `known_implementations`)."""
from __future__ import annotations

import difflib
import functools
from importlib.metadata import entry_points
from typing import Any

from .errors import MissingDependency, UsageError


@functools.lru_cache(maxsize=1)
def _all_entry_points():
    # Scanning every installed distribution's metadata is the slow part of start-up: do it once for all groups.
    return entry_points()


def refresh() -> None:
    """Forget the scanned entry points (a distribution was added to sys.path after start-up)."""
    _all_entry_points.cache_clear()


class Registry:
    """Names of one kind of plug-in (providers, import formats, …), each loaded lazily by name."""

    def __init__(self, group: str, kind: str, builtin: dict[str, str] | None = None):
        """`builtin`: name -> "module:attr" known without any entry point (fsspec's known_implementations)."""
        self.group = group
        self.kind = kind
        self._registered: dict[str, Any] = dict(builtin or {})
        self._loaded: dict[str, Any] = {}

    def register(self, name: str, obj: Any) -> None:
        """Add (or replace) an implementation at run time: the object itself, or "module:attr" to import
        when used (tests, plug-ins without packaging)."""
        self._registered[name] = obj
        self._loaded.pop(name, None)

    def unregister(self, name: str) -> None:
        self._registered.pop(name, None)
        self._loaded.pop(name, None)

    def _entry_points(self) -> dict:
        return {ep.name: ep for ep in _all_entry_points().select(group=self.group)}

    def names(self) -> list[str]:
        return sorted(set(self._entry_points()) | set(self._registered))

    def check(self, name: str) -> str:
        """The name, or a UsageError naming the closest known one."""
        known = self.names()
        if name in known:
            return name
        close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.4)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UsageError(f"unknown {self.kind} '{name}'", hint=f"{hint}known {self.kind}s: {', '.join(known)}")

    def load(self, name: str) -> Any:
        """The implementation; a module it needs that is missing is a MissingDependency naming the extra."""
        if name in self._loaded:
            return self._loaded[name]
        self.check(name)
        target = self._registered.get(name)
        try:
            if target is None:
                obj = self._entry_points()[name].load()
            elif isinstance(target, str):
                import importlib
                module, _, attr = target.partition(":")
                obj = importlib.import_module(module)
                for part in filter(None, attr.split(".")):
                    obj = getattr(obj, part)
            else:
                obj = target
        except ModuleNotFoundError as exc:
            raise MissingDependency(name, exc.name or str(exc)) from None
        self._loaded[name] = obj
        return obj

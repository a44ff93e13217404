"""`--set key.path=value`: each one parsed and checked against the config models before any file is read.

A mistake there is the command line's (exit 2), named with the key, the value and the closest valid key.
"""
from __future__ import annotations

import typing
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from . import safeyaml
from .errors import UsageError

EXAMPLE = "e.g. --set train.preset=best or --set evaluate.gates.accuracy=0.9"


def check_overrides(items) -> list[tuple[tuple[str, ...], Any]]:
    return [check_override(item) for item in items]


def check_override(item: str) -> tuple[tuple[str, ...], Any]:
    """(key path, value) of one `key.path=value`, or a UsageError naming what is wrong."""
    from .config import _closest, composed, sections_of
    key, sep, raw = item.partition("=")
    key = key.strip()
    path = tuple(key.split("."))
    if not sep or not key or not all(path):
        raise UsageError(f"--set {item!r} is not key.path=value", hint=EXAMPLE)
    try:
        value = safeyaml.load_value(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # not YAML: the text itself, as a shell user means it
    model: type[BaseModel] = composed(sections_of({path[0]: None}))  # a provider's section: its model
    for depth, name in enumerate(path):
        field = model.model_fields.get(name)
        here = path[:depth + 1]
        if field is None or name == "base_dir":
            close = _closest(here)
            raise UsageError(f"--set {key}: unknown key '{'.'.join(here)}'"
                             + (f" (did you mean '{close}'?)" if close else ""),
                             hint="see `imgcls config schema` for every key")
        ann = field.annotation
        if depth == len(path) - 1 or typing.get_origin(ann) is dict:
            break
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            raise UsageError(f"--set {key}: '{'.'.join(here)}' is a value, not a section",
                             hint=f"--set {'.'.join(here)}=VALUE")
        model = ann
    _check_value(model, path[depth:], value, item)
    if path == ("provider",):
        from .providers import registry
        registry.check_name(str(value))
    if path[:2] == ("evaluate", "gates") and len(path) == 3:
        from .metrics.gates import gate_problem
        problem = gate_problem(path[2], value) if isinstance(value, (int, float)) else None
        if problem:
            raise UsageError(f"--set {item}: {problem}", hint=EXAMPLE)
    return path, value


def _check_value(model: type[BaseModel], rest: tuple[str, ...], value: Any, item: str) -> None:
    """Validate just this key: the model built from it alone, keeping only the errors under it."""
    doc: Any = value
    for part in reversed(rest[1:]):
        doc = {part: doc}
    try:
        model.model_validate({rest[0]: doc})
    except ValidationError as exc:
        for err in exc.errors():
            if err["loc"][:1] == (rest[0],) and err["type"] != "missing":
                got = err.get("input")
                got_text = f" (got {got!r})" if not isinstance(got, (dict, list)) else ""
                raise UsageError(f"--set {item}: {err['msg']}{got_text}",
                                 hint="see `imgcls config schema` for the key's type") from None


def apply_override(data: dict, item: str) -> None:
    path, value = check_override(item)
    target = data
    for part in path[:-1]:
        nxt = target.get(part)
        if nxt is None:
            nxt = target[part] = {}
        if not isinstance(nxt, dict):
            raise UsageError(f"--set {item}: '{part}' is not a section in the config file")
        target = nxt
    target[path[-1]] = value

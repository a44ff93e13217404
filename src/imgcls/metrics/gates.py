"""Quality gates: `accuracy>=0.9`, `recall@roses>=0.8` — parsed, looked up in a metrics dict, checked."""
from __future__ import annotations

import difflib
import math
import re

from ..errors import ConfigError, UsageError

_GATE = re.compile(r"^\s*([A-Za-z_][\w@.\- ]*?)\s*(>=|<=|>|<)\s*([0-9.eE+-]+)\s*$")
_LOWER_IS_BETTER = {"log_loss"}
_PER_LABEL = ("precision", "recall", "f1", "auprc")
# Every name metric_value answers; micro is the default average.
NAMES = ("accuracy", "log_loss", *_PER_LABEL, *(f"micro_{m}" for m in _PER_LABEL),
         *(f"macro_{m}" for m in ("precision", "recall", "f1")))
_HINT = "write METRIC>=VALUE, e.g. accuracy>=0.9 or recall@roses>=0.8"


def gate_problem(name: str, bound) -> str | None:
    """Why `name` (with `bound`) cannot be a gate, or None; known without any metrics or labels."""
    metric, at, label = name.partition("@")
    if at:
        if metric not in _PER_LABEL:
            close = difflib.get_close_matches(metric, _PER_LABEL, n=1)
            return (f"{name!r}: per-label gates are {', '.join(m + '@LABEL' for m in _PER_LABEL)}"
                    + (f" (did you mean '{close[0]}@{label}'?)" if close else ""))
        if not label.strip():
            return f"{name!r} names no label (write e.g. {metric}@roses)"
    elif name not in NAMES:
        close = difflib.get_close_matches(name, NAMES, n=1)
        return (f"unknown gate metric {name!r}" + (f" (did you mean '{close[0]}'?)" if close else "")
                + f"; known: {', '.join(NAMES)}, or METRIC@LABEL")
    try:
        value = float(bound)
    except (TypeError, ValueError):
        return f"{name!r}: the bound {bound!r} is not a number"
    if not math.isfinite(value):
        return f"{name!r}: the bound {bound!r} is not a finite number"
    if metric == "log_loss":
        if value < 0:
            return f"{name!r}: log_loss is never below 0 (got {bound!r})"
    elif not 0 <= value <= 1:
        return f"{name!r}: {metric} is between 0 and 1 (got {bound!r})"
    return None


def parse_gates(items: list[str]) -> dict[str, tuple[str, float]]:
    """`METRIC>=VALUE` strings -> {metric: (op, bound)}; a UsageError names the first bad one."""
    out = {}
    for item in items:
        m = _GATE.match(item)
        if not m:
            raise UsageError(f"cannot read gate {item!r}", hint=_HINT)
        try:
            bound = float(m.group(3))
        except ValueError:
            raise UsageError(f"cannot read gate {item!r}: {m.group(3)!r} is not a number", hint=_HINT) from None
        problem = gate_problem(m.group(1), bound)
        if problem:
            raise UsageError(f"gate {item!r}: {problem}", hint=_HINT)
        out[m.group(1)] = (m.group(2), bound)
    return out


def metric_value(metrics: dict, name: str) -> float | None:
    """accuracy, log_loss, precision/recall/f1/auprc (micro), macro_f1…, and `recall@LABEL` per label."""
    if "@" in name:
        metric, label = name.split("@", 1)
        per = metrics.get("per_label", {})
        if label not in per:
            raise ConfigError(f"gate {name!r}: no label {label!r}", hint=f"labels: {', '.join(per)}")
        return per[label].get(metric)
    if name in ("accuracy", "log_loss"):
        return metrics.get(name)
    avg, _, metric = name.rpartition("_")
    if metric in ("precision", "recall", "f1", "auprc"):
        return metrics.get(avg or "micro", {}).get(metric)
    raise ConfigError(f"unknown gate metric {name!r}",
                      hint="use accuracy, log_loss, precision, recall, f1, auprc, macro_f1, recall@LABEL …")


def check_gates(metrics: dict, gates: dict) -> list[dict]:
    results = []
    for name, spec in gates.items():
        op, bound = spec if isinstance(spec, tuple) else ("<=" if name in _LOWER_IS_BETTER else ">=", float(spec))
        value = metric_value(metrics, name)
        passed = value is not None and {">=": value >= bound, "<=": value <= bound,
                                        ">": value > bound, "<": value < bound}[op]
        results.append({"metric": name, "value": value, "op": op, "bound": bound, "passed": bool(passed)})
    return results

"""Quality gates: `accuracy>=0.9`, `recall@roses>=0.8` — parsed, looked up in a metrics dict, checked."""
from __future__ import annotations

import re

from ..errors import ConfigError, UsageError

_GATE = re.compile(r"^\s*([A-Za-z_][\w@.\- ]*?)\s*(>=|<=|>|<)\s*([0-9.eE+-]+)\s*$")
_LOWER_IS_BETTER = {"log_loss"}


def parse_gates(items: list[str]) -> dict[str, tuple[str, float]]:
    out = {}
    for item in items:
        m = _GATE.match(item)
        if not m:
            raise UsageError(f"cannot read gate {item!r}", hint="write it as METRIC>=VALUE, e.g. accuracy>=0.9 "
                                                                "or recall@roses>=0.8")
        out[m.group(1)] = (m.group(2), float(m.group(3)))
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

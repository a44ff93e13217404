"""Comparing runs evaluated on the same ordered test images: paired bootstrap, McNemar, deltas.

Pure functions, numpy and math only; every run is compared with the first one (the baseline).
"""
from __future__ import annotations

import math

import numpy as np

from imgcls.errors import DataError

# Below this many discordant pairs the chi-square approximation is poor; use the exact test.
_EXACT_BELOW = 25
# Bootstrap resamples drawn at once: bounds memory to chunk x n indices for large test splits.
_BOOT_CHUNK = 256


def _paired(correct_a, correct_b) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(correct_a, dtype=bool).ravel()
    b = np.asarray(correct_b, dtype=bool).ravel()
    if a.shape != b.shape:
        raise DataError(f"paired comparison needs the same test images: {a.size} vs {b.size} results",
                        hint="evaluate both runs on the same split")
    if a.size == 0:
        raise DataError("no images to compare")
    return a, b


def bootstrap_ci(values, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean of per-image `values` and its percentile (1 - alpha) bootstrap interval,
    from `n_boot` resamples of the images with replacement. The same seed gives the same interval."""
    if n_boot < 1 or not 0 < alpha < 1:
        raise ValueError("need n_boot >= 1 and 0 < alpha < 1")
    d = np.asarray(values, dtype=float).ravel()
    if d.size == 0:
        raise DataError("no images to resample")
    rng = np.random.default_rng(seed)
    means = [d[rng.integers(0, d.size, (min(_BOOT_CHUNK, n_boot - start), d.size))].mean(axis=1)
             for start in range(0, n_boot, _BOOT_CHUNK)]
    lo, hi = np.quantile(np.concatenate(means), [alpha / 2, 1 - alpha / 2])
    return float(d.mean()), float(lo), float(hi)


def paired_bootstrap_ci(correct_a, correct_b, n_boot: int = 2000, alpha: float = 0.05,
                        seed: int = 0) -> tuple[float, float, float]:
    """(diff, lo, hi): accuracy(a) - accuracy(b) and its percentile (1 - alpha) interval.

    Each resample draws images with replacement and keeps both runs' results for the same image,
    so shared mistakes cancel and the interval is narrower than two independent ones would be.
    The same seed gives the same interval.
    """
    a, b = _paired(correct_a, correct_b)
    return bootstrap_ci(a.astype(float) - b.astype(float), n_boot, alpha, seed)


def _binomial_two_sided(k: int, n: int) -> float:
    """P(X <= k or X >= n - k) for X ~ Binomial(n, 1/2), with k <= n / 2."""
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def _chi2_sf_1df(x: float) -> float:
    # A chi-square with one degree of freedom is Z squared: P(Z^2 > x) = erfc(sqrt(x / 2)).
    return math.erfc(math.sqrt(x / 2))


def mcnemar(correct_a, correct_b) -> dict:
    """McNemar's test on paired per-image correctness: do a and b make different mistakes?

    b01 counts images a got wrong and b got right, b10 the reverse. With b01 + b10 < 25 the
    p-value is the exact two-sided binomial (statistic = min(b01, b10)); otherwise chi-square
    with continuity correction, statistic = max(0, |b01 - b10| - 1)^2 / (b01 + b10).
    """
    a, b = _paired(correct_a, correct_b)
    b01 = int(np.sum(~a & b))
    b10 = int(np.sum(a & ~b))
    n = b01 + b10
    if n < _EXACT_BELOW:
        k = min(b01, b10)
        return {"b01": b01, "b10": b10, "statistic": float(k),
                "p_value": _binomial_two_sided(k, n), "method": "exact"}
    statistic = max(0, abs(b01 - b10) - 1) ** 2 / n
    return {"b01": b01, "b10": b10, "statistic": statistic,
            "p_value": _chi2_sf_1df(statistic), "method": "chi2"}


def _check_runs(runs: list[dict]) -> int:
    if not runs:
        raise DataError("no runs to compare")
    names = [run["name"] for run in runs]
    if len(set(names)) != len(names):
        raise DataError(f"run names must be unique to compare them: {names}")
    n = len(runs[0]["correct"])
    for run in runs:
        if len(run["correct"]) != n or run["metrics"].get("n_images", n) != n:
            raise DataError(f"run {run['name']!r} has {len(run['correct'])} results, "
                            f"baseline {runs[0]['name']!r} has {n}",
                            hint="compare runs evaluated on the same test split")
    return n


def _table_row(run: dict) -> dict:
    m = run["metrics"]
    return {"name": run["name"], "provider": run.get("provider"),
            "accuracy": m.get("accuracy"), "log_loss": m.get("log_loss"),
            "micro_precision": m["micro"].get("precision"), "micro_recall": m["micro"].get("recall"),
            "micro_f1": m["micro"].get("f1"), "micro_auprc": m["micro"].get("auprc"),
            "macro_f1": m["macro"].get("f1"),
            "train_seconds": run.get("train_seconds"), "cost": run.get("cost")}


def _f1_deltas(run: dict, base: dict) -> dict:
    ours, theirs = run["metrics"]["per_label"], base["metrics"]["per_label"]
    labels = list(theirs) + [label for label in ours if label not in theirs]
    deltas = {}
    for label in labels:
        f1 = (ours.get(label) or {}).get("f1")
        f1_base = (theirs.get(label) or {}).get("f1")
        # A label only one run knows has no delta; None keeps the table honest.
        deltas[label] = None if f1 is None or f1_base is None else f1 - f1_base
    return deltas


def compare_metrics(runs: list[dict], n_boot: int = 2000, alpha: float = 0.05,
                    seed: int = 0) -> dict:
    """Side-by-side table, per-label F1 deltas and significance of each run against runs[0].

    Each run is {"name", "provider", "metrics" (an `evaluate_scores` dict), "correct" (per-image
    bools in the same image order for every run), "train_seconds", "cost"}. Accuracy differences
    are run minus baseline; McNemar's b01 counts images the run got wrong and the baseline right.
    """
    n = _check_runs(runs)
    base = runs[0]
    pairwise = []
    for run in runs[1:]:
        diff, lo, hi = paired_bootstrap_ci(run["correct"], base["correct"], n_boot, alpha, seed)
        pairwise.append({"name": run["name"], "baseline": base["name"], "accuracy_diff": diff,
                         "ci_low": lo, "ci_high": hi, "confidence": 1 - alpha,
                         "mcnemar": mcnemar(run["correct"], base["correct"])})
    return {
        "baseline": base["name"],
        "n_images": n,
        "table": [_table_row(run) for run in runs],
        "per_label_f1_delta": {run["name"]: _f1_deltas(run, base) for run in runs[1:]},
        "pairwise": pairwise,
    }

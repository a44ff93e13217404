"""Classification metrics as pure numpy functions: indicator matrix and scores in, numbers out.

Shapes everywhere: ``y_true`` is an (n, L) 0/1 indicator matrix and ``y_score`` an (n, L) matrix
of scores in [0, 1], columns in label order. Multiclass means exactly one true label per row;
multilabel means any number. Division by zero gives 0.0 (scikit-learn's ``zero_division=0``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from imgcls.errors import ConfigError, DataError
from imgcls.metrics.compare import bootstrap_ci

# Lower clip for probabilities in log loss; the value scikit-learn used before 1.5.
EPS = 1e-15
# Rounded so the thresholds read 0.15, not 0.15000000000000002, in JSON and in tables.
DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.round(np.linspace(0, 1, 21), 6))
# Softmax outputs can overshoot 1.0 by a rounding error; more than this is a real bug upstream.
_SCORE_TOLERANCE = 1e-6


class PRFS(NamedTuple):
    """Precision, recall, F1 and support: arrays per label, or floats (support: total) when averaged."""

    precision: np.ndarray | float
    recall: np.ndarray | float
    f1: np.ndarray | float
    support: np.ndarray | int


def _as_arrays(y_true, y_other) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    y_other = np.asarray(y_other, dtype=float)
    if y_true.ndim != 2 or y_true.shape != y_other.shape:
        raise DataError(f"y_true {y_true.shape} and scores/predictions {y_other.shape} must be "
                        "(n_images, n_labels) matrices of the same shape")
    if y_true.shape[0] == 0:
        raise DataError("no images to evaluate", hint="check that the test split is not empty")
    return y_true.astype(int), y_other


def _safe_div(num, den) -> np.ndarray:
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def predict_at(y_score, threshold) -> np.ndarray:
    """0/1 predictions, 1 where score >= threshold; `threshold` is a float or one value per label."""
    scores = np.asarray(y_score, dtype=float)
    thr = np.asarray(threshold, dtype=float)
    if thr.ndim > 1 or (thr.ndim == 1 and thr.shape[0] != scores.shape[-1]):
        raise ConfigError(f"threshold must be a number or one value per label "
                          f"({scores.shape[-1]}), got shape {thr.shape}")
    return (scores >= thr).astype(int)


def correct_predictions(y_true, y_score, multilabel: bool, threshold=0.5) -> np.ndarray:
    """Per-image correctness, the unit that `accuracy` averages and `compare.mcnemar` pairs.

    Multiclass: the argmax of the scores is the true class (ties go to the first label).
    Multilabel: the set of labels with score >= threshold equals the true set exactly.
    """
    y_true, y_score = _as_arrays(y_true, y_score)
    if multilabel:
        return np.all(predict_at(y_score, threshold) == y_true, axis=1)
    return np.argmax(y_score, axis=1) == np.argmax(y_true, axis=1)


def accuracy(y_true, y_score, multilabel: bool, threshold=0.5) -> float:
    """Argmax accuracy (multiclass) or exact-match subset accuracy at `threshold` (multilabel)."""
    return float(np.mean(correct_predictions(y_true, y_score, multilabel, threshold)))


def precision_recall_fscore(y_true, y_pred, average: str | None = None) -> PRFS:
    """Precision, recall and F1 of 0/1 predictions, per label (`average=None`), "micro" or "macro".

    Zero division gives 0.0: a label never predicted has precision 0.0, and a label never present
    in `y_true` has recall 0.0 — such a label is flagged by ``support == 0`` (per label) and is
    named in `evaluate_scores`' warnings. "macro" is the unweighted mean over all labels,
    including those; "micro" pools the counts of every (image, label) pair.
    """
    if average not in (None, "micro", "macro"):
        raise ValueError(f"average must be None, 'micro' or 'macro', not {average!r}")
    y_true, y_pred = _as_arrays(y_true, y_pred)
    y_pred = y_pred.astype(int)
    tp = np.sum((y_true == 1) & (y_pred == 1), axis=0)
    fp = np.sum((y_true == 0) & (y_pred == 1), axis=0)
    fn = np.sum((y_true == 1) & (y_pred == 0), axis=0)
    support = tp + fn
    if average == "micro":
        tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, tp + fn)
    # 2tp / (2tp + fp + fn) equals the harmonic mean and stays defined when p + r = 0.
    f1 = _safe_div(2 * tp, 2 * tp + fp + fn)
    if average is None:
        return PRFS(precision, recall, f1, support)
    return PRFS(float(np.mean(precision)), float(np.mean(recall)), float(np.mean(f1)),
                int(support.sum()))


def precision_recall_curve(y_true_col, score_col) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) for one label, as scikit-learn returns them.

    Recall decreases along the arrays, which end with precision 1 and recall 0; `thresholds`
    (one shorter) are the distinct scores, increasing. For a label never present recall is 0
    everywhere (scikit-learn would say 1), matching the zero-division rule of this module.
    """
    y = np.asarray(y_true_col).ravel().astype(int)
    s = np.asarray(score_col, dtype=float).ravel()
    order = np.argsort(s, kind="mergesort")[::-1]
    y, s = y[order], s[order]
    # The last index of each run of equal scores: one point per distinct threshold.
    last = np.r_[np.where(np.diff(s))[0], s.size - 1]
    tps = np.cumsum(y)[last].astype(float)
    fps = 1 + last - tps
    precision = tps / (tps + fps)
    recall = tps / tps[-1] if tps[-1] > 0 else np.zeros_like(tps)
    return (np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], s[last][::-1])


def average_precision(y_true_col, score_col) -> float:
    """Step-wise area under the PR curve, sum over thresholds of (R_k - R_k-1) * P_k, no interpolation.

    Same definition as scikit-learn's `average_precision_score`. NaN when the label is never
    present, since no ranking of negatives alone has a precision.
    """
    if not np.any(np.asarray(y_true_col) == 1):
        return math.nan
    precision, recall, _ = precision_recall_curve(y_true_col, score_col)
    return float(-np.sum(np.diff(recall) * precision[:-1]))


def log_loss(y_true, y_score, multilabel: bool) -> float:
    """Mean cross-entropy in nats; probabilities are clipped below at 1e-15.

    Multiclass: each row of scores is normalised to sum to 1 and the loss is -log of the true
    class's share. Multilabel: binary cross-entropy averaged over every (image, label) pair.
    """
    y_true, y_score = _as_arrays(y_true, y_score)
    if multilabel:
        p = np.clip(y_score, EPS, 1 - EPS)
        return float(-np.mean(y_true * np.log(p) + (1 - y_true) * np.log(1 - p)))
    p_true = _safe_div(np.sum(y_score * y_true, axis=1), y_score.sum(axis=1))
    return float(-np.mean(np.log(np.clip(p_true, EPS, 1.0))))


def confusion_matrix(y_true, y_score, multilabel: bool = False, threshold=0.5) -> np.ndarray:
    """Counts of outcomes, in label order.

    Multiclass: an (L, L) matrix, rows the true class, columns the argmax prediction.
    Multilabel: an (L, 2, 2) array of [[tn, fp], [fn, tp]] per label at `threshold`, the layout of
    scikit-learn's `multilabel_confusion_matrix`.
    """
    y_true, y_score = _as_arrays(y_true, y_score)
    n_labels = y_true.shape[1]
    if not multilabel:
        matrix = np.zeros((n_labels, n_labels), dtype=int)
        np.add.at(matrix, (np.argmax(y_true, axis=1), np.argmax(y_score, axis=1)), 1)
        return matrix
    y_pred = predict_at(y_score, threshold)
    tp = np.sum((y_true == 1) & (y_pred == 1), axis=0)
    fp = np.sum((y_true == 0) & (y_pred == 1), axis=0)
    fn = np.sum((y_true == 1) & (y_pred == 0), axis=0)
    tn = y_true.shape[0] - tp - fp - fn
    return np.stack([tn, fp, fn, tp], axis=1).reshape(n_labels, 2, 2)


def threshold_table(y_true, y_score, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> list[dict]:
    """Micro precision, recall and F1 over (image, label) pairs at each threshold, one row each."""
    y_true, y_score = _as_arrays(y_true, y_score)
    rows = []
    for t in thresholds:
        p, r, f, _ = precision_recall_fscore(y_true, predict_at(y_score, t), average="micro")
        rows.append({"threshold": float(t), "precision": p, "recall": r, "f1": f})
    return rows


def _check_inputs(y_true, y_score, labels: list[str], multilabel: bool):
    y_true, y_score = _as_arrays(y_true, y_score)
    if y_true.shape[1] != len(labels) or len(set(labels)) != len(labels):
        raise DataError(f"{len(labels)} labels given for {y_true.shape[1]} score columns; "
                        "labels must be unique and one per column")
    if not np.isin(y_true, (0, 1)).all():
        raise DataError("y_true must hold only 0 and 1")
    bad = ~np.isfinite(y_score) | (y_score < -_SCORE_TOLERANCE) | (y_score > 1 + _SCORE_TOLERANCE)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(f"score {y_score[row, col]!r} of image {row}, label {labels[col]!r} "
                        "is not in [0, 1]", hint="providers must return probabilities")
    counts = y_true.sum(axis=1)
    if not multilabel and np.any(counts != 1):
        row = int(np.flatnonzero(counts != 1)[0])
        raise DataError(f"image {row} has {int(counts[row])} true labels; a multiclass task "
                        "needs exactly one", hint="set the task to multilabel or fix the manifest")
    return y_true, np.clip(y_score, 0.0, 1.0)


def _label_thresholds(labels: list[str], threshold: float, per_label: dict | None) -> np.ndarray:
    per_label = per_label or {}
    unknown = sorted(set(per_label) - set(labels))
    if unknown:
        raise ConfigError(f"per-label thresholds name unknown labels: {', '.join(unknown)}",
                          hint=f"known labels: {', '.join(labels)}")
    values = np.array([float(per_label.get(label, threshold)) for label in labels])
    if np.any((values < 0) | (values > 1)) or not 0 <= threshold <= 1:
        raise ConfigError("thresholds must lie in [0, 1]")
    return values


def _json_safe(value):
    """Plain Python types only, and None where a number is undefined (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _confusion_section(y_true, y_score, labels, multilabel, thresholds) -> dict:
    matrix = confusion_matrix(y_true, y_score, multilabel, thresholds)
    if not multilabel:
        return {"labels": list(labels), "matrix": matrix}
    counts = {label: dict(zip(("tn", "fp", "fn", "tp"), matrix[j].ravel()))
              for j, label in enumerate(labels)}
    return {"labels": list(labels), "per_label": counts}


def _warnings(labels, support, predicted, thresholds) -> list[str]:
    notes = []
    for label, n_true, n_pred, t in zip(labels, support, predicted, thresholds):
        if n_true == 0:
            notes.append(f"label {label!r} not in the test split "
                         "(recall reported as 0.0, AuPRC as null)")
        if n_pred == 0:
            notes.append(f"label {label!r} never predicted at threshold {t:g} "
                         "(precision reported as 0.0)")
    return notes


def evaluate_scores(y_true, y_score, labels: list[str], multilabel: bool, threshold: float = 0.5,
                    per_label_thresholds: dict | None = None) -> dict:
    """Every metric of a test split in one JSON-serialisable dict (undefined numbers are None).

    Two definitions of "right" coexist, as in Google AutoML:
    - ``accuracy`` is per image: argmax equals the true class (multiclass), or the predicted set
      equals the true set (multilabel).
    - ``micro``/``macro``/``per_label`` precision, recall and F1 are one-vs-rest at the threshold:
      every (image, label) pair with score >= threshold is a positive prediction, even in a
      multiclass task, so an image may predict several labels or none. Micro pools the pairs.
    ``per_label_thresholds`` ({label: threshold}) overrides `threshold` for the labels it names;
    ``threshold_table`` always sweeps one common threshold. AuPRC does not depend on thresholds.
    """
    y_true, y_score = _check_inputs(y_true, y_score, labels, multilabel)
    thresholds = _label_thresholds(labels, threshold, per_label_thresholds)
    y_pred = predict_at(y_score, thresholds)
    per = precision_recall_fscore(y_true, y_pred)
    micro = precision_recall_fscore(y_true, y_pred, average="micro")
    macro = precision_recall_fscore(y_true, y_pred, average="macro")
    predicted = y_pred.sum(axis=0)
    per_label = {
        label: {"precision": per.precision[j], "recall": per.recall[j], "f1": per.f1[j],
                "support": per.support[j], "predicted": predicted[j],
                "auprc": average_precision(y_true[:, j], y_score[:, j]),
                "threshold": thresholds[j]}
        for j, label in enumerate(labels)
    }
    result = {
        "n_images": y_true.shape[0],
        "task": "multilabel" if multilabel else "multiclass",
        "threshold": float(threshold),
        "accuracy": accuracy(y_true, y_score, multilabel, thresholds),
        # a 95% bootstrap interval over the test images: how far the accuracy could move on another split
        "accuracy_ci95": list(bootstrap_ci(correct_predictions(y_true, y_score, multilabel, thresholds))[1:]),
        "log_loss": log_loss(y_true, y_score, multilabel),
        "micro": {"precision": micro.precision, "recall": micro.recall, "f1": micro.f1,
                  "auprc": average_precision(y_true.ravel(), y_score.ravel())},
        "macro": {"precision": macro.precision, "recall": macro.recall, "f1": macro.f1},
        "per_label": per_label,
        "confusion_matrix": _confusion_section(y_true, y_score, labels, multilabel, thresholds),
        "threshold_table": threshold_table(y_true, y_score),
        "warnings": _warnings(labels, per.support, predicted, thresholds),
    }
    return _json_safe(result)

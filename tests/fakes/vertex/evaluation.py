"""Model evaluation figures in the shape of Vertex's classification_metrics_1.0.0.yaml.

Micro-averaged one-vs-rest over (image, label) pairs, as AutoML reports them: a curve of
confidence thresholds, AUC-PR/AUC-ROC, log loss and, for single-label models, the confusion
matrix of top-1 predictions.
"""
from __future__ import annotations

import math

METRICS_SCHEMA = "gs://google-cloud-aiplatform/schema/modelevaluation/classification_metrics_1.0.0.yaml"
THRESHOLDS = [round(0.05 * i, 2) for i in range(21)]


def _ratio(num: float, den: float, empty: float) -> float:
    return num / den if den else empty


def _point(threshold: float, pairs: list[tuple[float, bool]], top1: list[tuple[float, bool]]) -> dict:
    def counts(scored):
        tp = sum(1 for s, y in scored if s >= threshold and y)
        fp = sum(1 for s, y in scored if s >= threshold and not y)
        fn = sum(1 for s, y in scored if s < threshold and y)
        tn = sum(1 for s, y in scored if s < threshold and not y)
        return tp, fp, fn, tn

    tp, fp, fn, tn = counts(pairs)
    precision, recall = _ratio(tp, tp + fp, 1.0), _ratio(tp, tp + fn, 0.0)
    # At1: only each image's best label may count as a positive prediction.
    tp1, fp1, _, _ = counts(top1)
    positives = sum(1 for _, y in pairs if y)
    precision1, recall1 = _ratio(tp1, tp1 + fp1, 1.0), _ratio(tp1, positives, 0.0)
    negatives = len(pairs) - positives
    return {"confidenceThreshold": threshold, "recall": recall, "precision": precision,
            "falsePositiveRate": _ratio(fp, fp + tn, 0.0),
            "f1Score": _ratio(2 * precision * recall, precision + recall, 0.0),
            "recallAt1": recall1, "precisionAt1": precision1,
            "falsePositiveRateAt1": _ratio(fp1, negatives, 0.0),
            "f1ScoreAt1": _ratio(2 * precision1 * recall1, precision1 + recall1, 0.0),
            # int64 fields of the schema: strings in JSON, as the service prints them
            "truePositiveCount": str(tp), "falsePositiveCount": str(fp),
            "falseNegativeCount": str(fn), "trueNegativeCount": str(tn)}


def _areas(pairs: list[tuple[float, bool]]) -> tuple[float, float]:
    """(average precision, ROC AUC) of scored pairs; 0 when a class is absent."""
    ranked = sorted(pairs, key=lambda p: -p[0])
    positives = sum(1 for _, y in ranked if y)
    negatives = len(ranked) - positives
    if not positives:
        return 0.0, 0.0
    tp = fp = 0
    ap = auc = 0.0
    for _score, truth in ranked:
        if truth:
            tp += 1
            ap += tp / (tp + fp) / positives
        else:
            fp += 1
            auc += tp / positives / negatives if negatives else 0.0
    return ap, (auc if negatives else 0.0)


def classification_metrics(labels: list[tuple[str, str]], truths: list[list[str]],
                           scores: list[dict[str, float]], multilabel: bool) -> dict:
    """`labels` is [(spec id, display name)]; `truths[i]` the labels of image i, `scores[i]` its output."""
    names = [name for _, name in labels]
    pairs = [(score.get(n, 0.0), n in truth) for truth, score in zip(truths, scores) for n in names]
    top1 = []
    for truth, score in zip(truths, scores):
        best = max(names, key=lambda n: score.get(n, 0.0)) if names else None
        top1 += [(score.get(n, 0.0) if n == best else -1.0, n in truth) for n in names]
    eps = 1e-15
    if multilabel:
        losses = [-(math.log(max(s, eps)) if y else math.log(max(1 - s, eps))) for s, y in pairs]
    else:
        losses = [-math.log(max(max((score.get(n, 0.0) for n in truth), default=0.0), eps))
                  for truth, score in zip(truths, scores)]
    au_prc, au_roc = _areas(pairs)
    metrics = {"auPrc": au_prc, "auRoc": au_roc,
               "logLoss": sum(losses) / len(losses) if losses else 0.0,
               "confidenceMetrics": [_point(t, pairs, top1) for t in THRESHOLDS]}
    if not multilabel:
        index = {n: i for i, n in enumerate(names)}
        rows = [[0] * len(names) for _ in names]
        for truth, score in zip(truths, scores):
            if truth and names:
                rows[index[truth[0]]][index[max(names, key=lambda n: score.get(n, 0.0))]] += 1
        metrics["confusionMatrix"] = {"annotationSpecs": [{"id": i, "displayName": n} for i, n in labels],
                                      "rows": rows}
    return metrics


def label_slice(name: str, truths: list[list[str]], scores: list[dict[str, float]]) -> dict:
    """One label's metrics as a binary problem, for the evaluation's `annotationSpec` slice."""
    pairs = [(score.get(name, 0.0), name in truth) for truth, score in zip(truths, scores)]
    au_prc, au_roc = _areas(pairs)
    top1 = [(s if s == max(score.values(), default=0.0) else -1.0, y)
            for (s, y), score in zip(pairs, scores)]
    return {"auPrc": au_prc, "auRoc": au_roc,
            "confidenceMetrics": [_point(t, pairs, top1) for t in THRESHOLDS]}

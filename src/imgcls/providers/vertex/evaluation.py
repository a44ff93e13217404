"""What Vertex AI reports about a trained model — its own evaluation, on the test split we gave it as
ML_USE — condensed to the figures a user compares with ours: AUC-PR, log loss, precision/recall at our
threshold, the confusion matrix and each label's AUC-PR."""
from __future__ import annotations

SOURCE = ("Vertex AI model evaluation (the service's figures on the same test images; "
          "`metrics` are ours, from the endpoint's scores)")


def summary(client, model: str, threshold: float) -> dict | None:
    evaluations = client.evaluations(model)
    if not evaluations:
        return None
    ev = evaluations[0]
    metrics = ev.get("metrics") or {}
    out: dict = {"source": SOURCE, "evaluation": ev.get("name"), "threshold": threshold}
    for ours, theirs in (("au_prc", "auPrc"), ("au_roc", "auRoc"), ("log_loss", "logLoss")):
        if theirs in metrics:
            out[ours] = metrics[theirs]
    point = at_threshold(metrics.get("confidenceMetrics") or [], threshold)
    if point:
        out["at_threshold"] = {ours: point[theirs] for ours, theirs in (
            ("threshold", "confidenceThreshold"), ("precision", "precision"), ("recall", "recall"),
            ("f1", "f1Score"), ("precision_at_1", "precisionAt1"), ("recall_at_1", "recallAt1"))
            if theirs in point}
    matrix = metrics.get("confusionMatrix")
    if matrix:
        out["confusion_matrix"] = {"labels": [s.get("displayName") for s in matrix.get("annotationSpecs", [])],
                                   "rows": [[int(x) for x in row] for row in matrix.get("rows", [])]}
    per_label = {}
    for item in client.evaluation_slices(ev["name"]) if ev.get("name") else []:
        label = (item.get("slice") or {}).get("value")
        if label is not None:
            m = item.get("metrics") or {}
            per_label[label] = {"au_prc": m.get("auPrc"), "au_roc": m.get("auRoc")}
    if per_label:
        out["per_label"] = dict(sorted(per_label.items()))
    return out


def at_threshold(points: list[dict], threshold: float) -> dict | None:
    """The curve point whose confidence threshold is closest to ours (Vertex reports a grid of them)."""
    if not points:
        return None
    return min(points, key=lambda p: (abs(float(p.get("confidenceThreshold", 0.0)) - threshold),
                                      float(p.get("confidenceThreshold", 0.0))))

"""The evaluation report: PNG plots in out_dir/plots and one self-contained report.html.

The only module that imports matplotlib, so that importing imgcls (and `imgcls --help`) stays fast.
"""
from __future__ import annotations

import base64
import html
import io
import os
from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on CI machines or cloud workers
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image, ImageOps

from imgcls.errors import DataError
from imgcls.metrics.classification import (
    average_precision,
    confusion_matrix,
    precision_recall_curve,
    predict_at,
    threshold_table,
)

MAX_MATRIX_LABELS = 20   # beyond this a confusion matrix is unreadable; show the most confused
MAX_LEGEND_LABELS = 20   # beyond this per-label PR curves are drawn grey without a legend entry
GALLERY_SIZE = 24
THUMB_PX = 96
DPI = 110

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
 color:#222;padding:0 1rem}
h1{margin-bottom:.2rem} .meta{color:#666;margin-top:0}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:right} th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}
.warn{background:#fff7e0;border-left:4px solid #f0b400;padding:.5rem 1rem}
.plot{max-width:100%;height:auto;border:1px solid #eee;margin:.5rem 0}
.gallery{display:flex;flex-wrap:wrap;gap:.6rem}
.card{width:150px;font-size:.75rem;border:1px solid #ddd;border-radius:4px;padding:.4rem;
 overflow-wrap:anywhere}
.thumb{display:block;margin:0 auto .3rem;max-width:96px;max-height:96px}
.missing{width:96px;height:96px;background:#eee;color:#888;display:flex;align-items:center;
 justify-content:center;text-align:center}
.muted{color:#888}
"""


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)  # figures are global in pyplot; leaking them grows memory per report
    return path


def _most_confused(matrix: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k labels involved in most mistakes (as true or predicted), in label order."""
    off = matrix - np.diag(np.diag(matrix))
    involvement = off.sum(axis=0) + off.sum(axis=1)
    return np.sort(np.argsort(-involvement, kind="stable")[:k])


def plot_confusion_matrix(y_true, y_score, labels: list[str], path: Path) -> Path:
    """Row-normalised confusion matrix of argmax predictions (multiclass)."""
    counts = confusion_matrix(y_true, y_score)
    totals = counts.sum(axis=1, keepdims=True)
    # Normalise by the full row so a cell keeps its meaning when labels are left out.
    normalised = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    keep = np.arange(len(labels))
    title = "Confusion matrix (rows: true, normalised)"
    if len(labels) > MAX_MATRIX_LABELS:
        keep = _most_confused(counts, MAX_MATRIX_LABELS)
        title += f"\n{MAX_MATRIX_LABELS} most confused of {len(labels)} labels"
    shown = normalised[np.ix_(keep, keep)]
    names = [labels[i] for i in keep]
    size = max(4.0, 0.45 * len(keep) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(len(names)), names, rotation=90)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if len(keep) <= 12:
        for (row, col), value in np.ndenumerate(shown):
            ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if value > 0.5 else "black")
    return _save(fig, path)


def plot_pr_curves(y_true, y_score, labels: list[str], path: Path) -> Path:
    """Precision-recall curve per label and micro-averaged over pairs, AuPRC in the legend."""
    y_true, y_score = np.asarray(y_true), np.asarray(y_score, dtype=float)
    many = len(labels) > MAX_LEGEND_LABELS
    fig, ax = plt.subplots(figsize=(7, 5.5))
    for j, label in enumerate(labels):
        if not y_true[:, j].any():
            continue  # a label absent from the split has no curve
        precision, recall, _ = precision_recall_curve(y_true[:, j], y_score[:, j])
        ap = average_precision(y_true[:, j], y_score[:, j])
        style = {"color": "0.7", "lw": 0.7} if many else {"lw": 1.2, "label": f"{label} (AP {ap:.3f})"}
        ax.plot(recall, precision, drawstyle="steps-post", **style)
    if many:
        ax.plot([], [], color="0.7", lw=0.7, label=f"per label ({len(labels)})")
    precision, recall, _ = precision_recall_curve(y_true.ravel(), y_score.ravel())
    ap = average_precision(y_true.ravel(), y_score.ravel())
    ax.plot(recall, precision, drawstyle="steps-post", color="black", lw=2.2,
            label=f"micro-average (AP {ap:.3f})")
    ax.set(xlim=(0, 1.01), ylim=(0, 1.03), xlabel="recall", ylabel="precision",
           title="Precision-recall")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_threshold(y_true, y_score, threshold: float, path: Path) -> Path:
    """Micro precision, recall and F1 over (image, label) pairs against the score threshold."""
    rows = threshold_table(y_true, y_score, np.round(np.linspace(0, 1, 101), 4))
    xs = [row["threshold"] for row in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key in ("precision", "recall", "f1"):
        ax.plot(xs, [row[key] for row in rows], label=key, lw=1.8)
    ax.axvline(threshold, color="black", ls="--", lw=1, label=f"threshold {threshold:g}")
    ax.set(xlim=(0, 1), ylim=(0, 1.03), xlabel="score threshold", ylabel="micro-averaged value",
           title="Precision, recall and F1 against threshold")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _mistakes(y_true, y_score, labels, multilabel, thresholds) -> dict[str, list[dict]]:
    """Gallery entries (image index, label, score, kind), the worst first, one list per gallery."""
    y_pred = predict_at(y_score, thresholds)
    fp = [(int(i), int(j), "fp") for i, j in np.argwhere((y_pred == 1) & (y_true == 0))]
    fn = [(int(i), int(j), "fn") for i, j in np.argwhere((y_pred == 0) & (y_true == 1))]
    galleries = {
        "False positives": sorted(fp, key=lambda e: -y_score[e[0], e[1]]),
        "False negatives": sorted(fn, key=lambda e: y_score[e[0], e[1]]),
    }
    if multilabel:
        # Confidence in the wrong answer: the score of a false positive, 1 - score of a miss.
        def wrongness(e):
            return y_score[e[0], e[1]] if e[2] == "fp" else 1 - y_score[e[0], e[1]]
        confident = sorted(fp + fn, key=wrongness, reverse=True)
    else:
        top = y_score.argmax(axis=1)
        missed = np.flatnonzero(top != y_true.argmax(axis=1))
        confident = [(int(i), int(top[i]), "top")
                     for i in sorted(missed, key=lambda i: -y_score[i, top[i]])]
    galleries["Most confident mistakes"] = confident
    return {name: [{"image": i, "label": labels[j], "score": float(y_score[i, j]), "kind": kind}
                   for i, j, kind in entries] for name, entries in galleries.items()}


def _thumbnail(path: str, cache: dict) -> str | None:
    """A JPEG data URI about THUMB_PX wide, or None when the image cannot be read."""
    if path not in cache:
        try:
            with Image.open(path) as image:
                image.draft("RGB", (THUMB_PX * 2, THUMB_PX * 2))  # fast JPEG decode at low size
                image = ImageOps.exif_transpose(image).convert("RGB")
                image.thumbnail((THUMB_PX, THUMB_PX))
                buffer = io.BytesIO()
                image.save(buffer, "JPEG", quality=80)
            cache[path] = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
        except (OSError, ValueError, Image.DecompressionBombError):
            cache[path] = None  # missing, remote or corrupt: the card shows a placeholder
    return cache[path]


def _png_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return '<span class="muted">–</span>'
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _summary_html(metrics: dict, provider: str, threshold: float) -> str:
    micro, macro = metrics.get("micro", {}), metrics.get("macro", {})
    rows = [("provider", provider), ("task", metrics.get("task")),
            ("images", metrics.get("n_images")), ("threshold", threshold),
            ("accuracy", metrics.get("accuracy")), ("log loss", metrics.get("log_loss")),
            ("micro precision", micro.get("precision")), ("micro recall", micro.get("recall")),
            ("micro F1", micro.get("f1")), ("micro AuPRC", micro.get("auprc")),
            ("macro precision", macro.get("precision")), ("macro recall", macro.get("recall")),
            ("macro F1", macro.get("f1"))]
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in rows)
    note = ("<p class=\"muted\">Accuracy is per image (argmax for multiclass, exact label set "
            "for multilabel). Precision and recall count every (image, label) pair with score "
            "&ge; threshold as a positive prediction, as Google AutoML does.</p>")
    return f"<h2>Summary</h2><table>{body}</table>{note}"


def _per_label_html(metrics: dict, labels: list[str], multilabel: bool) -> str:
    per_label = metrics.get("per_label", {})
    counts = metrics.get("confusion_matrix", {}).get("per_label", {}) if multilabel else {}
    keys = ["support", "predicted", "precision", "recall", "f1", "auprc", "threshold"]
    extra = ["tp", "fp", "fn", "tn"] if multilabel else []
    head = "".join(f"<th>{k}</th>" for k in ["label", *keys, *extra])
    rows = []
    for label in labels:
        row, count = per_label.get(label, {}), counts.get(label, {})
        cells = [_fmt(row.get(k)) for k in keys] + [_fmt(count.get(k)) for k in extra]
        rows.append(f"<tr><td>{html.escape(label)}</td>{''.join(f'<td>{c}</td>' for c in cells)}</tr>")
    return f"<h2>Per label</h2><table><tr>{head}</tr>{''.join(rows)}</table>"


_KIND = {"fp": "wrongly", "fn": "missed", "top": "top score"}


def _card(entry: dict, image_paths, true_sets, predicted_sets, cache) -> str:
    i = entry["image"]
    path = image_paths[i]
    uri = _thumbnail(path, cache)
    thumb = (f'<img class="thumb" src="{uri}" alt="">' if uri
             else '<div class="thumb missing">image unavailable</div>')
    name = html.escape(os.path.basename(path) or path)
    return (f'<div class="card">{thumb}<div title="{html.escape(path)}"><b>{name}</b></div>'
            f"<div>true: {html.escape(', '.join(true_sets[i]) or 'none')}</div>"
            f"<div>predicted: {html.escape(', '.join(predicted_sets[i]) or 'none')}</div>"
            f"<div>{_KIND[entry['kind']]} {html.escape(entry['label'])}: {entry['score']:.3f}</div>"
            "</div>")


def _galleries_html(galleries, image_paths, y_true, y_score, labels, multilabel, thresholds) -> str:
    true_sets = [[labels[j] for j in np.flatnonzero(row)] for row in y_true]
    if multilabel:
        predicted_sets = [[labels[j] for j in np.flatnonzero(row)]
                          for row in predict_at(y_score, thresholds)]
    else:
        predicted_sets = [[labels[j]] for j in y_score.argmax(axis=1)]
    cache: dict = {}
    parts = []
    for name, entries in galleries.items():
        shown = entries[:GALLERY_SIZE]
        cards = "".join(_card(e, image_paths, true_sets, predicted_sets, cache) for e in shown)
        count = f"{len(shown)} of {len(entries)}" if len(entries) > len(shown) else str(len(entries))
        body = f'<div class="gallery">{cards}</div>' if cards else '<p class="muted">none</p>'
        parts.append(f"<h3>{html.escape(name)} ({count})</h3>{body}")
    return "<h2>Mistakes</h2>" + "".join(parts)


def _label_thresholds(metrics: dict, labels: list[str], threshold: float) -> np.ndarray:
    # evaluate_scores records the threshold each label used (per-label overrides included).
    per_label = metrics.get("per_label", {})
    return np.array([(per_label.get(label) or {}).get("threshold", threshold) for label in labels],
                    dtype=float)


def write_report(out_dir: Path, metrics: dict, y_true, y_score, labels: list[str],
                 image_paths: list[str], multilabel: bool, threshold: float, title: str,
                 provider: str) -> Path:
    """Write out_dir/plots/*.png and a self-contained out_dir/report.html; return the HTML's path.

    Plots and thumbnails are embedded as data URIs, so the file can be mailed or opened offline.
    Thresholds per label come from `metrics["per_label"][label]["threshold"]` when present.
    """
    y_true, y_score = np.asarray(y_true, dtype=int), np.asarray(y_score, dtype=float)
    if len(image_paths) != y_true.shape[0]:
        raise DataError(f"{len(image_paths)} image paths for {y_true.shape[0]} scored images")
    out_dir = Path(out_dir)
    plots_dir = out_dir / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    thresholds = _label_thresholds(metrics, labels, threshold)

    plots = []
    if not multilabel:
        plots.append(("Confusion matrix", plot_confusion_matrix(
            y_true, y_score, labels, plots_dir / "confusion_matrix.png")))
    plots.append(("Precision-recall curves",
                  plot_pr_curves(y_true, y_score, labels, plots_dir / "pr_curves.png")))
    plots.append(("Threshold", plot_threshold(y_true, y_score, threshold,
                                              plots_dir / "threshold.png")))
    plots_html = "".join(f'<h3>{html.escape(name)}</h3><img class="plot" alt="{html.escape(name)}" '
                         f'src="{_png_uri(path)}">' for name, path in plots)

    warnings = metrics.get("warnings") or []
    warnings_html = ('<div class="warn"><b>Warnings</b><ul>'
                     + "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
                     + "</ul></div>") if warnings else ""
    galleries = _mistakes(y_true, y_score, labels, multilabel, thresholds)
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    document = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # An empty icon keeps browsers from requesting /favicon.ico (a 404 in the console).
        f'<link rel="icon" href="data:,"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f'<p class="meta">{html.escape(provider)} · {created}</p>'
        f"{warnings_html}{_summary_html(metrics, provider, threshold)}"
        f"<h2>Plots</h2>{plots_html}"
        f"{_per_label_html(metrics, labels, multilabel)}"
        f"{_galleries_html(galleries, image_paths, y_true, y_score, labels, multilabel, thresholds)}"
        "</body></html>\n"
    )
    path = out_dir / "report.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(document, encoding="utf-8")
    os.replace(tmp, path)  # a reader never sees half a report
    return path

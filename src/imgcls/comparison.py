"""Comparing evaluated runs (any providers) on their shared test images, and finding a run's report."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import runs as runs_mod
from .errors import DataError, UsageError, strings
from .runs import Run


def compare(run_ids: list[str], runs_root: str | Path | None = None, force: bool = False) -> dict:
    """Compare evaluated runs (any providers) on their shared test images: table, deltas, CI, McNemar."""
    import json as jsonlib

    run_ids = strings(run_ids, "run_ids")

    from .metrics import classification
    from .metrics import compare as compare_mod

    if len(run_ids) < 2:
        raise UsageError("compare needs two or more runs", hint="imgcls compare RUN_A RUN_B")
    loaded = []
    runs_root = Path(runs_root) if runs_root else runs_mod.project_runs_dir()
    for rid in run_ids:
        run = Run.open(runs_root, rid)
        if any(seen.id == run.id for seen, _, _ in loaded):
            raise UsageError(f"run {run.id} is given twice", hint="compare two or more different runs")
        path = run.file("results", "test_predictions.json")
        if not path.exists():
            raise UsageError(f"run {run.id} has not been evaluated", hint=f"imgcls evaluate --run {run.id}")
        preds = jsonlib.loads(path.read_text())
        loaded.append((run, run.config(), preds))
    keys = [[r["sha256"] for r in p["rows"]] for _, _, p in loaded]
    common = set(keys[0]).intersection(*keys[1:])
    differ = any(set(k) != set(keys[0]) for k in keys[1:])
    if differ and not force:
        raise DataError("the runs were tested on different images "
                        f"({', '.join(str(len(k)) for k in keys)} test images, {len(common)} shared)",
                        hint="compare runs of the same config and data, or pass --force to use the shared images")
    if not common:
        raise DataError("the runs share no test images")
    order = [k for k in keys[0] if k in common]
    entries = []
    for run, cfg, preds in loaded:
        labels = preds["labels"]
        by_key = {r["sha256"]: r for r in preds["rows"]}
        rows = [by_key[k] for k in order]
        y_true = np.array([[1 if l in r["labels"] else 0 for l in labels] for r in rows])
        y_score = np.array([r["scores"] for r in rows], dtype=float)
        metrics = classification.evaluate_scores(y_true, y_score, labels, cfg.multilabel, cfg.predict.threshold,
                                                 cfg.predict.thresholds or None)
        correct = classification.correct_predictions(y_true, y_score, cfg.multilabel, cfg.predict.threshold)
        train_step = run.step("train") or {}
        entries.append({"name": run.id, "provider": run.provider, "metrics": metrics,
                        "correct": [bool(c) for c in correct], "train_seconds": train_step.get("seconds"),
                        "cost": (train_step.get("extra") or {}).get("cost")})
    result = compare_mod.compare_metrics(entries)
    result["runs"] = [run.id for run, *_ in loaded]
    result["forced"] = bool(differ)
    return result


def report_path(run_id: str | None, runs_root: str | Path | None = None) -> Path:
    runs_root = Path(runs_root) if runs_root else runs_mod.project_runs_dir()
    run = Run.open(runs_root, run_id) if run_id else next(
        (r for r in runs_mod.list_runs(Path(runs_root)) if r.file("report", "report.html").exists()), None)
    if run is None or not run.file("report", "report.html").exists():
        raise UsageError("no report yet" + (f" for run {run.id}" if run else ""),
                         hint="`imgcls evaluate` writes one")
    return run.file("report", "report.html")

"""The Python API: everything the CLI does, with the same arguments, returning plain values.

    import imgcls.api as imgcls
    cfg = imgcls.load("configs/flowers.yaml", provider="local")
    result = imgcls.run(cfg)
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from . import runs as runs_mod
from .comparison import compare, report_path
from .config import RunConfig, load_config, resolve_path
from .data import importers, manifest, split
from .data import validate as validate_mod
from .data.inputs import expand_inputs, read_image
from .errors import DataError, ProviderError, QualityGateFailed, UsageError
from .progress import Progress
from .providers import registry
from .providers.base import DatasetRef, Deployment, Evaluation, Prediction, Provider, TrainResult
from .runs import Run, write_json

_QUIET = Progress(enabled=False)


def load(config: str | Path | RunConfig, provider: str | None = None, overrides: list[str] = ()) -> RunConfig:
    """A validated RunConfig from a path (or a RunConfig, with provider/overrides applied)."""
    if isinstance(config, RunConfig):
        if overrides:
            raise UsageError("overrides apply to a config file; change the RunConfig object instead")
        cfg = config.model_copy(update={"provider": provider}) if provider else config
    else:
        cfg = load_config(config, list(overrides), provider)
    registry.check_name(cfg.provider)
    return cfg


def runs_dir(cfg: RunConfig) -> Path:
    return Path(os.path.expanduser(cfg.runs_dir))


def open_run(cfg: RunConfig, run_id: str | None = None, new: bool = False) -> Run:
    """`run_id`, else the latest run of this config name and provider, else a new one."""
    if run_id:
        run = Run.open(runs_dir(cfg), run_id)
        if run.provider != cfg.provider:
            raise UsageError(f"run {run.id} belongs to provider '{run.provider}', not '{cfg.provider}'",
                             hint=f"pass --provider {run.provider}, or start a new run without --run")
        return run
    fingerprint = config_fingerprint(cfg)
    if not new:
        latest = Run.latest(runs_dir(cfg), cfg.name, cfg.provider, fingerprint)
        if latest is not None:
            return latest
    run = Run.create(runs_dir(cfg), cfg.name, cfg.provider, fingerprint)
    resolved = {**cfg.model_dump(mode="json"), "base_dir": cfg.base_dir}
    runs_mod.atomic_write(run.file("config.yaml"), yaml.safe_dump(resolved, sort_keys=False))
    return run


# What makes a different model: a change here starts a new run; evaluate/deploy/predict settings do not.
_MODEL_SECTIONS = ("task", "dataset", "split", "train")


def config_fingerprint(cfg: RunConfig) -> str:
    import hashlib
    import json as jsonlib
    data = cfg.model_dump(mode="json")
    keyed = {k: data[k] for k in (*_MODEL_SECTIONS, cfg.provider) if k in data}
    keyed["base_dir"] = cfg.base_dir  # relative dataset paths mean other files elsewhere
    return hashlib.sha256(jsonlib.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]


def _provider(cfg: RunConfig, run: Run, progress: Progress) -> Provider:
    return registry.get(cfg.provider)(cfg, run, progress)


# -- dataset ---------------------------------------------------------------------------------

def build_manifest(cfg: RunConfig) -> pd.DataFrame:
    """Read the dataset source(s) and assign the deterministic split."""
    ds = cfg.dataset
    df = importers.load(resolve_path(cfg, ds.source), ds.format, cfg.multilabel)
    if ds.test_source:
        test = importers.load(resolve_path(cfg, ds.test_source), ds.format, cfg.multilabel, default_split="test")
        test["split"] = "test"
        df = pd.concat([df, test], ignore_index=True)
    return split.assign(df, cfg.split.validation, cfg.split.test, cfg.split.seed)


def validate(cfg: RunConfig, fix: bool = False, run_id: str | None = None,
             progress: Progress = _QUIET) -> dict:
    """Check the dataset against the provider's limits. Writes nothing unless `fix`."""
    cls = registry.get(cfg.provider)
    df = build_manifest(cfg)
    progress.log(f"checking {len(df)} images against {cfg.provider}'s limits")
    findings = validate_mod.check(df, cls.limits, cfg.provider, cfg.multilabel)
    result = {"provider": cfg.provider, "summary": manifest.summary(df),
              "findings": [f.to_json() for f in findings],
              "errors": len(validate_mod.errors(findings)),
              "warnings": len(findings) - len(validate_mod.errors(findings))}
    if fix:
        cleaned, dropped = _clean(df, cls.limits, cfg)
        run = open_run(cfg, run_id, new=run_id is None)
        manifest.write(cleaned, run.file("manifest.jsonl"))
        run.set_step("validate", {"fixed": True, "dropped": dropped, "images": len(cleaned)})
        result.update(fixed_manifest=str(run.file("manifest.jsonl")), run=run.id, dropped=dropped,
                      summary=manifest.summary(cleaned))
        remaining = validate_mod.errors(validate_mod.check(cleaned, cls.limits, cfg.provider, cfg.multilabel))
        result["errors"] = len(remaining)
        result["findings_after_fix"] = [f.to_json() for f in remaining]
    return result


def _clean(df: pd.DataFrame, limits, cfg: RunConfig) -> tuple[pd.DataFrame, list[str]]:
    """Drop what the findings drop until nothing more goes (dropping can push a label under its minimum)."""
    dropped: list[str] = []
    for _ in range(5):
        findings = validate_mod.check(df, limits, cfg.provider, cfg.multilabel)
        df, gone = validate_mod.clean(df, findings)
        if not gone:
            break
        dropped += gone
    return df, sorted(dropped)


def _checked_manifest(cfg: RunConfig, run: Run, provider: Provider) -> pd.DataFrame:
    path = run.file("manifest.jsonl")
    df = manifest.read(path) if path.exists() else build_manifest(cfg)
    findings = validate_mod.check(df, provider.limits, cfg.provider, cfg.multilabel)
    errs = validate_mod.errors(findings)
    if errs:
        shown = "\n  ".join(f"{f.message}\n    fix: {f.fix}" for f in errs[:20])
        more = f"\n  … and {len(errs) - 20} more" if len(errs) > 20 else ""
        raise DataError(f"the dataset has {len(errs)} problem{'s' if len(errs) > 1 else ''} "
                        f"for {cfg.provider}; nothing was uploaded:\n  {shown}{more}",
                        hint="fix them, or run `imgcls validate --fix` to write a cleaned manifest",
                        findings=[f.to_json() for f in errs])
    for f in findings:
        provider.progress.log(f"warning: {f.message}")
    if not path.exists():
        manifest.write(df, path)
    return df


def import_dataset(cfg: RunConfig, run_id: str | None = None, new: bool | None = None,
                   progress: Progress = _QUIET) -> tuple[Run, DatasetRef]:
    run = open_run(cfg, run_id, new=run_id is None if new is None else new)
    step = run.step("import")
    if step and step.get("complete"):
        return run, DatasetRef(**{k: step[k] for k in ("provider", "id", "images", "labels", "extra")})
    provider = _provider(cfg, run, progress)
    df = _checked_manifest(cfg, run, provider)
    labels = manifest.labels_of(df)
    progress.log(f"run {run.id}: {len(df)} images, {len(labels)} labels "
                 f"({', '.join(f'{s} {n}' for s, n in manifest.summary(df)['splits'].items())})")
    ref = provider.upload(df, labels)
    run.set_step("import", {**runs_mod.to_jsonable(ref), "complete": True})
    return run, ref


def _dataset(cfg: RunConfig, run: Run, progress: Progress) -> DatasetRef:
    _, ref = import_dataset(cfg, run.id, progress=progress)
    return ref


def labels_of_run(run: Run) -> list[str]:
    step = run.step("import")
    if not step:
        raise UsageError(f"run {run.id} has no dataset yet", hint="run `imgcls dataset-import` first")
    return list(step["labels"])


# -- training --------------------------------------------------------------------------------

def train(cfg: RunConfig, run_id: str | None = None, wait: bool = True, timeout: float | None = None,
          progress: Progress = _QUIET) -> tuple[Run, TrainResult]:
    """Train (importing first if needed). A run whose training is under way is picked up, not restarted."""
    run = open_run(cfg, run_id)
    done = run.step("train")
    if done and done.get("status") == "succeeded":
        return run, _train_result(done)
    dataset = _dataset(cfg, run, progress)
    provider = _provider(cfg, run, progress)
    op = run.operation("train")
    if op is None or op.get("state") in ("failed", "cancelled"):
        provider.background = not wait
        op = provider.start_training(dataset)
        run.set_step("train", {"provider": cfg.provider, "status": "running", "operation": op.get("id")})
    else:
        progress.log(f"run {run.id}: picking up training {op['id']}")
    if not wait:
        return run, TrainResult(cfg.provider, None, "running", extra={"operation": op})
    state, details = provider.wait(lambda: provider.poll_training(op), "training", timeout,
                                   resume_hint=f"`imgcls train --run {run.id}` picks it up; "
                                               f"`imgcls status --run {run.id}` shows it")
    run.update_operation("train", op["id"], state=state, finished=runs_mod.now())
    if state != "succeeded":
        reason = details.get("error") or details.get("status") or state
        run.set_step("train", {"provider": cfg.provider, "status": "failed", "error": reason})
        raise ProviderError(f"training failed on {cfg.provider}: {reason}",
                            hint=f"see `imgcls status --run {run.id}`; fix the cause and run `imgcls train` again")
    result = TrainResult(cfg.provider, details.get("model_id"), "succeeded", details.get("seconds"),
                         extra={k: v for k, v in details.items() if k not in ("model_id", "seconds")})
    run.set_step("train", runs_mod.to_jsonable(result))
    write_json(run.file("results", "train.json"), result)
    return run, result


def _train_result(step: dict) -> TrainResult:
    return TrainResult(step["provider"], step.get("model_id"), step["status"], step.get("seconds"),
                       step.get("extra") or {})


def _trained(cfg: RunConfig, run_id: str | None, progress: Progress, timeout: float | None = None):
    run, result = train(cfg, run_id, wait=True, timeout=timeout, progress=progress)
    return run, result, _provider(cfg, run, progress)


# -- evaluation ------------------------------------------------------------------------------

def evaluate(cfg: RunConfig, run_id: str | None = None, gates: list[str] = (), timeout: float | None = None,
             progress: Progress = _QUIET) -> tuple[Run, Evaluation]:
    """Score the shared test split through the provider and compute our metrics locally."""
    from .metrics import classification
    from .metrics import gates as gates_mod

    extra_gates = gates_mod.parse_gates(gates)  # before any work: a typo must not cost an evaluation
    run, model, provider = _trained(cfg, run_id, progress, timeout)
    labels = labels_of_run(run)
    df = manifest.read(run.file("manifest.jsonl"))
    test = df[df["split"] == "test"].reset_index(drop=True)
    if test.empty:
        raise DataError("the test split is empty", hint="set split.test above 0 or give dataset.test_source")
    provider.ensure_scoring(model)
    images = [read_image(u) for u in test["uri"]]
    scores = provider.score_all(images, list(test["uri"]), labels)
    y_true = np.array([[1 if l in row else 0 for l in labels] for row in test["labels"]], dtype=np.int64)
    metrics = classification.evaluate_scores(y_true, scores, labels, cfg.multilabel, cfg.predict.threshold,
                                             cfg.predict.thresholds or None)
    _save_predictions(run, test, labels, scores)
    report = None
    if cfg.evaluate.report:
        from .metrics import report as report_mod
        report = str(report_mod.write_report(run.file("report"), metrics, y_true, scores, labels,
                                             list(test["uri"]), cfg.multilabel, cfg.predict.threshold,
                                             title=f"{cfg.name} on {cfg.provider}", provider=cfg.provider))
    gate_results = gates_mod.check_gates(metrics, {**cfg.evaluate.gates, **extra_gates})
    evaluation = Evaluation(cfg.provider, model.model_id, metrics, provider.service_metrics(model),
                            gate_results, report)
    write_json(run.file("results", "evaluation.json"), evaluation)
    run.set_step("evaluate", {"accuracy": metrics.get("accuracy"), "report": report,
                              "gates_passed": all(g["passed"] for g in gate_results)})
    failed = [g for g in gate_results if not g["passed"]]
    if failed:
        raise QualityGateFailed(
            "quality gate failed: " + "; ".join(f"{g['metric']} = {_fmt(g['value'])}, needs {g['op']} {g['bound']}"
                                                for g in failed),
            hint="improve the model (train.preset: best, more data) or change evaluate.gates",
            gates=gate_results, evaluation=runs_mod.to_jsonable(evaluation))
    return run, evaluation


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _save_predictions(run: Run, test: pd.DataFrame, labels: list[str], scores: np.ndarray) -> None:
    rows = [{"uri": u, "sha256": h, "labels": l, "scores": [round(float(x), 6) for x in srow]}
            for u, h, l, srow in zip(test["uri"], test["sha256"], test["labels"], scores)]
    write_json(run.file("results", "test_predictions.json"), {"labels": labels, "rows": rows})


# -- deploy and predict ---------------------------------------------------------------------

def deploy(cfg: RunConfig, run_id: str | None = None, timeout: float | None = None,
           progress: Progress = _QUIET) -> tuple[Run, Deployment]:
    run, model, provider = _trained(cfg, run_id, progress, timeout)
    deployment = provider.deploy_model(model)
    run.set_step("deploy", runs_mod.to_jsonable(deployment))
    return run, deployment


def export(cfg: RunConfig, run_id: str | None = None, dest: str | Path | None = None,
           progress: Progress = _QUIET) -> tuple[Run, list[Path]]:
    """The trained model in portable formats (the provider's export), into `dest` (default: the
    run's artifacts/export/ folder)."""
    run, model, provider = _trained(cfg, run_id, progress)
    target = Path(dest) if dest else run.file("artifacts", "export")
    paths = provider.export(model, target)
    run.set_step("export", {"provider": cfg.provider, "files": [str(p) for p in paths]})
    return run, paths


def predict(cfg: RunConfig, inputs: list[str], run_id: str | None = None, top_k: int | None = None,
            via: str = "auto", progress: Progress = _QUIET) -> list[Prediction]:
    """Predict images through the run's model: its endpoint if deployed, else (local) the exported model."""
    run, _, provider = _trained(cfg, run_id, progress)
    provider.prefer_endpoint = via == "endpoint" or (via == "auto" and run.step("deploy") is not None)
    if via == "endpoint" and run.step("deploy") is None:
        raise UsageError(f"run {run.id} is not deployed", hint="run `imgcls deploy` first, or drop --endpoint")
    labels = labels_of_run(run)
    paths = expand_inputs(inputs)
    scores = provider.score_all([read_image(p) for p in paths], paths, labels)
    return [to_prediction(p, labels, row, cfg, top_k or cfg.predict.top_k) for p, row in zip(paths, scores)]


def to_prediction(image: str, labels: list[str], row: np.ndarray, cfg: RunConfig, top_k: int) -> Prediction:
    order = np.argsort(-row, kind="stable")
    thresholds = [cfg.predict.thresholds.get(l, cfg.predict.threshold) for l in labels]
    if cfg.multilabel:
        chosen = [labels[i] for i in order if row[i] >= thresholds[i]]
    else:
        best = int(order[0])
        chosen = [labels[best]] if row[best] >= thresholds[best] else []
    top = {labels[i]: round(float(row[i]), 6) for i in order[:top_k]}
    return Prediction(image, chosen, top)


# -- the whole flow, status and teardown ----------------------------------------------------

def run(cfg: RunConfig, run_id: str | None = None, predict_inputs: list[str] = (), timeout: float | None = None,
        progress: Progress = _QUIET) -> dict:
    """import -> train -> evaluate -> deploy -> predict. Gates are checked before deploying."""
    started = time.monotonic()
    run_obj, dataset = import_dataset(cfg, run_id, new=run_id is None, progress=progress)
    _, trained = train(cfg, run_obj.id, timeout=timeout, progress=progress)
    _, evaluation = evaluate(cfg, run_obj.id, timeout=timeout, progress=progress)
    if cfg.provider == "local" and not cfg.deploy.detach:
        cfg = cfg.model_copy(update={"deploy": cfg.deploy.model_copy(update={"detach": True})})
    _, deployment = deploy(cfg, run_obj.id, timeout=timeout, progress=progress)
    test = manifest.read(run_obj.file("manifest.jsonl"))
    inputs = list(predict_inputs) or list(test[test["split"] == "test"]["uri"][:3])
    predictions = predict(cfg, inputs, run_obj.id, via="endpoint", progress=progress)
    return {"run": run_obj.id, "dataset": dataset, "train": trained, "evaluation": evaluation,
            "deployment": deployment, "predictions": predictions, "seconds": round(time.monotonic() - started, 1)}


def status(cfg: RunConfig | None = None, run_id: str | None = None, runs_root: str | None = None,
           progress: Progress = _QUIET) -> dict:
    root = Path(runs_root) if runs_root else (runs_dir(cfg) if cfg else Path(".imgcls/runs"))
    if run_id is None and cfg is None:
        return {"runs": [{"run": r.id, "provider": r.provider, "created": r.ledger["created"],
                          "steps": sorted(r.ledger["steps"]),
                          "active_resources": len(r.resources())} for r in runs_mod.list_runs(root)]}
    run = Run.open(root, run_id) if run_id else _latest_any(cfg)
    if run is None:
        raise UsageError(f"no run of '{cfg.name}' on {cfg.provider} yet", hint="start one with `imgcls run`")
    op = run.operation("train")
    if op and op.get("state") == "running" and cfg is not None:
        provider = _provider(cfg, run, progress)
        state, details = provider.poll_training(op)
        op = {**op, "state": state, **{k: v for k, v in details.items() if k in ("status", "error", "model_id")}}
    return {"run": run.id, "path": str(run.path), "provider": run.provider, "created": run.ledger["created"],
            "steps": run.ledger["steps"], "training": op, "resources": run.ledger["resources"]}


def _latest_any(cfg: RunConfig) -> Run | None:
    """For status and down: the latest run of this exact config, else of this name and provider."""
    root = runs_dir(cfg)
    return (Run.latest(root, cfg.name, cfg.provider, config_fingerprint(cfg))
            or Run.latest(root, cfg.name, cfg.provider))


def down(cfg: RunConfig, run_id: str | None = None, keep: tuple[str, ...] = (),
         progress: Progress = _QUIET) -> dict:
    """Delete every active resource the ledger lists, newest first, and record each deletion."""
    run = Run.open(runs_dir(cfg), run_id) if run_id else _latest_any(cfg)
    if run is None:
        raise UsageError(f"no run of '{cfg.name}' on {cfg.provider} to take down", hint="pass --run ID")
    if run.provider != cfg.provider:
        cfg = cfg.model_copy(update={"provider": run.provider})
    provider = _provider(cfg, run, progress)
    deleted, kept, failed = [], [], []
    for res in reversed(run.resources()):
        if res["kind"] in keep:
            kept.append(res)
            continue
        try:
            note = provider.delete(res)  # None, or a status such as "released" (used, not created)
        except (ProviderError, OSError) as exc:
            failed.append({**res, "error": str(exc)})
            continue
        run.mark_deleted(res, note or "deleted")
        deleted.append(res)
        progress.log(f"{note or 'deleted'} {res['kind']} {res['id']}")
    if run.step("deploy") and not any(r["kind"] in keep for r in kept):
        run.ledger["steps"].pop("deploy", None)
        run.save()
    run.event(f"down: {len(deleted)} deleted, {len(kept)} kept, {len(failed)} failed")
    result = {"run": run.id, "deleted": deleted, "kept": kept, "failed": failed}
    if failed:
        raise ProviderError(f"{len(failed)} resource(s) could not be deleted: "
                            + "; ".join(f"{f['kind']} {f['id']}: {f['error']}" for f in failed),
                            hint=f"run `imgcls down --run {run.id}` again; the ledger still lists them", **result)
    return result


def providers(cfg: RunConfig | None = None) -> list[dict]:
    """Each provider: capabilities, limits, whether its extra is installed and credentials are found."""
    return registry.describe(cfg)


__all__ = [
    "build_manifest",
    "compare",
    "deploy",
    "down",
    "evaluate",
    "export",
    "import_dataset",
    "load",
    "predict",
    "providers",
    "report_path",
    "run",
    "status",
    "train",
    "validate",
]

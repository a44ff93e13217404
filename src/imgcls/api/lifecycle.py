"""The steps of a run: validate, import, train, evaluate, deploy, export, and all of them at once (predict
is predicting.py's).

Each public function takes a config (or None with `run_id`: the run's own config) and finds its run
through runstate.open_run; the steps call each other on the same Target, so the dataset is read once.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from .. import clock
from .. import runs as runs_mod
from ..config import RunConfig
from ..data import manifest
from ..data import validate as validate_mod
from ..data.inputs import expand_inputs, read_image
from ..errors import DataError, ProviderError, QualityGateFailed, UsageError, strings
from ..progress import Progress
from ..providers import registry
from ..providers.base import DatasetRef, Deployment, Evaluation, Provider, TrainResult
from ..runs import Run, write_json
from . import costs
from .runstate import (
    QUIET,
    Target,
    build_manifest,
    config_fingerprint,
    data_fingerprint,
    is_run_of,
    load,
    open_run,
    provider_for,
    runs_dir,
)

# -- dataset ---------------------------------------------------------------------------------


def validate(cfg: RunConfig, fix: bool = False, run_id: str | None = None,
             progress: Progress = QUIET) -> dict:
    """Check the dataset against the provider's limits. Writes nothing unless `fix`."""
    if cfg is None:
        cfg = load(None, run_id=run_id)  # the run's own config
    cls = registry.get(cfg.provider)
    df = build_manifest(cfg, progress)
    progress.log(f"checking {len(df)} images against {cfg.provider}'s limits")
    findings = validate_mod.check(df, cls.limits, cfg.provider, cfg.multilabel)
    result = {"provider": cfg.provider, "summary": manifest.summary(df),
              "findings": [f.to_json() for f in findings],
              "errors": len(validate_mod.errors(findings)),
              "warnings": len(findings) - len(validate_mod.errors(findings))}
    if fix:
        cleaned, dropped = _clean(df, cls.limits, cfg)
        run = _fixed_already(cfg, df, cleaned) if run_id is None else None
        if run is None:
            run = open_run(cfg, run_id, new=run_id is None, check_data=False, offline=True).run
            if run_id is None:   # the run's data is the source as read now, before cleaning
                run.set_fields(data_fingerprint=data_fingerprint(df))
            manifest.write(cleaned, run.file("manifest.jsonl"))
            run.set_step("validate", {"fixed": True, "dropped": dropped, "images": len(cleaned)})
        else:
            progress.log(f"run {run.id} already holds these images with this fix: the next steps use it")
        result.update(fixed_manifest=str(run.file("manifest.jsonl")), run=run.id, dropped=dropped,
                      summary=manifest.summary(cleaned))
        remaining = validate_mod.errors(validate_mod.check(cleaned, cls.limits, cfg.provider, cfg.multilabel))
        result["errors"] = len(remaining)
        result["findings_after_fix"] = [f.to_json() for f in remaining]
    return result


def _fixed_already(cfg: RunConfig, df: pd.DataFrame, cleaned: pd.DataFrame) -> Run | None:
    """A run of this config and data whose manifest holds exactly the images and labels of this fix (made
    by an earlier `validate --fix`, or imported and trained since): fixing again reuses it, untouched. A new
    run each time left the next command a fresh run to train."""
    config_fp, data_fp, fixed_fp = config_fingerprint(cfg), data_fingerprint(df), data_fingerprint(cleaned)
    for run in runs_mod.list_runs(runs_dir(cfg)):
        path = run.file("manifest.jsonl")
        if is_run_of(run, cfg, config_fp, data_fp) and path.exists() \
                and data_fingerprint(manifest.read(path)) == fixed_fp:
            return run
    return None


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


def _checked_manifest(t: Target, provider: Provider) -> pd.DataFrame:
    """The run's manifest (its files checked against their hashes), or the dataset read now, checked
    against the provider's limits and written into the run."""
    cfg, path = t.cfg, t.run.file("manifest.jsonl")
    # The manifest is the run's own once imported, or cleaned by `validate --fix`; before that (an
    # import that stopped on a refused image, say) the source is read again, fixed files and all.
    settled = (t.run.step("import") or {}).get("complete") or (t.run.step("validate") or {}).get("fixed")
    if path.exists() and settled:
        df = t.manifest()
    else:
        df = t.fresh if t.fresh is not None else build_manifest(cfg, provider.progress)
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
    if not (path.exists() and settled):
        manifest.write(df, path)
    return df


def import_dataset(cfg: RunConfig | None, run_id: str | None = None, new: bool = False,
                   allow_data_change: bool = False, progress: Progress = QUIET) -> tuple[Run, DatasetRef]:
    """Read, check, split and upload the dataset. Without --run: the run of this config and data, or a new one."""
    t = open_run(cfg, run_id, new=new, allow_data_change=allow_data_change, progress=progress)
    return t.run, _import(t, progress)


def _import(t: Target, progress: Progress) -> DatasetRef:
    run = t.run
    step = run.step("import")
    if step and step.get("complete"):
        return DatasetRef(**{k: step[k] for k in ("provider", "id", "images", "labels", "extra")})
    provider = provider_for(t.cfg, run, progress)
    df = _checked_manifest(t, provider)
    labels = manifest.labels_of(df)
    progress.log(f"run {run.id}: {len(df)} images, {len(labels)} labels "
                 f"({', '.join(f'{s} {n}' for s, n in manifest.summary(df)['splits'].items())})")
    ref = provider.upload(df, labels)
    run.set_step("import", {**runs_mod.to_jsonable(ref), "complete": True})
    return ref


def labels_of_run(run: Run) -> list[str]:
    step = run.step("import")
    if not step:
        raise UsageError(f"run {run.id} has no dataset yet", hint="run `imgcls dataset-import` first")
    labels = step.get("labels")
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise DataError(f"the ledger of run {run.id} lists no labels for its dataset (steps.import.labels)",
                        hint="was the ledger edited? restore it from ledger.json.bak beside it, or start a new "
                             "run (drop --run)")
    return list(labels)


# -- training --------------------------------------------------------------------------------

def train(cfg: RunConfig | None, run_id: str | None = None, wait: bool = True, timeout: float | None = None,
          allow_data_change: bool = False, progress: Progress = QUIET) -> tuple[Run, TrainResult]:
    """Train (importing first if needed). A run whose training is under way is picked up, not restarted.
    Over train.max_cost_usd: ConfigError before anything is created."""
    costs.check_caps(cfg, run_id, train=True)
    t = open_run(cfg, run_id, allow_data_change=allow_data_change, progress=progress)
    return t.run, _train(t, wait, timeout, progress)


def _train(t: Target, wait: bool, timeout: float | None, progress: Progress) -> TrainResult:
    cfg, run = t.cfg, t.run
    done = run.step("train")
    if done and done.get("status") == "succeeded":
        return _train_result(done)
    op = run.operation("train")
    starts = op is None or op.get("state") in ("failed", "cancelled")
    if starts:  # evaluate, deploy, predict and export train first when they must: under the same cap
        costs.check_caps(cfg, train=True)
    dataset = _import(t, progress)
    provider = provider_for(cfg, run, progress)
    if provider.trains_on_local_files:
        t.manifest()                               # the files must still be the ones imported
    if starts:
        provider.background = not wait
        op = provider.start_training(dataset)
        run.set_step("train", {"provider": cfg.provider, "status": "running", "operation": op.get("id")})
    else:
        progress.log(f"run {run.id}: picking up training {op['id']}")
    if not wait:
        return TrainResult(cfg.provider, None, "running", extra={"operation": op})
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
    return result


def _train_result(step: dict) -> TrainResult:
    return TrainResult(step["provider"], step.get("model_id"), step["status"], step.get("seconds"),
                       step.get("extra") or {})


def _trained(t: Target, progress: Progress, timeout: float | None = None) -> tuple[TrainResult, Provider]:
    result = _train(t, True, timeout, progress)
    provider = provider_for(t.cfg, t.run, progress)
    if result.extra.get("adopted"):
        from .adopt import readopt
        readopt(t, provider, result)
    return result, provider


# -- evaluation ------------------------------------------------------------------------------

def evaluate(cfg: RunConfig | None, run_id: str | None = None, gates: list[str] = (),
             timeout: float | None = None, allow_data_change: bool = False, data: str | None = None,
             progress: Progress = QUIET) -> tuple[Run, Evaluation]:
    """Score the shared test split through the provider and compute our metrics locally. `data` (an
    adopted run only): evaluate on this dataset's test split instead, which the run then keeps."""
    from ..metrics import gates as gates_mod
    parsed = gates_mod.parse_gates(strings(gates, "gates"))  # a typo is a usage error before any work
    if data is not None:
        from .adopt import on_data
        cfg = on_data(cfg, run_id, data)
    t = open_run(cfg, run_id, allow_data_change=allow_data_change, progress=progress)
    return t.run, _evaluate(t, parsed, timeout, progress)


def _evaluate(t: Target, gates: dict, timeout: float | None, progress: Progress) -> Evaluation:
    from ..metrics import classification
    from ..metrics import gates as gates_mod

    cfg, run = t.cfg, t.run
    model, provider = _trained(t, progress, timeout)
    labels = labels_of_run(run)
    df = t.manifest()
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
        from ..metrics import report as report_mod
        report = str(report_mod.write_report(run.file("report"), metrics, y_true, scores, labels,
                                             list(test["uri"]), cfg.multilabel, cfg.predict.threshold,
                                             title=f"{cfg.name} on {cfg.provider}", provider=cfg.provider))
    gate_results = gates_mod.check_gates(metrics, {**cfg.evaluate.gates, **gates})
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
    return evaluation


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _save_predictions(run: Run, test: pd.DataFrame, labels: list[str], scores: np.ndarray) -> None:
    rows = [{"uri": u, "sha256": h, "labels": l, "scores": [round(float(x), 6) for x in srow]}
            for u, h, l, srow in zip(test["uri"], test["sha256"], test["labels"], scores)]
    write_json(run.file("results", "test_predictions.json"), {"labels": labels, "rows": rows})


# -- deploy and export ----------------------------------------------------------------------

def deploy(cfg: RunConfig | None, run_id: str | None = None, timeout: float | None = None,
           progress: Progress = QUIET, ttl: str | None = None, keep_on_failure: bool = False) -> tuple[Run, Deployment]:
    """Deploy the run's model (training first if needed). `ttl` (or deploy.ttl, e.g. "2h") records when the
    endpoint expires; a deploy that fails removes what it created unless `keep_on_failure`. Over a cap:
    ConfigError before anything is created."""
    if ttl:
        clock.parse_duration(ttl, "--ttl", UsageError)  # a bad --ttl is refused before any work
    costs.check_caps(cfg, run_id, train=True, deploy=True)
    t = open_run(cfg, run_id, check_data=run_id is None, progress=progress)
    return t.run, _deploy(t, timeout, progress, ttl, keep_on_failure)


def _deploy(t: Target, timeout: float | None, progress: Progress, ttl: str | None = None,
            keep_on_failure: bool = False) -> Deployment:
    model, provider = _trained(t, progress, timeout)
    expires_at = costs.expiry(t.cfg, ttl)        # counted from the deploy, not from a training before it
    deployment = costs.guarded_deploy(t.run, provider, model, expires_at, keep_on_failure, progress)
    expires_at = provider.expires_at                # what holds: a reused local server keeps its own
    t.run.set_step("deploy", {**runs_mod.to_jsonable(deployment),
                              "expires_at": clock.stamp(expires_at) if expires_at is not None else None})
    return deployment


def export(cfg: RunConfig | None, run_id: str | None = None, dest: str | Path | None = None,
           progress: Progress = QUIET) -> tuple[Run, list[Path]]:
    """The trained model in portable formats (the provider's export), into `dest` (default: the
    run's artifacts/export/ folder)."""
    t = open_run(cfg, run_id, check_data=run_id is None, progress=progress)
    model, provider = _trained(t, progress)
    target = Path(dest) if dest else t.run.file("artifacts", "export")
    paths = provider.export(model, target)
    t.run.set_step("export", {"provider": t.cfg.provider, "files": [str(p) for p in paths]})
    return t.run, paths


# -- the whole flow ---------------------------------------------------------------------------

def run(cfg: RunConfig | None, run_id: str | None = None, predict_inputs: list[str] = (),
        timeout: float | None = None, allow_data_change: bool = False, progress: Progress = QUIET,
        ttl: str | None = None, keep_on_failure: bool = False) -> dict:
    """import -> train -> evaluate -> deploy -> predict, in a new run (or `run_id`, resumed).
    Gates are checked before deploying; the caps and `ttl` before anything is created."""
    started = time.monotonic()
    inputs = expand_inputs(predict_inputs) if predict_inputs else []
    if ttl:
        clock.parse_duration(ttl, "--ttl", UsageError)  # a bad --ttl is refused before any work
    costs.check_caps(cfg, run_id, train=True, deploy=True)
    t = open_run(cfg, run_id, new=run_id is None, allow_data_change=allow_data_change, progress=progress)
    dataset = _import(t, progress)
    trained = _train(t, True, timeout, progress)
    evaluation = _evaluate(t, {}, timeout, progress)
    if t.cfg.provider == "local" and not t.cfg.deploy.detach:
        t.cfg = t.cfg.model_copy(update={"deploy": t.cfg.deploy.model_copy(update={"detach": True})})
    deployment = _deploy(t, timeout, progress, ttl, keep_on_failure)
    if not inputs:
        test = manifest.read(t.run.file("manifest.jsonl"))
        inputs = list(test[test["split"] == "test"]["uri"][:3])
    from .predicting import _predict
    predictions = _predict(t, inputs, None, "endpoint", progress)
    return {"run": t.run.id, "dataset": dataset, "train": trained, "evaluation": evaluation,
            "deployment": deployment, "predictions": predictions, "seconds": round(time.monotonic() - started, 1)}

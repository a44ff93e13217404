"""`adopt`: a model imgcls did not train (a published Custom Vision iteration, a Vertex AI endpoint or model,
an Azure ML online deployment) registered as a run, so evaluate, compare and predict work on it.

The run holds the dataset it is evaluated on (its manifest, split as any run of that data is split) and
its model as a succeeded training; the provider records each resource the model is made of with
ours=False, so `down` releases them and never deletes them. A run taken down is adopted again, from
the reference the ledger keeps, the next time it is used.
"""
from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import yaml

from .. import runs as runs_mod
from ..config import RunConfig, parse_config
from ..data import manifest
from ..errors import ConfigError, UnsupportedError, UsageError
from ..progress import Progress
from ..providers import registry
from ..providers.base import Provider, TrainResult
from ..runs import Run, write_json
from .runstate import QUIET, Target, build_manifest, data_fingerprint, provider_for, runs_dir


def adopt(model: str, cfg: RunConfig | None = None, data: str | None = None, name: str | None = None,
          task: str | None = None, progress: Progress = QUIET) -> tuple[Run, TrainResult]:
    """Register `model` ("<provider>:<reference>") as a new run and return (run, its model).

    `cfg` gives the dataset it is evaluated on, the split, predict/evaluate settings and the provider's
    section (credentials, workspace…); its `provider:` is replaced by the model's. `data` is a dataset
    source (folder or import file) instead of the config's; without a config, `data` is needed and the
    run is named `name` (default: from the reference), its task `task` (default multiclass).

        run, model = imgcls.adopt("customvision:4b2c…/production", data="photos/")
        imgcls.evaluate(None, run_id=run.id)
    """
    provider_name, ref = _parse(model)
    cfg = _config(cfg, provider_name, ref, data, name, task)
    df = build_manifest(cfg)            # a dataset that cannot be read fails before any run exists
    # A fingerprint of its own: `imgcls train -c` of the same config never takes this run for its own.
    fingerprint = "adopted-" + hashlib.sha256(model.encode()).hexdigest()[:12]
    run = Run.create(runs_dir(cfg), cfg.name, provider_name, fingerprint, data_fingerprint(df))
    try:
        resolved = {**cfg.model_dump(mode="json"), "base_dir": cfg.base_dir}
        runs_mod.atomic_write(run.file("config.yaml"), yaml.safe_dump(resolved, sort_keys=False))
        run.set_fields(adopted={"model": model, "provider": provider_name, "ref": ref})
        manifest.write(df, run.file("manifest.jsonl"))
        labels = manifest.labels_of(df)
        run.set_step("import", {"provider": provider_name, "id": "adopted", "images": len(df), "labels": labels,
                                "extra": {"adopted": model, "uploaded": 0}, "complete": True})
        provider = provider_for(cfg, run, progress)
        result = provider.adopt(ref)
        _check_task(result, cfg, model)
        run.set_step("train", runs_mod.to_jsonable(result))
        write_json(run.file("results", "train.json"), result)
        if result.extra.get("serving"):
            run.set_step("deploy", runs_mod.to_jsonable(provider.deploy_model(result)))
    except BaseException:
        # Nothing was created at the service: a run that is not whole is not left to look like one.
        shutil.rmtree(run.path, ignore_errors=True)
        raise
    _warn_labels(result, labels, progress)
    run.event(f"adopted {model}")
    progress.log(f"run {run.id}: {model} adopted; `imgcls evaluate --run {run.id}` scores its test split "
                 f"({int((df['split'] == 'test').sum())} images)")
    return run, result


def readopt(t: Target, provider: Provider, model: TrainResult) -> None:
    """A run whose adopted resources `down` released takes them up again (they were never deleted)."""
    adopted = t.run.ledger.get("adopted")
    if adopted and not t.run.live():
        provider.progress.log(f"run {t.run.id}: adopting {adopted['model']} again (released by `down`)")
        provider.adopt(adopted["ref"])
        if model.extra.get("serving"):
            t.run.set_step("deploy", runs_mod.to_jsonable(provider.deploy_model(model)))


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def _parse(model: str) -> tuple[str, str]:
    provider_name, sep, ref = model.partition(":")
    if not sep or not ref.strip():
        raise UsageError(f"{model!r} names no model: write <provider>:<reference>",
                         hint="e.g. customvision:<project>/<published name>, vertex:<endpoint id>, "
                              "azureml:<endpoint>[/<deployment>]")
    registry.check_name(provider_name)
    cls = registry.get(provider_name)
    if not cls.capabilities.adopt:
        raise UnsupportedError(f"the {provider_name} provider cannot adopt a model it did not train",
                               hint="`imgcls providers --json` shows which providers can (capabilities.adopt)")
    return provider_name, ref.strip()


def _config(cfg: RunConfig | None, provider_name: str, ref: str, data: str | None, name: str | None,
            task: str | None) -> RunConfig:
    source = None if data is None else data if "://" in data else str(Path(data).expanduser().resolve())
    if cfg is None:
        if source is None:
            raise UsageError("adopt needs the dataset to evaluate the model on",
                             hint="pass --data FOLDER_OR_IMPORT_FILE, or -c CONFIG (its dataset.source)")
        run_name = name or (re.sub(r"[^A-Za-z0-9._-]+", "-", ref).strip("-._")[:40] or "adopted")
        text = yaml.safe_dump({"name": run_name, "provider": provider_name, "task": task or "multiclass",
                               "dataset": {"source": source}})
        return parse_config(text, "<adopt>")
    update: dict = {"provider": provider_name}
    if name:
        if not _NAME.fullmatch(name):
            raise UsageError(f"--name {name!r} is not a run name", hint="letters, digits, . _ - (at most 63)")
        update["name"] = name
    if task:
        update["task"] = task
    if source is not None:
        update["dataset"] = cfg.dataset.model_copy(update={"source": source, "format": "auto", "test_source": None})
    # A copy, not a dump: the provider's section keeps the keys a dump leaves out.
    return cfg.model_copy(update=update)


def _check_task(result: TrainResult, cfg: RunConfig, model: str) -> None:
    multilabel = result.extra.get("multilabel")
    if multilabel is not None and multilabel != cfg.multilabel:
        kind = "multilabel" if multilabel else "multiclass"
        raise ConfigError(f"{model} is a {kind} model; the run's task is {cfg.task}",
                          hint=f"pass --task {kind} (or set task: {kind} in the config)")


def _warn_labels(result: TrainResult, labels: list[str], progress: Progress) -> None:
    known = result.extra.get("labels")
    if known is None:
        return
    unknown = sorted(set(labels) - set(known))
    if unknown:
        progress.warn(f"the model knows no label {', '.join(map(repr, unknown[:10]))} of the dataset: it can "
                      f"never predict {'them' if len(unknown) > 1 else 'it'} (labels match by exact name)")


def on_data(cfg: RunConfig | None, run_id: str | None, data: str) -> RunConfig:
    """The config to evaluate adopted run `run_id` on the dataset `data` (a folder or import file)."""
    if not run_id:
        raise UsageError("--data needs --run: it evaluates an adopted run on other data",
                         hint="imgcls evaluate --run RUN_ID --data FOLDER")
    run = runs_mod.open_run(runs_dir(cfg), run_id)
    if not run.ledger.get("adopted"):
        raise UsageError(f"--data evaluates an adopted run on other data; run {run.id} was trained by imgcls, "
                         "and is evaluated on its own test split", hint="drop --data")
    base = cfg if cfg is not None and cfg.from_run != run.id else run.config()
    source = data if "://" in data else str(Path(data).expanduser().resolve())
    return base.model_copy(update={"provider": run.provider, "from_run": None, "dataset": base.dataset.model_copy(
        update={"source": source, "format": "auto", "test_source": None})})


def retarget(run: Run, cfg: RunConfig, df, progress: Progress) -> None:
    """An adopted run evaluated on another dataset takes it as its own: manifest, labels, config. (A run
    imgcls trained keeps its data: its test split is what it never saw.)"""
    manifest.write(df, run.file("manifest.jsonl"))
    resolved = {**cfg.model_dump(mode="json"), "base_dir": cfg.base_dir}
    runs_mod.atomic_write(run.file("config.yaml"), yaml.safe_dump(resolved, sort_keys=False))
    step = run.step("import") or {}
    run.set_step("import", {**step, "images": len(df), "labels": manifest.labels_of(df), "complete": True})
    run.set_fields(data_fingerprint=data_fingerprint(df))
    run.drop_step("evaluate")
    progress.log(f"run {run.id}: now evaluated on {cfg.dataset.source} ({len(df)} images)")

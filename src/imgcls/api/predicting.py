"""Predicting images with a run's model: through its endpoint when deployed, else (local) the exported model,
or through the provider's batch prediction; and a row of scores made into a Prediction."""
from __future__ import annotations

import os

import numpy as np

from ..config import RunConfig
from ..data.inputs import expand_inputs, local_only, read_image
from ..errors import ProviderError, UnsupportedError, UsageError
from ..progress import Progress
from ..providers import registry
from ..providers.base import Prediction, Provider
from .lifecycle import _trained, labels_of_run
from .runstate import QUIET, Target, open_run


def predict(cfg: RunConfig | None, inputs: list[str], run_id: str | None = None, top_k: int | None = None,
            via: str = "auto", batch: bool = False, progress: Progress = QUIET) -> list[Prediction]:
    """Predict images through the run's model: its endpoint if deployed, else (local) the exported model.

    batch: through the provider's batch prediction instead (a Vertex AI batch prediction job, an Azure ML
    batch endpoint; local: in-process over the exported model), with the same predictions as online."""
    inputs = _checked_predict_args(inputs, top_k, via)
    paths = expand_inputs(inputs)                  # a missing input is an error before any other work
    if batch and via == "endpoint":
        raise UsageError("--batch and --endpoint exclude each other",
                         hint="--batch runs the provider's batch prediction; drop one of them")
    if batch and cfg is not None:
        _batch_capable(cfg.provider, run_id)         # before a run is looked for or made
    t = open_run(cfg, run_id, check_data=run_id is None, progress=progress)
    if batch:
        return _predict_batch(t, paths, top_k, progress)
    return _predict(t, paths, top_k, via, progress)


VIAS = ("auto", "offline", "endpoint")


def _checked_predict_args(inputs, top_k, via) -> list[str]:
    """What the CLI's types guarantee, for Python callers: paths as a list of str (one path or Path is a list
    of one, not of its letters), top_k None or at least 1, a known `via`."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    try:
        inputs = list(inputs)
    except TypeError:
        raise UsageError(f"predict takes image paths (a list of str or Path), not {type(inputs).__name__}") from None
    wrong = [i for i in inputs if not isinstance(i, (str, os.PathLike))]
    if wrong:
        raise UsageError(f"predict takes image paths (str or Path), not {type(wrong[0]).__name__}",
                         hint="write images in memory to files first, or POST them to a deployed endpoint")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise UsageError(f"top_k must be a whole number of at least 1, not {top_k!r}")
    if via not in VIAS:
        raise UsageError(f"via must be one of {', '.join(VIAS)}, not {via!r}")
    return [os.fspath(i) for i in inputs]


def _predict(t: Target, paths: list[str], top_k: int | None, via: str, progress: Progress) -> list[Prediction]:
    cfg, run = t.cfg, t.run
    local_only(paths)
    _, provider = _trained(t, progress)
    provider.prefer_endpoint = via == "endpoint" or (via == "auto" and run.step("deploy") is not None)
    provider.endpoint_required = via == "endpoint"
    if via == "endpoint" and run.step("deploy") is None:
        raise UsageError(f"run {run.id} is not deployed", hint="run `imgcls deploy` first, or drop --endpoint")
    labels = labels_of_run(run)
    scores = provider.score_all([read_image(p) for p in paths], paths, labels)
    return [to_prediction(p, labels, row, cfg, top_k or cfg.predict.top_k) for p, row in zip(paths, scores)]


def _predict_batch(t: Target, paths: list[str], top_k: int | None, progress: Progress) -> list[Prediction]:
    """Each distinct input scored once by the provider's batch prediction, the rows in input order."""
    cfg, run = t.cfg, t.run
    cls = _batch_capable(cfg.provider, run.id)
    local_only(paths, cls.capabilities.remote_uris, f"batch prediction on {cfg.provider}")
    model, provider = _trained(t, progress)
    labels = labels_of_run(run)
    unique = list(dict.fromkeys(paths))
    found = provider.batch_predict(model, unique)
    missing = [p for p in unique if p not in found]
    if missing:
        raise ProviderError(f"batch prediction on {cfg.provider} returned no scores for {len(missing)} of "
                            f"{len(unique)} images, e.g. {missing[0]}", hint="run the same command again")
    index = {l: i for i, l in enumerate(labels)}
    scores = np.zeros((len(paths), len(labels)), dtype=np.float64)
    for row, p in enumerate(paths):
        for label, s in found[p].items():
            if label in index:
                scores[row, index[label]] = float(s)
    return [to_prediction(p, labels, row, cfg, top_k or cfg.predict.top_k) for p, row in zip(paths, scores)]


def _batch_capable(provider: str, run_id: str | None) -> type[Provider]:
    cls = registry.get(provider)
    if not cls.capabilities.batch_predict:
        given = f" --run {run_id}" if run_id else ""
        raise UnsupportedError(f"the {provider} provider has no batch prediction",
                               hint=f"use online prediction instead: `imgcls predict{given} IMAGE…` without "
                                    "--batch (it sends requests concurrently within the service's rate limit); "
                                    "`imgcls providers` shows which providers predict in batch")
    return cls


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

"""What AutoML job a run submits: one trial, AutoML's own sweep, or a sweep over a search space — decided
here from train.preset, train.budget_minutes and the `azureml:` section, as plain values client.py turns
into the SDK's job. Everything wrong offline is a ConfigError naming the setting."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ...errors import ConfigError

# distribution -> number of arguments (None: a list of any length)
DISTRIBUTIONS = {"choice": None, "randint": 1, "uniform": 2, "loguniform": 2, "normal": 2, "lognormal": 2,
                 "quniform": 3, "qloguniform": 3, "qnormal": 3, "qlognormal": 3}
# early termination policies, with the vendor sample's settings
POLICIES = {"bandit": {"evaluation_interval": 2, "slack_factor": 0.2, "delay_evaluation": 6},
            "median_stopping": {"evaluation_interval": 1, "delay_evaluation": 5},
            "truncation_selection": {"evaluation_interval": 1, "truncation_percentage": 20, "delay_evaluation": 5}}
# preset best without a search space: the model choice plus the learning-rate range of the vendor sample
BEST_LEARNING_RATE = ("uniform", [0.001, 0.01])

Space = dict[str, tuple[str, list]]   # parameter -> (distribution, arguments)


@dataclass(frozen=True)
class JobSpec:
    name: str
    experiment: str
    multilabel: bool
    compute: str
    training_data: str                   # azureml:<asset>:<version> or an azureml:// folder
    validation_data: str | None
    primary_metric: str
    timeout_minutes: int
    max_trials: int
    max_concurrent_trials: int
    training_parameters: dict[str, Any] = field(default_factory=dict)
    search_space: list[Space] = field(default_factory=list)
    sampling_algorithm: str | None = None            # set: the job sweeps over search_space
    early_termination: tuple[str, dict] | None = None
    tags: dict[str, str] = field(default_factory=dict)
    note: str = ""                                   # what was decided, for the log

    @property
    def target_column(self) -> str:
        return "label"


def plan(config, name: str, experiment: str, training_data: str, validation_data: str | None,
         tags: dict[str, str], compute: str | None = None) -> JobSpec:
    az, train = config.azureml, config.train
    if not az.model_names:
        raise ConfigError("azureml.model_names is empty", hint="name at least one model, e.g. [vitb16r224]")
    params = dict(az.training_parameters)
    if not train.early_stopping:
        params.setdefault("early_stopping", False)
    space = parse_space(az.search_space)
    max_trials = az.max_trials
    if space:
        note = f"sweep over azureml.search_space, {max_trials} trial(s)"
    elif max_trials > 1 or train.preset == "best":
        if "model_name" in params:
            raise ConfigError("azureml.training_parameters.model_name fixes the model, but the job sweeps "
                              f"(azureml.max_trials = {max_trials}, train.preset = {train.preset})",
                              hint="list the models in azureml.model_names instead, or set azureml.max_trials: 1 "
                                   "and train.preset: quick")
        subspace: Space = {"model_name": ("choice", list(az.model_names))}
        if train.preset == "best":
            subspace["learning_rate"] = BEST_LEARNING_RATE
            max_trials = max_trials if max_trials > 1 else 2 * len(az.model_names)
        space = [subspace]
        note = f"sweep over azureml.model_names ({', '.join(az.model_names)}), {max_trials} trials"
    else:
        params.setdefault("model_name", az.model_names[0])
        note = f"one trial of {params['model_name']}"
    sampling = early = None
    if space:
        sampling = az.sampling_algorithm
        policy = az.early_termination or ("bandit" if train.preset == "best" and sampling != "bayesian" else None)
        if policy and sampling == "bayesian":
            raise ConfigError("azureml.early_termination cannot be used with azureml.sampling_algorithm: bayesian "
                              "(Azure ML's Bayesian sampling takes no early termination policy)",
                              hint="remove azureml.early_termination, or sample random or grid")
        if sampling == "grid":
            ranged = sorted({p for sub in space for p, (dist, _) in sub.items() if dist != "choice"})
            if ranged:
                raise ConfigError(f"grid sampling needs a list of values for every parameter; "
                                  f"{', '.join(ranged)} {'is a range' if len(ranged) == 1 else 'are ranges'}",
                                  hint="give lists ({choice: [...]}) or set azureml.sampling_algorithm: random")
        early = (policy, dict(POLICIES[policy])) if policy else None
        note += f", {sampling} sampling" + (f", {policy} early termination" if policy else "")
    return JobSpec(name=name, experiment=experiment, multilabel=config.multilabel,
                   compute=compute or az.compute or "",
                   training_data=training_data, validation_data=validation_data,
                   primary_metric="iou" if config.multilabel else "accuracy",
                   timeout_minutes=max(1, math.ceil(train.budget_minutes)), max_trials=max_trials,
                   max_concurrent_trials=min(az.max_concurrent_trials, max_trials),
                   training_parameters=params, search_space=space, sampling_algorithm=sampling,
                   early_termination=early, tags=dict(tags), note=note)


def parse_space(raw: list[dict[str, Any]]) -> list[Space]:
    """azureml.search_space as written (a list, {choice: [...]}, {uniform: [lo, hi]}, a single value)."""
    out = []
    for i, sub in enumerate(raw):
        if not isinstance(sub, dict) or not sub:
            raise ConfigError(f"azureml.search_space[{i}] must be a mapping of parameter -> values",
                              hint="e.g. - {model_name: [vitb16r224, vits16r224], learning_rate: {uniform: [0.001, 0.01]}}")
        out.append({str(k): _distribution(f"azureml.search_space[{i}].{k}", v) for k, v in sub.items()})
    return out


def _distribution(where: str, value: Any) -> tuple[str, list]:
    if isinstance(value, list):
        kind, args = "choice", value
    elif isinstance(value, dict):
        if len(value) != 1 or next(iter(value)) not in DISTRIBUTIONS:
            raise ConfigError(f"{where}: {value!r} is not a distribution",
                              hint=f"write one of {', '.join(f'{{{d}: ...}}' for d in DISTRIBUTIONS)}, or a list")
        kind, args = next(iter(value.items()))
        args = args if isinstance(args, list) else [args]
    else:
        kind, args = "choice", [value]
    need = DISTRIBUTIONS[kind]
    if (need is None and not args) or (need is not None and len(args) != need):
        raise ConfigError(f"{where}: {kind} takes " + ("a non-empty list" if need is None else
                                                        f"{need} value{'s' if need > 1 else ''}, not {len(args)}"),
                          hint="e.g. {uniform: [0.001, 0.01]}, {randint: 10}, {choice: [15, 30]}")
    if kind != "choice" and not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
        raise ConfigError(f"{where}: {kind} takes numbers, not {args!r}")
    return kind, list(args)

"""The run config: pydantic models of the YAML file, ${VAR} expansion and --set overrides.

Every error names the file, the line, the key path and, for an unknown key, the closest valid one.
"""
from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigError

PROVIDER_SECTIONS = ("local", "vertex", "customvision", "azureml")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DatasetConfig(Section):
    source: str = Field(description="A folder of <label>/ sub-folders (optionally under train/ validation/ test/), "
                                    "a Vertex CSV or JSONL import file, an Azure ML JSONL file, or an imgcls manifest.jsonl.")
    format: Literal["auto", "folder", "vertex-csv", "vertex-jsonl", "azureml-jsonl", "manifest"] = "auto"
    test_source: str | None = Field(None, description="A separate test set in the same formats; its images are the test split.")


class SplitConfig(Section):
    validation: float = Field(0.1, ge=0, lt=1, description="Fraction of labelled images kept for validation.")
    test: float = Field(0.2, ge=0, lt=1, description="Fraction kept for test, unless the source says which images are test.")
    seed: int = 0

    @model_validator(mode="after")
    def _fractions(self):
        if self.validation + self.test >= 1:
            raise ValueError("split.validation + split.test must be below 1")
        return self


class TrainConfig(Section):
    preset: Literal["quick", "best"] = Field("quick", description="quick: fast, good; best: slower, better.")
    budget_minutes: float = Field(15, gt=0, description="Wall-clock budget for local training and cloud job timeouts.")
    node_hours: float | None = Field(None, gt=0, description="Cloud training budget in node hours (Vertex, Azure ML, Custom Vision Advanced).")
    early_stopping: bool = True


class EvaluateConfig(Section):
    gates: dict[str, float] = Field(default_factory=dict, description="Minimum values, e.g. {accuracy: 0.9, 'recall@roses': 0.8}.")
    report: bool = True


class DeployConfig(Section):
    detach: bool = Field(False, description="local: serve in the background (its pid goes in the ledger).")
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    machine_type: str | None = None


class PredictConfig(Section):
    threshold: float = Field(0.5, ge=0, le=1)
    thresholds: dict[str, float] = Field(default_factory=dict, description="Per-label thresholds overriding `threshold`.")
    top_k: int = Field(5, ge=1)
    concurrency: int | None = Field(None, ge=1, le=64, description="Scoring requests in flight at once against a "
                                    "cloud endpoint; unset: the provider's default (`imgcls providers`).")
    requests_per_second: float | None = Field(None, gt=0, description="At most this many scoring requests started "
                                              "per second; unset: the vendor's documented quota.")

    @field_validator("thresholds")
    @classmethod
    def _in_range(cls, v: dict[str, float]):
        for label, t in v.items():
            if not 0 <= t <= 1:
                raise ValueError(f"threshold for {label!r} must be between 0 and 1")
        return v


class LocalConfig(Section):
    batch_size: int = Field(32, ge=1)
    tta: bool = Field(False, description="Test-time augmentation (flip) at predict time.")


class VertexConfig(Section):
    project: str | None = Field(None, description="Google Cloud project id; unset: $GOOGLE_CLOUD_PROJECT, else the "
                                                     "project of the Application Default Credentials.")
    location: str = Field("us-central1", description="Vertex AI region of the dataset, model and endpoint.")
    staging_bucket: str | None = Field(None, description="gs://bucket[/prefix] where images and the import file go. "
                                                            "The bucket must exist (same region as `location`).")
    model_type: Literal["CLOUD", "CLOUD_1", "MOBILE_TF_LOW_LATENCY_1", "MOBILE_TF_VERSATILE_1",
                        "MOBILE_TF_HIGH_ACCURACY_1"] = Field(
        "CLOUD", description="CLOUD models serve from an endpoint (train.node_hours 8-800); MOBILE_TF_* models "
                             "also export (train.node_hours 1-100).")
    import_format: Literal["csv", "jsonl"] = "jsonl"
    api_endpoint: str | None = Field(None, description="Override the API endpoint (tests, private endpoints). With "
                                                          "IMGCLS_VERTEX_ANONYMOUS=1 in the environment, calls go "
                                                          "there without credentials (tests against a fake only).")
    service_account: str | None = Field(None, description="Service account the deployed model and batch "
                                                             "prediction jobs run as; unset: Vertex's default.")
    batch_predict_over: int = Field(500, ge=1, description="Evaluate through a batch prediction job above this many test images.")
    predict_instances: int = Field(8, ge=1, le=100, description="Images per online prediction request (each request "
                                                                "also stays under Vertex's 1.5 MB limit).")
    export_format: Literal["tflite", "edgetpu-tflite", "tf-saved-model", "tf-js", "core-ml"] = Field(
        "tflite", description="What `export` asks Vertex for (MOBILE_TF_* model types only).")
    keep_images: bool = Field(True, description="`down` leaves the uploaded images in the staging bucket: they are "
                                                "content-addressed and shared by every run that uses them. false: "
                                                "`down` also deletes the images this run uploaded (another run's "
                                                "dataset that found them there then points at missing images).")
    retries: int = Field(5, ge=0, le=20, description="Retries of a throttled (429) or unavailable (503) call.")


class CustomVisionConfig(Section):
    # Keys are excluded from dumps (the run folder's config.yaml, `config show`) and hidden from repr.
    training_endpoint: str | None = Field(None, description="https://<resource>.cognitiveservices.azure.com; "
                                                               "unset: $VISION_TRAINING_ENDPOINT.")
    training_key: SecretStr | None = Field(None, exclude=True, repr=False,
                                              description="Write ${VISION_TRAINING_KEY}; unset: $VISION_TRAINING_KEY. "
                                                          "Never written to the run folder.")
    prediction_endpoint: str | None = Field(None, description="unset: $VISION_PREDICTION_ENDPOINT.")
    prediction_key: SecretStr | None = Field(None, exclude=True, repr=False,
                                                description="Write ${VISION_PREDICTION_KEY}; unset: $VISION_PREDICTION_KEY.")
    prediction_resource_id: str | None = Field(None, description="Azure resource id of the prediction resource, "
                                                                    "needed to publish; unset: $VISION_PREDICTION_RESOURCE_ID.")
    project_name: str | None = Field(None, description="Defaults to the config name.")
    project_id: str | None = Field(None, description="Train in this existing project (`imgcls down` never deletes "
                                                        "it); unset: the run creates its own project.")
    domain: str = Field("General [A2]", description="Domain name, e.g. 'General [A2]' or 'General (compact)'.")
    training_type: Literal["Regular", "Advanced"] | None = Field(
        None, description="Unset: from train.preset (quick: Regular; best: Advanced with train.node_hours).")
    publish_name: str | None = Field(None, description="Defaults to <name>-<run short id>.")
    export_platforms: list[str] = Field(default_factory=list, description="e.g. [ONNX, TensorFlow] (compact domains); "
                                                                          "`imgcls export` defaults to ONNX.")
    retries: int = Field(5, ge=0, le=20, description="Retries of a throttled (429) or failed (5xx, dropped "
                                                     "connection) call, honouring Retry-After.")


class AzureMLConfig(Section):
    # Credentials never go here: azure-identity's DefaultAzureCredential finds them (az login, an
    # AZURE_CLIENT_ID/AZURE_CLIENT_SECRET/AZURE_TENANT_ID service principal, managed identity).
    subscription_id: str | None = Field(None, description="Azure subscription id; unset or empty: $AZURE_SUBSCRIPTION_ID.")
    resource_group: str | None = Field(None, description="Resource group of the workspace; unset or empty: $AZURE_RESOURCE_GROUP.")
    workspace: str | None = Field(None, description="Azure ML workspace name; unset or empty: $AZUREML_WORKSPACE.")
    compute: str = Field("gpu-cluster", description="AmlCompute cluster the AutoML job runs on. Created (min 0 nodes) "
                                                    "if absent, and then removed by `imgcls down`; an existing "
                                                    "cluster is used and left alone.")
    vm_size: str = Field("Standard_NC6s_v3", description="VM size of a cluster the run creates (a GPU size for AutoML images).")
    max_nodes: int = Field(1, ge=1, description="Most nodes of a cluster the run creates.")
    model_names: list[str] = Field(default_factory=lambda: ["vitb16r224"],
                                   description="AutoML image models to try, e.g. [vitb16r224, vits16r224, seresnext, "
                                               "resnet50]. One trial: the first; a sweep: a choice among them.")
    max_trials: int = Field(1, ge=1, description="Trials of the job; above 1 (or with train.preset: best, or a "
                                                 "search_space) the job sweeps.")
    max_concurrent_trials: int = Field(1, ge=1, description="Trials run at once (at most the cluster's nodes).")
    sampling_algorithm: Literal["random", "grid", "bayesian"] = Field("random", description="How a sweep samples.")
    early_termination: Literal["bandit", "median_stopping", "truncation_selection"] | None = Field(
        None, description="Early termination policy of a sweep (not with bayesian sampling).")
    search_space: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Sweep subspaces, each {parameter: values}: a list or {choice: [...]}, {uniform: [lo, hi]}, "
                    "{loguniform: [lo, hi]}, {randint: upper}, {normal: [mu, sigma]}, {quniform: [lo, hi, q]} …, "
                    "e.g. [{model_name: [vitb16r224], learning_rate: {uniform: [0.001, 0.01]}}].")
    training_parameters: dict[str, Any] = Field(default_factory=dict,
                                                description="Fixed AutoML image training parameters, e.g. "
                                                            "{number_of_epochs: 15, learning_rate: 0.01}.")
    instance_type: str = Field("Standard_DS3_v2", description="VM size of the online deployment.")
    instance_count: int = Field(1, ge=1, description="Instances of the online deployment.")
    storage_account_url: str | None = Field(None, description="Blob account URL for uploads; defaults to the datastore's.")
    keep_images: bool = Field(True, description="`down` leaves the uploaded images in the datastore: they are "
                                                "content-addressed (imgcls/images/<sha256>) and shared by every "
                                                "run that uses them. false: `down` also deletes the images this "
                                                "run uploaded.")
    predict_batch: int = Field(8, ge=1, le=64, description="Images per scoring request (each request also stays "
                                                           "under 4 MB).")


class RunConfig(Section):
    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", description="Names the runs and cloud resources.")
    provider: str = "local"
    task: Literal["multiclass", "multilabel"] = "multiclass"
    runs_dir: str = ".imgcls/runs"
    dataset: DatasetConfig
    split: SplitConfig = SplitConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    deploy: DeployConfig = DeployConfig()
    predict: PredictConfig = PredictConfig()
    local: LocalConfig = LocalConfig()
    vertex: VertexConfig = VertexConfig()
    customvision: CustomVisionConfig = CustomVisionConfig()
    azureml: AzureMLConfig = AzureMLConfig()

    @property
    def multilabel(self) -> bool:
        return self.task == "multilabel"

    # Where the YAML came from, so relative paths resolve against the config file, not the cwd.
    base_dir: str = Field(".", exclude=True, description="internal")


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def load_config(path: str | Path, overrides: list[str] = (), provider: str | None = None) -> RunConfig:
    """Read, expand and validate a YAML run config; `overrides` are `key.path=value` strings."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}", hint="pass -c PATH, or write one with `imgcls init`")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}")
    return parse_config(text, str(path), overrides, provider, base_dir=str(path.resolve().parent))


def parse_config(text: str, filename: str = "<config>", overrides: list[str] = (),
                 provider: str | None = None, base_dir: str = ".") -> RunConfig:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{filename}:{mark.line + 1}" if mark else filename
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: YAML syntax error: {problem}", hint="fix the YAML syntax at that line")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{filename}:1: the config must be a mapping of keys, not {type(data).__name__}")
    lines = _line_map(node)
    data = _expand(data, (), filename, lines)
    for item in overrides:
        _apply_override(data, item)
    if provider:
        data["provider"] = provider
    data["base_dir"] = base_dir
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, filename, lines) from None


def _line_map(node, path=()) -> dict[tuple, int]:
    """Key path -> 1-based line, from the YAML node tree."""
    out: dict[tuple, int] = {}
    if node is None:
        return out
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = path + (key.value,)
            out[sub] = key.start_mark.line + 1
            out.update({k: v for k, v in _line_map(value, sub).items() if k != sub})
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            out.update(_line_map(value, path + (i,)))
    return out


def _expand(value, path, filename, lines):
    if isinstance(value, dict):
        return {k: _expand(v, path + (k,), filename, lines) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, path + (i,), filename, lines) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{_where(filename, lines, path)}: {_dotted(path)} uses ${{{name}}}, which is not set",
                          hint=f"export {name}=…, or write ${{{name}:-default}} in the config")

    return _VAR.sub(sub, value)


def _apply_override(data: dict, item: str) -> None:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {item!r} is not key.path=value", hint="e.g. --set train.preset=best")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    parts = key.split(".")
    target = data
    for part in parts[:-1]:
        nxt = target.get(part)
        if nxt is None:
            nxt = target[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {key}: {part!r} is not a section")
        target = nxt
    target[parts[-1]] = value


def _config_error(exc: ValidationError, filename: str, lines: dict) -> ConfigError:
    messages = []
    for err in exc.errors():
        path = tuple(err["loc"])
        where = _where(filename, lines, path)
        dotted = _dotted(path)
        if err["type"] == "extra_forbidden":
            suggestion = _closest(path)
            hint = f" (did you mean '{suggestion}'?)" if suggestion else ""
            messages.append(f"{where}: unknown key '{dotted}'{hint}")
        elif err["type"] == "missing":
            messages.append(f"{where}: '{dotted}' is required")
        else:
            got = err.get("input")
            got_text = f" (got {got!r})" if not isinstance(got, (dict, list)) else ""
            messages.append(f"{where}: '{dotted}': {err['msg']}{got_text}")
    return ConfigError("invalid config:\n  " + "\n  ".join(messages),
                       hint="see `imgcls config schema` for every key and type")


def _where(filename: str, lines: dict, path: tuple) -> str:
    for n in range(len(path), -1, -1):
        if path[:n] in lines:
            return f"{filename}:{lines[path[:n]]}"
    return filename


def _dotted(path: tuple) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _closest(path: tuple) -> str | None:
    model: type[BaseModel] = RunConfig
    for part in path[:-1]:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    names = [n for n in model.model_fields if n != "base_dir"]
    match = difflib.get_close_matches(str(path[-1]), names, n=1, cutoff=0.5)
    return ".".join([*map(str, path[:-1]), match[0]]) if match else None


def schema() -> dict:
    s = RunConfig.model_json_schema()
    s.get("properties", {}).pop("base_dir", None)
    s["title"] = "imgcls run config"
    return s


def resolve_path(config: RunConfig, value: str) -> str:
    """A path from the config, relative to the config file's folder; URIs pass through."""
    if "://" in value:
        return value
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else (Path(config.base_dir) / p).resolve())

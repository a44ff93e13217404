"""The run config: pydantic models of the YAML file, ${VAR} expansion and --set overrides.

The core holds `provider:` and the neutral sections; each provider brings the model of its own section
(`Provider.settings_model`), composed in by name. Every error names the file, the line, the key path and,
for an unknown key, the closest valid one.
"""
from __future__ import annotations

import difflib
import functools
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from . import safeyaml
from .errors import ConfigError, UsageError

INTERNAL_FIELDS = ("base_dir", "from_run")   # RunConfig fields imgcls sets itself; not keys of a config file


MAX_CONFIG_BYTES = 1024**2  # read no further: a run config is a few KB
MAX_BUDGET_MINUTES = 30 * 24 * 60  # 30 days: longer than any cloud job's own limit


class Section(BaseModel):
    # inf passes gt=0 (and json.dumps writes it as Infinity, which no JSON parser reads): numbers are finite.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DatasetConfig(Section):
    source: str = Field(description="A folder of <label>/ sub-folders (optionally under train/ validation/ test/), "
                                    "an imgcls manifest.jsonl, an import file in a registered format, or a "
                                    "source by URI (scheme:ref or scheme://…, e.g. gs://bucket/flowers/; `imgcls "
                                    "dataset-import --help` lists them), downloaded into the cache.")
    format: str = Field("auto", description="auto (from the source), or a registered import format's name.")
    test_source: str | None = Field(None, description="A separate test set in the same formats; its images are the test split.")

    @field_validator("source", "test_source")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():  # "" would read the config's own folder as the dataset
            raise ValueError("is empty: name the dataset's folder, file or URI (e.g. data/)")
        return value

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        from .data import formats
        if value != "auto" and value not in formats.names():
            close = difflib.get_close_matches(value, formats.names(), n=1, cutoff=0.4)
            raise ValueError(("did you mean '" + close[0] + "'? " if close else "")
                             + "known formats: auto, " + ", ".join(formats.names()))
        return value


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
    budget_minutes: float = Field(15, gt=0, le=MAX_BUDGET_MINUTES,
                                  description="Wall-clock budget for local training and cloud job timeouts.")
    node_hours: float | None = Field(None, gt=0, description="Cloud training budget in node hours (for providers that bill training that way).")
    early_stopping: bool = True
    max_cost_usd: float | None = Field(None, gt=0, description="Refuse (exit 3, before anything is created) when "
                                       "`imgcls plan`'s training estimate is above this, or unknown.")


class EvaluateConfig(Section):
    gates: dict[str, float] = Field(default_factory=dict, description="Minimum values, e.g. {accuracy: 0.9, 'recall@roses': 0.8}.")
    report: bool = True


class EndpointLimits(Section):
    """What one request may ask of the local endpoint; past a limit a request gets a 4xx or 503, never the
    server's memory (the defaults keep its peak under 1.5 GiB under hostile requests)."""
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Largest request body in bytes; larger gets 413.")
    max_images: int = Field(32, ge=1, le=4096, description="Most images in one request; more gets 413.")
    max_pixels: int = Field(40_000_000, ge=10_000, description="Most pixels an image may declare in its header "
                                                               "(read before decoding; a thin image also counts "
                                                               "what it becomes when resized); more gets 413.")
    max_concurrent: int = Field(8, ge=1, le=1024, description="Prediction requests handled at once; more get 503 "
                                                               "with Retry-After.")
    read_timeout: float = Field(30, gt=0, le=3600, description="Seconds a client has to send a whole request "
                                                                "(headers and body); slower gets 408 and is cut off.")
    keep_alive_timeout: float = Field(5, gt=0, le=3600, description="Seconds an idle keep-alive connection stays open.")


class DeployConfig(Section):
    detach: bool = Field(False, description="local: serve in the background (its pid goes in the ledger).")
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535, description="local: 0 picks a free port.")
    limits: EndpointLimits = Field(default_factory=EndpointLimits, description="local: the endpoint's limits.")
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    machine_type: str | None = None
    ttl: str | None = Field(None, description="The endpoint expires this long after deploy (90s, 30m, 2h, 1d, 1w): "
                            "`imgcls down --expired` removes it; the local server stops itself. Also --ttl.")
    max_cost_usd_per_day: float | None = Field(None, gt=0, description="Refuse to deploy (exit 3, before anything "
                                               "is created) when a day of the endpoint is estimated above this, "
                                               "or unknown.")

    @field_validator("ttl")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            from .clock import parse_duration
            try:
                parse_duration(value)
            except ConfigError as exc:
                raise ValueError(f"{exc.message}; {exc.hint}") from None
        return value


class PredictConfig(Section):
    threshold: float = Field(0.5, ge=0, le=1)
    # Each value checked on its own, so an error names the label's line.
    thresholds: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=dict, description="Per-label thresholds overriding `threshold`.")
    top_k: int = Field(5, ge=1)
    concurrency: int | None = Field(None, ge=1, le=64, description="Scoring requests in flight at once against a "
                                    "cloud endpoint; unset: the provider's default (`imgcls providers`).")
    requests_per_second: float | None = Field(None, gt=0, description="At most this many scoring requests started "
                                              "per second; unset: the vendor's documented quota.")


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

    @property
    def multilabel(self) -> bool:
        return self.task == "multilabel"

    # Where the YAML came from, so relative paths resolve against the config file, not the cwd.
    base_dir: str = Field(".", exclude=True, description="internal")
    # Set when the config is a run's own copy (`--run ID` without -c): that run's data is its manifest.
    from_run: str | None = Field(None, exclude=True, description="internal")

    @classmethod
    def model_validate(cls, obj: Any, **kwargs) -> RunConfig:
        """Validated with the sections of the providers it names (and the one it selects) composed in."""
        if cls is RunConfig and isinstance(obj, dict):
            cls = composed(sections_of(obj))
        return super(RunConfig, cls).model_validate(obj, **kwargs)  # noqa: UP008 - cls is the composed class

    def __getattr__(self, name: str):
        # A provider's section the config did not write (and the provider it does not select): its defaults.
        # Returned fresh each time; to change one, write it in the config or model_copy(update={name: …}).
        try:
            return super().__getattr__(name)
        except AttributeError:
            model = section_model(name) if not name.startswith("_") else None
            if model is None:
                raise
            return model()


def section_model(name: str) -> type[BaseModel] | None:
    """The model of provider `name`'s section, or None when no installed provider has that name."""
    from .providers import registry
    if name not in registry.names():
        return None
    return registry.settings_model(name) or Section


def sections_of(data: dict) -> tuple[str, ...]:
    """The provider sections a config document needs: those it writes and the selected provider's."""
    from .providers import registry
    known = set(registry.names())
    wanted = {k for k in data if isinstance(k, str) and k not in RunConfig.model_fields and k in known}
    provider = data.get("provider", RunConfig.model_fields["provider"].default)
    if isinstance(provider, str) and provider in known:
        wanted.add(provider)
    return tuple(sorted(wanted))


@functools.lru_cache(maxsize=64)
def composed(sections: tuple[str, ...]) -> type[RunConfig]:
    """RunConfig with the named providers' sections as fields (defaults when not written)."""
    if not sections:
        return RunConfig
    fields = {}
    for name in sections:
        model = section_model(name)
        if model is not None:
            fields[name] = (model, Field(default_factory=model, description=f"Settings of the {name} provider."))
    return create_model("RunConfig", __base__=RunConfig, __module__=__name__, **fields)


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def load_config(path: str | Path, overrides: list[str] = (), provider: str | None = None) -> RunConfig:
    """Read, expand and validate a YAML run config; `overrides` are `key.path=value` strings."""
    from .overrides import check_overrides
    check_overrides(overrides)  # the command line first: a typo there costs no file read
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder, not a config file", hint="pass -c PATH/TO/CONFIG.yaml")
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}", hint="pass -c PATH, or write one with `imgcls init`")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}")
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is over {MAX_CONFIG_BYTES // 1024**2} MiB: a run config is a few KB of YAML",
                          hint="is it the right file? (-c takes the run's YAML config, not data)")
    if not raw.strip():
        raise ConfigError(f"{path} is empty", hint="a run config needs at least `name:` and `dataset: {source: …}`; "
                                                   "`imgcls init` writes a starter")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte {exc.start} is 0x{raw[exc.start]:02x})",
                          hint="save the config as UTF-8; is it really a YAML file?")
    return parse_config(text, str(path), overrides, provider, base_dir=str(path.resolve().parent))


def parse_config(text: str, filename: str = "<config>", overrides: list[str] = (),
                 provider: str | None = None, base_dir: str = ".") -> RunConfig:
    try:
        node, data = safeyaml.load(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, filename) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{filename}:1: the config must be a mapping of keys, not {type(data).__name__}")
    lines = _line_map(node)
    for internal in INTERNAL_FIELDS:     # set by imgcls, never by a file
        if internal in data:
            raise ConfigError(f"{filename}:{lines.get((internal,), 1)}: unknown key '{internal}'",
                              hint="remove it; see `imgcls config schema` for every key")
    data = _expand(data, (), filename, lines)
    from .overrides import apply_override
    for item in overrides:
        apply_override(data, item)
    if provider:
        data["provider"] = provider
    data["base_dir"] = base_dir
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, filename, lines) from None
    _check_values(cfg, filename, lines, provider_given=bool(provider))
    return cfg


def _yaml_error(exc: yaml.YAMLError, filename: str) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    where = f"{filename}:{mark.line + 1}" if mark else filename
    problem = getattr(exc, "problem", None) or str(exc)
    if isinstance(exc, safeyaml.Refused):
        return ConfigError(f"{where}: {problem}", hint="write the values out plainly, once each")
    context, cmark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and cmark and (not mark or cmark.line != mark.line):
        problem += f" ({context} at {filename}:{cmark.line + 1})"
    return ConfigError(f"{where}: YAML syntax error: {problem}", hint="fix the YAML syntax at that line")


def _check_values(cfg: RunConfig, filename: str, lines: dict, provider_given: bool) -> None:
    """What the models cannot know alone: provider names (a registry) and gate names (metrics)."""
    from .metrics.gates import gate_problem
    from .providers import registry
    if not provider_given:
        try:
            registry.check_name(cfg.provider)
        except UsageError as exc:
            raise ConfigError(f"{_where(filename, lines, ('provider',))}: provider: {exc.message}",
                              hint=exc.hint) from None
    for name, bound in cfg.evaluate.gates.items():
        problem = gate_problem(name, bound)
        if problem:
            raise ConfigError(f"{_where(filename, lines, ('evaluate', 'gates', name))}: evaluate.gates: {problem}",
                              hint="gates look like {accuracy: 0.9, 'recall@roses': 0.8}")


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

    expanded = _VAR.sub(lambda m: "\0" * len(m.group(0)), value)  # what is left is not a ${NAME}
    bad = expanded.find("${")
    if bad >= 0:
        ref = value[bad:].split("}", 1)[0] + ("}" if "}" in value[bad:] else "")
        raise ConfigError(f"{_where(filename, lines, path)}: {_dotted(path)}: {ref!r} is not a variable reference",
                          hint="write ${NAME} or ${NAME:-default}, NAME made of letters, digits and _")
    return _VAR.sub(sub, value)


def _config_error(exc: ValidationError, filename: str, lines: dict) -> ConfigError:
    messages = []
    for err in exc.errors():
        path = tuple(p for p in err["loc"] if p != "[key]")  # a dict key's own error: the key's line
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
    from .providers import registry
    model: type[BaseModel] = composed(sections_of({path[0]: None})) if path else RunConfig
    if len(path) == 1:  # a top-level key: a neutral section, or any installed provider's section
        names = [n for n in RunConfig.model_fields if n not in INTERNAL_FIELDS] + registry.names()
        match = difflib.get_close_matches(str(path[0]), names, n=1, cutoff=0.5)
        return match[0] if match else None
    for part in path[:-1]:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    names = [n for n in model.model_fields if n not in INTERNAL_FIELDS]
    match = difflib.get_close_matches(str(path[-1]), names, n=1, cutoff=0.5)
    return ".".join([*map(str, path[:-1]), match[0]]) if match else None


def schema() -> dict:
    """The JSON Schema of a run config, with the section of every installed provider."""
    from .data import formats
    from .providers import registry
    s = composed(tuple(n for n in registry.names() if _loads(n))).model_json_schema()
    s["$defs"]["DatasetConfig"]["properties"]["format"]["enum"] = ["auto", *formats.names()]
    for internal in INTERNAL_FIELDS:
        s.get("properties", {}).pop(internal, None)
    s["title"] = "imgcls run config"
    return s


def _loads(provider: str) -> bool:
    """Whether a provider's settings load; a broken plug-in leaves the others' schema whole."""
    try:
        section_model(provider)
        return True
    except Exception:
        return False


def resolve_path(config: RunConfig, value: str) -> str:
    """A path from the config, relative to the config file's folder; URIs (and `scheme:ref` sources) pass through."""
    from .data.sources import is_remote
    if "://" in value or is_remote(value):
        return value
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else (Path(config.base_dir) / p).resolve())

"""Which run a command works on: a run by id (from its own folder alone, or checked against the config
the user gave), else the latest run of the same config and data, else a new run — and the checks that
keep a resumed run honest (data fingerprint, manifest hashes)."""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import runs as runs_mod
from ..config import RunConfig, load_config, resolve_path
from ..data import importers, manifest, sources, split
from ..errors import ConfigError, DataError, ImgclsError, UsageError, strings
from ..progress import Progress
from ..providers import registry
from ..providers.base import Provider
from ..runs import Run

QUIET = Progress(enabled=False)
# What makes a different model: a change here starts a new run; evaluate/deploy/predict settings do not.
_MODEL_SECTIONS = ("task", "dataset", "split", "train")


def load(config: str | Path | RunConfig | None, provider: str | None = None, overrides: list[str] = (),
         run_id: str | None = None) -> RunConfig:
    """A validated RunConfig from a path (or a RunConfig, with provider/overrides applied). With no
    config but a `run_id`: the run's own copy of the config it was started with, overrides applied."""
    overrides = strings(overrides, "overrides")
    if config is not None and not isinstance(config, (str, os.PathLike, RunConfig)):
        raise UsageError(f"load() takes a config file's path or a RunConfig, not {type(config).__name__}",
                         hint="write the config to a YAML file, or build it with RunConfig.model_validate(dict)")
    if config is None:
        if not run_id:
            raise UsageError("no config given", hint="pass -c CONFIG, or --run RUN_ID (see `imgcls runs`)")
        return _run_config(run_id, provider, overrides)
    if isinstance(config, RunConfig):
        if overrides:
            raise UsageError("overrides apply to a config file; change the RunConfig object instead")
        cfg = config.model_copy(update={"provider": provider}) if provider else config
    else:
        cfg = load_config(config, list(overrides), provider)
    registry.check_name(cfg.provider)
    return cfg


def _run_config(run_id: str, provider: str | None, overrides: list[str]) -> RunConfig:
    import yaml

    from ..config import parse_config
    run = runs_mod.open_run(runs_dir(None), run_id)
    if provider and provider != run.provider:
        raise UsageError(f"run {run.id} belongs to provider '{run.provider}', not '{provider}'",
                         hint=f"drop --provider, or pass --provider {run.provider}")
    data = yaml.safe_load(run.file("config.yaml").read_text())
    base_dir = data.pop("base_dir", ".")
    data.pop("from_run", None)
    cfg = parse_config(yaml.safe_dump(data, sort_keys=False), str(run.file("config.yaml")), list(overrides),
                       None, base_dir=base_dir)
    return cfg.model_copy(update={"from_run": run.id})


def runs_dir(cfg: RunConfig | None = None) -> Path:
    """The config's runs folder; the default one is the project's, found from any folder under it."""
    if cfg is None or Path(cfg.runs_dir) == runs_mod.DEFAULT_RUNS_DIR:
        return runs_mod.project_runs_dir()
    return Path(os.path.expanduser(cfg.runs_dir))


def provider_for(cfg: RunConfig, run: Run, progress: Progress) -> Provider:
    return registry.get(cfg.provider)(cfg, run, progress)


# -- fingerprints ----------------------------------------------------------------------------

def config_fingerprint(cfg: RunConfig) -> str:
    data = cfg.model_dump(mode="json")
    keyed = {k: data[k] for k in (*_MODEL_SECTIONS, cfg.provider) if k in data}
    # A cost cap decides whether to train, not what: it makes no other model (and older runs' prints lack it).
    keyed["train"] = {k: v for k, v in keyed["train"].items() if k != "max_cost_usd"}
    keyed["base_dir"] = cfg.base_dir  # relative dataset paths mean other files elsewhere
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]


def data_fingerprint(df: pd.DataFrame) -> str:
    """The dataset's identity: every image's content hash (or URI, for remote ones) with its labels."""
    rows = sorted(f"{h or u}\t{'|'.join(sorted(l))}" for u, h, l in zip(df["uri"], df["sha256"], df["labels"]))
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


def data_diff(old: pd.DataFrame, new: pd.DataFrame) -> dict:
    """What changed between two manifests: labels and images added, removed or changed (by path)."""
    def labels(df):
        return {l for row in df["labels"] for l in row}

    def by_uri(df):
        return {u: (h, tuple(sorted(l))) for u, h, l in zip(df["uri"], df["sha256"], df["labels"])}

    a, b = by_uri(old), by_uri(new)
    return {"labels_added": sorted(labels(new) - labels(old)), "labels_removed": sorted(labels(old) - labels(new)),
            "images_added": sorted(set(b) - set(a)), "images_removed": sorted(set(a) - set(b)),
            "images_changed": sorted(u for u in set(a) & set(b) if a[u] != b[u])}


def describe_diff(diff: dict, shown: int = 3) -> str:
    parts = []
    for key, values in diff.items():
        if values:
            names = ", ".join(Path(v).name if "/" in v else v for v in values[:shown])
            parts.append(f"{key.replace('_', ' ')}: {len(values)} ({names}{', …' if len(values) > shown else ''})")
    return "; ".join(parts) or "no difference in images or labels"


# -- the dataset -----------------------------------------------------------------------------

def build_manifest(cfg: RunConfig, progress: Progress = QUIET) -> pd.DataFrame:
    """Read the dataset source(s) and assign the deterministic split. A source by URI (gs://…,
    customvision:…) is fetched into the download cache first; its manifest lists the local copies."""
    ds = cfg.dataset
    df = read_source(cfg, ds.source, progress)
    if ds.test_source:
        test = read_source(cfg, ds.test_source, progress, default_split="test")
        test["split"] = "test"
        df = pd.concat([df, test], ignore_index=True)
    return split.assign(df, cfg.split.validation, cfg.split.test, cfg.split.seed)


def read_source(cfg: RunConfig, source: str, progress: Progress = QUIET,
                default_split: str | None = None) -> pd.DataFrame:
    """One dataset source as a manifest: a local folder or import file, or a source by URI."""
    if not sources.is_remote(source):
        return importers.load(resolve_path(cfg, source), cfg.dataset.format, cfg.multilabel, default_split)
    from ..data.sources.cache import default_root
    df, task = sources.load(source, cfg, progress, cache_root=default_root(runs_dir(cfg)))
    if (task == "multilabel") != cfg.multilabel:
        progress.warn(f"{source} is a {task} dataset, the config's task is "
                      f"{'multilabel' if cfg.multilabel else 'multiclass'}; set `task:` to match if that was not meant")
    if default_split:
        df["split"] = df["split"].map(lambda s: s or default_split)
    return df


def source_config(source: str, cfg: RunConfig | None = None, provider: str | None = None,
                  overrides: list[str] = ()) -> RunConfig:
    """The config that imports `source` (a folder, an import file or a source by URI): `cfg` with its
    dataset.source replaced, or, without a config, a new one: provider `local` unless given, named
    after the source, its task the source's own (a Custom Vision project's classification type…)."""
    if not sources.is_remote(source):
        # Given on the command line: relative to where the command runs, not to the config file.
        source = str(Path(os.path.expanduser(source)).resolve())
    if cfg is not None:
        return cfg.model_copy(update={"dataset": cfg.dataset.model_copy(update={"source": source})})
    import yaml

    from ..config import parse_config
    task = sources.list_images(source, None, keep=True)[1] if sources.is_remote(source) else "multiclass"
    data = {"name": source_name(source), "provider": provider or "local", "task": task,
            "dataset": {"source": source}}
    return parse_config(yaml.safe_dump(data, sort_keys=False), f"<dataset-import {source}>", list(overrides),
                        provider)


def source_name(source: str) -> str:
    """A run name for a source: its last path component (`gs://b/flowers/` -> flowers), or scheme-ref
    (`customvision:5f0c…` -> customvision-5f0c1a2b)."""
    scheme = sources.scheme_of(source)
    ref = source.rstrip("/")
    if scheme and not ref[len(scheme) + 1:].startswith("//"):
        tail = ref[len(scheme) + 1:]
        name = f"{scheme}-{tail[:8] if re.fullmatch(r'[0-9a-fA-F-]{36}', tail) else tail}"
    else:
        name = Path(ref.rsplit("/", 1)[-1]).stem or "dataset"
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._")[:63]
    return name or "dataset"


def verify_manifest(run: Run, df: pd.DataFrame) -> None:
    """A resumed run reads the files its manifest lists: each must still hold the bytes it was hashed as."""
    bad = []
    for uri, sha in zip(df["uri"], df["sha256"]):
        if "://" in uri or sha is None:
            continue
        try:
            digest = hashlib.sha256(Path(uri).read_bytes()).hexdigest()
        except OSError:
            bad.append(f"{uri} (missing)")
            continue
        if digest != sha:
            bad.append(f"{uri} (changed)")
    if bad:
        raise DataError(f"run {run.id}: {len(bad)} image(s) differ from the run's manifest: "
                        + ", ".join(bad[:10]) + (" …" if len(bad) > 10 else ""),
                        hint="put the original files back, or start a new run (drop --run)", files=bad)


# -- which run -------------------------------------------------------------------------------

@dataclass
class Target:
    """The config and run a command works on; `fresh` is the dataset just read from the source, if it was."""
    cfg: RunConfig
    run: Run
    fresh: pd.DataFrame | None = None
    _manifest: pd.DataFrame | None = None

    def manifest(self) -> pd.DataFrame:
        """The run's manifest, its files checked against their hashes once per command (a resumed run
        must read the bytes it started with)."""
        if self._manifest is None:
            df = manifest.read(self.run.file("manifest.jsonl"))
            verify_manifest(self.run, df)
            self._manifest = df
        return self._manifest


def address(cfg: RunConfig | None, run_id: str | None, progress: Progress = QUIET) -> tuple[RunConfig, Run]:
    """(config, run) for `--run ID`: the run's own config when none is given, else the given one checked
    against the run's provider. Without a config, the run is looked up in the project's runs folder."""
    if not run_id:
        raise UsageError("no config and no --run", hint="pass -c CONFIG, or --run RUN_ID (see `imgcls runs`)")
    run = runs_mod.open_run(runs_dir(cfg), run_id)
    if cfg is None:
        return run.config(), run
    if run.provider != cfg.provider:
        if run.ledger.get("adopted"):      # the config brings the data and settings; the model is the run's
            return cfg.model_copy(update={"provider": run.provider}), run
        raise UsageError(f"run {run.id} belongs to provider '{run.provider}', not '{cfg.provider}'",
                         hint=f"pass --provider {run.provider}, or start a new run without --run")
    if cfg.from_run != run.id:  # a config of the user's, not the run's own: does it fit the run?
        try:
            saved = run.config()
        except ConfigError:
            return cfg, run
        if saved.task != cfg.task and not run.ledger.get("adopted"):
            # its model and its scores are of the run's task: scoring them as another would overwrite them
            raise UsageError(f"run {run.id} is a {saved.task} run; this config says task: {cfg.task}",
                             hint="drop --run to start a run of this config, or give --run alone (the run's own "
                                  "config)")
        _warn_train_settings(cfg, saved, run, progress)
    return cfg, run


def _warn_train_settings(cfg: RunConfig, saved: RunConfig, run: Run, progress: Progress) -> None:
    """A trained run keeps its model: train settings of the config given now do not change it."""
    if (run.step("train") or {}).get("status") != "succeeded":
        return
    differ = sorted(k for k, v in cfg.train.model_dump().items()
                    if k != "max_cost_usd" and saved.train.model_dump().get(k) != v)  # a cap makes no other model
    if differ:
        progress.warn(f"run {run.id} is trained already; this config's train.{', train.'.join(differ)} "
                      f"do not apply to its model (drop --run to train a new run with them)")


LAST_OPENED: list[str] = []  # the id of the run this process last opened: what an interrupted command names


def open_run(cfg: RunConfig | None, run_id: str | None = None, new: bool = False, check_data: bool = True,
             allow_data_change: bool = False, progress: Progress = QUIET, offline: bool = False) -> Target:
    """`run_id`, else the latest run of this config and data, else a new one (saying why). `offline`: the
    run only holds files (validate --fix), so the provider's settings need not be complete yet."""
    target = _open_run(cfg, run_id, new, check_data, allow_data_change, progress, offline)
    LAST_OPENED[:] = [target.run.id]
    return target


def _open_run(cfg: RunConfig | None, run_id: str | None, new: bool, check_data: bool, allow_data_change: bool,
              progress: Progress, offline: bool) -> Target:
    """open_run's work.

    With `check_data`, a config's dataset is read and compared with the run's: `--run ID` on other
    data is refused (DataError) unless `allow_data_change`, and without --run changed data start a new run."""
    if run_id:
        given = cfg
        cfg, run = address(cfg, run_id, progress)
        imported = (run.step("import") or {}).get("complete")
        if given is None or given.from_run == run.id or not check_data or not imported:
            return Target(cfg, run)   # an import that did not finish reads the source again
        fresh = build_manifest(cfg, progress)
        recorded = run_data_fingerprint(run)
        if recorded is not None and data_fingerprint(fresh) != recorded and run.ledger.get("adopted"):
            from .adopt import retarget
            retarget(run, cfg, fresh, progress)
            return Target(cfg, run)
        if recorded is not None and data_fingerprint(fresh) != recorded and not allow_data_change:
            diff = data_diff(manifest.read(run.file("manifest.jsonl")), fresh)
            raise DataError(f"the dataset of {Path(cfg.dataset.source).name!r} changed since run {run.id} "
                            f"imported it: {describe_diff(diff)}",
                            hint="drop --run to start a new run on the new data, or pass --allow-data-change "
                                 "to go on with the run's own copy of the manifest", diff=diff)
        return Target(cfg, run)
    if cfg is None:
        raise UsageError("no config given", hint="pass -c CONFIG, or --run RUN_ID")
    root = runs_dir(cfg)
    fresh = build_manifest(cfg, progress) if check_data else None
    data_fp = data_fingerprint(fresh) if fresh is not None else None
    config_fp = config_fingerprint(cfg)
    found, damaged = runs_mod.scan(root)
    warn_damaged(damaged, cfg, progress)

    def mine(runs: list[Run]) -> Run | None:
        return None if new else next((r for r in runs if is_run_of(r, cfg, config_fp, data_fp)), None)

    if (run := mine(found)) is not None:
        return Target(cfg, run, fresh)
    if not offline:  # a setting that would stop the first step leaves no run behind (nor a runs folder)
        registry.get(cfg.provider).check_settings(cfg)
    with runs_mod.choosing(root):  # two commands (or threads) starting on one config and data make one run
        if (run := mine(runs_mod.list_runs(root))) is not None:  # made by the other while this one waited
            return Target(cfg, run, fresh)
        previous = runs_mod.latest(root, cfg.name, cfg.provider)
        run = Run.create(root, cfg.name, cfg.provider, config_fp, data_fp)
        resolved = {**cfg.model_dump(mode="json"), "base_dir": cfg.base_dir}
        import yaml
        runs_mod.atomic_write(run.file("config.yaml"), yaml.safe_dump(resolved, sort_keys=False))
    if previous is not None and not new:
        reason = _why_new(previous, run, cfg, config_fp, fresh)
        run.set_fields(started_because=reason)
        progress.warn(reason)
    return Target(cfg, run, fresh)


def ask(look, fallback, failed: list[str] | None = None):
    """A read-only look at the service whose failure is reported, not raised (status, doctor, down's
    bookkeeping): `fallback` then, and what went wrong appended to `failed`."""
    try:
        return look()
    except (ImgclsError, OSError) as exc:
        if failed is not None:
            failed.append(getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}")
        return fallback


def is_run_of(run: Run, cfg: RunConfig, config_fp: str, data_fp: str | None = None) -> bool:
    """`run` was made by this config (name, provider, fingerprint) on this data (when `data_fp` is given;
    a run that recorded no data is taken as on any)."""
    return run.name == cfg.name and run.provider == cfg.provider \
        and run.ledger.get("config_fingerprint") == config_fp \
        and (data_fp is None or run_data_fingerprint(run) in (data_fp, None))


def warn_damaged(damaged: list, cfg: RunConfig, progress: Progress) -> list:
    """A run of this config whose ledger cannot be read is not silently passed over: each is warned
    about, and returned."""
    mine = [d for d in damaged if d.id.startswith(f"{cfg.name}-{cfg.provider}-")]
    for d in mine:
        progress.warn(f"run {d.id} was passed over: its ledger {d.path} is damaged ({d.reason}); "
                      f"`imgcls doctor --run {d.id}` rebuilds it")
    return mine


def _why_new(previous: Run, run: Run, cfg: RunConfig, config_fp: str, fresh: pd.DataFrame | None) -> str:
    reasons = []
    if fresh is not None and run_data_fingerprint(previous) not in (data_fingerprint(fresh), None) \
            and previous.file("manifest.jsonl").exists():
        reasons.append("the data changed (" + describe_diff(data_diff(manifest.read(previous.file("manifest.jsonl")),
                                                                       fresh)) + ")")
    if previous.ledger.get("config_fingerprint") != config_fp:
        reasons.append("the config's task/dataset/split/train settings changed")
    return f"starting a new run {run.id}: since run {previous.id}, " + " and ".join(reasons or ["the config changed"])


def run_data_fingerprint(run: Run) -> str | None:
    """The fingerprint of the data a run was started on; older ledgers have none, so their manifest's."""
    recorded = run.ledger.get("data_fingerprint")
    if recorded:
        return recorded
    path = run.file("manifest.jsonl")
    return data_fingerprint(manifest.read(path)) if path.exists() else None

"""`migrate`: a Custom Vision project moved to another provider in one command.

Its tagged images are imported (sources by URI), a config for the target provider is written (or the
given one used), a model is trained and evaluated there, and the project's published iteration is
adopted and evaluated on the same test images; the result ends with the comparison of the two.
"""
from __future__ import annotations

from pathlib import Path

from ..comparison import compare
from ..config import RunConfig
from ..data import sources
from ..errors import ConfigError, UsageError
from ..progress import Progress
from ..providers import registry
from ..runs import atomic_write
from .adopt import adopt
from .lifecycle import evaluate, import_dataset, train
from .runstate import QUIET, load, source_config, source_name

FROM = ("customvision",)
# The old iteration learnt from every tagged image of its project, the images of our test split with them.
SEEN_WARNING = ("the Custom Vision iteration was trained on every tagged image of the project, this test split "
                "included, so its figures are optimistic: the comparison flatters the old model")


def migrate(source: str, to: str | None, config: str | Path, overrides: list[str] = (),
            timeout: float | None = None, progress: Progress = QUIET) -> dict:
    """Move `source` ("customvision:<project>[/<published name>]") to provider `to`, with the run config
    at `config` (written when missing, for the target provider, reading the project). Returns the
    config path, the new run and its evaluation, the adopted old iteration and its evaluation, and
    `compare`'s table of the two (old first: the baseline)."""
    scheme = sources.scheme_of(source)
    if scheme not in FROM:
        raise UsageError(f"migrate moves a Custom Vision project; {source!r} is not one",
                         hint="write customvision:<project id or name>[/<published iteration>]; for other "
                              "data, `imgcls dataset-import SOURCE -c CONFIG` then `imgcls train`")
    project, _, publication = source[len(scheme) + 1:].partition("/")
    if not project.strip():
        raise UsageError(f"{source!r} names no project", hint="customvision:<project id or name>")
    data_uri = f"{scheme}:{project}"
    path = Path(config)
    written = not path.exists()
    if written:
        _write_config(path, data_uri, to or "")
    cfg = _load(path, to, overrides, written)
    if cfg.provider == scheme:
        raise UsageError(f"--to {cfg.provider}: that is where the project already is",
                         hint="--to azureml (Microsoft's successor), vertex, local or aws")
    cfg = source_config(data_uri, cfg)
    progress.log(f"migrating {data_uri} to {cfg.provider} with {path}")
    new_run, _ = import_dataset(cfg, progress=progress)
    train(cfg, run_id=new_run.id, timeout=timeout, progress=progress)
    _, new_eval = evaluate(cfg, run_id=new_run.id, timeout=timeout, progress=progress)
    old_run, old_model = adopt(f"{data_uri}/{publication}", cfg, name=f"{cfg.name}-customvision",
                               progress=progress)
    _, old_eval = evaluate(None, run_id=old_run.id, timeout=timeout, progress=progress)
    comparison = compare([old_run.id, new_run.id])
    progress.warn(SEEN_WARNING)
    return {"config": str(path), "config_written": written, "source": data_uri, "warnings": [SEEN_WARNING],
            "old": {"run": old_run.id, "adopted": old_model.extra.get("adopted"), "metrics": old_eval.metrics},
            "new": {"run": new_run.id, "provider": cfg.provider, "metrics": new_eval.metrics},
            "comparison": comparison}


def _write_config(path: Path, data_uri: str, to: str) -> None:
    """A starter config for the target with the target's section switched on and the project's task."""
    from ..templates import starter_config
    if not to:
        raise UsageError(f"{path} does not exist, so migrate writes it: name the provider with --to",
                         hint="--to azureml, --to vertex, --to local or --to aws")
    registry.check_name(to)
    task = sources.list_images(data_uri, None, keep=True)[1]      # kept: the import does not list again
    atomic_write(path, starter_config(source_name(data_uri), to, data_uri, task=task, sections=(to,)))


def _load(path: Path, to: str | None, overrides, written: bool) -> RunConfig:
    """The config, for provider `to` when given."""
    try:
        return load(path, to, list(overrides))
    except ConfigError as exc:
        if written:   # the starter's placeholders (a bucket, a workspace…) need the user's values
            hint = "; ".join(h for h in (exc.hint, f"edit {path}, then run the same `imgcls migrate` again") if h)
            raise ConfigError(f"{exc.message} (in {path}, which migrate has just written)", hint=hint,
                              **exc.details) from None
        raise

"""Dataset commands: dataset-import and validate."""
from __future__ import annotations

import os
import sys

import click

from ..render import render_validation
from .options import State, data_change_option, load, shared_options
from .output import emit


@click.command("dataset-import")
@click.argument("source", required=False)
@shared_options
@data_change_option
@click.pass_obj
def dataset_import(state: State, source, allow_data_change):
    """Read the dataset, check it, split it, and upload it to the provider.

    SOURCE, when given, replaces the config's dataset.source: a folder, an import file, or a source by
    URI (customvision:<project>, gs://…, s3://…, az://…). With no config file, a config is made for it
    (provider local unless --provider; the task is the source's own)."""
    from .. import api
    from ..errors import UsageError
    if source and state.run_id:
        raise UsageError("SOURCE starts an import, --run goes on with a run's own data: give one of them",
                         hint="rerun the same `imgcls dataset-import SOURCE`: what was fetched is cached")
    if source:
        has_config = state.config_given or os.path.exists(state.config)
        cfg = api.source_config(source, load(state) if has_config else None, state.provider, state.overrides)
    else:
        cfg = load(state)
    run, ref = api.import_dataset(cfg, state.run_id, allow_data_change=allow_data_change, progress=state.progress)
    emit(state, {"run": run.id, "dataset": ref},
         lambda v: click.echo(f"run {run.id}: dataset {ref.id} — {ref.images} images, {len(ref.labels)} labels"))


@click.command()
@shared_options
@click.option("--fix", is_flag=True, help="Write a cleaned manifest into a run (never touches your files): "
                                          "leaves out what cannot be used, merges labels that differ only in case.")
@click.pass_obj
def validate(state: State, fix):
    """Check the dataset against the provider's limits, offline, before any upload (exit 4 on errors)."""
    from .. import api
    from ..errors import DataError
    cfg = load(state)
    result = api.validate(cfg, fix=fix, run_id=state.run_id, progress=state.progress)
    if state.json:
        emit(state, result)
    else:
        render_validation(result)
    if result["errors"]:
        if state.json:
            sys.exit(DataError.exit_code)
        raise DataError(f"{result['errors']} problem(s) found", hint="fix them, or run `imgcls validate --fix`")


COMMANDS = [dataset_import, validate]

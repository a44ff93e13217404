"""Dataset commands: dataset-import and validate."""
from __future__ import annotations

import sys

import click

from ..render import render_validation
from .options import State, config_options, data_change_option, load, run_option
from .output import emit, handle_errors


@click.command("dataset-import")
@config_options
@run_option
@data_change_option
@click.pass_obj
@handle_errors
def dataset_import(state: State, config_path, provider, overrides, run_id, allow_data_change):
    """Read the dataset, check it, split it, and upload it to the provider."""
    from .. import api
    cfg = load(config_path, provider, overrides, run_id)
    run, ref = api.import_dataset(cfg, run_id, allow_data_change=allow_data_change, progress=state.progress)
    emit(state, {"run": run.id, "dataset": ref},
         lambda v: click.echo(f"run {run.id}: dataset {ref.id} — {ref.images} images, {len(ref.labels)} labels"))


@click.command()
@config_options
@click.option("--fix", is_flag=True, help="Write a cleaned manifest into a run (never touches your files).")
@run_option
@click.pass_obj
@handle_errors
def validate(state: State, config_path, provider, overrides, fix, run_id):
    """Check the dataset against the provider's limits, offline, before any upload (exit 4 on errors)."""
    from .. import api
    from ..errors import DataError
    cfg = load(config_path, provider, overrides)
    result = api.validate(cfg, fix=fix, run_id=run_id, progress=state.progress)
    if state.json:
        emit(state, result)
    else:
        render_validation(result)
    if result["errors"]:
        if state.json:
            sys.exit(DataError.exit_code)
        raise DataError(f"{result['errors']} problem(s) found", hint="fix them, or run `imgcls validate --fix`")


COMMANDS = [dataset_import, validate]

"""Dataset commands: dataset-import, validate and dataset-export."""
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


_EXPORT_FORMATS = ("vertex-csv", "vertex-jsonl", "azureml-mltable", "manifest", "folder", "label-folders")


@click.command("dataset-export")
@shared_options
@click.option("--format", "fmt", type=click.Choice(_EXPORT_FORMATS), required=True,
              help="vertex-csv / vertex-jsonl: a Vertex AI import file; azureml-mltable: an MLTable + JSON Lines "
                   "per split; manifest: imgcls's own; folder: <split>/<label>/ image copies; label-folders: "
                   "<label>/ image copies (Custom Vision: one upload per tag).")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Folder to write into (created).")
@click.option("--split", "splits", multiple=True, type=click.Choice(["train", "validation", "test"]),
              help="Only this split (repeatable); default: all.")
@click.option("--uri-prefix", metavar="URI",
              help="Import files list each image as URI/images/<sha256>.<ext> (e.g. gs://bucket/path); the "
                   "images are copied to OUT/images/ for you to upload there.")
@click.pass_obj
def dataset_export(state: State, fmt, out, splits, uri_prefix):
    """Write a run's manifest (--run), or the config's dataset split as a run would split it, in another
    provider's import format or as a folder tree: the way out, for any provider."""
    from ..api.dataset_export import export_dataset
    cfg = load(state)
    result = export_dataset(cfg, out, fmt, state.run_id, list(splits), uri_prefix, progress=state.progress)

    def render(v):
        split_text = ", ".join(f"{s} {n}" for s, n in v["splits"].items() if n)
        click.echo(f"{v['images']} images, {v['labels']} labels ({split_text}) from {v['source']} as {fmt} "
                   f"in {v['out']}" + (f"; {v['copied']} image files written" if v["copied"] else ""))
        for f in v["files"]:
            click.echo(f)
        if v.get("upload"):
            click.echo(f"next: {v['upload']}")

    emit(state, result, render)


@click.command()
@shared_options
@click.argument("source")
@click.option("--to", "to", metavar="PROVIDER", help="Where to: azureml (Microsoft's successor to Custom Vision), "
                                                    "vertex, local, aws. Default: the config's provider.")
@click.option("--timeout", type=float, metavar="SECONDS", help="Give up waiting for training after this long "
                                                              "(exit 8; the same command picks it up again).")
@click.pass_obj
def migrate(state: State, source, to, timeout):
    """Move a Custom Vision project to another provider, and check the new model against the old one.

    \b
    SOURCE is customvision:<project id or name>[/<published iteration name>] (default: the latest
    published iteration). Imports every tagged image with its tags, writes the -c config for --to when
    the file does not exist (edit it and run again if it needs your values), trains and evaluates there,
    adopts the published iteration (never deleted by `down`) and evaluates it on the same test images,
    then prints the comparison, old model first.
    """
    from .. import api
    from ..errors import UsageError
    from ..render import render_migration
    if state.run_id:
        raise UsageError("migrate starts new runs; --run does not apply", hint="drop --run")
    result = api.migrate(source, to or state.provider, state.config, state.overrides, timeout=timeout,
                         progress=state.progress)
    emit(state, result, render_migration)


COMMANDS = [dataset_import, validate, dataset_export, migrate]

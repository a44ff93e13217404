"""A model's life: train, evaluate, deploy, export, predict, and run (all of them from one config)."""
from __future__ import annotations

import json
import sys

import click

from ..render import render_evaluation, render_predictions
from .options import State, config_options, data_change_option, load, run_option, wait_options
from .output import emit, handle_errors


@click.command()
@config_options
@run_option
@data_change_option
@wait_options
@click.pass_obj
@handle_errors
def train(state: State, config_path, provider, overrides, run_id, allow_data_change, wait, timeout):
    """Train a model (importing the dataset first if the run has none)."""
    from .. import api
    cfg = load(config_path, provider, overrides, run_id)
    run, result = api.train(cfg, run_id, wait=wait, timeout=timeout, allow_data_change=allow_data_change,
                            progress=state.progress)
    emit(state, {"run": run.id, "train": result},
         lambda v: click.echo(f"run {run.id}: training {result.status}"
                              + (f", model {result.model_id}" if result.model_id else "")
                              + (f" in {result.seconds:.0f} s" if result.seconds else "")))


@click.command()
@config_options
@run_option
@data_change_option
@click.option("--gate", "gates", multiple=True, metavar="METRIC>=VALUE",
              help="Fail (exit 9) unless the metric holds, e.g. accuracy>=0.9 or recall@roses>=0.8.")
@click.option("--timeout", type=float, metavar="SECONDS", help="Stop waiting for training after this long.")
@click.pass_obj
@handle_errors
def evaluate(state: State, config_path, provider, overrides, run_id, allow_data_change, gates, timeout):
    """Score the test split and compute metrics locally, the same way for every provider."""
    from .. import api
    from ..errors import QualityGateFailed
    cfg = load(config_path, provider, overrides, run_id)
    try:
        run, ev = api.evaluate(cfg, run_id, gates=list(gates), timeout=timeout,
                               allow_data_change=allow_data_change, progress=state.progress)
    except QualityGateFailed as exc:
        if state.json:
            click.echo(json.dumps({**exc.details.get("evaluation", {}), "error": exc.to_json()}, indent=2))
            sys.exit(exc.exit_code)
        raise
    emit(state, {"run": run.id, "evaluation": ev}, lambda v: render_evaluation(run.id, ev))


@click.command()
@config_options
@run_option
@click.option("--detach", is_flag=True, help="local: serve in the background; `imgcls down` stops it.")
@click.option("--port", type=int, help="local: the port to serve on.")
@click.option("--timeout", type=float, metavar="SECONDS")
@click.pass_obj
@handle_errors
def deploy(state: State, config_path, provider, overrides, run_id, detach, port, timeout):
    """Deploy the trained model to an endpoint (local: an HTTP server)."""
    from .. import api
    extra = [*overrides, *(["deploy.detach=true"] if detach else []), *([f"deploy.port={port}"] if port else [])]
    cfg = load(config_path, provider, extra, run_id)
    run, dep = api.deploy(cfg, run_id, timeout=timeout, progress=state.progress)
    emit(state, {"run": run.id, "deployment": dep},
         lambda v: click.echo(f"run {run.id}: {dep.status} at {dep.endpoint}"))


@click.command()
@config_options
@run_option
@click.option("--dest", type=click.Path(file_okay=False), help="Folder to write to (default: the run's "
                                                                "artifacts/export/).")
@click.pass_obj
@handle_errors
def export(state: State, config_path, provider, overrides, run_id, dest):
    """Download the trained model in portable formats (local: ONNX; customvision: compact domains;
    vertex: MOBILE_TF_* model types)."""
    from .. import api
    cfg = load(config_path, provider, overrides, run_id)
    run, paths = api.export(cfg, run_id, dest, progress=state.progress)
    emit(state, {"run": run.id, "files": [str(p) for p in paths]},
         lambda v: click.echo("\n".join(v["files"]) or f"run {run.id}: nothing exported"))


@click.command()
@config_options
@run_option
@click.argument("inputs", nargs=-1)
@click.option("--top-k", type=int, help="How many labels to show per image.")
@click.option("--offline", "via", flag_value="offline", help="Use the exported model even when deployed (local).")
@click.option("--endpoint", "via", flag_value="endpoint", help="Use the deployed endpoint.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "jsonl"]), default="table", show_default=True)
@click.pass_obj
@handle_errors
def predict(state: State, config_path, provider, overrides, run_id, inputs, top_k, via, fmt):
    """Predict images: files, folders, globs, or '-' to read a list of paths from stdin."""
    from .. import api
    items = list(inputs)
    if not items or items == ["-"]:
        if sys.stdin is None or sys.stdin.isatty():
            from ..errors import UsageError
            raise UsageError("no images given", hint="imgcls predict IMAGE… (or pipe a list of paths with '-')")
        items = [line.strip() for line in sys.stdin if line.strip()]
    cfg = load(config_path, provider, overrides, run_id)
    preds = api.predict(cfg, items, run_id, top_k=top_k, via=via or "auto", progress=state.progress)
    emit(state, {"predictions": preds}, lambda v: render_predictions(preds, fmt))


@click.command("run")
@config_options
@run_option
@data_change_option
@click.option("--timeout", type=float, metavar="SECONDS")
@click.argument("inputs", nargs=-1)
@click.pass_obj
@handle_errors
def run_cmd(state: State, config_path, provider, overrides, run_id, allow_data_change, timeout, inputs):
    """Every step from one config: import, train, evaluate, deploy, predict (INPUTS or 3 test images)."""
    from .. import api
    cfg = load(config_path, provider, overrides, run_id)
    result = api.run(cfg, run_id, list(inputs), timeout=timeout, allow_data_change=allow_data_change,
                     progress=state.progress)

    def render(_):
        render_evaluation(result["run"], result["evaluation"])
        dep = result["deployment"]
        click.echo(f"deployed: {dep.endpoint} ({dep.status})")
        render_predictions(result["predictions"], "table")
        click.echo(f"done in {result['seconds']:.0f} s — `imgcls down --run {result['run']}` "
                   f"removes what it created")

    emit(state, result, render)


COMMANDS = [train, evaluate, deploy, export, predict, run_cmd]

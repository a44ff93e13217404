"""A model's life: train, evaluate, deploy, export, predict, and run (all of them from one config).

Each command checks its own arguments (gates, inputs) before it loads the config: a typo costs no work.
"""
from __future__ import annotations

import json
import sys

import click

from ..render import render_evaluation, render_predictions
from .options import (
    State,
    data_change_option,
    load,
    shared_options,
    timeout_option,
    ttl_options,
    wait_options,
)
from .output import emit


@click.command()
@shared_options
@data_change_option
@wait_options
@click.pass_obj
def train(state: State, allow_data_change, wait, timeout):
    """Train a model (importing the dataset first if the run has none). Refused (exit 3) before anything
    is created when train.max_cost_usd is below `imgcls plan`'s training estimate (or it is unknown)."""
    from .. import api
    cfg = load(state)
    run, result = api.train(cfg, state.run_id, wait=wait, timeout=timeout, allow_data_change=allow_data_change,
                            progress=state.progress)
    emit(state, {"run": run.id, "train": result},
         lambda v: click.echo(f"run {run.id}: training {result.status}"
                              + (f", model {result.model_id}" if result.model_id else "")
                              + (f" in {result.seconds:.0f} s" if result.seconds else "")))


@click.command()
@shared_options
@data_change_option
@click.option("--gate", "gates", multiple=True, metavar="METRIC>=VALUE",
              help="Fail (exit 9) unless the metric holds, e.g. accuracy>=0.9 or recall@roses>=0.8.")
@timeout_option("Stop waiting for training after this long.")
@click.option("--data", metavar="SOURCE", help="An adopted run (`imgcls adopt`): evaluate on this dataset's test "
                                                "split (a folder or import file), which the run then keeps.")
@click.pass_obj
def evaluate(state: State, allow_data_change, gates, timeout, data):
    """Score the test split and compute metrics locally, the same way for every provider."""
    from ..metrics.gates import parse_gates
    parse_gates(list(gates))  # a typo here is exit 2 now, not after a whole evaluation
    from .. import api
    from ..errors import QualityGateFailed
    cfg = load(state)
    try:
        run, ev = api.evaluate(cfg, state.run_id, gates=list(gates), timeout=timeout,
                               allow_data_change=allow_data_change, data=data, progress=state.progress)
    except QualityGateFailed as exc:
        if state.json:
            click.echo(json.dumps({**exc.details.get("evaluation", {}), "error": exc.to_json()}, indent=2))
            sys.exit(exc.exit_code)
        raise
    emit(state, {"run": run.id, "evaluation": ev}, lambda v: render_evaluation(run.id, ev))


@click.command()
@shared_options
@click.option("--detach", is_flag=True, help="local: serve in the background; `imgcls down` stops it.")
@click.option("--port", type=int, help="local: the port to serve on.")
@ttl_options
@timeout_option()
@click.pass_obj
def deploy(state: State, detach, port, ttl, keep_on_failure, timeout):
    """Deploy the trained model to an endpoint (local: an HTTP server).

    Refused (exit 3) before anything is created when deploy.max_cost_usd_per_day (or train.max_cost_usd,
    if it must train first) is below `imgcls plan`'s estimate. A deploy that fails removes what it
    created, unless --keep-on-failure."""
    from .. import api
    extra = [*(["deploy.detach=true"] if detach else []), *([f"deploy.port={port}"] if port is not None else [])]
    cfg = load(state, extra)
    run, dep = api.deploy(cfg, state.run_id, timeout=timeout, progress=state.progress, ttl=ttl,
                          keep_on_failure=keep_on_failure)
    expires = (run.step("deploy") or {}).get("expires_at")
    emit(state, {"run": run.id, "deployment": dep, "expires_at": expires},
         lambda v: click.echo(f"run {run.id}: {dep.status} at {dep.endpoint}"
                              + (f" (expires {expires}; `imgcls down --expired` removes it then)" if expires else "")))


@click.command()
@shared_options
@click.option("--dest", type=click.Path(file_okay=False), help="Folder to write to (default: the run's "
                                                                "artifacts/export/).")
@click.pass_obj
def export(state: State, dest):
    """Download the trained model in portable formats (local: ONNX; customvision: compact domains;
    vertex: MOBILE_TF_* model types; azureml: the best AutoML trial's ONNX model and labels)."""
    from .. import api
    cfg = load(state)
    run, paths = api.export(cfg, state.run_id, dest, progress=state.progress)
    emit(state, {"run": run.id, "files": [str(p) for p in paths]},
         lambda v: click.echo("\n".join(v["files"]) or f"run {run.id}: nothing exported"))


def _inputs(inputs: tuple[str, ...], required: bool) -> list[str]:
    """The image paths INPUTS name ('-': a list on stdin), checked to exist before any other work."""
    from ..data.inputs import expand_inputs
    from ..errors import UsageError
    items = list(inputs)
    if items == ["-"] or (not items and required):
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError("no images given", hint="imgcls predict IMAGE… (or pipe a list of paths with '-')")
        items = [line.strip() for line in sys.stdin if line.strip()]
        if not items:
            raise UsageError("no images given: stdin was empty",
                             hint="imgcls predict IMAGE… (or pipe a list of paths with '-')")
    return expand_inputs(items) if items else []


@click.command()
@shared_options
@click.argument("inputs", nargs=-1)
@click.option("--top-k", type=click.IntRange(min=1), help="How many labels to show per image.")
@click.option("--offline", "via", flag_value="offline", help="Use the exported model even when deployed (local).")
@click.option("--endpoint", "via", flag_value="endpoint", help="Use the deployed endpoint.")
@click.option("--batch", is_flag=True, help="Use the provider's batch prediction (vertex: a batch prediction "
                                             "job; azureml: a batch endpoint; local: in-process), for many images.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "jsonl"]), default="table", show_default=True)
@click.pass_obj
def predict(state: State, inputs, top_k, via, batch, fmt):
    """Predict images: files, folders, globs, import files (.csv/.jsonl), or '-' to read a list of paths
    from stdin."""
    paths = _inputs(inputs, required=True)
    from .. import api
    cfg = load(state)
    preds = api.predict(cfg, paths, state.run_id, top_k=top_k, via=via or "auto", batch=batch,
                        progress=state.progress)
    emit(state, {"predictions": preds}, lambda v: render_predictions(preds, fmt))


@click.command("run")
@shared_options
@data_change_option
@ttl_options
@timeout_option()
@click.argument("inputs", nargs=-1)
@click.pass_obj
def run_cmd(state: State, allow_data_change, ttl, keep_on_failure, timeout, inputs):
    """Every step from one config: import, train, evaluate, deploy, predict (INPUTS or 3 test images).
    The caps (train.max_cost_usd, deploy.max_cost_usd_per_day) are checked before anything is created."""
    paths = _inputs(inputs, required=False)
    from .. import api
    cfg = load(state)
    result = api.run(cfg, state.run_id, paths, timeout=timeout, allow_data_change=allow_data_change,
                     progress=state.progress, ttl=ttl, keep_on_failure=keep_on_failure)

    def render(_):
        render_evaluation(result["run"], result["evaluation"])
        dep = result["deployment"]
        click.echo(f"deployed: {dep.endpoint} ({dep.status})")
        render_predictions(result["predictions"], "table")
        click.echo(f"done in {result['seconds']:.0f} s — `imgcls down --run {result['run']}` "
                   f"removes what it created")

    emit(state, result, render)


COMMANDS = [train, evaluate, deploy, export, predict, run_cmd]

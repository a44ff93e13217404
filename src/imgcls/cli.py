"""The click commands: parse options, call imgcls.api, print text or --json, map errors to exit codes.

Nothing here knows a vendor, and nothing heavy is imported at module level: `imgcls --help` stays fast.
"""
from __future__ import annotations

import functools
import json
import sys
import traceback
from pathlib import Path

import click

from .errors import EXIT_INTERRUPTED, ImgclsError
from .render import (
    render_compare,
    render_compare_html,
    render_evaluation,
    render_predictions,
    render_providers,
    render_status,
    render_validation,
)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class State:
    def __init__(self, as_json: bool, quiet: bool, verbose: int):
        self.json, self.quiet, self.verbose = as_json, quiet, verbose

    @functools.cached_property
    def progress(self):
        from .progress import Progress
        return Progress(enabled=not (self.json or self.quiet), verbose=self.verbose)


def emit(state: State, value, render=None) -> None:
    """stdout is for results: one JSON document under --json, else the human rendering."""
    from .runs import to_jsonable
    if state.json:
        click.echo(json.dumps(to_jsonable(value), indent=2))
    elif render is not None:
        render(value)
    else:
        click.echo(json.dumps(to_jsonable(value), indent=2))


def handle_errors(fn):
    """The one place errors become exit codes (STYLE.md rule 5)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        state: State = click.get_current_context().find_object(State) or State(False, False, 0)
        try:
            return fn(*args, **kwargs)
        except ImgclsError as exc:
            _report(state, exc.to_json(), str(exc))
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            _report(state, {"error": "Interrupted", "message": "interrupted", "exit_code": EXIT_INTERRUPTED},
                    "interrupted; what was recorded is kept — resume with --run RUN_ID")
            sys.exit(EXIT_INTERRUPTED)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # a bug of ours: say so in one line, traceback only with -v
            if state.verbose:
                traceback.print_exc()
            _report(state, {"error": type(exc).__name__, "message": str(exc), "exit_code": 1},
                    f"unexpected error: {type(exc).__name__}: {exc}\n  hint: run with -v for the traceback "
                    "and report it at the imgcls issue tracker")
            sys.exit(1)

    return wrapper


def _report(state: State, doc: dict, text: str) -> None:
    if state.json:
        click.echo(json.dumps(doc, indent=2, default=str))
    else:
        click.echo(f"error: {text}", err=True)


# -- shared options -------------------------------------------------------------------------

def config_options(fn):
    fn = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                      help="Override any config key, e.g. --set train.preset=best.")(fn)
    fn = click.option("--provider", "-p", help="Provider, overriding the config's.")(fn)
    fn = click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False), default="imgcls.yaml",
                      show_default=True, envvar="IMGCLS_CONFIG", help="The YAML run config.")(fn)
    return fn


def run_option(fn):
    return click.option("--run", "run_id", metavar="RUN_ID",
                        help="Continue this run (default: the latest run of this config and provider).")(fn)


def wait_options(fn):
    fn = click.option("--timeout", type=float, metavar="SECONDS",
                      help="Stop waiting after this long (exit 8; the run stays resumable).")(fn)
    fn = click.option("--wait/--no-wait", default=True, help="Wait for long operations to finish.")(fn)
    return fn


def load(config_path: str, provider: str | None, overrides) -> object:
    from . import api
    return api.load(config_path, provider, list(overrides))


@click.group(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON document on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress or logs on stderr.")
@click.option("-v", "--verbose", count=True, help="More detail on stderr (-v shows tracebacks of bugs).")
@click.version_option(package_name="imgcls")
@click.pass_context
def main(ctx: click.Context, as_json: bool, quiet: bool, verbose: int) -> None:
    """imgcls: train, evaluate, deploy and predict image classifiers on any provider.

    \b
    Exit codes: 0 ok, 1 unexpected, 2 usage, 3 config, 4 data, 5 auth, 6 provider failed,
    7 unsupported, 8 timed out (resumable), 9 quality gate failed, 130 interrupted.
    """
    ctx.obj = State(as_json, quiet, verbose)


@main.command("dataset-import")
@config_options
@run_option
@click.pass_obj
@handle_errors
def dataset_import(state: State, config_path, provider, overrides, run_id):
    """Read the dataset, check it, split it, and upload it to the provider."""
    from . import api
    cfg = load(config_path, provider, overrides)
    run, ref = api.import_dataset(cfg, run_id, progress=state.progress)
    emit(state, {"run": run.id, "dataset": ref},
         lambda v: click.echo(f"run {run.id}: dataset {ref.id} — {ref.images} images, {len(ref.labels)} labels"))


@main.command()
@config_options
@click.option("--fix", is_flag=True, help="Write a cleaned manifest into a run (never touches your files).")
@run_option
@click.pass_obj
@handle_errors
def validate(state: State, config_path, provider, overrides, fix, run_id):
    """Check the dataset against the provider's limits, offline, before any upload (exit 4 on errors)."""
    from . import api
    from .errors import DataError
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


@main.command()
@config_options
@run_option
@wait_options
@click.pass_obj
@handle_errors
def train(state: State, config_path, provider, overrides, run_id, wait, timeout):
    """Train a model (importing the dataset first if the run has none)."""
    from . import api
    cfg = load(config_path, provider, overrides)
    run, result = api.train(cfg, run_id, wait=wait, timeout=timeout, progress=state.progress)
    emit(state, {"run": run.id, "train": result},
         lambda v: click.echo(f"run {run.id}: training {result.status}"
                              + (f", model {result.model_id}" if result.model_id else "")
                              + (f" in {result.seconds:.0f} s" if result.seconds else "")))


@main.command()
@config_options
@run_option
@click.option("--gate", "gates", multiple=True, metavar="METRIC>=VALUE",
              help="Fail (exit 9) unless the metric holds, e.g. accuracy>=0.9 or recall@roses>=0.8.")
@click.option("--timeout", type=float, metavar="SECONDS", help="Stop waiting for training after this long.")
@click.pass_obj
@handle_errors
def evaluate(state: State, config_path, provider, overrides, run_id, gates, timeout):
    """Score the test split and compute metrics locally, the same way for every provider."""
    from . import api
    from .errors import QualityGateFailed
    cfg = load(config_path, provider, overrides)
    try:
        run, ev = api.evaluate(cfg, run_id, gates=list(gates), timeout=timeout, progress=state.progress)
    except QualityGateFailed as exc:
        if state.json:
            click.echo(json.dumps({**exc.details.get("evaluation", {}), "error": exc.to_json()}, indent=2))
            sys.exit(exc.exit_code)
        raise
    emit(state, {"run": run.id, "evaluation": ev}, lambda v: render_evaluation(run.id, ev))


@main.command()
@config_options
@run_option
@click.option("--detach", is_flag=True, help="local: serve in the background; `imgcls down` stops it.")
@click.option("--port", type=int, help="local: the port to serve on.")
@click.option("--timeout", type=float, metavar="SECONDS")
@click.pass_obj
@handle_errors
def deploy(state: State, config_path, provider, overrides, run_id, detach, port, timeout):
    """Deploy the trained model to an endpoint (local: an HTTP server)."""
    from . import api
    extra = [*overrides, *(["deploy.detach=true"] if detach else []), *([f"deploy.port={port}"] if port is not None else [])]
    cfg = load(config_path, provider, extra)
    run, dep = api.deploy(cfg, run_id, timeout=timeout, progress=state.progress)
    emit(state, {"run": run.id, "deployment": dep},
         lambda v: click.echo(f"run {run.id}: {dep.status} at {dep.endpoint}"))


@main.command()
@config_options
@run_option
@click.option("--dest", type=click.Path(file_okay=False), help="Folder to write to (default: the run's "
                                                                "artifacts/export/).")
@click.pass_obj
@handle_errors
def export(state: State, config_path, provider, overrides, run_id, dest):
    """Download the trained model in portable formats (local: ONNX; customvision: compact domains;
    vertex: MOBILE_TF_* model types)."""
    from . import api
    cfg = load(config_path, provider, overrides)
    run, paths = api.export(cfg, run_id, dest, progress=state.progress)
    emit(state, {"run": run.id, "files": [str(p) for p in paths]},
         lambda v: click.echo("\n".join(v["files"]) or f"run {run.id}: nothing exported"))


@main.command()
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
    from . import api
    items = list(inputs)
    if not items or items == ["-"]:
        if sys.stdin is None or sys.stdin.isatty():
            from .errors import UsageError
            raise UsageError("no images given", hint="imgcls predict IMAGE… (or pipe a list of paths with '-')")
        items = [line.strip() for line in sys.stdin if line.strip()]
    cfg = load(config_path, provider, overrides)
    preds = api.predict(cfg, items, run_id, top_k=top_k, via=via or "auto", progress=state.progress)
    emit(state, {"predictions": preds}, lambda v: render_predictions(preds, fmt))


@main.command("run")
@config_options
@run_option
@click.option("--timeout", type=float, metavar="SECONDS")
@click.argument("inputs", nargs=-1)
@click.pass_obj
@handle_errors
def run_cmd(state: State, config_path, provider, overrides, run_id, timeout, inputs):
    """Every step from one config: import, train, evaluate, deploy, predict (INPUTS or 3 test images)."""
    from . import api
    cfg = load(config_path, provider, overrides)
    result = api.run(cfg, run_id, list(inputs), timeout=timeout, progress=state.progress)

    def render(_):
        render_evaluation(result["run"], result["evaluation"])
        dep = result["deployment"]
        click.echo(f"deployed: {dep.endpoint} ({dep.status})")
        render_predictions(result["predictions"], "table")
        click.echo(f"done in {result['seconds']:.0f} s — `imgcls down --run {result['run']}` "
                   f"removes what it created")

    emit(state, result, render)


@main.command()
@click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False), envvar="IMGCLS_CONFIG")
@click.option("--provider", "-p")
@click.option("--set", "overrides", multiple=True)
@run_option
@click.option("--runs-dir", type=click.Path(file_okay=False), help="Where runs live (default .imgcls/runs).")
@click.pass_obj
@handle_errors
def status(state: State, config_path, provider, overrides, run_id, runs_dir):
    """Show a run (its steps, training state and resources), or list the runs."""
    from . import api
    cfg = load(config_path, provider, overrides) if config_path else None
    result = api.status(cfg, run_id, runs_dir, progress=state.progress)
    emit(state, result, render_status)


@main.command()
@config_options
@run_option
@click.option("--keep", multiple=True, metavar="KIND",
              help="Keep resources of this kind (e.g. --keep project, --keep model, --keep dataset).")
@click.option("--keep-project", is_flag=True, help="customvision: keep the project and its images.")
@click.option("--keep-model", is_flag=True, help="Keep the trained model.")
@click.option("--keep-dataset", is_flag=True, help="Keep the uploaded dataset.")
@click.pass_obj
@handle_errors
def down(state: State, config_path, provider, overrides, run_id, keep, keep_project, keep_model, keep_dataset):
    """Delete every cloud resource (or local server) the run created, as its ledger lists them."""
    from . import api
    kinds = set(keep) | ({"project", "image"} if keep_project else set()) | ({"model"} if keep_model else set()) \
        | ({"dataset", "data", "blob", "object"} if keep_dataset else set())
    cfg = load(config_path, provider, overrides)
    result = api.down(cfg, run_id, tuple(sorted(kinds)), progress=state.progress)
    emit(state, result, lambda v: click.echo(f"run {result['run']}: deleted {len(result['deleted'])}, "
                                             f"kept {len(result['kept'])}"))


@main.command("providers")
@click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False))
@click.pass_obj
@handle_errors
def providers_cmd(state: State, config_path):
    """Each provider: what it supports, its limits, whether its SDK is installed and credentials found."""
    from .providers import registry
    cfg = load(config_path, None, ()) if config_path else None
    emit(state, {"providers": registry.describe(cfg)}, lambda v: render_providers(v["providers"]))


@main.command()
@click.argument("path", type=click.Path(dir_okay=False), default="imgcls.yaml")
@click.option("--provider", "-p", default="local", show_default=True)
@click.option("--source", default="data/", show_default=True, help="The dataset folder.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.pass_obj
@handle_errors
def init(state: State, path, provider, source, force):
    """Write a commented starter config."""
    from .errors import UsageError
    from .providers import registry
    from .templates import starter_config
    registry.check_name(provider)
    target = Path(path)
    if target.exists() and not force:
        raise UsageError(f"{target} exists", hint="pass --force to overwrite, or give another path")
    from .runs import atomic_write
    atomic_write(target, starter_config(target.stem, provider, source))
    emit(state, {"written": str(target)}, lambda v: click.echo(f"wrote {target}; edit it, then "
                                                                  f"`imgcls validate -c {target}`"))


@main.command()
@click.argument("runs", nargs=-1, required=True)
@click.option("--runs-dir", default=".imgcls/runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Compare on the shared test images even if the splits differ.")
@click.option("--html", "html_out", type=click.Path(dir_okay=False), help="Also write an HTML table here.")
@click.pass_obj
@handle_errors
def compare(state: State, runs, runs_dir, force, html_out):
    """Compare evaluated runs (any providers) on the same test images."""
    from . import api
    result = api.compare(list(runs), runs_dir, force)
    if html_out:
        from .runs import atomic_write
        atomic_write(Path(html_out), render_compare_html(result))
        result["html"] = html_out
    emit(state, result, render_compare)


@main.command()
@click.argument("run_id", required=False)
@click.option("--runs-dir", default=".imgcls/runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--open", "open_it", is_flag=True, help="Open it in the browser, when there is one.")
@click.pass_obj
@handle_errors
def report(state: State, run_id, runs_dir, open_it):
    """Print the path of a run's HTML report (the latest evaluated run by default)."""
    from . import api
    path = api.report_path(run_id, runs_dir)
    opened = False
    if open_it:
        import webbrowser
        try:
            opened = webbrowser.open(path.resolve().as_uri())
        except webbrowser.Error:
            opened = False
        if not opened:
            state.progress.log("no browser found here; open the file by hand")
    emit(state, {"report": str(path), "opened": opened}, lambda v: click.echo(str(path)))


@main.group()
def config():
    """Config helpers."""


@config.command("schema")
@click.pass_obj
@handle_errors
def config_schema(state: State):
    """Print the JSON Schema of the run config (for editors)."""
    from .config import schema
    click.echo(json.dumps(schema(), indent=2))


@config.command("show")
@config_options
@click.pass_obj
@handle_errors
def config_show(state: State, config_path, provider, overrides):
    """Print the resolved config (variables expanded, overrides applied)."""
    cfg = load(config_path, provider, overrides)
    emit(state, cfg.model_dump(mode="json"), lambda v: click.echo(json.dumps(v, indent=2)))


if __name__ == "__main__":  # pragma: no cover
    main()

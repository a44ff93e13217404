"""Commands about runs that exist: status, down, compare, report."""
from __future__ import annotations

from pathlib import Path

import click

from ..render import render_compare, render_compare_html, render_status
from .options import State, config_options, load, run_option
from .output import emit, handle_errors


@click.command()
@click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False), envvar="IMGCLS_CONFIG")
@click.option("--provider", "-p")
@click.option("--set", "overrides", multiple=True)
@run_option
@click.option("--runs-dir", type=click.Path(file_okay=False), help="Where runs live (default .imgcls/runs).")
@click.pass_obj
@handle_errors
def status(state: State, config_path, provider, overrides, run_id, runs_dir):
    """Show a run (its steps, training state and resources), or list the runs."""
    from .. import api
    cfg = load(config_path, provider, overrides) if config_path else None
    result = api.status(cfg, run_id, runs_dir, progress=state.progress)
    emit(state, result, render_status)


@click.command()
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
    from .. import api
    kinds = set(keep) | ({"project", "image"} if keep_project else set()) | ({"model"} if keep_model else set()) \
        | ({"dataset", "data", "blob", "object"} if keep_dataset else set())
    cfg = load(config_path, provider, overrides)
    result = api.down(cfg, run_id, tuple(sorted(kinds)), progress=state.progress)
    emit(state, result, lambda v: click.echo(f"run {result['run']}: deleted {len(result['deleted'])}, "
                                             f"kept {len(result['kept'])}"))


@click.command()
@click.argument("runs", nargs=-1, required=True)
@click.option("--runs-dir", default=".imgcls/runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Compare on the shared test images even if the splits differ.")
@click.option("--html", "html_out", type=click.Path(dir_okay=False), help="Also write an HTML table here.")
@click.pass_obj
@handle_errors
def compare(state: State, runs, runs_dir, force, html_out):
    """Compare evaluated runs (any providers) on the same test images."""
    from .. import api
    result = api.compare(list(runs), runs_dir, force)
    if html_out:
        from ..runs import atomic_write
        atomic_write(Path(html_out), render_compare_html(result))
        result["html"] = html_out
    emit(state, result, render_compare)


@click.command()
@click.argument("run_id", required=False)
@click.option("--runs-dir", default=".imgcls/runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--open", "open_it", is_flag=True, help="Open it in the browser, when there is one.")
@click.pass_obj
@handle_errors
def report(state: State, run_id, runs_dir, open_it):
    """Print the path of a run's HTML report (the latest evaluated run by default)."""
    from .. import api
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


COMMANDS = [status, down, compare, report]

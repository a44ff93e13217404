"""Commands about runs that exist: status, down, compare, report."""
from __future__ import annotations

from pathlib import Path

import click

from ..render import render_compare, render_compare_html, render_status
from .options import State, load, shared_options
from .output import emit


@click.command()
@shared_options
@click.option("--runs-dir", type=click.Path(file_okay=False), help="Where runs live (default .imgcls/runs).")
@click.pass_obj
def status(state: State, runs_dir):
    """Show a run (its steps, training state and resources), or list the runs."""
    from .. import api
    cfg = load(state, config_path=state.config_given) if state.config_given else None
    result = api.status(cfg, state.run_id, runs_dir, progress=state.progress)
    emit(state, result, render_status)


@click.command()
@shared_options
@click.option("--keep", multiple=True, metavar="KIND",
              help="Keep resources of this kind (e.g. --keep project, --keep model, --keep dataset).")
@click.option("--keep-project", is_flag=True, help="customvision: keep the project and its images.")
@click.option("--keep-model", is_flag=True, help="Keep the trained model.")
@click.option("--keep-dataset", is_flag=True, help="Keep the uploaded dataset.")
@click.pass_obj
def down(state: State, keep, keep_project, keep_model, keep_dataset):
    """Delete every cloud resource (or local server) the run created, as its ledger lists them."""
    from .. import api
    kinds = set(keep) | ({"project", "image"} if keep_project else set()) | ({"model"} if keep_model else set()) \
        | ({"dataset", "data", "blob", "object"} if keep_dataset else set())
    cfg = load(state)
    result = api.down(cfg, state.run_id, tuple(sorted(kinds)), progress=state.progress)
    emit(state, result, lambda v: click.echo(f"run {result['run']}: deleted {len(result['deleted'])}, "
                                             f"kept {len(result['kept'])}"))


@click.command()
@shared_options(config=False)
@click.argument("runs", nargs=-1, required=True)
@click.option("--runs-dir", default=".imgcls/runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Compare on the shared test images even if the splits differ.")
@click.option("--html", "html_out", type=click.Path(dir_okay=False), help="Also write an HTML table here.")
@click.pass_obj
def compare(state: State, runs, runs_dir, force, html_out):
    """Compare evaluated runs (any providers) on the same test images."""
    from .. import api
    from ..errors import UsageError
    if html_out and not Path(html_out).resolve().parent.is_dir():
        raise UsageError(f"--html {html_out}: the folder {Path(html_out).parent} does not exist")
    result = api.compare(list(runs), runs_dir, force)
    if html_out:
        from ..runs import atomic_write
        atomic_write(Path(html_out), render_compare_html(result))
        result["html"] = html_out
    emit(state, result, render_compare)


@click.command()
@shared_options(config=False)
@click.argument("run_id", required=False)
@click.option("--runs-dir", default=".imgcls/runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--open", "open_it", is_flag=True, help="Open it in the browser, when there is one.")
@click.pass_obj
def report(state: State, run_id, runs_dir, open_it):
    """Print the path of a run's HTML report (the latest evaluated run by default)."""
    from .. import api
    path = api.report_path(run_id or state.run_id, runs_dir)
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

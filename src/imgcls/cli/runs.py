"""Commands about runs that exist: status, down, compare, report; adopt makes a run of a model that exists."""
from __future__ import annotations

from pathlib import Path

import click

from ..render import render_compare, render_compare_html, render_down, render_runs, render_status
from .options import State, load, shared_options
from .output import emit


@click.command()
@shared_options
@click.option("--runs-dir", type=click.Path(file_okay=False), help="Where runs live (default .imgcls/runs).")
@click.option("--all", "all_runs", is_flag=True,
              help="What bills now: every run under the project with live resources, its provider, age, "
                   "expiry (time left) and the estimated endpoint cost per day and so far.")
@click.pass_obj
def status(state: State, runs_dir, all_runs):
    """Show a run (its steps, training state, and each resource as the provider sees it now, and the
    endpoint's time left), or list the runs. Only reads: never trains, uploads or deletes."""
    from .. import api
    if all_runs:
        from .costs import render_bills
        emit(state, api.bills(runs_dir), render_bills)
        return
    cfg = load(state, config_path=state.config_given) if state.config_given else None
    result = api.status(cfg, state.run_id, runs_dir, progress=state.progress)
    emit(state, result, render_status)


@click.command("runs")
@shared_options(config=False)
@click.option("--runs-dir", type=click.Path(file_okay=False), help="Where runs live (default: the project's "
                                                                     ".imgcls/runs, found from any folder under it).")
@click.pass_obj
def runs_cmd(state: State, runs_dir):
    """List the runs: provider, state, created, data fingerprint, and what each still holds live.
    Damaged ledgers are listed too (fix them with `imgcls doctor`)."""
    from .. import api
    emit(state, api.runs(runs_dir), render_runs)


@click.command()
@shared_options(config=False)
@click.option("--run", "run_id", metavar="RUN_ID", help="Only this run.")
@click.option("--runs-dir", type=click.Path(file_okay=False), help="Where runs live.")
@click.pass_obj
def doctor(state: State, run_id, runs_dir):
    """Rebuild damaged ledgers (from ledger.json.bak, else from the run folder) and reconcile entries a
    killed command left pending with the provider. The damaged file is kept beside the new one."""
    from .. import api
    result = api.doctor(run_id or state.run_id, runs_dir, progress=state.progress)
    emit(state, result, lambda v: click.echo(v["message"] or "\n".join(
        f"run {r['run']}: rebuilt from {r['from']} (it was: {r['was']})" for r in v["repaired"])))


@click.command()
@shared_options
@click.option("--dry-run", is_flag=True, help="List what would be deleted and kept; change nothing.")
@click.option("--keep", multiple=True, metavar="KIND",
              help="Keep resources of this kind (e.g. --keep project, --keep model, --keep dataset).")
@click.option("--keep-project", is_flag=True, help="customvision: keep the project and its images.")
@click.option("--keep-model", is_flag=True, help="Keep the trained model.")
@click.option("--keep-dataset", is_flag=True, help="Keep the uploaded dataset.")
@click.option("--expired", is_flag=True,
              help="Only the endpoints whose deploy.ttl (--ttl) has passed, of every run under the project "
                   "(no config needed): endpoints, deployments, publications, started models, servers; "
                   "nothing else. For a cron or CI cleanup step.")
@click.option("--runs-dir", type=click.Path(file_okay=False), help="With --expired: where runs live.")
@click.pass_obj
def down(state: State, dry_run, keep, keep_project, keep_model, keep_dataset, expired, runs_dir):
    """Delete what runs created, as their ledgers list it: --run ID, or every run of the config (by its
    name and provider, whatever was edited since) that still holds something live. What a run only
    used (a project, a cluster, a bucket you named) is kept. --expired: only expired endpoints."""
    from .. import api
    if expired:
        from .costs import render_expired
        emit(state, api.down_expired(runs_dir, dry_run=dry_run, progress=state.progress), render_expired)
        return
    from ..api.state import KEEP_SHORTHANDS
    kinds = set(keep).union(*(KEEP_SHORTHANDS[what] for what, given in
                              (("project", keep_project), ("model", keep_model), ("dataset", keep_dataset)) if given))
    cfg = load(state)
    result = api.down(cfg, state.run_id, tuple(sorted(kinds)), dry_run=dry_run, progress=state.progress)
    emit(state, result, render_down)


@click.command()
@shared_options(config=False)
@click.argument("runs", nargs=-1, required=True)
@click.option("--runs-dir", type=click.Path(file_okay=False), help="Where runs live (default: the project's).")
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
@shared_options
@click.argument("run", metavar="[RUN_ID]", required=False)
@click.option("--runs-dir", type=click.Path(file_okay=False), help="Where runs live (default: the project's).")
@click.option("--open", "open_it", is_flag=True, help="Open it in the browser, when there is one.")
@click.pass_obj
def report(state: State, run, runs_dir, open_it):
    """Print the path of a run's HTML report: RUN_ID's, else the config's run (-c), else the latest
    evaluated run's."""
    from .. import api
    from ..errors import UsageError
    if run and state.run_id and run != state.run_id:
        raise UsageError(f"two runs given: {run} and --run {state.run_id}", hint="give one")
    cfg = load(state, config_path=state.config_given) if state.config_given else None
    path = api.report_path(run or state.run_id, runs_dir, cfg, progress=state.progress)
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


@click.command()
@shared_options
@click.argument("model")
@click.option("--data", metavar="SOURCE", help="The dataset to evaluate it on (a folder or import file), instead "
                                                "of the config's dataset.source.")
@click.option("--name", help="The run's name (default: the config's, else from MODEL).")
@click.option("--task", type=click.Choice(["multiclass", "multilabel"]), help="Default: the config's, else "
                                                                               "multiclass.")
@click.pass_obj
def adopt(state: State, model, data, name, task):
    """Register a model imgcls did not train as a run, so evaluate, compare and predict work on it (--run).
    What it is made of is recorded as used, not created: `imgcls down` never deletes it.

    \b
    MODEL is one of:
      customvision:<project id or name>/<published iteration name>
      vertex:<endpoint id> | vertex:models/<model id> | vertex:projects/…/endpoints/… (or …/models/…)
      azureml:<online endpoint>[/<deployment>]   (default: the deployment with most live traffic)

    Credentials and workspace come from the config's provider section (-c) or the provider's variables;
    the dataset from --data or the config. `imgcls evaluate --run ID` then scores its test split.
    """
    from .. import api
    from ..errors import UsageError
    if state.run_id:
        raise UsageError("adopt makes a new run; --run does not apply", hint="drop --run")
    cfg = load(state, config_path=state.config_given) if state.config_given else None
    run, result = api.adopt(model, cfg, data=data, name=name, task=task, progress=state.progress)
    emit(state, {"run": run.id, "model": result},
         lambda v: click.echo(f"run {run.id}: adopted {model} (model {result.model_id}); next: "
                              f"imgcls evaluate --run {run.id}"))


COMMANDS = [status, runs_cmd, down, doctor, compare, report, adopt]

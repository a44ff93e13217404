"""The options every command shares and the context object they fill (State)."""
from __future__ import annotations

import functools
from pathlib import Path

import click

DEFAULT_CONFIG = "imgcls.yaml"
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class State:
    def __init__(self, as_json: bool, quiet: bool, verbose: int):
        self.json, self.quiet, self.verbose = as_json, quiet, verbose

    @functools.cached_property
    def progress(self):
        from ..progress import Progress
        return Progress(enabled=not (self.json or self.quiet), verbose=self.verbose, warnings=not self.quiet)


def config_options(fn):
    fn = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                      help="Override any config key, e.g. --set train.preset=best.")(fn)
    fn = click.option("--provider", "-p", help="Provider, overriding the config's.")(fn)
    fn = click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False), default=DEFAULT_CONFIG,
                      show_default=True, envvar="IMGCLS_CONFIG", help="The YAML run config.")(fn)
    return fn


def run_option(fn):
    return click.option("--run", "run_id", metavar="RUN_ID",
                        help="Work on this run (default: the latest run of this config and data); without -c, "
                             "the run's own config is used.")(fn)


def wait_options(fn):
    fn = click.option("--timeout", type=float, metavar="SECONDS",
                      help="Stop waiting after this long (exit 8; the run stays resumable).")(fn)
    fn = click.option("--wait/--no-wait", default=True, help="Wait for long operations to finish.")(fn)
    return fn


def load(config_path: str | None, provider: str | None, overrides, run_id: str | None = None) -> object:
    """The config: the file given; with --run and no config file here, the run's own copy."""
    from .. import api
    if run_id and (config_path is None or (config_path == DEFAULT_CONFIG and not Path(config_path).exists())):
        return api.load(None, provider, list(overrides), run_id=run_id)
    return api.load(config_path or DEFAULT_CONFIG, provider, list(overrides))


def data_change_option(fn):
    return click.option("--allow-data-change", is_flag=True,
                        help="With --run: go on although the dataset changed since the run read it (the run "
                             "keeps its own manifest).")(fn)

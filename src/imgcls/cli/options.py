"""The options every command takes, before or after its name, and the context object they fill (State).

`imgcls --json validate -c x.yaml`, `imgcls validate --json -c x.yaml` and `imgcls -c x.yaml validate` mean
the same: each option's callback stores into the one State; a later value wins, `--set`s add up in order.
"""
from __future__ import annotations

import functools
import os

import click
from click.core import ParameterSource

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
DEFAULT_CONFIG = "imgcls.yaml"


class State:
    """What the shared options said, wherever on the command line they were."""

    def __init__(self):
        self.json = False
        self.quiet = False
        self.verbose = 0
        self.config_path: str | None = None
        self.provider: str | None = None
        self.overrides: list[str] = []
        self.run_id: str | None = None

    @property
    def config(self) -> str:
        """-c, else $IMGCLS_CONFIG, else imgcls.yaml."""
        return self.config_path or os.environ.get("IMGCLS_CONFIG") or DEFAULT_CONFIG

    @property
    def config_given(self) -> str | None:
        """-c or $IMGCLS_CONFIG, for the commands that work without a config."""
        return self.config_path or os.environ.get("IMGCLS_CONFIG") or None

    @functools.cached_property
    def progress(self):
        from ..progress import Progress
        return Progress(enabled=not (self.json or self.quiet), verbose=self.verbose, warnings=not self.quiet)


def _store(attr: str, combine=lambda old, new: new):
    def callback(ctx: click.Context, param: click.Parameter, value):
        if ctx.get_parameter_source(param.name) is ParameterSource.DEFAULT:
            return  # not given here: what an earlier position said stands
        state = ctx.ensure_object(State)
        setattr(state, attr, combine(getattr(state, attr), value))
    return callback


_OUTPUT = [
    click.option("--json", "as_json", is_flag=True, expose_value=False, callback=_store("json", lambda a, b: a or b),
                 help="Print exactly one JSON document on stdout."),
    click.option("--quiet", "-q", is_flag=True, expose_value=False, callback=_store("quiet", lambda a, b: a or b),
                 help="No progress or logs on stderr."),
    click.option("-v", "--verbose", count=True, expose_value=False, callback=_store("verbose", lambda a, b: a + b),
                 help="More detail on stderr (-v shows tracebacks of bugs)."),
]
_CONFIG = [
    click.option("--config", "-c", "config_path", metavar="PATH", expose_value=False, callback=_store("config_path"),
                 help=f"The YAML run config [default: $IMGCLS_CONFIG, else {DEFAULT_CONFIG}]."),
    click.option("--provider", "-p", metavar="NAME", expose_value=False, callback=_store("provider"),
                 help="Provider, overriding the config's."),
    click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", expose_value=False,
                 callback=_store("overrides", lambda a, b: [*a, *b]),
                 help="Override any config key, e.g. --set train.preset=best (repeatable; the last wins)."),
    click.option("--run", "run_id", metavar="RUN_ID", expose_value=False, callback=_store("run_id"),
                 help="Work on this run (default: the latest run of this config and data); without a config "
                      "file, the run's own config is used."),
]


def shared_options(fn=None, *, config: bool = True):
    """The one decorator for the shared options: the group and every command take them, anywhere.

    config=False leaves out -c/-p/--set/--run, for commands that read no config (compare, runs…).
    """
    def decorate(f):
        for option in reversed(_OUTPUT + (_CONFIG if config else [])):
            f = option(f)
        return f
    return decorate(fn) if fn is not None else decorate


def wait_options(fn):
    fn = click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
                      help="Stop waiting after this long (exit 8; the run stays resumable).")(fn)
    fn = click.option("--wait/--no-wait", default=True, help="Wait for long operations to finish.")(fn)
    return fn


def timeout_option(help: str | None = None):
    return click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS", help=help)


def ttl_options(fn):
    fn = click.option("--keep-on-failure", is_flag=True,
                      help="A deploy that fails leaves what it created (marked in the ledger) instead of "
                           "removing it; `imgcls down --run RUN_ID` removes it later.")(fn)
    fn = click.option("--ttl", metavar="DURATION",
                      help="The endpoint expires after this long (90s, 30m, 2h, 1d; overrides deploy.ttl): "
                           "`imgcls down --expired` removes it then; the local server stops itself.")(fn)
    return fn


def data_change_option(fn):
    return click.option("--allow-data-change", is_flag=True,
                        help="With --run: go on although the dataset changed since the run imported it (the "
                             "run keeps its own manifest).")(fn)


def load(state: State, extra_overrides=(), config_path: str | None = None):
    """The config the shared options name; with --run and no config file, the run's own copy. The command
    line is checked first, so a typo costs no file read."""
    from .. import api
    from ..overrides import check_overrides
    from ..providers import registry
    overrides = [*state.overrides, *extra_overrides]
    if state.provider:
        registry.check_name(state.provider)
    check_overrides(overrides)
    path = config_path or state.config
    if state.run_id and not config_path and not state.config_given and not os.path.exists(path):
        return api.load(None, state.provider, overrides, run_id=state.run_id)
    return api.load(path, state.provider, overrides)

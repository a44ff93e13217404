"""Setting up: providers (what each supports), init (a starter config), config schema/show."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..render import render_providers
from .options import State, load, shared_options
from .output import emit


@click.command("providers")
@shared_options
@click.pass_obj
def providers_cmd(state: State):
    """Each provider: what it supports, its limits, whether its SDK is installed and credentials found."""
    from ..providers import registry
    cfg = load(state, config_path=state.config_path) if state.config_path else None
    emit(state, {"providers": registry.describe(cfg)}, lambda v: render_providers(v["providers"]))


@click.command()
@shared_options(config=False)
@click.argument("path", type=click.Path(dir_okay=False), default="imgcls.yaml")
@click.option("--provider", "-p", "init_provider", metavar="NAME", help="The provider the config starts with "
                                                                       "[default: local].")
@click.option("--source", default="data/", show_default=True, help="The dataset folder.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.pass_obj
def init(state: State, path, init_provider, source, force):
    """Write a commented starter config."""
    from ..errors import UsageError
    from ..providers import registry
    from ..templates import starter_config
    provider = init_provider or state.provider or "local"
    registry.check_name(provider)
    target = Path(path)
    if target.exists() and not force:
        raise UsageError(f"{target} exists", hint="pass --force to overwrite, or give another path")
    from ..runs import atomic_write
    atomic_write(target, starter_config(target.stem, provider, source))
    emit(state, {"written": str(target)}, lambda v: click.echo(f"wrote {target}; edit it, then "
                                                                  f"`imgcls validate -c {target}`"))


@click.group()
@shared_options(config=False)
def config():
    """Config helpers."""


@config.command("schema")
@shared_options(config=False)
@click.pass_obj
def config_schema(state: State):
    """Print the JSON Schema of the run config (for editors)."""
    from ..config import schema
    click.echo(json.dumps(schema(), indent=2))


@config.command("show")
@shared_options
@click.pass_obj
def config_show(state: State):
    """Print the resolved config (variables expanded, overrides applied)."""
    cfg = load(state)
    emit(state, cfg.model_dump(mode="json"), lambda v: click.echo(json.dumps(v, indent=2)))


COMMANDS = [providers_cmd, init, config]

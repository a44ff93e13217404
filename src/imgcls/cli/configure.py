"""Setting up: providers (what each supports), init (a starter config), config schema/show."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..render import render_providers
from .options import State, config_options, load
from .output import emit, handle_errors


@click.command("providers")
@click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False))
@click.pass_obj
@handle_errors
def providers_cmd(state: State, config_path):
    """Each provider: what it supports, its limits, whether its SDK is installed and credentials found."""
    from ..providers import registry
    cfg = load(config_path, None, ()) if config_path else None
    emit(state, {"providers": registry.describe(cfg)}, lambda v: render_providers(v["providers"]))


@click.command()
@click.argument("path", type=click.Path(dir_okay=False), default="imgcls.yaml")
@click.option("--provider", "-p", default="local", show_default=True)
@click.option("--source", default="data/", show_default=True, help="The dataset folder.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.pass_obj
@handle_errors
def init(state: State, path, provider, source, force):
    """Write a commented starter config."""
    from ..errors import UsageError
    from ..providers import registry
    from ..templates import starter_config
    registry.check_name(provider)
    target = Path(path)
    if target.exists() and not force:
        raise UsageError(f"{target} exists", hint="pass --force to overwrite, or give another path")
    from ..runs import atomic_write
    atomic_write(target, starter_config(target.stem, provider, source))
    emit(state, {"written": str(target)}, lambda v: click.echo(f"wrote {target}; edit it, then "
                                                                  f"`imgcls validate -c {target}`"))


@click.group()
def config():
    """Config helpers."""


@config.command("schema")
@click.pass_obj
@handle_errors
def config_schema(state: State):
    """Print the JSON Schema of the run config (for editors)."""
    from ..config import schema
    click.echo(json.dumps(schema(), indent=2))


@config.command("show")
@config_options
@click.pass_obj
@handle_errors
def config_show(state: State, config_path, provider, overrides):
    """Print the resolved config (variables expanded, overrides applied)."""
    cfg = load(config_path, provider, overrides)
    emit(state, cfg.model_dump(mode="json"), lambda v: click.echo(json.dumps(v, indent=2)))


COMMANDS = [providers_cmd, init, config]

"""The `imgcls` command: click commands that parse options, call imgcls.api, print text or --json.

One module per command group (data, costs, lifecycle, runs, configure), each listing its COMMANDS; options.py
holds the shared options (accepted before or after the command's name), output.py the rendering of
results and the one mapping of errors to exit codes. Nothing here knows a vendor, and nothing heavy is
imported at module level: `imgcls --help` stays fast.
"""
from __future__ import annotations

import click

from . import configure, costs, data, lifecycle, runs
from .options import CONTEXT, shared_options
from .output import Cli


@click.group("imgcls", cls=Cli, context_settings=CONTEXT)
@shared_options
@click.version_option(package_name="imgcls")
def main() -> None:
    """imgcls: train, evaluate, deploy and predict image classifiers on any provider.

    The options above are also accepted after the command's name.

    \b
    Exit codes: 0 ok, 1 unexpected, 2 usage, 3 config, 4 data, 5 auth, 6 provider failed,
    7 unsupported, 8 timed out (resumable), 9 quality gate failed, 130 interrupted,
    141 stdout closed by its reader (e.g. `| head`).
    """


# `imgcls --help` lists commands alphabetically (click's way); here they go in the data's order.
for _group in (data, costs, lifecycle, runs, configure):
    for _command in _group.COMMANDS:
        main.add_command(_command)

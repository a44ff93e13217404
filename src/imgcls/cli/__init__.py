"""The `imgcls` command: click commands that parse options, call imgcls.api, print text or --json.

One module per command group (data, lifecycle, runs, configure); options.py holds the shared options,
output.py the rendering of results and the one mapping of errors to exit codes. Nothing here knows a
vendor, and nothing heavy is imported at module level: `imgcls --help` stays fast.
"""
from __future__ import annotations

import click

from . import configure, data, lifecycle, runs
from .options import CONTEXT, State


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


# The order of `imgcls --help` is alphabetical (click's); the order here is the data's way.
for _group in (data, lifecycle, runs, configure):
    for _command in _group.COMMANDS:
        main.add_command(_command)

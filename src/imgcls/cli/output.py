"""stdout for results, stderr for people, and the one place errors become exit codes (STYLE.md rule 5).

`Cli` is the group class of `imgcls`: its invoke() maps every command's errors, so a new command gets the
mapping by being added; its main() also answers click's usage errors (a JSON document under --json) and
ends quietly when the reader of stdout has gone (`imgcls predict … | head -1`).
"""
from __future__ import annotations

import json
import os
import sys
import traceback

import click

from ..errors import EXIT_INTERRUPTED, ImgclsError, UsageError
from .options import State

# What a shell reports for a process killed by SIGPIPE (128 + 13), as `yes | head -1` gives for yes.
EXIT_CLOSED_PIPE = 141


def emit(state: State, value, render=None) -> None:
    """stdout is for results: one JSON document under --json, else the human rendering."""
    from ..runs import to_jsonable
    if state.json:
        click.echo(json.dumps(to_jsonable(value), indent=2))
    elif render is not None:
        render(value)
    else:
        click.echo(json.dumps(to_jsonable(value), indent=2))


def report(state: State, doc: dict, text: str) -> None:
    """An error: the JSON document on stdout under --json, else one `error:` message on stderr."""
    if state.json:
        click.echo(json.dumps(doc, indent=2, default=str))
    else:
        click.echo(f"error: {text}", err=True)


class Cli(click.Group):
    # A closed stdout is answered where it can happen: parsing (--help, --version), a command, main()'s
    # last flush. click itself would turn it into a silent exit 1 before main() could see it.

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except BrokenPipeError:
            _quiet_closed_pipe()

    def invoke(self, ctx: click.Context):
        state = ctx.ensure_object(State)
        _opened().clear()  # in this process (a test's CliRunner), a run an earlier command opened is not this one's
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise  # click's own answers are main()'s
        except BrokenPipeError:
            _quiet_closed_pipe()
        except ImgclsError as exc:
            doc, text, run = exc.to_json(), str(exc), next(iter(_opened()), None)
            if run and "run" not in doc:  # what a CI script needs to resume it or take it down
                doc["run"] = run
                if ctx.invoked_subcommand == "run" and not state.run_id:  # `run` alone would start another
                    resume = f"`imgcls run --run {run}` resumes it where it stopped (without --run, a new run starts)"
                    hint = doc.get("hint") or ""
                    doc["hint"] = resume if not hint or "same command" in hint else f"{hint}; then {resume}"
                    text = f"{exc.message}\n  hint: {doc['hint']}"
            report(state, doc, text)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            run = next(iter(_opened()), None)
            again = f"run the same command with --run {run}" if run else "run the same command with --run RUN_ID"
            hint = f"what was recorded is kept: {again} to resume" + (f"; `imgcls status --run {run}` shows it"
                                                                      if run else "")
            report(state, {"error": "Interrupted", "message": "interrupted", "hint": hint, "run": run,
                           "exit_code": EXIT_INTERRUPTED}, f"interrupted\n  hint: {hint}")
            sys.exit(EXIT_INTERRUPTED)
        except Exception as exc:  # a bug of ours: say so in one line, traceback only with -v
            if state.verbose:
                traceback.print_exc()
            report(state, {"error": type(exc).__name__, "message": str(exc), "exit_code": 1},
                   f"unexpected error: {type(exc).__name__}: {exc}\n  hint: run with -v for the traceback "
                   "and report it at the imgcls issue tracker")
            sys.exit(1)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        argv = list(sys.argv[1:] if args is None else args)
        try:
            try:
                code = super().main(args, prog_name, complete_var, False, **extra)
            except SystemExit as exc:
                code = exc.code
            except click.ClickException as exc:
                code = _usage_error(exc, argv)
            except click.Abort:  # ^C while click was still parsing
                click.echo("interrupted", err=True)
                code = EXIT_INTERRUPTED
            # Flushed here, not at interpreter exit, so a reader that has gone is noticed below.
            sys.stdout.flush()
            sys.stderr.flush()
        except BrokenPipeError:
            _quiet_closed_pipe()
        sys.exit(code if isinstance(code, int) else (0 if code is None else 1))


def _usage_error(exc: click.ClickException, argv: list[str]) -> int:
    """click's own usage errors (unknown option, bad choice…): its text on stderr, and the JSON error
    document on stdout under --json (which click may not have parsed yet when it stopped)."""
    exc.show()
    state = exc.ctx.find_object(State) if getattr(exc, "ctx", None) else None
    options = argv[:argv.index("--")] if "--" in argv else argv
    if (state and state.json) or "--json" in options:
        click.echo(json.dumps({"error": UsageError.__name__, "message": exc.format_message(), "hint": None,
                               "exit_code": exc.exit_code}, indent=2))
    return exc.exit_code


def _quiet_closed_pipe():
    """The reader of stdout has gone: say nothing more, and point stdout at devnull so the interpreter's
    last flush has nowhere to fail (the recipe in Python's docs on SIGPIPE). Exits 141."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (click's CliRunner): nothing to silence
        pass
    sys.exit(EXIT_CLOSED_PIPE)


def _opened() -> list:
    """The run this command opened (api.runstate.LAST_OPENED), without importing the API to learn that
    none was: `imgcls --help` stays fast."""
    runstate = sys.modules.get("imgcls.api.runstate")
    return runstate.LAST_OPENED if runstate is not None else []

"""stdout for results, stderr for people, and the one place errors become exit codes (STYLE.md rule 5)."""
from __future__ import annotations

import functools
import json
import sys
import traceback

import click

from ..errors import EXIT_INTERRUPTED, ImgclsError
from .options import State


def emit(state: State, value, render=None) -> None:
    """stdout is for results: one JSON document under --json, else the human rendering."""
    from ..runs import to_jsonable
    if state.json:
        click.echo(json.dumps(to_jsonable(value), indent=2))
    elif render is not None:
        render(value)
    else:
        click.echo(json.dumps(to_jsonable(value), indent=2))


def handle_errors(fn):
    """The one place errors become exit codes (STYLE.md rule 5)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        state: State = click.get_current_context().find_object(State) or State(False, False, 0)
        try:
            return fn(*args, **kwargs)
        except ImgclsError as exc:
            _report(state, exc.to_json(), str(exc))
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            _report(state, {"error": "Interrupted", "message": "interrupted", "exit_code": EXIT_INTERRUPTED},
                    "interrupted; what was recorded is kept — resume with --run RUN_ID")
            sys.exit(EXIT_INTERRUPTED)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # a bug of ours: say so in one line, traceback only with -v
            if state.verbose:
                traceback.print_exc()
            _report(state, {"error": type(exc).__name__, "message": str(exc), "exit_code": 1},
                    f"unexpected error: {type(exc).__name__}: {exc}\n  hint: run with -v for the traceback "
                    "and report it at the imgcls issue tracker")
            sys.exit(1)

    return wrapper


def _report(state: State, doc: dict, text: str) -> None:
    if state.json:
        click.echo(json.dumps(doc, indent=2, default=str))
    else:
        click.echo(f"error: {text}", err=True)

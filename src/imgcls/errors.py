"""The exception tree. Each class carries its exit code; messages say what, where, and what to do."""
from __future__ import annotations


class ImgclsError(Exception):
    """Base of every error we raise on purpose. `hint` tells the user how to fix it."""

    exit_code = 1
    # The "error" of --json output: the class's own name unless it is an internal refinement of one
    # (a provider's "not found", which callers treat as gone) that users should see as its parent
    shown_as: str | None = None

    def __init__(self, message: str, hint: str | None = None, **details):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"

    def to_json(self) -> dict:
        return {"error": self.shown_as or type(self).__name__, "message": self.message, "hint": self.hint,
                "exit_code": self.exit_code, **({"details": self.details} if self.details else {})}


class UsageError(ImgclsError):
    """Wrong command-line usage: unknown provider, bad option value."""
    exit_code = 2


class ConfigError(ImgclsError):
    exit_code = 3


class DataError(ImgclsError):
    exit_code = 4


class AuthError(ImgclsError):
    exit_code = 5


class ProviderError(ImgclsError):
    """The service (or our local engine) failed to do what we asked."""
    exit_code = 6


class UnsupportedError(ImgclsError):
    exit_code = 7


class TimedOut(ImgclsError):
    """We stopped waiting; the operation still runs and the run can be resumed with --run."""
    exit_code = 8


class QualityGateFailed(ImgclsError):
    exit_code = 9


class MissingDependency(UsageError):
    """An optional extra is not installed."""

    def __init__(self, provider: str, module: str, extra: str | None = None, needed_by: str | None = None):
        super().__init__(
            f"{needed_by or f'the {provider!r} provider'} needs the Python package '{module}', which is not installed",
            hint=f"pip install 'imgcls[{extra or provider}]'",
        )


EXIT_INTERRUPTED = 130


def strings(value, what: str) -> list[str]:
    """A Python caller's list-of-str argument as a list: one str is a list of one (never of its letters);
    anything else than str in it is a UsageError naming `what`."""
    items = [value] if isinstance(value, str) else value
    try:
        items = list(items)
    except TypeError:
        raise UsageError(f"{what} must be a list of str, not {type(value).__name__}") from None
    wrong = [i for i in items if not isinstance(i, str)]
    if wrong:
        raise UsageError(f"{what} must be a list of str; it holds a {type(wrong[0]).__name__} ({wrong[0]!r:.60})")
    return items

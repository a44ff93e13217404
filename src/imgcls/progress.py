"""Progress for people on stderr: bars with ETA and status lines, silent under --json, --quiet or without a TTY."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, enabled: bool = True, verbose: int = 0, stream=None, warnings: bool | None = None):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = enabled
        # Warnings are for people too, but stay on under --json (stdout holds the document): only -q mutes them.
        self.warnings = enabled if warnings is None else warnings
        self.verbose = verbose
        self._stage: str | None = None
        self._started = 0.0
        self._last_draw = 0.0

    def log(self, message: str) -> None:
        """A line for people (stderr), unless quiet."""
        if self.enabled:
            self._clear()
            print(message, file=self.stream, flush=True)

    def warn(self, message: str) -> None:
        """A line a user must see even under --json (stderr), unless --quiet."""
        if self.warnings:
            self._clear()
            print(f"warning: {message}", file=self.stream, flush=True)

    def debug(self, message: str) -> None:
        if self.enabled and self.verbose:
            self.log(message)

    def status(self, message: str) -> None:
        """A transient one-line status (TTY only)."""
        if self.enabled and self.tty:
            self._clear()
            self.stream.write(f"\r{message[:110]}")
            self.stream.flush()
            self._dirty = True

    def advance(self, stage: str, done: int, total: int) -> None:
        """Draw `stage [####    ] done/total ETA`; a new stage restarts the clock."""
        if not (self.enabled and self.tty) or total <= 0:
            return
        now = time.monotonic()
        if stage != self._stage:
            self._stage, self._started = stage, now
        if done < total and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        frac = min(1.0, done / total)
        elapsed = now - self._started
        eta = elapsed / frac - elapsed if frac > 0 else 0
        bar = "#" * int(frac * 24)
        self.stream.write(f"\r{stage:<14} [{bar:<24}] {done}/{total}  {elapsed:5.0f}s  ETA {eta:4.0f}s ")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.advance(stage, done, total)

    _dirty = False

    def _clear(self) -> None:
        if self._dirty and self.tty:
            self.stream.write("\r" + " " * 112 + "\r")
            self._dirty = False

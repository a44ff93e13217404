"""What a test runs when a fake sees a chosen request: `before` the service acts on it, or `after` it
acted and before the answer goes out. Every fake keeps one `Hooks` (fake.hooks); the kill tests use it
to SIGKILL the client at that instant, as a CI runner's timeout would. A `before` hook that returns
True drops the request: the service never acts on it and the connection closes unanswered (what a
request cut off by its sender's death amounts to)."""
from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Hook:
    method: str
    pattern: re.Pattern
    when: str               # "before" | "after"
    fn: Callable[[str, str], bool | None]
    times: int              # how many more requests it fires for
    hits: int = 0


class Hooks:
    def __init__(self):
        self._hooks: list[Hook] = []
        self._lock = threading.Lock()

    def add(self, method: str, path_regex: str, fn: Callable[[str, str], bool | None], *, when: str = "after",
            times: int = 1) -> Hook:
        """Call fn(method, path) for the next `times` requests whose method matches ("*": any) and whose
        path `re.search`es `path_regex`."""
        if when not in ("before", "after"):
            raise ValueError(f"when must be 'before' or 'after', not {when!r}")
        hook = Hook(method.upper(), re.compile(path_regex), when, fn, times)
        with self._lock:
            self._hooks.append(hook)
        return hook

    def clear(self) -> None:
        with self._lock:
            self._hooks.clear()

    def fire(self, when: str, method: str, path: str) -> bool:
        """Run the hooks due; True when one of them (a `before` hook) drops the request."""
        with self._lock:
            due = [h for h in self._hooks if h.when == when and h.times > 0 and h.method in ("*", method)
                   and h.pattern.search(path)]
            for hook in due:
                hook.times -= 1
                hook.hits += 1
        drop = False
        for hook in due:               # outside the lock: a hook may take its time (wait for a death)
            drop = hook.fn(method, path) is True or drop
        return drop and when == "before"

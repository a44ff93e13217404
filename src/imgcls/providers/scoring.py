"""Sending scoring requests to a service several at a time: at most `workers` in flight and `rate` started
per second, answers kept in input order. Provider.score_all uses it; providers call Pacer.wait per request."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")


class Pacer:
    """Spreads request starts evenly at no more than `rate` per second, across every thread that shares it
    (a documented quota such as Custom Vision's 20 predictions per second). No rate: no waiting."""

    def __init__(self, rate: float | None):
        self.interval = 1.0 / rate if rate else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


def in_order(call: Callable[[int], T], n: int, workers: int) -> Iterator[tuple[int, T]]:
    """(i, call(i)) for i in range(n), yielded as each finishes, with at most `workers` calls running.

    Call 0 runs alone first: it creates what the others then share (SDK clients, an endpoint's key, a
    published iteration), which would otherwise be created by several threads at once. The first error
    stops the rest: calls not yet started are cancelled, running ones finish, and the error is raised."""
    if n == 0:
        return
    yield 0, call(0)
    if workers <= 1 or n == 1:
        for i in range(1, n):
            yield i, call(i)
        return
    pool = ThreadPoolExecutor(min(workers, n - 1), thread_name_prefix="imgcls-score")
    try:
        pending: dict[Future, int] = {pool.submit(call, i): i for i in range(1, n)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_EXCEPTION)
            for future in sorted(done, key=pending.__getitem__):
                i = pending.pop(future)
                yield i, future.result()  # an error raises here, and `finally` cancels the rest
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

"""Concurrent scoring's machinery (providers/scoring.py): order, the in-flight limit, the lone first call,
errors, and the pacing of request starts."""
from __future__ import annotations

import threading
import time

import pytest

from imgcls.providers.scoring import Pacer, in_order


class Recorder:
    """A call that sleeps longest for the earliest items, so answers arrive in reverse order."""

    def __init__(self, n: int, fail_at: int | None = None):
        self.n, self.fail_at = n, fail_at
        self.running = self.most = 0
        self.started: list[int] = []
        self.lock = threading.Lock()
        self.first_done = threading.Event()

    def __call__(self, i: int) -> str:
        with self.lock:
            self.started.append(i)
            self.running += 1
            self.most = max(self.most, self.running)
            alone = i == 0 or self.first_done.is_set()
        assert alone, f"call {i} started before call 0 finished"
        time.sleep(0.002 * (self.n - i))
        with self.lock:
            self.running -= 1
        if i == 0:
            self.first_done.set()
        if i == self.fail_at:
            raise RuntimeError(f"call {i} failed")
        return f"answer {i}"


def test_every_item_is_answered_once_in_flight_at_most_workers_and_call_0_first():
    calls = Recorder(40)
    got = dict(in_order(calls, 40, workers=6))
    assert got == {i: f"answer {i}" for i in range(40)}
    assert sorted(calls.started) == list(range(40)) and calls.started[0] == 0
    assert 1 < calls.most <= 6


def test_one_worker_is_sequential():
    calls = Recorder(10)
    assert [i for i, _ in in_order(calls, 10, workers=1)] == list(range(10))
    assert calls.most == 1


def test_the_first_error_is_raised_and_what_had_not_started_is_cancelled():
    calls = Recorder(200, fail_at=3)
    with pytest.raises(RuntimeError, match="call 3 failed"):
        list(in_order(calls, 200, workers=4))
    assert len(calls.started) < 200


def test_nothing_to_score():
    assert list(in_order(Recorder(0), 0, workers=8)) == []


def test_pacer_spreads_request_starts_over_threads():
    pacer, starts = Pacer(50.0), []
    lock = threading.Lock()

    def start():
        pacer.wait()
        with lock:
            starts.append(time.monotonic())

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    starts.sort()
    assert starts[-1] - starts[0] >= 5 * 0.02 * 0.9  # six starts at 50/s span at least 100 ms
    no_limit = Pacer(None)
    began = time.monotonic()
    for _ in range(100):
        no_limit.wait()
    assert time.monotonic() - began < 0.05

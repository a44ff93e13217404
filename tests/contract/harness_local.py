"""Contract harness for `local`: no fake needed; leftovers are server processes still alive."""
from __future__ import annotations

import contextlib
import os


class LocalHarness:
    provider = "local"
    config = "deploy:\n  port: 0\n"

    def __init__(self):
        self.pids: list[int] = []

    def leftovers(self, run) -> list[str]:
        alive = []
        for res in run.ledger["resources"]:
            pid = res.get("pid")
            if pid:
                try:
                    os.kill(pid, 0)
                    alive.append(f"pid {pid}")
                except ProcessLookupError:
                    pass
        return alive


@contextlib.contextmanager
def start(tmp_path, monkeypatch):
    yield LocalHarness()

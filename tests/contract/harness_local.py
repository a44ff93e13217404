"""Contract harness for `local`: no fake needed; leftovers are server processes still alive."""
from __future__ import annotations

import contextlib

from imgcls.providers.local.provider import _alive


class LocalHarness:
    provider = "local"
    config = "deploy:\n  port: 0\n"

    def leftovers(self, run) -> list[str]:
        alive = []
        for res in run.ledger["resources"]:
            pid = res.get("pid")
            if pid and _alive(pid):
                alive.append(f"pid {pid}")
        return alive


@contextlib.contextmanager
def start(tmp_path, monkeypatch):
    yield LocalHarness()

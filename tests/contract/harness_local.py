"""Contract harness for `local`: no fake needed; leftovers are server processes still alive."""
from __future__ import annotations

import contextlib

from imgcls.providers.local import process


class LocalHarness:
    provider = "local"
    config = "deploy:\n  port: 0\n"

    def leftovers(self, run) -> list[str]:
        alive = []
        for res in run.ledger["resources"]:
            if res.get("pid") and process.matches(res):     # the very process the run started, still there
                alive.append(f"pid {res['pid']}")
        return alive


@contextlib.contextmanager
def start(tmp_path, monkeypatch):
    yield LocalHarness()

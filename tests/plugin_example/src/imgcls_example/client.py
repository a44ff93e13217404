"""The "vendor SDK" of the example: a service whose resources are JSON files under one folder.

A real provider's client.py wraps its SDK here, and is the only module that imports it.
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path


class NotFound(Exception):
    pass


class Service:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _path(self, kind: str, id: str) -> Path:
        return self.root / kind / f"{id}.json"

    def create(self, kind: str, name: str, body: dict) -> str:
        id = uuid.uuid4().hex[:12]
        path = self._path(kind, id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"id": id, "name": name, **body}))
        os.replace(tmp, path)
        return id

    def get(self, kind: str, id: str) -> dict:
        try:
            return json.loads(self._path(kind, id).read_text())
        except FileNotFoundError:
            raise NotFound(f"{kind} {id}") from None

    def find(self, kind: str, name: str) -> dict | None:
        return next((r for r in self.list(kind) if r["name"] == name), None)

    def list(self, kind: str) -> list[dict]:
        folder = self.root / kind
        return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []

    def delete(self, kind: str, id: str) -> bool:
        try:
            self._path(kind, id).unlink()
            return True
        except FileNotFoundError:
            return False

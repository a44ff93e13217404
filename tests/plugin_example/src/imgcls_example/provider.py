"""The example provider: our decisions (what to record, when it is done, how to score) over client.py.

Training is a nearest-centroid classifier on mean colour, done by the "service"; enough for the contract.
"""
from __future__ import annotations

import io
import math
import time

from imgcls.errors import AuthError, ProviderError
from imgcls.providers.base import (
    Capabilities,
    CredentialStatus,
    DatasetRef,
    Deployment,
    Limits,
    Provider,
    TrainResult,
)

from .settings import SERVICE_ENV, ExampleConfig, service_root

# The ledger kinds this provider records, and the service's collection for each.
COLLECTIONS = {"dataset": "datasets", "model": "models", "endpoint": "endpoints"}


def features(data: bytes) -> list[float]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        pixels = list(img.convert("RGB").resize((16, 16)).getdata())
    return [sum(p[c] for p in pixels) / len(pixels) / 255 for c in range(3)]


class ExampleProvider(Provider):
    name = "example"
    settings_model = ExampleConfig
    capabilities = Capabilities(multiclass=True, multilabel=True, deploy=True,
                                credentials=f"example.service or ${SERVICE_ENV}")
    limits = Limits(formats=("jpeg", "png"))
    poll_interval = 0.1

    @classmethod
    def check_credentials(cls, config) -> CredentialStatus:
        root = service_root(getattr(config, "example", None) if config is not None else None)
        return CredentialStatus(bool(root), f"service at {root}" if root else f"set example.service or ${SERVICE_ENV}")

    @property
    def client(self):
        from .client import Service  # imported when used, like an SDK

        root = service_root(self.config.example)
        if not root:
            raise AuthError("no example service configured", hint=f"set example.service or ${SERVICE_ENV}")
        return Service(root)

    def _name(self, kind: str) -> str:
        return f"{self.config.name}-{self.run.id}-{kind}"

    def _create(self, kind: str, body: dict) -> str:
        """Record before the call, record the id after it: a crash in between leaves a pending entry
        that `find` reconciles by name."""
        name = self._name(kind)
        self.run.intend(kind, name)
        id = self.client.create(COLLECTIONS[kind], name, body)
        self.run.record(kind, id, name=name)
        return id

    # -- the hooks --------------------------------------------------------------------------
    def upload(self, manifest, labels: list[str]) -> DatasetRef:
        rows = []
        for uri, row_labels, split in zip(manifest["uri"], manifest["labels"], manifest["split"]):
            if split != "test":    # the test split stays ours: evaluate scores it through the model
                with open(uri, "rb") as fh:
                    rows.append({"x": features(fh.read()), "labels": list(row_labels)})
        id = self._create("dataset", {"labels": labels, "rows": rows})
        return DatasetRef(self.name, id, len(manifest), labels)

    def start_training(self, dataset: DatasetRef) -> dict:
        data = self.client.get("datasets", dataset.id)
        centroids = {}
        for label in data["labels"]:
            xs = [r["x"] for r in data["rows"] if label in r["labels"]]
            centroids[label] = [sum(c) / len(xs) for c in zip(*xs)] if xs else [0.5, 0.5, 0.5]
        ready = time.time() + self.config.example.train_seconds
        id = self._create("model", {"centroids": centroids, "ready_at": ready})
        return self.run.record_operation("train", id)

    def poll_training(self, operation: dict) -> tuple[str, dict]:
        model = self.client.get("models", operation["id"])
        if time.time() < model["ready_at"]:
            return "running", {"status": "training"}
        return "succeeded", {"status": "trained", "model_id": model["id"]}

    def deploy_model(self, model: TrainResult) -> Deployment:
        id = self._create("endpoint", {"model": model.model_id})
        return Deployment(self.name, f"example://endpoints/{id}", "deployed")

    def score(self, images: list[bytes], names: list[str]) -> list[dict[str, float]]:
        model_id = (self.run.step("train") or {}).get("model_id")
        if not model_id:
            raise ProviderError("the run has no trained model", hint="run `imgcls train` first")
        centroids = self.client.get("models", model_id)["centroids"]
        out = []
        for data in images:
            x = features(data)
            # Near the label's colour scores near 1, far from it near 0: works for multilabel thresholds too.
            scores = {l: math.exp(-sum((a - b) ** 2 for a, b in zip(x, c)) / 0.01) for l, c in centroids.items()}
            out.append(dict(sorted(scores.items(), key=lambda kv: -kv[1])))
        return out

    def delete(self, resource: dict) -> str | None:
        gone = not self.client.delete(COLLECTIONS[resource["kind"]], resource["id"])
        return "gone" if gone else None     # already gone is not an error: down is idempotent

    # -- run-state hooks ----------------------------------------------------------------------
    def find(self, entry: dict) -> dict | None:
        found = self.client.find(COLLECTIONS[entry["kind"]], entry["name"])
        return {"id": found["id"]} if found else None

    def probe(self, resource: dict) -> str:
        from .client import NotFound

        try:
            self.client.get(COLLECTIONS[resource["kind"]], resource["id"])
            return "live"
        except NotFound:
            return "gone"

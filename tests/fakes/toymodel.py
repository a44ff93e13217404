"""The "model" every fake trains: a nearest-centroid classifier on tiny colour thumbnails.

Deterministic, fast and good enough that predictions follow the images, so a flow that
trains on a fake and evaluates on the test split gets figures that mean something.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image


def features(image_bytes: bytes) -> np.ndarray:
    """An 8x8 RGB thumbnail plus a 4-bin-per-channel histogram, L2-normalised."""
    with Image.open(io.BytesIO(image_bytes)) as im:
        im = im.convert("RGB")
        thumb = np.asarray(im.resize((8, 8)), dtype=np.float32).ravel() / 255.0
        arr = np.asarray(im.resize((32, 32)), dtype=np.int64)
    hist = np.concatenate([np.bincount(arr[..., c].ravel() // 64, minlength=4) for c in range(3)])
    vec = np.concatenate([thumb, hist / hist.sum()]).astype(np.float32)
    return vec / (np.linalg.norm(vec) + 1e-9)


class ToyModel:
    """Centroid per label; scores are a softmax (multiclass) or sigmoid (multilabel) of similarity."""

    def __init__(self, multilabel: bool = False):
        self.multilabel = multilabel
        self.labels: list[str] = []
        self.centroids: np.ndarray | None = None

    def fit(self, examples: list[tuple[bytes, list[str]]]) -> ToyModel:
        sums: dict[str, np.ndarray] = {}
        counts: dict[str, int] = {}
        for data, labels in examples:
            vec = features(data)
            for label in labels:
                sums[label] = sums.get(label, 0) + vec
                counts[label] = counts.get(label, 0) + 1
        self.labels = sorted(sums)
        if self.labels:
            self.centroids = np.stack([sums[l] / counts[l] for l in self.labels])
        return self

    def predict(self, image_bytes: bytes) -> dict[str, float]:
        """Label -> score, for every label the model knows."""
        if self.centroids is None:
            return {}
        sims = self.centroids @ features(image_bytes)
        if self.multilabel:
            scores = 1.0 / (1.0 + np.exp(-(sims - sims.mean()) * 40.0))
        else:
            z = np.exp((sims - sims.max()) * 40.0)
            scores = z / z.sum()
        return {label: float(s) for label, s in zip(self.labels, scores)}

    def to_dict(self) -> dict:
        return {"multilabel": self.multilabel, "labels": self.labels,
                "centroids": [] if self.centroids is None else self.centroids.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> ToyModel:
        m = cls(d["multilabel"])
        m.labels = list(d["labels"])
        m.centroids = np.asarray(d["centroids"], dtype=np.float32) if d["labels"] else None
        return m


def is_image(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
        return True
    except Exception:
        return False



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


def centroids(examples: list[tuple[bytes, list[str]]], embed) -> tuple[list[str], np.ndarray | None]:
    """The labels (sorted) and each one's mean `embed(image)` over its examples (None without labels)."""
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for data, labels in examples:
        vec = embed(data)
        for label in labels:
            sums[label] = sums.get(label, 0) + vec
            counts[label] = counts.get(label, 0) + 1
    labels = sorted(sums)
    return labels, (np.stack([sums[l] / counts[l] for l in labels]) if labels else None)


class ToyModel:
    """Centroid per label; scores are a softmax (multiclass) or sigmoid (multilabel) of similarity."""

    def __init__(self, multilabel: bool = False):
        self.multilabel = multilabel
        self.labels: list[str] = []
        self.centroids: np.ndarray | None = None

    def fit(self, examples: list[tuple[bytes, list[str]]]) -> ToyModel:
        self.labels, self.centroids = centroids(examples, features)
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




# ImageNet statistics, as AutoML for images normalises the input of the ONNX models it exports.
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def colour_of(image_bytes: bytes) -> np.ndarray:
    """The image's mean RGB, normalised as the ONNX model's input is."""
    with Image.open(io.BytesIO(image_bytes)) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.float32).reshape(-1, 3).mean(axis=0) / 255.0
    return (rgb - MEAN) / STD


def onnx_model(examples: list[tuple[bytes, list[str]]], sharpness: float = 20.0) -> tuple[bytes, list[str]]:
    """(a valid ONNX model, its labels) standing in for AutoML's train_artifacts/model.onnx: input
    `input1` [batch, 3, H, W] (normalised as MEAN/STD), output `output1` [batch, labels] of logits.

    The graph is a nearest-colour-centroid classifier: GlobalAveragePool -> Flatten -> Gemm, with
    logits -sharpness * |x - c|^2 written as x . (2 sharpness c) - sharpness |c|^2 (the |x|^2 term is
    the same for every label, so softmax and argmax are unchanged)."""
    from onnx import TensorProto, helper, numpy_helper

    labels, means = centroids(examples, colour_of)
    means = means.astype(np.float32)                                                    # [L, 3]
    weight = (2 * sharpness * means.T).astype(np.float32)                               # [3, L]
    bias = (-sharpness * (means ** 2).sum(axis=1)).astype(np.float32)                   # [L]
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input1"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["colour"], axis=1),
         helper.make_node("Gemm", ["colour", "weight", "bias"], ["output1"])],
        "toy_automl_classifier",
        [helper.make_tensor_value_info("input1", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("output1", TensorProto.FLOAT, ["batch", len(labels)])],
        [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="imgcls-fake")
    model.ir_version = 8                  # what onnxruntime releases of the last years all read
    return model.SerializeToString(), labels

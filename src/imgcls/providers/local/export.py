"""Export a trained local model to ONNX (probabilities out) with its labels and preprocessing,
checked against torch before anything is written."""
from __future__ import annotations

import json
import os
import warnings
from datetime import datetime, timezone
from pathlib import Path

from imgcls.errors import MissingDependency, ProviderError, UsageError
from imgcls.providers.local.preprocess import Preprocessing
from imgcls.providers.local.train import load_model, torch

OPSET = 17
TOLERANCE = 1e-4


class Probabilities(torch.nn.Module):
    """The classifier with softmax (multiclass) or sigmoid (multilabel) folded in."""

    def __init__(self, model, multilabel: bool):
        super().__init__()
        self.model, self.multilabel = model, multilabel

    def forward(self, x):
        logits = self.model(x)
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)


def export_onnx(workdir: Path, artifact_dir: Path, labels, multilabel: bool) -> Path:
    """Write model.onnx, labels.json, preprocessing.json and model.json to artifact_dir."""
    model, meta = load_model(workdir)
    if list(labels) != meta["labels"] or bool(multilabel) != meta["multilabel"]:
        raise UsageError(f"the model in {workdir} was trained for other labels or another task",
                         hint="train again, or export with the labels it was trained on",
                         trained_labels=meta["labels"], multilabel=meta["multilabel"])
    prep = Preprocessing(**{**meta["preprocessing"], "mean": tuple(meta["preprocessing"]["mean"]),
                            "std": tuple(meta["preprocessing"]["std"])})
    artifact_dir = Path(artifact_dir)
    artifact_dir.mkdir(parents=True, exist_ok=True)
    net = Probabilities(model, multilabel).eval()
    sample = torch.randn(3, 3, prep.size, prep.size, generator=torch.Generator().manual_seed(0))
    tmp = artifact_dir / f".model.{os.getpid()}.onnx"
    with warnings.catch_warnings():
        # The TorchScript exporter (dynamo=False) warns that it is legacy; the dynamo one needs
        # onnxscript, which the local extra does not install.
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (sample,), str(tmp), input_names=["input"], output_names=["probabilities"],
                          dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    try:
        _check_agreement(net, tmp, sample)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, artifact_dir / "model.onnx")
    _write(artifact_dir / "labels.json", json.dumps(list(labels), indent=2))
    _write(artifact_dir / "preprocessing.json", prep.to_json())
    _write(artifact_dir / "model.json", json.dumps({
        "task": "multilabel" if multilabel else "multiclass", "backbone": meta["backbone"],
        "preset": meta["preset"], "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "input": "input", "output": "probabilities", "opset": OPSET}, indent=2))
    return artifact_dir / "model.onnx"


def _check_agreement(net, onnx_path: Path, sample) -> None:
    """ONNX Runtime must give torch's probabilities within 1e-4 on the same batch."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependency("local", "onnxruntime") from None
    with torch.inference_mode():
        expected = net(sample).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": sample.numpy()})[0]
    diff = float(abs(got - expected).max())
    if got.shape != expected.shape or diff > TOLERANCE:
        raise ProviderError(f"the ONNX export disagrees with the trained model (max difference {diff:.2g})",
                            hint="report this as a bug with the model's backbone and preset", max_diff=diff)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)

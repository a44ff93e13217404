"""Export a trained local model to ONNX (probabilities out) with its labels and preprocessing,
checked against torch before anything is written."""
from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from imgcls.errors import MissingDependency, ProviderError, UsageError
from imgcls.providers.local.backbone import FEATURE_DIM, build_features, load_backbone, onnx_export
from imgcls.providers.local.model import Classifier, Head, torch
from imgcls.providers.local.preprocess import Preprocessing, normalize
from imgcls.runs import atomic_write

OPSET = 17
TOLERANCE = 1e-4
MIN_INT8_AGREEMENT = 0.97  # share of held-out training images on which INT8 must decide as fp32 does
POOLING = ("ReduceMean", "GlobalAveragePool")  # where the backbone ends and the float head begins


class Probabilities(torch.nn.Module):
    """The classifier with softmax (multiclass) or sigmoid (multilabel) folded in."""

    def __init__(self, model, multilabel: bool):
        super().__init__()
        self.model, self.multilabel = model, multilabel

    def forward(self, x):
        logits = self.model(x)
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)


def load_model(workdir: Path):
    """(Classifier in eval mode returning logits, metadata dict) from workdir/model.pt."""
    path = Path(workdir) / "model.pt"
    if not path.exists():
        raise UsageError(f"no trained model in {workdir}", hint="train first: imgcls train")
    meta = torch.load(path, map_location="cpu", weights_only=True)
    if meta["features"] is None:  # quick preset: the pretrained backbone, unchanged
        features = load_backbone(meta["backbone"])[0]
    else:
        features = build_features(meta["backbone"])[0]
        features.load_state_dict(meta["features"])
    head = Head(FEATURE_DIM, len(meta["labels"]))
    head.load_state_dict(meta["head"])
    return Classifier(features, head).eval(), meta


def export_onnx(workdir: Path, artifact_dir: Path, labels, multilabel: bool, int8: bool = True) -> Path:
    """Write model.onnx, labels.json, preprocessing.json and model.json to artifact_dir, and with
    `int8` a statically quantised model.int8.onnx when it agrees with the fp32 model."""
    model, meta = load_model(workdir)
    if list(labels) != meta["labels"] or bool(multilabel) != meta["multilabel"]:
        raise UsageError(f"the model in {workdir} was trained for other labels or another task",
                         hint="train again, or export with the labels it was trained on",
                         trained_labels=meta["labels"], multilabel=meta["multilabel"])
    prep = Preprocessing.from_dict(meta["preprocessing"])
    artifact_dir = Path(artifact_dir)
    artifact_dir.mkdir(parents=True, exist_ok=True)
    net = Probabilities(model, multilabel).eval()
    sample = torch.randn(3, 3, prep.size, prep.size, generator=torch.Generator().manual_seed(0))
    tmp = artifact_dir / f".model.{os.getpid()}.onnx"
    onnx_export(net, (sample,), tmp, input_names=["input"], output_names=["probabilities"],
                dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}}, opset_version=OPSET)
    try:
        _check_agreement(net, tmp, sample)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, artifact_dir / "model.onnx")
    (artifact_dir / "model.int8.onnx").unlink(missing_ok=True)
    quantized = _quantize(artifact_dir, Path(workdir) / "calibration.npy", prep, multilabel) if int8 else None
    _write(artifact_dir / "labels.json", json.dumps(list(labels), indent=2))
    _write(artifact_dir / "preprocessing.json", prep.to_json())
    _write(artifact_dir / "model.json", json.dumps({
        "task": "multilabel" if multilabel else "multiclass", "backbone": meta["backbone"],
        "preset": meta["preset"], "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "input": "input", "output": "probabilities", "opset": OPSET, "int8": quantized}, indent=2))
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


def _quantize(artifact_dir: Path, calibration: Path, prep: Preprocessing, multilabel: bool) -> dict:
    """Static INT8 (QDQ, per-channel weights) of the backbone: about 2x the images/s of fp32 on CPUs with
    VNNI. The head after the global pooling — standardisation, the linear layer's logits and the
    softmax/sigmoid — stays float (`head_nodes`): quantized, the probabilities came in steps of 1/255
    and a softmax row summed to 0.992; in float it costs one 1280 x L product per image.

    Calibrated on half of the training crops saved by train(), checked on the other half."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    if not calibration.exists():
        return {"skipped": "no calibration images in the work directory"}
    arrays = np.stack([normalize(c, prep.mean, prep.std) for c in np.load(calibration)])
    calib, check = (arrays[::2], arrays[1::2]) if len(arrays) >= 4 else (arrays, arrays)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": calib[i:i + 8]} for i in range(0, len(calib), 8)])

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory(dir=artifact_dir) as tmp:
        pre, out = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(artifact_dir / "model.onnx"), str(pre))
        quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=head_nodes(onnx.load(str(pre))))
        fp32, q = (ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": check})[0]
                   for path in (artifact_dir / "model.onnx", out))
        same = (fp32 >= 0.5) == (q >= 0.5) if multilabel else fp32.argmax(1) == q.argmax(1)
        agreement, diff = float(same.mean()), float(abs(fp32 - q).max())
        if agreement < MIN_INT8_AGREEMENT:
            return {"skipped": f"INT8 agreed with fp32 on {int(same.sum())} of {same.size} held-out images "
                               f"({agreement:.1%}, under the {MIN_INT8_AGREEMENT:.0%} required): fp32 is served",
                    "agreement": agreement}
        os.replace(out, artifact_dir / "model.int8.onnx")
    return {"file": "model.int8.onnx", "agreement": round(agreement, 4), "max_prob_diff": round(diff, 4),
            "checked_images": len(check)}


def head_nodes(model) -> list[str]:
    """Names of the nodes between the global pooling and the output: every node the output depends on
    without passing through the pooling (ReduceMean of the backbone's feature map)."""
    producer = {name: node for node in model.graph.node for name in node.output}
    names, todo = [], [out.name for out in model.graph.output]
    while todo:
        node = producer.get(todo.pop())
        if node is None or node.name in names or node.op_type in POOLING:  # None: an input or a weight
            continue
        names.append(node.name)
        todo.extend(node.input)
    return names


def _write(path: Path, text: str) -> None:
    atomic_write(path, text + "\n")

"""Offline prediction with an exported model: ONNX Runtime + Pillow + numpy, never torch."""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from imgcls.errors import DataError, MissingDependency, UsageError
from imgcls.providers.local.preprocess import batches, load_image, read_preprocessing

try:
    import onnxruntime as ort
except ImportError:
    raise MissingDependency("local", "onnxruntime") from None


class OnnxClassifier:
    """An exported artifact directory (model.onnx, labels.json, preprocessing.json, model.json)."""

    def __init__(self, artifact_dir: Path, threads: int | None = None, precision: str = "auto"):
        """`precision`: "auto" runs model.int8.onnx when the export made one (about 2x faster), "fp32"
        always runs model.onnx, the model checked against torch."""
        artifact_dir = Path(artifact_dir)
        if not (artifact_dir / "model.onnx").exists():
            raise UsageError(f"no exported model in {artifact_dir} (model.onnx is missing)",
                             hint="train and export first: imgcls train")
        with _damaged(artifact_dir / "labels.json"):
            self.labels: list[str] = json.loads((artifact_dir / "labels.json").read_text())
            if not isinstance(self.labels, list) or not all(isinstance(x, str) for x in self.labels):
                raise ValueError("not a list of label names")
        with _damaged(artifact_dir / "model.json"):
            self.info: dict = json.loads((artifact_dir / "model.json").read_text())
            self.multilabel: bool = self.info.get("task") == "multilabel"
        with _damaged(artifact_dir / "preprocessing.json"):
            self.preprocessing = read_preprocessing(artifact_dir)
        int8 = artifact_dir / "model.int8.onnx"
        self.precision = "int8" if precision == "auto" and int8.exists() else "fp32"
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        # Spinning workers would take the cores from the decoding threads (measured +20-30% images/s).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        model = int8 if self.precision == "int8" else artifact_dir / "model.onnx"
        with _damaged(model):
            self._session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
            self._input = self._session.get_inputs()[0].name
            outputs = self._session.get_outputs()[0].shape[-1]
        with _damaged(artifact_dir / "labels.json"):
            if isinstance(outputs, int) and outputs != len(self.labels):  # scores would go to the wrong names
                raise ValueError(f"it names {len(self.labels)} labels; {model.name} scores {outputs}")
        # Decoding is Pillow C code that releases the GIL, so threads overlap it with inference.
        self._pool = ThreadPoolExecutor(max(2, os.cpu_count() or 1), thread_name_prefix="imgcls-decode")

    def predict_arrays(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities (n, L) for preprocessed NCHW float32 input."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if len(batch) == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        return self._session.run(None, {self._input: batch})[0]

    def prepare(self, image, index: int = 0) -> np.ndarray:
        """Decode and preprocess one path or bytes; DataError naming the file or its position."""
        prep = self.preprocessing
        try:
            return prep.apply(load_image(image, draft_size=prep.resize))
        except DataError as exc:
            if isinstance(image, (bytes, bytearray, memoryview)):
                raise DataError(f"image #{index} is not a decodable image ({exc.message.split(': ', 1)[-1]})",
                                hint=exc.hint, index=index) from None
            raise

    def predict_images(self, images, batch_size: int = 32, tta: bool = False) -> np.ndarray:
        """Probabilities (n, L) for a list of paths or encoded bytes; `tta` averages with the mirror image."""
        out = []
        for arrays in batches(self._pool, lambda pair: self.prepare(pair[1], pair[0]), list(enumerate(images)),
                              batch_size):
            x = np.stack(arrays)
            if tta:
                probs = self.predict_arrays(np.concatenate([x, x[..., ::-1]]))
                out.append((probs[:len(x)] + probs[len(x):]) / 2)
            else:
                out.append(self.predict_arrays(x))
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@contextmanager
def _damaged(path: Path):
    """A file of the exported model that cannot be read is a DataError naming it, not a library's error."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, (OSError, ValueError, TypeError, KeyError, AttributeError)):
            reason = str(exc)
        elif type(exc).__module__.startswith("onnxruntime"):  # InvalidProtobuf, Fail...: no public base class
            reason = str(exc).splitlines()[0][:200]
        else:
            raise
        raise DataError(f"the exported model's {path.name} in {path.parent} is damaged ({reason})",
                        hint="it was changed after training: train a new run (drop --run), or restore the file") from None

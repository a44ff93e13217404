"""`imgcls export` on azureml: the best trial's ONNX model and labels, downloaded from the workspace's
artifact store as the fake holds them (where `ml_client.jobs.download` finds them too), load in
onnxruntime and score the run's test images."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("azure.ai.ml")

from imgcls import api
from tests.conftest import make_dataset
from tests.contract.harness_azureml import RG, SUB, WS
from tests.fakes.azureml import FakeAzureML, FakeCredential


def preprocess(path: str, prep: dict) -> np.ndarray:
    """AutoML's documented classification preprocessing, as model.json states it."""
    with Image.open(path) as im:
        im = im.convert("RGB").resize((prep["resize"], prep["resize"]))
    off = (prep["resize"] - prep["crop"]) // 2
    arr = np.asarray(im, dtype=np.float32)[off:off + prep["crop"], off:off + prep["crop"]] / 255.0
    arr = (arr - np.array(prep["mean"], np.float32)) / np.array(prep["std"], np.float32)
    return arr.transpose(2, 0, 1)[None].astype(np.float32)


def test_export_downloads_the_best_trials_onnx_model(tmp_path, monkeypatch):
    import onnxruntime as ort

    data = make_dataset(tmp_path / "data", {"red": 12, "green": 12, "blue": 12}, size=(48, 36))
    with FakeAzureML(SUB, RG, WS, job_seconds=0.3, lro_polls=1, poll_seconds=0.05) as fake:
        for key, value in {**fake.env(), "IMGCLS_AZURE_CREDENTIAL": "tests.fakes.azureml:FakeCredential"}.items():
            monkeypatch.setenv(key, value)
        cfg_path = tmp_path / "a.yaml"
        cfg_path.write_text(f"name: colours\nprovider: azureml\ndataset:\n  source: {data}\n"
                            f"azureml:\n  subscription_id: {SUB}\n  resource_group: {RG}\n  workspace: {WS}\n"
                            "  compute: cpu-cluster\n  vm_size: Standard_DS3_v2\n")
        run, trained = api.train(api.load(cfg_path))
        best = trained.extra["best_trial"]
        sent = len(fake.requests)
        _, paths = api.export(None, run_id=run.id)
        # only the two files are fetched, not the trial's PyTorch and MLflow copies beside them
        fetched = sorted(r.path.rsplit("/", 1)[1] for r in fake.requests[sent:] if "/ExperimentRun/" in r.path)
        assert fetched == ["labels.json", "model.onnx"]
        folder = run.file("artifacts", "export")
        assert [p.name for p in paths] == ["model.onnx", "labels.json", "model.json"]
        assert all(p.parent == folder for p in paths)
        assert run.step("export")["files"] == [str(p) for p in paths]
        # the bytes the SDK's own download of the trial gets (its default output: ExperimentRun/dcid.<trial>/)
        from azure.ai.ml import MLClient
        MLClient(FakeCredential(), SUB, RG, WS, enable_telemetry=False).jobs.download(best, download_path=tmp_path / "dl")
        sdk = tmp_path / "dl" / "artifacts" / "train_artifacts"
        assert (folder / "model.onnx").read_bytes() == (sdk / "model.onnx").read_bytes()
        assert (folder / "labels.json").read_bytes() == (sdk / "labels.json").read_bytes()

    labels = json.loads((folder / "labels.json").read_text())
    meta = json.loads((folder / "model.json").read_text())
    assert labels == ["blue", "green", "red"] and meta["labels"] == labels and meta["task"] == "multiclass"
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    test = [json.loads(x) for x in run.file("manifest.jsonl").read_text().splitlines()]
    test = [r for r in test if r["split"] == "test"]
    batch = np.concatenate([preprocess(r["uri"], meta["preprocessing"]) for r in test])
    logits = session.run([out.name], {inp.name: batch})[0]
    assert logits.shape == (len(test), 3)
    predicted = [labels[i] for i in logits.argmax(axis=1)]
    assert predicted == [r["labels"][0] for r in test]


def test_azureml_declares_onnx_export():
    from imgcls.providers import registry
    assert registry.get("azureml").capabilities.export == ("onnx",)

"""`imgcls export` on Azure ML: the ONNX model AutoML for images leaves in the best trial's artifacts
(train_artifacts/model.onnx and labels.json, as Azure ML studio's "Outputs + logs" shows them) downloaded
into the export folder, with a model.json saying what goes in and comes out.

The trial's artifacts live in the workspace's artifact store under ExperimentRun/dcid.<trial>/ (where
`ml_client.jobs.download` finds a job's default output too); only the two files are fetched, not the
trial's PyTorch weights and MLflow copy beside them."""
from __future__ import annotations

import json
from pathlib import Path

from ...errors import ProviderError, UnsupportedError
from ...runs import atomic_write
from ..base import TrainResult

ARTIFACT_STORE = "workspaceartifactstore"
FOLDERS = ("train_artifacts", "outputs")           # where the files have been, newest layout first
# AutoML's documented preprocessing for classification ONNX models (valid_resize_size, valid_crop_size and
# the ImageNet statistics), unless the job set other sizes in its training parameters.
PREPROCESSING = {"resize": 256, "crop": 224, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                 "layout": "NCHW", "scale": "0-1 (pixels / 255), then (x - mean) / std"}


def export(provider, model: TrainResult, dest: Path) -> list[Path]:
    run, client, az = provider.run, provider.client, provider.config.azureml
    trial = (model.extra or {}).get("best_trial") or (run.resource("model") or {}).get("trial")
    if not trial:
        raise UnsupportedError(f"run {run.id} has no AutoML trial to export the model of"
                               + (" (an adopted deployment: its model's job is not known)"
                                  if run.ledger.get("adopted") else ""),
                               hint="export runs that imgcls trained on azureml")
    store = client.datastore(ARTIFACT_STORE)
    if store is None:
        raise ProviderError(f"the workspace has no {ARTIFACT_STORE} datastore, where AutoML keeps trial outputs",
                            hint="check the workspace in the Azure ML studio (Data > Datastores)")
    account_url = (az.storage_account_url
                   or f"{store['protocol']}://{store['account']}.blob.{store['endpoint']}").rstrip("/")
    container = client.container(account_url, store["container"], store["credential"])
    base = f"ExperimentRun/dcid.{trial}/"
    names = client.blob_names(container, base)
    folder = next((f for f in FOLDERS if f"{base}{f}/model.onnx" in names), None)
    if folder is None:
        raise UnsupportedError(f"the best trial {trial} left no model.onnx (looked in "
                               + " and ".join(f"{f}/" for f in FOLDERS) + ")",
                               hint="AutoML for images writes train_artifacts/model.onnx for classification "
                                    "models; train again with `imgcls train` to get a trial that has one")
    dest = Path(dest)
    written = []
    for name in ("model.onnx", "labels.json"):
        if f"{base}{folder}/{name}" not in names:
            continue
        size = client.download_blob(container, f"{base}{folder}/{name}", dest / name)
        provider.progress.log(f"exported {dest / name} ({size / 1e6:.1f} MB) from trial {trial}")
        written.append(dest / name)
    labels = json.loads((dest / "labels.json").read_text()) if (dest / "labels.json").exists() else None
    atomic_write(dest / "model.json", json.dumps({
        "task": provider.config.task, "source": f"azureml trial {trial} ({folder}/)", "labels": labels,
        "output": "logits, one per label in labels.json order: softmax for multiclass, sigmoid for multilabel",
        "preprocessing": PREPROCESSING}, indent=2))
    return [*written, dest / "model.json"]

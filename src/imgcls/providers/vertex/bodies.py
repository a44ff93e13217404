"""The request bodies we send to Vertex AI, as plain JSON (camelCase, as the REST API documents them).

Pure functions, no SDK: client.py turns them into protos; tests/golden/vertex pins what goes over the wire.
The training pipeline is what `aiplatform.AutoMLImageTrainingJob(prediction_type="classification").run()`
sends, built here so we can create it without the SDK's blocking wait and record it at once.
"""
from __future__ import annotations

import re

SCHEMA = "gs://google-cloud-aiplatform/schema/"
IMAGE_METADATA = SCHEMA + "dataset/metadata/image_1.0.0.yaml"
IMPORT_SCHEMA = {False: SCHEMA + "dataset/ioformat/image_classification_single_label_io_format_1.0.0.yaml",
                 True: SCHEMA + "dataset/ioformat/image_classification_multi_label_io_format_1.0.0.yaml"}
TRAINING_DEFINITION = SCHEMA + "trainingjob/definition/automl_image_classification_1.0.0.yaml"
ML_USE = "aiplatform.googleapis.com/ml_use"
MIME = {"jpeg": "image/jpeg", "jpg": "image/jpeg", "png": "image/png", "gif": "image/gif", "bmp": "image/bmp",
        "ico": "image/vnd.microsoft.icon", "webp": "image/webp", "tiff": "image/tiff", "tif": "image/tiff"}


def labels(run_id: str) -> dict[str, str]:
    """Resource labels that tie a Vertex resource to its run (lower-case, at most 63 characters)."""
    return {"imgcls-run": re.sub(r"[^a-z0-9_-]", "-", run_id.lower())[:63]}


def dataset(display_name: str, run_id: str) -> dict:
    return {"displayName": display_name[:128], "metadataSchemaUri": IMAGE_METADATA, "labels": labels(run_id)}


def import_config(import_uri: str, multilabel: bool) -> dict:
    return {"gcsSource": {"uris": [import_uri]}, "importSchemaUri": IMPORT_SCHEMA[multilabel]}


def training_pipeline(display_name: str, run_id: str, dataset_id: str, *, model_type: str, milli_node_hours: int,
                      multilabel: bool, early_stopping: bool) -> dict:
    # The import file's ML_USE labels decide the split, so Vertex tests on our test split.
    split = {f"{use}Filter": f"labels.{ML_USE}={use}" for use in ("training", "validation", "test")}
    return {
        "displayName": display_name[:128],
        "trainingTaskDefinition": TRAINING_DEFINITION,
        "trainingTaskInputs": {"modelType": model_type, "budgetMilliNodeHours": milli_node_hours,
                               "disableEarlyStopping": not early_stopping, "multiLabel": multilabel},
        "inputDataConfig": {"datasetId": dataset_id, "filterSplit": split},
        "modelToUpload": {"displayName": display_name[:128], "labels": labels(run_id)},
        "labels": labels(run_id),
    }


def endpoint(display_name: str, run_id: str) -> dict:
    return {"displayName": display_name[:128], "labels": labels(run_id)}


def deployed_model(model: str, display_name: str, min_replicas: int, max_replicas: int,
                   service_account: str | None) -> dict:
    body = {"model": model, "displayName": display_name[:128],
            "automaticResources": {"minReplicaCount": min_replicas, "maxReplicaCount": max_replicas}}
    if service_account:
        body["serviceAccount"] = service_account
    return body


def predict_parameters(n_labels: int) -> dict:
    """Every label's score: no threshold, as many predictions as labels."""
    return {"confidenceThreshold": 0.0, "maxPredictions": n_labels}


def batch_prediction_job(display_name: str, run_id: str, model: str, instances_uri: str, output_prefix: str,
                         n_labels: int, service_account: str | None) -> dict:
    body = {"displayName": display_name[:128], "model": model,
            "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": [instances_uri]}},
            "outputConfig": {"predictionsFormat": "jsonl", "gcsDestination": {"outputUriPrefix": output_prefix}},
            "modelParameters": predict_parameters(n_labels), "labels": labels(run_id)}
    if service_account:
        body["serviceAccount"] = service_account
    return body


def export_config(export_format: str, destination: str) -> dict:
    return {"exportFormatId": export_format, "artifactDestination": {"outputUriPrefix": destination}}


def mime_type(uri: str) -> str:
    return MIME.get(uri.rsplit(".", 1)[-1].lower(), "image/jpeg")

"""The `vertex` provider: images to GCS, an ImageDataset, an AutoML training pipeline, an endpoint."""
from __future__ import annotations

import os
from pathlib import Path

from ..base import Capabilities, CredentialStatus, Limits, Provider

# Vertex accepts 8,000–800,000 milli node hours for AutoML image classification.
MIN_NODE_HOURS, MAX_NODE_HOURS = 8.0, 800.0


class VertexProvider(Provider):
    name = "vertex"
    capabilities = Capabilities(
        multiclass=True, multilabel=True, deploy=True, export=("tflite", "edgetpu-tflite", "tf-js", "core-ml"),
        batch_predict=True, remote_uris=("gs",),
        credentials="Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS or gcloud auth)",
        extra="vertex")
    # https://cloud.google.com/vertex-ai/docs/image-data/classification/prepare-data
    limits = Limits(min_images_per_label=10, max_labels=5000, max_images=1_000_000,
                    formats=("jpeg", "gif", "png", "bmp", "ico"), max_file_bytes=30 * 1024 * 1024,
                    max_predict_bytes=1_500_000, max_label_length=128)
    poll_interval = 30.0

    @classmethod
    def check_credentials(cls, config) -> CredentialStatus:
        path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        if path:
            return CredentialStatus(Path(path).is_file(), f"GOOGLE_APPLICATION_CREDENTIALS={path}"
                                    + ("" if Path(path).is_file() else " (file not found)"))
        adc = Path(os.path.expanduser("~/.config/gcloud/application_default_credentials.json"))
        if adc.is_file():
            return CredentialStatus(True, str(adc))
        return CredentialStatus(False, "no Application Default Credentials: run `gcloud auth application-default "
                                       "login` or set GOOGLE_APPLICATION_CREDENTIALS")

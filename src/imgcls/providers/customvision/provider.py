"""The `customvision` provider: Azure Custom Vision projects, tags, iterations and published predictions."""
from __future__ import annotations

import os

from ..base import Capabilities, CredentialStatus, Limits, Provider

KEY_VARS = ("VISION_TRAINING_KEY", "VISION_PREDICTION_KEY")


class CustomVisionProvider(Provider):
    name = "customvision"
    capabilities = Capabilities(
        multiclass=True, multilabel=True, deploy=True,
        export=("onnx", "tensorflow", "coreml", "dockerfile", "openvino"), batch_predict=False,
        credentials="customvision.training_key / prediction_key (e.g. ${VISION_TRAINING_KEY})",
        extra="customvision",
        notice="Azure Custom Vision's SDK is deprecated and the service is set to retire; "
               "the same config runs on Azure ML with --provider azureml.")
    # https://learn.microsoft.com/azure/ai-services/custom-vision-service/limits-and-quotas (S0 tier)
    limits = Limits(min_images_per_label=5, max_labels=500, max_images=100_000,
                    formats=("jpeg", "png", "bmp", "gif"), max_file_bytes=6 * 1024 * 1024,
                    downscales_large_files=True, min_side=256, max_side=10_240,
                    max_predict_bytes=4 * 1024 * 1024, max_batch_images=64, max_label_length=256)
    poll_interval = 10.0

    @classmethod
    def check_credentials(cls, config) -> CredentialStatus:
        section = config.customvision if config is not None else None
        have = {"training_key": bool(section and section.training_key) or bool(os.environ.get(KEY_VARS[0])),
                "prediction_key": bool(section and section.prediction_key) or bool(os.environ.get(KEY_VARS[1]))}
        missing = [k for k, v in have.items() if not v]
        if missing:
            return CredentialStatus(False, f"set customvision.{' and customvision.'.join(missing)} "
                                           f"(or {', '.join(KEY_VARS)})")
        return CredentialStatus(True, "training and prediction keys")

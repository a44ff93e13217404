"""The `azureml` provider: MLTable data, an AutoML image job (with sweeps), a managed online endpoint."""
from __future__ import annotations

import os
from pathlib import Path

from ..base import Capabilities, CredentialStatus, Limits, Provider

_SOURCES = ("AZURE_CLIENT_ID/AZURE_CLIENT_SECRET/AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE",
            "IDENTITY_ENDPOINT (managed identity)", "~/.azure (az login)")


class AzureMLProvider(Provider):
    name = "azureml"
    capabilities = Capabilities(
        multiclass=True, multilabel=True, deploy=True, export=("mlflow",), batch_predict=True,
        remote_uris=("azureml", "https"),
        credentials="azure-identity DefaultAzureCredential (env service principal, managed identity, az login)",
        extra="azureml")
    # AutoML for images: at least 2 classes; small data trains but the docs advise 10+ per class.
    limits = Limits(min_images_per_label=10, formats=("jpeg", "png", "bmp", "gif", "tiff", "webp"),
                    max_predict_bytes=100 * 1024 * 1024)
    poll_interval = 30.0

    @classmethod
    def check_credentials(cls, config) -> CredentialStatus:
        env = os.environ
        if env.get("AZURE_CLIENT_ID") and (env.get("AZURE_CLIENT_SECRET") or env.get("AZURE_FEDERATED_TOKEN_FILE")):
            return CredentialStatus(True, "service principal from the environment")
        if env.get("IDENTITY_ENDPOINT") or env.get("MSI_ENDPOINT"):
            return CredentialStatus(True, "managed identity")
        if Path(os.path.expanduser("~/.azure/msal_token_cache.json")).exists():
            return CredentialStatus(True, "Azure CLI login (~/.azure)")
        return CredentialStatus(False, "none of: " + ", ".join(_SOURCES))

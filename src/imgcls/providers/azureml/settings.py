"""Where the Azure ML workspace and credential come from: the `azureml:` section, else AZURE_* variables.

Resolved without raising, so `status`, `providers` and `down` always work; each step calls `require`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from ...errors import ConfigError

# setting -> the environment variable it falls back to when unset or empty (configs write ${VAR:-})
ENV = {"subscription_id": "AZURE_SUBSCRIPTION_ID", "resource_group": "AZURE_RESOURCE_GROUP",
       "workspace": "AZUREML_WORKSPACE"}
# The test seam: "module:attribute" of a credential class or factory used instead of DefaultAzureCredential.
# Explicit and announced on stderr whenever it is used; never set it outside tests.
CREDENTIAL_ENV = "IMGCLS_AZURE_CREDENTIAL"
# What DefaultAzureCredential tries, for messages (`imgcls providers`, auth errors).
SOURCES = ("AZURE_CLIENT_ID/AZURE_CLIENT_SECRET/AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE (workload identity)",
           "managed identity", "az login", "azd auth login", "Connect-AzAccount (PowerShell)")


def where(setting: str) -> str:
    return f"azureml.{setting} (or {ENV[setting]})"


@dataclass(frozen=True)
class Settings:
    subscription_id: str | None
    resource_group: str | None
    workspace: str | None
    credential: str | None            # the seam's "module:attr", when set

    def require(self) -> None:
        missing = [name for name in ENV if not getattr(self, name)]
        if missing:
            raise ConfigError("the Azure ML workspace is not named: " + ", ".join(where(m) for m in missing)
                              + (" is" if len(missing) == 1 else " are") + " not set",
                              hint="export " + " ".join(f"{ENV[m]}=…" for m in missing)
                                   + ", or write them in the config's azureml: section")

    @property
    def workspace_path(self) -> str:
        return (f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
                f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace}")


def resolve(section) -> Settings:
    values = {}
    for name, var in ENV.items():
        value = (getattr(section, name, None) or "").strip() if section is not None else ""
        values[name] = value or os.environ.get(var, "").strip() or None
    return Settings(**values, credential=os.environ.get(CREDENTIAL_ENV, "").strip() or None)

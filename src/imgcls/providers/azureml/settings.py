"""Where the Azure ML workspace and credential come from: the `azureml:` section, else AZURE_* variables.

Resolved without raising, so `status`, `providers` and `down` always work; each step calls `require`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from ...config import Section
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


class AzureMLConfig(Section):
    # Credentials never go here: azure-identity's DefaultAzureCredential finds them (az login, an
    # AZURE_CLIENT_ID/AZURE_CLIENT_SECRET/AZURE_TENANT_ID service principal, managed identity).
    subscription_id: str | None = Field(None, description="Azure subscription id; unset or empty: $AZURE_SUBSCRIPTION_ID.")
    resource_group: str | None = Field(None, description="Resource group of the workspace; unset or empty: $AZURE_RESOURCE_GROUP.")
    workspace: str | None = Field(None, description="Azure ML workspace name; unset or empty: $AZUREML_WORKSPACE.")
    compute: str | None = Field(None, description="AmlCompute cluster the AutoML job runs on; unset: imgcls-<8 hex of "
                                                  "the project folder>, shared by the project's runs. Created (min 0 "
                                                  "nodes) if absent and removed by the `imgcls down` of the last run "
                                                  "using it; an existing cluster is used and left alone.")
    vm_size: str = Field("Standard_NC6s_v3", description="VM size of a cluster the run creates (a GPU size for AutoML images).")
    max_nodes: int = Field(1, ge=1, description="Most nodes of a cluster the run creates.")
    model_names: list[str] = Field(default_factory=lambda: ["vitb16r224"],
                                   description="AutoML image models to try, e.g. [vitb16r224, vits16r224, seresnext, "
                                               "resnet50]. One trial: the first; a sweep: a choice among them.")
    max_trials: int = Field(1, ge=1, description="Trials of the job; above 1 (or with train.preset: best, or a "
                                                 "search_space) the job sweeps.")
    max_concurrent_trials: int = Field(1, ge=1, description="Trials run at once (at most the cluster's nodes).")
    sampling_algorithm: Literal["random", "grid", "bayesian"] = Field("random", description="How a sweep samples.")
    early_termination: Literal["bandit", "median_stopping", "truncation_selection"] | None = Field(
        None, description="Early termination policy of a sweep (not with bayesian sampling).")
    search_space: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Sweep subspaces, each {parameter: values}: a list or {choice: [...]}, {uniform: [lo, hi]}, "
                    "{loguniform: [lo, hi]}, {randint: upper}, {normal: [mu, sigma]}, {quniform: [lo, hi, q]} …, "
                    "e.g. [{model_name: [vitb16r224], learning_rate: {uniform: [0.001, 0.01]}}].")
    training_parameters: dict[str, Any] = Field(default_factory=dict,
                                                description="Fixed AutoML image training parameters, e.g. "
                                                            "{number_of_epochs: 15, learning_rate: 0.01}.")
    instance_type: str = Field("Standard_DS3_v2", description="VM size of the online deployment.")
    instance_count: int = Field(1, ge=1, description="Instances of the online deployment.")
    storage_account_url: str | None = Field(None, description="Blob account URL for uploads; defaults to the datastore's.")
    keep_images: bool = Field(True, description="`down` leaves the uploaded images in the datastore: they are "
                                                "content-addressed (imgcls/images/<sha256>) and shared by every "
                                                "run that uses them. false: `down` also deletes the images this "
                                                "run uploaded.")
    batch_instance_count: int = Field(1, ge=1, description="Nodes of the compute cluster a `predict --batch` job "
                                                            "runs on (at most the cluster's max_nodes).")
    batch_mini_batch_size: int = Field(10, ge=1, description="Images each `predict --batch` worker scores at once.")
    predict_batch: int = Field(8, ge=1, le=64, description="Images per scoring request (each request also stays "
                                                           "under 4 MB).")
    location: str | None = Field(None, description="Azure region of the workspace (e.g. eastus), for `imgcls "
                                                   "plan`'s prices; unset: the estimate says unknown.")

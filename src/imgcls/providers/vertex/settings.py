"""What the `vertex:` section (plus train/deploy settings) means for Vertex AI, checked before any call.

Everything that can be wrong offline is a ConfigError here, naming the setting and the allowed values:
a budget Vertex would refuse, a malformed or missing staging bucket, replicas Vertex cannot serve.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from ...config import Section
from ...errors import ConfigError

# Milli node hours AutoML image classification accepts, per model family (Vertex's documented range).
BUDGETS = {"cloud": (8_000, 800_000), "mobile": (1_000, 100_000)}
DEFAULT_NODE_HOURS = 8.0
ANONYMOUS_ENV = "IMGCLS_VERTEX_ANONYMOUS"
PROJECT_ENVS = ("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT")
_BUCKET = re.compile(r"^gs://([a-z0-9][a-z0-9._-]{1,220}[a-z0-9])(?:/(.*))?$")


@dataclass(frozen=True)
class Settings:
    """Resolved without raising (so `status` and `down` always work); each step calls the checks it needs."""

    project: str | None          # None: take the credentials' project (client.py)
    location: str
    staging_bucket: str | None
    model_type: str
    node_hours: float | None
    multilabel: bool
    early_stopping: bool
    import_format: str
    api_endpoint: str | None
    anonymous: bool              # the explicit test seam: an overridden endpoint and IMGCLS_VERTEX_ANONYMOUS=1
    service_account: str | None
    min_replicas: int
    max_replicas: int
    machine_type: str | None
    batch_predict_over: int
    predict_instances: int
    export_format: str
    keep_images: bool
    retries: int

    @property
    def mobile(self) -> bool:
        return self.model_type.startswith("MOBILE_")

    @property
    def milli_node_hours(self) -> int:
        return budget(self.model_type, self.node_hours)

    @property
    def bucket(self) -> str:
        return staging(self.staging_bucket)[0]

    @property
    def prefix(self) -> str:
        """No leading or trailing "/"; "" for the bucket's root."""
        return staging(self.staging_bucket)[1]

    def gs(self, *parts: str) -> str:
        """gs://bucket/prefix/parts…"""
        return f"gs://{self.bucket}/{self.name(*parts)}"

    def name(self, *parts: str) -> str:
        """The object name (without the bucket) of gs(*parts)."""
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))

    def check_deploy(self) -> None:
        if self.min_replicas < 1:
            raise ConfigError(f"deploy.min_replicas = {self.min_replicas}: Vertex AI endpoints serve from at "
                              "least one replica", hint="set deploy.min_replicas: 1")
        if self.max_replicas < self.min_replicas:
            raise ConfigError(f"deploy.max_replicas = {self.max_replicas} is below deploy.min_replicas = "
                              f"{self.min_replicas}", hint="make deploy.max_replicas at least deploy.min_replicas")
        if self.machine_type:
            raise ConfigError(f"deploy.machine_type = {self.machine_type!r}: AutoML image models deploy on "
                              "automatic resources, Vertex picks the machine",
                              hint="remove deploy.machine_type; size the endpoint with deploy.min_replicas and "
                                   "deploy.max_replicas")

    def check_all(self) -> None:
        """Everything checkable offline, before dataset-import uploads a byte."""
        staging(self.staging_bucket)
        budget(self.model_type, self.node_hours)
        self.check_deploy()


def budget(model_type: str, node_hours: float | None) -> int:
    """Milli node hours for `train.node_hours`, or a ConfigError naming the range Vertex accepts."""
    family = "mobile" if model_type.startswith("MOBILE_") else "cloud"
    low, high = BUDGETS[family]
    value = DEFAULT_NODE_HOURS if node_hours is None else float(node_hours)
    milli = round(value * 1000)
    if not low <= milli <= high:
        raise ConfigError(
            f"train.node_hours = {value:g} is outside what Vertex AI accepts for {model_type} models "
            f"({low / 1000:g}-{high / 1000:g} node hours)",
            hint=f"set train.node_hours between {low / 1000:g} and {high / 1000:g}, "
                 f"e.g. --set train.node_hours={low / 1000:g}")
    return milli


def staging(value: str | None) -> tuple[str, str]:
    if not value:
        raise ConfigError("vertex.staging_bucket is not set: Vertex AI trains on images in Cloud Storage",
                          hint="set vertex.staging_bucket: gs://YOUR-BUCKET/imgcls (an existing bucket in the "
                               "same region as vertex.location)")
    m = _BUCKET.match(value.strip().rstrip("/"))
    if not m:
        raise ConfigError(f"vertex.staging_bucket = {value!r} is not a gs://bucket[/prefix] URI",
                          hint="write it as gs://my-bucket/imgcls (lower-case bucket name)")
    return m.group(1), (m.group(2) or "").strip("/")


def anonymous(api_endpoint: str | None) -> bool:
    """Anonymous calls only when asked for twice: an endpoint override AND the variable."""
    if os.environ.get(ANONYMOUS_ENV, "") not in ("1", "true", "yes"):
        return False
    if not api_endpoint:
        raise ConfigError(f"{ANONYMOUS_ENV}=1 is set but vertex.api_endpoint is not: anonymous calls are only "
                          "for a local fake of Vertex AI",
                          hint=f"unset {ANONYMOUS_ENV} to use your Google credentials, or set vertex.api_endpoint")
    return True


def resolve(cfg) -> Settings:
    """Settings of a RunConfig. Raises only for the anonymous seam misused; see Settings.check_all."""
    v, dep = cfg.vertex, cfg.deploy
    project = v.project or next((os.environ[e] for e in PROJECT_ENVS if os.environ.get(e)), None)
    endpoint = (v.api_endpoint or "").strip().rstrip("/") or None
    return Settings(project=project, location=v.location, staging_bucket=v.staging_bucket,
                    model_type=v.model_type, node_hours=cfg.train.node_hours, multilabel=cfg.multilabel,
                    early_stopping=cfg.train.early_stopping, import_format=v.import_format, api_endpoint=endpoint,
                    anonymous=anonymous(endpoint), service_account=v.service_account,
                    min_replicas=dep.min_replicas, max_replicas=dep.max_replicas, machine_type=dep.machine_type,
                    batch_predict_over=v.batch_predict_over, predict_instances=v.predict_instances,
                    export_format=v.export_format, keep_images=v.keep_images, retries=v.retries)


class VertexConfig(Section):
    project: str | None = Field(None, description="Google Cloud project id; unset: $GOOGLE_CLOUD_PROJECT, else the "
                                                     "project of the Application Default Credentials.")
    location: str = Field("us-central1", description="Vertex AI region of the dataset, model and endpoint.")
    staging_bucket: str | None = Field(None, description="gs://bucket[/prefix] where images and the import file go. "
                                                            "The bucket must exist (same region as `location`).")
    model_type: Literal["CLOUD", "CLOUD_1", "MOBILE_TF_LOW_LATENCY_1", "MOBILE_TF_VERSATILE_1",
                        "MOBILE_TF_HIGH_ACCURACY_1"] = Field(
        "CLOUD", description="CLOUD models serve from an endpoint (train.node_hours 8-800); MOBILE_TF_* models "
                             "also export (train.node_hours 1-100).")
    import_format: Literal["csv", "jsonl"] = "jsonl"
    api_endpoint: str | None = Field(None, description="Override the API endpoint (tests, private endpoints). With "
                                                          "IMGCLS_VERTEX_ANONYMOUS=1 in the environment, calls go "
                                                          "there without credentials (tests against a fake only).")
    service_account: str | None = Field(None, description="Service account the deployed model and batch "
                                                             "prediction jobs run as; unset: Vertex's default.")
    batch_predict_over: int = Field(500, ge=1, description="Evaluate through a batch prediction job above this many test images.")
    predict_instances: int = Field(8, ge=1, le=100, description="Images per online prediction request (each request "
                                                                "also stays under Vertex's 1.5 MB limit).")
    export_format: Literal["tflite", "edgetpu-tflite", "tf-saved-model", "tf-js", "core-ml"] = Field(
        "tflite", description="What `export` asks Vertex for (MOBILE_TF_* model types only).")
    keep_images: bool = Field(True, description="`down` leaves the uploaded images in the staging bucket: they are "
                                                "content-addressed and shared by every run that uses them. false: "
                                                "`down` also deletes the images this run uploaded (another run's "
                                                "dataset that found them there then points at missing images).")
    retries: int = Field(5, ge=0, le=20, description="Retries of a throttled (429) or unavailable (503) call.")

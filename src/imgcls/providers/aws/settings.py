"""The `aws:` config section (AwsConfig, validated by pydantic) and what it resolves to for one run.

Imports neither boto3 nor botocore: the core config imports this module to validate every config file.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from ...errors import ConfigError

REGION_ENVS = ("AWS_REGION", "AWS_DEFAULT_REGION")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")     # S3's rules for a bucket name


class AwsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    region: str | None = Field(None, description="AWS region of the project, datasets, model and bucket; unset: "
                                                 "$AWS_REGION, $AWS_DEFAULT_REGION, else the profile's region.")
    profile: str | None = Field(None, description="A named profile of ~/.aws/config (SSO, assume-role, keys); "
                                                  "unset: boto3's usual chain ($AWS_PROFILE, environment, files, "
                                                  "instance role).")
    bucket: str | None = Field(None, description="An existing S3 bucket for the images, manifests and training "
                                                 "output; the run leaves it in place. Unset: the run creates "
                                                 "imgcls-<run id> and `down` deletes it.")
    prefix: str = Field("imgcls", description="Key prefix in the bucket; each run writes under <prefix>/<run id>/ "
                                              "and `down` deletes that.")
    start_timeout_minutes: float = Field(30, gt=0, description="How long deploy waits for the model to be "
                                                               "RUNNING (starting takes AWS 10-40 minutes).")
    retries: int = Field(5, ge=1, le=20, description="Attempts per call in botocore's standard retry mode "
                                                     "(throttling and transient errors).")


@dataclass(frozen=True)
class Settings:
    region: str | None
    profile: str | None
    bucket: str                     # the bucket this run uses
    creates_bucket: bool            # True: the run creates it (and `down` deletes it)
    prefix: str                     # "<prefix>/<run id>", no leading or trailing "/"
    min_units: int
    max_units: int | None
    start_timeout: float            # seconds
    retries: int
    multilabel: bool

    def check(self) -> None:
        """What AWS would refuse, found offline: before dataset-import uploads a byte, and before deploy."""
        if not self.creates_bucket and not _BUCKET.match(self.bucket):
            raise ConfigError(f"aws.bucket = {self.bucket!r} is not an S3 bucket name",
                              hint="3-63 lower-case letters, digits, dots and dashes, e.g. aws.bucket: my-imgcls-data")
        if self.min_units < 1:
            raise ConfigError(f"deploy.min_replicas = {self.min_units}: a Custom Labels model runs on at least one "
                              "inference unit", hint="set deploy.min_replicas: 1")
        if self.max_units is not None and self.max_units < self.min_units:
            raise ConfigError(f"deploy.max_replicas = {self.max_units} is below deploy.min_replicas = "
                              f"{self.min_units}", hint="make deploy.max_replicas at least deploy.min_replicas")

    def key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))


def run_bucket(run_id: str) -> str:
    """The bucket a run creates when the config names none: lower-case, dash-separated, at most 63 chars."""
    slug = re.sub(r"[^a-z0-9-]+", "-", run_id.lower()).strip("-")
    return f"imgcls-{slug}"[:63].rstrip("-")


def resolve(cfg, run_id: str) -> Settings:
    """Never raises (so `status` and `down` always work); the steps that create call Settings.check()."""
    a, dep = cfg.aws, cfg.deploy
    region = a.region or next((os.environ[e] for e in REGION_ENVS if os.environ.get(e)), None)
    bucket = (a.bucket or "").removeprefix("s3://").strip("/") or None
    prefix = "/".join(p for p in (a.prefix.strip("/"), run_id) if p)
    return Settings(region=region, profile=a.profile, bucket=bucket or run_bucket(run_id),
                    creates_bucket=bucket is None, prefix=prefix, min_units=dep.min_replicas,
                    max_units=dep.max_replicas if dep.max_replicas != dep.min_replicas else None,
                    start_timeout=a.start_timeout_minutes * 60, retries=a.retries, multilabel=cfg.multilabel)

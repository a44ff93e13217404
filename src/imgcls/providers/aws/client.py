"""The only module that imports boto3/botocore: a thin wrapper over the S3 and Rekognition clients that maps
AWS errors to ours (credentials -> AuthError, a resource not there -> Missing, the rest -> ProviderError
naming the call). Throttling is retried by botocore's standard retry mode; the endpoint comes from
AWS_ENDPOINT_URL, which boto3 honours itself (that is how the test fake stands in)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
)

from ...errors import AuthError, ConfigError, ProviderError
from .settings import Settings

AUTH_CODES = {"AccessDenied", "AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
              "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException",
              "InvalidClientTokenId", "MissingAuthenticationTokenException",
              "401", "403"}  # a HEAD answer has no body: S3 refusing the key or the bucket shows only so
MISSING_CODES = {"ResourceNotFoundException", "NoSuchBucket", "NoSuchKey", "404", "NotFound"}
CRED_HINT = ("set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (`aws configure` or `aws sso login`), "
             "or aws.profile in the config")


class Missing(ProviderError):
    """The resource is not there: deletes and lookups treat it as gone."""

    shown_as = "ProviderError"


def find_credentials(profile: str | None) -> tuple[str | None, str | None, str | None]:
    """(how credentials were found or None, the region, what went wrong) through botocore's chain, without
    calling AWS. The instance and container role providers are left out: asking them is a network call."""
    try:
        session = botocore.session.Session(profile=profile)
        resolver = session.get_component("credential_provider")
        for name in ("iam-role", "container-role"):
            with contextlib.suppress(Exception):
                resolver.remove(name)
        creds = resolver.load_credentials()
        region = session.get_config_variable("region")
    except BotoCoreError as exc:            # a profile that is not there, a broken config file
        return None, None, str(exc)
    return (creds.method if creds is not None else None), region, None


def no_region() -> ConfigError:
    return ConfigError("no AWS region: set aws.region, or AWS_REGION / AWS_DEFAULT_REGION",
                       hint="e.g. aws.region: us-east-1 (Custom Labels runs in a few regions only)")


@contextlib.contextmanager
def calling(call: str, missing_ok: bool = False) -> Iterator[None]:
    """Map what botocore raises during `call` to the error tree."""
    try:
        yield
    except ClientError as exc:
        err = exc.response.get("Error", {})
        code, message = str(err.get("Code", "")), err.get("Message") or str(exc)
        if code in AUTH_CODES:
            raise AuthError(f"AWS refused {call}: {code}: {message}",
                            hint="check the credentials and their IAM permissions (rekognition:*, s3:*); "
                                 + CRED_HINT) from None
        if code in MISSING_CODES:
            raise Missing(f"{call}: {code}: {message}") from None
        raise ProviderError(f"AWS {call} failed: {code}: {message}") from None
    except NoCredentialsError:
        raise AuthError(f"no AWS credentials found for {call}", hint=CRED_HINT) from None
    except NoRegionError:
        raise no_region() from None
    except EndpointConnectionError as exc:
        raise ProviderError(f"AWS {call}: cannot reach {exc.kwargs.get('endpoint_url')}",
                            hint="check the network (or AWS_ENDPOINT_URL)") from None
    except BotoCoreError as exc:
        raise ProviderError(f"AWS {call} failed: {exc}") from None


class AwsClient:
    def __init__(self, s: Settings):
        self.s = s
        with calling("creating the session"):
            self.session = boto3.session.Session(profile_name=s.profile, region_name=s.region)
        config = Config(retries={"mode": "standard", "max_attempts": s.retries}, user_agent_extra="imgcls",
                        s3={"addressing_style": "path"})
        with calling("creating the clients"):
            self.s3 = self.session.client("s3", config=config)
            self.rek = self.session.client("rekognition", config=config)

    @property
    def region(self) -> str | None:
        return self.session.region_name

    @staticmethod
    def require_region(s: Settings) -> str:
        """The region aws.region, the environment or the profile names; ConfigError when none does."""
        with calling("reading the profile"):
            region = boto3.session.Session(profile_name=s.profile, region_name=s.region).region_name
        if not region:
            raise no_region()
        return region

    # -- S3 ------------------------------------------------------------------------------------
    def bucket_exists(self, bucket: str) -> bool:
        try:
            with calling(f"HeadBucket {bucket}"):
                self.s3.head_bucket(Bucket=bucket)
        except Missing:
            return False
        return True

    def create_bucket(self, bucket: str) -> None:
        kwargs = {}
        if self.region and self.region != "us-east-1":      # us-east-1 refuses a location constraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        with calling(f"CreateBucket {bucket}"):
            self.s3.create_bucket(Bucket=bucket, **kwargs)

    def delete_bucket(self, bucket: str) -> None:
        with contextlib.suppress(Missing), calling(f"DeleteBucket {bucket}"):
            self.s3.delete_bucket(Bucket=bucket)

    def put(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        with calling(f"PutObject s3://{bucket}/{key}"):
            self.s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)

    def get(self, bucket: str, key: str) -> bytes:
        with calling(f"GetObject s3://{bucket}/{key}"):
            return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def keys(self, bucket: str, prefix: str) -> list[str]:
        out: list[str] = []
        with calling(f"ListObjectsV2 s3://{bucket}/{prefix}"):
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                out += [o["Key"] for o in page.get("Contents", [])]
        return out

    def delete_object(self, bucket: str, key: str) -> None:
        with contextlib.suppress(Missing), calling(f"DeleteObject s3://{bucket}/{key}"):
            self.s3.delete_object(Bucket=bucket, Key=key)

    # -- Rekognition Custom Labels ---------------------------------------------------------------
    def project(self, name: str) -> dict | None:
        with calling(f"DescribeProjects {name}"):
            found = self.rek.describe_projects(ProjectNames=[name]).get("ProjectDescriptions", [])
        return found[0] if found else None

    def create_project(self, name: str) -> str:
        with calling(f"CreateProject {name}"):
            return self.rek.create_project(ProjectName=name)["ProjectArn"]

    def delete_project(self, arn: str) -> None:
        with contextlib.suppress(Missing), calling(f"DeleteProject {arn}"):
            self.rek.delete_project(ProjectArn=arn)

    def create_dataset(self, project_arn: str, kind: str, bucket: str, key: str) -> str:
        with calling(f"CreateDataset {kind}"):
            return self.rek.create_dataset(ProjectArn=project_arn, DatasetType=kind, DatasetSource={
                "GroundTruthManifest": {"S3Object": {"Bucket": bucket, "Name": key}}})["DatasetArn"]

    def dataset(self, arn: str) -> dict | None:
        try:
            with calling(f"DescribeDataset {arn}"):
                return self.rek.describe_dataset(DatasetArn=arn)["DatasetDescription"]
        except Missing:
            return None

    def delete_dataset(self, arn: str) -> None:
        with contextlib.suppress(Missing), calling(f"DeleteDataset {arn}"):
            self.rek.delete_dataset(DatasetArn=arn)

    def create_version(self, project_arn: str, name: str, bucket: str, prefix: str) -> str:
        with calling(f"CreateProjectVersion {name}"):
            return self.rek.create_project_version(ProjectArn=project_arn, VersionName=name, OutputConfig={
                "S3Bucket": bucket, "S3KeyPrefix": prefix})["ProjectVersionArn"]

    def version(self, project_arn: str, name: str) -> dict | None:
        try:
            with calling(f"DescribeProjectVersions {name}"):
                found = self.rek.describe_project_versions(ProjectArn=project_arn, VersionNames=[name])
        except Missing:                               # the project itself is gone
            return None
        if not isinstance(found.get("ProjectVersionDescriptions"), list):  # a garbled answer is not "none"
            raise ProviderError(f"DescribeProjectVersions {name}: the answer holds no ProjectVersionDescriptions",
                                hint="a proxy or the service answered oddly; try again")
        return next(iter(found["ProjectVersionDescriptions"]), None)

    def start(self, arn: str, min_units: int, max_units: int | None) -> str:
        kwargs = {"MaxInferenceUnits": max_units} if max_units else {}
        with calling(f"StartProjectVersion {arn}"):
            return self.rek.start_project_version(ProjectVersionArn=arn, MinInferenceUnits=min_units,
                                                  **kwargs)["Status"]

    def stop(self, arn: str) -> None:
        with calling(f"StopProjectVersion {arn}"):
            self.rek.stop_project_version(ProjectVersionArn=arn)

    def delete_version(self, arn: str) -> None:
        with contextlib.suppress(Missing), calling(f"DeleteProjectVersion {arn}"):
            self.rek.delete_project_version(ProjectVersionArn=arn)

    def detect(self, arn: str, image: bytes) -> dict[str, float]:
        """Label -> confidence in 0..1 for every label the model returns (MinConfidence 0: all of them)."""
        with calling("DetectCustomLabels"):
            labels = self.rek.detect_custom_labels(ProjectVersionArn=arn, Image={"Bytes": image},
                                                   MinConfidence=0)["CustomLabels"]
        return {l["Name"]: float(l["Confidence"]) / 100.0 for l in labels}

"""The fake AWS driven by boto3 as AWS's published Custom Labels Python examples drive the real service:
create a project, datasets from Ground Truth manifests in S3, train, describe versions, wait, start, detect,
stop, delete — plus the error shapes, retries and waiters boto3 relies on."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

boto3 = pytest.importorskip("boto3")
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.fakes.aws import FakeAws

BUCKET = "custom-labels-console-us-east-1-fake"
FAST = {"Delay": 1, "MaxAttempts": 20}      # the waiters' default is 120 s between looks


def client(service: str, **kw):
    """A fresh session each time: boto3's default session would keep the credentials it first found."""
    return boto3.session.Session().client(service, **kw)


def _png(rgb) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (80, 80), rgb).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def fake(monkeypatch):
    with FakeAws(train_seconds=0.3, start_seconds=0.2) as fake:
        for k, v in fake.env().items():
            monkeypatch.setenv(k, v)
        yield fake
        assert not fake.crashes, fake.crashes[0]


def _manifest(s3, colours: dict, part: str) -> str:
    lines = []
    for name, rgb in colours.items():
        for i in range(3):
            key = f"images/{part}/{name}_{i}.png"
            s3.put_object(Bucket=BUCKET, Key=key, Body=_png(tuple(min(255, c + 10 * i) for c in rgb)))
            lines.append(json.dumps({"source-ref": f"s3://{BUCKET}/{key}", "colour": 0, "colour-metadata": {
                "confidence": 1, "class-name": name, "human-annotated": "yes",
                "creation-date": "2026-01-01T00:00:00", "type": "groundtruth/image-classification",
                "job-name": "labeling-job/colour"}}))
    key = f"manifests/{part}.manifest"
    s3.put_object(Bucket=BUCKET, Key=key, Body="\n".join(lines).encode())
    return key


def test_the_published_example_flow(fake):
    s3, rek = client("s3"), client("rekognition")
    s3.create_bucket(Bucket=BUCKET)
    colours = {"red": (200, 20, 20), "blue": (20, 20, 200)}
    project_arn = rek.create_project(ProjectName="colours")["ProjectArn"]
    for kind in ("train", "test"):
        key = _manifest(s3, colours, kind)
        arn = rek.create_dataset(ProjectArn=project_arn, DatasetType=kind.upper(), DatasetSource={
            "GroundTruthManifest": {"S3Object": {"Bucket": BUCKET, "Name": key}}})["DatasetArn"]
        desc = rek.describe_dataset(DatasetArn=arn)["DatasetDescription"]
        assert desc["Status"] == "CREATE_COMPLETE" and desc["DatasetStats"]["TotalEntries"] == 6
        assert desc["DatasetStats"]["TotalLabels"] == 2
    entries = rek.list_dataset_entries(DatasetArn=arn)["DatasetEntries"]
    assert len(entries) == 6 and json.loads(entries[0])["source-ref"].startswith("s3://")

    fake.state.train_seconds = 600          # held in progress until the first look, however busy the machine
    version_arn = rek.create_project_version(ProjectArn=project_arn, VersionName="v1", OutputConfig={
        "S3Bucket": BUCKET, "S3KeyPrefix": "output"})["ProjectVersionArn"]
    first = rek.describe_project_versions(ProjectArn=project_arn, VersionNames=["v1"])
    assert first["ProjectVersionDescriptions"][0]["Status"] == "TRAINING_IN_PROGRESS"
    fake.state.train_seconds = 0.3
    rek.get_waiter("project_version_training_completed").wait(
        ProjectArn=project_arn, VersionNames=["v1"], WaiterConfig=FAST)
    desc = rek.describe_project_versions(ProjectArn=project_arn, VersionNames=["v1"])["ProjectVersionDescriptions"][0]
    assert desc["Status"] == "TRAINING_COMPLETED" and desc["EvaluationResult"]["F1Score"] == 1.0
    summary = desc["EvaluationResult"]["Summary"]["S3Object"]
    assert json.loads(s3.get_object(Bucket=summary["Bucket"], Key=summary["Name"])["Body"].read())

    with pytest.raises(ClientError) as err:            # not started yet
        rek.detect_custom_labels(ProjectVersionArn=version_arn, Image={"Bytes": _png((200, 20, 20))})
    assert err.value.response["Error"]["Code"] == "ResourceNotReadyException"

    assert rek.start_project_version(ProjectVersionArn=version_arn, MinInferenceUnits=1)["Status"] == "STARTING"
    rek.get_waiter("project_version_running").wait(ProjectArn=project_arn, VersionNames=["v1"], WaiterConfig=FAST)
    labels = rek.detect_custom_labels(ProjectVersionArn=version_arn, Image={"Bytes": _png((210, 30, 25))},
                                      MinConfidence=0)["CustomLabels"]
    assert [l["Name"] for l in labels] == ["red", "blue"] and labels[0]["Confidence"] > 50
    by_s3 = rek.detect_custom_labels(ProjectVersionArn=version_arn, MaxResults=1, Image={
        "S3Object": {"Bucket": BUCKET, "Name": "images/test/blue_0.png"}})["CustomLabels"]
    assert [l["Name"] for l in by_s3] == ["blue"]

    with pytest.raises(ClientError) as err:            # a running model cannot be deleted
        rek.delete_project_version(ProjectVersionArn=version_arn)
    assert err.value.response["Error"]["Code"] == "ResourceInUseException"
    rek.stop_project_version(ProjectVersionArn=version_arn)
    state = rek.describe_project_versions(ProjectArn=project_arn)["ProjectVersionDescriptions"][0]["Status"]
    assert state in ("STOPPING", "STOPPED")
    with pytest.raises(ClientError) as err:
        rek.delete_project(ProjectArn=project_arn)
    assert err.value.response["Error"]["Code"] == "ResourceInUseException"
    import time
    time.sleep(0.15)
    rek.delete_project_version(ProjectVersionArn=version_arn)
    for d in rek.describe_projects(ProjectNames=["colours"])["ProjectDescriptions"][0]["Datasets"]:
        rek.delete_dataset(DatasetArn=d["DatasetArn"])
    rek.delete_project(ProjectArn=project_arn)
    assert rek.describe_projects()["ProjectDescriptions"] == []
    with pytest.raises(ClientError) as err:
        rek.describe_project_versions(ProjectArn=project_arn)
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_s3_round_trip_listing_and_bucket_rules(fake):
    s3 = client("s3")
    s3.create_bucket(Bucket="b1")
    for i in range(5):
        s3.put_object(Bucket="b1", Key=f"p/{i}.txt", Body=str(i).encode())
    s3.upload_fileobj(io.BytesIO(b"x" * 100_000), "b1", "big.bin")
    assert s3.get_object(Bucket="b1", Key="big.bin")["Body"].read() == b"x" * 100_000
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="b1", Prefix="p/", PaginationConfig={"PageSize": 2})
    assert [o["Key"] for page in pages for o in page.get("Contents", [])] == [f"p/{i}.txt" for i in range(5)]
    with pytest.raises(ClientError) as err:
        s3.delete_bucket(Bucket="b1")
    assert err.value.response["Error"]["Code"] == "BucketNotEmpty"
    with pytest.raises(ClientError) as err:
        s3.head_bucket(Bucket="nope")
    assert err.value.response["Error"]["Code"] == "404"


def test_wrong_credentials_get_aws_error_shapes(fake, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONG")
    with pytest.raises(ClientError) as err:
        client("rekognition").describe_projects()
    assert err.value.response["Error"]["Code"] == "UnrecognizedClientException"
    with pytest.raises(ClientError) as err:
        client("s3").list_buckets()
    assert err.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_a_wrong_secret_fails_the_signature_check(fake, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(ClientError) as err:
        client("rekognition").describe_projects()
    assert err.value.response["Error"]["Code"] == "InvalidSignatureException"
    with pytest.raises(ClientError) as err:
        client("s3").put_object(Bucket="b", Key="k", Body=b"x")
    assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_throttling_is_retried_by_botocore(fake):
    fake.fail("DescribeProjects", "ThrottlingException", times=2)
    rek = client("rekognition", config=Config(retries={"mode": "standard", "max_attempts": 4}))
    assert rek.describe_projects()["ProjectDescriptions"] == []
    assert fake.calls.count("DescribeProjects") == 3
    fake.fail("DescribeProjects", "ThrottlingException", times=-1)
    with pytest.raises(ClientError) as err:
        client("rekognition", config=Config(retries={"mode": "standard", "max_attempts": 2})).describe_projects()
    assert err.value.response["Error"]["Code"] == "ThrottlingException"


def test_main_prints_the_environment():
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.aws", "--port", "0"], stdout=subprocess.PIPE,
                            text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        lines = [proc.stdout.readline().strip() for _ in range(4)]
    finally:
        proc.terminate()
        proc.wait(10)
    names = [line.split("=", 1)[0] for line in lines]
    assert names == ["export AWS_ENDPOINT_URL", "export AWS_ACCESS_KEY_ID", "export AWS_SECRET_ACCESS_KEY",
                     "export AWS_DEFAULT_REGION"]
    assert lines[0].split("=", 1)[1].startswith("http://127.0.0.1:")

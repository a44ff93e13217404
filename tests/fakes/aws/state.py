"""What the fake AWS holds: S3 buckets and objects, Custom Labels projects, datasets and project versions.

Long operations move on by the clock: a version trains for `train_seconds` after CreateProjectVersion, a
model starts for `start_seconds`, so a client that looks again later sees the next state. Training fits
the toy model (tests/fakes/toymodel.py) on the TRAIN dataset's images, read back from the fake's S3.
"""
from __future__ import annotations

import datetime as dt
import json
import threading
import time
from dataclasses import dataclass, field

from tests.fakes.toymodel import ToyModel

ACCOUNT = "123456789012"


class AwsError(Exception):
    """An AWS JSON 1.1 error: `__type`, `message` and the HTTP status botocore reads the class from."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def not_found(what: str) -> AwsError:
    return AwsError("ResourceNotFoundException", f"The resource {what} was not found.")


@dataclass
class Dataset:
    arn: str
    project: str               # project name
    type: str                  # TRAIN | TEST
    created: float
    entries: list[dict] = field(default_factory=list)
    errors: int = 0


@dataclass
class Version:
    arn: str
    project: str
    name: str
    created: float
    output: dict
    status: str = "TRAINING_IN_PROGRESS"
    trained_at: float | None = None
    fail: str | None = None            # set: training ends TRAINING_FAILED with this message
    model: ToyModel | None = None
    f1: float | None = None
    min_units: int | None = None
    max_units: int | None = None
    until: float = 0.0                 # when STARTING/STOPPING ends


@dataclass
class Project:
    arn: str
    name: str
    created: float
    datasets: dict[str, str] = field(default_factory=dict)     # TRAIN/TEST -> dataset arn


class State:
    def __init__(self, region: str = "us-east-1", train_seconds: float = 0.5, start_seconds: float = 0.3):
        self.region = region
        self.train_seconds = train_seconds
        self.start_seconds = start_seconds
        self.lock = threading.RLock()
        self.buckets: dict[str, dict[str, bytes]] = {}
        self.projects: dict[str, Project] = {}      # name -> project
        self.datasets: dict[str, Dataset] = {}      # arn -> dataset
        self.versions: dict[str, Version] = {}      # arn -> version
        self.fail_training: str | None = None       # tests: the next trainings fail with this message

    # -- S3 -----------------------------------------------------------------------------------
    def bucket(self, name: str) -> dict[str, bytes]:
        if name not in self.buckets:
            raise AwsError("NoSuchBucket", "The specified bucket does not exist", 404)
        return self.buckets[name]

    def s3_read(self, uri: str) -> bytes:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        objects = self.bucket(bucket)
        if key not in objects:
            raise AwsError("InvalidParameterException", f"Manifest or image {uri} does not exist in S3.")
        return objects[key]

    # -- Custom Labels ------------------------------------------------------------------------
    def arn(self, *parts: str) -> str:
        stamp = str(int(time.time() * 1000))
        return f"arn:aws:rekognition:{self.region}:{ACCOUNT}:project/" + "/".join((*parts, stamp))

    def project(self, arn: str) -> Project:
        found = next((p for p in self.projects.values() if p.arn == arn), None)
        if found is None:
            raise not_found(arn)
        return found

    def version(self, arn: str) -> Version:
        v = self.versions.get(arn)
        if v is None:
            raise not_found(arn)
        return self.advance(v)

    def advance(self, v: Version) -> Version:
        """Let the clock move a version on: training ends, a start or stop completes."""
        now = time.time()
        if v.status == "TRAINING_IN_PROGRESS" and now - v.created >= self.train_seconds:
            self._train(v)
        elif v.status == "STARTING" and now >= v.until:
            v.status = "RUNNING"
        elif v.status == "STOPPING" and now >= v.until:
            v.status = "STOPPED"
        return v

    def _train(self, v: Version) -> None:
        v.trained_at = time.time()
        if v.fail:
            v.status = "TRAINING_FAILED"
            return
        project = self.projects[v.project]
        train = self.datasets.get(project.datasets.get("TRAIN", ""))
        test = self.datasets.get(project.datasets.get("TEST", ""))
        if train is None or not train.entries:
            v.status, v.fail = "TRAINING_FAILED", "The training dataset has no labeled entries."
            return
        multilabel = any(len(labels) != 1 for _, labels in _examples(train))
        v.model = ToyModel(multilabel).fit([(self.s3_read(uri), labels) for uri, labels in _examples(train)])
        if test is not None and test.entries:
            hits = 0
            examples = list(_examples(test))
            for uri, labels in examples:
                scores = v.model.predict(self.s3_read(uri))
                hits += bool(scores) and max(scores, key=scores.get) in labels
            v.f1 = round(hits / len(examples), 3)
        out = v.output
        key = f"{out.get('S3KeyPrefix', '').rstrip('/')}/{v.name}/EvaluationResultSummary-{v.project}-{v.name}.json"
        if out.get("S3Bucket") in self.buckets:
            self.buckets[out["S3Bucket"]][key.lstrip("/")] = json.dumps(
                {"EvaluationDetails": {"F1Score": v.f1}, "Version": 1}).encode()
        v.status = "TRAINING_COMPLETED"

    def describe_version(self, v: Version) -> dict:
        v = self.advance(v)
        out = {"ProjectVersionArn": v.arn, "CreationTimestamp": v.created, "Status": v.status,
               "StatusMessage": v.fail or _MESSAGES.get(v.status, v.status), "OutputConfig": v.output,
               "Feature": "CUSTOM_LABELS"}
        if v.trained_at is not None:
            out["TrainingEndTimestamp"] = v.trained_at
            out["BillableTrainingTimeInSeconds"] = max(1, round(v.trained_at - v.created))
        if v.f1 is not None:
            prefix = v.output.get("S3KeyPrefix", "").rstrip("/")
            out["EvaluationResult"] = {"F1Score": v.f1, "Summary": {"S3Object": {
                "Bucket": v.output.get("S3Bucket"),
                "Name": f"{prefix}/{v.name}/EvaluationResultSummary-{v.project}-{v.name}.json".lstrip("/")}}}
        if v.min_units is not None:
            out["MinInferenceUnits"] = v.min_units
            if v.max_units is not None:
                out["MaxInferenceUnits"] = v.max_units
        return out


def _examples(dataset: Dataset):
    for entry in dataset.entries:
        yield entry["source-ref"], entry_labels(entry)


def entry_labels(entry: dict) -> list[str]:
    """Labels of one Ground Truth manifest line: image-classification or -multilabel metadata."""
    labels: list[str] = []
    for key, meta in entry.items():
        if not key.endswith("-metadata") or not isinstance(meta, dict):
            continue
        if "class-name" in meta:
            labels.append(str(meta["class-name"]))
        elif "class-map" in meta:
            value = entry.get(key.removesuffix("-metadata"), [])
            labels += [str(meta["class-map"][str(i)]) for i in (value if isinstance(value, list) else [value])]
    return sorted(set(labels))


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat()


_MESSAGES = {"TRAINING_IN_PROGRESS": "The model is being trained.", "TRAINING_COMPLETED": "The model is ready to run.",
             "STARTING": "The model is starting.", "RUNNING": "The model is running.",
             "STOPPING": "The model is being stopped.", "STOPPED": "The model is ready to run."}

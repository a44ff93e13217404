"""Rekognition Custom Labels over AWS JSON 1.1: one function per `X-Amz-Target` operation, state.py's objects
in, the response document out, AwsError for what AWS refuses (its `__type` names and messages)."""
from __future__ import annotations

import base64
import binascii
import json
import time

from tests.fakes.aws.state import AwsError, Dataset, Project, State, Version, entry_labels, not_found
from tests.fakes.toymodel import is_image

DETECT_MAX_BYTES = 4 * 1024 * 1024


def _required(body: dict, *names: str) -> None:
    for name in names:
        if body.get(name) in (None, ""):
            raise AwsError("ValidationException", f"1 validation error detected: Value null at '{name}' failed "
                                                  "to satisfy constraint: Member must not be null")


def create_project(s: State, body: dict) -> dict:
    _required(body, "ProjectName")
    name = body["ProjectName"]
    if name in s.projects:
        raise AwsError("ResourceInUseException", f"The project {name} already exists.")
    p = Project(s.arn(name), name, time.time())
    s.projects[name] = p
    return {"ProjectArn": p.arn}


def describe_projects(s: State, body: dict) -> dict:
    wanted = body.get("ProjectNames")
    out = []
    for p in sorted(s.projects.values(), key=lambda p: p.created):
        if wanted and p.name not in wanted:
            continue
        out.append({"ProjectArn": p.arn, "CreationTimestamp": p.created, "Status": "CREATED",
                    "Feature": "CUSTOM_LABELS", "Datasets": [_dataset_brief(s.datasets[a]) for a in p.datasets.values()]})
    return {"ProjectDescriptions": out}


def delete_project(s: State, body: dict) -> dict:
    _required(body, "ProjectArn")
    p = s.project(body["ProjectArn"])
    if any(v.project == p.name for v in s.versions.values()):
        raise AwsError("ResourceInUseException", f"The project {p.arn} has models; delete them first.")
    for arn in p.datasets.values():
        s.datasets.pop(arn, None)
    del s.projects[p.name]
    return {"Status": "DELETING"}


def create_dataset(s: State, body: dict) -> dict:
    _required(body, "ProjectArn", "DatasetType")
    p = s.project(body["ProjectArn"])
    kind = body["DatasetType"]
    if kind not in ("TRAIN", "TEST"):
        raise AwsError("InvalidParameterException", f"DatasetType {kind!r} is not TRAIN or TEST.")
    if kind in p.datasets:
        raise AwsError("ResourceAlreadyExistsException", f"The project already has a {kind} dataset.")
    source = body.get("DatasetSource") or {}
    entries, errors = [], 0
    s3 = ((source.get("GroundTruthManifest") or {}).get("S3Object")) or {}
    if s3:
        text = s.s3_read(f"s3://{s3.get('Bucket')}/{s3.get('Name')}").decode("utf-8")
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                raise AwsError("InvalidManifestException", "The manifest file contains a line that is not JSON.")
            try:
                ok = is_image(s.s3_read(entry["source-ref"]))
            except (AwsError, KeyError):
                ok = False
            if ok:
                entries.append(entry)
            else:
                errors += 1
    elif source.get("DatasetArn"):
        entries = list(s.datasets[source["DatasetArn"]].entries) if source["DatasetArn"] in s.datasets else []
    d = Dataset(s.arn(p.name, "dataset", kind.lower()), p.name, kind, time.time(), entries, errors)
    s.datasets[d.arn] = d
    p.datasets[kind] = d.arn
    return {"DatasetArn": d.arn}


def _dataset(s: State, body: dict) -> Dataset:
    _required(body, "DatasetArn")
    d = s.datasets.get(body["DatasetArn"])
    if d is None:
        raise not_found(body["DatasetArn"])
    return d


def _dataset_brief(d: Dataset) -> dict:
    return {"CreationTimestamp": d.created, "DatasetType": d.type, "DatasetArn": d.arn,
            "Status": "CREATE_COMPLETE", "StatusMessage": "The dataset was successfully created from the manifest "
                                                          "file.", "StatusMessageCode": "SUCCESS"}


def describe_dataset(s: State, body: dict) -> dict:
    d = _dataset(s, body)
    labels = {label for e in d.entries for label in entry_labels(e)}
    return {"DatasetDescription": {
        "CreationTimestamp": d.created, "LastUpdatedTimestamp": d.created, "Status": "CREATE_COMPLETE",
        "StatusMessage": "The dataset was successfully created from the manifest file.", "StatusMessageCode": "SUCCESS",
        "DatasetStats": {"LabeledEntries": sum(bool(entry_labels(e)) for e in d.entries),
                         "TotalEntries": len(d.entries), "TotalLabels": len(labels), "ErrorEntries": d.errors}}}


def list_dataset_entries(s: State, body: dict) -> dict:
    d = _dataset(s, body)
    return {"DatasetEntries": [json.dumps(e) for e in d.entries]}


def delete_dataset(s: State, body: dict) -> dict:
    d = _dataset(s, body)
    del s.datasets[d.arn]
    p = s.projects.get(d.project)
    if p is not None:
        p.datasets.pop(d.type, None)
    return {}


def create_project_version(s: State, body: dict) -> dict:
    _required(body, "ProjectArn", "VersionName", "OutputConfig")
    p = s.project(body["ProjectArn"])
    name = body["VersionName"]
    if any(v.project == p.name and v.name == name for v in s.versions.values()):
        raise AwsError("ResourceInUseException", f"The version {name} already exists in project {p.name}.")
    if "TRAIN" not in p.datasets and not body.get("TrainingData"):
        raise AwsError("InvalidParameterException", "The project has no training dataset.")
    if body["OutputConfig"].get("S3Bucket") not in s.buckets:
        raise AwsError("InvalidParameterException", "The output bucket does not exist.")
    v = Version(f"{p.arn.rsplit('/', 1)[0]}/version/{name}/{int(time.time() * 1000)}", p.name, name, time.time(),
                dict(body["OutputConfig"]), fail=s.fail_training)
    s.versions[v.arn] = v
    return {"ProjectVersionArn": v.arn}


def describe_project_versions(s: State, body: dict) -> dict:
    _required(body, "ProjectArn")
    p = s.project(body["ProjectArn"])
    names = body.get("VersionNames")
    found = [v for v in s.versions.values() if v.project == p.name and (not names or v.name in names)]
    return {"ProjectVersionDescriptions": [s.describe_version(v) for v in sorted(found, key=lambda v: -v.created)]}


def start_project_version(s: State, body: dict) -> dict:
    _required(body, "ProjectVersionArn", "MinInferenceUnits")
    v = s.version(body["ProjectVersionArn"])
    if v.status not in ("TRAINING_COMPLETED", "STOPPED"):
        raise AwsError("ResourceInUseException", f"The model is {v.status} and cannot be started.")
    units = int(body["MinInferenceUnits"])
    if units < 1:
        raise AwsError("InvalidParameterException", "MinInferenceUnits must be at least 1.")
    v.min_units, v.max_units = units, body.get("MaxInferenceUnits")
    v.status, v.until = "STARTING", time.time() + s.start_seconds
    return {"Status": v.status}


def stop_project_version(s: State, body: dict) -> dict:
    _required(body, "ProjectVersionArn")
    v = s.version(body["ProjectVersionArn"])
    if v.status not in ("RUNNING", "STARTING"):
        raise AwsError("ResourceInUseException", f"The model is {v.status}, not running.")
    v.status, v.until = "STOPPING", time.time() + s.start_seconds / 2
    return {"Status": v.status}


def delete_project_version(s: State, body: dict) -> dict:
    _required(body, "ProjectVersionArn")
    v = s.version(body["ProjectVersionArn"])
    if v.status in ("RUNNING", "STARTING", "STOPPING", "TRAINING_IN_PROGRESS"):
        raise AwsError("ResourceInUseException", f"The model is {v.status}; stop it before deleting it.")
    del s.versions[v.arn]
    return {"Status": "DELETING"}


def detect_custom_labels(s: State, body: dict) -> dict:
    _required(body, "ProjectVersionArn", "Image")
    v = s.version(body["ProjectVersionArn"])
    if v.status != "RUNNING":
        raise AwsError("ResourceNotReadyException", f"ProjectVersion arn {v.arn} is not ready (it is {v.status}).")
    image = body["Image"]
    if "Bytes" in image:
        try:
            data = base64.b64decode(image["Bytes"], validate=True)
        except (binascii.Error, ValueError):
            raise AwsError("SerializationException", "Image.Bytes is not base64.")
        if len(data) > DETECT_MAX_BYTES:
            raise AwsError("ImageTooLargeException", "Image size is too large.")
    elif "S3Object" in image:
        data = s.s3_read(f"s3://{image['S3Object'].get('Bucket')}/{image['S3Object'].get('Name')}")
    else:
        raise AwsError("InvalidParameterException", "Request has invalid parameters: Image.")
    if not is_image(data):
        raise AwsError("InvalidImageFormatException", "Request has unsupported image format")
    min_conf = float(body.get("MinConfidence", 55.0))
    scores = sorted(v.model.predict(data).items(), key=lambda kv: -kv[1])
    labels = [{"Name": n, "Confidence": round(c * 100, 4)} for n, c in scores if c * 100 >= min_conf]
    if body.get("MaxResults"):
        labels = labels[:int(body["MaxResults"])]
    return {"CustomLabels": labels}


OPERATIONS = {name.title().replace("_", ""): fn for name, fn in (
    ("create_project", create_project), ("describe_projects", describe_projects), ("delete_project", delete_project),
    ("create_dataset", create_dataset), ("describe_dataset", describe_dataset),
    ("list_dataset_entries", list_dataset_entries), ("delete_dataset", delete_dataset),
    ("create_project_version", create_project_version), ("describe_project_versions", describe_project_versions),
    ("start_project_version", start_project_version), ("stop_project_version", stop_project_version),
    ("delete_project_version", delete_project_version), ("detect_custom_labels", detect_custom_labels))}


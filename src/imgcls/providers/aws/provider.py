"""The `aws` provider: Amazon Rekognition Custom Labels. Images and Ground Truth manifests to S3, a project
with a TRAIN and a TEST dataset from our split, a project version (training), the model started on
inference units as the deployment, DetectCustomLabels for scoring; `down` stops and deletes all of it.

Our decisions live here: the bucket (created as imgcls-<run id> and deleted by `down`, or the one the config
names and left alone), the run's keys under <prefix>/<run id>/, names chosen from the run id so a create
call cut short is found again (`find`), and when to wait. client.py is the only module that imports boto3.
"""
from __future__ import annotations

import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ...errors import ConfigError, DataError, ProviderError, UsageError
from ..base import (
    Capabilities,
    CredentialStatus,
    DatasetRef,
    Deployment,
    Limits,
    Provider,
    StillInUse,
    TrainResult,
)
from . import settings as settings_mod

MB = 1024 * 1024
TRAINED = {"TRAINING_COMPLETED", "STARTING", "RUNNING", "FAILED", "STOPPING", "STOPPED", "DELETING"}
CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png"}
GONE_CONFIRMATIONS = 3   # "no such model version" answers in a row before it counts as gone
STOP_WAIT = 600.0         # seconds `down` waits for a model to stop before deleting it


class AwsProvider(Provider):
    name = "aws"
    settings_model = settings_mod.AwsConfig
    requires = ("boto3",)
    capabilities = Capabilities(
        multiclass=True, multilabel=True, deploy=True, export=(), batch_predict=False,
        credentials="boto3's chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or aws.profile "
                    "(SSO, assume-role), ~/.aws; region from aws.region, AWS_REGION or AWS_DEFAULT_REGION",
        extra="aws", notice="a started model is billed per inference unit hour until `imgcls down`")
    # Rekognition Custom Labels' documented limits for image classification.
    limits = Limits(min_images_per_label=1, max_labels=250, max_images=250_000, formats=("jpeg", "png"),
                    max_file_bytes=15 * MB, min_side=64, max_side=4096, max_predict_bytes=4 * MB)
    poll_interval = 30.0      # training takes AWS an hour or more; starting a model 10-40 minutes
    serving_kinds = ()
    planner = "imgcls.providers.aws.plan"



    @classmethod
    def check_credentials(cls, config) -> CredentialStatus:
        from .client import find_credentials  # botocore only; the chain is read, no service is called
        profile = config.aws.profile if config is not None else None
        method, region, problem = find_credentials(profile)
        if method is None:
            return CredentialStatus(False, (f"{problem}; " if problem else "no AWS credentials found: ")
                                    + "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or run "
                                      "`aws sso login`")
        return CredentialStatus(True, f"{method} (region {region or 'not set'})")

    @classmethod
    def check_settings(cls, config) -> None:
        s = settings_mod.resolve(config, "<run-id>")
        s.check()
        try:
            from .client import AwsClient
        except ImportError:  # boto3 missing: the first step says so, with the install hint
            return
        AwsClient.require_region(s)

    @functools.cached_property
    def settings(self) -> settings_mod.Settings:
        return settings_mod.resolve(self.config, self.run.id)

    @functools.cached_property
    def client(self):
        from .client import AwsClient  # boto3 is imported only when a step talks to AWS
        return AwsClient(self.settings)

    # -- dataset-import -------------------------------------------------------------------------
    def upload(self, manifest, labels: list[str]) -> DatasetRef:
        from . import groundtruth

        s = self.settings
        s.check()
        remote = [u for u in manifest["uri"] if "://" in u]
        if remote:
            raise DataError(f"the aws provider uploads local images; {len(remote)} are URIs, e.g. {remote[0]}",
                            hint="download them and point dataset.source at the local copies")
        self._bucket()
        self.run.record("prefix", f"s3://{s.bucket}/{s.prefix}/", role="the run's images, manifests and "
                                                                        "training output")
        uris = self._upload_images(manifest)
        texts = groundtruth.manifests(manifest, lambda row: uris[row["uri"]], s.multilabel, labels)
        keys = {}
        for kind, text in texts.items():
            keys[kind] = s.key("manifests", f"{kind.lower()}.manifest")
            self.client.put(s.bucket, keys[kind], text.encode("utf-8"), "application/json")
        project = self._project()
        datasets = {kind: self._dataset(project, kind, keys[kind]) for kind in ("TRAIN", "TEST")}
        return DatasetRef("aws", project, len(manifest), labels, extra={
            "bucket": s.bucket, "manifests": {k: f"s3://{s.bucket}/{v}" for k, v in keys.items()},
            "datasets": datasets})

    def _bucket(self) -> None:
        s = self.settings
        if not s.creates_bucket:
            if not self.client.bucket_exists(s.bucket):
                raise ConfigError(f"the bucket s3://{s.bucket} (aws.bucket) does not exist or is not yours; "
                                  "nothing was uploaded",
                                  hint="create it in the same region, or leave aws.bucket unset and the run "
                                       "creates (and `down` deletes) a bucket of its own")
            self.run.record("bucket", s.bucket, name=s.bucket, ours=False)
            return
        if self.run.resource("bucket"):
            return
        self.run.intend("bucket", s.bucket)
        # Named after the run: a bucket already there is this run's own CreateBucket from before a kill.
        if not self.client.bucket_exists(s.bucket):
            self.client.create_bucket(s.bucket)
        self.run.record("bucket", s.bucket, name=s.bucket, ours=True)

    def _upload_images(self, manifest) -> dict[str, str]:
        """Local path -> s3:// uri; what the prefix already holds (a resumed import) is not sent again."""
        s = self.settings
        keys = {}
        for row in manifest.to_dict("records"):
            if not row["sha256"]:
                raise DataError(f"cannot read {row['uri']} to upload it", hint="check the file (imgcls validate)")
            ext = ".png" if row["format"] == "png" else ".jpg"
            keys[row["uri"]] = (s.key("images", row["sha256"] + ext), row["format"])
        there = set(self.client.keys(s.bucket, s.key("images") + "/"))
        todo = {uri: kf for uri, kf in keys.items() if kf[0] not in there}
        if todo:
            self.progress.log(f"uploading {len(todo)} images to s3://{s.bucket}/{s.key('images')}/")

        def put(item) -> None:
            uri, (key, fmt) = item
            self.client.put(s.bucket, key, Path(uri).read_bytes(), CONTENT_TYPES.get(fmt or "", "image/jpeg"))

        with ThreadPoolExecutor(max_workers=8) as pool:
            for done, _ in enumerate(pool.map(put, sorted(todo.items())), 1):
                self.progress.advance("uploading", done, len(todo))
        return {uri: f"s3://{s.bucket}/{key}" for uri, (key, _) in keys.items()}

    def _project(self) -> str:
        res = self.run.resource("project")
        if res:
            return res["id"]
        name = self.run.id
        resumed = bool(self.run.pending("project"))
        self.run.intend("project", name)
        found = self.client.project(name) if resumed else None   # a CreateProject cut short may have gone through
        arn = found["ProjectArn"] if found else self.client.create_project(name)
        self.run.record("project", arn, name=name)
        return arn

    def _dataset(self, project: str, kind: str, key: str) -> str:
        done = [r for r in self.run.resources("dataset") if r.get("type") == kind]
        if done:
            return done[-1]["id"]
        name = f"{self.run.id}/{kind}"
        resumed = any(r.get("name") == name for r in self.run.pending("dataset"))
        self.run.intend("dataset", name, type=kind, project=project)
        found = self.find({"kind": "dataset", "name": name, "type": kind}) if resumed else None
        arn = found["id"] if found else self.client.create_dataset(project, kind, self.settings.bucket, key)
        self.run.record("dataset", arn, name=name, type=kind, project=project)

        def look():
            d = self._confirmed(lambda: self.client.dataset(arn))
            if d is None:
                raise ProviderError(f"the {kind} dataset {arn} is gone while Custom Labels built it",
                                    hint=f"was it deleted outside imgcls? `imgcls down --run {self.run.id}`, then "
                                         "run again")
            status = d.get("Status", "")
            if status.endswith("IN_PROGRESS"):
                return "running", {"status": status}
            return ("succeeded" if status.endswith("COMPLETE") else "failed"), d

        state, d = self.wait(look, f"creating the {kind} dataset", 1800, f"`imgcls dataset-import --run "
                                                                         f"{self.run.id}` picks it up")
        errors = (d.get("DatasetStats") or {}).get("ErrorEntries", 0)
        if state != "succeeded" or errors:
            raise DataError(f"Custom Labels could not build the {kind} dataset: {d.get('StatusMessage') or ''} "
                            f"({errors} entries with errors)".strip(),
                            hint=f"check the images (imgcls validate); `imgcls down --run {self.run.id}` cleans up")
        return arn

    # -- training ---------------------------------------------------------------------------------
    def start_training(self, dataset: DatasetRef) -> dict:
        s = self.settings
        project = self.run.resource("project")["id"]
        pending = self.run.pending("model")
        if pending:                       # a CreateProjectVersion cut short: it may have gone through
            name, resumed = pending[-1]["name"], True
        else:                             # a new version name for each try (a failed one keeps its name)
            tries = len([r for r in self.run.ledger["resources"] if r["kind"] == "model"])
            name, resumed = (self.run.id if tries == 0 else f"{self.run.id}-{tries + 1}"), False
        self.run.intend("model", name, project=project)
        found = self._version(project, name) if resumed else None    # a create cut short, then resumed
        arn = found["ProjectVersionArn"] if found else self.client.create_version(project, name, s.bucket,
                                                                                  s.key("output"))
        self.run.record("model", arn, name=name, project=project)
        self.progress.log(f"training Custom Labels model {name} in project {self.run.id}")
        return self.run.record_operation("train", arn, project=project, version=name)

    def poll_training(self, operation: dict) -> tuple[str, dict]:
        v = self._version(operation["project"], operation["version"])
        if v is None:
            return "failed", {"status": "gone", "error": f"the model version {operation['version']} is gone"}
        status = v["Status"]
        if status == "TRAINING_IN_PROGRESS":
            return "running", {"status": status.lower()}
        if status not in TRAINED:
            return "failed", {"status": status.lower(), "error": v.get("StatusMessage") or status}
        f1 = (v.get("EvaluationResult") or {}).get("F1Score")
        return "succeeded", {"model_id": v["ProjectVersionArn"], "status": status.lower(),
                             "seconds": v.get("BillableTrainingTimeInSeconds"), "version": operation["version"],
                             "service_f1": f1}

    # -- deploy and score -----------------------------------------------------------------------
    def _model(self, model: TrainResult | None = None) -> dict:
        arn = model.model_id if model else (self.run.step("train") or {}).get("model_id")
        res = next((r for r in self.run.resources("model") if r["id"] == arn), None)
        if res is None:
            raise UsageError(f"run {self.run.id} has no trained model on AWS", hint=f"`imgcls train --run "
                                                                                     f"{self.run.id}` first")
        return res

    def _version(self, project: str, name: str) -> dict | None:
        return self._confirmed(lambda: self.client.version(project, name))

    def _confirmed(self, lookup: Callable[[], dict | None]) -> dict | None:
        """What `lookup` finds, or None once the service has said "not there" GONE_CONFIRMATIONS times in a
        row, seconds apart: one such answer (a resource just created, not yet listed: eventual consistency)
        must not make a training look gone, start a duplicate, or let `down` forget a started model."""
        for attempt in range(GONE_CONFIRMATIONS):
            found = lookup()
            if found is not None or attempt == GONE_CONFIRMATIONS - 1:
                return found
            time.sleep(min(self.poll_interval, 5.0))
        return None

    def _status(self, res: dict) -> str:
        v = self._version(res["project"], res["name"])
        return v["Status"] if v else "GONE"

    def deploy_model(self, model: TrainResult) -> Deployment:
        s, res = self.settings, self._model(model)
        s.check()
        status = self._status(res)
        if status == "STOPPING":
            self._wait_status(res, {"STOPPING"}, "stopping the model", STOP_WAIT)
            status = self._status(res)
        if status in ("TRAINING_COMPLETED", "STOPPED", "FAILED"):
            self.progress.log(f"starting {res['name']} on {s.min_units} inference unit(s)")
            self.run.record("model", res["id"], started=True, min_units=s.min_units, max_units=s.max_units)
            self.client.start(res["id"], s.min_units, s.max_units)
            status = "STARTING"
        if status == "STARTING":
            status = self._wait_status(res, {"STARTING"}, "starting the model", s.start_timeout)
        if status != "RUNNING":
            raise ProviderError(f"the Custom Labels model {res['name']} is {status}, not RUNNING",
                                hint=f"see the Rekognition console; `imgcls deploy --run {self.run.id}` tries again")
        return Deployment("aws", res["id"], "deployed", extra={"min_inference_units": s.min_units,
                                                               "max_inference_units": s.max_units})

    def _wait_status(self, res: dict, passing: set[str], what: str, timeout: float) -> str:
        def look():
            status = self._status(res)
            return ("running" if status in passing else "done"), {"status": status.lower(), "final": status}

        return self.wait(look, what, timeout, f"`imgcls deploy --run {self.run.id}` picks it up")[1]["final"]

    def ensure_scoring(self, model: TrainResult) -> None:
        if self._status(self._model(model)) != "RUNNING":
            self.deploy_model(model)

    def score(self, images: list[bytes], names: list[str]) -> list[dict[str, float]]:
        res = self._model()
        if not getattr(self, "_running", False):       # one look per process, not per batch
            status = self._status(res)
            if status != "RUNNING":
                raise UsageError(f"the Custom Labels model of run {self.run.id} is {status.lower()}, not running",
                                 hint=f"`imgcls deploy --run {self.run.id}` starts it")
            self._running = True
        for data, name in zip(images, names):
            if len(data) > self.limits.max_predict_bytes:
                raise DataError(f"{name} is {len(data) / MB:.1f} MB; DetectCustomLabels takes at most 4 MB of "
                                "image bytes", hint="resize or re-encode it (e.g. JPEG quality 90)")
        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(lambda data: self.client.detect(res["id"], data), images))

    def service_metrics(self, model: TrainResult) -> dict | None:
        res = self._model(model)
        v = self.client.version(res["project"], res["name"]) or {}
        ev = v.get("EvaluationResult") or {}
        summary = (ev.get("Summary") or {}).get("S3Object") or {}
        return {"source": "Rekognition Custom Labels EvaluationResult (its own test dataset, its threshold)",
                "f1": ev.get("F1Score"),
                "summary": f"s3://{summary['Bucket']}/{summary['Name']}" if summary.get("Name") else None}

    # -- run state: find what a cut-short create made, probe what is recorded ----------------------
    def find(self, entry: dict) -> dict | None:
        kind, name = entry["kind"], entry.get("name")
        c = self.client
        if kind == "bucket":
            return {"id": name} if c.bucket_exists(name) else None
        if kind == "project":
            p = c.project(name)
            return {"id": p["ProjectArn"]} if p else None
        if kind == "dataset":
            p = c.project(name.rsplit("/", 1)[0])
            d = next((d for d in (p or {}).get("Datasets", []) if d.get("DatasetType") == entry.get("type")), None)
            return {"id": d["DatasetArn"], "type": entry.get("type")} if d else None
        if kind == "model":
            v = self._version(entry["project"], name)
            return {"id": v["ProjectVersionArn"], "project": entry["project"]} if v else None
        return None

    def probe(self, resource: dict) -> str:
        kind, rid, c = resource["kind"], resource["id"], self.client
        if kind == "bucket":
            live = c.bucket_exists(rid)
        elif kind == "prefix":
            bucket, _, prefix = rid.removeprefix("s3://").partition("/")
            live = c.bucket_exists(bucket) and bool(c.keys(bucket, prefix))
        elif kind == "project":
            live = c.project(resource.get("name") or self.run.id) is not None
        elif kind == "dataset":
            live = c.dataset(rid) is not None
        elif kind == "model":
            live = self._version(resource["project"], resource["name"]) is not None
        else:
            return "unknown"
        return "live" if live else "gone"

    # -- teardown ---------------------------------------------------------------------------------
    def delete(self, resource: dict) -> str | None:
        kind, rid, c = resource["kind"], resource["id"], self.client
        models = [r.get("name") for r in self.run.live() if r["kind"] == "model"]
        if models and kind in ("project", "prefix", "bucket"):
            # A model that could not be deleted (still training) lives in the project and writes its output
            # under the prefix: both stay until it is gone.
            raise StillInUse(f"{kind} {rid} stays while the model {models[0]} lives in it",
                             hint=f"`imgcls down --run {self.run.id}` removes it with the model")
        if kind == "model":
            status = self._status(resource)
            if status == "GONE":
                return "gone"
            if status == "TRAINING_IN_PROGRESS":
                raise ProviderError(f"the model {resource['name']} is still training; Custom Labels cannot "
                                    "delete it before training ends",
                                    hint=f"run `imgcls down --run {self.run.id}` again once it has finished")
            if status in ("RUNNING", "STARTING"):
                if status == "STARTING":
                    self._wait_status(resource, {"STARTING"}, "waiting for the model to start", STOP_WAIT)
                c.stop(rid)
                status = "STOPPING"
            if status == "STOPPING":
                self._wait_status(resource, {"STOPPING"}, "stopping the model", STOP_WAIT)
            c.delete_version(rid)
        elif kind == "dataset":
            c.delete_dataset(rid)
        elif kind == "project":
            c.delete_project(rid)
        elif kind == "prefix":
            bucket, _, prefix = rid.removeprefix("s3://").partition("/")
            if c.bucket_exists(bucket):
                for key in c.keys(bucket, prefix):
                    c.delete_object(bucket, key)
        elif kind == "bucket":
            if not c.bucket_exists(rid):
                return "gone"
            for key in c.keys(rid, ""):       # the run's own bucket, named after it: whatever is left is its
                c.delete_object(rid, key)
            c.delete_bucket(rid)
        else:
            raise ProviderError(f"the aws provider does not know how to delete a {kind!r} ({rid})",
                                hint="delete it in the AWS console, then edit it out of the run's ledger.json")
        return None

    # -- what serves: a started model (a state of the trained model, not a resource of its own) -------
    def serving_resources(self) -> list[dict]:
        return [r for r in self.run.resources("model") if r.get("started")]

    def deploy_made(self, before: list[dict]) -> list[dict]:
        was = {r.get("id") for r in before if r["kind"] == "model" and r.get("started")}
        return super().deploy_made(before) + [r for r in self.serving_resources() if r["id"] not in was]

    def undeploy(self, resource: dict) -> str:
        """A started model is stopped (it stops billing), not deleted: it is the run's trained model."""
        if resource["kind"] != "model":
            return super().undeploy(resource)
        status = self._status(resource)
        if status == "STARTING":
            status = self._wait_status(resource, {"STARTING"}, "waiting for the model to start", STOP_WAIT)
        if status == "RUNNING":
            self.client.stop(resource["id"])
            status = "STOPPING"
        if status == "STOPPING":
            self._wait_status(resource, {"STOPPING"}, "stopping the model", STOP_WAIT)
        self.run.update_resource(resource, started=False)
        return "stopped" if status in ("RUNNING", "STOPPING") else status.lower()

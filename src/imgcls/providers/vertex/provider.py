"""The `vertex` provider: images to GCS, an ImageDataset, an AutoML training pipeline, an endpoint.

Our decisions live here: what to upload and where (staging.py), which split Vertex trains and tests on
(ours, as ML_USE), what to record and when (every resource the moment its name is known), when to wait
(we poll pipelines and batch jobs ourselves through Provider.wait), and what `down` deletes: the
dataset, pipeline, model, endpoint, batch jobs and the run's files under `{prefix}/runs/{run id}/`.
Uploaded images are content-addressed and shared between runs, so `down` keeps them unless
`vertex.keep_images: false`. client.py is the only module that imports the SDK, imported lazily.
"""
from __future__ import annotations

import datetime as dt
import functools
import os
import time
from pathlib import Path

from ...errors import ConfigError, DataError, ProviderError, UnsupportedError, UsageError
from ...paths import confined
from ...runs import atomic_write
from ..base import Capabilities, CredentialStatus, DatasetRef, Deployment, Limits, Provider, TrainResult
from . import bodies
from . import settings as settings_mod
from .settings import VertexConfig

RUNNING = {"PIPELINE_STATE_QUEUED", "PIPELINE_STATE_PENDING", "PIPELINE_STATE_RUNNING",
           "PIPELINE_STATE_CANCELLING", "PIPELINE_STATE_PAUSED", "PIPELINE_STATE_UNSPECIFIED",
           "JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_CANCELLING",
           "JOB_STATE_UPDATING", "JOB_STATE_PAUSED", "JOB_STATE_UNSPECIFIED"}
SUCCEEDED = {"PIPELINE_STATE_SUCCEEDED", "JOB_STATE_SUCCEEDED", "JOB_STATE_PARTIALLY_SUCCEEDED"}
DELETE_WAIT = 120.0  # seconds `down` waits for a cancelled pipeline or job to stop before deleting it


class VertexProvider(Provider):
    name = "vertex"
    settings_model = VertexConfig
    requires = ("google.cloud.aiplatform", "google.cloud.storage")
    capabilities = Capabilities(
        multiclass=True, multilabel=True, deploy=True,
        export=("tflite", "edgetpu-tflite", "tf-saved-model", "tf-js", "core-ml"),
        batch_predict=True, remote_uris=("gs",), adopt=True,
        credentials="Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS or gcloud auth)",
        extra="vertex")
    # https://cloud.google.com/vertex-ai/docs/image-data/classification/prepare-data
    limits = Limits(min_images_per_label=10, max_labels=5000, max_images=1_000_000,
                    formats=("jpeg", "gif", "png", "bmp", "ico"), max_file_bytes=30 * 1024 * 1024,
                    max_predict_bytes=1_500_000, max_label_length=128,
                    # https://cloud.google.com/vertex-ai/docs/quotas: 30,000 online prediction requests
                    # per minute per region
                    predict_concurrency=8, predict_requests_per_second=500.0)
    poll_interval = 30.0
    serving_kinds = ("endpoint",)
    planner = "imgcls.providers.vertex.plan"



    @classmethod
    def check_credentials(cls, config) -> CredentialStatus:
        endpoint = config.vertex.api_endpoint if config is not None else None
        if endpoint and os.environ.get(settings_mod.ANONYMOUS_ENV) in ("1", "true", "yes"):
            return CredentialStatus(True, f"anonymous ({settings_mod.ANONYMOUS_ENV}=1, endpoint {endpoint})")
        path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        if path:
            return CredentialStatus(Path(path).is_file(), f"GOOGLE_APPLICATION_CREDENTIALS={path}"
                                    + ("" if Path(path).is_file() else " (file not found)"))
        adc = Path(os.path.expanduser("~/.config/gcloud/application_default_credentials.json"))
        if adc.is_file():
            return CredentialStatus(True, str(adc))
        return CredentialStatus(False, "no Application Default Credentials: run `gcloud auth application-default "
                                       "login` or set GOOGLE_APPLICATION_CREDENTIALS")

    @classmethod
    def check_settings(cls, config) -> None:
        settings_mod.resolve(config).check_all()

    @functools.cached_property
    def settings(self) -> settings_mod.Settings:
        return settings_mod.resolve(self.config)

    @functools.cached_property
    def client(self):
        from .client import VertexClient  # the SDK is imported only when a step talks to the service
        return VertexClient(self.settings, log=self.progress.log)

    # -- dataset-import -------------------------------------------------------------------------
    def upload(self, manifest, labels: list[str]) -> DatasetRef:
        from . import staging

        s = self.settings
        s.check_all()                       # budget, bucket, replicas: before any call
        staging.check_sources(manifest)
        if not self.client.bucket_exists(s.bucket):
            raise ConfigError(f"the staging bucket gs://{s.bucket} does not exist (vertex.staging_bucket = "
                              f"{s.staging_bucket}); nothing was uploaded",
                              hint=f"create it (gcloud storage buckets create gs://{s.bucket} "
                                   f"--location={s.location}) or set vertex.staging_bucket to an existing bucket")
        staged = staging.stage_images(self.client, s, manifest, self.progress, self.record_uploads)
        text, content_type = staging.import_file(s, manifest, staged.uris)
        import_name = s.name("runs", self.run.id, f"import.{s.import_format}")
        import_uri = f"gs://{s.bucket}/{import_name}"
        self.run.record("object", import_uri, role="import file")   # its name is known: recorded first
        self.client.upload_bytes(s.bucket, import_name, text.encode("utf-8"), content_type)

        dataset = self.run.resource("dataset") or self.reconcile("dataset", self.run.id)
        if dataset is None:
            self.run.intend("dataset", self.run.id, display_name=self.run.id)
            pending = self.client.create_dataset(bodies.dataset(self.run.id, self.run.id))
            dataset = self.run.record("dataset", pending.resource_name, name=self.run.id, display_name=self.run.id)
            pending.result()
        self.progress.log(f"importing {len(manifest)} images into Vertex dataset {dataset['id']}")
        pending = self.client.import_data(dataset["id"], bodies.import_config(import_uri, s.multilabel))
        pending.result()
        failures = pending.metadata().get("genericMetadata", {}).get("partialFailures", [])
        if failures:
            shown = "\n  ".join(f.get("message", "?") for f in failures[:10])
            raise DataError(f"Vertex AI refused {len(failures)} of {len(manifest)} images:\n  {shown}",
                            hint=f"fix or remove them, then `imgcls dataset-import --run {self.run.id}`")
        return DatasetRef("vertex", dataset["id"], len(manifest), labels, extra={
            "import_file": import_uri, "images": f"gs://{s.bucket}/{s.name('images')}/",
            "uploaded": len(staged.uploaded), "already_there": staged.present, "referenced": staged.referenced})

    def record_uploads(self, names: list[str]) -> None:
        """With keep_images: false, `down` deletes what this run uploads (for training or `predict --batch`):
        listed before the first byte goes, added to what the run listed before."""
        if self.settings.keep_images:
            return
        listing = self.run.file("work", "uploaded_images.txt")
        names = sorted(set(listing.read_text().split() if listing.exists() else []) | set(names))
        atomic_write(listing, "\n".join(names) + "\n")
        self.run.record("object", f"gs://{self.settings.bucket}/{self.settings.name('images')}/",
                        role="images this run uploaded", list=str(listing), count=len(names))

    # -- training ---------------------------------------------------------------------------------
    def start_training(self, dataset: DatasetRef) -> dict:
        s = self.settings
        attempt = 1 + sum(o["kind"] == "train" for o in self.run.ledger["operations"])
        display = self.run.id if attempt <= 1 else f"{self.run.id}-{attempt}"
        found = self.reconcile("pipeline", display)       # started just before a kill, never recorded
        if found is None:
            body = bodies.training_pipeline(display, self.run.id, dataset.id.rsplit("/", 1)[-1],
                                            model_type=s.model_type, milli_node_hours=s.milli_node_hours,
                                            multilabel=s.multilabel, early_stopping=s.early_stopping)
            self.run.intend("pipeline", display, display_name=display)
            found = self.run.record("pipeline", self.client.create_pipeline(body)["name"], name=display,
                                    display_name=display)
        name = found["id"]
        self.progress.log(f"training pipeline {name} started ({s.model_type}, "
                          f"{s.milli_node_hours / 1000:g} node hours)")
        return self.run.record_operation("train", name, pipeline=name, dataset=dataset.id,
                                         model_type=s.model_type, milli_node_hours=s.milli_node_hours)

    def poll_training(self, operation: dict) -> tuple[str, dict]:
        state, details = self.describe_training(operation)
        if state == "succeeded":
            self.run.record("model", details["model_id"], pipeline=details["pipeline"])
        return state, details

    def describe_training(self, operation: dict) -> tuple[str, dict]:
        """One look at the pipeline; writes nothing (status uses it)."""
        p = self.client.get_pipeline(operation["id"])
        state = p.get("state", "PIPELINE_STATE_UNSPECIFIED")
        status = state.removeprefix("PIPELINE_STATE_").lower()
        if state in RUNNING:
            return "running", {"status": status}
        if state not in SUCCEEDED:
            error = (p.get("error") or {}).get("message") or f"the pipeline ended {status}"
            return "failed", {"status": status, "error": error, "pipeline": p["name"]}
        model = (p.get("modelToUpload") or {}).get("name")
        if not model:
            return "failed", {"status": status, "error": "the pipeline succeeded without uploading a model",
                              "pipeline": p["name"]}
        cost = (p.get("trainingTaskMetadata") or {}).get("costMilliNodeHours")
        return "succeeded", {"model_id": model, "status": status, "pipeline": p["name"],
                             "seconds": _seconds(p.get("startTime"), p.get("endTime")),
                             "model_type": (p.get("trainingTaskInputs") or {}).get("modelType"),
                             "cost": {"node_hours": float(cost) / 1000} if cost else None}

    # -- deploy and score -----------------------------------------------------------------------
    def deploy_model(self, model: TrainResult) -> Deployment:
        """Create the run's endpoint and deploy the model on it, unless that is done already."""
        s = self.settings
        s.check_deploy()
        res = self.run.resource("endpoint")
        endpoint = self.client.get_endpoint(res["id"]) if res else None
        if res and endpoint is None:
            self.run.mark_deleted(res, "gone")   # deleted outside imgcls: start over
            res = None
        if res is None:
            res = self.reconcile("endpoint", self.run.id)   # created just before a kill, never recorded
            endpoint = self.client.get_endpoint(res["id"]) if res else None
        if res is None:
            self.run.intend("endpoint", self.run.id, display_name=self.run.id)
            pending = self.client.create_endpoint(bodies.endpoint(self.run.id, self.run.id))
            res = self.run.record("endpoint", pending.resource_name, name=self.run.id, display_name=self.run.id)
            endpoint = pending.result()
        deployed = next((d for d in endpoint.get("deployedModels", []) if d.get("model") == model.model_id), None)
        if deployed is None:
            self.progress.log(f"deploying {model.model_id} to {res['id']} (replicas {s.min_replicas}-{s.max_replicas})")
            pending = self.client.deploy_model(res["id"], bodies.deployed_model(
                model.model_id, self.run.id, s.min_replicas, s.max_replicas, s.service_account))
            self.run.record("endpoint", res["id"], deploying=model.model_id)
            deployed = pending.result().get("deployedModel", {})
        self.run.record("endpoint", res["id"], deployed_model_id=deployed["id"], model=model.model_id)
        return Deployment("vertex", res["id"], "deployed", extra={
            "deployed_model_id": deployed["id"], "model": model.model_id,
            "replicas": [s.min_replicas, s.max_replicas]})

    def ensure_scoring(self, model: TrainResult) -> None:
        """Large test splits go through one batch prediction job; small ones through the endpoint."""
        test = self._manifest()
        test = test[test["split"] == "test"]
        serving = self._serving()
        if serving is not None and not serving.get("ours", True):
            return                      # an adopted endpoint: scored as it serves, whatever the size
        # A batch job reads the images from the staging bucket, where an adopted model's never went.
        if len(test) > self.settings.batch_predict_over and not self.run.ledger.get("adopted"):
            from . import batch
            self._batch = batch.scores(self, model, test)
        elif serving is None:
            self.deploy_model(model)

    def batch_predict(self, model: TrainResult, uris: list[str]) -> dict[str, dict[str, float]]:
        """One batch prediction job over the images (no endpoint needed), as evaluate runs for a large
        test split."""
        from . import batch
        return batch.predict(self, model, uris)

    def score(self, images: list[bytes], names: list[str]) -> list[dict[str, float]]:
        from . import payload

        batch = getattr(self, "_batch", None)
        if batch is not None:
            uris = self._uri_map()
            if all(uris.get(n) in batch for n in names):
                return [batch[uris[n]] for n in names]
        endpoint = self._serving()
        if endpoint is None:
            raise UsageError(f"run {self.run.id} has no model deployed on Vertex AI",
                             hint=f"`imgcls deploy --run {self.run.id}` first")
        labels = self.run.step("import")["labels"]
        out: list[dict[str, float] | None] = [None] * len(images)
        for group in payload.requests(images, self.settings.predict_instances):
            self.pace()
            predictions = self.client.predict(endpoint["id"], [{"content": c} for _, c in group],
                                              bodies.predict_parameters(len(labels)))
            if len(predictions) != len(group):
                raise ProviderError(f"Vertex AI answered {len(predictions)} predictions for {len(group)} images")
            for (i, _), p in zip(group, predictions):
                out[i] = {n: float(c) for n, c in zip(p.get("displayNames", []), p.get("confidences", []))}
        return out

    def scoring_batch(self) -> int:
        return self.settings.predict_instances  # one request each, unless re-encoded images need more

    def _serving(self) -> dict | None:
        res = self.run.resource("endpoint")
        return res if res and res.get("deployed_model_id") else None

    def _manifest(self):
        from ...data import manifest
        return manifest.read(self.run.file("manifest.jsonl"))

    def _uri_map(self) -> dict[str, str]:
        from . import staging
        if getattr(self, "_uris", None) is None:
            self._uris = staging.gcs_uris(self.settings, self._manifest())
        return self._uris

    def adopt(self, ref: str) -> TrainResult:
        from . import adopt
        return adopt.adopt(self, ref)

    # -- what Vertex says about the model ---------------------------------------------------------
    def service_metrics(self, model: TrainResult) -> dict | None:
        from . import evaluation
        try:
            return evaluation.summary(self.client, model.model_id, self.config.predict.threshold)
        except (ProviderError, DataError) as exc:   # the service's figures are extra: ours are computed
            return {"source": evaluation.SOURCE, "error": exc.message}

    # -- export and teardown ---------------------------------------------------------------------
    def export(self, model: TrainResult, dest: Path) -> list[Path]:
        s = self.settings
        op = self.run.operation("train") or {}
        model_type = op.get("model_type") or s.model_type
        if not model_type.startswith("MOBILE_"):
            raise UnsupportedError(f"Vertex AI cannot export {model_type} models; they serve from an endpoint only",
                                   hint="set vertex.model_type: MOBILE_TF_VERSATILE_1 (or _LOW_LATENCY_1, "
                                        "_HIGH_ACCURACY_1) and train again to get a model you can export")
        prefix = s.gs("runs", self.run.id, "export") + "/"
        self.run.record("prefix", prefix, role="export")
        pending = self.client.export_model(model.model_id, bodies.export_config(s.export_format, prefix))
        pending.result()
        out_uri = pending.metadata().get("outputInfo", {}).get("artifactOutputUri") or prefix
        bucket, name = out_uri.removeprefix("gs://").partition("/")[::2]
        base = name.rstrip("/") + "/"
        dest = Path(dest)
        written = []
        for obj in sorted(self.client.list_names(bucket, base)):
            # Object names come from the service: each must land inside dest, whatever it holds.
            target = confined(dest, obj[len(base):], f"the Vertex AI export (gs://{bucket}/{obj})")
            atomic_write(target, self.client.download(bucket, obj))
            written.append(target)
        if not written:
            raise ProviderError(f"the export wrote nothing under {out_uri}")
        return written

    def delete(self, resource: dict) -> None:
        kind, rid = resource["kind"], resource["id"]
        c = self.client
        if kind == "endpoint":
            endpoint = c.get_endpoint(rid)
            if endpoint is not None:
                for deployed in endpoint.get("deployedModels", []):
                    c.undeploy_model(rid, deployed["id"])
                c.delete_endpoint(rid)
        elif kind == "model":
            c.delete_model(rid)
        elif kind == "pipeline":
            self._stop(c.get_pipeline, c.cancel_pipeline, rid)
            self._delete_unrecorded_model(rid)
            c.delete_pipeline(rid)
        elif kind == "batch_job":
            self._stop(c.get_batch_job, c.cancel_batch_job, rid)
            c.delete_batch_job(rid)
        elif kind == "dataset":
            c.delete_dataset(rid)
        elif kind == "object" and resource.get("list"):
            bucket = rid.removeprefix("gs://").split("/", 1)[0]
            listing = Path(resource["list"])
            for name in (listing.read_text().split() if listing.exists() else []):
                c.delete_object(bucket, name)
        elif kind in ("object", "prefix"):
            bucket, _, name = rid.removeprefix("gs://").partition("/")
            names = sorted(c.list_names(bucket, name)) if kind == "prefix" else [name]
            for obj in names:
                c.delete_object(bucket, obj)
        else:
            raise ProviderError(f"the vertex provider does not know how to delete a {kind!r} ({rid})",
                                hint="delete it in the Cloud console, then edit it out of the run's ledger.json")

    # -- run state: what a kill left pending, and whether what is recorded is still there ----------
    def find(self, entry: dict) -> dict | None:
        """A dataset, pipeline, endpoint or batch job by the display name the run gave it (the run id
        with a suffix per attempt): unique to the run, so what carries it is the run's."""
        lookup = {"dataset": self.client.datasets_named, "pipeline": self.client.pipelines_named,
                  "endpoint": self.client.endpoints_named, "batch_job": self.client.batch_jobs_named}.get(entry["kind"])
        if lookup is None:
            return None
        recorded = {r["id"] for r in self.run.resources(entry["kind"])}
        found = [x for x in lookup(entry["name"]) if x["name"] not in recorded]
        return {"id": found[0]["name"]} if found else None

    def probe(self, resource: dict) -> str:
        from .client import Missing
        kind, rid, c = resource["kind"], resource["id"], self.client
        look = {"endpoint": c.get_endpoint, "model": c.get_model, "dataset": c.get_dataset,
                "pipeline": c.get_pipeline, "batch_job": c.get_batch_job}.get(kind)
        if look is None:
            return "unknown"
        try:
            return "live" if look(rid) is not None else "gone"
        except Missing:
            return "gone"

    def _delete_unrecorded_model(self, pipeline: str) -> None:
        """A pipeline that ended while no imgcls process watched it uploaded a model the ledger never
        heard of; it is the run's all the same, and outlives the pipeline unless deleted with it."""
        from .client import Missing
        try:
            model = (self.client.get_pipeline(pipeline).get("modelToUpload") or {}).get("name")
        except Missing:
            return
        if model and not any(r["kind"] == "model" and r.get("id") == model for r in self.run.ledger["resources"]):
            self.client.delete_model(model)

    def _stop(self, get, cancel, name: str) -> None:
        """Cancel a running pipeline or job and wait until it stops (it cannot be deleted before)."""
        from .client import Missing
        try:
            state = get(name).get("state", "")
        except Missing:
            return
        if state not in RUNNING:
            return
        cancel(name)
        deadline = time.monotonic() + DELETE_WAIT
        while time.monotonic() < deadline:
            if get(name).get("state", "") not in RUNNING:
                return
            time.sleep(1.0)
        raise ProviderError(f"{name} is still running after cancelling it {DELETE_WAIT:.0f} s ago",
                            hint=f"run `imgcls down --run {self.run.id}` again in a few minutes")


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        return round((_when(end) - _when(start)).total_seconds(), 1)
    except ValueError:
        return None


def _when(stamp: str) -> dt.datetime:
    # RFC 3339 with up to nanoseconds; fromisoformat takes microseconds at most.
    head, _, frac = stamp.rstrip("Z").partition(".")
    return dt.datetime.fromisoformat(head + (f".{frac[:6]}" if frac else "") + "+00:00")

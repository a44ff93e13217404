"""The `azureml` provider: MLTable data assets, an AutoML image job (one trial or a sweep) on an AmlCompute
cluster, the best trial's MLflow model registered and served by a managed online endpoint (or, for
`predict --batch`, a batch endpoint).

Our decisions live here and in dataset.py / jobspec.py / serving.py / batch.py (what to upload, what job to submit,
what to record, what `down` may delete); client.py is the only module that touches the SDKs and is
imported lazily, so `imgcls providers` and `--help` never pay for azure-ai-ml.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

from ...errors import ProviderError
from ..base import Capabilities, CredentialStatus, DatasetRef, Deployment, Limits, Provider, TrainResult
from . import naming
from . import settings as settings_mod
from .settings import AzureMLConfig

# AutoML job statuses that are not an outcome yet (NotResponding and Paused can still recover)
RUNNING = {"NotStarted", "Starting", "Provisioning", "Preparing", "Queued", "Running", "Finalizing",
           "CancelRequested", "NotResponding", "Paused", "Unknown", None}
CPU_SIZES = ("Standard_D", "Standard_E", "Standard_F", "Standard_A", "Standard_B")


class AzureMLProvider(Provider):
    name = "azureml"
    settings_model = AzureMLConfig
    requires = ("azure.ai.ml", "azure.identity", "azure.storage.blob")
    capabilities = Capabilities(
        multiclass=True, multilabel=True, deploy=True, export=("onnx",), batch_predict=True, adopt=True,
        remote_uris=("azureml",),
        credentials="azure-identity DefaultAzureCredential (env service principal, managed identity, az login)",
        extra="azureml")
    # AutoML for images: at least 2 classes; small data trains but the docs advise 10+ per class.
    limits = Limits(min_images_per_label=10, formats=("jpeg", "png", "bmp", "gif", "tiff", "webp"),
                    max_predict_bytes=100 * 1024 * 1024,
                    # Azure ML quotas: 500 requests per second per online endpoint. Requests beyond what the
                    # deployment's instances take at once queue there, then come back 429, which the client
                    # retries honouring Retry-After (raise azureml.instance_count for more throughput).
                    predict_concurrency=8, predict_requests_per_second=500.0)
    poll_interval = 30.0
    # The project's cluster serves every run that finds it: `down` of the run that created it hands it
    # to a run still using it, and the last one's `down` deletes it.
    shared_kinds = ("compute",)
    serving_kinds = ("deployment", "endpoint")
    planner = "imgcls.providers.azureml.plan"



    @classmethod
    def check_credentials(cls, config) -> CredentialStatus:
        env = os.environ
        if env.get(settings_mod.CREDENTIAL_ENV):
            return CredentialStatus(True, f"test credential {env[settings_mod.CREDENTIAL_ENV]} "
                                          f"(from {settings_mod.CREDENTIAL_ENV})")
        if env.get("AZURE_CLIENT_ID") and (env.get("AZURE_CLIENT_SECRET") or env.get("AZURE_FEDERATED_TOKEN_FILE")
                                           or env.get("AZURE_CLIENT_CERTIFICATE_PATH")):
            return CredentialStatus(True, "service principal from the environment")
        if env.get("IDENTITY_ENDPOINT") or env.get("MSI_ENDPOINT"):
            return CredentialStatus(True, "managed identity")
        azure_dir = Path(os.path.expanduser("~/.azure"))
        if (azure_dir / "msal_token_cache.json").exists() or (azure_dir / "msal_token_cache.bin").exists():
            return CredentialStatus(True, "Azure CLI login (~/.azure)")
        return CredentialStatus(False, "none of: " + ", ".join(settings_mod.SOURCES))

    @functools.cached_property
    def settings(self) -> settings_mod.Settings:
        return settings_mod.resolve(self.config.azureml)

    @functools.cached_property
    def client(self):
        from .client import Client  # the SDKs are imported only when a step talks to Azure
        return Client(self.settings, debug=self.progress.debug)

    @functools.cached_property
    def serving(self):
        from .serving import Serving
        return Serving(self)

    # -- dataset-import ---------------------------------------------------------------------------
    def upload(self, manifest, labels: list[str]) -> DatasetRef:
        from . import dataset
        return dataset.upload(self, manifest, labels)

    # -- train ------------------------------------------------------------------------------------
    @property
    def compute_name(self) -> str:
        """azureml.compute as given, else the project's own default (never a common word like gpu-cluster)."""
        return self.config.azureml.compute or naming.compute(self.run)

    def start_training(self, dataset: DatasetRef) -> dict:
        attempt = 1 + sum(o["kind"] == "train" for o in self.run.ledger["operations"])
        name = naming.job(self.run, attempt)
        spec = self._spec(name, dataset.extra)
        job = self.client.build_job(spec)                 # checked before anything is recorded
        self._ensure_compute()
        self.progress.log(f"AutoML job {name}: {spec.note}; on {spec.compute}, timeout {spec.timeout_minutes} min")
        # Recorded before the service is asked: a crash mid-submit leaves a name `train --run` can look up.
        self.run.intend("job", name, experiment=spec.experiment)
        op = self.run.record_operation("train", name, experiment=spec.experiment, compute=spec.compute,
                                       attempt=attempt)
        submitted = self.client.submit(job)
        self.run.record("job", name, name=name, experiment=spec.experiment)
        if submitted.get("studio_url"):
            self.progress.log(f"follow it in Azure ML studio: {submitted['studio_url']}")
            self.run.update_operation("train", name, studio_url=submitted["studio_url"])
        return {**op, "studio_url": submitted.get("studio_url")}

    def _spec(self, name: str, dataset_extra: dict):
        from . import jobspec
        return jobspec.plan(self.config, name, naming.experiment(self.config.name), dataset_extra["train"],
                            dataset_extra.get("validation"), tags={"imgcls.run": self.run.id},
                            compute=self.compute_name)

    def _ensure_compute(self) -> None:
        """The cluster the job runs on: one found is used (recorded as not the run's), one missing is
        created (recorded as pending first, as the run's once created). A cluster a kill left pending
        is settled with the service before anything is created again."""
        az, name = self.config.azureml, self.compute_name
        self.reconcile("compute", name)
        found = self.client.compute(name)
        if found is not None:
            if not any(r["id"] == name for r in self.run.resources("compute")):
                self.run.record("compute", name, name=name, ours=False)
            if az.max_concurrent_trials > (found.get("max_nodes") or az.max_concurrent_trials):
                self.progress.log(f"warning: azureml.max_concurrent_trials = {az.max_concurrent_trials} but cluster "
                                  f"{name} has at most {found['max_nodes']} nodes")
            return
        if az.vm_size.startswith(CPU_SIZES):
            self.progress.log(f"warning: azureml.vm_size {az.vm_size} has no GPU; AutoML image jobs need one")
        self.run.intend("compute", name, vm_size=az.vm_size, max_nodes=az.max_nodes)
        self.progress.log(f"creating compute cluster {name} ({az.vm_size}, 0-{az.max_nodes} nodes); "
                          "`imgcls down` removes it once no run of this project uses it")
        self.client.create_compute(name, az.vm_size, az.max_nodes, tags={"imgcls.run": self.run.id})
        self.run.record("compute", name, name=name, ours=True, vm_size=az.vm_size, max_nodes=az.max_nodes)

    def poll_training(self, operation: dict) -> tuple[str, dict]:
        name = operation["id"]
        state, details = self.describe_training(operation)
        if state == "interrupted":
            # The ledger has the name but the service never took the job (interrupted mid-submit): submit it
            # now, under the same name, so there is still only one.
            self.progress.log(f"job {name} was never submitted (interrupted); submitting it now")
            extra = (self.run.step("import") or {}).get("extra") or {}
            self._ensure_compute()
            job = self.client.submit(self.client.build_job(self._spec(name, extra)))
            state, details = "running", {"status": job["status"], "job": name, "studio_url": job.get("studio_url")}
        if any(r.get("name") == name for r in self.run.pending("job")):
            self.run.record("job", name, name=name, experiment=operation.get("experiment"))
        if state == "succeeded":
            details["model_id"] = self._register_model(details["best_trial"], name, operation.get("attempt") or 1)
        return state, details

    def describe_training(self, operation: dict) -> tuple[str, dict]:
        """One look at the job, acting on nothing (`status`): a job never submitted is "interrupted", and
        a completed one's model is the one registered already, if any."""
        name = operation["id"]
        job = self.client.job(name)
        if job is None:
            return "interrupted", {"status": "never submitted (interrupted)", "job": name}
        details = {"status": job["status"], "job": name, "studio_url": job.get("studio_url")}
        if job["status"] in RUNNING:
            return "running", details
        if job["status"] != "Completed":
            reason = self.client.run_error(name) or f"the job ended as {job['status']}"
            return "failed", {**details, "error": f"job {name}: {reason}"}
        best = job["tags"].get("automl_best_child_run_id")
        if not best:
            return "failed", {**details, "error": f"job {name} completed without a best trial "
                                                  "(no automl_best_child_run_id tag)"}
        model = next((r for r in self.run.resources("model") if r.get("trial") == best), {})
        return "succeeded", {**details, "model_id": model.get("model_id"), "best_trial": best}

    def _register_model(self, trial: str, job: str, attempt: int) -> str:
        name, _ = naming.model(self.run)
        version = str(attempt)                            # model versions are integers on Azure ML
        rid = f"{name}:{version}"
        recorded = next((r for r in self.run.resources("model") if r["id"] == rid), None)
        if recorded and recorded.get("model_id") and recorded.get("trial") == trial:
            return recorded["model_id"]
        self.run.intend("model", name, version=version, trial=trial, job=job)
        # The version is the run's (its name carries the run id): one already there is this run's own.
        model_id = self.client.model_id(name, version) or self.client.register_model(
            name, version, f"azureml://jobs/{trial}/outputs/artifacts/paths/outputs/mlflow-model/",
            description=f"best trial of AutoML job {job} (imgcls run {self.run.id})",
            tags={"imgcls.run": self.run.id, "imgcls.trial": trial})
        self.run.record("model", rid, name=name, version=version, trial=trial, job=job, model_id=model_id)
        self.progress.log(f"registered the best trial {trial} as model {rid}")
        return model_id

    # -- evaluate, deploy, predict ----------------------------------------------------------------
    def service_metrics(self, model: TrainResult) -> dict | None:
        trial = (model.extra or {}).get("best_trial") or (self.run.resource("model") or {}).get("trial")
        if not trial:
            return None
        found = self.client.mlflow_run(trial)
        if found is None:
            return None
        data = found.get("data") or {}
        return {"source": "Azure ML AutoML best trial, as MLflow logged it (on AutoML's validation data; "
                          "`metrics` are ours on the shared test split)",
                "trial": trial, "hyperparameters": {p["key"]: p["value"] for p in data.get("params") or []},
                **{m["key"]: m["value"] for m in data.get("metrics") or []}}

    def ensure_scoring(self, model: TrainResult) -> None:
        if self._adopted() is None:
            self.serving.ensure(model)

    def deploy_model(self, model: TrainResult) -> Deployment:
        rec = self._adopted() or self.serving.ensure(model)
        return Deployment(self.name, rec["scoring_uri"], "deployed", extra={
            "endpoint": rec["endpoint"], "deployment": rec["name"], "model_id": rec["model_id"],
            "instance_type": rec.get("instance_type"), "instance_count": rec.get("instance_count")})

    def adopt(self, ref: str) -> TrainResult:
        from . import adopt
        return adopt.adopt(self, ref)

    def _adopted(self) -> dict | None:
        """The deployment of an endpoint imgcls did not make, which `imgcls adopt` recorded: it serves as it is."""
        return next((r for r in self.run.resources("deployment") if not r.get("ours", True) and r.get("ready")),
                    None)

    def score(self, images: list[bytes], names: list[str]) -> list[dict[str, float]]:
        return self.serving.score(images, names)

    def scoring_batch(self) -> int:
        return self.config.azureml.predict_batch  # one request each, unless 4 MB needs more

    def batch_predict(self, model: TrainResult, uris: list[str]) -> dict[str, dict[str, float]]:
        from . import batch
        return batch.predict(self, model, uris)

    def export(self, model: TrainResult, dest: Path) -> list[Path]:
        from . import export
        return export.export(self, model, Path(dest))

    # -- down -------------------------------------------------------------------------------------
    def delete(self, resource: dict) -> str | None:
        kind, rid = resource["kind"], resource["id"]
        if kind in ("endpoint", "deployment"):
            return self.serving.delete(resource)
        if kind in ("batch_endpoint", "batch_deployment"):
            from . import batch
            return batch.delete(self, resource)
        if kind == "model":
            self.client.archive_model(resource["name"], resource["version"])
            return "archived"       # Azure ML keeps asset versions; archived ones are hidden and unused
        if kind == "data":
            self.client.archive_data(resource["name"], resource["version"])
            return "archived"
        if kind == "job":
            job = self.client.job(rid)
            if job is not None and job["status"] in RUNNING:
                self.client.cancel_job(rid)
                return "cancelled"
            return "finished"       # its history stays in the workspace; nothing runs or bills
        if kind == "compute":
            if not resource.get("ours"):
                return "released"   # the cluster was there before the run: never ours to delete
            self.client.delete_compute(rid)
            return None
        if kind == "blob":
            return self._delete_blobs(resource)
        raise ProviderError(f"the azureml provider does not know how to delete a {kind!r}")

    # -- run state: what a kill left pending, and whether what is recorded is still there ----------
    def find(self, entry: dict) -> dict | None:
        """A resource a kill left pending, by the name the run chose (Azure names are the ids)."""
        kind, name, c = entry["kind"], entry["name"], self.client
        if kind == "compute":
            found = c.compute(name)
            if found is None:
                return None
            # Someone else's cluster of that name, made in the moment before ours would have been: used, not ours.
            return {"id": name, "ours": found["tags"].get("imgcls.run") == self.run.id}
        if kind == "job":
            return {"id": name} if c.job(name) is not None else None
        if kind == "data":
            return {"id": f"{name}:{entry['version']}"} if c.data_exists(name, entry["version"]) else None
        if kind == "model":
            model_id = c.model_id(name, entry["version"])
            return {"id": f"{name}:{entry['version']}", "model_id": model_id} if model_id else None
        if kind == "endpoint":
            return {"id": name} if c.endpoint(name) is not None else None
        if kind == "deployment":
            return {"id": f"{entry['endpoint']}/{name}"} if c.deployment(entry["endpoint"], name) else None
        if kind == "batch_endpoint":
            return {"id": name, "ours": True} if c.batch_endpoint(name) is not None else None
        if kind == "batch_deployment":
            found = c.batch_deployment(entry["endpoint"], name)
            return {"id": f"{entry['endpoint']}/{name}"} if found else None
        return None

    def probe(self, resource: dict) -> str:
        kind, rid, c = resource["kind"], resource["id"], self.client
        if kind == "endpoint":
            return "live" if c.endpoint(rid) is not None else "gone"
        if kind == "deployment":
            return "live" if c.deployment(resource["endpoint"], resource["name"]) is not None else "gone"
        if kind == "batch_endpoint":
            return "live" if c.batch_endpoint(rid) is not None else "gone"
        if kind == "batch_deployment":
            return "live" if c.batch_deployment(resource["endpoint"], resource["name"]) is not None else "gone"
        if kind == "compute":
            return "live" if c.compute(rid) is not None else "gone"
        if kind == "job":
            return "live" if c.job(rid) is not None else "gone"
        return "unknown"

    def _delete_blobs(self, resource: dict) -> str | None:
        import json

        from . import dataset
        if resource["id"] == naming.IMAGES_PREFIX and self.config.azureml.keep_images:
            return "kept"           # content-addressed and shared by other runs (azureml.keep_images)
        container = self.client.container(resource["account_url"], resource["container"],
                                          self.client.default_datastore()["credential"])
        if resource["id"] == naming.IMAGES_PREFIX:
            record = dataset.record_path(self.run)
            names = json.loads(record.read_text())["uploaded"] if record.exists() else []
        else:
            names = sorted(self.client.blob_names(container, resource["id"]))
        self.client.delete_blobs(container, names)
        return None

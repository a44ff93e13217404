"""The `customvision` provider: Azure Custom Vision projects, tags, iterations and published predictions.

Our decisions live here (what to upload, which project, what to record, what `down` may delete);
client.py is the only module that touches the SDK and is imported lazily.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

from ...errors import DataError, ProviderError
from ...runs import now
from ..base import Capabilities, CredentialStatus, DatasetRef, Deployment, Limits, Provider, TrainResult
from . import iterations as iterations_mod
from . import project as project_mod
from . import settings as settings_mod
from .project import code_of, status_of
from .settings import CustomVisionConfig

KEY_VARS = ("VISION_TRAINING_KEY", "VISION_PREDICTION_KEY")
MAX_PREDICT_BYTES = 4 * 1024 * 1024


class CustomVisionProvider(Provider):
    name = "customvision"
    settings_model = CustomVisionConfig
    requires = ("azure.cognitiveservices.vision.customvision",)
    capabilities = Capabilities(
        multiclass=True, multilabel=True, deploy=True,
        export=("onnx", "tensorflow", "coreml", "dockerfile", "openvino"), batch_predict=False, adopt=True,
        credentials="customvision.training_key / prediction_key (e.g. ${VISION_TRAINING_KEY})",
        extra="customvision",
        notice="Azure Custom Vision's SDK is deprecated and the service is set to retire; "
               "the same config runs on Azure ML with --provider azureml.")
    # https://learn.microsoft.com/azure/ai-services/custom-vision-service/limits-and-quotas (S0 tier)
    limits = Limits(min_images_per_label=5, max_labels=500, max_images=100_000,
                    formats=("jpeg", "png", "bmp", "gif"), max_file_bytes=6 * 1024 * 1024,
                    downscales_large_files=True, min_side=256, max_side=10_240,
                    max_predict_bytes=MAX_PREDICT_BYTES, max_batch_images=64, max_label_length=256,
                    # "prediction operations without storage": 20 per second on S0 (2 on F0: set
                    # predict.requests_per_second: 2); one image per request, so 8 in flight keep 20/s
                    # going up to 400 ms a request
                    predict_concurrency=8, predict_requests_per_second=20.0)
    poll_interval = 10.0
    serving_kinds = ("publication",)
    planner = "imgcls.providers.customvision.plan"



    @classmethod
    def check_credentials(cls, config) -> CredentialStatus:
        s = settings_mod.resolve(config.customvision if config is not None else None)
        missing = [n for n in ("training_key", "prediction_key") if not getattr(s, n)]
        if missing:
            return CredentialStatus(False, f"set customvision.{' and customvision.'.join(missing)} "
                                           f"(or {', '.join(KEY_VARS)})")
        return CredentialStatus(True, "training and prediction keys")

    @functools.cached_property
    def section(self):
        return self.config.customvision

    @functools.cached_property
    def client(self):
        from .client import Client  # the SDK is imported only when a step talks to the service
        return Client(settings_mod.resolve(self.section), log=self.progress.log)

    # -- dataset-import ---------------------------------------------------------------------------
    def upload(self, manifest, labels: list[str]) -> DatasetRef:
        from . import upload as upload_mod

        remote = [u for u in manifest["uri"] if "://" in u]
        if remote:
            raise DataError(f"Custom Vision takes image files; {len(remote)} rows are URIs, e.g. {remote[0]}",
                            hint="download them and point dataset.source at the local copies")
        # No validation split of its own: train+validation go up, test stays here and is scored
        # through the published iteration so every provider's metrics are comparable.
        rows = manifest[manifest["split"].isin(["train", "validation"])]
        if not self.section.project_id:
            self._check_enough(rows, labels)
        project = project_mod.ensure_project(self.client, self.run, self.config, self.progress)
        # Recorded before anything goes in, so `down` finds what an interrupted import added.
        self.run.record("image", f"{project['id']}:images", project_id=project["id"],
                        record=str(upload_mod.record_path(self.run)), reused=not project["created"])
        tag_ids = project_mod.ensure_tags(self.client, self.run, project, labels)
        self.progress.log(f"uploading {len(rows)} train+validation images to Custom Vision project "
                          f"{project['name']} ({project['id']}); {len(manifest) - len(rows)} test images stay local")
        out = upload_mod.upload(self.client, self.run, self.progress, project["id"], not project["created"],
                                rows, tag_ids)
        if out.failed:
            raise DataError(f"Custom Vision refused {len(out.failed)} of {len(rows)} images; the other "
                            f"{len(rows) - len(out.failed)} are uploaded:\n  "
                            + upload_mod.failure_message(out.failed),
                            hint=f"fix or replace those files and run `imgcls dataset-import --run {self.run.id}` "
                                 "again: only they are sent", failed=out.failed)
        return DatasetRef(self.name, project["id"], len(manifest), labels, extra={
            "project_name": project["name"], "project_created": project["created"], "tags": tag_ids,
            "uploaded": out.uploaded + out.duplicates + out.already, "duplicates": out.duplicates,
            "test_images_kept_local": len(manifest) - len(rows), "reencoded": out.reencoded})

    def _check_enough(self, rows, labels: list[str]) -> None:
        """The service trains on what is uploaded and wants 5 images a tag: say so before creating anything."""
        need = self.limits.min_images_per_label
        counts = dict.fromkeys(labels, 0)
        for row_labels in rows["labels"]:
            for label in row_labels:
                counts[label] = counts.get(label, 0) + 1
        short = {label: n for label, n in sorted(counts.items()) if n < need}
        if short:
            raise DataError("Custom Vision trains only on the train+validation images and needs "
                            f"{need} per label; outside the test split "
                            + ", ".join(f"'{label}' has {n}" for label, n in short.items()),
                            hint="add images of those labels, or lower split.test (or give dataset.test_source)")

    # -- train ------------------------------------------------------------------------------------
    def start_training(self, dataset: DatasetRef) -> dict:
        self.client.settings.require("prediction_endpoint", "prediction_key", "prediction_resource_id")
        project_id = dataset.id
        training_type, budget = self._training_type()
        attempt = 1 + sum(o["kind"] == "train" for o in self.run.ledger["operations"])
        name = iterations_mod.name_for(self.run, attempt)
        # A resumed run first settles what a kill left: an iteration it started but never recorded,
        # or one it recorded but never made an operation of.
        iteration = self.reconcile("iteration", name) \
            or next((r for r in self.run.resources("iteration") if r.get("name") == name), None)
        adopted = False
        if iteration is None:
            iteration, adopted = self._train(project_id, dataset, training_type, budget, name)
        else:
            self.progress.log(f"picking up iteration {iteration['id']}, which this run started before it stopped")
            iteration = self.client.iteration(project_id, iteration["id"])
        if not adopted and iteration["name"] != name:
            iteration = self._rename(project_id, iteration, name)
        op = self.run.record_operation("train", iteration["id"], project_id=project_id,
                                       training_type=training_type, budget_hours=budget)
        self.progress.log(f"training {iteration['name']} ({training_type}) in project {project_id}")
        return op

    def _train(self, project_id: str, dataset: DatasetRef, training_type: str, budget: int,
               name: str) -> tuple[dict, bool]:
        """(iteration, adopted): a new iteration, recorded as pending under `name` before the service is
        asked and as the run's the moment its id is known; or, when there is nothing new to train on,
        the last completed iteration, which the run uses but did not make."""
        existing = self.client.iterations(project_id)
        iterations_mod.check_room(existing, (dataset.extra or {}).get("project_name") or project_id)
        entry = self.run.intend("iteration", name, project_id=project_id, training_type=training_type)
        # What was there and when the service is asked: how `find` tells the new iteration (refreshed
        # when an earlier attempt's entry is reused, its call having made nothing).
        self.run.update_resource(entry, existing=[i["id"] for i in existing], asked=now())
        training_now = lambda: next((i for i in self.client.iterations(project_id)
                                     if i["status"] == "Training"), None)
        adopted = False
        try:
            iteration = self.client.train(project_id, training_type, budget,
                                          recover=training_now if dataset.extra.get("project_created") else None)
        except ProviderError as exc:
            if code_of(exc) == "BadRequestTrainingAlreadyInProgress" and dataset.extra.get("project_created"):
                iteration = training_now()
            elif code_of(exc) == "BadRequestTrainingNotNeeded":
                done = [i for i in self.client.iterations(project_id) if i["status"] == "Completed"]
                iteration, adopted = (done[-1] if done else None), True
                if iteration:
                    self.progress.log(f"nothing changed since iteration '{iteration['name']}'; using it")
            else:
                raise
            if iteration is None:
                raise
        if adopted:
            self.run.mark_deleted(entry, "abandoned")      # nothing was created under the run's name
            mine = any(r["id"] == iteration["id"] and r.get("ours") for r in self.run.resources("iteration"))
            self.run.record("iteration", iteration["id"], project_id=project_id, ours=mine,
                            iteration_name=iteration["name"])
        else:
            self.run.record("iteration", iteration["id"], name=name, project_id=project_id)
        return iteration, adopted

    def _rename(self, project_id: str, iteration: dict, name: str) -> dict:
        """The run's name on its iteration tells a person (and a later `find`) whose it is; a service
        that refuses the name leaves the iteration as it was, recorded all the same."""
        try:
            return self.client.rename_iteration(project_id, iteration["id"], name)
        except ProviderError as exc:
            if status_of(exc) != 400:
                raise
            self.progress.log(f"note: iteration '{iteration['name']}' keeps its name ({exc.message})")
            return iteration

    def _training_type(self) -> tuple[str, int]:
        kind = self.section.training_type or ("Advanced" if self.config.train.preset == "best" else "Regular")
        if kind == "Regular":
            return kind, 0
        hours = self.config.train.node_hours
        if hours is None:
            self.progress.log("Advanced training reserves train.node_hours; it is unset, so 1 hour is reserved")
            hours = 1
        return kind, max(1, math.ceil(hours))

    def poll_training(self, operation: dict) -> tuple[str, dict]:
        it = self.client.iteration(operation["project_id"], operation["id"])
        details = {"status": it["status"], "project_id": operation["project_id"], "iteration": it["name"],
                   "training_type": it["training_type"]}
        if it["status"] == "Training":
            return "running", details
        if it["status"] == "Completed":
            return "succeeded", {**details, "model_id": it["id"],
                                 "seconds": (it["minutes"] or 0) * 60 or None, "domain_id": it["domain_id"]}
        return "failed", {**details, "error": it["error"] or f"the iteration ended as {it['status']}"}

    # -- evaluate, deploy, predict ------------------------------------------------------------------
    def service_metrics(self, model: TrainResult) -> dict | None:
        threshold = self.config.predict.threshold
        try:
            perf = self.client.performance(self._project_id(model), model.model_id, threshold)
        except ProviderError as exc:   # the service's own numbers are extra: ours are already computed
            return {"source": "Custom Vision iteration performance", "error": exc.message}
        return {"source": "Custom Vision iteration performance (the service's estimate on its own share of "
                          "the uploaded train+validation images; `metrics` are ours on the shared test split)",
                "threshold": threshold, "precision": perf["precision"], "recall": perf["recall"],
                "average_precision": perf["average_precision"], "per_label": perf["per_tag"]}

    def ensure_scoring(self, model: TrainResult) -> None:
        self._publication(model)

    def deploy_model(self, model: TrainResult) -> Deployment:
        pub = self._publication(model)
        endpoint = (f"{self.client.settings.prediction_endpoint}/customvision/v3.0/Prediction/"
                    f"{pub['project_id']}/classify/iterations/{pub['id']}/image")
        return Deployment(self.name, endpoint, "published",
                          extra={"project_id": pub["project_id"], "iteration_id": pub["iteration_id"],
                                 "publish_name": pub["id"]})

    def _publication(self, model: TrainResult) -> dict:
        """The run's publication of `model`, checked with the service before it is trusted; publishing it
        when there is none (recorded as pending first, active once the service has published it)."""
        for pub in self.run.resources("publication"):
            if pub.get("iteration_id") == model.model_id:
                if self.probe(pub) != "gone":
                    return pub
                self.progress.log(f"publication '{pub['id']}' is gone (unpublished outside imgcls); publishing again")
                self.run.mark_deleted(pub, "gone")
        project_id = self._project_id(model)
        name = self.section.publish_name or f"{self.config.name}-{self._short_id()}"
        found = self.reconcile("publication", name)   # published just before a kill, never recorded
        if found is not None and found.get("iteration_id") == model.model_id:
            return found
        self.run.intend("publication", name, project_id=project_id, iteration_id=model.model_id)
        # A failed call leaves the entry pending: whether the service published is settled by `find`.
        self.client.publish(project_id, model.model_id, name)
        pub = self.run.record("publication", name, name=name, project_id=project_id, iteration_id=model.model_id)
        self.progress.log(f"published iteration {model.model_id} as '{name}'")
        return pub

    def score(self, images: list[bytes], names: list[str]) -> list[dict[str, float]]:
        from . import shrink

        if getattr(self, "_serving", None) is None:
            train = self.run.step("train") or {}
            self._serving = self._publication(TrainResult(self.name, train.get("model_id"), "succeeded",
                                                          extra=train.get("extra") or {}))
        pub = self._serving
        # Tags answer by id: a reused project's tag may be spelled 'Roses' where our label is 'roses'.
        label_of = {tid: label for label, tid in
                    ((self.run.step("import") or {}).get("extra") or {}).get("tags", {}).items()}
        out = []
        for data, name in zip(images, names):
            fitted = shrink.fit(data, MAX_PREDICT_BYTES)
            if fitted is not data:
                self.progress.log(f"{name}: re-encoded to {len(fitted) / 1e6:.1f} MB for Custom Vision's "
                                  "4 MB prediction limit")
            self.pace()
            out.append({label_of.get(tid, tag): p
                        for tid, tag, p in self.client.classify(pub["project_id"], pub["id"], fitted)})
        return out

    def scoring_batch(self) -> int:
        return 1  # the prediction API takes one image per request

    def adopt(self, ref: str) -> TrainResult:
        from . import adopt
        return adopt.adopt(self, ref)

    # -- export -----------------------------------------------------------------------------------
    def export(self, model: TrainResult, dest: Path) -> list[Path]:
        from . import export
        return export.export(self, model, Path(dest))

    # -- down -------------------------------------------------------------------------------------
    def delete(self, resource: dict) -> str | None:
        kind = resource["kind"]
        try:
            if kind == "publication":
                if self.probe(resource) == "gone":
                    return "gone"           # unpublished, or published under another name since
                self.client.unpublish(resource["project_id"], resource["iteration_id"])
            elif kind == "iteration":
                if not resource.get("ours", True):
                    return "released"       # an iteration the run used but did not train
                it = self.client.iteration(resource["project_id"], resource["id"])
                if it["publish_name"]:
                    self.client.unpublish(resource["project_id"], resource["id"])
                self.client.delete_iteration(resource["project_id"], resource["id"])
            elif kind == "image":
                self._delete_images(resource)
            elif kind == "project":
                if not resource.get("ours"):
                    return "released"       # it existed before the run: never ours to delete
                for it in self.client.iterations(resource["id"]):
                    if it["publish_name"]:
                        self.client.unpublish(resource["id"], it["id"])
                self.client.delete_project(resource["id"])
        except ProviderError as exc:
            if status_of(exc) == 404 or code_of(exc) == "BadRequestIterationNotPublished":
                return None                 # already gone
            raise
        return None

    def _delete_images(self, resource: dict) -> None:
        from . import upload as upload_mod
        project_id = resource["project_id"]
        record = upload_mod.load_record(self.run, project_id)
        # What a kill left pending: images found by the run's mark, a tag by the name the run asked for.
        upload_mod.settle(self.client, self.run, project_id, record)
        if record["tags_pending"]:
            upload_mod.settle_tags(self.run, record, self.client.tags(project_id))
        self.client.delete_images(project_id, upload_mod.image_ids(record))
        if resource.get("reused"):
            for tag_id in record["tags_created"]:
                try:
                    self.client.delete_tag(project_id, tag_id)
                except ProviderError as exc:
                    if status_of(exc) != 404:
                        raise

    # -- run state: what a kill left pending, and whether what is recorded is still there ----------
    def find(self, entry: dict) -> dict | None:
        kind = entry["kind"]
        if kind == "project":
            found = next((p for p in self.client.projects() if p["description"] == entry.get("marker")), None)
            return None if found is None else {"id": found["id"]}
        if kind == "iteration":
            return self._find_iteration(entry)
        if kind == "publication":
            it = self._iteration_or_none(entry["project_id"], entry["iteration_id"])
            return {"id": entry["name"]} if it and it["publish_name"] == entry["name"] else None
        return None

    def _find_iteration(self, entry: dict) -> dict | None:
        from ... import runs as runs_mod
        others = {r["id"] for run in runs_mod.list_runs(self.run.path.parent)
                  for r in run.ledger["resources"] if r["kind"] == "iteration" and r.get("id")}
        found = iterations_mod.candidates(self.client, entry, others)
        if len(found) > 1:
            self.progress.log(f"warning: {len(found)} iterations appeared in project {entry['project_id']} since "
                              f"run {self.run.id} asked for one ({', '.join(i['name'] for i in found)}); "
                              "none is taken for the run's, so none is deleted with it. Delete the run's "
                              "one in the Custom Vision portal if you know which it is")
            return None
        return {"id": found[0]["id"], "iteration_name": found[0]["name"]} if found else None

    def probe(self, resource: dict) -> str:
        kind = resource["kind"]
        if kind == "project":
            try:
                self.client.project(resource["id"])
            except ProviderError as exc:
                if status_of(exc) == 404:
                    return "gone"
                raise
            return "live"
        if kind == "iteration":
            return "live" if self._iteration_or_none(resource["project_id"], resource["id"]) else "gone"
        if kind == "publication":
            it = self._iteration_or_none(resource["project_id"], resource["iteration_id"])
            return "live" if it and it["publish_name"] == resource["id"] else "gone"
        return "unknown"

    def _iteration_or_none(self, project_id: str, iteration_id: str) -> dict | None:
        try:
            return self.client.iteration(project_id, iteration_id)
        except ProviderError as exc:
            if status_of(exc) == 404:
                return None
            raise

    # -- small lookups ------------------------------------------------------------------------------
    def _project_id(self, model: TrainResult) -> str:
        project_id = (model.extra or {}).get("project_id")
        if project_id:
            return project_id
        recorded = self.run.resource("project")
        if recorded is None:
            raise ProviderError(f"run {self.run.id} has no Custom Vision project",
                                hint=f"run `imgcls dataset-import --run {self.run.id}` first")
        return recorded["id"]

    def _short_id(self) -> str:
        prefix = f"{self.run.ledger.get('name')}-{self.run.provider}-"
        return self.run.id.removeprefix(prefix)


"""Serving on Azure ML: the run's managed online endpoint and its one deployment of the registered model
with all traffic, each recorded before it is waited on; scoring through the endpoint's URI with its key
(read once per provider instance, never written down) in batches AutoML's image scorer takes."""
from __future__ import annotations

import base64

from ...errors import ProviderError
from ..base import TrainResult
from . import naming

BUSY = {"Creating", "Updating", "Deleting", "Provisioning", "Scaling"}
MAX_REQUEST_BYTES = 4 * 1024 * 1024        # per scoring request, after base64
SETTLE_SECONDS = 30 * 60


class Serving:
    def __init__(self, provider):
        self.provider = provider
        self.run, self.config = provider.run, provider.config
        self._target: tuple[str, str, str] | None = None   # scoring URI, key, deployment name

    @property
    def client(self):
        return self.provider.client

    # -- deploy -------------------------------------------------------------------------------------
    def ensure(self, model: TrainResult) -> dict:
        """The ready deployment of `model`, creating the endpoint, the deployment and the traffic rule
        as needed (each recorded first); a resumed run picks up whatever is half-made."""
        az, run, client, log = self.config.azureml, self.run, self.client, self.provider.progress.log
        if not model.model_id:
            raise ProviderError(f"run {run.id} has no registered model to deploy",
                                hint=f"run `imgcls train --run {run.id}` first")
        ep_name, dep_name = naming.endpoint(run), naming.DEPLOYMENT
        dep_id = f"{ep_name}/{dep_name}"
        recorded = next((r for r in run.resources("deployment") if r["id"] == dep_id), None)
        if recorded and recorded.get("ready") and recorded.get("model_id") == model.model_id:
            return recorded

        # Each is recorded as pending before it is asked for and as the run's once the service has it;
        # one already there under the run's name (its hash is in it) is the run's own from before a kill.
        endpoint = self._settled("endpoint", ep_name, lambda: client.endpoint(ep_name))
        if endpoint is None or endpoint["state"] != "Succeeded":
            run.intend("endpoint", ep_name)
            log(f"creating managed online endpoint {ep_name} (a few minutes on Azure)")
            client.create_endpoint(ep_name, description=f"imgcls run {run.id}", tags={"imgcls.run": run.id})
        run.record("endpoint", ep_name, name=ep_name, ours=True)

        deployment = self._settled("deployment", dep_name, lambda: client.deployment(ep_name, dep_name))
        if deployment is None or deployment["state"] != "Succeeded" or deployment["model"] != model.model_id:
            run.intend("deployment", dep_name, endpoint=ep_name)
            log(f"deploying {model.model_id.rsplit('/models/', 1)[-1]} to {ep_name}/{dep_name} on "
                f"{az.instance_count} x {az.instance_type} (10 minutes or more on Azure)")
            client.create_deployment(ep_name, dep_name, model.model_id, az.instance_type, az.instance_count)
        run.record("deployment", dep_id, endpoint=ep_name, name=dep_name, model_id=model.model_id,
                   instance_type=az.instance_type, instance_count=az.instance_count, ready=False)

        endpoint = client.endpoint(ep_name)
        if endpoint["traffic"] != {dep_name: 100}:
            client.set_traffic(ep_name, {dep_name: 100})
            endpoint = client.endpoint(ep_name)
        self._target = None
        return run.record("deployment", dep_id, ready=True, scoring_uri=endpoint["scoring_uri"])

    def _settled(self, what: str, name: str, look):
        """The resource once no operation is under way on it (None if it does not exist)."""
        found = look()
        if found is None or found["state"] not in BUSY:
            return found

        def state():
            now = look()
            return ("running" if now and now["state"] in BUSY else "done"), {"status": (now or {}).get("state")}
        self.provider.wait(state, f"{what} {name}", SETTLE_SECONDS,
                           resume_hint="run the same command again: it picks the resource up")
        return look()

    # -- score --------------------------------------------------------------------------------------
    def _scoring_target(self) -> tuple[str, str, str]:
        if self._target is None:
            rec = next((r for r in reversed(self.run.resources("deployment")) if r.get("ready")), None)
            if rec is None:
                train = self.run.step("train") or {}
                rec = self.ensure(TrainResult(self.provider.name, train.get("model_id"), "succeeded",
                                              extra=train.get("extra") or {}))
            self._target = (rec["scoring_uri"], self.client.endpoint_key(rec["endpoint"]), rec["name"])
        return self._target

    def score(self, images: list[bytes], names: list[str]) -> list[dict[str, float]]:
        uri, key, deployment = self._scoring_target()
        out: list[dict[str, float]] = []
        for chunk in self._batches(images):
            body = {"input_data": {"columns": ["image"], "index": list(range(len(chunk))),
                                   "data": [base64.b64encode(data).decode("ascii") for data in chunk]}}
            self.provider.pace()
            answer = self.client.score(uri, key, deployment, body)
            if not isinstance(answer, list) or len(answer) != len(chunk):
                raise ProviderError(f"the endpoint answered {type(answer).__name__} for {len(chunk)} images, "
                                    "not one {probs, labels} per image",
                                    hint="is the deployed model an AutoML image classification model?")
            try:
                out += [{str(label): float(p) for label, p in zip(item["labels"], item["probs"])} for item in answer]
            except (KeyError, TypeError, ValueError) as exc:
                raise ProviderError(f"unexpected scoring answer ({type(exc).__name__}: {exc})",
                                    hint="is the deployed model an AutoML image classification model?") from None
        return out

    def _batches(self, images: list[bytes]):
        """At most azureml.predict_batch images and MAX_REQUEST_BYTES (base64) per request."""
        batch, size = [], 0
        for data in images:
            encoded = (len(data) + 2) // 3 * 4
            if batch and (len(batch) >= self.config.azureml.predict_batch or size + encoded > MAX_REQUEST_BYTES):
                yield batch
                batch, size = [], 0
            batch.append(data)
            size += encoded
        if batch:
            yield batch

    # -- down ---------------------------------------------------------------------------------------
    def delete(self, resource: dict) -> str | None:
        client = self.client
        if resource["kind"] == "endpoint":
            if not resource.get("ours", True):
                return "released"
            client.delete_endpoint(resource["id"])
            return None
        ep_name, dep_name = resource["endpoint"], resource["name"]
        if any(r["id"] == ep_name and r.get("ours", True) for r in self.run.resources("endpoint")):
            client.delete_endpoint(ep_name)      # our endpoint goes next anyway, and takes its deployments
            return None
        endpoint = client.endpoint(ep_name)
        if endpoint and endpoint["traffic"].get(dep_name):
            client.set_traffic(ep_name, {k: v for k, v in endpoint["traffic"].items() if k != dep_name} or {})
        client.delete_deployment(ep_name, dep_name)
        return None

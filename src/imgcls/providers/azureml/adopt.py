"""`imgcls adopt azureml:<endpoint>[/<deployment>]`: a managed online endpoint imgcls did not make,
recorded with its deployment as used, not created, and scored through that deployment."""
from __future__ import annotations

from ...errors import UsageError
from ..base import TrainResult

FORM = "azureml:<online endpoint>[/<deployment>] (default: the deployment taking most of the live traffic)"


def adopt(provider, ref: str) -> TrainResult:
    client, run, ws = provider.client, provider.run, provider.settings.workspace
    ep_name, _, dep_name = ref.strip("/").partition("/")
    if not ep_name:
        raise UsageError(f"azureml:{ref} names no endpoint", hint=f"write {FORM}")
    endpoint = client.endpoint(ep_name)
    if endpoint is None:
        raise UsageError(f"no online endpoint {ep_name!r} in Azure ML workspace {ws}",
                         hint=f"check the name and the azureml: section's workspace; {FORM}")
    if not dep_name:
        live = {name: share for name, share in endpoint["traffic"].items() if share}
        if not live:
            raise UsageError(f"online endpoint {ep_name} routes no traffic to any deployment",
                             hint=f"name the deployment: azureml:{ep_name}/<deployment>")
        dep_name = max(live, key=live.get)
    deployment = client.deployment(ep_name, dep_name)
    if deployment is None:
        raise UsageError(f"online endpoint {ep_name} has no deployment {dep_name!r}",
                         hint="deployments there: " + (", ".join(endpoint["traffic"]) or "none"))
    model_id = str(deployment["model"]) if deployment["model"] else None
    run.record("endpoint", ep_name, name=ep_name, ours=False)
    run.record("deployment", f"{ep_name}/{dep_name}", ours=False, endpoint=ep_name, name=dep_name,
               model_id=model_id, ready=True, scoring_uri=endpoint["scoring_uri"])
    provider.progress.log(f"adopted deployment {dep_name} of online endpoint {ep_name} ({model_id})")
    return TrainResult(provider.name, model_id, "succeeded", extra={
        "adopted": f"azureml:{ref}", "serving": True, "labels": None, "multilabel": None,
        "endpoint": ep_name, "deployment": dep_name})

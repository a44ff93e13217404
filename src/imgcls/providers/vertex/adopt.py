"""`imgcls adopt vertex:<endpoint or model>`: an endpoint imgcls did not make (scored as it serves) or a
model imgcls did not train (deployed to an endpoint of the run's own when it is scored), recorded as
used, not created."""
from __future__ import annotations

from ...errors import UsageError
from ..base import TrainResult

FORM = ("vertex:<endpoint> or vertex:models/<model> (an id in vertex.project / vertex.location, or a full "
        "projects/…/locations/…/endpoints/… or …/models/… name)")


def resource_name(parent: str, ref: str) -> tuple[str, str]:
    """(kind, full resource name) of `ref`: a full name, `endpoints/ID`, `models/ID`, or a bare ID
    (an endpoint; the CLI says so)."""
    ref = ref.strip().strip("/")
    if ref.startswith("projects/"):
        parts = ref.split("/")
        if len(parts) >= 6 and parts[4] in ("endpoints", "models"):
            return parts[4][:-1], ref
        raise UsageError(f"vertex:{ref} is neither an endpoint nor a model", hint=f"write {FORM}")
    kind, _, rid = ref.rpartition("/")
    if kind not in ("", "endpoints", "models") or not rid:
        raise UsageError(f"vertex:{ref} is neither an endpoint nor a model", hint=f"write {FORM}")
    kind = kind or "endpoints"
    return kind[:-1], f"{parent}/{kind}/{rid}"


def adopt(provider, ref: str) -> TrainResult:
    client, run = provider.client, provider.run
    kind, name = resource_name(client.parent, ref)
    extra = {"adopted": f"vertex:{ref}", "labels": None, "multilabel": None}
    if kind == "model":
        model = client.get_model(name)
        if model is None:
            raise UsageError(f"no Vertex AI model {name}", hint=f"check the id and vertex.project/location; {FORM}")
        run.record("model", model["name"], ours=False, display_name=model.get("displayName"))
        provider.progress.log(f"adopted model {model['name']}; evaluate deploys it to an endpoint of the run's "
                              "own, which `imgcls down` deletes (the model stays)")
        return TrainResult(provider.name, model["name"], "succeeded", extra={**extra, "serving": False})
    endpoint = client.get_endpoint(name)
    if endpoint is None:
        raise UsageError(f"no Vertex AI endpoint {name}", hint=f"check the id and vertex.project/location; {FORM}")
    deployed = endpoint.get("deployedModels") or []
    if not deployed:
        raise UsageError(f"Vertex AI endpoint {name} serves no model", hint="adopt the model instead: "
                                                                          "vertex:models/<model id>")
    traffic = endpoint.get("trafficSplit") or {}
    serving = max(deployed, key=lambda d: traffic.get(d["id"], 0))        # the one answering most requests
    run.record("model", serving["model"], ours=False)
    run.record("endpoint", endpoint["name"], ours=False, display_name=endpoint.get("displayName"),
               deployed_model_id=serving["id"], model=serving["model"])
    provider.progress.log(f"adopted endpoint {endpoint['name']} (deployed model {serving['id']} of "
                          f"{serving['model']})")
    return TrainResult(provider.name, serving["model"], "succeeded", extra={**extra, "serving": True,
                                                                           "endpoint": endpoint["name"]})

"""`imgcls adopt customvision:<project>/<published name>`: a published iteration imgcls did not train,
recorded with its project and publication as used, not created, and scored through that publication."""
from __future__ import annotations

import re

from ...errors import ProviderError, UsageError
from ..base import TrainResult
from .project import status_of

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
FORM = "customvision:<project id or name>/<published iteration name>"


def adopt(provider, ref: str) -> TrainResult:
    project_ref, _, publish_name = ref.partition("/")
    if not project_ref or not publish_name:
        raise UsageError(f"customvision:{ref} names no published iteration", hint=f"write {FORM}")
    client, run = provider.client, provider.run
    # Scoring goes through the prediction resource: fail now, not at the first image.
    client.settings.require("training_key", "prediction_endpoint", "prediction_key")
    project = _project(client, project_ref)
    iterations = client.iterations(project["id"])
    it = next((i for i in iterations if i["publish_name"] == publish_name), None)
    if it is None:
        published = sorted(i["publish_name"] for i in iterations if i["publish_name"])
        raise UsageError(f"no iteration of Custom Vision project '{project['name']}' is published as "
                         f"{publish_name!r}",
                         hint=("published there: " + ", ".join(published)) if published else
                         "the project has no published iteration: publish one in the Custom Vision portal")
    tags = client.tags(project["id"])
    run.record("project", project["id"], ours=False, name=project["name"], domain_id=project["domain_id"],
               classification_type=project["classification_type"])
    run.record("iteration", it["id"], ours=False, project_id=project["id"], iteration_name=it["name"])
    run.record("publication", publish_name, ours=False, name=publish_name, project_id=project["id"],
               iteration_id=it["id"])
    provider.progress.log(f"adopted iteration '{it['name']}' of project '{project['name']}', published as "
                          f"'{publish_name}' ({len(tags)} tags)")
    return TrainResult(provider.name, it["id"], "succeeded", extra={
        "adopted": f"customvision:{ref}", "serving": True, "labels": sorted(tags),
        "multilabel": None if not project["classification_type"] else project["classification_type"] == "Multilabel",
        "project_id": project["id"], "iteration": it["name"], "domain_id": it["domain_id"]})


def _project(client, ref: str) -> dict:
    """The project by id, else the one project of that name (the service does not keep names unique)."""
    if _UUID.fullmatch(ref):
        try:
            return client.project(ref)
        except ProviderError as exc:
            if status_of(exc) != 404:
                raise
            raise UsageError(f"no Custom Vision project {ref} at the training endpoint",
                             hint="check the id (the project's settings page shows it) and "
                                  "customvision.training_endpoint") from None
    named = [p for p in client.projects() if p["name"] == ref]
    if len(named) == 1:
        return named[0]
    if named:
        raise UsageError(f"{len(named)} Custom Vision projects are named '{ref}'",
                         hint="name it by id: " + ", ".join(f"customvision:{p['id']}/…" for p in named))
    raise UsageError(f"no Custom Vision project named '{ref}' at the training endpoint",
                     hint=f"write {FORM}; `imgcls adopt` reads the projects of customvision.training_key")

"""`imgcls adopt customvision:<project>/<published name>`: a published iteration imgcls did not train,
recorded with its project and publication as used, not created, and scored through that publication."""
from __future__ import annotations

from ...errors import UsageError
from ..base import TrainResult
from .source import find_project

FORM = "customvision:<project id or name>[/<published iteration name>]"


def adopt(provider, ref: str) -> TrainResult:
    project_ref, _, publish_name = ref.partition("/")
    if not project_ref:
        raise UsageError(f"customvision:{ref} names no project", hint=f"write {FORM}")
    client, run = provider.client, provider.run
    # Scoring goes through the prediction resource: fail now, not at the first image.
    client.settings.require("training_key", "prediction_endpoint", "prediction_key")
    project = find_project(client, project_ref, error=UsageError)
    iterations = client.iterations(project["id"])
    publish_name = publish_name or latest_published(iterations, project)
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
        "adopted": f"customvision:{project['id']}/{publish_name}", "serving": True, "labels": sorted(tags),
        "multilabel": None if not project["classification_type"] else project["classification_type"] == "Multilabel",
        "project_id": project["id"], "iteration": it["name"], "domain_id": it["domain_id"]})


def latest_published(iterations: list[dict], project: dict) -> str:
    """The publication name of the project's most recently trained published iteration."""
    published = [i for i in iterations if i["publish_name"]]
    if not published:
        raise UsageError(f"Custom Vision project '{project['name']}' has no published iteration",
                         hint="publish one in the Custom Vision portal, or name it: " + FORM)
    return max(published, key=lambda i: i["trained_at"] or i["created"] or "")["publish_name"]

"""The run's Custom Vision project: found again, reused (`customvision.project_id`) or created in the
configured domain, and its tags reused by name or created. Both are recorded the moment their ids are
known; `ours` tells `down` whether the run created the project (it never deletes one it did not)."""
from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from ...errors import ConfigError, ImgclsError, ProviderError
from . import upload as upload_mod

if TYPE_CHECKING:
    from ...config import RunConfig
    from ...progress import Progress
    from ...runs import Run
    from .client import Client


def code_of(exc: ImgclsError) -> str | None:
    """The service's error code behind an error client.py raised, e.g. 'BadRequestIterationIsPublished'."""
    return exc.details.get("code")


def status_of(exc: ImgclsError) -> int | None:
    return exc.details.get("status")


def ensure_project(client: Client, run: Run, config: RunConfig, progress: Progress) -> dict:
    """{id, name, created}: the project the run recorded, else `customvision.project_id`, else a new one."""
    section = config.customvision
    recorded = run.resource("project")
    if recorded is not None:
        try:
            client.project(recorded["id"])
            return {"id": recorded["id"], "name": recorded.get("name"), "created": bool(recorded.get("ours"))}
        except ProviderError as exc:
            if status_of(exc) != 404 or not recorded.get("ours"):
                raise
            progress.log(f"project {recorded['id']} recorded by this run is gone; creating a new one")
            run.mark_deleted(recorded, "gone")
    dom = domain(client, section.domain)
    ctype = "Multilabel" if config.multilabel else "Multiclass"
    if section.project_id:
        return _reuse(client, run, config, progress, dom, ctype)
    name = section.project_name or config.name
    marker = f"imgcls run {run.id}"   # finds our project again if the answer to create (or the run) was lost
    found = next((p for p in client.projects() if p["description"] == marker), None) \
        if run.pending("project") else None
    if found is None:
        run.intend("project", name, marker=marker)
        found = client.create_project(
            name, marker, dom["id"], ctype, platforms(dom, section.export_platforms, progress, strict=False),
            recover=lambda: next((p for p in client.projects() if p["description"] == marker), None))
    # `ours`, not `created`: the ledger's `created` is the time it was recorded.
    run.record("project", found["id"], name=name, ours=True, domain=dom["name"], domain_id=dom["id"],
               classification_type=ctype)
    return {"id": found["id"], "name": name, "created": True}


def _reuse(client: Client, run: Run, config: RunConfig, progress: Progress, dom: dict, ctype: str) -> dict:
    project_id = config.customvision.project_id
    try:
        project = client.project(project_id)
    except ProviderError as exc:
        if status_of(exc) == 404:
            raise ConfigError(f"customvision.project_id: no project {project_id} at the training endpoint",
                              hint="check the id (the project's settings page shows it), or remove "
                                   "project_id to let the run create a project") from None
        raise
    if (project["classification_type"] or ctype) != ctype:
        raise ConfigError(f"customvision.project_id: project '{project['name']}' is "
                          f"{project['classification_type']}, the config's task is {config.task}",
                          hint="use a project of the same type, or remove project_id")
    if project["domain_id"] != dom["id"]:
        progress.log(f"note: project '{project['name']}' keeps its own domain, not customvision.domain "
                     f"'{dom['name']}'")
    run.record("project", project["id"], name=project["name"], ours=False, domain_id=project["domain_id"],
               classification_type=project["classification_type"])
    return {"id": project["id"], "name": project["name"], "created": False}


def domain(client: Client, name: str) -> dict:
    """The classification domain called `name` (case-insensitive)."""
    domains = [d for d in client.domains() if d["type"] == "Classification"]
    for d in domains:
        if d["name"].lower() == name.strip().lower():
            return d
    names = sorted({d["name"] for d in domains})
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    raise ConfigError(f"customvision.domain: no classification domain named '{name}'",
                      hint=(f"did you mean '{close[0]}'? " if close else "") + "choose one of: " + ", ".join(names))


def platforms(dom: dict, asked: list[str], progress: Progress, strict: bool) -> list[str]:
    """Export platforms spelled as the domain spells them; `strict` (exporting): ONNX when none asked."""
    asked = asked or (["ONNX"] if strict else [])
    if not dom["exportable"]:
        if asked and not strict:
            progress.log(f"note: customvision.export_platforms ignored: domain '{dom['name']}' is not "
                         "compact, so its models cannot be exported")
        return []
    known = {p.lower(): p for p in dom["platforms"]}
    unknown = [p for p in asked if p.lower() not in known]
    if unknown:
        raise ConfigError(f"customvision.export_platforms: {', '.join(unknown)} not offered by domain "
                          f"'{dom['name']}'", hint="choose from: " + ", ".join(dom["platforms"]))
    return [known[p.lower()] for p in asked]


def ensure_tags(client: Client, run: Run, project: dict, labels: list[str]) -> dict[str, str]:
    """label -> tag id; existing tags are reused by name (the service compares names without case)."""
    def lookup() -> dict[str, str]:
        return {name.lower(): tid for name, tid in client.tags(project["id"]).items()}

    listed = client.tags(project["id"])
    existing = {name.lower(): tid for name, tid in listed.items()}
    record = upload_mod.load_record(run, project["id"])
    upload_mod.settle_tags(run, record, listed)      # made by an attempt that lost the answer
    out = {}
    for label in labels:
        if label.lower() not in existing:
            # The name before the call: a kill before the answer leaves a tag `settle_tags` finds.
            record["tags_pending"].append(label)
            upload_mod.save_record(run, record)
            try:
                existing[label.lower()] = client.create_tag(
                    project["id"], label, recover=lambda label=label: lookup().get(label.lower()))
            except ProviderError as exc:
                if code_of(exc) != "BadRequestTagNameNotUnique":
                    raise
                existing = lookup()
            record["tags_created"].append(existing[label.lower()])
            record["tags_pending"].remove(label)
            upload_mod.save_record(run, record)
        out[label] = existing[label.lower()]
    return out

"""Training API export routes of the fake: export jobs per platform and flavor (compact domains
only), their status, and the zip each Done export serves at its downloadUri."""
from __future__ import annotations

import io
import json
import time
import zipfile

from tests.fakes.customvision.server import routes
from tests.fakes.customvision.state import (
    DOMAINS_BY_ID,
    EXPORT_FLAVORS,
    Export,
    Iteration,
    Project,
    bad_request,
    new_id,
    not_found,
)
from tests.fakes.customvision.training import canonical, iteration_of


def _export_json(export: Export, base_url: str) -> dict:
    uri = f"{base_url}/_fake/exports/{export.token}" if export.status == "Done" else None
    return {"platform": export.platform, "status": export.status, "downloadUri": uri,
            "flavor": export.flavor, "newerVersionAvailable": False}


def _export_zip(project: Project, iteration: Iteration, platform: str, flavor: str | None) -> bytes:
    # Not a real ONNX/TensorFlow/... model: the package carries the toy model the fake predicts
    # with, so a test can load it and check the export gives the same answers as the endpoint.
    model = iteration.model.to_dict()
    model["labels"] = [iteration.tags[t].name for t in model["labels"]]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("labels.txt", "\n".join(model["labels"]) + "\n")
        zf.writestr("toymodel.json", json.dumps(model))
        zf.writestr("manifest.json", json.dumps({
            "platform": platform, "flavor": flavor, "projectId": project.id, "iterationId": iteration.id,
            "domainId": iteration.domain_id, "fake": "tests.fakes.customvision"}))
    return buf.getvalue()


def get_exports(fake, req, project_id, iteration_id):
    iteration = iteration_of(fake.state.project(project_id), iteration_id)
    return 200, [_export_json(e, req.base_url) for e in iteration.exports]


def export_iteration(fake, req, project_id, iteration_id):
    project = fake.state.project(project_id)
    iteration = iteration_of(project, iteration_id)
    if iteration.status == "Training":
        raise bad_request("BadRequestExportWhileTraining", "Cannot export while the iteration is training.")
    if iteration.status != "Completed":
        raise bad_request("BadRequestIterationIsNotTrained", f"Iteration '{iteration.name}' is not trained.")
    platform = canonical(req.arg("platform"), EXPORT_FLAVORS, "BadRequestExportValidationFailed", "platform")
    if platform is None:
        raise bad_request("BadRequestExportValidationFailed", "The platform parameter is required.")
    if platform not in iteration.exportable_to:
        raise bad_request("BadRequestExportValidationFailed",
                          f"Iteration '{iteration.name}' was trained in domain "
                          f"'{DOMAINS_BY_ID[iteration.domain_id].name}', which cannot export to "
                          f"{platform}; use a compact domain.")
    flavor = req.arg("flavor")
    flavors = [f for f in EXPORT_FLAVORS[platform] if f]
    flavor = canonical(flavor, flavors, "BadRequestExportValidationFailed", f"{platform} flavor")
    # Once queued, an export of this platform and flavor stays: asking again, even after it is Done,
    # fails (Microsoft Learn, "Export a model programmatically": "If you've already exported a
    # particular iteration, you cannot call the export_iteration method again"; the service's message
    # is "<iteration id> is already queued for export", Azure/azure-sdk-for-python#23922). A Failed
    # one may be retried.
    same = [e for e in iteration.exports if e.platform == platform and e.flavor == flavor]
    if any(e.status in ("Exporting", "Done") for e in same):
        raise bad_request("BadRequestExportAlreadyInProgress", f"{iteration.id} is already queued for export")
    iteration.exports = [e for e in iteration.exports if e not in same]
    export = Export(platform, flavor, new_id(), time.time() + fake.export_seconds,
                    _export_zip(project, iteration, platform, flavor))
    iteration.exports.append(export)
    return 200, _export_json(export, req.base_url)


def download_export(fake, req, token):
    for project in fake.state.projects.values():
        for iteration in project.iterations.values():
            for export in iteration.exports:
                if export.token == token and export.status == "Done":
                    return 200, export.data, "application/zip"
    raise not_found("BlobNotFound", "The specified blob does not exist.")


ROUTES = routes("training", [
    ("GET", "/projects/{project_id}/iterations/{iteration_id}/export", get_exports),
    ("POST", "/projects/{project_id}/iterations/{iteration_id}/export", export_iteration),
]) + routes("public", [
    ("GET", "/exports/{token}", download_export),
])

"""Prediction API routes of the fake (classify by published name, image or url, stored or not),
plus the training API's quick test and stored-prediction deletion, which share the predictor."""
from __future__ import annotations

import time
from urllib.parse import unquote

from tests.fakes.customvision.server import fetch_image_url, routes
from tests.fakes.customvision.state import (
    MAX_PREDICTION_IMAGE_BYTES,
    Iteration,
    Project,
    ServiceError,
    bad_request,
    inspect_image,
    iso,
    new_id,
    not_found,
)


def _predict(project: Project, iteration: Iteration, data: bytes | None, store: bool,
             application: str | None = None, url: str | None = None) -> dict:
    if data is None:
        raise bad_request("BadRequestImageUrl", f"Unable to download image from url: {url}")
    if not data:
        raise bad_request("BadRequestImageStream", "The image stream is empty.")
    if len(data) > MAX_PREDICTION_IMAGE_BYTES:
        raise bad_request("BadRequestImageSizeBytes",
                          f"Image size {len(data)} bytes exceeds the {MAX_PREDICTION_IMAGE_BYTES}-byte limit.")
    error, _, _ = inspect_image(data)
    if error:
        raise bad_request("BadRequestImageFormat", "Bad Request Image Format.")
    scores = iteration.model.predict(data)
    predictions = [{"probability": score, "tagId": tag_id, "tagName": iteration.tags[tag_id].name}
                   for tag_id, score in scores.items()]
    predictions.sort(key=lambda p: -p["probability"])
    result = {"id": new_id(), "project": project.id, "iteration": iteration.id, "created": iso(time.time()),
              "predictions": predictions}
    if store:
        project.predictions.append({**result, "application": application})
    return result


def _published(fake, project_id: str, published_name: str) -> tuple[Project, Iteration]:
    try:
        project = fake.state.project(project_id)
    except ServiceError:
        raise not_found("NotFound", "Invalid project") from None
    name = unquote(published_name).lower()
    for iteration in project.iterations.values():
        if (iteration.publish_name or "").lower() == name:
            return project, iteration
    raise not_found("NotFound", "Invalid iteration")


def _image_data(req) -> bytes:
    files = req.files()
    return files[0][1] if files else b""


def _classify_image(store: bool):
    def handler(fake, req, project_id, published_name):
        project, iteration = _published(fake, project_id, published_name)
        return 200, _predict(project, iteration, _image_data(req), store, req.arg("application"))
    return handler


def _classify_url(store: bool):
    def handler(fake, req, project_id, published_name):
        url = (req.json() or {}).get("url")
        data = fetch_image_url(url, MAX_PREDICTION_IMAGE_BYTES)  # before locking: it may be this server
        with fake.lock:
            fake.state.advance()
            project, iteration = _published(fake, project_id, published_name)
            return 200, _predict(project, iteration, data, store, req.arg("application"), url)
    return handler


def _quick_test_iteration(fake, req, project_id) -> tuple[Project, Iteration]:
    project = fake.state.project(project_id)
    iteration_id = req.arg("iterationId")
    if iteration_id:
        iteration = project.iterations.get(iteration_id.lower())
        if iteration is None:
            raise not_found("NotFoundIteration", f"Iteration not found: {iteration_id}")
    else:  # no default iteration since v3.0: the newest trained one stands in for it
        trained = [it for it in project.iterations.values() if it.status == "Completed"]
        if not trained:
            raise not_found("NotFoundProjectDefaultIteration", "The project has no trained iteration.")
        iteration = trained[-1]
    if iteration.status != "Completed":
        raise bad_request("BadRequestIterationIsNotTrained", f"Iteration '{iteration.name}' is not trained.")
    return project, iteration


def quick_test_image(fake, req, project_id):
    project, iteration = _quick_test_iteration(fake, req, project_id)
    store = req.arg("store") is None or req.flag("store")
    return 200, _predict(project, iteration, _image_data(req), store)


def quick_test_url(fake, req, project_id):
    url = (req.json() or {}).get("url")
    data = fetch_image_url(url, MAX_PREDICTION_IMAGE_BYTES)
    with fake.lock:
        fake.state.advance()
        project, iteration = _quick_test_iteration(fake, req, project_id)
        store = req.arg("store") is None or req.flag("store")
        return 200, _predict(project, iteration, data, store, url=url)


def delete_predictions(fake, req, project_id):
    project = fake.state.project(project_id)
    ids = set(req.ids("ids"))
    if not ids:
        raise bad_request("BadRequestPredictionIdsMissing", "No prediction ids given.")
    project.predictions = [p for p in project.predictions if p["id"] not in ids]
    return 204, None


_CLASSIFY = "/{project_id}/classify/iterations/{published_name}"

ROUTES = routes("prediction", [
    ("POST", _CLASSIFY + "/image", _classify_image(store=True)),
    ("POST", _CLASSIFY + "/image/nostore", _classify_image(store=False)),
    ("POST", _CLASSIFY + "/url", _classify_url(store=True), False),
    ("POST", _CLASSIFY + "/url/nostore", _classify_url(store=False), False),
]) + routes("training", [
    ("POST", "/projects/{project_id}/quicktest/image", quick_test_image),
    ("POST", "/projects/{project_id}/quicktest/url", quick_test_url, False),
    ("DELETE", "/projects/{project_id}/predictions", delete_predictions),
])

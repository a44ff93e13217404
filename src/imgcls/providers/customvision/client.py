"""The only module that imports the Custom Vision SDK: builds the training and prediction clients,
retries throttled or failed calls itself (honouring Retry-After), turns SDK errors into ours and
SDK models into plain dicts. No decisions about what to upload or keep live here."""
from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from typing import Any

import requests
from azure.cognitiveservices.vision.customvision.prediction import CustomVisionPredictionClient
from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
from azure.cognitiveservices.vision.customvision.training import models as tm
from msrest.authentication import ApiKeyCredentials
from msrest.exceptions import ClientRequestError, HttpOperationError

from ...errors import AuthError, ConfigError, DataError, ImgclsError, ProviderError
from .settings import Settings, where

MAX_IDS_PER_CALL = 256          # image ids per delete / lookup
MAX_RETRY_AFTER = 60.0          # seconds; a longer Retry-After is cut to this

# 400 codes that mean the input is wrong (exit 4) or the config is (exit 3); the rest are ProviderError.
_DATA_CODES = {"BadRequestTrainingValidationFailed", "BadRequestImageBatch", "BadRequestImageFormat",
               "BadRequestImageSizeBytes", "BadRequestImageStream", "BadRequestImageDimensions",
               "BadRequestImageUrl", "BadRequestImageTags", "BadRequestExceedTagPerImageLimit"}
_CONFIG_CODES = {"BadRequestProjectUnknownDomain": "customvision.domain",
                 "BadRequestProjectUnknownClassification": "task",
                 "BadRequestProjectUnsupportedExportPlatform": "customvision.export_platforms",
                 "BadRequestExportValidationFailed": "customvision.export_platforms",
                 "BadRequestInvalidPublishTarget": where("prediction_resource_id"),
                 "BadRequestInvalidPublishName": "customvision.publish_name",
                 "BadRequestReservedBudgetInHoursNotEnoughForAdvancedTraining": "train.node_hours"}


def _quiet_retries(client) -> Any:
    # msrest retries some methods and statuses by itself (GET/PUT/DELETE 5xx, 429 on GET) and then
    # hides the response; we retry every call ourselves instead, the same way, honouring Retry-After.
    policy = client.config.retry_policy.policy
    policy.total = policy.connect = policy.read = 0
    policy.status_forcelist = set()
    policy.respect_retry_after_header = False
    policy.raise_on_status = False
    client.config.connection.timeout = 120
    return client


class Client:
    """Thin calls on the training and prediction APIs; `log` gets a line per retry (stderr)."""

    def __init__(self, settings: Settings, log: Callable[[str], None] = lambda _: None):
        self.settings, self.log = settings, log
        settings.require("training_endpoint", "training_key")
        self.trainer = _quiet_retries(CustomVisionTrainingClient(
            settings.training_endpoint, ApiKeyCredentials(in_headers={"Training-key": settings.training_key})))
        self._predictor = None

    @property
    def predictor(self):
        if self._predictor is None:
            self.settings.require("prediction_endpoint", "prediction_key")
            self._predictor = _quiet_retries(CustomVisionPredictionClient(
                self.settings.prediction_endpoint,
                ApiKeyCredentials(in_headers={"Prediction-key": self.settings.prediction_key})))
        return self._predictor

    # -- the one place calls are made, retried and translated ------------------------------------
    def call(self, what: str, fn: Callable, *args, api: str = "training",
             recover: Callable[[], Any] | None = None, **kwargs):
        """fn(*args, **kwargs), retried on 429, 408, 5xx and dropped connections.

        `recover` is for calls that create something: after an ambiguous failure (5xx or a dropped
        connection, when the request may have been carried out) it looks for the result, and what it
        finds is returned instead of asking again.
        """
        attempts = 1 + self.settings.retries
        for attempt in range(1, attempts + 1):
            ambiguous = True
            try:
                return fn(*args, **kwargs)
            except HttpOperationError as exc:
                status = exc.response.status_code if exc.response is not None else None
                if status in (401, 403):
                    raise self._auth_error(api, status) from None
                if status not in (408, 429) and not (status and status >= 500) or attempt == attempts:
                    raise self._translate(api, what, exc, status, attempt) from None
                ambiguous = status != 429
                delay = _retry_after(exc.response) if status in (429, 503) else None
                reason = f"{status} {_message(exc)}"
            except ClientRequestError as exc:
                if attempt == attempts:
                    endpoint = f"{api}_endpoint"
                    raise ProviderError(f"Custom Vision {what}: cannot reach "
                                        f"{getattr(self.settings, endpoint)} after {attempts} attempts "
                                        f"({_connection_reason(exc)})",
                                        hint=f"check {where(endpoint)} and the network, then run the same "
                                             "command again: the run resumes where it stopped") from None
                delay, reason = None, _connection_reason(exc)
            if delay is None:
                delay = min(0.5 * 2 ** (attempt - 1), 20.0) * random.uniform(0.8, 1.2)
            self.log(f"Custom Vision {what}: {reason}; retrying in {delay:.1f} s "
                     f"(attempt {attempt + 1} of {attempts})")
            time.sleep(delay)
            if ambiguous and recover is not None:
                found = recover()
                if found is not None:
                    return found
        raise AssertionError("unreachable")

    def _auth_error(self, api: str, status: int) -> AuthError:
        return AuthError(f"Custom Vision refused the {api} key ({status} Access Denied) at "
                         f"{getattr(self.settings, f'{api}_endpoint')}",
                         hint=f"check {where(f'{api}_key')} and {where(f'{api}_endpoint')}: the key must "
                              f"belong to the {api} resource at that endpoint", status=status)

    def _translate(self, api: str, what: str, exc: HttpOperationError, status: int | None,
                   attempt: int) -> ImgclsError:
        code, message = _code(exc), _message(exc)
        text = f"Custom Vision {what}: {message}" + (f" ({code})" if code else f" ({status})")
        details = {"code": code, "status": status}
        if status == 400 and code in _DATA_CODES:
            return DataError(text, hint="fix the images or labels named above and run the command again",
                             **details)
        if status == 400 and code in _CONFIG_CODES:
            return ConfigError(text, hint=f"check {_CONFIG_CODES[code]}", **details)
        if status == 429 or (status and status >= 500):
            return ProviderError(f"{text} after {attempt} attempts",
                                 hint="the service is throttling or failing; run the same command again "
                                      "later: the run resumes where it stopped", **details)
        return ProviderError(text, **details)

    # -- projects, domains, tags ------------------------------------------------------------------
    def domains(self) -> list[dict]:
        return [{"id": d.id, "name": d.name, "type": d.type, "exportable": bool(d.exportable),
                 "platforms": list(d.exportable_platforms or [])}
                for d in self.call("listing domains", self.trainer.get_domains)]

    def domain(self, domain_id: str) -> dict:
        d = self.call("reading the domain", self.trainer.get_domain, domain_id)
        return {"id": d.id, "name": d.name, "type": d.type, "exportable": bool(d.exportable),
                "platforms": list(d.exportable_platforms or [])}

    def projects(self) -> list[dict]:
        return [_project(p) for p in self.call("listing projects", self.trainer.get_projects)]

    def project(self, project_id: str) -> dict:
        return _project(self.call("reading the project", self.trainer.get_project, project_id))

    def create_project(self, name: str, description: str, domain_id: str, classification_type: str,
                       platforms: list[str] | None, recover: Callable[[], Any]) -> dict:
        return _project(self.call("creating the project", self.trainer.create_project, name,
                                  description=description, domain_id=domain_id,
                                  classification_type=classification_type,
                                  target_export_platforms=platforms or None, recover=recover))

    def delete_project(self, project_id: str) -> None:
        self.call("deleting the project", self.trainer.delete_project, project_id)

    def tags(self, project_id: str) -> dict[str, str]:
        return {t.name: t.id for t in self.call("listing tags", self.trainer.get_tags, project_id)}

    def create_tag(self, project_id: str, name: str, recover: Callable[[], Any]) -> str:
        found = self.call(f"creating tag '{name}'", self.trainer.create_tag, project_id, name, recover=recover)
        return found if isinstance(found, str) else found.id

    def delete_tag(self, project_id: str, tag_id: str) -> None:
        self.call("deleting a tag", self.trainer.delete_tag, project_id, tag_id)

    # -- images -----------------------------------------------------------------------------------
    def upload(self, project_id: str, entries: list[tuple[str, bytes, list[str]]],
               metadata: dict[str, str] | None = None) -> list[dict]:
        """One batch of (name, bytes, tag ids), `metadata` set on every image it creates: per image, in
        order, {name, status, image_id}."""
        batch = tm.ImageFileCreateBatch(images=[tm.ImageFileCreateEntry(name=n, contents=c, tag_ids=t)
                                                for n, c, t in entries], metadata=metadata or None)
        summary = self.call(f"uploading {len(entries)} images", self.trainer.create_images_from_files,
                            project_id, batch)
        return [{"name": r.source_url, "status": r.status, "image_id": r.image.id if r.image else None}
                for r in summary.images]

    def images(self, project_id: str) -> list[dict]:
        """Every image of the project, tagged and untagged: {id, created, metadata}."""
        out = []
        while True:
            page = self.call("listing images", self.trainer.get_images, project_id, take=MAX_IDS_PER_CALL,
                             skip=len(out))
            out += [_image(i) for i in page]
            if len(page) < MAX_IDS_PER_CALL:
                return out

    def listed_images(self, project_id: str, tagged: bool) -> list[dict]:
        """Every tagged (or untagged) image, oldest first so a page boundary does not move while images
        are added: {id, tags (names, as the service orders them), uri (the original's, else resized)}."""
        fn, what = ((self.trainer.get_tagged_images, "listing tagged images") if tagged
                    else (self.trainer.get_untagged_images, "listing untagged images"))
        out: list[dict] = []
        while True:
            page = self.call(what, fn, project_id, order_by="Oldest", take=MAX_IDS_PER_CALL, skip=len(out))
            out += [_listed(i) for i in page]
            if len(page) < MAX_IDS_PER_CALL:
                return out

    def listed_images_by_ids(self, project_id: str, image_ids: list[str]) -> list[dict]:
        """As listed_images, for these ids (fresh image URIs: the service's are signed and expire)."""
        out = []
        for start in range(0, len(image_ids), MAX_IDS_PER_CALL):
            out += [_listed(i) for i in self.call("reading images", self.trainer.get_images_by_ids, project_id,
                                                  image_ids=image_ids[start:start + MAX_IDS_PER_CALL])]
        return out

    def images_by_ids(self, project_id: str, image_ids: list[str]) -> list[dict]:
        out = []
        for start in range(0, len(image_ids), MAX_IDS_PER_CALL):
            out += [_image(i) for i in self.call("reading images", self.trainer.get_images_by_ids, project_id,
                                                 image_ids=image_ids[start:start + MAX_IDS_PER_CALL])]
        return out

    def tag_images(self, project_id: str, pairs: list[tuple[str, str]]) -> None:
        for start in range(0, len(pairs), 128):
            entries = [tm.ImageTagCreateEntry(image_id=i, tag_id=t) for i, t in pairs[start:start + 128]]
            self.call("tagging images", self.trainer.create_image_tags, project_id, tags=entries)

    def delete_images(self, project_id: str, image_ids: list[str]) -> None:
        for start in range(0, len(image_ids), MAX_IDS_PER_CALL):
            self.call("deleting images", self.trainer.delete_images, project_id,
                      image_ids=image_ids[start:start + MAX_IDS_PER_CALL])

    # -- training and iterations ------------------------------------------------------------------
    def train(self, project_id: str, training_type: str, budget_hours: int,
              recover: Callable[[], Any]) -> dict:
        found = self.call("starting training", self.trainer.train_project, project_id,
                          training_type=training_type, reserved_budget_in_hours=budget_hours,
                          recover=recover)
        return found if isinstance(found, dict) else _iteration(found)

    def iteration(self, project_id: str, iteration_id: str) -> dict:
        return _iteration(self.call("reading the iteration", self.trainer.get_iteration, project_id, iteration_id))

    def iterations(self, project_id: str) -> list[dict]:
        return [_iteration(i) for i in self.call("listing iterations", self.trainer.get_iterations, project_id)]

    def rename_iteration(self, project_id: str, iteration_id: str, name: str) -> dict:
        return _iteration(self.call("naming the iteration", self.trainer.update_iteration, project_id,
                                    iteration_id, name))

    def delete_iteration(self, project_id: str, iteration_id: str) -> None:
        self.call("deleting the iteration", self.trainer.delete_iteration, project_id, iteration_id)

    def performance(self, project_id: str, iteration_id: str, threshold: float) -> dict:
        p = self.call("reading iteration performance", self.trainer.get_iteration_performance,
                      project_id, iteration_id, threshold=threshold)
        return {"precision": p.precision, "recall": p.recall, "average_precision": p.average_precision,
                "per_tag": {t.name: {"precision": t.precision, "recall": t.recall,
                                     "average_precision": t.average_precision}
                            for t in p.per_tag_performance or []}}

    def publish(self, project_id: str, iteration_id: str, name: str) -> None:
        self.settings.require("prediction_resource_id")
        self.call("publishing the iteration", self.trainer.publish_iteration, project_id, iteration_id,
                  name, self.settings.prediction_resource_id)

    def unpublish(self, project_id: str, iteration_id: str) -> None:
        self.call("unpublishing the iteration", self.trainer.unpublish_iteration, project_id, iteration_id)

    # -- export -----------------------------------------------------------------------------------
    def exports(self, project_id: str, iteration_id: str) -> list[dict]:
        return [_export(e) for e in self.call("listing exports", self.trainer.get_exports,
                                              project_id, iteration_id)]

    def export(self, project_id: str, iteration_id: str, platform: str) -> dict:
        return _export(self.call(f"exporting to {platform}", self.trainer.export_iteration,
                                 project_id, iteration_id, platform))

    def download(self, url: str, dest) -> int:
        """Save a finished export's package (a pre-signed URL: no key is sent) and return its size. A GET
        changes nothing, so a dropped connection, 429 or 5xx is tried again (settings.retries times)."""
        class Retryable(Exception):
            pass

        def get():
            with requests.get(url, stream=True, timeout=120) as r:
                if r.status_code == 429 or r.status_code >= 500:
                    raise Retryable(f"HTTP {r.status_code}")
                if r.status_code >= 400:
                    raise ProviderError(f"Custom Vision export download failed: HTTP {r.status_code}",
                                        hint="run `imgcls export` again: a fresh link is requested")
                size = 0
                with open(dest, "wb") as fh:
                    for chunk in r.iter_content(1 << 20):
                        fh.write(chunk)
                        size += len(chunk)
                return size

        attempts = 1 + self.settings.retries
        for attempt in range(1, attempts + 1):
            try:
                return get()
            except (Retryable, requests.RequestException) as exc:
                reason = str(exc) if isinstance(exc, Retryable) else type(exc).__name__
                if attempt == attempts:
                    raise ProviderError(f"Custom Vision export download failed after {attempts} attempts: "
                                        f"{reason}", hint="run `imgcls export` again") from None
                delay = min(0.5 * 2 ** (attempt - 1), 20.0) * random.uniform(0.8, 1.2)
                self.log(f"Custom Vision export download: {reason}; retrying in {delay:.1f} s "
                         f"(attempt {attempt + 1} of {attempts})")
                time.sleep(delay)
        raise AssertionError("unreachable")

    # -- prediction -------------------------------------------------------------------------------
    def classify(self, project_id: str, publish_name: str, data: bytes) -> list[tuple[str, str, float]]:
        """(tag id, tag name, probability) per tag; the prediction is not stored by the service."""
        result = self.call("classifying an image", self.predictor.classify_image_with_no_store,
                           project_id, publish_name, data, api="prediction")
        return [(p.tag_id, p.tag_name, float(p.probability)) for p in result.predictions or []]


# -- SDK models -> plain dicts ------------------------------------------------------------------

def _project(p) -> dict:
    if isinstance(p, dict):  # what a `recover` callback found
        return p
    s = p.settings
    return {"id": p.id, "name": p.name, "description": p.description or "",
            "domain_id": s.domain_id if s else None,
            "classification_type": s.classification_type if s else None}


def _iteration(i) -> dict:
    return {"id": i.id, "name": i.name, "status": i.status, "error": i.training_error_details,
            "domain_id": i.domain_id, "training_type": i.training_type,
            "minutes": i.training_time_in_minutes, "publish_name": i.publish_name,
            "exportable_to": list(i.exportable_to or []),
            "created": i.created.isoformat() if i.created else None,
            "trained_at": i.trained_at.isoformat() if i.trained_at else None}


def _image(i) -> dict:
    return {"id": i.id, "created": i.created.isoformat() if i.created else None, "metadata": i.metadata or {}}


def _listed(i) -> dict:
    return {"id": i.id, "tags": [t.tag_name for t in i.tags or []],
            "uri": i.original_image_uri or i.resized_image_uri}


def _export(e) -> dict:
    return {"platform": e.platform, "status": e.status, "url": e.download_uri, "flavor": e.flavor}


def _code(exc: HttpOperationError) -> str | None:
    code = getattr(exc.error, "code", None)
    if code:
        return code
    try:  # the API gateway's own errors (401, 429) wrap theirs in {"error": {...}}
        return (exc.response.json().get("error") or {}).get("code")
    except (ValueError, AttributeError):
        return None


def _message(exc: HttpOperationError) -> str:
    message = getattr(exc.error, "message", None)
    if not message:
        try:
            message = (exc.response.json().get("error") or {}).get("message")
        except (ValueError, AttributeError):
            message = None
    return message or getattr(exc.response, "reason", None) or str(exc)


def _retry_after(response) -> float | None:
    value = (response.headers or {}).get("Retry-After") if response is not None else None
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        if parsed is None:
            return None
        seconds = parsed.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _connection_reason(exc: ClientRequestError) -> str:
    text = str(exc)
    for known in ("Connection refused", "Remote end closed connection", "timed out", "Name or service not known",
                  "Connection reset"):
        if known in text:
            return known.lower()
    return "connection failed"

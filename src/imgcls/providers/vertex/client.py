"""The only module that imports the Vertex AI and Cloud Storage SDKs.

Builds the v1 service clients and a storage client from Settings, retries throttled (429) and unavailable
(503) calls itself (Vertex's v1 create/delete/deploy/predict calls have no retry of their own), waits on
long-running operations with our polling, and turns SDK errors into ours. Requests go in as the camelCase
JSON of bodies.py; answers come back as plain dicts in the same spelling. No decisions live here.
"""
from __future__ import annotations

import concurrent.futures
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import google.auth
import requests
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_transient_error
from google.auth import exceptions as auth_exc
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform_v1 as v1
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY as GCS_DEFAULT_RETRY
from google.protobuf import json_format

from ...errors import AuthError, ConfigError, DataError, ImgclsError, ProviderError, TimedOut
from .settings import ANONYMOUS_ENV, Settings

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
CREDENTIALS_HINT = ("set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, or run "
                    "`gcloud auth application-default login`")
LRO_TIMEOUT = 4 * 3600.0        # seconds we wait on one import/deploy/delete before TimedOut (resumable)
# An operation is usually done within seconds (deletes) or many minutes (imports, deploys): look soon,
# then back off.
POLLING = Retry(initial=0.1, maximum=15.0, multiplier=1.6, timeout=LRO_TIMEOUT)
POLL_RPC_RETRY = Retry(predicate=if_transient_error, initial=0.2, maximum=5.0, multiplier=2.0, timeout=120.0)
# google-cloud-storage retries for 120 s with its own predicate (uploads included, when asked): shorter.
GCS_RETRY = GCS_DEFAULT_RETRY.with_delay(initial=0.5, maximum=8.0).with_timeout(60.0)
GCS_TIMEOUT = 120.0
RPC_TIMEOUT = 60.0           # seconds per Vertex AI request (the v1 clients' own default is none: wait forever)
RETRY_DELAY = 0.5            # seconds before the first retry; doubled each time, at most 8
_RETRIED = (gexc.TooManyRequests, gexc.ServiceUnavailable)
# Reads and deletes may also be retried after an error that might have happened after the work was done.
_RETRIED_IDEMPOTENT = _RETRIED + (gexc.InternalServerError, gexc.BadGateway, gexc.GatewayTimeout,
                                  gexc.DeadlineExceeded, requests.ConnectionError, auth_exc.TransportError)


class Missing(ProviderError):
    """The resource is not there (HTTP 404): deletes and lookups treat it as gone."""

    shown_as = "ProviderError"


def credentials(s: Settings) -> tuple[Any, str | None]:
    """(credentials, their project) from Application Default Credentials, or anonymous for the test seam."""
    if s.anonymous:
        return AnonymousCredentials(), None
    try:
        creds, project = google.auth.default(scopes=SCOPES)
    except auth_exc.DefaultCredentialsError as exc:
        raise AuthError(f"no Google credentials found for Vertex AI ({_first_line(exc)})",
                        hint=CREDENTIALS_HINT) from None
    return creds, project


class Pending:
    """A started long-running operation: the resource's name is known before we wait on it."""

    def __init__(self, client: VertexClient, op, what: str):
        self._client, self._op, self.what = client, op, what

    @property
    def resource_name(self) -> str:
        # "projects/…/datasets/123/operations/456" names the dataset it works on.
        return self._op.operation.name.split("/operations/")[0]

    def result(self, timeout: float | None = LRO_TIMEOUT) -> dict:
        started = time.monotonic()
        try:
            response = self._op.result(timeout=timeout, retry=POLL_RPC_RETRY, polling=POLLING)
        except concurrent.futures.TimeoutError as exc:
            waited = time.monotonic() - started
            if timeout is None or waited < 0.99 * timeout:  # api_core says "timeout" when its polling calls fail
                last = getattr(exc.__cause__, "cause", None) or exc.__cause__
                raise ProviderError(f"{self.what}: asking Vertex AI how it goes failed for {waited:.0f} s"
                                    + (f" ({_first_line(last)})" if last else ""),
                                    hint="it may still be running: run the command again to pick it up") from None
            raise TimedOut(f"{self.what} still running after {timeout:.0f} s",
                           hint="run the command again to pick it up") from None
        except Exception as exc:
            raise self._client.translate(exc, self.what) from None
        return _dict(response)

    def metadata(self) -> dict:
        meta = self._op.metadata
        return _dict(meta) if meta is not None else {}


class VertexClient:
    """Thin calls on Vertex AI v1 and Cloud Storage; `log` gets a line per retry (stderr)."""

    def __init__(self, s: Settings, log: Callable[[str], None] = lambda _: None):
        self.settings, self.log = s, log
        self.credentials, adc_project = credentials(s)
        self.project = s.project or adc_project
        if not self.project:
            raise ConfigError("no Google Cloud project: vertex.project is not set and the credentials name none",
                              hint="set vertex.project (or export GOOGLE_CLOUD_PROJECT=…)")
        self.parent = f"projects/{self.project}/locations/{s.location}"
        if s.api_endpoint:
            endpoint = s.api_endpoint
            # The REST transport speaks plain http to a local fake; gRPC cannot.
            transport = "rest" if "://" in endpoint else None
        else:
            endpoint, transport = f"{s.location}-aiplatform.googleapis.com", None
        self._kwargs = {"client_options": {"api_endpoint": endpoint}, "credentials": self.credentials,
                        **({"transport": transport} if transport else {})}
        self._services: dict[str, Any] = {}
        self._local = threading.local()

    # -- plumbing ------------------------------------------------------------------------------
    def _service(self, name: str):
        if name not in self._services:
            self._services[name] = _Timed(getattr(v1, name)(**self._kwargs))
        return self._services[name]

    def _named(self, service: str, method: str, display_name: str, what: str) -> list[dict]:
        """Every resource a list method finds under this display name, newest first."""
        svc = self._service(service)
        request = {"parent": self.parent, "filter": f'display_name="{display_name}"'}
        found = self.call(lambda: [_dict(x) for x in getattr(svc, method)(request=request)],
                          f"listing {what} named {display_name}", idempotent=True)
        return sorted(found, key=lambda x: x.get("createTime", ""), reverse=True)

    def call(self, fn: Callable[[], Any], what: str, idempotent: bool = False) -> Any:
        """Run one SDK call, retrying 429/503 (and, for reads and deletes, other transient errors)."""
        retried = _RETRIED_IDEMPOTENT if idempotent else _RETRIED
        attempt = 0
        while True:
            try:
                return fn()
            except retried as exc:
                if attempt >= self.settings.retries:
                    raise self.translate(exc, what) from None
                delay = _retry_after(exc)
                if delay is None:
                    delay = min(8.0, RETRY_DELAY * 2 ** attempt) * (0.75 + random.random() / 2)
                attempt += 1
                self.log(f"Vertex AI: {what}: {_status(exc)}; retry {attempt}/{self.settings.retries} in {delay:.1f} s")
                time.sleep(delay)
            except ImgclsError:
                raise
            except Exception as exc:
                raise self.translate(exc, what) from None

    def translate(self, exc: Exception, what: str) -> Exception:
        """Our error for an SDK error: 401/403 AuthError, 400 DataError, the rest ProviderError."""
        if isinstance(exc, ImgclsError):
            return exc
        message = _message(exc)
        if isinstance(exc, (gexc.Unauthorized, gexc.Forbidden, auth_exc.RefreshError)):
            anon = f" ({ANONYMOUS_ENV} is set: calls are anonymous)" if self.settings.anonymous else ""
            return AuthError(f"Vertex AI refused {what}{anon}: {message}",
                             hint=f"check the credentials ({CREDENTIALS_HINT}) and that they may use Vertex AI and "
                                  f"Cloud Storage in project {self.project} (vertex.project; roles/aiplatform.user, "
                                  "roles/storage.objectAdmin on vertex.staging_bucket)")
        if isinstance(exc, gexc.BadRequest):
            return DataError(f"Vertex AI refused {what}: {message}")
        if isinstance(exc, gexc.NotFound):
            return Missing(f"{what}: not found: {message}")
        if isinstance(exc, (gexc.GoogleAPICallError, requests.RequestException, auth_exc.TransportError)):
            return ProviderError(f"Vertex AI failed {what}: {message}",
                                 hint="the service may be busy or unreachable; run the command again "
                                      "(the run resumes where it stopped)")
        return exc

    def _wait(self, op, what: str) -> Pending:
        return Pending(self, op, what)

    # -- datasets ------------------------------------------------------------------------------
    def create_dataset(self, body: dict) -> Pending:
        svc = self._service("DatasetServiceClient")
        op = self.call(lambda: svc.create_dataset(parent=self.parent, dataset=_msg(v1.Dataset, body)),
                       "creating the dataset")
        return self._wait(op, "creating the dataset")

    def import_data(self, dataset: str, config: dict) -> Pending:
        svc = self._service("DatasetServiceClient")
        request = _msg(v1.ImportDataRequest, {"name": dataset, "importConfigs": [config]})
        op = self.call(lambda: svc.import_data(request=request), "importing the images")
        return self._wait(op, "importing the images")

    def export_data(self, dataset: str, output_uri_prefix: str) -> Pending:
        """Write the dataset's annotation sets as JSON lines under the prefix (see source.py)."""
        svc = self._service("DatasetServiceClient")
        request = _msg(v1.ExportDataRequest, {"name": dataset, "exportConfig": {
            "gcsDestination": {"outputUriPrefix": output_uri_prefix}}})
        op = self.call(lambda: svc.export_data(request=request), "exporting the dataset")
        return self._wait(op, "exporting the dataset")

    def datasets_named(self, display_name: str) -> list[dict]:
        return self._named("DatasetServiceClient", "list_datasets", display_name, "datasets")

    def get_dataset(self, name: str) -> dict | None:
        svc = self._service("DatasetServiceClient")
        try:
            return self.call(lambda: _dict(svc.get_dataset(name=name)), "reading the dataset", idempotent=True)
        except Missing:
            return None

    def delete_dataset(self, name: str) -> bool:
        svc = self._service("DatasetServiceClient")
        return self._delete(lambda: svc.delete_dataset(name=name), f"deleting dataset {name}")

    # -- training pipelines ----------------------------------------------------------------------
    def create_pipeline(self, body: dict) -> dict:
        svc = self._service("PipelineServiceClient")
        return _dict(self.call(lambda: svc.create_training_pipeline(
            parent=self.parent, training_pipeline=_msg(v1.TrainingPipeline, body)), "starting training"))

    def get_pipeline(self, name: str) -> dict:
        svc = self._service("PipelineServiceClient")
        return _dict(self.call(lambda: svc.get_training_pipeline(name=name), "reading the training pipeline",
                               idempotent=True))

    def pipelines_named(self, display_name: str) -> list[dict]:
        return self._named("PipelineServiceClient", "list_training_pipelines", display_name,
                           "training pipelines")

    def cancel_pipeline(self, name: str) -> None:
        svc = self._service("PipelineServiceClient")
        try:
            self.call(lambda: svc.cancel_training_pipeline(name=name), "cancelling training", idempotent=True)
        except DataError:
            pass  # it ended meanwhile: FAILED_PRECONDITION

    def delete_pipeline(self, name: str) -> bool:
        svc = self._service("PipelineServiceClient")
        return self._delete(lambda: svc.delete_training_pipeline(name=name), f"deleting training pipeline {name}")

    # -- models --------------------------------------------------------------------------------
    def get_model(self, name: str) -> dict | None:
        svc = self._service("ModelServiceClient")
        try:
            return self.call(lambda: _dict(svc.get_model(name=name)), "reading the model", idempotent=True)
        except Missing:
            return None

    def delete_model(self, name: str) -> bool:
        svc = self._service("ModelServiceClient")
        return self._delete(lambda: svc.delete_model(name=name), f"deleting model {name}")

    def evaluations(self, model: str) -> list[dict]:
        svc = self._service("ModelServiceClient")
        return self.call(lambda: [_dict(e) for e in svc.list_model_evaluations(parent=model)],
                         "reading the model's evaluation", idempotent=True)

    def evaluation_slices(self, evaluation: str) -> list[dict]:
        svc = self._service("ModelServiceClient")
        return self.call(lambda: [_dict(e) for e in svc.list_model_evaluation_slices(parent=evaluation)],
                         "reading the evaluation's per-label slices", idempotent=True)

    def export_model(self, model: str, output_config: dict) -> Pending:
        svc = self._service("ModelServiceClient")
        request = _msg(v1.ExportModelRequest, {"name": model, "outputConfig": output_config})
        op = self.call(lambda: svc.export_model(request=request), "exporting the model")
        return self._wait(op, "exporting the model")

    # -- endpoints and prediction ------------------------------------------------------------------
    def create_endpoint(self, body: dict) -> Pending:
        svc = self._service("EndpointServiceClient")
        op = self.call(lambda: svc.create_endpoint(parent=self.parent, endpoint=_msg(v1.Endpoint, body)),
                       "creating the endpoint")
        return self._wait(op, "creating the endpoint")

    def get_endpoint(self, name: str) -> dict | None:
        svc = self._service("EndpointServiceClient")
        try:
            return self.call(lambda: _dict(svc.get_endpoint(name=name)), "reading the endpoint", idempotent=True)
        except Missing:
            return None

    def endpoints_named(self, display_name: str) -> list[dict]:
        return self._named("EndpointServiceClient", "list_endpoints", display_name, "endpoints")

    def deploy_model(self, endpoint: str, deployed_model: dict) -> Pending:
        svc = self._service("EndpointServiceClient")
        request = _msg(v1.DeployModelRequest, {"endpoint": endpoint, "deployedModel": deployed_model,
                                               "trafficSplit": {"0": 100}})
        op = self.call(lambda: svc.deploy_model(request=request), "deploying the model")
        return self._wait(op, "deploying the model")

    def undeploy_model(self, endpoint: str, deployed_model_id: str) -> None:
        svc = self._service("EndpointServiceClient")
        try:
            op = self.call(lambda: svc.undeploy_model(endpoint=endpoint, deployed_model_id=deployed_model_id),
                           f"undeploying {deployed_model_id}", idempotent=True)
        except Missing:
            return
        self._wait(op, f"undeploying {deployed_model_id}").result()

    def delete_endpoint(self, name: str) -> bool:
        svc = self._service("EndpointServiceClient")
        return self._delete(lambda: svc.delete_endpoint(name=name), f"deleting endpoint {name}")

    def predict(self, endpoint: str, instances: list[dict], parameters: dict) -> list[dict]:
        svc = self._service("PredictionServiceClient")
        request = _msg(v1.PredictRequest, {"endpoint": endpoint, "instances": instances, "parameters": parameters})
        answer = self.call(lambda: svc.predict(request=request), "predicting")
        return _dict(answer).get("predictions", [])

    # -- batch prediction ------------------------------------------------------------------------
    def create_batch_job(self, body: dict) -> dict:
        svc = self._service("JobServiceClient")
        return _dict(self.call(lambda: svc.create_batch_prediction_job(
            parent=self.parent, batch_prediction_job=_msg(v1.BatchPredictionJob, body)),
            "starting the batch prediction job"))

    def get_batch_job(self, name: str) -> dict:
        svc = self._service("JobServiceClient")
        return _dict(self.call(lambda: svc.get_batch_prediction_job(name=name), "reading the batch prediction job",
                               idempotent=True))

    def batch_jobs_named(self, display_name: str) -> list[dict]:
        return self._named("JobServiceClient", "list_batch_prediction_jobs", display_name,
                           "batch prediction jobs")

    def cancel_batch_job(self, name: str) -> None:
        svc = self._service("JobServiceClient")
        try:
            self.call(lambda: svc.cancel_batch_prediction_job(name=name), "cancelling the batch job", idempotent=True)
        except DataError:
            pass

    def delete_batch_job(self, name: str) -> bool:
        svc = self._service("JobServiceClient")
        return self._delete(lambda: svc.delete_batch_prediction_job(name=name), f"deleting batch job {name}")

    def _delete(self, start: Callable[[], Any], what: str) -> bool:
        """Delete and wait; False when it was already gone."""
        try:
            op = self.call(start, what, idempotent=True)
        except Missing:
            return False
        except DataError as exc:  # FAILED_PRECONDITION (still deployed, still running): not data at all
            raise ProviderError(exc.message, hint="see the message; `imgcls down` can be run again") from None
        self._wait(op, what).result()
        return True

    # -- Cloud Storage ---------------------------------------------------------------------------
    @property
    def gcs(self) -> storage.Client:
        # One client per thread: uploads run in parallel and a client's HTTP session is not shared safely.
        client = getattr(self._local, "gcs", None)
        if client is None:
            client = self._local.gcs = storage.Client(project=self.project, credentials=self.credentials)
        return client

    def gcs_call(self, fn: Callable[[], Any], what: str) -> Any:
        # google-cloud-storage retries by itself (GCS_RETRY, with a deadline); we only translate.
        try:
            return fn()
        except Exception as exc:
            raise self.translate(exc, what) from None

    def bucket_exists(self, bucket: str) -> bool:
        try:
            self.gcs_call(lambda: self.gcs.get_bucket(bucket, retry=GCS_RETRY, timeout=GCS_TIMEOUT),
                          f"reading bucket gs://{bucket} (vertex.staging_bucket)")
        except Missing:
            return False
        return True

    def list_names(self, bucket: str, prefix: str) -> set[str]:
        """Every object name under a prefix: one listing (paged), not a request per object."""
        return self.gcs_call(lambda: {b.name for b in self.gcs.list_blobs(bucket, prefix=prefix, retry=GCS_RETRY,
                                                                          timeout=GCS_TIMEOUT)},
                             f"listing gs://{bucket}/{prefix}")

    def upload_file(self, bucket: str, name: str, path: str, content_type: str) -> bool:
        """Create the object unless it exists (content-addressed: same name, same bytes). True if written."""
        blob = self.gcs.bucket(bucket).blob(name)
        try:
            blob.upload_from_filename(path, content_type=content_type, if_generation_match=0, retry=GCS_RETRY,
                                      timeout=GCS_TIMEOUT)
        except gexc.PreconditionFailed:
            return False  # another run put it there meanwhile (or our retried first attempt did)
        except Exception as exc:
            raise self.translate(exc, f"uploading {path} to gs://{bucket}/{name}") from None
        return True

    def upload_bytes(self, bucket: str, name: str, data: bytes, content_type: str) -> None:
        blob = self.gcs.bucket(bucket).blob(name)
        self.gcs_call(lambda: blob.upload_from_string(data, content_type=content_type, retry=GCS_RETRY,
                                                      timeout=GCS_TIMEOUT), f"writing gs://{bucket}/{name}")

    def download(self, bucket: str, name: str) -> bytes:
        blob = self.gcs.bucket(bucket).blob(name)
        return self.gcs_call(lambda: blob.download_as_bytes(retry=GCS_RETRY, timeout=GCS_TIMEOUT),
                             f"reading gs://{bucket}/{name}")

    def delete_object(self, bucket: str, name: str) -> bool:
        try:
            self.gcs_call(lambda: self.gcs.bucket(bucket).delete_blob(name, retry=GCS_RETRY, timeout=GCS_TIMEOUT),
                          f"deleting gs://{bucket}/{name}")
        except Missing:
            return False
        return True


class _Timed:
    """A v1 service client whose every call carries RPC_TIMEOUT unless it names its own timeout."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def timed(*args, **kwargs):
            kwargs.setdefault("timeout", RPC_TIMEOUT)
            return attr(*args, **kwargs)
        return timed


def _msg(cls, body: dict):
    """A proto-plus message from camelCase JSON."""
    return cls.wrap(json_format.ParseDict(body, cls()._pb))


def _dict(message) -> dict:
    pb = getattr(message, "_pb", message)
    return json_format.MessageToDict(pb)


def _retry_after(exc: Exception) -> float | None:
    """Seconds the service asked us to wait (Retry-After, REST transport only), at most a minute."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    try:
        value = float(headers.get("Retry-After")) if headers and headers.get("Retry-After") else None
    except (TypeError, ValueError):
        return None
    return None if value is None else min(max(value, 0.0), 60.0)


def _status(exc: Exception) -> str:
    code = getattr(exc, "code", None)
    return f"HTTP {int(code)}" if isinstance(code, int) else type(exc).__name__


def _message(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return _first_line(text)[:500]


def _first_line(value) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else ""

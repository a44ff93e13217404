"""The only module that imports azure-ai-ml, azure-identity and azure-storage-blob: builds the clients,
turns our plain job description into the SDK's AutoML job, makes the few REST calls the SDK has no
public method for (MLflow metrics, run-history errors, scoring) and translates every SDK error into ours.
No decisions about what to create, keep or wait for live here."""
from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from azure.ai.ml import Input, MLClient, Output, automl, sweep
from azure.ai.ml.automl import SearchSpace
from azure.ai.ml.constants import AssetTypes, BatchDeploymentOutputAction
from azure.ai.ml.entities import (
    AmlCompute,
    BatchEndpoint,
    Data,
    ManagedOnlineDeployment,
    ManagedOnlineEndpoint,
    Model,
    ModelBatchDeployment,
    ModelBatchDeploymentSettings,
)
from azure.ai.ml.exceptions import MlException
from azure.core import PipelineClient
from azure.core import exceptions as az_errors
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.pipeline import policies
from azure.core.rest import HttpRequest
from azure.identity import DefaultAzureCredential
from azure.storage.blob import ContainerClient, ContentSettings

from ...errors import AuthError, ConfigError, ImgclsError, ProviderError, TimedOut
from .jobspec import JobSpec
from .settings import CREDENTIAL_ENV, SOURCES, Settings, where

RETRIES = 3                                           # azure-core's retries per request
LRO_TIMEOUT = 2 * 3600.0                              # seconds we wait on one create/delete (pollers never stop)
SCORING_RETRY_METHODS = frozenset({"POST"})
ARM_SCOPE = "https://management.azure.com/.default"   # what azure-ai-ml and azureml-mlflow ask tokens for
_DISTRIBUTIONS = {"choice": sweep.Choice, "randint": sweep.Randint, "uniform": sweep.Uniform,
                  "loguniform": sweep.LogUniform, "normal": sweep.Normal, "lognormal": sweep.LogNormal,
                  "quniform": sweep.QUniform, "qloguniform": sweep.QLogUniform, "qnormal": sweep.QNormal,
                  "qlognormal": sweep.QLogNormal}
_POLICIES = {"bandit": sweep.BanditPolicy, "median_stopping": sweep.MedianStoppingPolicy,
             "truncation_selection": sweep.TruncationSelectionPolicy}
_announced: set[str] = set()                          # the seam is announced once per process
TRAINING_PARAMETERS = frozenset(inspect.signature(automl.ImageClassificationJob.set_training_parameters).parameters) - {
    "self"}


def make_credential(settings: Settings) -> tuple[Any, str]:
    """DefaultAzureCredential, or — only when IMGCLS_AZURE_CREDENTIAL names one — the test seam's."""
    if not settings.credential:
        return DefaultAzureCredential(exclude_interactive_browser_credential=True), "DefaultAzureCredential"
    module, _, attr = settings.credential.partition(":")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"{CREDENTIAL_ENV}={settings.credential!r} cannot be loaded ({type(exc).__name__}: {exc})",
                          hint="write module:attribute of a credential class, or unset it to use "
                               "DefaultAzureCredential") from None
    if settings.credential not in _announced:
        # straight to stderr, even under --json or --quiet: a substituted credential is never silent
        _announced.add(settings.credential)
        print(f"azureml: using the credential {settings.credential} from {CREDENTIAL_ENV}, not "
              "DefaultAzureCredential", file=sys.stderr, flush=True)
    return factory(), f"{settings.credential} (from {CREDENTIAL_ENV})"


class _SdkLog(logging.Handler):
    """The SDK's warnings go to `imgcls -v` instead of Python's last-resort stderr handler."""

    def __init__(self, sink: Callable[[str], None]):
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink(f"azure: {record.getMessage()}")


def _route_sdk_logs(debug: Callable[[str], None]) -> None:
    """azure-ai-ml prints INFO lines and progress dots to stderr through handlers of its own; under imgcls
    they would break progress bars and `--quiet`. Its warnings go to `imgcls -v` instead."""
    for name in ("azure", "azure.ai.ml", "azure.ai.ml._utils._endpoint_utils"):
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if isinstance(h, _SdkLog) or type(h) is logging.StreamHandler]:
            logger.removeHandler(handler)
        logger.addHandler(_SdkLog(debug))


class Client:
    def __init__(self, settings: Settings, debug: Callable[[str], None] = lambda _: None):
        settings.require()
        self.settings = settings
        _route_sdk_logs(debug)
        self.credential, self.credential_source = make_credential(settings)
        self.ml = MLClient(self.credential, settings.subscription_id, settings.resource_group, settings.workspace,
                           enable_telemetry=False)
        self._tracking: str | None = None
        self._datastores: dict[str | None, dict | None] = {}
        self._rest = PipelineClient("https://localhost", policies=_policies(
            policies.BearerTokenCredentialPolicy(self.credential, ARM_SCOPE)))
        self._plain = PipelineClient("https://localhost", policies=_policies(None))

    # -- the one place SDK errors become ours ---------------------------------------------------
    def call(self, what: str, fn: Callable, *args, setting: str | None = None, missing_ok: bool = False, **kwargs):
        """fn(*args, **kwargs) (azure-core has retried 429/5xx, honouring Retry-After); errors translated.

        missing_ok: a 404 returns None. setting: the config key a 400 points at (ConfigError)."""
        try:
            return fn(*args, **kwargs)
        except az_errors.ClientAuthenticationError as exc:  # a credential that cannot get a token, or a 401
            raise self._auth_error(exc) from None
        except az_errors.ResourceNotFoundError as exc:
            if missing_ok:
                return None
            raise self._not_found(what, exc) from None
        except az_errors.HttpResponseError as exc:
            raise self._translate(what, exc, setting) from None
        except (az_errors.ServiceRequestError, az_errors.ServiceResponseError) as exc:
            raise ProviderError(f"Azure ML {what}: cannot reach the service ({_scrub(_first_line(exc))})",
                                hint="check the network (and HTTPS_PROXY), then run the same command again: "
                                     "the run resumes where it stopped") from None
        except MlException as exc:                     # the SDK's own validation, before any request
            raise ConfigError(f"Azure ML {what}: {_scrub(_first_line(exc))}",
                              hint=f"check {setting or 'the azureml: section'}") from None

    def lro(self, what: str, begin: Callable, *args, setting: str | None = None, missing_ok: bool = False,
            **kwargs) -> None:
        """Start a long-running operation and wait for it. azure-ai-ml's pollers print progress dots to
        stdout from their thread; stdout is for results, so they go nowhere (main thread only)."""
        with contextlib.redirect_stdout(io.StringIO()):
            poller = self.call(what, begin, *args, setting=setting, missing_ok=missing_ok, **kwargs)
            if poller is not None:
                self.call(what, poller.result, setting=setting, missing_ok=missing_ok, timeout=LRO_TIMEOUT)
                if not poller.done():      # result(timeout) returns when the time is up, done or not
                    raise TimedOut(f"Azure ML {what}: still running after {LRO_TIMEOUT / 3600:.0f} h",
                                   hint="run the same command again: it picks the resource up where it is")

    def _auth_error(self, exc: az_errors.ClientAuthenticationError) -> AuthError:
        status = getattr(exc, "status_code", None)
        if status in (401, 403):
            code, message = _code_message(exc)
            return AuthError(f"Azure ML rejected the token of {self.credential_source} ({status} {code}: {message})",
                             hint="sign in again (`az login`) or renew the service principal's secret; the "
                                  f"identity needs access to workspace {self.settings.workspace}", status=status)
        tried = tried_sources(str(exc))
        listed = "; ".join(f"{name}: {reason}" for name, reason in tried) or _scrub(_first_line(exc))
        return AuthError(f"no Azure credential worked ({self.credential_source}). Tried: {listed}",
                         hint="sign in with `az login`, or export AZURE_CLIENT_ID, AZURE_TENANT_ID and "
                              "AZURE_CLIENT_SECRET for a service principal, or run where a managed identity is "
                              "assigned; then run the same command again (the run resumes)",
                         tried=[name for name, _ in tried] or list(SOURCES))

    def _not_found(self, what: str, exc: az_errors.ResourceNotFoundError) -> ImgclsError:
        code, message = _code_message(exc)
        if "workspaces/" in message and "not found" in message.lower():
            return ConfigError(f"Azure ML workspace {self.settings.workspace} not found in resource group "
                               f"{self.settings.resource_group} of subscription {self.settings.subscription_id}",
                               hint=f"check {where('workspace')}, {where('resource_group')} and "
                                    f"{where('subscription_id')}")
        return ProviderError(f"Azure ML {what}: {message} ({code})", status=404)

    def _translate(self, what: str, exc: az_errors.HttpResponseError, setting: str | None) -> ImgclsError:
        status = exc.status_code
        code, message = _code_message(exc)
        text = f"Azure ML {what}: {message}" + (f" ({code})" if code else f" ({status})")
        if status == 403:
            return AuthError(f"{text}: {self.credential_source} is not allowed to do this",
                             hint=f"give the identity a role on workspace {self.settings.workspace} (e.g. "
                                  "AzureML Data Scientist) and, for uploads, Storage Blob Data Contributor",
                             status=status)
        if status in (400, 409, 422) and setting:
            return ConfigError(text, hint=f"check {setting}", status=status, code=code)
        if status == 429 or (status or 0) >= 500:
            return ProviderError(f"{text}, after retries", hint="Azure is throttling or failing; run the same "
                                 "command again later: the run resumes where it stopped", status=status)
        return ProviderError(text, status=status, code=code)

    # -- workspace, MLflow and run history (REST with the credential's token) ------------------------
    def tracking_base(self) -> str:
        """https://HOST/mlflow/v1.0/subscriptions/…/workspaces/WS, from the workspace's mlflow_tracking_uri."""
        if self._tracking is None:
            ws = self.call("reading the workspace", self.ml.workspaces.get, self.settings.workspace)
            uri = ws.mlflow_tracking_uri or ""
            self._tracking = "https://" + uri.split("://", 1)[-1].split("?", 1)[0].rstrip("/")
        return self._tracking

    def _get_json(self, what: str, url: str, params: dict | None = None) -> dict | None:
        response = self.call(what, self._rest.send_request, HttpRequest("GET", url, params=params))
        if response.status_code == 404:
            return None
        if response.status_code in (401, 403):
            raise AuthError(f"Azure ML {what}: {response.status_code} for {self.credential_source}",
                            hint=f"the identity needs access to workspace {self.settings.workspace}")
        if response.status_code >= 400:
            raise ProviderError(f"Azure ML {what}: HTTP {response.status_code} {response.text()[:300]}")
        return response.json()

    def mlflow_run(self, run_id: str) -> dict | None:
        """MLflow's runs/get (what azureml-mlflow reads): {"info": …, "data": {"metrics": [...], …}}."""
        body = self._get_json("reading trial metrics", f"{self.tracking_base()}/api/2.0/mlflow/runs/get",
                              {"run_id": run_id})
        return (body or {}).get("run")

    def run_error(self, run_id: str) -> str | None:
        """The failure message run history keeps for a job (the ARM job resource carries none)."""
        base = self.tracking_base().replace("/mlflow/v1.0/", "/history/v1.0/", 1)
        details = self._get_json("reading the job's error", f"{base}/runs/{run_id}/details") or {}
        error = (details.get("error") or {}).get("error") or details.get("error") or {}
        return error.get("message") or None

    # -- blob storage -------------------------------------------------------------------------------
    def default_datastore(self) -> dict:
        return self.datastore(None)

    def datastore(self, name: str | None) -> dict | None:
        """A datastore (the workspace's default for None; None when there is no such store) and a credential
        for its container (its SAS or key when the datastore holds one, else the Azure AD credential). Read
        once per client."""
        if name in self._datastores:
            return self._datastores[name]
        what = "reading the default datastore" if name is None else f"reading datastore {name}"
        get = self.ml.datastores.get_default if name is None else (lambda **kw: self.ml.datastores.get(name, **kw))
        try:
            ds = self.call(what, get, include_secrets=True, missing_ok=name is not None)
        except AuthError as exc:               # no listSecrets permission: upload as the identity itself
            if exc.details.get("status") != 403:
                raise
            ds = self.call(what, get, missing_ok=name is not None)
        if ds is None:
            return None
        creds, blob_credential = getattr(ds, "credentials", None), self.credential
        if getattr(creds, "sas_token", None):
            blob_credential = AzureSasCredential(creds.sas_token.lstrip("?"))
        elif getattr(creds, "account_key", None):
            blob_credential = AzureNamedKeyCredential(ds.account_name, creds.account_key)
        self._datastores[name] = {"name": ds.name, "account": ds.account_name, "container": ds.container_name,
                                  "endpoint": getattr(ds, "endpoint", None) or "core.windows.net",
                                  "protocol": getattr(ds, "protocol", None) or "https", "credential": blob_credential}
        return self._datastores[name]

    def container(self, account_url: str, name: str, credential: Any) -> ContainerClient:
        return ContainerClient(account_url=account_url, container_name=name, credential=credential,
                               max_single_put_size=16 * 1024 * 1024)

    def blob_names(self, container: ContainerClient, prefix: str) -> set[str]:
        return set(self.call("listing blobs", lambda: [b.name for b in container.list_blobs(name_starts_with=prefix)]))

    def get_blob(self, container: ContainerClient, name: str) -> bytes:
        return self.call(f"downloading {name}", lambda: container.download_blob(name).readall())

    def put_blob(self, container: ContainerClient, name: str, data: bytes, content_type: str,
                 overwrite: bool = False) -> bool:
        """Upload; False when the blob was already there (and overwrite is off)."""
        def put() -> bool:
            try:
                container.upload_blob(name, data, overwrite=overwrite,
                                      content_settings=ContentSettings(content_type=content_type))
            except az_errors.ResourceExistsError:
                return False
            return True
        return self.call(f"uploading {name}", put)


    def download_blob(self, container: ContainerClient, name: str, path) -> int:
        """Stream a blob into `path` (written whole or not at all); its size in bytes."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                size = self.call(f"downloading {name}", lambda: container.download_blob(name).readinto(fh))
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        return size

    def delete_blobs(self, container: ContainerClient, names: list[str]) -> None:
        for name in names:
            self.call(f"deleting {name}", container.delete_blob, name, missing_ok=True)

    # -- data and models -----------------------------------------------------------------------------
    def register_data(self, name: str, version: str, path: str, description: str, tags: dict) -> str:
        data = Data(name=name, version=version, type=AssetTypes.MLTABLE, path=path, description=description,
                    tags=tags)
        return self.call(f"registering data asset {name}:{version}", self.ml.data.create_or_update, data).id

    def data_asset(self, name: str, version: str | None) -> dict | None:
        """A data asset's version (the latest one for None): {name, version, type, path}; None if absent."""
        def get():
            try:
                return self.ml.data.get(name, version=version) if version else self.ml.data.get(name, label="latest")
            except MlException as exc:
                # label="latest" turns a 404 into the SDK's own validation error; the 404 is in its chain
                if _caused_by(exc, az_errors.ResourceNotFoundError):
                    return None
                raise
        found = self.call(f"reading data asset {name}", get, missing_ok=True)
        return None if found is None else {"name": found.name, "version": found.version, "type": found.type,
                                           "path": found.path}

    def data_exists(self, name: str, version: str) -> bool:
        return self.call("reading the data asset", self.ml.data.get, name, version, missing_ok=True) is not None

    def archive_data(self, name: str, version: str) -> None:
        self.call(f"archiving data asset {name}:{version}", self.ml.data.archive, name, version, missing_ok=True)

    def register_model(self, name: str, version: str, path: str, description: str, tags: dict) -> str:
        model = Model(name=name, version=version, type=AssetTypes.MLFLOW_MODEL, path=path,
                      description=description, tags=tags)
        return self.call(f"registering model {name}:{version}", self.ml.models.create_or_update, model).id

    def model_id(self, name: str, version: str) -> str | None:
        found = self.call("reading the model", self.ml.models.get, name, version, missing_ok=True)
        return found.id if found else None

    def archive_model(self, name: str, version: str) -> None:
        self.call(f"archiving model {name}:{version}", self.ml.models.archive, name, version, missing_ok=True)

    # -- compute -------------------------------------------------------------------------------------
    def compute(self, name: str) -> dict | None:
        c = self.call(f"reading compute {name}", self.ml.compute.get, name, missing_ok=True)
        return None if c is None else {"name": c.name, "state": c.provisioning_state, "size": getattr(c, "size", None),
                                       "max_nodes": getattr(c, "max_instances", None), "tags": dict(c.tags or {})}

    def create_compute(self, name: str, size: str, max_nodes: int, tags: dict) -> None:
        cluster = AmlCompute(name=name, size=size, min_instances=0, max_instances=max_nodes,
                             idle_time_before_scale_down=120, tags=tags)
        self.lro(f"creating compute {name}", self.ml.compute.begin_create_or_update, cluster,
                 setting="azureml.vm_size / azureml.max_nodes")

    def delete_compute(self, name: str) -> None:
        self.lro(f"deleting compute {name}", self.ml.compute.begin_delete, name, missing_ok=True)

    # -- jobs ----------------------------------------------------------------------------------------
    def build_job(self, spec: JobSpec):
        factory = automl.image_classification_multilabel if spec.multilabel else automl.image_classification
        job = factory(compute=spec.compute, experiment_name=spec.experiment, target_column_name=spec.target_column,
                      training_data=Input(type=AssetTypes.MLTABLE, path=spec.training_data),
                      validation_data=(Input(type=AssetTypes.MLTABLE, path=spec.validation_data)
                                       if spec.validation_data else None),
                      primary_metric=spec.primary_metric, tags=dict(spec.tags))
        job.name = job.display_name = spec.name
        job.set_limits(timeout_minutes=spec.timeout_minutes, max_trials=spec.max_trials,
                       max_concurrent_trials=spec.max_concurrent_trials)
        unknown = sorted(set(spec.training_parameters) - TRAINING_PARAMETERS)
        unknown += sorted({k for sub in spec.search_space for k in sub} - TRAINING_PARAMETERS)
        if unknown:
            raise ConfigError(f"unknown AutoML image training parameter(s): {', '.join(unknown)} "
                              "(azureml.training_parameters / azureml.search_space)",
                              hint="known: " + ", ".join(sorted(TRAINING_PARAMETERS)))
        try:
            if spec.training_parameters:
                job.set_training_parameters(**spec.training_parameters)
            if spec.search_space:
                job.extend_search_space([SearchSpace(**{k: _DISTRIBUTIONS[kind](args) if kind == "choice"
                                                        else _DISTRIBUTIONS[kind](*args)
                                                        for k, (kind, args) in sub.items()})
                                         for sub in spec.search_space])
                policy = (_POLICIES[spec.early_termination[0]](**spec.early_termination[1])
                          if spec.early_termination else None)
                job.set_sweep(sampling_algorithm=spec.sampling_algorithm.capitalize(), early_termination=policy)
        except (TypeError, ValueError, MlException) as exc:
            raise ConfigError(f"the AutoML job cannot be built: {_first_line(exc)}",
                              hint="check azureml.training_parameters and azureml.search_space") from None
        return job

    def submit(self, job) -> dict:
        """Submit a job from build_job, under the name it carries."""
        return _job(self.call(f"submitting job {job.name}", self.ml.jobs.create_or_update, job,
                              setting="azureml.compute, azureml.training_parameters or azureml.search_space"))

    def job(self, name: str) -> dict | None:
        found = self.call(f"reading job {name}", self.ml.jobs.get, name, missing_ok=True)
        return None if found is None else _job(found)

    def cancel_job(self, name: str) -> None:
        self.lro(f"cancelling job {name}", self.ml.jobs.begin_cancel, name, missing_ok=True)

    # -- endpoints and deployments ---------------------------------------------------------------------
    def endpoint(self, name: str) -> dict | None:
        e = self.call(f"reading endpoint {name}", self.ml.online_endpoints.get, name, missing_ok=True)
        return None if e is None else {"name": e.name, "state": e.provisioning_state,
                                       "traffic": dict(e.traffic or {}), "scoring_uri": e.scoring_uri}

    def create_endpoint(self, name: str, description: str, tags: dict) -> None:
        endpoint = ManagedOnlineEndpoint(name=name, auth_mode="key", description=description, tags=tags)
        self.lro(f"creating endpoint {name}", self.ml.online_endpoints.begin_create_or_update, endpoint)

    def set_traffic(self, name: str, traffic: dict[str, int]) -> None:
        endpoint = self.call(f"reading endpoint {name}", self.ml.online_endpoints.get, name)
        endpoint.traffic = traffic
        self.lro(f"routing traffic of {name}", self.ml.online_endpoints.begin_create_or_update, endpoint)

    def delete_endpoint(self, name: str) -> None:
        self.lro(f"deleting endpoint {name}", self.ml.online_endpoints.begin_delete, name, missing_ok=True)

    def deployment(self, endpoint: str, name: str) -> dict | None:
        d = self.call(f"reading deployment {name}", self.ml.online_deployments.get, name, endpoint, missing_ok=True)
        return None if d is None else {"name": d.name, "state": d.provisioning_state, "model": d.model}

    def create_deployment(self, endpoint: str, name: str, model_id: str, instance_type: str, count: int) -> None:
        deployment = ManagedOnlineDeployment(name=name, endpoint_name=endpoint, model=model_id,
                                             instance_type=instance_type, instance_count=count)
        self.lro(f"creating deployment {name}", self.ml.online_deployments.begin_create_or_update, deployment,
                 setting="azureml.instance_type / azureml.instance_count")

    def delete_deployment(self, endpoint: str, name: str) -> None:
        self.lro(f"deleting deployment {name}", self.ml.online_deployments.begin_delete, name, endpoint,
                 missing_ok=True)

    # -- batch endpoints, their deployments and jobs ----------------------------------------------------
    def batch_endpoint(self, name: str) -> dict | None:
        e = self.call(f"reading batch endpoint {name}", self.ml.batch_endpoints.get, name, missing_ok=True)
        return None if e is None else {"name": e.name, "state": e.provisioning_state, "tags": dict(e.tags or {}),
                                       "scoring_uri": e.scoring_uri}

    def create_batch_endpoint(self, name: str, description: str, tags: dict) -> None:
        endpoint = BatchEndpoint(name=name, description=description, tags=tags)
        self.lro(f"creating batch endpoint {name}", self.ml.batch_endpoints.begin_create_or_update, endpoint)

    def delete_batch_endpoint(self, name: str) -> None:
        self.lro(f"deleting batch endpoint {name}", self.ml.batch_endpoints.begin_delete, name, missing_ok=True)

    def batch_deployment(self, endpoint: str, name: str) -> dict | None:
        d = self.call(f"reading batch deployment {name}", self.ml.batch_deployments.get, name, endpoint,
                      missing_ok=True)
        return None if d is None else {"name": d.name, "state": d.provisioning_state, "model": d.model}

    def create_batch_deployment(self, endpoint: str, name: str, model_id: str, compute: str, instance_count: int,
                                mini_batch_size: int, output_file: str) -> None:
        deployment = ModelBatchDeployment(
            name=name, endpoint_name=endpoint, model=model_id, compute=compute,
            settings=ModelBatchDeploymentSettings(instance_count=instance_count, mini_batch_size=mini_batch_size,
                                                  output_action=BatchDeploymentOutputAction.APPEND_ROW,
                                                  output_file_name=output_file))
        self.lro(f"creating batch deployment {name}", self.ml.batch_deployments.begin_create_or_update, deployment,
                 setting="azureml.compute / azureml.batch_instance_count")

    def delete_batch_deployment(self, endpoint: str, name: str) -> None:
        self.lro(f"deleting batch deployment {name}", self.ml.batch_deployments.begin_delete, name, endpoint,
                 missing_ok=True)

    def invoke_batch(self, endpoint: str, deployment: str, job_name: str, input_folder: str,
                     output_folder: str) -> dict:
        """Start a scoring job of the deployment over a datastore folder, under the name we chose; its
        output (the deployment's output file) goes to `output_folder`."""
        job = self.call(f"invoking batch endpoint {endpoint}", self.ml.batch_endpoints.invoke, endpoint,
                        deployment_name=deployment, job_name=job_name,
                        input=Input(type=AssetTypes.URI_FOLDER, path=input_folder),
                        outputs={"score": Output(type=AssetTypes.URI_FOLDER, path=output_folder)})
        return {"name": job.name, "status": job.status}

    def endpoint_key(self, name: str) -> str:
        return self.call(f"reading the keys of endpoint {name}", self.ml.online_endpoints.get_keys, name).primary_key

    def score(self, scoring_uri: str, key: str, deployment: str, body: dict) -> list:
        """POST the AutoML image body to the endpoint with its key; the answer's JSON list."""
        request = HttpRequest("POST", scoring_uri, json=body,
                              headers={"Authorization": f"Bearer {key}", "azureml-model-deployment": deployment})
        # Scoring changes nothing, so a throttled (429) or timed-out (408) POST is retried too: azure-core
        # retries POST only on 500/503/504 or when the answer carries Retry-After.
        response = self.call("scoring", self._plain.send_request, request, retry_on_methods=SCORING_RETRY_METHODS)
        if response.status_code in (401, 403):
            raise AuthError(f"the endpoint at {scoring_uri} refused its key ({response.status_code})",
                            hint="run the command again (the key is read afresh), or regenerate the keys")
        if response.status_code == 429:
            raise ProviderError(f"Azure ML scoring: the endpoint at {scoring_uri} is still throttling (HTTP 429) "
                                f"after {RETRIES} retries",
                                hint="send fewer requests at once and run again, or raise azureml.instance_count")
        if response.status_code >= 400:
            raise ProviderError(f"Azure ML scoring: HTTP {response.status_code} {response.text()[:300]}",
                                hint="see the deployment's logs in Azure ML studio")
        return response.json()


# -- helpers: SDK values -> plain values, error text ----------------------------------------------

def _policies(auth) -> list:
    chain = [policies.HeadersPolicy(), policies.UserAgentPolicy(base_user_agent="imgcls"), policies.ProxyPolicy(),
             policies.RetryPolicy(retry_total=RETRIES, retry_backoff_factor=0.8)]
    return chain + ([auth] if auth is not None else [])


def _job(job) -> dict:
    return {"name": job.name, "status": job.status, "tags": dict(job.tags or {}),
            "properties": dict(job.properties or {}), "studio_url": getattr(job, "studio_url", None)}


def _code_message(exc: az_errors.HttpResponseError) -> tuple[str | None, str]:
    err = getattr(exc, "error", None)
    code = getattr(err, "code", None) or getattr(exc, "error_code", None)
    message = getattr(err, "message", None) or getattr(exc, "reason", None) or _first_line(exc)
    return code, _scrub(str(message).strip())


def _caused_by(exc: BaseException, kind: type) -> bool:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _scrub(text: str) -> str:
    """No SAS signature or bearer token in anything we print."""
    text = re.sub(r"(?i)(sig=)[^&\s'\"]+", r"\1***", text)
    return re.sub(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+", r"\1***", text)


def tried_sources(message: str) -> list[tuple[str, str]]:
    """(credential, short reason) per line of a DefaultAzureCredential / ChainedTokenCredential failure."""
    tried = []
    for name, reason in re.findall(r"^\t(\w+): (.+)$", message, flags=re.MULTILINE):
        reason = re.sub(r"https?://\S+", "", reason)
        reason = re.sub(rf"^{name} authentication unavailable\.?\s*", "", reason).strip()
        reason = (re.split(r"(?<=[.!])\s", reason)[0].rstrip(".") or "unavailable")[:200]
        tried.append((name, _scrub(reason)))
    return tried

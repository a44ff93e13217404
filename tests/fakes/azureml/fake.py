"""FakeAzureML: one https port that plays the Azure ML workspace APIs, its blob storage and its scoring URIs.

Request routing, authentication, fault injection and the request log live here; each resource
module (workspace, jobs, endpoints, blob) registers its own routes.
"""
from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from azure.core.credentials import AccessToken
from typing_extensions import Self

from ..hooks import Hooks
from . import batch, blob, endpoints, jobs
from . import workspace as workspace_routes
from .http import Faults, LoggedRequest, Request, Response, Router, error, start_server
from .state import State, Workspace
from .tls import make_certificates


class FakeCredential:
    """Stands in for DefaultAzureCredential: any bearer token passes the fake's checks."""

    def __init__(self, token: str = "fake-token") -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, 4_102_444_800)  # year 2100: never refreshed mid-test

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        from azure.core.credentials import AccessTokenInfo
        return AccessTokenInfo(self.token, 4_102_444_800)

    def close(self) -> None:
        pass


class _ExpiredSecret:
    """EnvironmentCredential with a service principal whose client secret has expired: Microsoft Entra ID
    answers the token request with AADSTS7000222, which azure-identity raises as ClientAuthenticationError."""

    _credential_name = "EnvironmentCredential"      # how ChainedTokenCredential names it in its message

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        from azure.core.exceptions import ClientAuthenticationError
        raise ClientAuthenticationError(
            "Authentication failed: AADSTS7000222: The provided client secret keys for app "
            "'11111111-2222-3333-4444-555555555555' are expired. Visit the Azure portal to create new keys "
            "for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for "
            "added security: https://aka.ms/certCreds. Trace ID: 0 Correlation ID: 0 Timestamp: 2026-01-01 "
            "00:00:00Z")

    def close(self) -> None:
        pass


def ExpiredCredential() -> Any:
    """What DefaultAzureCredential raises when the environment's service principal secret has expired:
    the chain stops at EnvironmentCredential and lists it. No network involved."""
    from azure.identity import ChainedTokenCredential

    class DefaultAzureCredential(ChainedTokenCredential):   # the name its failure message starts with
        pass

    return DefaultAzureCredential(_ExpiredSecret())


class FakeAzureML:
    """with FakeAzureML() as fake: os.environ.update(fake.env()); MLClient(FakeCredential(), ...)

    job_seconds: how long a job stays NotStarted/Running before it trains and completes.
    lro_polls: how many status polls a create/delete reports InProgress before Succeeded.
    poll_seconds: the wait the fake asks LRO pollers for. Whole seconds go out as Retry-After, as
        the service sends them; fractions as retry-after-ms, which azure-core also honours - the
        generated clients parse Retry-After of a 202 as an int, so "0.1" there would break them,
        and "0" makes azure-core fall back to its own 5-30 s interval.
    trials: HyperDrive trials per AutoML job.
    """

    def __init__(self, subscription_id: str = "00000000-0000-0000-0000-000000000000",
                 resource_group: str = "rg", workspace: str = "ws", *, location: str = "eastus",
                 storage_account: str = "fakeimgclsstore", host: str = "127.0.0.1", port: int = 0,
                 job_seconds: float = 1.0, lro_polls: int = 1, poll_seconds: float = 1.0,
                 trials: int = 2) -> None:
        self.workspace = Workspace(subscription_id, resource_group, workspace, location, storage_account,
                                   container=f"azureml-blobstore-{subscription_id[:8]}")
        self.state = State()
        self.blobs = blob.BlobStore()
        for container in (self.workspace.container, jobs.ARTIFACT_CONTAINER):
            self.blobs.containers[container] = {}
        self.faults = Faults()
        self.hooks = Hooks()   # a test's code at a chosen request (e.g. SIGKILL the client there)
        self.requests: list[LoggedRequest] = []
        self.job_seconds = job_seconds
        self.lro_polls = lro_polls
        self.poll_seconds = poll_seconds
        self.trials = trials
        # seconds each scoring request takes to answer (or a function returning them, for jitter)
        self.prediction_latency: float | Callable[[], float] = 0.0
        self._failures: list[str] = []
        self._failures_lock = threading.Lock()
        self._host, self._port = host, port
        self._dir: str | None = None
        self._server: Any = None
        self.router = Router()
        for module in (workspace_routes, jobs, endpoints, batch):
            module.register(self.router)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeAzureML:
        self._dir = tempfile.mkdtemp(prefix="fake-azureml-")
        self.ca_file, cert_file, key_file = make_certificates(self._dir)
        self._server, _ = start_server(self._host, self._port, self.dispatch, cert_file, key_file)
        self.port = self._server.server_address[1]
        self.url = f"https://{self._host}:{self.port}"
        self.workspace.base_url = self.url
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests use ----------------------------------------------------------------------

    @property
    def blob_account_url(self) -> str:
        """account_url for azure.storage.blob clients: the account name rides in the path."""
        return f"{self.url}/{self.workspace.storage_account}"

    @property
    def storage_key(self) -> str:
        return blob.ACCOUNT_KEY

    def env(self, *, proxy: bool = True) -> dict[str, str]:
        """Variables that point azure-ai-ml at this fake. Set them before importing azure.ai.ml:
        the run-polling intervals are read once, at import time.

        proxy=True adds HTTPS_PROXY so the SDK's own uploads to https://{account}.blob.core.windows.net
        (local paths in Data/Input/Model) tunnel into the blob fake; NO_PROXY keeps the fake's own
        address direct."""
        env = {
            "AZUREML_DEV_URL_MFE": self.url,          # every workspace/management call
            "REQUESTS_CA_BUNDLE": self.ca_file,       # requests (azure-core's transport) trusts the fake
            "SSL_CERT_FILE": self.ca_file,            # ssl/urllib users do too
            "AZUREML_RUN_POLLING_INTERVAL_MIN": "1",  # jobs.stream polling (seconds, integers only)
            "AZUREML_RUN_POLLING_INTERVAL_MAX": "1",
            # MLClient() writes this into os.environ; listing it lets a test's monkeypatch put it back
            "AZUREML_CURRENT_CLOUD": "AzureCloud",
        }
        if proxy:
            env["HTTPS_PROXY"] = f"http://{self._host}:{self.port}"
            env["NO_PROXY"] = f"{self._host},localhost"
        return env

    def poll_headers(self) -> dict[str, str]:
        if float(self.poll_seconds).is_integer() and self.poll_seconds >= 1:
            return {"Retry-After": str(int(self.poll_seconds))}
        return {"retry-after-ms": str(max(1, int(self.poll_seconds * 1000)))}

    def credential(self) -> FakeCredential:
        return FakeCredential()

    def fail_next_job(self, reason: str = "Injected failure") -> None:
        """The next job created fails with this message instead of training."""
        with self._failures_lock:
            self._failures.append(reason)

    def take_job_failure(self) -> str | None:
        with self._failures_lock:
            return self._failures.pop(0) if self._failures else None

    # -- routing -------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Response | None:
        if self.hooks.fire("before", request.method, request.path):
            return None                                  # dropped: the connection closes unanswered
        response = self._dispatch(request)
        self.hooks.fire("after", request.method, request.path)
        try:
            body: Any = request.json() if request.headers.get("content-type", "").startswith(
                "application/json") else len(request.body)
        except ValueError:
            body = len(request.body)
        self.requests.append(LoggedRequest(request.method, request.path, request.query,
                                           response.status, body))
        return response

    def _dispatch(self, request: Request) -> Response:
        host = request.host.split(":")[0].lower()
        first = request.path.strip("/").split("/")[0]
        if host.endswith(blob.HOST_SUFFIX) or first == self.workspace.storage_account:
            return self.faults.take(request) or blob.handle(self, request)

        fault = self.faults.take(request)
        if fault:
            return fault
        if host == "azuremlschemasprod.azureedge.net":
            # DataOperations validates an mltable asset against this schema; any object passes this one
            return Response(200, {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"})
        if first == "endpoints":                           # scoring: checks its own key
            return endpoints.score(self, request)
        if first == "batch":                               # a batch endpoint's scoring URI: starts a job
            return batch.invoke(self, request)
        if first == "discovery":
            return workspace_routes.discovery(self, request)
        if not request.headers.get("authorization", "").lower().startswith("bearer "):
            # ARM's answer to an anonymous call, with the challenge header azure-core looks for
            return error(401, "AuthenticationFailed",
                         "Authentication failed. The 'Authorization' header is missing.",
                         headers={"WWW-Authenticate": 'Bearer authorization_uri='
                                  '"https://login.microsoftonline.com/common", error="invalid_token", '
                                  'error_description="The authentication failed because of missing '
                                  "'Authorization' header.\""})
        with self.state.lock:      # long-running operations the service has finished meanwhile
            now = time.monotonic()
            for op in list(self.state.operations.values()):
                op.settle(now)
        found = self.router.find(request.method, request.path)
        if not found:
            return error(404, "NoRoute", f"The fake has no route for {request.method} {request.path}.")
        handler, match = found
        groups = match.groupdict()
        if "ws" in groups and not self.workspace.matches(groups["sub"], groups["rg"], groups["ws"]):
            return error(404, "ResourceNotFound",
                         f"The Resource '{workspace_routes.PROVIDER}/workspaces/{groups['ws']}' under "
                         f"resource group '{groups['rg']}' was not found. For more details please go "
                         "to https://aka.ms/ARMResourceNotFoundFix")
        return handler(self, request, match)


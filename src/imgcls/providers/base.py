"""The provider interface: what every backend declares (Capabilities, Limits) and the steps it implements.

The base class runs the shared steps — validate against Limits, record in the ledger, poll with a
timeout, score the shared test split and compute our metrics locally — and calls a few vendor hooks.
"""
from __future__ import annotations

import functools
import importlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import ImgclsError, ProviderError, TimedOut, UnsupportedError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from pydantic import BaseModel

    from ..config import RunConfig
    from ..progress import Progress
    from ..runs import Run
    from .planning import Plan


class StillInUse(ProviderError):
    """`delete` cannot remove this resource while another one of the run lives in it (a project holding a
    model that `--keep model` keeps): `down` lists it as kept, still live in the ledger, not as failed."""


@dataclass(frozen=True)
class Capabilities:
    multiclass: bool = True
    multilabel: bool = True
    deploy: bool = True
    export: tuple[str, ...] = ()
    batch_predict: bool = False
    adopt: bool = False                        # `imgcls adopt` can take a model of it that imgcls did not train
    remote_uris: tuple[str, ...] = ()          # URI schemes it can reference without upload, e.g. ("gs",)
    credentials: str = ""                      # where it looks for credentials, for `imgcls providers`
    extra: str = ""                            # pip extra that installs its SDK
    notice: str = ""                           # one line a user must know (e.g. "deprecated")


@dataclass(frozen=True)
class Limits:
    min_images_per_label: int = 1
    max_labels: int | None = None
    max_images: int | None = None
    formats: tuple[str, ...] = ("jpeg", "png", "bmp", "gif", "webp", "tiff")
    max_file_bytes: int | None = None          # per training image
    downscales_large_files: bool = False       # True: bigger files are re-encoded client-side (warning only)
    min_side: int | None = None                # smallest accepted image side in pixels
    max_side: int | None = None
    max_predict_bytes: int | None = None       # one prediction request's payload
    max_batch_images: int | None = None        # per upload request
    max_label_length: int | None = None
    # Online scoring: requests in flight at once, and started per second (the vendor's documented quota).
    # predict.concurrency / predict.requests_per_second in the config override both.
    predict_concurrency: int = 1
    predict_requests_per_second: float | None = None


# -- results: plain values every layer hands on; the same JSON under --json ---------------------

@dataclass(frozen=True)
class DatasetRef:
    provider: str
    id: str
    images: int
    labels: list[str]
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TrainResult:
    provider: str
    model_id: str | None
    status: str                                 # "succeeded" | "running" | "failed"
    seconds: float | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation:
    provider: str
    model_id: str | None
    metrics: dict                               # ours, computed locally on the shared test split
    service_metrics: dict | None = None         # what the vendor reports, as it reports it
    gates: list[dict] = field(default_factory=list)
    report: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Deployment:
    provider: str
    endpoint: str                               # URL or resource name
    status: str
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Prediction:
    image: str
    labels: list[str]                           # at or above the threshold (multiclass: at most the top one)
    scores: dict[str, float]                    # label -> score, best first, top_k of them
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CredentialStatus:
    found: bool
    detail: str


# The hooks that talk to a service: what one of them raises that is not an imgcls error (an SDK's parse error
# on an empty 200, a KeyError on an answer missing a field) becomes a ProviderError naming the provider and
# the hook (exit 6, the run resumable), not "unexpected error" (exit 1).
SERVICE_HOOKS = ("upload", "start_training", "poll_training", "describe_training", "deploy_model", "score",
                 "delete", "find", "probe", "service_metrics", "export", "batch_predict", "adopt",
                 "ensure_scoring", "undeploy", "reconcile")


def _answers_checked(fn: Callable, hook: str) -> Callable:
    @functools.wraps(fn)
    def hook_call(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except ImgclsError:
            raise
        except Exception as exc:
            raise ProviderError(f"{self.name} {hook}: an answer imgcls could not use ({type(exc).__name__}: "
                                f"{str(exc)[:300]})",
                                hint="the service, or a proxy before it, answered unexpectedly: run the same "
                                     "command again (the run resumes); if it persists, -v shows where") from exc
    return hook_call


class Provider(ABC):
    """One backend. Subclasses set the class attributes and implement the hooks below."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.calls_a_service:
            for hook in SERVICE_HOOKS:
                if hook in cls.__dict__:
                    setattr(cls, hook, _answers_checked(cls.__dict__[hook], hook))

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    limits: ClassVar[Limits]
    poll_interval: ClassVar[float] = 5.0
    # predict sets this when the run is deployed; only providers that can also score offline read it, and
    # without `endpoint_required` (predict --endpoint) they score offline when the endpoint is not up
    prefer_endpoint: bool = False
    endpoint_required: bool = False
    # train --no-wait sets this: start the work and return; in-process engines start a worker instead
    background: bool = False
    # True: training reads the manifest's image files here (not an uploaded copy), so a resumed
    # training checks them against their hashes first
    trains_on_local_files: ClassVar[bool] = False
    # Kinds a run may create and other runs then use (a compute cluster): `down` hands such a resource
    # on to a run that still lists it as live instead of deleting it under that run
    shared_kinds: ClassVar[tuple[str, ...]] = ()
    # False for an engine in this process: what its hooks raise is a fault of ours, not a service's answer
    calls_a_service: ClassVar[bool] = True
    # True: a ledger entry alone locates the resource (a pid, a path), so `down` and `status` work on a run
    # whose saved config is gone; False: the config says where to look (a project, a region, a workspace),
    # and looking in the wrong place would take a live resource for gone
    ledger_locates: ClassVar[bool] = False
    # The pydantic model of the provider's own config section, named after the provider (`vertex:`); the
    # core config accepts the section only through it. Its module must not import the SDK.
    settings_model: ClassVar[type[BaseModel] | None] = None
    # Top-level modules of the SDK the provider needs (its extra): checked before the provider is used,
    # so a missing extra is named (`pip install 'imgcls[NAME]'`) instead of failing deep inside client.py.
    requires: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: RunConfig, run: Run, progress: Progress):
        self.config = config
        self.run = run
        self.progress = progress

    # -- hooks every provider implements ----------------------------------------------------
    @classmethod
    def check_credentials(cls, config: RunConfig | None) -> CredentialStatus:
        """Whether credentials are found, without calling the service."""
        return CredentialStatus(True, "none needed")

    @classmethod
    def check_settings(cls, config: RunConfig) -> None:
        """The provider's own settings checked offline (a bucket not named, no region): ConfigError for
        what would stop the run's first step, raised before a run folder is made. Never calls the service."""
        return None  # nothing to check: local, and providers whose settings all have working defaults

    @abstractmethod
    def upload(self, manifest: pd.DataFrame, labels: list[str]) -> DatasetRef:
        """Put the (validated) dataset where the service can train on it; record what it creates."""

    @abstractmethod
    def start_training(self, dataset: DatasetRef) -> dict:
        """Start training; record the operation in the ledger before returning its description."""

    @abstractmethod
    def poll_training(self, operation: dict) -> tuple[str, dict]:
        """One look at a training operation: ("running"|"succeeded"|"failed", details incl. model_id)."""

    @abstractmethod
    def deploy_model(self, model: TrainResult) -> Deployment:
        """Make the model answer predictions; record the endpoint."""

    @abstractmethod
    def score(self, images: list[bytes], names: list[str]) -> list[dict[str, float]]:
        """Label -> score for each image, through the deployed model (or the offline artifact)."""

    @abstractmethod
    def delete(self, resource: dict) -> str | None:
        """Delete one ledger resource; a resource already gone is not an error.

        Returns None, or the ledger status to record instead of "deleted" (e.g. "released": the run
        used it but did not create it, so it is left in place)."""

    # -- run-state hooks: reconcile, look without acting ----------------------------------------
    def find(self, entry: dict) -> dict | None:
        """A resource recorded as pending (its create call was made, or about to be, when the process
        died), looked up by the name imgcls chose (entry["name"]): {"id": …, other fields to record}
        if the service has it, None if nothing was created. A provider that records a kind with
        `run.intend` must answer for that kind here."""
        return None

    def unrecorded(self) -> list[dict]:
        """What of this run still lives though its ledger lost the record (a ledger rebuilt without a
        backup), found by the names imgcls gave it: entries {"kind", "id", …} for `doctor` to record
        again, so that `down` can take them down. Default: nothing can be found without a record."""
        return []

    def reconcile(self, kind: str, name: str | None = None) -> dict | None:
        """Before creating a `kind` again (a resumed run): its pending entries (named `name`, if given)
        settled with the service by `find`. Found ones become active and the last is returned; the
        others stay pending, so the create call that follows reuses their entry."""
        found = None
        for entry in self.run.pending(kind):
            if name is not None and entry.get("name") != name:
                continue
            there = self.find(entry)
            if there is not None:
                there = dict(there)
                found = self.run.record(kind, there.pop("id"), name=entry["name"], **there)
        return found

    def describe_training(self, operation: dict) -> tuple[str, dict]:
        """Like poll_training, but never acts (status only reads): "running", "succeeded", "failed" or
        "interrupted". Cloud polls only read, so they serve for both."""
        return self.poll_training(operation)

    def probe(self, resource: dict) -> str:
        """Whether a recorded resource still exists: "live", "gone", or "unknown" (not checked)."""
        return "unknown"

    # -- optional hooks ---------------------------------------------------------------------
    def service_metrics(self, model: TrainResult) -> dict | None:
        return None

    def export(self, model: TrainResult, dest: Path) -> list[Path]:
        raise UnsupportedError(f"the {self.name} provider cannot export models",
                               hint="see `imgcls providers` for which providers export")

    def batch_predict(self, model: TrainResult, uris: list[str]) -> dict[str, dict[str, float]]:
        """`predict --batch`: uri -> label -> score for each of the (distinct) uris, through the vendor's
        batch prediction; what it creates is recorded for `down`. Providers with
        `capabilities.batch_predict` implement it."""
        raise UnsupportedError(f"the {self.name} provider has no batch prediction",
                               hint="use online prediction: `imgcls predict` without --batch")

    def adopt(self, ref: str) -> TrainResult:
        """Take a model imgcls did not train (or the endpoint serving one), named by `ref` — what follows
        "<provider>:" in `imgcls adopt` — as this run's model: look it up, record each resource it is made
        of with ours=False (`down` releases them, never deletes them) and return it as a succeeded
        TrainResult. Its extra holds "adopted" (the reference), "serving" (True: it answers predictions
        as it is), "labels" (the model's, when the service names them, else None) and "multilabel"
        (True/False when the service says, else None). Scoring must then go through what was recorded."""
        raise UnsupportedError(f"the {self.name} provider cannot adopt a model it did not train",
                               hint="`imgcls providers --json` shows which providers can (capabilities.adopt)")

    def ensure_scoring(self, model: TrainResult) -> None:  # noqa: B027 - a hook that may do nothing
        """Called before evaluate scores the test split; cloud providers deploy if they must."""

    # -- cost and safety hooks: plan, pre-flight, what serves and how it comes down ---------------
    # Kinds of ledger entries that exist only to serve the deployment (an endpoint, a publication, a
    # server): `down --expired` takes these down and nothing else.
    serving_kinds: ClassVar[tuple[str, ...]] = ()
    # deploy sets this (aware datetime) when deploy.ttl is given; a provider that can make the endpoint
    # stop itself at that time (local) reads it
    expires_at: Any = None

    # A module with plan(config) -> Plan and, optionally, preflight(config) -> list[str]: the provider's
    # prices and quota checks, imported only by `imgcls plan` and the cost caps.
    planner: str | None = None

    @classmethod
    def plan(cls, config: RunConfig) -> Plan:
        """What `config` would create and use, the training budget and the dollar estimate — offline:
        no call to the service and nothing created. From the provider's `planner` module, if it has one."""
        if cls.planner:
            return importlib.import_module(cls.planner).plan(config)
        from .planning import Plan, unknown
        why = f"the {cls.name} provider ships no price table"
        return Plan(cls.name, None, [], {"amount": None, "unit": None, "note": why}, unknown(why), unknown(why))

    @classmethod
    def preflight(cls, config: RunConfig) -> list[str]:
        """Read-only checks against the service, run by `plan` when credentials are found (quotas, a
        cluster's node limit, a bucket that must exist): warnings, never changes."""
        check = getattr(importlib.import_module(cls.planner), "preflight", None) if cls.planner else None
        return check(config) if check else []

    def serving_resources(self) -> list[dict]:
        """The live ledger entries that serve the run's deployment."""
        return [r for r in self.run.live() if r["kind"] in self.serving_kinds]

    def deploy_made(self, before: list[dict]) -> list[dict]:
        """What the deploy step made since the ledger's resources were `before`: new live entries. A
        provider whose deploy changes an entry it did not create (aws starts a trained model) adds it."""
        from ..runs import same_entry
        return [r for r in self.run.live() if not any(same_entry(r, b) for b in before)]

    def undeploy(self, resource: dict) -> str:
        """Take one serving (or deploy-made) entry down and record it; returns what became of it
        ("deleted", "stopped", "gone"…). Deleting is the default; a provider whose serving is a state of
        something else (aws: a started model) overrides this to stop it instead."""
        note = self.delete(resource) or "deleted"
        self.run.mark_deleted(resource, note)
        return note

    # -- shared steps -----------------------------------------------------------------------
    def wait(self, look: Callable[[], tuple[str, dict]], what: str, timeout: float | None,
             resume_hint: str) -> tuple[str, dict]:
        """Poll `look` until it is no longer running, or raise TimedOut (the run stays resumable)."""
        start = time.monotonic()
        interval = min(self.poll_interval, 1.0)
        while True:
            state, details = look()
            if state != "running":
                return state, details
            elapsed = time.monotonic() - start
            if timeout is not None and elapsed >= timeout:
                raise TimedOut(f"{what} still running after {elapsed:.0f} s", hint=resume_hint)
            self.progress.status(f"{what}: {details.get('status', 'running')} ({elapsed:.0f} s)")
            sleep = interval if timeout is None else min(interval, max(0.05, timeout - elapsed))
            time.sleep(sleep)
            interval = min(interval * 1.5, self.poll_interval)

    def scoring_batch(self) -> int:
        """Images per score() call: a cloud provider's images per request, so that score_all's
        concurrency is the number of requests in flight."""
        return 16

    def scoring_concurrency(self) -> tuple[int, float | None]:
        """(score() calls in flight, request starts per second): the config's, else the provider's Limits."""
        predict = self.config.predict
        return (predict.concurrency or self.limits.predict_concurrency,
                predict.requests_per_second or self.limits.predict_requests_per_second)

    def pace(self) -> None:
        """Called by a provider before each scoring request: waits for its turn under the rate limit."""
        pacer = getattr(self, "_pacer", None)
        if pacer is not None:
            pacer.wait()

    def score_all(self, images: list[bytes], names: list[str], labels: list[str],
                  batch: int | None = None) -> np.ndarray:
        """Scores as an (n, L) matrix in `labels` order; a label the model never returned scores 0.

        Chunks of `scoring_batch()` images are scored by up to `scoring_concurrency()` threads at once;
        the rows keep the input order whatever order the answers arrive in."""
        import numpy as np

        from .scoring import Pacer, in_order

        batch = batch or self.scoring_batch()
        workers, rate = self.scoring_concurrency()
        self._pacer = Pacer(rate)
        out = np.zeros((len(images), len(labels)), dtype=np.float64)
        index = {l: i for i, l in enumerate(labels)}
        starts = range(0, len(images), batch)
        done = 0
        for k, chunk in in_order(lambda k: self.score(images[starts[k]:starts[k] + batch],
                                                      names[starts[k]:starts[k] + batch]), len(starts), workers):
            sent = len(images[starts[k]:starts[k] + batch])
            if len(chunk) != sent:
                raise ProviderError(f"{self.name} returned {len(chunk)} predictions for {sent} images")
            for row, scores in enumerate(chunk, starts[k]):
                for label, s in scores.items():
                    if label in index:
                        out[row, index[label]] = float(s)
            done += sent
            self.progress.advance("scoring", done, len(images))
        return out


def as_dict(result: Any) -> dict:
    from ..runs import to_jsonable
    return to_jsonable(result)

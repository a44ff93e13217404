"""The `local` provider: our CPU engine behind the common interface — train, ONNX export, HTTP endpoint.

Training runs in this process (Ctrl-C keeps a checkpoint; the next `train --run` resumes it) or, with
--no-wait, in a background worker whose status file the ledger points at.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from ...errors import DataError, ProviderError, UsageError
from ...runs import write_json
from ..base import Capabilities, CredentialStatus, DatasetRef, Deployment, Limits, Provider, TrainResult
from . import process
from .client import EndpointClient
from .client import healthy as _healthy
from .settings import LocalConfig

BATCH_CHUNK = 256       # images `predict --batch` reads and scores at a time
DEPLOY_LOCK_SECONDS = 120  # a deploy holds the run's deploy lock until its server answers (60 s at most)


class LocalProvider(Provider):
    name = "local"
    settings_model = LocalConfig
    requires = ("onnxruntime", "PIL")
    capabilities = Capabilities(multiclass=True, multilabel=True, deploy=True, export=("onnx",),
                                batch_predict=True, credentials="none needed", extra="local")
    limits = Limits(min_images_per_label=2, formats=("jpeg", "png", "bmp", "gif", "webp", "tiff"),
                    max_file_bytes=50_000_000, max_predict_bytes=8 * 1024 * 1024)
    poll_interval = 1.0
    trains_on_local_files = True
    serving_kinds = ("server",)
    ledger_locates = True
    calls_a_service = False
    planner = "imgcls.providers.local.plan"

    @classmethod
    def check_credentials(cls, config) -> CredentialStatus:
        return CredentialStatus(True, "none needed")

    # -- paths --------------------------------------------------------------------------------
    @property
    def workdir(self) -> Path:
        return self.run.file("work")

    @property
    def artifact_dir(self) -> Path:
        return self.run.file("artifacts", "model")

    @property
    def cache_dir(self) -> Path:
        env = os.environ.get("IMGCLS_CACHE")
        return Path(env) if env else self.run.path.parent.parent / "cache"

    # -- dataset ------------------------------------------------------------------------------
    def upload(self, manifest, labels) -> DatasetRef:
        # Nothing to upload: the images stay where they are; the manifest in the run is the dataset.
        digest = hashlib.sha256("\n".join(sorted(f"{s}:{sp}" for s, sp in zip(manifest["sha256"], manifest["split"])))
                                .encode()).hexdigest()[:16]
        return DatasetRef("local", f"manifest-{digest}", int(len(manifest)), labels,
                          extra={"manifest": str(self.run.file("manifest.jsonl"))})

    # -- training -----------------------------------------------------------------------------
    def start_training(self, dataset: DatasetRef) -> dict:
        op_id = f"{self.run.id}-train"
        self.run.file("work", "status.json").unlink(missing_ok=True)
        if self.background:
            return self._start_worker(op_id)
        return self.run.record_operation("train", op_id, mode="in-process")

    def _start_worker(self, op_id: str) -> dict:
        log = self.run.file("train.log")
        name = f"train:{self.run.id}"
        self.run.intend("process", name, role="training", log=str(log))
        argv = [sys.executable, "-m", "imgcls.providers.local.worker", str(self.run.path)]
        with open(log, "ab") as fh:
            proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        who = process.identity(proc.pid, argv)
        self.run.record("process", f"pid:{proc.pid}", name=name, role="training", log=str(log), **who)
        return self.run.record_operation("train", op_id, mode="worker", log=str(log), **who)

    def poll_training(self, operation: dict) -> tuple[str, dict]:
        state, details = self.describe_training(operation)
        if state == "interrupted":
            state, details = self.train_here()
        if details.get("trainer_pid") and not getattr(self, "_told_waiting", False):
            self._told_waiting = True  # once, also where no status line is drawn (CI logs)
            self.progress.log(f"run {self.run.id}: {details['status']}")
        return state, details

    def describe_training(self, operation: dict) -> tuple[str, dict]:
        """Read-only: the worker's status file and whether the worker still runs; never trains."""
        status_file = self.run.file("work", "status.json")
        if operation.get("pid") and operation.get("pid") != os.getpid() and process.matches(operation):
            return "running", _read_json(status_file) or {"status": "training in the background"}
        elsewhere = self._training_elsewhere()
        if elsewhere:
            return "running", elsewhere
        done = _read_json(status_file) or {}
        if done.get("state") == "failed":
            return "failed", done
        if done.get("state") == "succeeded" and self.artifact_dir.joinpath("model.onnx").exists():
            return "succeeded", done
        return "interrupted", {"status": "interrupted: no training process runs and no model was written; "
                                         f"`imgcls train --run {self.run.id}` resumes from the last checkpoint"}

    def train_here(self) -> tuple[str, dict]:
        """Train (or resume) in this process, export to ONNX, write the status file; ("running", …)
        when another process holds the run's training lock (then the caller waits for that one)."""
        from filelock import FileLock, Timeout

        path = self._training_lock_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            return "running", self._training_elsewhere() or {"status": "training in another imgcls process"}
        try:
            path.with_suffix(".pid").write_text(f"{os.getpid()}\n")
            return self._train_locked()
        finally:
            lock.release()

    def _training_lock_path(self) -> Path:
        """Held by the one process that trains the run: a second `imgcls train` (another CI job, a second
        terminal) waits for it instead of training the same checkpoint alongside it."""
        return self.run.file("work", ".training.lock")

    def _training_elsewhere(self) -> dict | None:
        """The status while another process holds the training lock; None when nobody does."""
        from filelock import FileLock, Timeout

        path = self._training_lock_path()
        if not path.exists():  # never trained here: nobody holds it (and status makes no folder)
            return None
        try:
            with FileLock(str(path), timeout=0):
                return None
        except Timeout:
            pid = path.with_suffix(".pid").read_text().strip() if path.with_suffix(".pid").exists() else "?"
            return {"status": f"training in another imgcls process (pid {pid}); waiting for it to finish",
                    "trainer_pid": pid}

    def _train_locked(self) -> tuple[str, dict]:
        from ...data import manifest as manifest_mod
        from . import export, train

        df = manifest_mod.read(self.run.file("manifest.jsonl"))
        labels = self.run.step("import")["labels"]
        items = {s: [(u, h, list(l)) for u, h, l, sp in zip(df["uri"], df["sha256"], df["labels"], df["split"])
                     if sp == s] for s in ("train", "validation")}
        preset = self.config.train.preset
        n_train, n_val = len(items["train"]), len(items["validation"])
        if preset == "quick":
            split = f"{n_train + n_val} images (train + validation, {train.CV_FOLDS}-fold cross-validated)"
        else:
            val = f"{n_val} images" if n_val else "a different 10% of train for each, carved by content hash"
            split = (f"{n_train} images, up to {train.BEST['members']} fine-tunings (as the budget allows) "
                     f"averaged into one model (validation: {val})")
        self.progress.log(f"training '{preset}' on {split}, budget {self.config.train.budget_minutes:g} min")
        started = time.monotonic()
        info = train.train(items["train"], items["validation"], labels, multilabel=self.config.multilabel,
                           preset=preset, budget_minutes=self.config.train.budget_minutes,
                           workdir=self.workdir, cache_dir=self.cache_dir, seed=self.config.split.seed,
                           progress=self.progress)
        export.export_onnx(self.workdir, self.artifact_dir, labels, self.config.multilabel)
        details = {"state": "succeeded", "model_id": str(self.artifact_dir),
                   "seconds": round(info.get("seconds", time.monotonic() - started), 1), **info}
        write_json(self.run.file("work", "status.json"), details)
        return "succeeded", details

    # -- deploy -------------------------------------------------------------------------------
    def deploy_model(self, model: TrainResult) -> Deployment:
        """The run's one server: a live one is reused. Two `deploy --detach` at once (two CI jobs) take
        turns under the run's deploy lock, so the second finds the first's server instead of starting one."""
        from filelock import FileLock, Timeout

        self._require_model()
        lock = FileLock(str(self.run.file(".deploy.lock")), timeout=DEPLOY_LOCK_SECONDS)
        try:
            lock.acquire()
        except Timeout:
            raise ProviderError(f"another imgcls deploy of run {self.run.id} held its lock for "
                                f"{DEPLOY_LOCK_SECONDS} s", hint=f"see `imgcls status --run {self.run.id}`; "
                                                                 "run deploy again once it is done") from None
        try:
            deployed = self._deploy_locked()
        finally:
            lock.release()
        return deployed if isinstance(deployed, Deployment) else deployed()  # a foreground server: not locked

    def _deploy_locked(self):
        """A Deployment, or for a foreground server the call that serves (made once the lock is let go)."""
        dep = self.config.deploy
        for pending in self.run.pending("server"):   # a kill between starting a server and recording it
            found = self.find(pending)
            if found is None:
                self.run.mark_deleted(pending, "abandoned")
            else:
                found = dict(found)
                self.run.record("server", found.pop("id"), name=pending["name"], **found)
        running = self._live_server()
        if running:
            self._keep_expiry_of(running)
            return Deployment("local", running["url"], "serving", extra={"pid": running["pid"]})
        port = dep.port or _free_port(dep.host)
        if not _port_free(dep.host, port):
            raise UsageError(f"port {port} on {dep.host} is in use",
                             hint="pass --port N (or deploy.port in the config), or stop what uses it")
        url = f"http://{dep.host}:{port}"
        if not dep.detach:
            return lambda: self._serve_foreground(dep.host, port, url, dep.limits)
        log = self.run.file("serve.log")
        name = f"serve:{port}"
        self.run.intend("server", name, url=url, port=port, log=str(log))
        limits = [arg for key, value in dep.limits.model_dump().items()
                  for arg in (f"--{key.replace('_', '-')}", str(value))]
        argv = [sys.executable, "-m", "imgcls.providers.local.serve", str(self.artifact_dir),
                "--host", dep.host, "--port", str(port), *limits]
        if self.expires_at is not None:
            from ...clock import stamp
            argv += ["--expires-at", stamp(self.expires_at)]
        with open(log, "ab") as fh:
            proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        self.run.record("server", f"pid:{proc.pid}", name=name, url=url, port=port, log=str(log),
                        **process.identity(proc.pid, argv))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ProviderError(f"the model server exited with code {proc.returncode}",
                                    hint=f"see {log}")
            if _healthy(url):
                return Deployment("local", url, "serving", extra={"pid": proc.pid, "log": str(log)})
            time.sleep(0.2)
        raise ProviderError(f"the model server did not answer {url}/health within 60 s", hint=f"see {log}")

    def _keep_expiry_of(self, running: dict) -> None:
        """A reused server keeps the expiry it was started with (its own timer stops it, `--expires-at`
        on its command line): this deploy's ttl cannot move it, so say so and record the one that holds."""
        from ...clock import parse_time, stamp
        started = _option(running.get("cmdline") or [], "--expires-at")
        holds = parse_time(started) if started else None
        wanted = getattr(self, "expires_at", None)
        if holds != wanted:
            now = f"expires at {stamp(holds)}" if holds else "has no expiry"
            self.progress.warn(f"the server already running for run {self.run.id} {now} and keeps it; "
                               f"`imgcls down --run {self.run.id}` then deploy again to change it")
        self.expires_at = holds

    def _serve_foreground(self, host: str, port: int, url: str, limits) -> Deployment:
        from . import serve
        self.run.record("server", f"pid:{os.getpid()}", url=url, port=port, foreground=True,
                        **process.identity(os.getpid()))
        self.progress.log(f"serving {url} (POST /predict, GET /health) — Ctrl-C stops")
        res = self.run.resource("server")
        try:
            serve.serve(self.artifact_dir, host, port, expires_at=self.expires_at, limits=limits)
        except KeyboardInterrupt:
            pass
        finally:
            self.run.mark_deleted(res, "stopped")
        return Deployment("local", url, "stopped")

    def _live_server(self) -> dict | None:
        for res in self.run.resources("server"):
            if process.matches(res) and _healthy(res["url"]):
                return res
        return None

    # -- scoring ------------------------------------------------------------------------------
    def score(self, images: list[bytes], names: list[str]) -> list[dict[str, float]]:
        if self.prefer_endpoint:
            server = self._live_server()
            if server is not None:
                return self._score_http(server["url"], images, names)
            if self.endpoint_required:
                raise ProviderError("the run's model server is not running",
                                    hint=f"`imgcls deploy --detach --run {self.run.id}` starts it")
            self.progress.warn("the run's model server is not running: scoring with its exported model here")
            self.prefer_endpoint = False  # said once, for every chunk after this one too
        return self._score_offline(images, names)

    def batch_predict(self, model: TrainResult, uris: list[str]) -> dict[str, dict[str, float]]:
        """In-process over the exported model, as offline `predict` scores; images are read a chunk at a
        time, so a large folder never sits in memory whole."""
        from ...data.inputs import read_image
        out: dict[str, dict[str, float]] = {}
        for start in range(0, len(uris), BATCH_CHUNK):
            chunk = uris[start:start + BATCH_CHUNK]
            out.update(zip(chunk, self._score_offline([read_image(u) for u in chunk], chunk)))
            self.progress.advance("scoring", len(out), len(uris))
        return out

    def _score_offline(self, images, names):
        from .predict import OnnxClassifier
        self._require_model()
        if getattr(self, "_clf", None) is None:
            self._clf = OnnxClassifier(self.artifact_dir)
        try:
            probs = self._clf.predict_images(images, batch_size=self.config.local.batch_size,
                                             tta=self.config.local.tta)
        except DataError as exc:
            index = exc.details.get("index")
            if index is None or not 0 <= index < len(names):
                raise
            raise DataError(f"{names[index]} {exc.message.removeprefix(f'image #{index} ')}",
                            hint="leave it out of the inputs, or replace it with a readable JPEG/PNG/WebP/BMP/GIF/TIFF",
                            path=names[index]) from None
        return [dict(zip(self._clf.labels, map(float, row))) for row in probs]

    def _score_http(self, url, images, names):
        if url not in getattr(self, "_clients", {}):
            self._clients = {**getattr(self, "_clients", {}), url: EndpointClient(url)}
        return self._clients[url].score(images, names)

    # -- teardown and export ------------------------------------------------------------------
    def delete(self, resource: dict) -> str | None:
        if resource["kind"] == "server" and resource.get("pid") == os.getpid():  # served by this very process
            from .serve import stop_in_process
            return None if stop_in_process(resource["port"]) else "gone"
        if resource["kind"] in ("server", "process"):
            return None if process.stop(resource) else "gone"
        return None

    def find(self, entry: dict) -> dict | None:
        """A server or worker whose pid a kill kept out of the ledger, found by its command line."""
        if entry["kind"] == "server":
            found = process.find("imgcls.providers.local.serve", str(self.artifact_dir), "--port", str(entry["port"]))
        elif entry["kind"] == "process":
            found = process.find("imgcls.providers.local.worker", str(self.run.path))
        else:
            return None
        return None if found is None else {"id": f"pid:{found['pid']}", **found}

    def unrecorded(self) -> list[dict]:
        out = []
        server = process.find("imgcls.providers.local.serve", str(self.artifact_dir))
        if server is not None:
            host, port = (_option(server["cmdline"], flag) for flag in ("--host", "--port"))
            if port:
                out.append({"kind": "server", "id": f"pid:{server['pid']}", "name": f"serve:{port}", "port": int(port),
                            "url": f"http://{host or '127.0.0.1'}:{port}", **server})
        worker = process.find("imgcls.providers.local.worker", str(self.run.path))
        if worker is not None:
            out.append({"kind": "process", "id": f"pid:{worker['pid']}", "name": f"train:{self.run.id}",
                        "role": "training", **worker})
        return out

    def probe(self, resource: dict) -> str:
        if resource["kind"] == "server":
            return "live" if process.matches(resource) and _healthy(resource["url"]) else "gone"
        if resource["kind"] == "process":
            return "live" if process.matches(resource) else "gone"
        return "unknown"

    def export(self, model: TrainResult, dest: Path) -> list[Path]:
        self._require_model()
        dest = Path(dest)
        shutil.copytree(self.artifact_dir, dest, dirs_exist_ok=True)
        return sorted(dest.iterdir())

    def _require_model(self) -> None:
        if not self.artifact_dir.joinpath("model.onnx").exists():
            raise UsageError(f"run {self.run.id} has no exported model", hint=f"`imgcls train --run {self.run.id}`")


def _option(argv: list[str], flag: str) -> str | None:
    """The value after `flag` in a command line we started (`--port 8080`), or None."""
    return argv[argv.index(flag) + 1] if flag in argv[:-1] else None


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False

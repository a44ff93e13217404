"""The azureml provider against the fake Azure ML workspace, through azure-ai-ml / azure-identity /
azure-storage-blob: the repo's configs end to end by CLI and `down`, missing and expired credentials,
a job that fails in the cloud, --timeout and resume, an interrupted submission, what the job spec
decides, and golden files of every body we send."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("azure.ai.ml")

from imgcls import api
from imgcls.errors import AuthError, ConfigError, ProviderError
from imgcls.providers.azureml import jobspec, naming
from imgcls.runs import Run
from tests.conftest import assert_golden, make_dataset
from tests.contract.harness_azureml import RG, SUB, WS, leftovers
from tests.fakes.azureml import FakeAzureML

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "azureml.yaml"
GOLDEN = REPO / "tests" / "golden" / "azureml"
SEAM = "tests.fakes.azureml:FakeCredential"
# The CLI subprocesses import this checkout's imgcls (src/) and its tests package (the fake's credential).
PYTHONPATH = os.pathsep.join([str(REPO / "src"), str(REPO)])


@pytest.fixture
def fake():
    with FakeAzureML(SUB, RG, WS, job_seconds=0.3, lro_polls=1, poll_seconds=0.05) as f:
        yield f


@pytest.fixture
def data(tmp_path) -> Path:
    return make_dataset(tmp_path / "data", {"red": 12, "green": 12, "blue": 12}, size=(96, 72))


@pytest.fixture
def inproc(fake, monkeypatch):
    """This process pointed at the fake, as the CLI tests' environment is."""
    for key, value in {**fake.env(), "IMGCLS_AZURE_CREDENTIAL": SEAM, "AZURE_SUBSCRIPTION_ID": SUB,
                       "AZURE_RESOURCE_GROUP": RG, "AZUREML_WORKSPACE": WS}.items():
        monkeypatch.setenv(key, value)
    return fake


def cli_env(fake, tmp_path, credential: str | None = SEAM) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AZURE_", "AZUREML_", "MSI_", "IDENTITY_", "IMGCLS_AZURE"))}
    env.update(fake.env(), PYTHONPATH=PYTHONPATH, HOME=str(tmp_path / "home"), PYTHONWARNINGS="ignore",
               AZURE_SUBSCRIPTION_ID=SUB, AZURE_RESOURCE_GROUP=RG, AZUREML_WORKSPACE=WS)
    if credential:
        env["IMGCLS_AZURE_CREDENTIAL"] = credential
    return env


def cli(env: dict, *args: str) -> tuple[int, dict, str]:
    proc = subprocess.run([sys.executable, "-m", "imgcls.cli", "--json", *args], env=env, text=True,
                          capture_output=True, timeout=180, check=False)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr   # exactly one JSON document on stdout


def top_jobs(fake) -> list[str]:
    return [name for name, job in fake.state.jobs.items() if job.parent is None]


def the_run(tmp_path) -> Run:
    (path,) = (tmp_path / ".imgcls" / "runs").iterdir()
    return Run(path)


# -- the repo's config, end to end by CLI, then down --------------------------------------------------

def test_cli_run_then_down_leaves_nothing(inproc, data, tmp_path):
    fake = inproc
    env = cli_env(fake, tmp_path)
    code, out, err = cli(env, "run", "-c", str(CONFIG), "--set", f"dataset.source={data}")
    assert code == 0, err
    run = Run.open(tmp_path / ".imgcls" / "runs", out["run"])
    assert "using the credential tests.fakes.azureml:FakeCredential from IMGCLS_AZURE_CREDENTIAL" in err

    (job,) = top_jobs(fake)
    assert job == f"imgcls-{run.id}" and fake.state.jobs[job].status == "Completed"
    best = fake.state.jobs[job].tags["automl_best_child_run_id"]
    evaluation = out["evaluation"]
    test_images = [json.loads(x) for x in run.file("manifest.jsonl").read_text().splitlines()]
    assert evaluation["metrics"]["n_images"] == sum(r["split"] == "test" for r in test_images) > 0
    assert evaluation["metrics"]["accuracy"] >= 0.7
    service = evaluation["service_metrics"]
    assert service["trial"] == best and service["accuracy"] == fake.state.jobs[best].metrics["accuracy"]
    assert service["hyperparameters"] == {"model_name": "vitb16r224"}
    (endpoint,) = fake.state.endpoints
    assert endpoint == naming.endpoint(run)
    assert out["deployment"]["endpoint"] == fake.state.endpoints[endpoint]["properties"]["scoringUri"]
    assert fake.state.endpoints[endpoint]["properties"]["traffic"] == {"imgcls": 100}
    assert len(out["predictions"]) == 3
    for p in out["predictions"]:
        assert p["labels"] == [Path(p["image"]).parent.name]
    # the test split never went up; train+validation did, content-addressed
    uploaded = [n for _, n in fake.blobs if n.startswith("imgcls/images/")]
    assert len(uploaded) == sum(r["split"] != "test" for r in test_images)
    kinds = [(r["kind"], r["id"]) for r in run.ledger["resources"]]
    assert [k for k, _ in kinds] == ["blob", "blob", "data", "data", "compute", "job", "model", "endpoint",
                                     "deployment"]

    sent_before_down = len(fake.requests)
    golden_requests(fake, run, sent_before_down)
    down = api.down(api.load(CONFIG, overrides=[f"dataset.source={data}"]), run.id)   # as `imgcls down --run`
    assert down["failed"] == [] and len(down["deleted"]) == len(kinds)
    assert fake.state.billable() == {"computes": [], "endpoints": [], "deployments": []}
    assert leftovers(fake, Run(run.path)) == []
    statuses = {r["id"]: r["status"] for r in Run(run.path).ledger["resources"]}
    assert statuses[naming.IMAGES_PREFIX] == "kept" and statuses[job] == "finished"
    assert statuses[f"{naming.model(run)[0]}:1"] == "archived"
    assert len([n for _, n in fake.blobs if n.startswith("imgcls/images/")]) == len(uploaded)  # shared, kept
    golden("down.json", [f"{r.method} {_norm_text(r.path, fake, run)}" for r in fake.requests[sent_before_down:]
                         if r.method != "GET"])


def test_customvision_config_runs_on_azureml(inproc, data):
    """The migration path the README describes: the Custom Vision config with --provider azureml (the
    same api.load the CLI calls), the workspace from the AZURE_* variables of its azureml: section."""
    cfg = api.load(REPO / "configs" / "customvision.yaml", provider="azureml",
                   overrides=[f"dataset.source={data}", "evaluate.report=false"])
    assert (cfg.azureml.subscription_id, cfg.azureml.resource_group, cfg.azureml.workspace) == (SUB, RG, WS)
    result = api.run(cfg)
    assert result["evaluation"].metrics["accuracy"] >= 0.7 and result["deployment"].status == "deployed"
    # a busy endpoint answers 429 without Retry-After; scoring is safe to repeat, so it is retried
    inproc.faults.add("POST", r"/score$", 429, times=2)
    scored = len([r for r in inproc.requests if r.path.endswith("/score")])
    image = next(data.rglob("*.jpg"))
    (prediction,) = api.predict(cfg, [str(image)], result["run"])
    assert prediction.labels == [image.parent.name] and inproc.faults.pending == 0
    assert len([r for r in inproc.requests if r.path.endswith("/score")]) == scored + 3
    inproc.faults.add("POST", r"/score$", 429, times=4)  # more than the three retries
    with pytest.raises(ProviderError, match="still throttling") as failed:
        api.predict(cfg, [str(image)], result["run"])
    assert "azureml.instance_count" in failed.value.hint
    inproc.faults.clear()
    run = Run.open(api.runs_dir(cfg), result["run"])
    assert api.down(cfg, run.id)["failed"] == []
    assert inproc.state.billable() == {"computes": [], "endpoints": [], "deployments": []}
    assert leftovers(inproc, Run(run.path)) == []


# -- what fails, and how ------------------------------------------------------------------------------

def test_missing_credentials_exit_5_naming_the_sources_tried(fake, data, tmp_path):
    env = cli_env(fake, tmp_path, credential=None)                         # DefaultAzureCredential, nothing found
    env["PATH"] = f"{Path(sys.executable).parent}:/usr/bin:/bin"           # no az / azd / pwsh
    code, out, _ = cli(env, "dataset-import", "-c", str(CONFIG), "--set", f"dataset.source={data}")
    assert code == 5 and out["error"] == "AuthError", out
    message = out["message"]
    assert message.startswith("no Azure credential worked (DefaultAzureCredential). Tried: EnvironmentCredential: ")
    for source in ("WorkloadIdentityCredential", "ManagedIdentityCredential", "SharedTokenCacheCredential",
                   "AzureCliCredential: Azure CLI not found on path", "AzureDeveloperCliCredential"):
        assert source in message
    assert "az login" in out["hint"] and "AZURE_CLIENT_SECRET" in out["hint"]
    assert "https://" not in message and len(message) < 1500             # condensed, no troubleshooting links
    assert out["details"]["tried"][:3] == ["EnvironmentCredential", "WorkloadIdentityCredential",
                                           "ManagedIdentityCredential"]
    assert not [n for _, n in fake.blobs if n.startswith("imgcls/")] and not fake.state.data   # nothing sent


def test_expired_credential_is_an_auth_error(inproc, data, monkeypatch):
    monkeypatch.setenv("IMGCLS_AZURE_CREDENTIAL", "tests.fakes.azureml:ExpiredCredential")
    cfg = api.load(CONFIG, overrides=[f"dataset.source={data}"])
    with pytest.raises(AuthError) as raised:
        api.import_dataset(cfg)
    assert raised.value.exit_code == 5
    assert raised.value.message == (
        "no Azure credential worked (tests.fakes.azureml:ExpiredCredential (from IMGCLS_AZURE_CREDENTIAL)). "
        "Tried: EnvironmentCredential: Authentication failed: AADSTS7000222: The provided client secret keys "
        "for app '11111111-2222-3333-4444-555555555555' are expired")
    assert not inproc.state.data


def test_failed_job_exits_6_with_the_reason_and_train_retries(inproc, data, tmp_path):
    fake = inproc
    fake.fail_next_job("Not enough quota for Standard_NC6s_v3 in eastus: 0 of 6 cores available.")
    env = cli_env(fake, tmp_path)
    code, out, _ = cli(env, "train", "-c", str(CONFIG), "--set", f"dataset.source={data}")
    assert code == 6 and out["error"] == "ProviderError"
    assert "Not enough quota for Standard_NC6s_v3 in eastus: 0 of 6 cores available." in out["message"]
    run = the_run(tmp_path)
    assert run.operation("train")["state"] == "failed" and top_jobs(fake) == [f"imgcls-{run.id}"]

    # a second train submits a new attempt under a new name (the failed job keeps its own)
    cfg = api.load(CONFIG, overrides=[f"dataset.source={data}"])
    _, result = api.train(cfg, run.id)
    assert result.status == "succeeded" and top_jobs(fake) == [f"imgcls-{run.id}", f"imgcls-{run.id}-2"]
    assert result.model_id.endswith(f"/models/{naming.model(run)[0]}/versions/2")


def test_timeout_exits_8_and_train_run_picks_the_same_job_up(inproc, data, tmp_path):
    fake = inproc
    fake.job_seconds = 600
    env = cli_env(fake, tmp_path)
    args = ["-c", str(CONFIG), "--set", f"dataset.source={data}", "--set", "train.preset=best"]
    code, out, _ = cli(env, "train", *args, "--timeout", "1")
    assert code == 8 and out["error"] == "TimedOut", out
    run = the_run(tmp_path)
    assert f"imgcls train --run {run.id}" in out["hint"]
    (job,) = top_jobs(fake)
    assert fake.state.jobs[job].status in ("NotStarted", "Running") and run.operation("train")["id"] == job

    fake.job_seconds = 0.1                       # the job finishes while nobody waits
    _, result = api.train(api.load(CONFIG, overrides=[f"dataset.source={data}", "train.preset=best"]), run.id)
    assert result.status == "succeeded"          # what `imgcls train --run ID` does
    assert top_jobs(fake) == [job]
    assert sum(r.method == "PUT" and "/jobs/" in r.path for r in fake.requests) == 1     # submitted once
    golden("job-best.json", _norm(_job_body(fake, job), fake, run))


def test_interrupted_submission_is_submitted_once_under_its_recorded_name(inproc, data):
    fake = inproc
    # uploads straight to an explicit account URL (Azurite-style, the account in the path) this time
    cfg = api.load(CONFIG, overrides=[f"dataset.source={data}", f"azureml.storage_account_url={fake.blob_account_url}"])
    run, ref = api.import_dataset(cfg)
    assert ref.extra["account_url"] == fake.blob_account_url and ref.extra["uploaded"] > 0
    image_puts = [r.path for r in fake.requests if r.method == "PUT" and r.path.endswith(".jpg")]
    assert image_puts and all(p.startswith(f"/{fake.workspace.storage_account}/{fake.workspace.container}/"
                                           "imgcls/images/") for p in image_puts)
    # the service refuses the first PUT of the job: what the ledger holds equals a crash mid-submit
    fake.faults.add("PUT", r"/jobs/imgcls-", 400, times=1, headers={})
    with pytest.raises(ConfigError):
        api.train(cfg, run.id)
    op = Run(run.path).operation("train")
    assert op["state"] == "running" and op["id"] == naming.job(run) and top_jobs(fake) == []

    _, result = api.train(cfg, run.id)
    assert result.status == "succeeded" and top_jobs(fake) == [naming.job(run)]


def test_no_wait_returns_at_once_and_train_run_waits_for_the_same_job(inproc, data):
    inproc.job_seconds = 0.5
    cfg = api.load(CONFIG, overrides=[f"dataset.source={data}"])
    run, started = api.train(cfg, wait=False)
    assert started.status == "running" and started.model_id is None
    (job,) = top_jobs(inproc)
    assert inproc.state.jobs[job].status != "Completed" and Run(run.path).operation("train")["id"] == job
    _, done = api.train(cfg, run.id)
    assert done.status == "succeeded" and top_jobs(inproc) == [job] and done.extra["job"] == job


# -- the job spec: what preset, budget and the azureml: section decide --------------------------------

def _cfg(*overrides: str, task: str = "multiclass"):
    from imgcls.config import parse_config
    return parse_config(f"name: t\nprovider: azureml\ntask: {task}\ndataset:\n  source: x\n", overrides=list(overrides))


def _plan(cfg):
    return jobspec.plan(cfg, "job", "exp", "azureml:t-train:1", None, {})


def test_jobspec_one_trial_sweeps_and_mistakes():
    quick = _plan(_cfg("train.budget_minutes=90.5"))
    assert quick.sampling_algorithm is None and quick.search_space == [] and quick.max_trials == 1
    assert quick.training_parameters == {"model_name": "vitb16r224"} and quick.timeout_minutes == 91

    best = _plan(_cfg("train.preset=best", "azureml.model_names=[vitb16r224, seresnext]"))
    assert best.search_space == [{"model_name": ("choice", ["vitb16r224", "seresnext"]),
                                  "learning_rate": ("uniform", [0.001, 0.01])}]
    assert best.max_trials == 4 and best.sampling_algorithm == "random" and best.early_termination[0] == "bandit"
    assert "model_name" not in best.training_parameters

    ml = _plan(_cfg("azureml.max_trials=6", "azureml.max_concurrent_trials=8", task="multilabel"))
    assert ml.multilabel and ml.primary_metric == "iou" and ml.max_trials == 6 and ml.max_concurrent_trials == 6
    assert ml.early_termination is None and ml.search_space == [{"model_name": ("choice", ["vitb16r224"])}]

    space = _plan(_cfg("azureml.search_space=[{model_name: [vitb16r224], number_of_epochs: {randint: 20}, "
                       "learning_rate: 0.01}]", "azureml.sampling_algorithm=bayesian"))
    assert space.search_space == [{"model_name": ("choice", ["vitb16r224"]), "number_of_epochs": ("randint", [20]),
                                   "learning_rate": ("choice", [0.01])}] and space.sampling_algorithm == "bayesian"

    for overrides, words in [
        (["azureml.search_space=[{learning_rate: {uniform: [0.1]}}]"], "uniform takes 2 values, not 1"),
        (["azureml.search_space=[{learning_rate: {gaussian: [0, 1]}}]"], "is not a distribution"),
        (["azureml.search_space=[{learning_rate: {uniform: [0.001, 0.1]}}]", "azureml.sampling_algorithm=grid"],
         "grid sampling needs a list"),
        (["azureml.max_trials=3", "azureml.sampling_algorithm=bayesian", "azureml.early_termination=bandit"],
         "cannot be used with azureml.sampling_algorithm: bayesian"),
        (["azureml.max_trials=3", "azureml.training_parameters={model_name: resnet50}"], "fixes the model"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(words)):
            _plan(_cfg(*overrides))


def test_unknown_training_parameter_is_a_config_error_before_anything_is_sent(inproc, data):
    cfg = api.load(CONFIG, overrides=[f"dataset.source={data}", "azureml.training_parameters={epochs: 3}"])
    run, _ = api.import_dataset(cfg)
    sent = len(inproc.requests)
    with pytest.raises(ConfigError, match="unknown AutoML image training parameter.*epochs"):
        api.train(cfg, run.id)
    assert Run(run.path).operation("train") is None and top_jobs(inproc) == [] and not inproc.state.computes
    assert len(inproc.requests) == sent


def test_providers_command_never_imports_the_sdk(tmp_path):
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "imgcls.cli", "providers"], text=True,
                          capture_output=True, env={**os.environ, "PYTHONPATH": PYTHONPATH}, check=True)
    imported = [line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line]
    assert "imgcls.providers.azureml.settings" in imported          # the provider module was loaded ...
    sdk = ("azure.ai.ml", "azure.identity", "azure.storage.blob", "azure.core")
    assert not [m for m in imported if m.startswith(sdk)]               # ... and no SDK with it


# -- golden files: every body we send -------------------------------------------------------------------

def golden(name: str, got) -> None:
    assert_golden(GOLDEN / name, got)


def _norm_text(text: str, fake, run) -> str:
    for old, new in ((run.id, "<run>"), (naming.short_id(run), "<run-short>"), (naming.endpoint(run), "<endpoint>"),
                     (naming.compute(run), "<compute>"),
                     (fake.url, "https://<fake>"), (fake.workspace.container, "<container>")):
        text = text.replace(old, new)
    return re.sub(r"[0-9a-f]{64}", "<sha256>", text)


_VOLATILE = re.compile(r"^(mlflow\.source\.git\..*|azureml\.git\..*|createdAt|createdBy|lastModifiedAt)$")


def _norm(body, fake, run):
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if not _VOLATILE.match(k)}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    return json.loads(_norm_text(json.dumps(strip(body)), fake, run))


def _job_body(fake, name: str) -> dict:
    return fake.state.jobs[name].body


def golden_requests(fake, run, upto: int) -> None:
    sent: dict[str, object] = {}
    for r in fake.requests[:upto]:
        if r.method not in ("PUT", "POST") or not isinstance(r.body, (dict, list)):
            continue
        if "/data/" in r.path:
            key = f"data asset ({r.path.split('/data/')[1].split('/')[0].rsplit('-', 1)[-1]})"
        elif "/computes/" in r.path:
            key = "compute"
        elif "/jobs/" in r.path:
            key = "job"
        elif "/models/" in r.path:
            key = "model"
        elif "/deployments/" in r.path:
            key = "deployment"
        elif "/onlineEndpoints/" in r.path and r.method == "PUT":
            key = "endpoint" if "endpoint" not in sent else "endpoint traffic"
        elif r.path.endswith("/score"):
            key, body = "score", r.body
            r_body = {"input_data": {**body["input_data"],
                                     "data": [f"<base64 {'jpeg' if d.startswith('/9j/') else 'image'}>"
                                              for d in body["input_data"]["data"]]}}
            sent.setdefault(key, r_body)
            continue
        else:
            continue
        sent.setdefault(key, {"method": r.method, "path": r.path, "body": r.body})
    golden("requests.json", _norm(sent, fake, run))
    container = fake.workspace.container
    prefix = naming.run_prefix(run)
    jsonl = fake.blobs.get(container, f"{prefix}train/train.jsonl").decode()
    golden("train.jsonl", _norm_text(jsonl, fake, run))
    golden("MLTable", fake.blobs.get(container, f"{prefix}train/MLTable").decode())

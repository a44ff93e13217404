"""Run state on the cloud providers, against their fakes through the real SDKs: the CLI SIGKILLed between
a create call and its ledger record (the fake kills it the moment it has done, or before it does,
the chosen request), then the same run resumed and taken down — the fake holds nothing the run made,
and what the user owned is still there. Also: a Custom Vision project at its iteration limit, the Azure
ML compute handed from run to run, a Vertex export whose file names lead out of the export folder."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imgcls import api
from imgcls.errors import ProviderError
from imgcls.runs import Run
from tests.conftest import make_dataset

REPO = Path(__file__).resolve().parents[2]
PUBLISH = r"/training/projects/[^/]+/iterations/[^/]+/publish$"
TRAIN = r"/training/projects/[^/]+/train$"
UPLOAD = r"/training/projects/[^/]+/images/files$"
TAG = r"/training/projects/[^/]+/tags$"


def run_killed(fake, args: list[str], env: dict, cwd: Path, method: str, path: str, when: str) -> str:
    """`imgcls ARGS` in a subprocess, SIGKILLed by the fake at the first `method path` it sees: `before`
    the service acts on the request, or `after` it acted and before the answer goes out. Its stderr."""
    env = {**env, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    proc = subprocess.Popen([sys.executable, "-m", "imgcls.cli", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def kill(*_) -> bool:
        proc.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:   # dead before the answer leaves
            time.sleep(0.01)
        return True                 # `before`: the request dies with its sender, the service never acts

    hook = fake.hooks.add(method, path, kill, when=when)
    _, err = proc.communicate(timeout=180)
    assert hook.hits == 1, f"the CLI never sent {method} {path}; it ended {proc.returncode}:\n{err[-3000:]}"
    assert proc.returncode == -signal.SIGKILL, err[-3000:]
    return err


def only_run(tmp_path: Path) -> Run:
    (path,) = (tmp_path / ".imgcls" / "runs").iterdir()
    return Run(path)


def kinds(run: Run, status: str) -> list[str]:
    return [r["kind"] for r in Run(run.path).ledger["resources"] if r["status"] == status]


# == Custom Vision ======================================================================================

@pytest.fixture
def cv(monkeypatch):
    pytest.importorskip("azure.cognitiveservices.vision.customvision")
    from tests.fakes.customvision import FakeCustomVision
    with FakeCustomVision(training_key="cv-train-key", prediction_key="cv-predict-key", train_seconds=0.05,
                          export_seconds=0.05) as fake:
        for name, value in fake.env().items():
            monkeypatch.setenv(name, value)
        yield fake


def trainer(fake):
    from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
    from msrest.authentication import ApiKeyCredentials
    return CustomVisionTrainingClient(fake.url, ApiKeyCredentials(in_headers={"Training-key": fake.training_key}))


def users_project(fake, tmp_path: Path, iterations: int, published: int = 0) -> str:
    """A project of the user's own: tags red and green, 6 images each, `iterations` trained by the user
    (the first `published` of them published under the user's names)."""
    from azure.cognitiveservices.vision.customvision.training.models import (
        ImageFileCreateBatch,
        ImageFileCreateEntry,
    )
    t = trainer(fake)
    project = t.create_project("the user's own")
    own = make_dataset(tmp_path / "users-images", {"red": 6, "green": 6}, seed=9)
    for label in ("red", "green"):
        tag = t.create_tag(project.id, label)
        t.create_images_from_files(project.id, ImageFileCreateBatch(images=[
            ImageFileCreateEntry(name=p.name, contents=p.read_bytes(), tag_ids=[tag.id])
            for p in sorted((own / label).iterdir())]))
    for i in range(iterations):
        it = t.train_project(project.id, force_train=True)
        fake.finish_pending()
        if i < published:
            t.publish_iteration(project.id, it.id, f"users-model-{i}", fake.prediction_resource_id)
    return project.id


def snapshot(fake, project_id: str) -> dict:
    project = fake.state.projects[project_id]
    return {"iterations": {i.id: (i.name, i.publish_name) for i in project.iterations.values()},
            "images": sorted(project.images), "tags": sorted(t.name for t in project.tags.values())}


def cv_config(tmp_path: Path, data: Path, extra: str = "") -> Path:
    path = tmp_path / "cvkill.yaml"
    path.write_text(f"name: cvkill\nprovider: customvision\ndataset:\n  source: {data}\n"
                    f"split: {{validation: 0.1, test: 0.2}}\nevaluate: {{report: false}}\n{extra}")
    return path


@pytest.mark.parametrize("when", ["before", "after"])
def test_customvision_kill_at_publish_resumes_without_trusting_or_repeating_it(cv, tmp_path, when):
    other = users_project(cv, tmp_path, iterations=1, published=1)      # the user's, untouched throughout
    theirs = snapshot(cv, other)
    data = make_dataset(tmp_path / "data", {"red": 8, "green": 8}, size=(64, 48))
    cfg_path = cv_config(tmp_path, data)
    run_killed(cv, ["run", "-c", str(cfg_path)], dict(os.environ), tmp_path, "POST", PUBLISH, when)
    run = only_run(tmp_path)
    # Asked for, not answered: the ledger says pending, not published (it said published before asking).
    assert kinds(run, "pending") == ["publication"] and kinds(run, "active").count("publication") == 0

    cfg = api.load(cfg_path)
    result = api.run(cfg, run.id)                                   # `imgcls run --run ID`
    assert result["deployment"].status == "published" and len(result["predictions"]) == 3
    project_id = Run(run.path).resource("project")["id"]
    publishes = [r for r in cv.requests if r.method == "POST" and re.search(f"/projects/{project_id}/.*/publish$", r.path)]
    # killed before the service published: published now; killed after: found, not published twice
    assert len(publishes) == (2 if when == "before" else 1)
    (pub,) = [r for r in Run(run.path).ledger["resources"] if r["kind"] == "publication"]
    assert pub["status"] == "active" and pub["id"] == result["deployment"].extra["publish_name"]

    # unpublished outside imgcls: status asks the service and says so
    trainer(cv).unpublish_iteration(pub["project_id"], pub["iteration_id"])
    seen = {r["kind"]: r["observed"] for r in api.status(cfg, run.id)["resources"] if r["status"] == "active"}
    assert seen["publication"] == "gone" and seen["iteration"] == "live" and seen["project"] == "live"

    api.down(cfg, run.id)
    assert list(cv.state.projects) == [other] and snapshot(cv, other) == theirs


@pytest.mark.parametrize("then", ["resume", "down"])
def test_customvision_kill_after_training_starts_in_the_users_project(cv, tmp_path, then):
    project_id = users_project(cv, tmp_path, iterations=2, published=1)
    theirs = snapshot(cv, project_id)
    data = make_dataset(tmp_path / "data", {"red": 8, "green": 8}, size=(64, 48))
    cfg_path = cv_config(tmp_path, data, f"customvision: {{project_id: {project_id}}}\n")
    run_killed(cv, ["train", "-c", str(cfg_path)], dict(os.environ), tmp_path, "POST", TRAIN, "after")
    run = only_run(tmp_path)
    assert kinds(run, "pending") == ["iteration"] and run.operation("train") is None
    (mine,) = set(cv.state.projects[project_id].iterations) - set(theirs["iterations"])
    cfg = api.load(cfg_path)

    if then == "resume":
        _, trained = api.train(cfg, run.id)                            # `imgcls train --run ID`
        assert trained.status == "succeeded" and trained.model_id == mine   # found again, not trained twice
        assert len([r for r in cv.requests if r.method == "POST" and r.path.endswith("/train")]) == 3
        assert cv.state.projects[project_id].iterations[mine].name == run.id   # named after its run
        (entry,) = [r for r in Run(run.path).ledger["resources"] if r["kind"] == "iteration"]
        assert entry["status"] == "active" and entry["ours"] is True
    down = api.down(cfg, run.id)
    assert mine in {r["id"] for r in down["deleted"] if r["kind"] == "iteration"}
    assert snapshot(cv, project_id) == theirs                          # the user's iterations, images, tags


@pytest.mark.parametrize("then", ["resume", "down"])
@pytest.mark.parametrize("killed_at", [UPLOAD, TAG])
def test_customvision_kill_after_an_upload_or_a_tag_leaves_nothing_in_the_users_project(cv, tmp_path, killed_at,
                                                                                         then):
    project_id = users_project(cv, tmp_path, iterations=0)
    theirs = snapshot(cv, project_id)
    # 'blue' is the tag the run creates; 'red' and 'green' are the user's
    data = make_dataset(tmp_path / "data", {"red": 8, "green": 8, "blue": 8}, size=(64, 48))
    cfg_path = cv_config(tmp_path, data, f"customvision: {{project_id: {project_id}}}\n")
    # the service stored the images (or made the tag); its answer never reached the CLI
    run_killed(cv, ["dataset-import", "-c", str(cfg_path)], dict(os.environ), tmp_path, "POST", killed_at, "after")
    run = only_run(tmp_path)
    assert sorted(t.name for t in cv.state.projects[project_id].tags.values()) == ["blue", "green", "red"]
    if killed_at == UPLOAD:
        assert set(cv.state.projects[project_id].images) - set(theirs["images"])
    cfg = api.load(cfg_path)

    if then == "resume":
        _, ref = api.import_dataset(cfg, run.id)                       # `imgcls dataset-import --run ID`
        added = set(cv.state.projects[project_id].images) - set(theirs["images"])
        assert len(added) == ref.extra["uploaded"] == 18               # sent again, not stored twice
        assert len(cv.state.projects[project_id].tags) == 3            # 'blue' found again, not made twice
    api.down(cfg, run.id)
    assert snapshot(cv, project_id) == theirs                          # the user's images and tags, only


def test_customvision_project_at_its_iteration_limit_is_refused_not_pruned(cv, tmp_path):
    from imgcls.providers.customvision.iterations import MAX_ITERATIONS
    project_id = users_project(cv, tmp_path, iterations=MAX_ITERATIONS, published=1)
    theirs = snapshot(cv, project_id)
    data = make_dataset(tmp_path / "data", {"red": 8, "green": 8}, size=(64, 48))
    cfg = api.load(cv_config(tmp_path, data, f"customvision: {{project_id: {project_id}}}\n"))
    with pytest.raises(ProviderError) as refused:
        api.train(cfg)
    e = refused.value
    assert e.exit_code == 6 and f"MAX_ITERATIONS = {MAX_ITERATIONS}" in e.message and "the user's own" in e.message
    assert "'Iteration 2'" in e.hint and "'Iteration 1'" not in e.hint     # oldest unpublished first
    assert e.details["removable"][:2] == ["Iteration 2", "Iteration 3"] and len(e.details["removable"]) == 19
    assert not [r for r in cv.requests if r.method == "DELETE" and "/iterations/" in r.path]
    assert len([r for r in cv.requests if r.path.endswith("/train")]) == MAX_ITERATIONS   # the user's only
    api.down(cfg, only_run(tmp_path).id)
    assert snapshot(cv, project_id) == theirs


# == Vertex AI ==========================================================================================

@pytest.fixture
def vx(tmp_path, monkeypatch):
    pytest.importorskip("google.cloud.aiplatform_v1")
    from tests.contract import harness_vertex
    with harness_vertex.start(tmp_path, monkeypatch) as h:
        yield h.fake


def vx_config(fake, tmp_path: Path, data: Path, extra: str = "") -> Path:
    from tests.contract.harness_vertex import BUCKET, PREFIX
    path = tmp_path / "vxkill.yaml"
    path.write_text(f"name: vxkill\nprovider: vertex\ndataset:\n  source: {data}\n"
                    "split:\n  validation: 0.2\n  test: 0.25\nevaluate: {report: false}\n"
                    f"vertex:\n  project: test-project\n  staging_bucket: gs://{BUCKET}/{PREFIX}\n"
                    f"  api_endpoint: {fake.url}\n{extra}")
    return path


def vx_env(fake) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "IMGCLS_"))}
    return {**env, **fake.env(), "IMGCLS_VERTEX_ANONYMOUS": "1", "PYTHONWARNINGS": "ignore"}


def fast_polling():
    from google.api_core.retry import Retry
    return Retry(initial=0.05, maximum=0.2, multiplier=1.5, timeout=30)


def users_dataset(fake) -> str:
    """A dataset the user made, through the v1 API as the user's own code would."""
    from google.cloud import aiplatform_v1 as v1
    svc = v1.DatasetServiceClient(**fake.client_kwargs())
    op = svc.create_dataset(parent=f"projects/{fake.state.project}/locations/{fake.state.location}",
                            dataset={"display_name": "the user's own", "metadata_schema_uri":
                                     "gs://google-cloud-aiplatform/schema/dataset/metadata/image_1.0.0.yaml"})
    return op.result(polling=fast_polling()).name


def delete_endpoint_outside_imgcls(fake, name: str) -> None:
    from google.cloud import aiplatform_v1 as v1
    svc = v1.EndpointServiceClient(**fake.client_kwargs())
    for deployed in svc.get_endpoint(name=name).deployed_models:
        svc.undeploy_model(endpoint=name, deployed_model_id=deployed.id).result(polling=fast_polling())
    svc.delete_endpoint(name=name).result(polling=fast_polling())


@pytest.mark.parametrize("then", ["resume", "down"])
def test_vertex_kill_after_the_dataset_is_created_neither_duplicates_nor_orphans_it(vx, tmp_path, then):
    from tests.contract.harness_vertex import leftovers
    theirs = users_dataset(vx)
    data = make_dataset(tmp_path / "data", {"red": 12, "green": 12, "blue": 12}, size=(96, 72))
    cfg_path = vx_config(vx, tmp_path, data)
    run_killed(vx, ["dataset-import", "-c", str(cfg_path)], vx_env(vx), tmp_path, "POST",
               r"/v1/projects/[^/]+/locations/[^/]+/datasets$", "after")
    run = only_run(tmp_path)
    assert kinds(run, "pending") == ["dataset"] and len(vx.state.datasets) == 2
    cfg = api.load(cfg_path)

    if then == "resume":
        result = api.run(cfg, run.id)                                   # `imgcls run --run ID`
        assert result["deployment"].status == "deployed" and len(result["predictions"]) == 3
        assert len(vx.state.datasets) == 2                              # the user's and the run's one
        (dataset,) = Run(run.path).resources("dataset")
        assert dataset["id"].rsplit("/", 1)[-1] in vx.state.datasets
        # an endpoint deleted outside imgcls: status says it is gone
        (endpoint,) = Run(run.path).resources("endpoint")
        delete_endpoint_outside_imgcls(vx, endpoint["id"])
        seen = {r["kind"]: r["observed"] for r in api.status(cfg, run.id)["resources"] if r["status"] == "active"}
        assert seen["endpoint"] == "gone" and seen["dataset"] == "live" and seen["model"] == "live"
    api.down(cfg, run.id)
    assert leftovers(vx, Run(run.path)) == [f"dataset {theirs}"]        # only the user's dataset is left


def test_vertex_export_refuses_a_file_name_that_leads_out_of_the_export_folder(vx, tmp_path):
    from tests.contract.harness_vertex import BUCKET, PREFIX
    data = make_dataset(tmp_path / "data", {"red": 12, "green": 12, "blue": 12}, size=(96, 72))
    cfg = api.load(vx_config(vx, tmp_path, data, "  model_type: MOBILE_TF_LOW_LATENCY_1\n"))
    run, _ = api.train(cfg)
    escape = "../../escaped.txt"

    def planted(*_):          # the service answers the export with one more, hostile, object name
        written = [u for u in vx.gcs.list(f"gs://{BUCKET}/{PREFIX}/runs/{run.id}/") if u.endswith("/dict.txt")]
        vx.gcs.write(written[0].rsplit("/", 1)[0] + "/" + escape, b"outside")

    vx.hooks.add("POST", r":export$", planted, when="after")
    with pytest.raises(ProviderError) as refused:
        api.export(cfg, run.id)
    assert refused.value.exit_code == 6 and repr(escape) in refused.value.message
    assert not list(tmp_path.rglob("escaped.txt"))


# == Azure ML ===========================================================================================

@pytest.fixture
def az(monkeypatch):
    pytest.importorskip("azure.ai.ml")
    from tests.contract.harness_azureml import RG, SUB, WS
    from tests.fakes.azureml import FakeAzureML
    with FakeAzureML(SUB, RG, WS, job_seconds=0.2, lro_polls=1, poll_seconds=0.05) as fake:
        for key, value in {**fake.env(), "IMGCLS_AZURE_CREDENTIAL": "tests.fakes.azureml:FakeCredential",
                           "AZURE_SUBSCRIPTION_ID": SUB, "AZURE_RESOURCE_GROUP": RG,
                           "AZUREML_WORKSPACE": WS}.items():
            monkeypatch.setenv(key, value)
        yield fake


def az_config(tmp_path: Path, data: Path, extra: str = "") -> Path:
    path = tmp_path / "azshare.yaml"
    path.write_text(f"name: azshare\nprovider: azureml\ndataset:\n  source: {data}\nevaluate: {{report: false}}\n"
                    f"azureml:\n  vm_size: Standard_DS3_v2\n{extra}")
    return path


def test_azureml_project_compute_is_handed_to_the_run_still_using_it(az, tmp_path):
    from imgcls.providers.azureml import naming
    data = make_dataset(tmp_path / "data", {"red": 12, "green": 12}, size=(64, 48))
    cfg = api.load(az_config(tmp_path, data))
    run_a, _ = api.train(cfg)
    name = naming.compute(run_a)
    assert name.startswith("imgcls-") and 2 <= len(name) <= 16 and list(az.state.computes) == [name]
    run_b, _ = api.import_dataset(cfg, new=True)                       # a second run of the project
    api.train(cfg, run_b.id)
    (a_compute,) = Run(run_a.path).resources("compute")
    (b_compute,) = Run(run_b.path).resources("compute")
    assert (a_compute["id"], a_compute["ours"]) == (name, True) and (b_compute["id"], b_compute["ours"]) == (name, False)

    down_a = api.down(cfg, run_a.id)
    assert [r["reason"] for r in down_a["kept"] if r["kind"] == "compute"] == \
        [f"still used by run {run_b.id}, which now owns it"]
    assert list(az.state.computes) == [name]                           # B still trains on it
    (b_compute,) = Run(run_b.path).resources("compute")
    assert b_compute["ours"] is True and b_compute["inherited_from"] == run_a.id

    down_b = api.down(cfg, run_b.id)
    assert name in [r["id"] for r in down_b["deleted"] if r["kind"] == "compute"]
    assert az.state.billable() == {"computes": [], "endpoints": [], "deployments": []}


def test_azureml_a_named_compute_that_was_there_is_used_and_never_deleted(az, tmp_path):
    from azure.ai.ml import MLClient
    from azure.ai.ml.entities import AmlCompute

    from tests.contract.harness_azureml import RG, SUB, WS
    from tests.fakes.azureml import FakeCredential
    MLClient(FakeCredential(), SUB, RG, WS).compute.begin_create_or_update(
        AmlCompute(name="team-gpu", size="Standard_NC6s_v3", max_instances=2)).result()
    data = make_dataset(tmp_path / "data", {"red": 12, "green": 12}, size=(64, 48))
    cfg = api.load(az_config(tmp_path, data, "  compute: team-gpu\n"))
    run, _ = api.train(cfg)
    (entry,) = Run(run.path).resources("compute")
    assert (entry["id"], entry["ours"]) == ("team-gpu", False)
    api.down(cfg, run.id)
    assert list(az.state.computes) == ["team-gpu"]


def test_azureml_kill_after_the_compute_is_asked_for_finds_it_as_the_runs(az, tmp_path):
    from imgcls.providers.azureml import naming
    from tests.contract.harness_azureml import leftovers
    data = make_dataset(tmp_path / "data", {"red": 12, "green": 12}, size=(64, 48))
    cfg_path = az_config(tmp_path, data)
    run_killed(az, ["train", "-c", str(cfg_path)], dict(os.environ), tmp_path, "PUT", r"/computes/imgcls-", "after")
    run = only_run(tmp_path)
    assert kinds(run, "pending") == ["compute"] and list(az.state.computes) == [naming.compute(run)]
    cfg = api.load(cfg_path)
    _, trained = api.train(cfg, run.id)                                # `imgcls train --run ID`
    assert trained.status == "succeeded" and len(az.state.computes) == 1
    (compute,) = Run(run.path).resources("compute")
    assert compute["ours"] is True                                     # made by this run: found, not "used"
    api.down(cfg, run.id)
    assert az.state.billable() == {"computes": [], "endpoints": [], "deployments": []}
    assert leftovers(az, Run(run.path)) == []

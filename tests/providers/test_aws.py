"""The aws provider against the fake Rekognition Custom Labels + S3, through boto3: the repo's config end to end
by CLI and `down` leaving nothing the run created, a bucket the config names (used, left alone), --no-wait and
resume, limits checked offline, credentials, retries, failures and a create call cut short."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("boto3")

from imgcls import api
from imgcls.errors import AuthError, ConfigError, DataError, ProviderError, UsageError
from imgcls.runs import Run
from tests.conftest import make_dataset, run_cli
from tests.contract import harness_aws

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "aws.yaml"
NAMED = "team-imgcls-data"


@pytest.fixture
def harness(tmp_path, monkeypatch):
    with harness_aws.start(tmp_path, monkeypatch, keep_buckets=[NAMED]) as h:
        yield h


@pytest.fixture
def fake(harness):
    return harness.fake


@pytest.fixture
def data(tmp_path) -> Path:
    return make_dataset(tmp_path / "data", {"red": 8, "green": 8, "blue": 8}, size=(96, 72))


def load(source: Path, *overrides: str, task: str = "multiclass", extra: str = ""):
    path = Path("atest.yaml").resolve()
    path.write_text(f"name: atest\nprovider: aws\ntask: {task}\ndataset:\n  source: {source}\n"
                    f"split:\n  validation: 0.2\n  test: 0.25\naws:\n  region: us-east-1\n{extra}")
    return api.load(path, None, list(overrides))


def cli(*args: str, cwd: Path, env: dict) -> tuple[int, dict | None, str]:
    return run_cli(*args, cwd=cwd, env=env, timeout=180)


def cli_env(fake, tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IMGCLS_"))}
    return {**env, **fake.env(), "PYTHONWARNINGS": "ignore"}


def test_run_from_repo_config_then_down_leaves_nothing(fake, data, tmp_path):
    env = cli_env(fake, tmp_path)
    args = ["-c", str(CONFIG), "--set", f"dataset.source={data}", "--set", "split.test=0.25"]
    code, doc, err = cli("run", *args, cwd=tmp_path, env=env)
    assert code == 0, err
    run = Run(tmp_path / ".imgcls" / "runs" / doc["run"])
    assert doc["train"]["status"] == "succeeded" and ":project/" in doc["train"]["model_id"]
    assert doc["deployment"]["status"] == "deployed"
    n_test = sum(json.loads(x)["split"] == "test" for x in run.file("manifest.jsonl").read_text().splitlines())
    assert doc["evaluation"]["metrics"]["n_images"] == n_test > 0
    assert doc["evaluation"]["metrics"]["accuracy"] >= 0.7
    assert doc["evaluation"]["service_metrics"]["f1"] is not None
    kinds = [(r["kind"], r["ours"]) for r in run.resources()]
    assert kinds == [("bucket", True), ("prefix", True), ("project", True), ("dataset", True), ("dataset", True),
                     ("model", True)]
    s = fake.state
    (project,) = s.projects.values()
    assert project.name == run.id and len(s.datasets) == 2 and len(s.versions) == 1
    (version,) = s.versions.values()
    assert version.status == "RUNNING" and version.min_units == 1
    # the TEST dataset is exactly our test split, TRAIN our train + validation
    test_ds = s.datasets[project.datasets["TEST"]]
    assert len(test_ds.entries) == n_test and len(s.datasets[project.datasets["TRAIN"]].entries) == 24 - n_test
    assert [b for b in s.buckets if b != NAMED] == [f"imgcls-{run.id.lower()}"]

    code, doc, err = cli("down", "-c", str(CONFIG), "--run", run.id, cwd=tmp_path, env=env)
    assert code == 0, err
    assert [r["kind"] for r in doc["deleted"]] == ["model", "dataset", "dataset", "project", "prefix", "bucket"]
    assert harness_aws.leftovers(fake, run, [NAMED]) == [] and Run(run.path).resources() == []
    assert "StopProjectVersion" in fake.calls       # a running model is stopped before it is deleted


def test_named_bucket_is_used_and_left_in_place(fake, data):
    cfg = load(data, f"aws.bucket={NAMED}", "aws.prefix=team/imgcls")
    run, trained = api.train(cfg)
    assert trained.status == "succeeded"
    keys = fake.state.buckets[NAMED]
    assert any(k.startswith(f"team/imgcls/{run.id}/images/") for k in keys)
    train_manifest = keys[f"team/imgcls/{run.id}/manifests/train.manifest"].decode().splitlines()
    first = json.loads(train_manifest[0])
    assert first["source-ref"].startswith(f"s3://{NAMED}/team/imgcls/{run.id}/images/")
    assert first["imgcls-label-metadata"]["type"] == "groundtruth/image-classification"
    assert first["imgcls-label-metadata"]["class-name"] in ("red", "green", "blue")
    assert Run(run.path).resource("bucket")["ours"] is False
    observed = {(r["kind"], r["observed"]) for r in api.status(cfg, run.id)["resources"]}
    assert observed == {(k, "live") for k in ("bucket", "prefix", "project", "dataset", "model")}
    with pytest.raises(UsageError, match="not running"):     # trained, never started
        api.predict(cfg, [str(data / "red" / "red_000.jpg")], run.id)
    result = api.down(cfg, run.id)
    assert [k["kind"] for k in result["kept"]] == ["bucket"]
    assert NAMED in fake.state.buckets and fake.state.buckets[NAMED] == {}   # the run's keys went, the bucket stays
    assert harness_aws.leftovers(fake, Run(run.path), [NAMED]) == []


def test_down_keep_model_keeps_what_the_model_lives_in_and_a_later_down_removes_all(fake, data):
    cfg = load(data)
    run, trained = api.train(cfg)
    assert trained.status == "succeeded"
    kept = api.down(cfg, run.id, keep=("model",))             # exit 0: kept, not failed
    assert kept["failed"] == [] and {k["kind"] for k in kept["kept"]} >= {"model", "project", "bucket"}
    assert fake.state.projects and fake.state.versions            # the model and its project are still there
    assert {r["kind"] for r in Run(run.path).live()} >= {"model", "project", "bucket"}
    assert api.down(cfg, run.id)["failed"] == []
    assert harness_aws.leftovers(fake, Run(run.path), [NAMED]) == []


def test_multilabel_manifest_uses_the_class_map(fake, tmp_path):
    data = make_dataset(tmp_path / "ml", {"red": 6, "blue": 6}, size=(96, 72))
    cfg = load(data, task="multilabel")
    run, _ = api.import_dataset(cfg)
    bucket = fake.state.buckets[f"imgcls-{run.id.lower()}"]
    line = json.loads(bucket[f"imgcls/{run.id}/manifests/train.manifest"].decode().splitlines()[0])
    meta = line["imgcls-label-metadata"]
    assert meta["type"] == "groundtruth/image-classification-multilabel"
    assert [meta["class-map"][str(i)] for i in line["imgcls-label"]] in (["blue"], ["red"])
    api.down(cfg, run.id)
    assert harness_aws.leftovers(fake, Run(run.path), [NAMED]) == []


def test_no_wait_returns_at_once_and_train_picks_it_up(fake, data):
    fake.state.train_seconds = 600          # until the test lets it finish: no race with a busy machine
    cfg = load(data)
    run, started = api.train(cfg, wait=False)
    assert started.status == "running"
    (version,) = fake.state.versions.values()
    op = Run(run.path).operation("train")
    assert op["id"] == version.arn and version.status == "TRAINING_IN_PROGRESS"
    assert api.status(cfg, run.id)["training"]["state"] == "running"
    fake.state.train_seconds = 0.3
    _, trained = api.train(cfg, run.id)
    assert trained.status == "succeeded" and trained.model_id == version.arn and len(fake.state.versions) == 1
    assert fake.calls.count("CreateProjectVersion") == 1
    api.down(cfg, run.id)


def test_limits_are_checked_offline(fake, tmp_path):
    root = make_dataset(tmp_path / "d", {"red": 4, "blue": 4}, size=(96, 72))
    Image.new("RGB", (40, 40), (200, 0, 0)).save(root / "red" / "tiny.png")
    Image.new("RGB", (96, 72), (0, 0, 200)).save(root / "blue" / "anim.gif")
    report = api.validate(load(root))
    found = {(f["code"], Path(f["files"][0]).name) for f in report["findings"]}
    assert {("format", "anim.gif"), ("small-image", "tiny.png")} <= found and report["errors"] == 1
    assert fake.calls == []                           # nothing asked of AWS


def test_wrong_credentials_are_an_auth_error(fake, data, monkeypatch, tmp_path):
    env = {**cli_env(fake, tmp_path), "AWS_ACCESS_KEY_ID": "AKIANOTKNOWN"}
    code, doc, err = cli("dataset-import", "-c", str(CONFIG), "--set", f"dataset.source={data}", cwd=tmp_path,
                         env=env)
    assert code == 5, (doc, err)
    assert "AWS refused HeadBucket" in json.dumps(doc), doc
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(AuthError, match="AWS refused HeadBucket .*403"):
        api.import_dataset(load(data))


def test_a_call_iam_does_not_allow_is_an_auth_error_naming_it(fake, data):
    fake.fail("CreateProject", "AccessDeniedException")
    with pytest.raises(AuthError, match="CreateProject .*AccessDeniedException"):
        api.import_dataset(load(data))


def test_providers_lists_aws_with_its_credential_status(fake, tmp_path):
    env = cli_env(fake, tmp_path)
    code, doc, err = cli("providers", cwd=tmp_path, env=env)
    assert code == 0, err
    (row,) = [r for r in doc["providers"] if r["name"] == "aws"]
    assert row["installed"] and row["credentials"]["found"] and "env" in row["credentials"]["detail"]
    assert row["limits"]["max_predict_bytes"] == 4 * 1024 * 1024 and row["limits"]["formats"] == ["jpeg", "png"]
    bare = {k: v for k, v in env.items() if not k.startswith("AWS_")}
    bare.update(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_CONFIG_FILE=str(tmp_path / "none"))
    code, doc, err = cli("providers", cwd=tmp_path, env=bare)
    (row,) = [r for r in doc["providers"] if r["name"] == "aws"]
    assert code == 0 and row["credentials"]["found"] is False and "AWS_PROFILE" in row["credentials"]["detail"]
    assert fake.calls == []                           # found without calling the service


def test_throttled_detect_is_retried(fake, data):
    cfg = load(data)
    run, _ = api.train(cfg)
    fake.fail("DetectCustomLabels", "ThrottlingException", times=2)
    _, evaluation = api.evaluate(cfg, run.id)
    assert evaluation.metrics["accuracy"] >= 0.7
    assert fake.faults[0].hits == 2
    api.down(cfg, run.id)


def test_failed_training_is_a_provider_error_with_the_services_message(fake, data):
    fake.state.fail_training = "The manifest has too few labels."
    cfg = load(data)
    with pytest.raises(ProviderError, match="too few labels"):
        api.train(cfg)
    api.down(cfg)
    assert harness_aws.leftovers(fake, Run(next(Path(".imgcls/runs").iterdir())), [NAMED]) == []


def test_a_create_cut_short_is_found_by_down(fake, data):
    """CreateDataset fails: the ledger keeps the dataset as pending; had the call gone through, a resumed import
    and `down` find the dataset by the name imgcls chose."""
    fake.fail("CreateDataset", "InternalServerError", status=500, times=-1)
    cfg = load(data, "aws.retries=1")
    with pytest.raises(ProviderError, match="CreateDataset TRAIN"):
        api.import_dataset(cfg)
    (run_path,) = Path(".imgcls/runs").iterdir()
    run = Run(run_path)
    (pending,) = run.pending("dataset")
    assert pending["name"] == f"{run.id}/TRAIN" and pending["id"] is None
    fake.faults.clear()
    import boto3  # the call "went through" after all
    project = run.resource("project")["id"]
    key = f"imgcls/{run.id}/manifests/train.manifest"
    made = boto3.session.Session().client("rekognition").create_dataset(
        ProjectArn=project, DatasetType="TRAIN",
        DatasetSource={"GroundTruthManifest": {"S3Object": {"Bucket": f"imgcls-{run.id.lower()}", "Name": key}}})
    puts = fake.calls.count("s3:PUT")
    _, dataset = api.import_dataset(cfg, run.id)       # the resumed import finds it by name, uploads no image again
    assert dataset.extra["datasets"]["TRAIN"] == made["DatasetArn"] and len(fake.state.datasets) == 2
    assert fake.calls.count("s3:PUT") - puts == 2       # the two manifests only
    assert [r["id"] for r in Run(run.path).resources("dataset")][0] == made["DatasetArn"]
    result = api.down(cfg, run.id)
    assert [r["kind"] for r in result["deleted"]].count("dataset") == 2
    assert harness_aws.leftovers(fake, run, [NAMED]) == []


def test_detect_bytes_limit_is_named(fake, data, tmp_path):
    cfg = load(data)
    run, _ = api.train(cfg)
    big = tmp_path / "big.png"
    rng = __import__("numpy").random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (1400, 1400, 3), dtype="uint8")).save(big)
    assert big.stat().st_size > 4 * 1024 * 1024
    api.deploy(cfg, run.id)
    with pytest.raises(DataError, match="4 MB"):
        api.predict(cfg, [str(big)], run.id)
    api.down(cfg, run.id)


def test_ground_truth_lines_have_the_shapes_custom_labels_reads():
    from imgcls.providers.aws import groundtruth
    one = json.loads(groundtruth.line("s3://b/k.jpg", ["red"], False, ["blue", "red"]))
    assert one == {"source-ref": "s3://b/k.jpg", "imgcls-label": 1, "imgcls-label-metadata": {
        "confidence": 1, "class-name": "red", "human-annotated": "yes", "creation-date": groundtruth.CREATED,
        "type": "groundtruth/image-classification", "job-name": "labeling-job/imgcls"}}
    many = json.loads(groundtruth.line("s3://b/k.jpg", ["blue", "red"], True, ["blue", "green", "red"]))
    assert many["imgcls-label"] == [0, 2]
    meta = many["imgcls-label-metadata"]
    assert meta["class-map"] == {"0": "blue", "2": "red"} and meta["objects"] == [{"confidence": 1}] * 2
    assert meta["type"] == "groundtruth/image-classification-multilabel"
    with pytest.raises(DataError, match="exactly one label"):
        groundtruth.line("s3://b/k.jpg", ["blue", "red"], False, ["blue", "red"])


def test_down_during_training_says_to_come_back_and_then_finishes(fake, data):
    fake.state.train_seconds = 600
    cfg = load(data)
    run, _ = api.train(cfg, wait=False)
    with pytest.raises(ProviderError, match="still training") as err:
        api.down(cfg, run.id)
    assert "imgcls down" in err.value.hint
    # the datasets went; the project, and the bucket the model writes its output to, wait for the model
    assert [r["kind"] for r in Run(run.path).live()] == ["bucket", "prefix", "project", "model"]
    fake.state.train_seconds = 0                # training ends
    result = api.down(cfg, run.id)
    assert [r["kind"] for r in result["deleted"]] == ["model", "project", "prefix", "bucket"]
    assert harness_aws.leftovers(fake, Run(run.path), [NAMED]) == []


def test_repo_config_against_the_fake_started_as_documented(tmp_path, data):
    """`python -m tests.fakes.aws` in its own process, its printed exports as the only AWS settings; what is left
    after `down` is asked of the fake through boto3, as a user would."""
    import boto3

    root = Path(__file__).resolve().parents[2]
    server = subprocess.Popen([sys.executable, "-m", "tests.fakes.aws", "--port", "0", "--train-seconds", "0.5",
                               "--start-seconds", "0.3", "--bucket", NAMED], cwd=root, stdout=subprocess.PIPE,
                              text=True)
    try:
        exports = dict(server.stdout.readline().strip().removeprefix("export ").split("=", 1) for _ in range(4))
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IMGCLS_"))}
        env = {**base, **exports, "PYTHONWARNINGS": "ignore"}
        args = ["-c", str(CONFIG), "--set", f"dataset.source={data}"]
        code, doc, err = cli("run", *args, cwd=tmp_path, env=env)
        assert code == 0, err
        session = boto3.session.Session(aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
                                        aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"],
                                        region_name=exports["AWS_DEFAULT_REGION"])
        rek = session.client("rekognition", endpoint_url=exports["AWS_ENDPOINT_URL"])
        s3 = session.client("s3", endpoint_url=exports["AWS_ENDPOINT_URL"])
        (project,) = rek.describe_projects()["ProjectDescriptions"]
        assert len(project["Datasets"]) == 2
        (version,) = rek.describe_project_versions(ProjectArn=project["ProjectArn"])["ProjectVersionDescriptions"]
        assert version["Status"] == "RUNNING"
        code, doc, err = cli("down", *args, "--run", doc["run"], cwd=tmp_path, env=env)
        assert code == 0, err
        assert rek.describe_projects()["ProjectDescriptions"] == []
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [NAMED]
    finally:
        server.terminate()
        server.wait(10)


def test_a_profile_that_is_not_there_is_named(monkeypatch, tmp_path):
    from imgcls.providers.aws.provider import AwsProvider
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    cfg = load(tmp_path, extra="  profile: nosuch\n")
    status = AwsProvider.check_credentials(cfg)
    assert not status.found and "nosuch" in status.detail


@pytest.mark.parametrize("override, words", [("aws.bucket=Not_A_Bucket", "aws.bucket"),
                                             ("deploy.min_replicas=0", "inference unit"),
                                             ("deploy.max_replicas=1", "deploy.max_replicas")])
def test_settings_aws_would_refuse_fail_before_any_call(fake, data, override, words):
    extra = ["deploy.min_replicas=2"] if override.startswith("deploy.max") else []
    with pytest.raises(ConfigError, match=words):
        api.import_dataset(load(data, override, *extra))
    assert fake.calls == []


def test_one_not_found_answer_does_not_make_a_model_gone(fake, data):
    """A single ResourceNotFoundException from DescribeProjectVersions while training is waited for, and again
    while `down` stops the started model, is looked at again: training finishes with one model version, and
    `down` deletes it instead of marking it gone and leaving it billed."""
    cfg = load(data)
    fake.fail("DescribeProjectVersions", "ResourceNotFoundException", times=1)
    run, _ = api.train(cfg)
    assert len(fake.state.versions) == 1
    api.deploy(cfg, run.id)
    fake.fail("DescribeProjectVersions", "ResourceNotFoundException", times=1)
    api.down(cfg, run.id)
    assert fake.state.versions == {}
    assert harness_aws.leftovers(fake, run, [NAMED]) == []


def test_one_not_found_answer_while_a_dataset_is_built_is_looked_at_again(fake, data):
    """Was exit 4 "could not build the TRAIN dataset: (0 entries with errors), check the images"."""
    fake.fail("DescribeDataset", "ResourceNotFoundException", times=1)
    run, ref = api.import_dataset(load(data))
    assert len(fake.state.datasets) == 2 and [r["status"] for r in run.resources("dataset")] == ["active"] * 2
    api.down(load(data), run.id)

"""`vertex:<dataset>` as a source: a managed dataset made through the aiplatform SDK (as a user would have
made it) in the fake, listed through our source: every image with its labels and ML-use split, the bytes
as they are in Cloud Storage, the export cleaned up; a missing dataset and missing credentials."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

pytest.importorskip("google.cloud.aiplatform")

from imgcls.config import parse_config
from imgcls.data.sources import list_images
from imgcls.errors import AuthError, ConfigError, DataError
from tests.fakes.vertex_fixtures import COLOURS, ML_USES, fixture_vertex_fake, fixture_vertex_images  # noqa: F401

STAGING = "gs://imgcls-staging/imgcls"
SPLITS = {"training": "train", "validation": "validation", "test": "test"}


@pytest.fixture
def vertex_env(vertex_fake, monkeypatch):
    vertex_fake.gcs.create_bucket("imgcls-staging")
    monkeypatch.setenv("IMGCLS_VERTEX_ANONYMOUS", "1")
    return vertex_fake


def config(fake, staging: str | None = STAGING):
    text = (f"name: src\nprovider: local\ndataset:\n  source: vertex:1\nvertex:\n  project: test-project\n"
            f"  api_endpoint: {fake.url}\n" + (f"  staging_bucket: {staging}\n" if staging else ""))
    return parse_config(text)


def make_dataset(images, source: str, multilabel: bool = False):
    from google.cloud import aiplatform
    schema = aiplatform.schema.dataset.ioformat.image
    return aiplatform.ImageDataset.create(
        display_name="flowers", gcs_source=[source],
        import_schema_uri=schema.multi_label_classification if multilabel else schema.single_label_classification)


def test_single_label_dataset_lists_every_image_with_label_split_and_bytes(vertex_env, vertex_images):
    dataset = make_dataset(vertex_images, vertex_images.jsonl)
    images, task = list_images(f"vertex:{dataset.name}", config(vertex_env))
    assert task == "multiclass"
    expected = {f"gs://{vertex_images.bucket}/images/{label}_{i}.png": (label, SPLITS[use])
                for label in COLOURS for i, use in enumerate(ML_USES)}
    assert {i.uri: (i.labels, i.split) for i in images} == {u: ((label,), s) for u, (label, s) in expected.items()}
    for image in images:
        label, _ = expected[image.uri]
        i = int(image.uri.rsplit("_", 1)[1].split(".")[0])
        assert hashlib.sha256(image.read()).digest() == hashlib.sha256(vertex_images.images[label][i]).digest()
    # the export went under the staging bucket and is gone once read
    exports = [r for r in vertex_env.requests if r.path.endswith(":export")]
    assert len(exports) == 1 and exports[0].body["exportConfig"]["gcsDestination"]["outputUriPrefix"] == \
        f"{STAGING}/exports/{dataset.name}/"
    assert vertex_env.gcs.list(f"{STAGING}/") == []


def test_multilabel_dataset_and_full_resource_name(vertex_env, vertex_images):
    dataset = make_dataset(vertex_images, vertex_images.multilabel_jsonl, multilabel=True)
    images, task = list_images(f"vertex:{dataset.resource_name}", config(vertex_env))
    assert task == "multilabel"
    by_uri = {i.uri: i for i in images}
    assert len(by_uri) == 18
    assert by_uri[f"gs://{vertex_images.bucket}/images/both_5.png"].labels in (("green", "red"), ("red", "green"))
    assert by_uri[f"gs://{vertex_images.bucket}/images/red_4.png"].labels == ("red",)
    assert {i.split for i in images} == {"train", "validation", "test"}


def test_untagged_images_are_listed_without_labels_and_no_ml_use_means_no_split(vertex_env, vertex_images):
    from google.cloud import aiplatform
    bucket = vertex_images.bucket
    vertex_env.gcs.write(f"gs://{bucket}/plain.csv",
                         f"gs://{bucket}/images/red_0.png,red\ngs://{bucket}/images/blue_1.png\n".encode())
    dataset = aiplatform.ImageDataset.create(
        display_name="plain", gcs_source=[f"gs://{bucket}/plain.csv"],
        import_schema_uri=aiplatform.schema.dataset.ioformat.image.single_label_classification)
    images, task = list_images(f"vertex:{dataset.name}", config(vertex_env))
    assert task == "multiclass"
    assert sorted((i.uri.rsplit("/", 1)[1], i.labels, i.split) for i in images) == [
        ("blue_1.png", (), None), ("red_0.png", ("red",), None)]


def test_missing_dataset_is_a_data_error_naming_it(vertex_env):
    with pytest.raises(DataError) as err:
        list_images("vertex:987654321", config(vertex_env))
    assert err.value.exit_code == 4
    assert "vertex:987654321" in err.value.message and "datasets/987654321" in err.value.message
    with pytest.raises(DataError, match="not a Vertex AI dataset id"):
        list_images("vertex:flowers", config(vertex_env))


def test_no_staging_bucket_is_a_config_error_before_any_export(vertex_env, vertex_images):
    dataset = make_dataset(vertex_images, vertex_images.csv)
    with pytest.raises(ConfigError, match="vertex.staging_bucket") as err:
        list_images(f"vertex:{dataset.name}", config(vertex_env, staging=None))
    assert err.value.exit_code == 3
    assert not [r for r in vertex_env.requests if r.path.endswith(":export")]


def test_no_credentials_is_an_auth_error(vertex_env, monkeypatch, tmp_path):
    monkeypatch.delenv("IMGCLS_VERTEX_ANONYMOUS")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing-key.json"))
    before = len(vertex_env.requests)
    with pytest.raises(AuthError) as err:
        list_images("vertex:1", config(vertex_env))
    assert err.value.exit_code == 5 and "GOOGLE_APPLICATION_CREDENTIALS" in err.value.hint
    assert len(vertex_env.requests) == before


def test_cli_dataset_import_keeps_the_ml_use_splits_and_the_bytes(vertex_env, vertex_images, tmp_path):
    from click.testing import CliRunner

    from imgcls.cli import main
    dataset = make_dataset(vertex_images, vertex_images.csv)
    cfg = tmp_path / "vertex-src.yaml"
    cfg.write_text(f"name: flowers\nprovider: local\ndataset:\n  source: unused\nvertex:\n  project: test-project\n"
                   f"  api_endpoint: {vertex_env.url}\n  staging_bucket: {STAGING}\n")
    result = CliRunner().invoke(main, ["--json", "dataset-import", f"vertex:{dataset.name}", "-c", str(cfg)])
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)["run"]
    rows = [json.loads(x) for x in (tmp_path / ".imgcls" / "runs" / run / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 18
    for row in rows:
        name = row["source_uri"].rsplit("/", 1)[1]                  # red_4.png
        label, i = name[:-4].split("_")
        assert row["labels"] == [label] and row["split"] == SPLITS[ML_USES[int(i)]]
        assert Path(row["uri"]).read_bytes() == vertex_images.images[label][int(i)]

    result = CliRunner().invoke(main, ["--json", "dataset-import", "vertex:404", "-c", str(cfg)])
    assert result.exit_code == 4 and "datasets/404" in json.loads(result.stdout)["message"]


def test_a_staging_bucket_that_does_not_exist_is_a_config_error(vertex_env, vertex_images):
    dataset = make_dataset(vertex_images, vertex_images.csv)
    with pytest.raises(ConfigError, match="gs://no-such-bucket/x/exports/") as err:
        list_images(f"vertex:{dataset.name}", config(vertex_env, staging="gs://no-such-bucket/x"))
    assert "Bucket no-such-bucket does not exist" in err.value.message and "vertex.staging_bucket" in err.value.hint

"""`azureml:` as a source: image data assets made through azure-ai-ml as the AutoML notebooks make them (the
images uploaded as a uri_folder asset, JSON lines pointing into it, an MLTable folder registered on top), in
the fake workspace, listed through our source: every image with its labels, the bytes as uploaded; a
multi-label uri_file asset; versions and @latest; a missing asset; no working credential."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

pytest.importorskip("azure.ai.ml")
pytest.register_assert_rewrite("tests.fakes.azureml_fixtures")  # imported below and loaded as a plugin

from imgcls.config import parse_config
from imgcls.data.sources import list_images
from imgcls.errors import AuthError, DataError
from tests.fakes.azureml_fixtures import MULTILABEL_COMBOS, make_band_image, make_fridge_dataset

pytest_plugins = ["tests.fakes.azureml_fixtures"]  # azureml_fake, ml_client

MLTABLE = ("paths:\n  - file: ./{0}\ntransformations:\n  - read_json_lines:\n        encoding: utf8\n"
           "        invalid_lines: error\n        include_path_column: false\n  - convert_column_types:\n"
           "      - columns: image_url\n        column_type: stream_info\n")


@pytest.fixture
def workspace(azureml_fake, monkeypatch):
    monkeypatch.setenv("IMGCLS_AZURE_CREDENTIAL", "tests.fakes.azureml:FakeCredential")
    return azureml_fake


def config(fake):
    ws = fake.workspace
    return parse_config(f"name: src\nprovider: local\ndataset:\n  source: azureml:x@latest\nazureml:\n"
                        f"  subscription_id: {ws.subscription_id}\n  resource_group: {ws.resource_group}\n"
                        f"  workspace: {ws.name}\n")


def upload_images(ml_client, root: Path, name: str) -> str:
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import Data
    return ml_client.data.create_or_update(Data(path=str(root), type=AssetTypes.URI_FOLDER, name=name)).path


def register_mltable(ml_client, folder: Path, name: str, rows: list[dict]) -> None:
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import Data
    folder.mkdir(parents=True)
    (folder / "annotations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "MLTable").write_text(MLTABLE.format("annotations.jsonl"))
    ml_client.data.create_or_update(Data(path=str(folder), type=AssetTypes.MLTABLE, name=name))


def test_mltable_asset_lists_every_image_with_its_label_and_bytes(workspace, ml_client, tmp_path):
    root = make_fridge_dataset(tmp_path, per_class=2)
    base = upload_images(ml_client, root, "fridge-images")
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg"))
    # The service answers a data asset's path with the workspace in it (the notebooks' image_url are built on
    # that); the short form is what the SDK sends. Half the lines use each.
    ws = workspace.workspace
    long = base.replace("azureml://", f"azureml://subscriptions/{ws.subscription_id}/resourcegroups/"
                                      f"{ws.resource_group}/workspaces/{ws.name}/", 1)
    rows = [{"image_url": (long if k % 2 else base) + f, "label": f.split("/")[0]} for k, f in enumerate(files)]
    register_mltable(ml_client, tmp_path / "v1", "fridge-train", rows[:3])
    register_mltable(ml_client, tmp_path / "v2", "fridge-train", rows)

    images, task = list_images("azureml:fridge-train@latest", config(workspace))
    assert task == "multiclass"
    assert [(i.uri, i.labels, i.split) for i in images] == [(r["image_url"], (r["label"],), None) for r in rows]
    for image, f in zip(images, files):
        assert hashlib.sha256(image.read()).digest() == hashlib.sha256((root / f).read_bytes()).digest()
    assert base.startswith("azureml://datastores/workspaceblobstore/paths/")

    first, _ = list_images("azureml:fridge-train:1", config(workspace))
    assert [i.uri for i in first] == [r["image_url"] for r in rows[:3]]


def test_multilabel_uri_file_asset(workspace, ml_client, tmp_path):
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import Data
    root = tmp_path / "multi"
    root.mkdir()
    truth = {}
    for i, labels in enumerate(MULTILABEL_COMBOS[:6]):
        (root / f"{i}.jpg").write_bytes(make_band_image(labels))
        truth[f"{i}.jpg"] = labels
    base = upload_images(ml_client, root, "multi-images")
    lines = tmp_path / "multi.jsonl"
    lines.write_text("".join(json.dumps({"image_url": base + n, "label": labels}) + "\n" for n, labels in truth.items())
                     + json.dumps({"image_url": base + "untagged.jpg", "label": []}) + "\n")
    ml_client.data.create_or_update(Data(path=str(lines), type=AssetTypes.URI_FILE, name="multi", version="3"))

    images, task = list_images("azureml:multi@latest", config(workspace))
    assert task == "multilabel"
    assert {i.uri.rsplit("/", 1)[1]: i.labels for i in images} == {
        **{n: tuple(labels) for n, labels in truth.items()}, "untagged.jpg": ()}
    assert any(len(i.labels) == 2 for i in images)
    assert images[0].read() == (root / "0.jpg").read_bytes()


def test_missing_asset_is_a_data_error_naming_it(workspace, ml_client):
    for ref in ("azureml:no-such-data@latest", "azureml:no-such-data:2"):
        with pytest.raises(DataError) as err:
            list_images(ref, config(workspace))
        assert err.value.exit_code == 4 and "no-such-data" in err.value.message, ref
    with pytest.raises(DataError, match="not an Azure ML data asset reference"):
        list_images("azureml:name-without-version", config(workspace))


def test_no_working_credential_is_an_auth_error(workspace, monkeypatch):
    monkeypatch.setenv("IMGCLS_AZURE_CREDENTIAL", "tests.fakes.azureml:ExpiredCredential")
    with pytest.raises(AuthError) as err:
        list_images("azureml:fridge-train@latest", config(workspace))
    assert err.value.exit_code == 5 and "AADSTS7000222" in err.value.message


def test_uri_folder_asset_and_a_datastore_path_to_an_mltable_with_folder_and_pattern(workspace, ml_client, tmp_path):
    root = make_fridge_dataset(tmp_path, per_class=1)
    base = upload_images(ml_client, root, "fridge-images")
    rows = {label: {"image_url": f"{base}{label}/0.jpg", "label": label} for label in ("can", "carton", "milk_bottle")}
    table = tmp_path / "table"
    (table / "parts").mkdir(parents=True)
    (table / "more").mkdir()
    (table / "parts" / "a.jsonl").write_text(json.dumps(rows["can"]) + "\n")
    (table / "more" / "b.jsonl").write_text(json.dumps(rows["carton"]) + "\n")
    (table / "more" / "c.jsonl").write_text(json.dumps(rows["milk_bottle"]) + "\n")
    (table / "more" / "notes.txt").write_text("not JSON lines\n")
    (table / "MLTable").write_text("paths:\n  - folder: ./parts\n  - pattern: ./more/b*.jsonl\n"
                                   "transformations:\n  - read_json_lines:\n      encoding: utf8\n")
    folder = upload_images(ml_client, table, "table-folder")

    images, _ = list_images(folder, config(workspace))        # azureml://datastores/…/paths/…/ (an MLTable folder)
    assert [i.labels for i in images] == [("can",), ("carton",)]
    images, _ = list_images("azureml:table-folder@latest", config(workspace))   # uri_folder: every .jsonl under it
    assert sorted(i.labels for i in images) == [("can",), ("carton",), ("milk_bottle",)]
    assert images[0].read() == (root / images[0].labels[0] / "0.jpg").read_bytes()


def test_cli_dataset_import_of_the_latest_asset(workspace, ml_client, tmp_path):
    from click.testing import CliRunner

    from imgcls.cli import main
    root = make_fridge_dataset(tmp_path, per_class=2)
    base = upload_images(ml_client, root, "fridge-images")
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg"))
    register_mltable(ml_client, tmp_path / "v1", "fridge-train",
                     [{"image_url": base + f, "label": f.split("/")[0]} for f in files])
    ws = workspace.workspace
    cfg = tmp_path / "azureml-src.yaml"
    cfg.write_text(f"name: fridge\nprovider: local\ndataset:\n  source: unused\nazureml:\n"
                   f"  subscription_id: {ws.subscription_id}\n  resource_group: {ws.resource_group}\n"
                   f"  workspace: {ws.name}\n")
    result = CliRunner().invoke(main, ["--json", "dataset-import", "azureml:fridge-train@latest", "-c", str(cfg)])
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)["run"]
    rows = [json.loads(x) for x in (tmp_path / ".imgcls" / "runs" / run / "manifest.jsonl").read_text().splitlines()]
    assert sorted(r["source_uri"] for r in rows) == [base + f for f in files]
    for row in rows:
        f = row["source_uri"][len(base):]
        assert row["labels"] == [f.split("/")[0]] and Path(row["uri"]).read_bytes() == (root / f).read_bytes()

    result = CliRunner().invoke(main, ["--json", "dataset-import", "azureml:fridge-test@latest", "-c", str(cfg)])
    assert result.exit_code == 4 and "fridge-test" in json.loads(result.stdout)["message"]

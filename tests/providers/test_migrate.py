"""`imgcls migrate`: a Custom Vision project (made with Microsoft's SDK against the fake) moved to another
provider: its images imported, a model trained and evaluated there, the old published iteration adopted
and evaluated on the same test images, and the comparison of the two, both sides from the fakes."""
from __future__ import annotations

import json

import pytest

from imgcls import api
from imgcls.errors import ConfigError, UsageError
from imgcls.runs import Run
from tests.fakes.azureml_fixtures import azureml_fake  # noqa: F401 (a fixture)
from tests.providers.test_adopt import cli, cv, cv_published, data  # noqa: F401 (fixtures)


def test_migrate_to_azureml_compares_the_old_iteration_with_the_new_model(cv, azureml_fake, tmp_path,  # noqa: F811
                                                                          monkeypatch):
    ws = azureml_fake.workspace
    monkeypatch.setenv("IMGCLS_AZURE_CREDENTIAL", "tests.fakes.azureml:FakeCredential")
    monkeypatch.chdir(tmp_path)
    project_id, iteration_id = cv_published(cv, "production", per_tag=10)
    config = tmp_path / "shop.yaml"
    config.write_text(f"name: shop\nprovider: azureml\ndataset:\n  source: elsewhere/\nevaluate:\n  report: false\n"
                      f"azureml:\n  subscription_id: {ws.subscription_id}\n  resource_group: {ws.resource_group}\n"
                      f"  workspace: {ws.name}\n")

    result = api.migrate("customvision:shop", None, config)
    old, new = Run(tmp_path / ".imgcls/runs" / result["old"]["run"]), Run(tmp_path / ".imgcls/runs" / result["new"]["run"])
    assert (old.provider, new.provider) == ("customvision", "azureml") and not result["config_written"]
    assert result["old"]["adopted"] == f"customvision:{project_id}/production"
    assert old.resource("iteration")["id"] == iteration_id and not old.resource("iteration")["ours"]
    assert new.resource("job") is not None                         # trained in the Azure ML fake
    manifest = [json.loads(x) for x in new.file("manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == 30 and all(m["source_uri"].startswith(f"customvision:{project_id}/images/") for m in manifest)
    n_test = sum(m["split"] == "test" for m in manifest)
    table = result["comparison"]
    assert [r["name"] for r in table["table"]] == [old.id, new.id] and table["n_images"] == n_test > 0
    assert result["old"]["metrics"]["n_images"] == result["new"]["metrics"]["n_images"] == n_test
    assert "optimistic" in result["warnings"][0]

    api.down(run_id=old.id)
    (project,) = cv.state.projects.values()
    assert [it.publish_name for it in project.iterations.values()] == ["production"] and len(project.images) == 30


def test_migrate_writes_the_config_it_needs_and_refuses_what_it_cannot_move(cv, tmp_path):  # noqa: F811
    cv_published(cv, "production", per_tag=6)
    with pytest.raises(UsageError, match="name the provider with --to"):
        api.migrate("customvision:shop", None, tmp_path / "new.yaml")
    with pytest.raises(UsageError, match="not one"):
        api.migrate("gs://bucket/flowers", "local", tmp_path / "new.yaml")
    with pytest.raises(UsageError, match="already is"):
        api.migrate("customvision:shop", "customvision", tmp_path / "cv.yaml")
    # vertex's starter section has placeholders this machine cannot fill: the error says to edit the file
    with pytest.raises(ConfigError, match="which migrate has just written"):
        api.migrate("customvision:shop", "vertex", tmp_path / "vertex.yaml")
    text = (tmp_path / "vertex.yaml").read_text()
    assert "provider: vertex" in text and "source: customvision:shop" in text and "\nvertex:\n" in text
    assert not (tmp_path / ".imgcls").exists()                       # nothing imported, nothing created


def test_migrate_to_local_from_the_command_line(cv, tmp_path):  # noqa: F811
    cv_published(cv, "production", per_tag=6)
    code, out, err = cli("migrate", "customvision:shop/production", "--to", "local", "-c", "new.yaml",
                         "--set", "evaluate.report=false", cwd=tmp_path)
    assert code == 0, err
    assert out["config_written"] and "provider: local" in (tmp_path / "new.yaml").read_text()
    assert out["new"]["provider"] == "local" and out["comparison"]["n_images"] == out["old"]["metrics"]["n_images"]
    assert "optimistic" in err                                       # the warning reaches stderr under --json too

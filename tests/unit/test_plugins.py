"""Providers and import formats are plug-ins: a provider brings its config section, a package its format."""
from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

import imgcls.config as config_mod
from imgcls.config import Section, parse_config, schema
from imgcls.data import formats, importers
from imgcls.errors import ConfigError, MissingDependency, UsageError
from imgcls.overrides import check_override
from imgcls.providers import registry
from imgcls.providers.local.provider import LocalProvider


class PlugConfig(Section):
    region: str = Field("north", description="where")
    size: int = Field(1, ge=1)


class PlugProvider(LocalProvider):
    name = "plug"
    settings_model = PlugConfig
    requires = ()


@pytest.fixture
def plug():
    registry.register("plug", PlugProvider)
    config_mod.composed.cache_clear()
    yield
    registry.providers.unregister("plug")
    config_mod.composed.cache_clear()


def doc(extra: str, provider: str = "plug") -> str:
    return f"name: t\nprovider: {provider}\ndataset:\n  source: d\n{extra}"


def test_a_provider_section_is_validated_by_its_model(plug):
    cfg = parse_config(doc("plug:\n  region: south\n"))
    assert cfg.plug.region == "south" and cfg.plug.size == 1
    with pytest.raises(ConfigError) as err:
        parse_config(doc("plug:\n  regoin: south\n"), "c.yaml")
    assert "c.yaml:6: unknown key 'plug.regoin' (did you mean 'plug.region'?)" in err.value.message
    with pytest.raises(ConfigError) as err:
        parse_config(doc("plug:\n  size: 0\n"), "c.yaml")
    assert "c.yaml:6: 'plug.size'" in err.value.message


def test_unknown_section_suggests_an_installed_provider(plug):
    with pytest.raises(ConfigError) as err:
        parse_config(doc("plg:\n  region: south\n"), "c.yaml")
    assert "c.yaml:5: unknown key 'plg' (did you mean 'plug'?)" in err.value.message


def test_sections_of_other_providers_are_validated_and_defaulted(plug):
    cfg = parse_config(doc("plug:\n  size: 3\n", provider="local"))
    assert cfg.plug.size == 3 and cfg.local.batch_size == 32
    assert cfg.vertex.location == "us-central1"        # not written, not selected: its defaults
    assert "vertex" not in cfg.model_dump()              # … and not written to the run's copy
    with pytest.raises(AttributeError):
        cfg.no_such_section  # noqa: B018


def test_set_override_and_schema_know_the_section(plug):
    assert check_override("plug.size=4") == (("plug", "size"), 4)
    with pytest.raises(UsageError, match="did you mean 'plug.size'"):
        check_override("plug.sise=4")
    props = schema()["properties"]
    assert "plug" in props and {"vertex", "customvision", "azureml", "local"} <= set(props)
    cfg = parse_config(doc(""), overrides=["plug.region=east"])
    assert cfg.plug.region == "east"


def test_missing_sdk_module_names_the_extra(plug):
    class Needy(PlugProvider):
        requires = ("no_such_sdk_module_xyz",)
    registry.register("needy", Needy)
    try:
        with pytest.raises(MissingDependency) as err:
            registry.get("needy")
        assert "imgcls[needy]" in err.value.hint
        assert registry.settings_model("needy") is PlugConfig   # settings never need the SDK
        assert {r["name"]: r for r in registry.describe()}["needy"]["installed"] is False
    finally:
        registry.providers.unregister("needy")


def test_config_module_names_no_vendor():
    text = Path(config_mod.__file__).read_text().lower()
    for vendor in ("vertex", "customvision", "custom vision", "azureml", "azure"):
        assert vendor not in text, vendor


def test_an_import_format_is_a_plugin(tmp_path):
    def read_tsv(path):
        return [{"uri": str(path.parent / a), "labels": [b], "split": None, "line": n}
                for n, (a, b) in enumerate((l.split("\t") for l in path.read_text().split("\n") if l), 1)]
    from imgcls.testing import make_image
    make_image(tmp_path / "a.jpg", (200, 0, 0), 1)
    make_image(tmp_path / "b.jpg", (0, 0, 200), 2)
    (tmp_path / "d.tsv").write_text("a.jpg\tred\nb.jpg\tblue\n")
    formats.formats.register("tsv", formats.ImportFormat("tsv", read_tsv, suffixes=(".tsv",)))
    try:
        assert importers.detect_format(tmp_path / "d.tsv") == "tsv"
        df = importers.load(str(tmp_path / "d.tsv"))
        assert sorted(l for ls in df["labels"] for l in ls) == ["blue", "red"]
        assert parse_config("name: t\ndataset:\n  source: d\n  format: tsv\n").dataset.format == "tsv"
    finally:
        formats.formats.unregister("tsv")
    with pytest.raises(ConfigError, match="did you mean 'vertex-csv'"):
        parse_config("name: t\ndataset:\n  source: d\n  format: vertex-cvs\n")


def test_a_broken_plugin_hides_no_other(plug):
    registry.register("broken", "no_such_module_abc.provider:Broken")
    try:
        assert "plug" in schema()["properties"] and "broken" not in schema()["properties"]
        rows = {r["name"]: r for r in registry.describe()}
        assert "no_such_module_abc" in rows["broken"]["error"] and rows["broken"]["installed"] is False
        assert rows["plug"]["installed"]
        with pytest.raises(MissingDependency):
            registry.get("broken")
    finally:
        registry.providers.unregister("broken")

"""An out-of-tree provider (tests/plugin_example, its own package) found through its own entry point and
passing the same contract suite as the built-ins, through the kit."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import tomllib

from imgcls import plugins
from imgcls.testing import ProviderContract

PACKAGE = Path(__file__).resolve().parents[1] / "plugin_example"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The package as pip would leave it: its sources importable and a *.dist-info with the entry points
    its pyproject.toml declares (an importlib.metadata distribution), without a pip run."""
    meta = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]
    site = tmp_path_factory.mktemp("site")
    info = site / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n"
        for group, eps in meta["entry-points"].items()))
    paths = [str(site), str(PACKAGE / "src")]
    sys.path[:0] = paths
    plugins.refresh()
    yield meta
    for p in paths:
        sys.path.remove(p)
    plugins.refresh()


class FolderHarness:
    provider = "example"

    def __init__(self, root: Path):
        self.root = root
        self.config = f"example:\n  service: {root}\n  train_seconds: 0.3\n"

    def leftovers(self, run) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*.json"))


class TestExampleProvider(ProviderContract):
    @pytest.fixture
    def harness(self, installed, tmp_path):
        return FolderHarness(tmp_path / "service")


def test_found_through_its_entry_point(installed, tmp_path, monkeypatch):
    from imgcls.config import parse_config, schema
    from imgcls.errors import ConfigError
    from imgcls.providers import registry

    assert "example" in registry.names()
    cls = registry.get("example")
    assert cls.__module__ == "imgcls_example.provider"
    assert "example" in schema()["properties"]
    assert "example" in {row["name"] for row in registry.describe()}
    text = "name: t\nprovider: example\ndataset:\n  source: d\nexample:\n  servce: /x\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text, "p.yaml")
    assert "p.yaml:6: unknown key 'example.servce' (did you mean 'example.service'?)" in err.value.message
    cfg = parse_config(text.replace("servce", "service"), "p.yaml")
    assert cfg.example.service == "/x" and cfg.example.train_seconds == 0.3

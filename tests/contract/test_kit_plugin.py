"""The kit's pytest plugin, loaded as pytest loads it for a provider's package, gives its fixtures."""
from __future__ import annotations

pytest_plugins = ["pytester"]


def test_plugin_fixtures(pytester, monkeypatch):
    # As the pytest11 entry point would, but explicitly: the installed imgcls may predate the entry point.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(test_mine="""
        import os
        from pathlib import Path

        def test_it(imgcls_workdir, imgcls_dataset):
            assert Path.cwd() == imgcls_workdir and os.environ["IMGCLS_CACHE"].startswith(str(imgcls_workdir))
            root = imgcls_dataset({"red": 2, "blue": 3})
            assert sorted(p.parent.name for p in root.rglob("*.jpg")) == ["blue"] * 3 + ["red"] * 2
    """)
    result = pytester.runpytest_inprocess("-p", "imgcls.testing.plugin", "-q")
    result.assert_outcomes(passed=1)

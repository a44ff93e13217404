"""The evaluation report of a real local run, loaded in headless Chromium: no console errors, plots shown."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import imgcls.api as api
from tests.conftest import make_dataset

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000"]
# After load, count the images that decoded; the DOM dump then carries the count.
PROBE = ("<script>window.addEventListener('load',()=>{const ok=[...document.images]"
         ".filter(i=>i.complete&&i.naturalWidth>0).length;document.body.setAttribute('data-loaded-images',ok);"
         "document.body.setAttribute('data-all-images',document.images.length);});</script>")


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # Chromium brings its own allocator
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'chrome'}", *args],
                          capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture(scope="module")
def local_report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    data = make_dataset(tmp / "data", {"red": 10, "green": 10, "blue": 10}, size=(96, 72))
    cfg_path = tmp / "run.yaml"
    cfg_path.write_text(f"name: browser\ndataset:\n  source: {data}\nruns_dir: {tmp / 'runs'}\n"
                        "split: {validation: 0.2, test: 0.3}\n")
    _, evaluation = api.evaluate(api.load(cfg_path))
    return Path(evaluation.report)


def test_report_loads_without_console_errors_and_shows_plots(local_report, tmp_path):
    if CHROMIUM is None:
        if os.environ.get("IMGCLS_REQUIRE_BROWSER"):
            pytest.fail("chromium is required here (IMGCLS_REQUIRE_BROWSER is set) but not installed")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    page = tmp_path / "probe.html"
    page.write_text(local_report.read_text().replace("</body>", PROBE + "</body>"))
    proc = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [l for l in proc.stderr.splitlines() if ":CONSOLE" in l]
    assert console == [], console
    loaded = int(re.search(r'data-loaded-images="(\d+)"', proc.stdout).group(1))
    total = int(re.search(r'data-all-images="(\d+)"', proc.stdout).group(1))
    assert total >= 3 and loaded == total  # the plots and every thumbnail decoded
    for plot in ("confusion", "threshold"):
        assert plot in proc.stdout.lower()

    shot = tmp_path / "report.png"
    proc = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,1600", local_report.as_uri())
    assert shot.exists() and shot.stat().st_size > 10_000, proc.stderr[-2000:]

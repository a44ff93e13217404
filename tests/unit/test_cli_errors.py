"""Bad input through the real CLI: one clear message, the documented exit code, no traceback, nothing written."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_dataset, write_config

ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def imgcls(*args, cwd=None, stdin=None):
    proc = subprocess.run([sys.executable, "-m", "imgcls.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=ENV, input=stdin, timeout=120)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    return proc


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


@pytest.fixture
def messy(tmp_path):
    """A corrupt JPEG, a 0-byte file, a label with 3 images and a duplicate pair."""
    root = make_dataset(tmp_path / "messy", {"cats": 8, "dogs": 8, "owls": 3})
    (root / "cats" / "broken.jpg").write_bytes((root / "cats" / "cats_000.jpg").read_bytes()[:300])
    (root / "dogs" / "empty.jpg").write_bytes(b"")
    (root / "dogs" / "twin.jpg").write_bytes((root / "dogs" / "dogs_001.jpg").read_bytes())
    return root


def test_validate_reports_all_four_for_customvision(messy, tmp_path):
    cfg = write_config(tmp_path / "run.yaml", messy, provider="customvision")
    before = snapshot(tmp_path)
    proc = imgcls("validate", "-c", str(cfg), cwd=tmp_path)
    assert proc.returncode == 4, proc.stderr
    out = proc.stdout + proc.stderr
    assert "broken.jpg" in out and "corrupt-image" in out
    assert "empty.jpg" in out and "0 bytes" in out
    assert "'owls' has 3 images" in out and "at least 5" in out
    assert "twin.jpg" in out and "dogs_001.jpg" in out and "duplicate" in out
    assert snapshot(tmp_path) == before  # wrote nothing


def test_validate_json_and_fix(messy, tmp_path):
    cfg = write_config(tmp_path / "run.yaml", messy, provider="customvision")
    proc = imgcls("--json", "validate", "-c", str(cfg), cwd=tmp_path)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 4 and doc["errors"] >= 3
    assert {f["code"] for f in doc["findings"]} >= {"corrupt-image", "empty-file", "too-few-images", "duplicate"}
    user_files = snapshot(messy)
    proc = imgcls("--json", "validate", "--fix", "-c", str(cfg), cwd=tmp_path)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0, doc
    assert doc["errors"] == 0 and any(d.endswith("twin.jpg") for d in doc["dropped"])
    assert snapshot(messy) == user_files  # the user's files are untouched
    assert Path(doc["fixed_manifest"]).is_file()
    again = json.loads(imgcls("--json", "validate", "--fix", "-c", str(cfg), cwd=tmp_path).stdout)
    assert again["run"] == doc["run"] and again["dropped"] == doc["dropped"]  # the same fix: the same run
    assert len(list((tmp_path / ".imgcls" / "runs").iterdir())) == 1


@pytest.mark.parametrize("body,needle", [
    ("name: t\ndataset: [oops\n", "YAML syntax error"),
    ("name: t\nepocs: 3\ndataset:\n  source: d\n", "unknown key 'epocs'"),
    ("name: t\ndataset:\n  source: d\nsplit:\n  seed: lots\n", "split.seed"),
    ("name: t\ndataset:\n  source: ${IMGCLS_UNSET_VAR}\n", "IMGCLS_UNSET_VAR"),
])
def test_config_errors_exit_3_with_line(tmp_path, body, needle):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(body)
    proc = imgcls("validate", "-c", str(cfg), cwd=tmp_path)
    assert proc.returncode == 3
    assert needle in proc.stderr and f"{cfg}:" in proc.stderr


def test_unknown_provider_exits_2_with_suggestion(images, tmp_path):
    cfg = write_config(tmp_path / "run.yaml", images)
    proc = imgcls("validate", "-c", str(cfg), "--provider", "vertx", cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown provider 'vertx'" in proc.stderr and "did you mean 'vertex'" in proc.stderr
    assert "customvision" in proc.stderr and "azureml" in proc.stderr


def test_unknown_provider_json_error_document(images, tmp_path):
    cfg = write_config(tmp_path / "run.yaml", images)
    proc = imgcls("--json", "train", "-c", str(cfg), "--provider", "nope", cwd=tmp_path)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 2 and doc["error"] == "UsageError" and doc["exit_code"] == 2


def test_missing_dataset_exits_4(tmp_path):
    cfg = write_config(tmp_path / "run.yaml", tmp_path / "nowhere")
    proc = imgcls("validate", "-c", str(cfg), cwd=tmp_path)
    assert proc.returncode == 4 and "dataset source not found" in proc.stderr


def test_missing_config_exits_3(tmp_path):
    proc = imgcls("train", "-c", str(tmp_path / "absent.yaml"), cwd=tmp_path)
    assert proc.returncode == 3 and "config file not found" in proc.stderr


def test_unknown_run_exits_2(images, tmp_path):
    cfg = write_config(tmp_path / "run.yaml", images)
    proc = imgcls("train", "-c", str(cfg), "--run", "no-such-run", cwd=tmp_path)
    assert proc.returncode == 2 and "no run 'no-such-run'" in proc.stderr


def test_multiclass_image_with_two_labels_is_a_data_error(tmp_path):
    make_dataset(tmp_path / "d", {"a": 6, "b": 6})
    (tmp_path / "f.csv").write_text("".join(f"{p},a\n" for p in sorted((tmp_path / "d" / "a").iterdir()))
                                    + "".join(f"{p},b\n" for p in sorted((tmp_path / "d" / "b").iterdir()))
                                    + f"{tmp_path / 'd' / 'a' / 'a_000.jpg'},a,b\n")
    cfg = write_config(tmp_path / "run.yaml", tmp_path / "f.csv")
    proc = imgcls("validate", "-c", str(cfg), cwd=tmp_path)
    assert proc.returncode == 4 and "several-labels" in proc.stdout


def test_help_imports_no_sdk_or_torch():
    code = ("import sys; from imgcls.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit: pass\n"
            "heavy = [m for m in ('torch', 'onnxruntime', 'pandas', 'google.cloud.aiplatform', 'azure.ai.ml',"
            " 'azure.cognitiveservices.vision.customvision') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV)
    assert "HEAVY []" in proc.stdout, proc.stdout


def test_providers_lists_all_with_credentials_state():
    proc = imgcls("--json", "providers")
    rows = {r["name"]: r for r in json.loads(proc.stdout)["providers"]}
    assert set(rows) >= {"local", "vertex", "customvision", "azureml"}
    assert rows["local"]["credentials"]["found"] is True
    assert rows["customvision"]["limits"]["min_images_per_label"] == 5
    assert "retire" in rows["customvision"]["capabilities"]["notice"]


def test_a_runs_dir_that_is_a_file_is_a_config_error(tmp_path):
    data = make_dataset(tmp_path / "data", {"a": 3, "b": 3}, size=(32, 32))
    (tmp_path / "runsfile").write_text("")
    cfg = write_config(tmp_path / "c.yaml", data, extra="runs_dir: runsfile\n")
    for command in ("train", "validate --fix"):
        proc = imgcls(*command.split(), "-c", str(cfg), cwd=tmp_path)
        assert proc.returncode == 3 and "the runs folder" in proc.stderr and "is a file" in proc.stderr, proc.stderr

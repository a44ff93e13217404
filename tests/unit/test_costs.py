"""Cost rails without a cloud: `plan` on every shipped config, unknown prices said as unknown, the clock
tests can move, deploy.ttl on the local endpoint (it stops itself), `down --expired` taking down only
expired endpoints, and `status --all`."""
from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from imgcls import api, clock
from imgcls.cli import main
from imgcls.errors import ConfigError
from imgcls.providers.local import process
from imgcls.runs import Run
from tests.conftest import REPO, write_config

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN",
                   "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "IMGCLS_AZURE_CREDENTIAL",
                   "IMGCLS_VERTEX_ANONYMOUS", "GOOGLE_APPLICATION_CREDENTIALS")


def _invoke(*args):
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.output


@pytest.mark.parametrize("config", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_plan_json_on_every_shipped_config_without_credentials(config, tmp_path, monkeypatch):
    text = (REPO / "configs" / config).read_text()
    for name in set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text)):   # those without a default
        monkeypatch.setenv(name, "imgcls-value")
    monkeypatch.setenv("HOME", str(tmp_path))                                 # no ~/.aws, no gcloud ADC
    for var in CREDENTIAL_VARS:
        monkeypatch.delenv(var, raising=False)
    code, out, both = _invoke("--json", "plan", "-c", str(REPO / "configs" / config))
    assert code in (0, 5), both
    plan = json.loads(out)
    est = plan["estimate_usd"]
    assert set(est) == {"total", "training", "endpoint_per_day"}
    for part in ("training", "endpoint_per_day"):                  # a figure with its basis, or null and why
        assert (est[part]["usd"] is None) == ("unknown" in est[part]), est[part]
    assert "prices_as_of" in plan and plan["creates"]
    assert not plan["quota"]["checked"] or plan["provider"] == "local"
    assert not (tmp_path / ".imgcls").exists()


def test_an_unknown_region_or_machine_is_unknown_never_guessed(images, tmp_path):
    cfg = api.load(write_config(tmp_path / "v.yaml", images, "vertex",
                                "vertex:\n  location: mars-central1\n  staging_bucket: gs://bucket/imgcls\n"))
    plan = api.plan(cfg, quota=False)
    assert plan["estimate_usd"]["training"]["usd"] is None
    assert "mars-central1" in plan["estimate_usd"]["training"]["unknown"]
    assert plan["estimate_usd"]["total"] is None and plan["prices_as_of"] == "2026-12-03"

    cfg = api.load(write_config(tmp_path / "a.yaml", images, "azureml",
                                "azureml:\n  location: eastus\n  instance_type: Standard_Z99\n"
                                "  vm_size: Standard_NC6s_v3\n"))
    est = api.plan(cfg, quota=False)["estimate_usd"]
    assert est["training"]["usd"] == round(3.06 * 0.25, 2)          # the 15 min budget on one NC6s_v3 node
    assert est["endpoint_per_day"]["usd"] is None and "Standard_Z99" in est["endpoint_per_day"]["unknown"]


def test_caps_name_both_numbers_and_a_free_provider_never_trips_one(images, tmp_path):
    cfg = api.load(write_config(tmp_path / "v.yaml", images, "vertex",
                                "train:\n  node_hours: 20\n  max_cost_usd: 50\n"
                                "vertex:\n  staging_bucket: gs://bucket/imgcls\n"))
    with pytest.raises(ConfigError) as err:
        api.check_caps(cfg, train=True)
    assert "train.max_cost_usd = $50" in err.value.message and "$69.3" in err.value.message
    api.check_caps(cfg, deploy=True)                                  # no deploy cap set: nothing to refuse
    local = api.load(write_config(tmp_path / "l.yaml", images, "local",
                                  "train:\n  max_cost_usd: 0.01\ndeploy:\n  max_cost_usd_per_day: 0.01\n"))
    api.check_caps(local, train=True, deploy=True)


@pytest.mark.parametrize("step", ["evaluate", "predict", "export"])
def test_a_step_that_must_train_first_is_held_to_the_training_cap(step, images, tmp_path):
    # No cloud here: the refusal has to come before the first call (an import would try to reach GCS).
    path = write_config(tmp_path / "v.yaml", images, "vertex",
                        "train:\n  node_hours: 20\n  max_cost_usd: 50\nvertex:\n  staging_bucket: gs://bucket/imgcls\n")
    args = {"predict": [str(next(Path(images).rglob("*.jpg")))]}.get(step, [])
    code, out, both = _invoke("--json", step, "-c", str(path), *args)
    assert code == 3, both
    error = json.loads(out)
    assert "train.max_cost_usd = $50" in error["message"] and "$69.3" in error["message"]


def test_durations_and_the_clock_tests_move(monkeypatch):
    assert clock.parse_duration("2h") == dt.timedelta(hours=2)
    assert clock.parse_duration("1d") == dt.timedelta(days=1)
    assert clock.parse_duration("90s") == dt.timedelta(seconds=90)
    for bad in ("2", "two hours", "-1h", "0m", "3y"):
        with pytest.raises(ConfigError):
            clock.parse_duration(bad)
    monkeypatch.setenv(clock.NOW_ENV, "2026-01-01T12:00:00Z")
    assert clock.now() == T0
    monkeypatch.setenv(clock.NOW_ENV, "yesterday")
    with pytest.raises(ConfigError, match="IMGCLS_NOW"):
        clock.now()


def test_a_bad_ttl_is_a_config_error_naming_its_line_or_a_usage_error_as_an_option(images, tmp_path):
    path = write_config(tmp_path / "c.yaml", images, "local", "deploy:\n  ttl: 2 hours\n")
    code, _, both = _invoke("plan", "-c", str(path))
    assert code == 3 and "c.yaml:6" in both and "deploy.ttl" in both, both
    code, _, both = _invoke("deploy", "-c", str(write_config(tmp_path / "d.yaml", images)), "--ttl", "soon")
    assert code == 2 and "--ttl = 'soon' is not a duration" in both, both
    assert not (tmp_path / ".imgcls").exists()


# -- runs with endpoints, made by hand: a real process stands in for each endpoint ------------------

def _sleeper() -> tuple[subprocess.Popen, list[str]]:
    argv = [sys.executable, "-c", "import time; time.sleep(120)"]
    return subprocess.Popen(argv), argv


def _run(root: Path, images: Path, name: str, expires: dt.datetime | None, procs: list) -> tuple[Run, dict]:
    """A local run with a deployed server (a live process) and, beside it, a training worker (another)."""
    run = Run.create(root, name, "local")
    (run.path / "config.yaml").write_text(yaml.safe_dump({"name": name, "provider": "local",
                                                          "dataset": {"source": str(images)}}))
    entries = {}
    for kind in ("process", "server"):
        proc, argv = _sleeper()
        procs.append(proc)
        entries[kind] = run.record(kind, f"pid:{proc.pid}", name=f"{kind}:{name}", url="http://127.0.0.1:9",
                                   **process.identity(proc.pid, argv))
    run.set_step("deploy", {"provider": "local", "endpoint": "http://127.0.0.1:9", "status": "serving",
                            "expires_at": clock.stamp(expires) if expires else None})
    return run, entries


def test_down_expired_takes_down_only_expired_endpoints(images, tmp_path, monkeypatch):
    root, procs = tmp_path / ".imgcls" / "runs", []
    try:
        old, old_res = _run(root, images, "old", T0 + dt.timedelta(hours=1), procs)
        later, later_res = _run(root, images, "later", T0 + dt.timedelta(hours=5), procs)
        never, never_res = _run(root, images, "never", None, procs)
        monkeypatch.setenv(clock.NOW_ENV, clock.stamp(T0 + dt.timedelta(hours=2)))

        code, out, both = _invoke("--json", "status", "--all")
        assert code == 0, both
        rows = {r["name"]: r for r in json.loads(out)["runs"]}
        assert rows["later"]["time_left"] == "3h 0m" and rows["old"]["time_left"] == "expired"
        assert rows["never"]["time_left"] is None and rows["never"]["endpoint_usd_per_day"] == 0.0
        assert json.loads(_invoke("--json", "status", "--run", later.id)[1])["time_left"] == "3h 0m"

        code, out, both = _invoke("--json", "down", "--expired")
        assert code == 0, both
        done = json.loads(out)
        assert [e["run"] for e in done["expired"]] == [old.id]
        assert [n["run"] for n in done["not_yet_expired"]] == [later.id]
        assert not process.matches(old_res["server"])                 # the expired endpoint is gone
        assert process.matches(old_res["process"])                    # its run's other resources are not
        for res in (later_res, never_res):
            assert process.matches(res["server"]) and process.matches(res["process"])
        assert Run(old.path).step("deploy") is None
        assert [r["status"] for r in Run(old.path).ledger["resources"]] == ["active", "deleted"]

        monkeypatch.setenv(clock.NOW_ENV, clock.stamp(T0 + dt.timedelta(hours=6)))    # later's turn
        code, out, _ = _invoke("--json", "down", "--expired")
        assert [e["run"] for e in json.loads(out)["expired"]] == [later.id]
        assert not process.matches(later_res["server"]) and process.matches(never_res["server"])
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_down_expired_reads_the_expiry_a_server_carries_when_the_deploy_step_is_lost(images, tmp_path,
                                                                                     monkeypatch):
    # A ledger rebuilt from its backup (or a kill between the two writes) has the server without the step.
    root, procs = tmp_path / ".imgcls" / "runs", []
    try:
        run, res = _run(root, images, "rebuilt", None, procs)
        run.drop_step("deploy")
        run.update_resource(res["server"], expires_at=clock.stamp(T0 + dt.timedelta(hours=1)))
        monkeypatch.setenv(clock.NOW_ENV, clock.stamp(T0 + dt.timedelta(hours=2)))
        code, out, both = _invoke("--json", "down", "--expired")
        assert code == 0 and [e["run"] for e in json.loads(out)["expired"]] == [run.id], both
        assert not process.matches(res["server"]) and process.matches(res["process"])
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_a_local_endpoint_with_a_ttl_records_it_and_stops_itself(images, tmp_path):
    from tests.unit.test_serve import write_artifact
    run = Run.create(tmp_path / ".imgcls" / "runs", "ttl", "local")
    (run.path / "config.yaml").write_text(yaml.safe_dump({"name": "ttl", "provider": "local",
                                                          "dataset": {"source": str(images)},
                                                          "deploy": {"port": 0}}))
    write_artifact(run.file("artifacts", "model").mkdir(parents=True) or run.file("artifacts", "model"))
    run.set_step("import", {"provider": "local", "id": "m", "images": 1, "labels": ["red"], "extra": {},
                            "complete": True})
    run.set_step("train", {"provider": "local", "model_id": "m", "status": "succeeded"})
    code, out, both = _invoke("--json", "deploy", "--run", run.id, "--detach", "--ttl", "8s")
    assert code == 0, both
    expires = json.loads(out)["expires_at"]
    (server,) = Run(run.path).resources("server")
    assert server["expires_at"] == expires == Run(run.path).step("deploy")["expires_at"]
    assert "--expires-at" in server["cmdline"]
    # Deployed again with another ttl, the running server is reused and keeps its own expiry (its timer):
    # the ledger says so rather than recording a day it will not serve.
    code, out, both = _invoke("--json", "deploy", "--run", run.id, "--detach", "--ttl", "1d")
    assert code == 0 and json.loads(out)["expires_at"] == expires and "keeps it" in both, both
    assert [r["expires_at"] for r in Run(run.path).resources("server")] == [expires]
    assert Run(run.path).step("deploy")["expires_at"] == expires
    deadline = time.monotonic() + 30
    while process.matches(server) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not process.matches(server), "the server outlived its ttl"


def test_an_expired_local_endpoint_does_not_start(monkeypatch, tmp_path, capsys):
    from imgcls.providers.local import serve
    monkeypatch.setenv(clock.NOW_ENV, clock.stamp(T0 + dt.timedelta(days=1)))
    serve.serve(tmp_path / "no-model-needed", port=0, expires_at=T0)     # returns at once, serving nothing
    assert "expired" in capsys.readouterr().err

"""Cost rails on the cloud fakes, through the real SDKs: `plan` creates nothing (its pre-flight only reads),
a cap refuses before the first request, and a deploy that fails midway leaves nothing it created."""
from __future__ import annotations

import datetime as dt
import importlib
import json

import pytest
from click.testing import CliRunner

from imgcls import api, clock
from imgcls.cli import main
from imgcls.errors import ImgclsError
from imgcls.runs import Run
from tests.conftest import make_dataset

CLOUDS = ["vertex", "customvision", "azureml", "aws"]


def _config(harness, tmp_path, train: str = "", deploy: str = "", name: str = "costs", more: str = ""):
    data = make_dataset(tmp_path / "data", {"red": 10, "green": 10, "blue": 10}, size=(96, 72))
    path = tmp_path / f"{name}.yaml"
    section = harness.config.replace("evaluate:\n  report: false\n", "")
    path.write_text(f"name: {name}\nprovider: {harness.provider}\ndataset:\n  source: {data}\n"
                    f"split:\n  validation: 0.2\n  test: 0.25\ntrain:\n  budget_minutes: 2\n{train}"
                    f"deploy:\n  min_replicas: 1\n{deploy}evaluate:\n  report: false\n{section}{more}")
    return path


def counts(provider: str, fake) -> dict:
    """Everything the fake holds that a run could have made."""
    s = fake.state
    if provider == "vertex":
        out = {k: len(getattr(s, k)) for k in ("datasets", "pipelines", "models", "endpoints", "batch_jobs")}
        out["objects"] = sum(len(b) for b in fake.gcs.buckets.values())
        return out
    if provider == "customvision":
        with fake.lock:
            projects = list(s.projects.values())
            return {"projects": len(projects), "iterations": sum(len(p.iterations) for p in projects),
                    "published": sum(1 for p in projects for i in p.iterations.values() if i.publish_name),
                    "images": sum(len(p.images) for p in projects)}
    if provider == "azureml":
        with s.lock:
            return {"computes": len(s.computes), "endpoints": len(s.endpoints), "deployments": len(s.deployments),
                    "models": len(s.models), "data": len(s.data), "jobs": len(s.jobs),
                    "blobs": sum(len(c) for c in fake.blobs.containers.values())}
    return {"projects": len(s.projects), "datasets": len(s.datasets), "versions": len(s.versions),
            "buckets": len(s.buckets), "objects": sum(len(b) for b in s.buckets.values()),
            "running": sum(1 for v in s.versions.values() if v.status in ("RUNNING", "STARTING"))}


def _requests(fake) -> list:
    seen = []
    fake.hooks.add("*", ".*", lambda method, path: seen.append(f"{method} {path}"), when="before", times=10**6)
    return seen


# provider -> (train: lines, deploy: lines, the cap named, the estimate named): the estimate is above the
# cap, or unknown (which a cap refuses too: imgcls cannot promise to stay under it)
CAPS = {
    "vertex": ("  max_cost_usd: 10\n  node_hours: 8\n", "", "train.max_cost_usd = $10", "$27.72"),
    "aws": ("", "  max_cost_usd_per_day: 50\n", "deploy.max_cost_usd_per_day = $50", "$96"),
    "customvision": ("  max_cost_usd: 5\n", "", "train.max_cost_usd = $5", "unknown"),
    "azureml": ("", "  max_cost_usd_per_day: 1\n", "deploy.max_cost_usd_per_day = $1", "unknown"),
}


@pytest.mark.parametrize("provider", CLOUDS)
def test_plan_creates_nothing_and_a_cap_refuses_before_the_first_request(provider, tmp_path, monkeypatch):
    module = importlib.import_module(f"tests.contract.harness_{provider}")
    with module.start(tmp_path, monkeypatch) as harness:
        more = ""
        if provider == "aws":            # a bucket of the user's: the pre-flight looks it up
            harness.fake.state.buckets["users-bucket"] = {}
            more = "  bucket: users-bucket\n"
        cfg = _config(harness, tmp_path, more=more)
        before = counts(provider, harness.fake)
        seen = _requests(harness.fake)
        result = CliRunner().invoke(main, ["--json", "plan", "-c", str(cfg)])
        assert result.exit_code == 0, result.output
        plan = json.loads(result.stdout)
        assert counts(provider, harness.fake) == before
        assert not (tmp_path / ".imgcls").exists()                  # not even a run folder
        assert set(plan["estimate_usd"]) == {"total", "training", "endpoint_per_day"}
        assert plan["prices_as_of"] and plan["creates"]
        assert plan["quota"]["checked"], plan["quota"]               # credentials found: it asked the fake
        assert seen and all(r.split()[0] in ("GET", "HEAD", "POST") for r in seen), seen

        train, deploy, cap, estimate = CAPS[provider]
        capped = _config(harness, tmp_path, train=train, deploy=deploy, name="capped")
        seen.clear()
        for command in (["run"], ["deploy"], ["train"] if train else ["plan"]):
            flags = ["--no-quota"] if command == ["plan"] else []     # plan's pre-flight reads; the cap is offline
            result = CliRunner().invoke(main, [*command, "-c", str(capped), *flags])
            assert result.exit_code == 3, result.output
            assert cap in result.output and estimate in result.output, result.output
        assert seen == []
        assert not (tmp_path / ".imgcls").exists()


# provider -> how its deploy fails midway: after it created something, at the next request
def _fail_vertex(fake):
    fake.faults.add("POST", r"/endpoints/[^/:]+:deployModel$", 400, times=1)


def _fail_customvision(fake):
    fake.faults.add("POST", r"/iterations/[^/]+/publish$", 400, times=1)


def _fail_azureml(fake):
    fake.faults.add("PUT", r"/onlineEndpoints/[^/]+/deployments/[^/]+$", 400, times=1, headers={})


def _fail_aws(fake):
    # the model starts; the looks at it afterwards say it is not there, as often as imgcls asks before
    # believing it (one such answer is taken for the service's eventual consistency)
    from imgcls.providers.aws.provider import GONE_CONFIRMATIONS
    fake.hooks.add("POST", r"^/StartProjectVersion$", lambda *_: fake.fail(
        "DescribeProjectVersions", "ResourceNotFoundException", times=GONE_CONFIRMATIONS), when="after")


FAIL = {"vertex": _fail_vertex, "customvision": _fail_customvision, "azureml": _fail_azureml, "aws": _fail_aws}


@pytest.mark.parametrize("provider", CLOUDS)
def test_a_deploy_failing_midway_leaves_nothing_it_created_unless_asked(provider, tmp_path, monkeypatch):
    module = importlib.import_module(f"tests.contract.harness_{provider}")
    with module.start(tmp_path, monkeypatch) as harness:
        cfg = api.load(_config(harness, tmp_path))
        run, _ = api.train(cfg)
        before = counts(provider, harness.fake)
        FAIL[provider](harness.fake)
        with pytest.raises(ImgclsError) as err:
            api.deploy(cfg, run.id)
        assert counts(provider, harness.fake) == before, err.value
        cleanup = err.value.details["cleanup"]
        assert cleanup["removed"] and not cleanup["left"] and not cleanup["failed"], cleanup
        assert "removed what the failed deploy created" in err.value.hint
        run = Run(run.path)
        assert run.step("deploy_failed")["removed"] == cleanup["removed"]
        serving = [r for r in run.ledger["resources"] if r["kind"] in ("endpoint", "deployment", "publication")]
        assert all(r["status"] not in ("active", "pending") for r in serving), serving
        assert all(r.get("started") is not True for r in run.resources("model"))

        if provider in ("vertex", "customvision"):     # (the others' the same code; kept to the CI budget)
            # --keep-on-failure: what the step made stays, marked in the ledger; the error says how to remove it
            FAIL[provider](harness.fake)
            with pytest.raises(ImgclsError) as err:
                api.deploy(cfg, run.id, keep_on_failure=True)
            assert f"imgcls down --run {run.id}" in err.value.hint
            left = [r for r in Run(run.path).live() if r.get("left_by_failed_deploy")]
            assert left and [f"{r['kind']} {r.get('id') or r.get('name')}" for r in reversed(left)] \
                == err.value.details["cleanup"]["left"]
            if provider == "vertex":                     # the service made an endpoint (customvision refused)
                assert counts(provider, harness.fake)["endpoints"] == before["endpoints"] + 1

        # then a deploy that works, with a TTL: `down --expired` (the clock moved past it) takes down what
        # serves and nothing else; the trained model stays
        _, dep = api.deploy(cfg, run.id, ttl="1h")
        expires = Run(run.path).step("deploy")["expires_at"]
        assert expires and all(r.get("expires_at") == expires for r in _serving(provider, Run(run.path)))
        monkeypatch.setenv(clock.NOW_ENV, clock.stamp(clock.parse_time(expires) + dt.timedelta(minutes=1)))
        done = api.down_expired()
        assert [e["run"] for e in done["expired"]] == [run.id] and done["expired"][0]["removed"]
        after = counts(provider, harness.fake)
        serving_now = {"vertex": ["endpoints"], "azureml": ["endpoints", "deployments"],
                       "customvision": ["published"], "aws": ["running"]}[provider]
        assert all(after[k] == 0 for k in serving_now), after
        assert {k: v for k, v in after.items() if k not in serving_now} == \
            {k: v for k, v in before.items() if k not in serving_now}
        assert _serving(provider, Run(run.path)) == [] and Run(run.path).step("deploy") is None


def _serving(provider: str, run: Run) -> list[dict]:
    if provider == "aws":
        return [r for r in run.resources("model") if r.get("started")]
    kinds = {"vertex": ("endpoint",), "azureml": ("endpoint", "deployment"), "customvision": ("publication",)}
    return [r for r in run.live() if r["kind"] in kinds[provider]]

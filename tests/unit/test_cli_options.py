"""The shared options mean the same before and after the command's name; the later one wins, --sets add up."""
from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from imgcls.cli import main
from imgcls.cli.options import State, shared_options


@pytest.fixture
def cfg(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("name: t\ndataset:\n  source: data/\ntrain:\n  preset: quick\n")
    return path


def show(*args) -> dict:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("order", [
    ["--json", "config", "show", "-c", "{cfg}"],
    ["config", "show", "--json", "-c", "{cfg}"],
    ["-c", "{cfg}", "config", "show", "--json"],
    ["--json", "-c", "{cfg}", "config", "show"],
    ["config", "--json", "show", "-c", "{cfg}"],
])
def test_json_and_config_anywhere(cfg, order):
    doc = show(*[a.replace("{cfg}", str(cfg)) for a in order])
    assert doc["name"] == "t" and doc["train"]["preset"] == "quick"


def test_later_value_wins_and_sets_add_up(cfg, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text("name: other\ndataset: {source: d}\n")
    assert show("--json", "-c", str(other), "config", "show", "-c", str(cfg))["name"] == "t"
    assert show("--json", "-p", "vertex", "config", "show", "-c", str(cfg), "-p", "azureml")["provider"] == "azureml"
    doc = show("--set", "train.preset=best", "--set", "split.seed=4", "config", "show", "--json", "-c", str(cfg),
               "--set", "split.seed=5")
    assert doc["train"]["preset"] == "best" and doc["split"]["seed"] == 5


def test_config_from_environment_and_the_command_line_beats_it(cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("IMGCLS_CONFIG", str(cfg))
    assert show("--json", "config", "show")["name"] == "t"
    other = tmp_path / "other.yaml"
    other.write_text("name: other\ndataset: {source: d}\n")
    assert show("-c", str(other), "--json", "config", "show")["name"] == "other"


def test_quiet_and_verbose_anywhere(cfg):
    seen = {}

    @main.command("probe-state", hidden=True)
    @shared_options
    @click.pass_obj
    def probe(state: State):
        seen.update(quiet=state.quiet, verbose=state.verbose, json=state.json, run=state.run_id)

    try:
        result = CliRunner().invoke(main, ["-v", "--run", "a", "probe-state", "-q", "-vv", "--run", "b"])
        assert result.exit_code == 0, result.output
        assert seen == {"quiet": True, "verbose": 3, "json": False, "run": "b"}
    finally:
        main.commands.pop("probe-state")


def test_commands_without_a_config_refuse_config_options():
    result = CliRunner().invoke(main, ["compare", "a", "b", "--set", "x=1"])
    assert result.exit_code == 2 and "--set" in result.stderr


def test_usage_error_under_json_is_one_document():
    result = CliRunner().invoke(main, ["--json", "validate", "--bogus"])
    doc = json.loads(result.stdout)
    assert result.exit_code == 2 and doc["exit_code"] == 2 and "--bogus" in doc["message"]


def test_report_follows_the_config_wherever_it_is_given(tmp_path):
    """`imgcls -c b.yaml report` is b's report, not the newest run's: the run every command picks for b."""
    import imgcls.api as api
    from tests.conftest import make_dataset

    data = make_dataset(tmp_path / "data", {"red": 4, "blue": 4}, size=(32, 32))
    configs, reports = {}, {}
    for name in ("a", "b", "c"):  # c is the newest run; a has no report
        configs[name] = tmp_path / f"{name}.yaml"
        configs[name].write_text(f"name: {name}\ndataset:\n  source: {data}\nruns_dir: {tmp_path / 'runs'}\n")
        run = api.open_run(api.load(configs[name])).run
        reports[name] = run.file("report", "report.html")
        if name != "a":
            reports[name].parent.mkdir(parents=True, exist_ok=True)
            reports[name].write_text(f"<p>{name}</p>")
    for args in (["-c", str(configs["b"]), "--json", "report"], ["--json", "report", "-c", str(configs["b"])]):
        assert show(*args)["report"] == str(reports["b"])
    assert show("--json", "report", "--runs-dir", str(tmp_path / "runs"))["report"] == str(reports["c"])
    result = CliRunner().invoke(main, ["-c", str(configs["a"]), "report"])  # a's run has none: never c's
    assert result.exit_code == 2 and "no report yet for run " + reports["a"].parent.parent.name in result.stderr, \
        result.output

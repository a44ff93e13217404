"""The Python API given what a careless caller passes: one path where a list goes, a path where a RunConfig
goes, the wrong types. Each is taken as meant or refused with a UsageError naming it, never a bare
TypeError/AttributeError from inside, and never read letter by letter."""
from __future__ import annotations

import pytest

import imgcls.api as api
from imgcls.errors import DataError, UsageError
from tests.conftest import make_dataset, write_config


@pytest.fixture
def cfg_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = make_dataset(tmp_path / "data", {"red": 4, "blue": 4}, size=(32, 32))
    return write_config(tmp_path / "c.yaml", data)


def test_a_config_path_goes_where_a_runconfig_goes(cfg_path):
    assert api.validate(cfg_path)["provider"] == "local"                       # a Path
    assert api.validate(str(cfg_path))["summary"] == api.validate(api.load(cfg_path))["summary"]
    assert api.plan(cfg=str(cfg_path))                                          # by keyword too
    with pytest.raises(UsageError, match=r"train\(\) takes a RunConfig .* not dict"):
        api.train({"name": "x"})
    with pytest.raises(UsageError, match="load.. takes a config file's path or a RunConfig, not dict"):
        api.load({"name": "x"})


def test_one_str_is_a_list_of_one(cfg_path, tmp_path):
    assert api.load(cfg_path, overrides="train.preset=best").train.preset == "best"
    with pytest.raises(DataError, match="missing.jpg"):                         # not "no such file: m"
        api.predict(cfg_path, "missing.jpg")
    with pytest.raises(UsageError, match="accuracy>=high"):                     # not "cannot read gate 'a'"
        api.evaluate(cfg_path, gates="accuracy>=high")
    with pytest.raises(UsageError, match="compare needs two or more runs"):  # not "no run 'o'"
        api.compare("only-one-run", runs_root=tmp_path)
    with pytest.raises(UsageError, match="overrides must be a list of str; it holds a NoneType"):
        api.load(cfg_path, overrides=[None])


@pytest.mark.parametrize("kwargs, message", [
    ({"inputs": [b"\xff\xd8"]}, "predict takes image paths \\(str or Path\\), not bytes"),
    ({"inputs": None}, "predict takes image paths .* not NoneType"),
    ({"inputs": ["x.jpg"], "top_k": 0}, "top_k must be a whole number of at least 1, not 0"),
    ({"inputs": ["x.jpg"], "top_k": "2"}, "top_k must be a whole number"),
    ({"inputs": ["x.jpg"], "via": "bogus"}, "via must be one of auto, offline, endpoint, not 'bogus'"),
])
def test_predict_refuses_what_it_cannot_take(cfg_path, kwargs, message):
    with pytest.raises(UsageError, match=message):
        api.predict(cfg_path, **kwargs)


@pytest.mark.parametrize("call", [lambda: api.status(None, run_id=""), lambda: api.status(None, run_id=5),
                                  lambda: api.validate(None, run_id="no-such-run")])
def test_a_bad_run_id_is_a_usage_error(cfg_path, call):
    with pytest.raises(UsageError):
        call()


def test_none_among_the_inputs_is_named(cfg_path):
    with pytest.raises(UsageError, match="not NoneType"):
        api.predict(cfg_path, ["x.jpg", None])

"""Config loading: expansion, overrides, and errors that name file:line, key path and the closest key."""
import json

import pytest

from imgcls.config import load_config, parse_config, schema
from imgcls.errors import ConfigError

BASE = "name: flowers\ndataset:\n  source: data/\n"


def err(text, **kw) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "run.yaml", **kw)
    assert exc.value.exit_code == 3
    return str(exc.value)


def test_defaults_and_types():
    cfg = parse_config(BASE)
    assert cfg.provider == "local" and cfg.task == "multiclass"
    assert cfg.train.preset == "quick" and cfg.split.test == 0.2 and not cfg.multilabel


def test_unknown_key_names_line_path_and_closest():
    msg = err(BASE + "train:\n  preset: best\n  epocs: 3\n")
    assert "run.yaml:6" in msg and "train.epocs" in msg and "train.early_stopping" not in msg
    msg = err(BASE + "tarin:\n  preset: best\n")
    assert "run.yaml:4" in msg and "did you mean 'train'" in msg


def test_close_match_inside_section():
    msg = err(BASE + "predict:\n  treshold: 0.3\n")
    assert "did you mean 'predict.threshold'" in msg and "run.yaml:5" in msg


def test_wrong_type_names_key_and_value():
    msg = err(BASE + "split:\n  seed: many\n")
    assert "run.yaml:5" in msg and "split.seed" in msg and "'many'" in msg


def test_yaml_syntax_error_has_line():
    msg = err("name: x\ndataset: [unclosed\n  source: y\n")
    assert "run.yaml:" in msg and "YAML syntax error" in msg


def test_env_expansion(monkeypatch):
    monkeypatch.setenv("DATA_DIR", "/srv/images")
    cfg = parse_config("name: a\ndataset:\n  source: ${DATA_DIR}/train\n  test_source: ${TEST_DIR:-/srv/test}\n")
    assert cfg.dataset.source == "/srv/images/train" and cfg.dataset.test_source == "/srv/test"


def test_unset_variable_is_config_error(monkeypatch):
    monkeypatch.delenv("NOPE_VAR", raising=False)
    msg = err("name: a\ndataset:\n  source: ${NOPE_VAR}\n")
    assert "run.yaml:3" in msg and "dataset.source" in msg and "NOPE_VAR" in msg


def test_set_overrides_parse_values():
    cfg = parse_config(BASE, overrides=["train.preset=best", "split.seed=7", "predict.thresholds.roses=0.7",
                                        "evaluate.gates.accuracy=0.9"])
    assert cfg.train.preset == "best" and cfg.split.seed == 7
    assert cfg.predict.thresholds == {"roses": 0.7} and cfg.evaluate.gates == {"accuracy": 0.9}


def test_bad_override_and_bad_value():
    assert "key.path=value" in err(BASE, overrides=["nonsense"])
    assert "train.preset" in err(BASE, overrides=["train.preset=fastest"])


def test_provider_override():
    assert parse_config(BASE, provider="vertex").provider == "vertex"


def test_split_fractions_must_leave_training_data():
    assert "below 1" in err(BASE + "split:\n  validation: 0.5\n  test: 0.5\n")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_schema_is_json_and_forbids_extra():
    s = schema()
    json.dumps(s)
    assert "dataset" in s["properties"] and "base_dir" not in s["properties"]
    assert s["additionalProperties"] is False


def test_example_configs_are_valid(monkeypatch):
    from pathlib import Path
    configs = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
    assert configs, "configs/ should hold an example per provider"
    for var in ("VISION_TRAINING_ENDPOINT", "VISION_TRAINING_KEY", "VISION_PREDICTION_ENDPOINT",
                "VISION_PREDICTION_KEY", "VISION_PREDICTION_RESOURCE_ID", "GOOGLE_CLOUD_PROJECT",
                "AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE", "IMGCLS_BUCKET"):
        monkeypatch.setenv(var, "x")
    for path in configs:
        load_config(path)

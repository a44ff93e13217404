"""Config loading: expansion, overrides, and errors that name file:line, key path and the closest key."""
import json

import pytest

from imgcls.config import load_config, parse_config, schema
from imgcls.errors import ConfigError, UsageError

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


def test_bad_override_and_bad_value_are_usage_errors():
    """--set is the command line: its mistakes are exit 2, found before the file is read."""
    for item, needles in [("nonsense", ["key.path=value"]), ("train.preset=fastest", ["train.preset", "fastest"]),
                          ("train.presett=best", ["train.presett", "did you mean 'train.preset'"]),
                          ("name.x=1", ["'name' is a value"]), ("predict.thresholds.roses=2", ["roses", "1"])]:
        with pytest.raises(UsageError) as exc:
            parse_config(BASE, "run.yaml", overrides=[item])
        assert exc.value.exit_code == 2 and all(n in str(exc.value) for n in needles), str(exc.value)
    with pytest.raises(UsageError):
        load_config("/no/such/file.yaml", overrides=["split.seed=lots"])  # the override first


def test_duplicate_keys_alias_bombs_and_depth_are_refused_with_a_line():
    assert "run.yaml:6" in err(BASE + "train:\n  preset: best\ntrain: {}\n")
    assert "duplicate key 'source'" in err(BASE + "  source: again\n")
    bomb = "a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    assert "alias" in err(BASE + bomb)
    assert "recursive" in err(BASE + "x: &r [1, *r]\n")
    assert "deeper than" in err(BASE + "x: " + "[" * 200 + "]" * 200 + "\n")
    assert "deeper than" in err(BASE + "".join("  " * i + f"k{i}:\n" for i in range(150)) + "  " * 150 + "v\n")


def test_merge_keys_and_small_aliases_still_work():
    cfg = parse_config("name: a\ndataset: {source: &s data/, test_source: *s}\n")
    assert cfg.dataset.test_source == "data/"
    cfg = parse_config("name: a\ndataset: &d {source: x}\ntrain: {preset: best}\n"
                       "azureml:\n  training_parameters:\n    <<: {number_of_epochs: 3}\n    number_of_epochs: 5\n")
    assert cfg.azureml.training_parameters == {"number_of_epochs": 5}


def test_config_gates_and_provider_are_checked_at_load():
    assert "run.yaml:6" in err(BASE + "evaluate:\n  gates:\n    acuracy: 0.9\n")
    assert "between 0 and 1" in err(BASE + "evaluate:\n  gates:\n    recall@roses: 1.2\n")
    assert "run.yaml:2" in err("name: a\nprovider: vertx\ndataset: {source: d}\n")


def test_malformed_variable_reference():
    assert "'${DATA/x'" in err("name: a\ndataset:\n  source: ${DATA/x\n")


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


@pytest.mark.parametrize("key", ["from_run", "base_dir"])
def test_fields_imgcls_sets_itself_are_not_keys_of_a_config_file(tmp_path, key):
    path = tmp_path / "c.yaml"
    path.write_text(f"name: x\n{key}: something\ndataset: {{source: d}}\n")
    with pytest.raises(ConfigError, match=f"c.yaml:2: unknown key '{key}'"):
        load_config(path)


@pytest.mark.parametrize("dataset", ['{source: ""}', '{source: "  "}', '{source: d, test_source: ""}'])
def test_a_blank_dataset_source_is_refused(tmp_path, dataset):
    """source "" used to read the config's own folder as the dataset."""
    path = tmp_path / "c.yaml"
    path.write_text(f"name: x\ndataset: {dataset}\n")
    with pytest.raises(ConfigError, match="is empty: name the dataset's folder"):
        load_config(path)

"""A corpus of careless input: config files, datasets, import files and command lines.

Each case runs the CLI (in-process with click's CliRunner; a few through a real subprocess) and asserts
the exit code the README lists, no traceback, the offending file/key/value named in the message, and
the user's files untouched (every file hashed before and after; no run folder left behind). No case
trains a model: they stop at validate, config show, --help, or a check that fails before any work.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from imgcls.cli import main
from tests.conftest import make_dataset, make_image

ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}
CFG = "name: t\ndataset:\n  source: {data}\n"          # a valid config around the folder dataset


# -- what the user has on disk, before the command ----------------------------------------------

def three_labels(user: Path) -> None:
    make_dataset(user / "data", {"red": 4, "green": 4, "blue": 4}, size=(32, 24))


def with_file(rel: str, content: bytes | str, base: Callable | None = three_labels) -> Callable:
    def build(user: Path) -> None:
        if base:
            base(user)
        path = user / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return build


def csv_file(rows: Callable[[Path], list[str]], name: str = "data.csv") -> Callable:
    """An import file next to the folder dataset; `rows` gets the user folder (for absolute paths)."""
    def build(user: Path) -> None:
        three_labels(user)
        (user / name).write_text("".join(r + "\n" for r in rows(user)))
    return build


def good_rows(user: Path, scheme_rows: list[str] = ()) -> list[str]:
    return [f"{p},{p.parent.name}" for p in sorted((user / "data").rglob("*.jpg"))] + list(scheme_rows)


def vertex_jsonl(user: Path, extra: list[str]) -> list[str]:
    rows = [json.dumps({"imageGcsUri": str(p), "classificationAnnotation": {"displayName": p.parent.name}})
            for p in sorted((user / "data").rglob("*.jpg"))]
    return rows + extra


def case_twins(user: Path) -> None:
    make_dataset(user / "data", {"Cat": 4, "dog": 4}, size=(32, 24))
    make_dataset(user / "data", {"cat": 4}, seed=7, size=(32, 24))


def hidden_folder(user: Path) -> None:
    three_labels(user)
    thumbs = user / "data" / "red" / ".thumbs"
    thumbs.mkdir()
    (thumbs / "x.jpg").write_bytes(b"not an image at all")   # read today: a corrupt-image error
    make_image(thumbs / "y.jpg", (0, 0, 0), 99, size=(32, 24))


def symlink_loop(user: Path) -> None:
    three_labels(user)
    os.symlink("..", user / "data" / "red" / "loop")
    os.symlink("loop2", user / "data" / "green" / "loop2")


def unlabelled_at_top(user: Path) -> None:
    three_labels(user)
    make_image(user / "data" / "stray.jpg", (9, 9, 9), 5, size=(32, 24))


def hidden_label_folder(user: Path) -> None:
    three_labels(user)
    make_dataset(user / "data" / ".secret", {"x": 2}, size=(32, 24))   # data/.secret/x/*.jpg: counted, not read


def label_only_in_test(user: Path) -> None:
    make_dataset(user / "data" / "train", {"red": 4, "green": 4}, size=(32, 24))
    make_dataset(user / "data" / "test", {"red": 2, "green": 2, "blue": 2}, seed=3, size=(32, 24))


def deep_yaml(depth: int) -> str:
    return "name: t\nx: " + "[" * depth + "]" * depth + "\n"


BILLION_LAUGHS = ('a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
                  + "".join(f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n"
                            for p, c in zip("abcdefgh", "bcdefghi"))
                  + "name: t\ndataset: {source: d}\n")


# -- the corpus ------------------------------------------------------------------------------------

@dataclass
class Case:
    id: str
    args: list[str]
    code: int
    names: list[str] = field(default_factory=list)   # each must appear in stdout + stderr
    config: str | None = CFG                         # run.yaml text; {data} is the dataset folder
    build: Callable[[Path], None] | None = three_labels
    stdin: str | None = None


V = ["validate", "-c", "{cfg}"]
SHOW = ["config", "show", "-c", "{cfg}"]
NO_DATA = "name: t\ndataset:\n  source: {user}/nowhere\n"   # any work would fail with exit 4

CASES = [
    # config files: exit 3, naming the file (and line) and the key or value
    Case("yaml-syntax", V, 3, ["{cfg}:2", "YAML"], config="name: t\ndataset: [oops\n"),
    Case("yaml-tab-indent", V, 3, ["{cfg}:"], config="name: t\ndataset:\n\tsource: d\n"),
    Case("unknown-top-key", V, 3, ["{cfg}:4", "epocs"], config=CFG + "epocs: 3\n"),
    Case("unknown-nested-key", V, 3, ["{cfg}:5", "train.presett", "train.preset"],
         config=CFG + "train:\n  presett: best\n"),
    Case("wrong-type-int", V, 3, ["{cfg}:5", "split.seed", "lots"], config=CFG + "split:\n  seed: lots\n"),
    Case("wrong-type-bool", V, 3, ["{cfg}:5", "train.early_stopping", "maybe"],
         config=CFG + "train:\n  early_stopping: maybe\n"),
    Case("bad-choice", V, 3, ["{cfg}:5", "train.preset", "fastest"], config=CFG + "train:\n  preset: fastest\n"),
    Case("out-of-range", V, 3, ["{cfg}:5", "split.test", "1.5"], config=CFG + "split:\n  test: 1.5\n"),
    Case("fractions-sum", V, 3, ["{cfg}", "below 1"], config=CFG + "split: {validation: 0.5, test: 0.5}\n"),
    Case("missing-name", V, 3, ["{cfg}", "name"], config="dataset:\n  source: d\n"),
    Case("missing-dataset", V, 3, ["{cfg}", "dataset"], config="name: t\n"),
    Case("bad-name", V, 3, ["{cfg}:1", "name", "bad name!"], config="name: bad name!\ndataset: {source: d}\n"),
    Case("empty-file", V, 3, ["{cfg}", "empty"], config=""),
    Case("huge-file", V, 3, ["{cfg}", "MiB"], config=None, build=with_file("run.yaml", "# x\n" * 600_000)),
    Case("infinite-budget", V, 3, ["{cfg}:5", "train.budget_minutes", "finite"],
         config=CFG + "train:\n  budget_minutes: .inf\n"),
    Case("top-level-list", V, 3, ["{cfg}", "mapping"], config="- a\n- b\n"),
    Case("top-level-scalar", V, 3, ["{cfg}", "mapping"], config="hello\n"),
    Case("duplicate-section", V, 3, ["{cfg}:6", "train"],
         config=CFG + "train:\n  preset: best\ntrain:\n  preset: quick\n"),
    Case("duplicate-nested-key", V, 3, ["{cfg}:4", "source"], config=CFG + "  source: elsewhere\n"),
    Case("duplicate-flow-key", SHOW, 3, ["{cfg}:4", "seed"], config=CFG + "split: {seed: 1, seed: 2}\n"),
    Case("alias-bomb", V, 3, ["{cfg}", "alias"], config=BILLION_LAUGHS),
    Case("recursive-alias", V, 3, ["{cfg}:4", "alias"], config=CFG + "x: &a [*a]\n"),
    Case("deep-nesting", V, 3, ["{cfg}:2", "deep"], config=deep_yaml(3000)),
    Case("python-tag", V, 3, ["{cfg}:3", "python"],
         config=CFG.replace("{data}", "!!python/object/apply:os.getcwd []")),
    Case("unhashable-key", V, 3, ["{cfg}:4"], config=CFG + "? [a, b]\n: c\n"),
    Case("not-utf8", V, 3, ["{cfg}", "UTF-8"], config=None, build=with_file("run.yaml", b"name: t\xff\xfe\n")),
    Case("binary-config", V, 3, ["{cfg}"], config=None, build=with_file("run.yaml", bytes(range(256)) * 4)),
    Case("missing-config", ["validate", "-c", "{user}/absent.yaml"], 3, ["{user}/absent.yaml", "not found"],
         config=None),
    Case("config-is-a-folder", ["validate", "-c", "{user}/data"], 3, ["{user}/data", "folder"], config=None),
    Case("unknown-provider-in-file", V, 3, ["{cfg}:2", "vertx", "vertex"],
         config="name: t\nprovider: vertx\ndataset: {source: d}\n"),
    Case("unset-variable", V, 3, ["{cfg}:3", "IMGCLS_UNSET_VAR"],
         config="name: t\ndataset:\n  source: ${IMGCLS_UNSET_VAR}\n"),
    Case("unclosed-variable", V, 3, ["{cfg}:3", "${DATA"], config="name: t\ndataset:\n  source: ${DATA/x\n"),
    Case("bad-variable-name", V, 3, ["{cfg}:3", "${1DIR}"], config="name: t\ndataset:\n  source: ${1DIR}/x\n"),
    Case("config-gate-unknown-metric", V, 3, ["{cfg}:6", "acuracy", "accuracy"],
         config=CFG + "evaluate:\n  gates:\n    acuracy: 0.9\n"),
    Case("config-gate-not-number", V, 3, ["{cfg}:6", "evaluate.gates.accuracy", "high"],
         config=CFG + "evaluate:\n  gates:\n    accuracy: high\n"),
    Case("config-gate-out-of-range", V, 3, ["{cfg}:6", "accuracy", "1.5"],
         config=CFG + "evaluate:\n  gates:\n    accuracy: 1.5\n"),
    Case("threshold-out-of-range", V, 3, ["{cfg}:6", "roses"],
         config=CFG + "predict:\n  thresholds:\n    roses: 2\n"),
    Case("port-out-of-range", V, 3, ["{cfg}:5", "deploy.port", "70000"], config=CFG + "deploy:\n  port: 70000\n"),
    Case("unknown-format", V, 3, ["{cfg}:4", "dataset.format", "tiff"], config=CFG + "  format: tiff\n"),

    # datasets: exit 4 naming the folder or image (validate reads; it writes nothing)
    Case("source-missing", V, 4, ["{user}/nowhere", "not found"], config=NO_DATA),
    Case("empty-folder", V, 4, ["{user}/empty", "no images"], config="name: t\ndataset: {source: {user}/empty}\n",
         build=lambda u: (u / "empty").mkdir()),
    Case("only-non-images", V, 4, ["{user}/docs", "no images"],
         config="name: t\ndataset: {source: {user}/docs}\n", build=with_file("docs/a/readme.txt", "hi", base=None)),
    Case("one-label", V, 4, ["only one label"], build=lambda u: make_dataset(u / "data", {"red": 6}, size=(32, 24))),
    Case("corrupt-image", V, 4, ["{data}/red/broken.jpg", "corrupt-image"],
         build=with_file("data/red/broken.jpg", b"\xff\xd8\xff\xe0 truncated")),
    Case("zero-byte-image", V, 4, ["{data}/green/empty.jpg", "0 bytes"], build=with_file("data/green/empty.jpg", b"")),
    Case("text-as-jpg", V, 4, ["{data}/blue/notes.jpg"], build=with_file("data/blue/notes.jpg", "just text\n")),
    Case("case-twin-labels", V, 4, ["{data}/Cat", "{data}/cat"], build=case_twins),
    Case("unlabelled-image", V, 4, ["{data}/stray.jpg", "no label"], build=unlabelled_at_top),
    Case("too-few-for-provider", V + ["-p", "customvision"], 4, ["'red' has 4 images", "at least 5"]),
    Case("source-unknown-kind", V, 4, ["{user}/list.txt", "format"], config="name: t\ndataset: {source: {user}/list.txt}\n",
         build=with_file("list.txt", "a.jpg\n")),
    Case("format-csv-on-folder", V, 4, ["{data}", "vertex-csv"], config=CFG + "  format: vertex-csv\n"),
    # A source by URI is read where it lives; without credentials that is refused at once (no retries).
    Case("gs-source-without-credentials", V, 5, ["gs://bucket/data.csv", "no Google credentials"],
         config="name: t\ndataset: {source: gs://bucket/data.csv}\n"),

    Case("vertex-without-a-bucket", ["train", "-c", "{cfg}", "-p", "vertex"], 3, ["vertex.staging_bucket"]),
    Case("label-only-in-test", V, 4, ["'blue' has no training images", "2 in test"], build=label_only_in_test),

    # import files: exit 4 naming the file and the row
    Case("csv-no-uri", V, 4, ["{user}/data.csv:13", "URI"], config="name: t\ndataset: {source: {user}/data.csv}\n",
         build=csv_file(lambda u: good_rows(u, [",red"]))),
    Case("csv-ml-use-only", V, 4, ["{user}/data.csv:13"], config="name: t\ndataset: {source: {user}/data.csv}\n",
         build=csv_file(lambda u: good_rows(u, ["TRAINING"]))),
    Case("csv-unknown-ml-use", V, 4, ["{user}/data.csv:13", "unknown ML use 'bogus'"],
         config="name: t\ndataset: {source: {user}/data.csv}\n",
         build=csv_file(lambda u: good_rows(u, [f"bogus,{u}/data/red/r0.jpg,red"]))),
    Case("csv-missing-image", V, 4, ["{user}/missing.jpg", "not found", "{user}/data.csv:13"],
         config="name: t\ndataset: {source: {user}/data.csv}\n",
         build=csv_file(lambda u: good_rows(u, [f"{u}/missing.jpg,red"]))),
    Case("csv-columns-swapped", V, 4, ["not found"], config="name: t\ndataset: {source: {user}/data.csv}\n",
         build=csv_file(lambda u: [f"{p.parent.name},{p}" for p in sorted((u / "data").rglob("*.jpg"))])),
    Case("csv-not-utf8", V, 4, ["{user}/data.csv"], config="name: t\ndataset: {source: {user}/data.csv}\n",
         build=with_file("data.csv", b"\xff\xfe,red\n")),
    Case("csv-empty", V, 4, ["{user}/data.csv", "no images"], config="name: t\ndataset: {source: {user}/data.csv}\n",
         build=with_file("data.csv", "")),
    Case("csv-gs-on-local", V, 4, ["{user}/data.csv:13", "gs://bucket/a.jpg", "local"],
         config="name: t\ndataset: {source: {user}/data.csv}\n",
         build=csv_file(lambda u: good_rows(u, ["gs://bucket/a.jpg,red"]))),
    Case("csv-s3-on-local", V, 4, ["{user}/data.csv:13", "s3://bucket/a.jpg"],
         config="name: t\ndataset: {source: {user}/data.csv}\n",
         build=csv_file(lambda u: good_rows(u, ["s3://bucket/a.jpg,red"]))),
    Case("csv-ftp-scheme", V, 4, ["{user}/data.csv:13", "ftp://host/a.jpg"],
         config="name: t\ndataset: {source: {user}/data.csv}\n",
         build=csv_file(lambda u: good_rows(u, ["ftp://host/a.jpg,red"]))),
    Case("csv-s3-on-vertex", V + ["-p", "vertex"], 4, ["{user}/data.csv:21", "s3://bucket/x.jpg", "vertex"],
         config="name: t\ndataset: {source: {user}/data.csv}\n",
         build=csv_file(lambda u: [f"gs://b/{l}{i}.jpg,{l}" for l in ("red", "blue") for i in range(10)]
                        + ["s3://bucket/x.jpg,red"])),
    Case("csv-file-uri-missing", V, 4, ["/no/such/dir/a.jpg"], config="name: t\ndataset: {source: {user}/data.csv}\n",
         build=csv_file(lambda u: good_rows(u, ["file:///no/such/dir/a.jpg,red"]))),
    Case("jsonl-bad-line", V, 4, ["{user}/data.jsonl:13", "JSON"], config="name: t\ndataset: {source: {user}/data.jsonl}\n",
         build=csv_file(lambda u: vertex_jsonl(u, ['{"imageGcsUri": "x.jpg",']), "data.jsonl")),
    Case("jsonl-array-line", V, 4, ["{user}/data.jsonl:13", "object"],
         config="name: t\ndataset: {source: {user}/data.jsonl}\n",
         build=csv_file(lambda u: vertex_jsonl(u, ['["x.jpg", "red"]']), "data.jsonl")),
    Case("jsonl-no-uri-key", V, 4, ["{user}/data.jsonl:13", "imageGcsUri"],
         config="name: t\ndataset: {source: {user}/data.jsonl}\n",
         build=csv_file(lambda u: vertex_jsonl(u, ['{"image": "x.jpg"}']), "data.jsonl")),
    Case("jsonl-gs-on-local", V, 4, ["{user}/data.jsonl:13", "gs://b/x.jpg"],
         config="name: t\ndataset: {source: {user}/data.jsonl}\n",
         build=csv_file(lambda u: vertex_jsonl(u, [json.dumps({"imageGcsUri": "gs://b/x.jpg",
                                                              "classificationAnnotation": {"displayName": "red"}})]),
                        "data.jsonl")),
    Case("azureml-jsonl-azureml-uri-on-local", V, 4, ["{user}/aml.jsonl:2", "azureml://datastores/d/paths/x.jpg"],
         config="name: t\ndataset: {source: {user}/aml.jsonl}\n",
         build=with_file("aml.jsonl", '{"image_url": "a.jpg", "label": "red"}\n'
                                      '{"image_url": "azureml://datastores/d/paths/x.jpg", "label": "red"}\n')),
    Case("azureml-jsonl-no-url", V, 4, ["{user}/aml.jsonl:2", "image_url"],
         config="name: t\ndataset: {source: {user}/aml.jsonl}\n",
         build=with_file("aml.jsonl", '{"image_url": "a.jpg", "label": "red"}\n{"label": "red"}\n')),
    Case("manifest-row-without-uri", V, 4, ["{user}/m.jsonl:2", "uri"],
         config="name: t\ndataset: {source: {user}/m.jsonl, format: manifest}\n",
         build=with_file("m.jsonl", '{"uri": "a.jpg", "sha256": "x", "labels": ["red"]}\n{"labels": ["red"]}\n')),
    Case("json-array-file", V, 4, ["{user}/d.jsonl:1"], config="name: t\ndataset: {source: {user}/d.jsonl}\n",
         build=with_file("d.jsonl", '[{"imageGcsUri": "a.jpg"}]\n')),

    # command lines: exit 2 before any file is read (NO_DATA: real work would end with exit 4)
    Case("gate-with-equals", ["evaluate", "-c", "{cfg}", "--gate", "accuracy=0.9"], 2, ["accuracy=0.9"],
         config=NO_DATA),
    Case("gate-unknown-metric", ["evaluate", "-c", "{cfg}", "--gate", "acuracy>=0.9"], 2, ["acuracy", "accuracy"],
         config=NO_DATA),
    Case("gate-not-a-number", ["evaluate", "-c", "{cfg}", "--gate", "accuracy>=high"], 2, ["accuracy>=high"],
         config=NO_DATA),
    Case("gate-out-of-range", ["evaluate", "-c", "{cfg}", "--gate", "accuracy>=1.5"], 2, ["accuracy", "1.5"],
         config=NO_DATA),
    Case("gate-empty-label", ["evaluate", "-c", "{cfg}", "--gate", "recall@>=0.5"], 2, ["recall@"], config=NO_DATA),
    Case("gate-before-missing-config", ["evaluate", "-c", "{user}/absent.yaml", "--gate", "f1>0.x"], 2, ["f1>0.x"],
         config=None),
    Case("set-without-equals", V + ["--set", "train.preset"], 2, ["train.preset", "key.path=value"], config=NO_DATA),
    Case("set-empty-key", V + ["--set", "=3"], 2, ["=3"], config=NO_DATA),
    Case("set-unknown-key", V + ["--set", "train.presett=best"], 2, ["train.presett", "train.preset"],
         config=NO_DATA),
    Case("set-unknown-section", V + ["--set", "tarin.preset=best"], 2, ["tarin", "train"], config=NO_DATA),
    Case("set-bad-value", V + ["--set", "split.seed=lots"], 2, ["split.seed", "lots"], config=NO_DATA),
    Case("set-bad-choice", V + ["--set", "train.preset=fastest"], 2, ["train.preset", "fastest"], config=NO_DATA),
    Case("set-infinite-budget", V + ["--set", "train.budget_minutes=1e999"], 2, ["train.budget_minutes", "finite"],
         config=NO_DATA),
    Case("ttl-not-a-duration", ["deploy", "-c", "{cfg}", "--ttl", "5x"], 2, ["--ttl", "5x"], config=NO_DATA),
    Case("ttl-zero", ["deploy", "-c", "{cfg}", "--ttl", "0s"], 2, ["--ttl", "zero"], config=NO_DATA),
    Case("set-into-a-value", V + ["--set", "name.first=x"], 2, ["name.first", "name"], config=NO_DATA),
    Case("set-bad-gate", V + ["--set", "evaluate.gates.acuracy=0.9"], 2, ["acuracy"], config=NO_DATA),
    Case("set-unknown-provider", V + ["--set", "provider=vertx"], 2, ["vertx", "vertex"], config=NO_DATA),
    Case("provider-option-typo", V + ["--provider", "vertx"], 2, ["vertx", "vertex"], config=NO_DATA),
    Case("provider-before-command", ["-p", "vertx", *V], 2, ["vertx", "vertex"], config=NO_DATA),
    Case("unknown-option", V + ["--bogus"], 2, ["--bogus"]),
    Case("unknown-command", ["valdate"], 2, ["valdate", "validate"], config=None),
    Case("predict-bad-format", ["predict", "-c", "{cfg}", "--format", "xml", "{data}"], 2, ["xml"], config=NO_DATA),
    Case("predict-no-inputs", ["predict", "-c", "{cfg}"], 2, ["no images"], config=NO_DATA, stdin=""),
    Case("predict-missing-input", ["predict", "-c", "{cfg}", "{user}/photo.jpg"], 4, ["{user}/photo.jpg"],
         config=NO_DATA),
    Case("predict-empty-glob", ["predict", "-c", "{cfg}", "{user}/*.png"], 4, ["{user}/*.png"], config=NO_DATA),
    Case("predict-remote-input", ["predict", "-c", "{cfg}", "gs://b/a.jpg"], 4, ["gs://b/a.jpg"], config=NO_DATA),
    Case("predict-top-k-zero", ["predict", "-c", "{cfg}", "--top-k", "0", "{data}"], 2, ["--top-k", "0"],
         config=NO_DATA),
    Case("negative-timeout", ["train", "-c", "{cfg}", "--timeout", "-5"], 2, ["--timeout", "-5"], config=NO_DATA),
    Case("compare-nothing", ["compare"], 2, ["RUNS"], config=None),
    Case("init-over-existing", ["init", "{cfg}"], 2, ["{cfg}", "--force"]),
    Case("init-unknown-provider", ["init", "{user}/new.yaml", "-p", "vertx"], 2, ["vertx", "vertex"]),
    Case("json-error-document", ["--json", "validate", "-c", "{user}/absent.yaml"], 3, ['"exit_code": 3', "absent.yaml"],
         config=None),
    Case("json-after-command", ["validate", "--json", "-c", "{user}/absent.yaml"], 3, ['"exit_code": 3'], config=None),
    Case("config-before-command", ["-c", "{user}/absent.yaml", "validate"], 3, ["{user}/absent.yaml"], config=None),
    Case("json-usage-error-document", ["--json", "evaluate", "-c", "{cfg}", "--gate", "x"], 2,
         ['"exit_code": 2', "'x'"], config=NO_DATA),
    Case("json-unknown-option-document", ["--json", "validate", "--bogus"], 2, ['"exit_code": 2', "--bogus"]),
]

# Cases where the right answer is success: careless input the rules quietly and visibly handle.
OK_CASES = [
    Case("hidden-folder-skipped", V, 0, ["2 hidden"], build=hidden_folder),
    Case("symlink-loop", V, 0, ["12 images"], build=symlink_loop),
    Case("hidden-label-folder-counted", V, 0, ["2 hidden"], build=hidden_label_folder),
    Case("fix-before-the-bucket-is-set", V + ["--fix", "-p", "vertex"], 0, ["cleaned manifest"]),
    Case("case-twins-merged-with-fix", V + ["--fix"], 0, ["Cat", "cat", "merged"], build=case_twins),
]


def tree_hashes(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p)] = "link:" + os.readlink(p)
        elif p.is_file():
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[str(p)] = "dir"
    return out


def prepare(case: Case, tmp_path: Path) -> tuple[list[str], dict]:
    user = tmp_path / "user"
    user.mkdir()
    if case.build:
        case.build(user)
    values = {"{user}": str(user), "{data}": str(user / "data"), "{cfg}": str(user / "run.yaml")}

    def fill(text: str) -> str:
        for k, v in values.items():
            text = text.replace(k, v)
        return text

    if case.config is not None:
        (user / "run.yaml").write_text(fill(case.config))
    return [fill(a) for a in case.args], {"names": [fill(n) for n in case.names], "user": user}


def run_in_process(args: list[str], stdin: str | None = None):
    started = time.monotonic()
    result = CliRunner().invoke(main, args, input=stdin)
    return result, time.monotonic() - started


def check(case: Case, tmp_path: Path):
    args, info = prepare(case, tmp_path)
    before = tree_hashes(info["user"])
    result, seconds = run_in_process(args, case.stdin)
    out = result.stdout + result.stderr
    assert "Traceback" not in out, out
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == case.code, (result.exit_code, out)
    for needle in info["names"]:
        assert needle in out, f"{needle!r} not in the output:\n{out}"
    assert tree_hashes(info["user"]) == before, "the user's files changed"
    if case.code:
        assert not (tmp_path / ".imgcls").exists(), "a failed command left a run folder behind"
    return result, seconds


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, tmp_path):
    result, seconds = check(case, tmp_path)
    if case.code == 2:
        assert seconds < 1.0, f"a usage error took {seconds:.2f} s"


@pytest.mark.parametrize("case", OK_CASES, ids=[c.id for c in OK_CASES])
def test_careless_but_valid_input(case, tmp_path):
    check(case, tmp_path)


def test_alias_bomb_is_refused_before_expansion(tmp_path):
    (tmp_path / "bomb.yaml").write_text(BILLION_LAUGHS)
    assert len(BILLION_LAUGHS) < 400
    result, seconds = run_in_process(["config", "show", "-c", str(tmp_path / "bomb.yaml")])
    assert result.exit_code == 3 and seconds < 1.0, (result.exit_code, seconds, result.stderr)


def test_corpus_size():
    assert len(CASES) + len(OK_CASES) >= 60


# -- a few through a real process: what a shell script sees ----------------------------------------

def imgcls(*args, cwd, stdin=None):
    return subprocess.run([sys.executable, "-m", "imgcls.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=ENV, input=stdin, timeout=120)


def test_subprocess_bad_gate_is_quick(tmp_path):
    (tmp_path / "run.yaml").write_text(NO_DATA.replace("{user}", str(tmp_path)))
    started = time.monotonic()
    proc = imgcls("evaluate", "-c", "run.yaml", "--gate", "accuracy=0.9", cwd=tmp_path)
    assert proc.returncode == 2 and "accuracy=0.9" in proc.stderr and "Traceback" not in proc.stderr
    assert time.monotonic() - started < 5  # interpreter start-up included; the check itself is instant


def test_subprocess_duplicate_key(tmp_path):
    (tmp_path / "run.yaml").write_text("name: t\ntrain: {preset: best}\ndataset: {source: d}\ntrain: {}\n")
    proc = imgcls("config", "show", "-c", "run.yaml", cwd=tmp_path)
    assert proc.returncode == 3 and "run.yaml:4" in proc.stderr and "train" in proc.stderr


def test_subprocess_closed_pipe_ends_quietly(tmp_path):
    """The reader goes away before we write (as `| head -1` does): no message, 141 like a Unix tool."""
    proc = subprocess.Popen([sys.executable, "-m", "imgcls.cli", "config", "schema"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=tmp_path, env=ENV)
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141, err
    assert err == b"", err


def test_subprocess_head_one(tmp_path):
    """`imgcls … | head -1` with more lines than the pipe holds: the first line, then silence and 141."""
    make_dataset(tmp_path / "data", {"red": 3, "green": 3}, size=(32, 24))
    for i in range(400):  # 400 findings, two lines each: ~100 KB, more than a pipe buffers
        (tmp_path / "data" / "red" / f"empty_{i:03d}.jpg").write_bytes(b"")
    (tmp_path / "run.yaml").write_text(f"name: t\ndataset: {{source: {tmp_path / 'data'}}}\n")
    proc = subprocess.run(["bash", "-c", f"{sys.executable} -m imgcls.cli -q validate -c run.yaml | head -1; "
                                         "echo \"status ${PIPESTATUS[0]}\" >&2"],
                          capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=120)
    assert proc.stdout.startswith("406 images, 2 labels") and proc.stdout.count("\n") == 1, proc.stdout[:300]
    assert proc.stderr == "status 141\n", proc.stderr

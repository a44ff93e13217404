"""dataset-export: every format written from a run's manifest reads back through our own importers with
the same images, labels and (where the format keeps them) splits; --uri-prefix, --split, the CLI."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from imgcls import api
from imgcls.api.dataset_export import export_dataset
from imgcls.data import exporters, importers, manifest, split
from tests.conftest import make_dataset, write_config


def _key(df, by_hash=True) -> list[tuple]:
    return sorted((h if by_hash else Path(u).name, tuple(sorted(l)), s)
                  for u, h, l, s in zip(df["uri"], df["sha256"], df["labels"], df["split"]))


@pytest.fixture
def cfg(tmp_path):
    data = make_dataset(tmp_path / "data", {"red": 6, "green": 6, "blue": 6}, size=(40, 30))
    return api.load(write_config(tmp_path / "c.yaml", data))


@pytest.fixture
def multilabel_cfg(tmp_path):
    """Images of one or two labels in an import file (azureml-jsonl, labels as a list)."""
    data = make_dataset(tmp_path / "ml", {"a": 5, "b": 5, "c": 4}, size=(32, 32))
    rows = [{"image_url": str(p), "label": [p.parent.name] + (["c"] if i % 2 and p.parent.name != "c" else [])}
            for i, p in enumerate(sorted(data.rglob("*.jpg")))]
    (tmp_path / "ml.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "mlc.yaml"
    path.write_text(f"name: ml\ntask: multilabel\ndataset:\n  source: {tmp_path / 'ml.jsonl'}\n")
    return api.load(path)


@pytest.mark.parametrize("fmt", ["vertex-csv", "vertex-jsonl", "azureml-mltable", "manifest", "folder",
                                 "label-folders"])
def test_every_format_reads_back_through_our_importers(cfg, tmp_path, fmt):
    want = api.build_manifest(cfg)
    result = export_dataset(cfg, tmp_path / "out", fmt)
    assert result["images"] == len(want) == 18 and result["labels"] == 3
    out = tmp_path / "out"
    if fmt == "azureml-mltable":
        # one MLTable folder per split, as AutoML takes training_data / validation_data
        parts = []
        for s in ("train", "validation", "test"):
            assert (out / s / "MLTable").read_text() == exporters.mltable("images.jsonl")
            part = importers.load(str(out / s / "images.jsonl"), "auto")
            part["split"] = s
            parts.append(part)
        import pandas as pd
        back = pd.concat(parts, ignore_index=True)
    else:
        source = {"vertex-csv": out / "import.csv", "vertex-jsonl": out / "import.jsonl",
                  "manifest": out / "manifest.jsonl"}.get(fmt, out)
        back = importers.load(str(source), "auto")
    if fmt == "label-folders":                     # splits dropped: the same images and labels, split anew
        assert sorted(p.name for p in out.iterdir()) == ["blue", "green", "red"]
        assert _key(split.assign(back, 0.1, 0.2, 0)) == _key(want)   # same data, same seed: same split
    else:
        assert _key(back) == _key(want)
    if fmt in ("folder", "label-folders"):
        assert result["copied"] == 18
        for f in out.rglob("*.jpg"):               # copies, byte-identical, never the originals themselves
            original = next(u for u, h in zip(want["uri"], want["sha256"])
                            if h == hashlib.sha256(f.read_bytes()).hexdigest())
            assert not f.samefile(original)


def test_run_manifest_split_and_uri_prefix(cfg, tmp_path):
    run, _ = api.import_dataset(cfg)
    want = manifest.read(run.file("manifest.jsonl"))
    want = want[want["split"] == "test"]
    result = export_dataset(None, tmp_path / "out", "vertex-csv", run_id=run.id, splits=["test"],
                            uri_prefix="gs://bucket/flowers/")
    assert result["source"] == f"run {run.id}" and result["images"] == len(want) == result["copied"]
    assert result["upload"] == f"upload {tmp_path / 'out' / 'images'} to gs://bucket/flowers/images/"
    rows = (tmp_path / "out" / "import.csv").read_text().splitlines()
    back = importers.load(str(tmp_path / "out" / "import.csv"))
    assert set(back["split"]) == {"test"} and len(rows) == len(want)
    for uri, labels in zip(back["uri"], back["labels"]):
        assert uri.startswith("gs://bucket/flowers/images/")
        copy = tmp_path / "out" / "images" / uri.rsplit("/", 1)[1]    # the copy to upload is the same bytes
        sha = hashlib.sha256(copy.read_bytes()).hexdigest()
        assert copy.name.startswith(sha)
        assert want[want["sha256"] == sha]["labels"].iloc[0] == labels


@pytest.mark.parametrize("fmt", ["vertex-jsonl", "azureml-mltable", "folder"])
def test_multilabel_reads_back_with_every_label(multilabel_cfg, tmp_path, fmt):
    want = api.build_manifest(multilabel_cfg)
    assert any(len(l) == 2 for l in want["labels"])
    export_dataset(multilabel_cfg, tmp_path / "out", fmt)
    out = tmp_path / "out"
    if fmt == "azureml-mltable":
        rows = [json.loads(x) for s in ("train", "validation", "test") if (out / s).exists()
                for x in (out / s / "images.jsonl").read_text().splitlines()]
        assert all(isinstance(r["label"], list) for r in rows)
        got = sorted((hashlib.sha256(Path(r["image_url"]).read_bytes()).hexdigest(), tuple(sorted(r["label"])))
                     for r in rows)
        assert got == sorted((h, tuple(l)) for h, l in zip(want["sha256"], want["labels"]))
        return
    back = importers.load(str(out / "import.jsonl" if fmt == "vertex-jsonl" else out), "auto", multilabel=True)
    assert _key(back) == _key(want)


def test_mistakes_are_usage_errors_and_write_nothing(cfg, tmp_path):
    from imgcls.errors import UsageError
    for kwargs, says in (({"fmt": "csv"}, "not a dataset-export format"),
                         ({"fmt": "folder", "uri_prefix": "gs://b/p"}, "applies to import files"),
                         ({"fmt": "vertex-csv", "uri_prefix": "bucket/p"}, "is not a URI"),
                         ({"fmt": "vertex-csv", "splits": ["tests"]}, "is not a split")):
        with pytest.raises(UsageError, match=says):
            export_dataset(cfg, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_cli_formats_are_the_exporters_and_json_output(cfg, tmp_path):
    from imgcls.cli.data import _EXPORT_FORMATS
    assert tuple(exporters.OUT_FORMATS) == _EXPORT_FORMATS
    proc = subprocess.run([sys.executable, "-m", "imgcls.cli", "--json", "dataset-export", "-c",
                           str(tmp_path / "c.yaml"), "--format", "azureml-mltable", "--out", str(tmp_path / "o"),
                           "--split", "train", "--uri-prefix", "azureml://datastores/workspaceblobstore/paths/x"],
                          capture_output=True, text=True, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["files"] == [str(tmp_path / "o" / "train" / "images.jsonl"), str(tmp_path / "o" / "train" / "MLTable")]
    first = json.loads((tmp_path / "o" / "train" / "images.jsonl").read_text().splitlines()[0])
    assert first["image_url"].startswith("azureml://datastores/workspaceblobstore/paths/x/images/")

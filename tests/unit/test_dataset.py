"""The neutral manifest: importers, deterministic splits, exporters."""
import json

import pandas as pd

from imgcls.data import exporters, importers, manifest, split, validate
from imgcls.providers.base import Limits
from tests.conftest import make_dataset, make_image


def test_folder_import_hashes_and_measures(images):
    df = importers.load(str(images))
    assert len(df) == 36 and manifest.labels_of(df) == ["blue", "green", "red"]
    row = df.iloc[0]
    assert len(row.sha256) == 64 and row.width == 64 and row.height == 48 and row.bytes > 0
    assert row.format == "jpeg" and df["split"].isna().all()


def test_folder_with_split_dirs_keeps_them(tmp_path):
    make_dataset(tmp_path / "d" / "train", {"a": 4, "b": 4})
    make_dataset(tmp_path / "d" / "test", {"a": 2, "b": 2}, seed=9)
    df = split.assign(importers.load(str(tmp_path / "d")), validation=0.25, test=0.2)
    counts = df["split"].value_counts().to_dict()
    assert counts == {"train": 6, "test": 4, "validation": 2}  # test given: none drawn from train


def test_split_is_deterministic_and_stratified(images):
    a = split.assign(importers.load(str(images)), 0.1, 0.25, seed=3)
    b = split.assign(importers.load(str(images)).sample(frac=1, random_state=1), 0.1, 0.25, seed=3)
    key = lambda df: sorted(zip(df["sha256"], df["split"]))
    assert key(a) == key(b)  # row order does not matter
    for label in ("red", "green", "blue"):
        sub = a[a["labels"].map(lambda l, want=[label]: l == want)]
        assert (sub["split"] == "test").sum() == 3 and (sub["split"] == "validation").sum() == 1
    c = split.assign(importers.load(str(images)), 0.1, 0.25, seed=4)
    assert key(a) != key(c)  # the seed matters


def test_duplicates_land_in_one_split(tmp_path):
    root = make_dataset(tmp_path / "d", {"a": 10, "b": 10})
    for i in range(5):  # five copies of one image under other names
        (root / "a" / f"copy{i}.jpg").write_bytes((root / "a" / "a_000.jpg").read_bytes())
    df = split.assign(importers.load(str(root)), 0.2, 0.3)
    sha = df[df["uri"].str.endswith("a_000.jpg")]["sha256"].iloc[0]
    assert df[df["sha256"] == sha]["split"].nunique() == 1


def test_multilabel_folder_merges_copies(tmp_path):
    root = tmp_path / "d"
    make_image(root / "red" / "x.jpg", (200, 0, 0), 1)
    (root / "round").mkdir()
    (root / "round" / "x.jpg").symlink_to(root / "red" / "x.jpg")
    df = importers.load(str(root), multilabel=True)
    assert len(df) == 1 and df.iloc[0]["labels"] == ["red", "round"]


def test_vertex_csv_and_jsonl_roundtrip(images, tmp_path):
    df = split.assign(importers.load(str(images)), 0.1, 0.2)
    csv_text = exporters.vertex_csv(df, lambda r: r["uri"])
    assert csv_text.splitlines()[0].split(",")[0] in ("training", "validation", "test")
    (tmp_path / "import.csv").write_text(csv_text)
    back = importers.load(str(tmp_path / "import.csv"))
    assert sorted(zip(back["sha256"], back["split"])) == sorted(zip(df["sha256"], df["split"]))
    jl = exporters.vertex_jsonl(df, lambda r: "gs://b/" + r["sha256"] + ".jpg", multilabel=False)
    first = json.loads(jl.splitlines()[0])
    assert first["imageGcsUri"].startswith("gs://b/") and "displayName" in first["classificationAnnotation"]
    assert first["dataItemResourceLabels"]["aiplatform.googleapis.com/ml_use"] in ("training", "validation", "test")


def test_vertex_csv_multilabel_and_unassigned(tmp_path):
    make_image(tmp_path / "i1.jpg", (1, 2, 3), 1)
    make_image(tmp_path / "i2.jpg", (9, 2, 3), 2)
    (tmp_path / "f.csv").write_text("test,i1.jpg,cat,dog\ni2.jpg,cat\n")
    df = importers.load(str(tmp_path / "f.csv"), multilabel=True)
    assert df.iloc[0]["labels"] == ["cat", "dog"] and df.iloc[0]["split"] == "test"
    assert df.iloc[1]["split"] is None and df.iloc[1]["uri"] == str(tmp_path / "i2.jpg")


def test_azureml_jsonl_import_and_export(images, tmp_path):
    df = split.assign(importers.load(str(images)), 0.1, 0.2)
    text = exporters.azureml_jsonl(df, lambda r: r["uri"], multilabel=False)
    rec = json.loads(text.splitlines()[0])
    assert set(rec) == {"image_url", "label", "image_details"} and rec["image_details"]["width"] == "64px"
    (tmp_path / "a.jsonl").write_text(text)
    back = importers.load(str(tmp_path / "a.jsonl"))
    assert sorted(back["sha256"]) == sorted(df["sha256"])
    ml = exporters.azureml_jsonl(df, lambda r: r["uri"], multilabel=True)
    assert isinstance(json.loads(ml.splitlines()[0])["label"], list)
    assert "stream_info" in exporters.mltable("train.jsonl")


def test_manifest_file_roundtrip(images, tmp_path):
    df = split.assign(importers.load(str(images)), 0.1, 0.2)
    manifest.write(df, tmp_path / "m.jsonl")
    back = importers.load(str(tmp_path / "m.jsonl"))
    pd.testing.assert_frame_equal(df.reset_index(drop=True), back, check_dtype=False)


def test_batches_respect_image_and_tag_limits():
    df = manifest.frame([{"uri": f"u{i}", "labels": [f"t{i % 30}"]} for i in range(150)])
    sizes = [(len(b), len({l for ls in b["labels"] for l in ls})) for b in exporters.batches(df, 64, 20)]
    assert sum(n for n, _ in sizes) == 150
    assert all(n <= 64 and t <= 20 for n, t in sizes)


def test_hidden_folders_are_skipped_and_counted(tmp_path):
    root = make_dataset(tmp_path / "d", {"red": 3, "blue": 3}, size=(32, 24))
    make_dataset(root / "red" / ".thumbs", {"x": 2}, size=(32, 24))   # red/.thumbs/x/x_000.jpg …
    (root / "blue" / ".hidden.jpg").write_bytes((root / "blue" / "blue_000.jpg").read_bytes())
    df = importers.load(str(root))
    assert len(df) == 6 and not any("/." in u for u in df["uri"])
    assert manifest.summary(df)["skipped_hidden"] == 3


def test_case_twins_are_one_error_and_clean_merges_them(tmp_path):
    root = make_dataset(tmp_path / "d", {"Cat": 3, "dog": 3}, size=(32, 24))
    make_dataset(root, {"cat": 4}, seed=3, size=(32, 24))
    df = split.assign(importers.load(str(root)), 0.0, 0.2)
    findings = [f for f in validate.check(df, Limits(), "local", False) if f.code == "case-twin-labels"]
    assert len(findings) == 1 and findings[0].merge == (("Cat", "cat"),)   # the larger spelling wins
    assert f"{root}/Cat/" in findings[0].message and f"{root}/cat/" in findings[0].message
    cleaned, dropped = validate.clean(df, findings)
    assert dropped == [] and manifest.labels_of(cleaned) == ["cat", "dog"]


def test_remote_uris_follow_the_schemes_a_provider_reads(tmp_path):
    make_dataset(tmp_path / "d", {"a": 2, "b": 2}, size=(32, 24))
    rows = [f"{p},{p.parent.name}" for p in sorted((tmp_path / "d").rglob("*.jpg"))]
    (tmp_path / "f.csv").write_text("\n".join(rows + ["gs://bkt/x.jpg,a", "s3://bkt/y.jpg,b"]) + "\n")
    df = importers.load(str(tmp_path / "f.csv"))
    codes = lambda schemes: sorted(f.message.split(": ")[1] for f in validate.check(df, Limits(), "p", False, schemes)
                                   if f.code == "remote-uri")
    assert codes(()) == ["gs://bkt/x.jpg", "s3://bkt/y.jpg"]
    assert codes(("gs",)) == ["s3://bkt/y.jpg"]
    assert all(f.message.startswith(f"{tmp_path / 'f.csv'}:") for f in validate.check(df, Limits(), "p", False, ())
               if f.code == "remote-uri")

"""Dataset sources by URI without a cloud: the scheme registry, the content-addressed download cache
(resume, failures, verification) and bucket sources read through fsspec's memory:// filesystem, from
the API and from `imgcls dataset-import SOURCE`."""
from __future__ import annotations

import hashlib
import io
import json
import threading
import uuid
from pathlib import Path

import fsspec
import pytest
from click.testing import CliRunner
from PIL import Image

from imgcls.cli import main
from imgcls.data import manifest, sources
from imgcls.data.sources import buckets
from imgcls.data.sources.cache import ImageCache
from imgcls.data.sources.remote import RemoteImage
from imgcls.errors import AuthError, DataError, MissingDependency, UsageError
from imgcls.progress import Progress


def png(rgb, size=12) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), rgb).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def bucket():
    """A fresh memory:// bucket (the memory filesystem is one per process: each test its own name)."""
    name = f"b{uuid.uuid4().hex[:10]}"
    fs = fsspec.filesystem("memory")
    yield fs, name
    if fs.exists(f"/{name}"):
        fs.rm(f"/{name}", recursive=True)


def put_tree(fs, name: str, layout: dict[str, int], prefix: str = "flowers") -> dict[str, bytes]:
    """layout: "red" or "train/red" -> image count; returns path under the bucket -> bytes."""
    out = {}
    for n, (folder, count) in enumerate(layout.items()):
        for i in range(count):
            path = f"{prefix}/{folder}/img{i}.png"
            out[path] = png((40 * n % 256, 7 * i, 200 - 9 * n % 200))
            fs.pipe(f"/{name}/{path}", out[path])
    return out


class Counting:
    """A lister of fixed images whose reads are counted (and can be made to fail per URI)."""

    def __init__(self, blobs: dict[str, bytes], labels: dict[str, tuple] | None = None):
        self.blobs, self.labels = blobs, labels or {}
        self.reads: dict[str, int] = {}
        self.fail: dict[str, BaseException] = {}
        self.lock = threading.Lock()

    def reader(self, uri):
        def read():
            with self.lock:
                self.reads[uri] = self.reads.get(uri, 0) + 1
            if uri in self.fail:
                raise self.fail[uri]
            return self.blobs[uri]
        return read

    def __call__(self, ref, cfg):
        return [RemoteImage(u, self.labels.get(u, ("cat" if i % 2 else "dog",)), None, self.reader(u))
                for i, u in enumerate(self.blobs)], "multiclass"


@pytest.fixture
def counting():
    blobs = {f"test://x/{i}.png": png((i * 20, 255 - i * 20, 3)) for i in range(10)}
    lister = Counting(blobs)
    sources.register_scheme("test", lister)
    yield lister
    sources.schemes.unregister("test")


# -- the registry -------------------------------------------------------------------------------

def test_scheme_of_tells_uris_from_paths():
    assert sources.scheme_of("gs://b/x") == "gs"
    assert sources.scheme_of("customvision:5f0c") == "customvision"
    assert sources.scheme_of("Vertex:123") == "vertex"
    for local in ("/data/flowers", "data/flowers", "file:///data/x.csv", "C:\\data", "C:/data", "./a:b"):
        assert sources.scheme_of(local) is None, local


def test_unknown_scheme_names_the_close_one():
    with pytest.raises(UsageError) as err:
        sources.list_images("customvison:abc")
    assert "customvision" in err.value.hint


def test_lister_registered_at_run_time_is_used(counting):
    images, task = sources.list_images("test:anything")
    assert task == "multiclass" and len(images) == 10 and images[0].uri == "test://x/0.png"


def test_a_lister_with_a_bad_task_type_is_refused():
    sources.register_scheme("badtask", lambda ref, cfg: ([], "detection"))
    try:
        with pytest.raises(DataError, match="detection"):
            sources.list_images("badtask:x")
    finally:
        sources.schemes.unregister("badtask")


# -- the cache ----------------------------------------------------------------------------------

def test_cache_stores_identical_bytes_by_hash_and_resumes(counting, tmp_path):
    df, task = sources.load("test:x", cache_root=tmp_path / "c")
    assert len(df) == 10 and task == "multiclass"
    for uri, src, sha in zip(df["uri"], df["source_uri"], df["sha256"]):
        data = Path(uri).read_bytes()
        assert data == counting.blobs[src]
        assert sha == hashlib.sha256(data).hexdigest()
        assert uri.endswith(f"/{sha[:2]}/{sha}.png")
    assert set(counting.reads.values()) == {1}
    again, _ = sources.load("test:x", cache_root=tmp_path / "c")
    assert set(counting.reads.values()) == {1}, "a second import read images it had"
    assert list(again["uri"]) == list(df["uri"]) and again.attrs["source"]["cached"] == 10


def test_failed_fetch_lands_nowhere_and_the_next_import_fetches_only_the_rest(counting, tmp_path, monkeypatch):
    monkeypatch.setattr("imgcls.data.sources.cache.BACKOFF_S", 0.0)
    bad = "test://x/3.png"
    counting.fail[bad] = ConnectionResetError("connection reset by peer")
    with pytest.raises(DataError) as err:
        sources.load("test:x", cache_root=tmp_path / "c")
    assert err.value.exit_code == 4 and bad in err.value.message and "1 image(s) could not be read" in err.value.message
    assert counting.reads[bad] == 3                       # retried, then given up
    assert not list((tmp_path / "c").rglob("*.part"))     # nothing partial left
    index = [json.loads(line) for line in (tmp_path / "c" / "index.jsonl").read_text().splitlines()]
    assert bad not in {r["uri"] for r in index} and len(index) == 9
    del counting.fail[bad]
    counting.reads.clear()
    df, _ = sources.load("test:x", cache_root=tmp_path / "c")
    assert counting.reads == {bad: 1} and len(df) == 10


def test_torn_index_line_is_ignored(counting, tmp_path):
    sources.load("test:x", cache_root=tmp_path / "c")
    index = tmp_path / "c" / "index.jsonl"
    index.write_text(index.read_text() + '{"uri": "test://x/1.pn')    # killed mid-write
    counting.reads.clear()
    sources.load("test:x", cache_root=tmp_path / "c")
    assert counting.reads == {}


def test_bytes_not_matching_the_sources_hash_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("imgcls.data.sources.cache.BACKOFF_S", 0.0)
    data = png((1, 2, 3))
    img = RemoteImage("x://1", ("a",), None, lambda: data[:-5], sha256=hashlib.sha256(data).hexdigest())
    cache = ImageCache(tmp_path / "c")
    with pytest.raises(DataError, match="do not match"):
        cache.fetch([img])
    assert not [p for p in (tmp_path / "c").rglob("*") if p.is_file() and p.name != "index.jsonl"]


def test_source_known_hash_is_a_cache_hit_without_reading(tmp_path):
    data = png((9, 9, 9))
    ImageCache(tmp_path / "c").store(data, "elsewhere://a.png")
    never = RemoteImage("y://1", ("a",), None, lambda: pytest.fail("read"), sha256=hashlib.sha256(data).hexdigest())
    (got,) = ImageCache(tmp_path / "c").fetch([never])
    assert not got.downloaded and got.path.read_bytes() == data


def test_auth_error_from_a_read_stops_at_once(counting, tmp_path):
    counting.fail["test://x/0.png"] = AuthError("token expired")
    with pytest.raises(AuthError):
        sources.load("test:x", cache_root=tmp_path / "c", workers=1)
    assert sum(counting.reads.values()) < 10


def test_untagged_images_are_reported_and_skipped(tmp_path, capsys):
    blobs = {f"test://u/{i}.png": png((i, 100, 100)) for i in range(4)}
    lister = Counting(blobs, labels={"test://u/0.png": (), "test://u/1.png": ()})
    sources.register_scheme("test", lister)
    try:
        df, _ = sources.load("test:u", progress=Progress(), cache_root=tmp_path / "c")
    finally:
        sources.schemes.unregister("test")
    assert sorted(df["source_uri"]) == ["test://u/2.png", "test://u/3.png"]
    assert "test://u/0.png" not in lister.reads
    assert "2 untagged image(s) skipped" in capsys.readouterr().err


def test_same_bytes_twice_are_one_image(tmp_path, capsys):
    same = png((5, 5, 5))
    lister = Counting({"test://d/a.png": same, "test://d/b.png": same},
                      labels={"test://d/a.png": ("x",), "test://d/b.png": ("y",)})
    sources.register_scheme("test", lister)
    try:
        df, _ = sources.load("test:d", progress=Progress(), cache_root=tmp_path / "c")
    finally:
        sources.schemes.unregister("test")
    assert len(df) == 1 and df["labels"][0] == ["x", "y"]
    assert "same bytes" in capsys.readouterr().err


# -- the manifest's source_uri -----------------------------------------------------------------

def test_manifest_keeps_source_uri_and_reads_older_manifests(tmp_path):
    old = tmp_path / "old.jsonl"
    old.write_text(json.dumps({"uri": "/a.png", "labels": ["x"], "split": "train", "sha256": "ab"}) + "\n")
    df = manifest.read(old)
    assert df["source_uri"][0] is None
    manifest.write(df, tmp_path / "again.jsonl")
    assert "source_uri" not in (tmp_path / "again.jsonl").read_text()   # local data: written as before
    df.loc[0, "source_uri"] = "gs://b/a.png"
    manifest.write(df, tmp_path / "remote.jsonl")
    assert manifest.read(tmp_path / "remote.jsonl")["source_uri"][0] == "gs://b/a.png"


# -- buckets through fsspec (memory://) --------------------------------------------------------

def test_folder_tree_with_splits(bucket, tmp_path):
    fs, name = bucket
    blobs = put_tree(fs, name, {"train/red": 3, "train/blue": 3, "test/red": 1, "test/blue": 1})
    fs.pipe(f"/{name}/flowers/train/.thumbs/x.png", png((1, 1, 1)))     # hidden: left out
    df, task = sources.load(f"memory://{name}/flowers/", cache_root=tmp_path / "c")
    assert task == "multiclass" and len(df) == 8
    for uri, src, labels, split in zip(df["uri"], df["source_uri"], df["labels"], df["split"]):
        rel = src.removeprefix(f"memory://{name}/")
        assert Path(uri).read_bytes() == blobs[rel]
        assert labels == [rel.split("/")[2]] and split == rel.split("/")[1]


def test_import_file_in_a_bucket_lists_images_relative_to_it(bucket, tmp_path):
    fs, name = bucket
    blobs = put_tree(fs, name, {"red": 2, "blue": 2})
    lines = [json.dumps({"imageGcsUri": f"flowers/{'red' if i < 2 else 'blue'}/img{i % 2}.png",
                         "classificationAnnotations": [{"displayName": "r" if i < 2 else "b"}],
                         "dataItemResourceLabels": {"aiplatform.googleapis.com/ml_use": "test" if i == 0 else "training"}})
             for i in range(4)]
    fs.pipe(f"/{name}/import.jsonl", ("\n".join(lines) + "\n").encode())
    df, _ = sources.load(f"memory://{name}/import.jsonl", cache_root=tmp_path / "c")
    assert sorted(df["source_uri"]) == sorted(f"memory://{name}/{p}" for p in blobs)
    assert sorted(df["split"]) == ["test", "train", "train", "train"]
    assert {tuple(v) for v in df["labels"]} == {("r",), ("b",)}


def test_import_file_with_a_bad_row_names_the_bucket_file(bucket, tmp_path):
    fs, name = bucket
    fs.pipe(f"/{name}/list.csv", b"TRAINING,,red\n")
    with pytest.raises(DataError) as err:
        sources.load(f"memory://{name}/list.csv", cache_root=tmp_path / "c")
    assert f"memory://{name}/list.csv:1" in err.value.message


def test_missing_bucket_path_is_a_data_error_naming_it(bucket, tmp_path):
    _, name = bucket
    with pytest.raises(DataError) as err:
        sources.load(f"memory://{name}/nothing-here/", cache_root=tmp_path / "c")
    assert err.value.exit_code == 4 and f"memory://{name}/nothing-here" in err.value.message


@pytest.mark.parametrize(("uri", "extra"), [("s3://b/x/", "s3"), ("gs://b/x/", "gcs"), ("az://c/x/", "azure-blob")])
def test_missing_extra_names_it(uri, extra, monkeypatch):
    real = buckets.importlib.util.find_spec
    monkeypatch.setattr(buckets.importlib.util, "find_spec",
                        lambda m, *a: None if m in ("s3fs", "gcsfs", "adlfs") else real(m, *a))
    with pytest.raises(MissingDependency) as err:
        sources.list_images(uri)
    assert err.value.exit_code == 2 and f"pip install 'imgcls[{extra}]'" in err.value.hint
    assert uri.split(":")[0] + "://" in err.value.message


def test_permission_refused_is_an_auth_error():
    assert buckets.failure("gs://b/x", PermissionError("403 Forbidden")).exit_code == 5
    assert buckets.failure("gs://b/x", FileNotFoundError("x")).exit_code == 4


# -- the CLI -------------------------------------------------------------------------------------

def test_dataset_import_source_without_a_config(bucket, tmp_path):
    fs, name = bucket
    blobs = put_tree(fs, name, {"red": 3, "blue": 3})
    result = CliRunner().invoke(main, ["--json", "dataset-import", f"memory://{name}/flowers"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    run_dir = tmp_path / ".imgcls" / "runs" / doc["run"]
    rows = [json.loads(line) for line in (run_dir / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and doc["run"].startswith("flowers-local-")
    for row in rows:
        assert Path(row["uri"]).read_bytes() == blobs[row["source_uri"].removeprefix(f"memory://{name}/")]
    assert f"memory://{name}/flowers" in (run_dir / "config.yaml").read_text()


def test_dataset_source_in_a_config(bucket, tmp_path):
    fs, name = bucket
    put_tree(fs, name, {"red": 3, "blue": 3})
    (tmp_path / "c.yaml").write_text(f"name: t\ndataset:\n  source: memory://{name}/flowers/\n")
    result = CliRunner().invoke(main, ["--json", "validate", "-c", "c.yaml"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["summary"]["images"] == 6


def test_dataset_import_unreadable_source_exit_4_and_no_run(bucket, tmp_path):
    _, name = bucket
    result = CliRunner().invoke(main, ["--json", "dataset-import", f"memory://{name}/none/"])
    assert result.exit_code == 4
    assert f"memory://{name}/none" in json.loads(result.stdout)["message"]
    assert not (tmp_path / ".imgcls" / "runs").exists() or not list((tmp_path / ".imgcls" / "runs").iterdir())


def test_dataset_import_source_with_run_is_refused(tmp_path):
    result = CliRunner().invoke(main, ["--json", "dataset-import", "memory://x/y", "--run", "abc"])
    assert result.exit_code == 2

"""`gs://` dataset sources read through gcsfs against the fake Vertex's Cloud Storage JSON API: a folder
tree and an import file, byte-identical, resumed without refetching, a missing bucket named (exit 4)."""
from __future__ import annotations

import importlib.util
import io
import json
import os
import re

import pytest
from click.testing import CliRunner
from PIL import Image

if importlib.util.find_spec("gcsfs") is None:
    pytest.skip("gcsfs is not installed (imgcls[gcs])", allow_module_level=True)
# gcsfs's experimental bucket-type lookup asks Google's control plane over gRPC, which no emulator
# serves (it retries TLS handshakes for minutes); it is chosen when gcsfs is first imported, so this
# is set before anything imports it. Without it gcsfs speaks only the JSON API the fake answers.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"

from imgcls.cli import main
from tests.fakes.vertex import FakeVertex

MEDIA = re.compile(r"/download/storage/v1/b/[^/]+/o/|alt=media")


def png(n: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (9, 9), (n * 30 % 256, 90, 255 - n * 20 % 256)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def gcs(monkeypatch):
    import gcsfs
    assert gcsfs.GCSFileSystem.__name__ == "GCSFileSystem", "gcsfs was imported with its gRPC lookup on"
    with FakeVertex() as fake:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake.gcs_url)
        gcsfs.GCSFileSystem.clear_instance_cache()   # an instance keeps the endpoint it was made with
        fake.gcs.create_bucket("photos")
        blobs = {}
        for n, label in enumerate(["red", "red", "red", "blue", "blue", "blue"]):
            blobs[f"gs://photos/flowers/{label}/{n}.png"] = png(n)
            fake.gcs.write(f"gs://photos/flowers/{label}/{n}.png", png(n), "image/png")
        yield fake, blobs


def media_gets(fake, since: int) -> int:
    return sum(1 for r in fake.requests[since:] if MEDIA.search(r.path + "?" + "&".join(f"{k}={v}" for k, v in r.query.items())))


def test_gs_folder_and_import_file(gcs, tmp_path):
    fake, blobs = gcs
    result = CliRunner().invoke(main, ["--json", "dataset-import", "gs://photos/flowers/"])
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)["run"]
    rows = [json.loads(line) for line in (tmp_path / ".imgcls/runs" / run / "manifest.jsonl").read_text().splitlines()]
    assert sorted(r["source_uri"] for r in rows) == sorted(blobs)
    for row in rows:
        with open(row["uri"], "rb") as fh:
            assert fh.read() == blobs[row["source_uri"]]
        assert row["labels"] == [row["source_uri"].split("/")[-2]]

    # An import file next to the images, naming them relative to itself: nothing fetched again.
    csv = "".join(f"{'TEST' if i == 0 else 'TRAINING'},{u.removeprefix('gs://photos/')},{u.split('/')[-2]}\n"
                  for i, u in enumerate(sorted(blobs)))
    fake.gcs.write("gs://photos/import.csv", csv.encode(), "text/csv")
    since = len(fake.requests)
    (tmp_path / "c.yaml").write_text("name: gcs\ndataset:\n  source: gs://photos/import.csv\n")
    result = CliRunner().invoke(main, ["--json", "dataset-import", "-c", "c.yaml"])
    assert result.exit_code == 0, result.output
    assert media_gets(fake, since) == 1          # the import file itself; its images were cached
    run = json.loads(result.stdout)["run"]
    rows = [json.loads(line) for line in (tmp_path / ".imgcls/runs" / run / "manifest.jsonl").read_text().splitlines()]
    assert [r["split"] for r in rows if r["source_uri"] == sorted(blobs)[0]] == ["test"]


def test_gs_missing_bucket_exit_4(gcs, tmp_path):
    result = CliRunner().invoke(main, ["--json", "dataset-import", "gs://no-such-bucket/flowers/"])
    assert result.exit_code == 4
    assert json.loads(result.stdout)["message"] == "gs://no-such-bucket/flowers/ not found"

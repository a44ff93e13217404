"""Contract harness for `vertex`: the fake Vertex AI + Cloud Storage, reached through the real SDKs.

The provider talks to it through the explicit test seam (vertex.api_endpoint + IMGCLS_VERTEX_ANONYMOUS=1);
leftovers are whatever the fake still holds that the run created (images are shared and kept by design).
"""
from __future__ import annotations

import contextlib

import pytest

BUCKET = "imgcls-test"
PREFIX = "imgcls"


class VertexHarness:
    provider = "vertex"

    def __init__(self, fake):
        self.fake = fake
        self.config = (f"vertex:\n  project: test-project\n  location: us-central1\n"
                       f"  staging_bucket: gs://{BUCKET}/{PREFIX}\n  api_endpoint: {fake.url}\n")

    def leftovers(self, run) -> list[str]:
        return leftovers(self.fake, run)


def leftovers(fake, run) -> list[str]:
    """Every Vertex resource the fake holds (each test has its own fake), and the run's files in GCS."""
    state = fake.state
    found = [f"{kind} {res.resource['name']}" for kind, table in
             (("dataset", state.datasets), ("pipeline", state.pipelines), ("model", state.models),
              ("endpoint", state.endpoints), ("batch_job", state.batch_jobs)) for res in table.values()]
    found += [uri for uri in fake.gcs.list(f"gs://{BUCKET}/{PREFIX}/runs/{run.id}/")] if BUCKET in fake.gcs.buckets \
        else []
    return found


@contextlib.contextmanager
def start(tmp_path, monkeypatch):
    pytest.importorskip("google.cloud.aiplatform_v1")
    from tests.fakes.vertex import FakeVertex

    with FakeVertex(project="test-project", location="us-central1", pipeline_seconds=0.3,
                    batch_seconds=0.2) as fake:
        fake.gcs.create_bucket(BUCKET)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake.gcs_url)
        monkeypatch.setenv("IMGCLS_VERTEX_ANONYMOUS", "1")
        monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
        # The fake trains in 0.3 s: look at pipelines and batch jobs every 0.2 s instead of 1 s growing to 30.
        from imgcls.providers.vertex.provider import VertexProvider
        monkeypatch.setattr(VertexProvider, "poll_interval", 0.2)
        yield VertexHarness(fake)
        assert not fake.crashes, fake.crashes[0]
        assert not fake.unhandled, f"requests the fake has no route for: {fake.unhandled}"

"""Contract harness for `aws`: the fake Rekognition Custom Labels + S3 (tests/fakes/aws), reached through boto3
with the environment a user would export (AWS_ENDPOINT_URL and dummy keys). Leftovers are every project,
dataset, model version and bucket the fake still holds, plus any object under the run's prefix."""
from __future__ import annotations

import contextlib

import pytest


class AwsHarness:
    provider = "aws"
    config = "aws:\n  region: us-east-1\n"

    def __init__(self, fake, keep_buckets=()):
        self.fake = fake
        self.keep_buckets = set(keep_buckets)

    def leftovers(self, run) -> list[str]:
        return leftovers(self.fake, run, self.keep_buckets)


def leftovers(fake, run, keep_buckets=()) -> list[str]:
    s = fake.state
    found = [f"project {p.name}" for p in s.projects.values()]
    found += [f"dataset {d.arn}" for d in s.datasets.values()]
    found += [f"model {v.arn} ({v.status})" for v in s.versions.values()]
    found += [f"bucket {b}" for b in s.buckets if b not in keep_buckets]
    found += [f"object s3://{b}/{k}" for b, objects in s.buckets.items() for k in objects if run.id in k]
    return found


@contextlib.contextmanager
def start(tmp_path, monkeypatch, keep_buckets=()):
    pytest.importorskip("boto3")
    from tests.fakes.aws import FakeAws

    with FakeAws(train_seconds=0.3, start_seconds=0.2) as fake:
        for name in keep_buckets:
            fake.state.buckets[name] = {}
        for k, v in fake.env().items():
            monkeypatch.setenv(k, v)
        for k in ("AWS_PROFILE", "AWS_REGION", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3",
                  "AWS_ENDPOINT_URL_REKOGNITION"):
            monkeypatch.delenv(k, raising=False)
        # The fake trains in 0.3 s: look every 0.2 s instead of every 30.
        from imgcls.providers.aws.provider import AwsProvider
        monkeypatch.setattr(AwsProvider, "poll_interval", 0.2)
        yield AwsHarness(fake, keep_buckets)
        assert not fake.crashes, fake.crashes[0]

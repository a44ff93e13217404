"""Cloud scoring sends its requests concurrently (Provider.score_all): against each vendor's fake, with a
jittered prediction latency so that answers come back out of order, and with throttling, every image is
answered exactly once and the predictions keep the input order. Throughput is bench/bench_scoring.py's."""
from __future__ import annotations

import base64
import importlib
import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from imgcls import api
from imgcls.providers import registry
from tests.conftest import make_dataset

CLOUDS = ["customvision", "vertex", "azureml"]
# where each fake's prediction requests go, for a throttling fault
PREDICT_PATH = {"customvision": r"/classify/iterations/", "vertex": r":predict$", "azureml": r"/score$"}


@pytest.fixture(params=CLOUDS)
def harness(request, tmp_path, monkeypatch):
    module = importlib.import_module(f"tests.contract.harness_{request.param}")
    with module.start(tmp_path, monkeypatch) as h:
        yield h


def deployed(harness, tmp_path, *overrides: str):
    data = make_dataset(tmp_path / "data", {"red": 12, "green": 12, "blue": 12}, size=(96, 72))
    path = tmp_path / "run.yaml"
    path.write_text(f"name: concurrent\nprovider: {harness.provider}\ndataset:\n  source: {data}\n"
                    f"split:\n  validation: 0.2\n  test: 0.25\ntrain:\n  budget_minutes: 2\n{harness.config}")
    cfg = api.load(path, None, list(overrides))
    run, _ = api.deploy(cfg)
    return cfg, run, data


def to_score(tmp_path, n: int = 30) -> list[str]:
    """n new images, the colours interleaved, so that a row out of place shows in its label."""
    folder = make_dataset(tmp_path / "to-score", {"red": n // 3, "green": n // 3, "blue": n // 3}, seed=7,
                          size=(96, 72))
    by_colour = [sorted(str(p) for p in (folder / c).iterdir()) for c in ("red", "green", "blue")]
    return [p for trio in zip(*by_colour) for p in trio]


class JitteredLatency:
    """A fake's prediction latency of 50-150 ms (later requests often answer first), counting how many
    predictions the fake was working on at once."""

    def __init__(self):
        self.rng, self.lock = random.Random(0), threading.Lock()
        self.in_flight = self.most_in_flight = 0

    def __call__(self) -> float:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            seconds = self.rng.uniform(0.05, 0.15)
        time.sleep(seconds)
        with self.lock:
            self.in_flight -= 1
        return 0.0  # slept already


def answered(harness, since: int) -> list[bytes]:
    """What each prediction the fake answered (HTTP 200) after request number `since` carried: one item
    per image slot (Custom Vision: the whole request body, one image each)."""
    fake, out = harness.fake, []
    for r in fake.requests[since:]:
        if r.status != 200:
            continue
        if harness.provider == "customvision" and "/classify/iterations/" in r.path:
            out.append(r.body)
        elif harness.provider == "vertex" and r.path.endswith(":predict"):
            out += [base64.b64decode(i["content"]) for i in r.body["instances"]]
        elif harness.provider == "azureml" and r.path.endswith("/score"):
            out += [base64.b64decode(d) for d in r.body["input_data"]["data"]]
    return out


def test_defaults_come_from_each_vendors_documented_quota():
    for name in CLOUDS:
        limits = registry.get(name).limits
        assert limits.predict_concurrency >= 6 and limits.predict_requests_per_second
    assert registry.get("local").limits.predict_concurrency == 1


def test_concurrent_predictions_keep_the_input_order_and_each_image_is_scored_once(harness, tmp_path):
    cfg, run, _ = deployed(harness, tmp_path)
    paths = to_score(tmp_path)
    images = {p: Path(p).read_bytes() for p in paths}

    sequential = api.predict(cfg.model_copy(update={"predict": cfg.predict.model_copy(update={"concurrency": 1})}),
                             paths, run.id)
    harness.fake.prediction_latency = latency = JitteredLatency()
    since = len(harness.fake.requests)
    concurrent = api.predict(cfg, paths, run.id)

    assert latency.most_in_flight >= 2  # the requests did overlap at the service

    assert [p.image for p in concurrent] == paths
    assert [p.scores for p in concurrent] == [p.scores for p in sequential]
    expected = [p.split("/")[-2] for p in paths]
    assert np.mean([(p.labels or [None])[0] == e for p, e in zip(concurrent, expected)]) >= 0.6
    sent = answered(harness, since)
    assert len(sent) == len(paths)
    assert all(sum(img in s for s in sent) == 1 for img in images.values())


def test_throttled_requests_are_retried_and_nothing_is_lost_or_scored_twice(harness, tmp_path, monkeypatch):
    if harness.provider == "vertex":
        from imgcls.providers.vertex import client
        monkeypatch.setattr(client, "RETRY_DELAY", 0.02)
    cfg, run, _ = deployed(harness, tmp_path)
    paths = to_score(tmp_path, 24)
    images = [Path(p).read_bytes() for p in paths]
    harness.fake.prediction_latency = 0.02
    # two 429s (within every client's retries); Custom Vision's fake can let the first request through,
    # so that they land among the concurrent ones
    extra = {"after": 1} if harness.provider == "customvision" else {}
    harness.fake.faults.add("POST", PREDICT_PATH[harness.provider], 429, times=2, headers={"Retry-After": "1"},
                            **extra)
    since = len(harness.fake.requests)
    preds = api.predict(cfg, paths, run.id)

    assert [p.image for p in preds] == paths
    assert len([r for r in harness.fake.requests[since:] if r.status == 429]) == 2
    sent = answered(harness, since)
    assert len(sent) == len(paths) and all(sum(img in s for s in sent) == 1 for img in images)

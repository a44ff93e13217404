"""Online scoring throughput against each cloud vendor's fake (tests/fakes) with a fixed prediction latency:
one request at a time (predict.concurrency=1) against the providers' concurrent defaults; writes
bench/results/scoring.json.

Custom Vision takes one image per request and its documented S0 quota is 20 predictions per second, so
its default is paced to 20/s: 4x the sequential rate at 200 ms. Its row "raised quota" shows the same
code with predict.requests_per_second raised (a tier or an agreed increase above S0's).

    python bench/bench_scoring.py [--latency 0.2] [--images 1000]
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from tests.conftest import make_dataset  # noqa: E402

from imgcls import api  # noqa: E402
from imgcls.providers import registry  # noqa: E402

# provider -> images per request (the providers' defaults), for sizing the sequential sample
PER_REQUEST = {"vertex": 8, "azureml": 8, "customvision": 1}


def measure(provider: str, latency: float, n_images: int) -> dict:
    harness_mod = importlib.import_module(f"tests.contract.harness_{provider}")
    work = Path(tempfile.mkdtemp(prefix=f"bench-scoring-{provider}-"))
    mp = pytest.MonkeyPatch()
    mp.chdir(work)
    mp.setenv("IMGCLS_CACHE", str(work / "cache"))
    try:
        with harness_mod.start(work, mp) as harness:
            data = make_dataset(work / "data", {"red": 12, "green": 12, "blue": 12}, size=(96, 72))
            cfg_path = work / "run.yaml"
            cfg_path.write_text(f"name: bench\nprovider: {provider}\ndataset:\n  source: {data}\n"
                                f"split:\n  validation: 0.2\n  test: 0.25\n{harness.config}")
            run, _ = api.deploy(api.load(cfg_path))
            folder = make_dataset(work / "score", {"red": n_images}, seed=3, size=(96, 72))
            paths = sorted(str(p) for p in (folder / "red").iterdir())
            harness.fake.prediction_latency = latency
            # the sequential sample: 25 requests' worth, enough for a steady rate
            sample = paths[:25 * PER_REQUEST[provider]]
            rows = {"sequential": timed(cfg_path, run.id, sample, ["predict.concurrency=1"])}
            rows["concurrent (default)"] = timed(cfg_path, run.id, paths, [])
            if provider == "customvision":
                rows["concurrent, raised quota (100/s)"] = timed(cfg_path, run.id, paths,
                                                                 ["predict.requests_per_second=100"])
            base = rows["sequential"]["images_per_s"]
            for row in rows.values():
                row["speedup"] = round(row["images_per_s"] / base, 2)
            limits = registry.get(provider).limits
            return {"latency_s": latency, "images_per_request": PER_REQUEST[provider],
                    "default_concurrency": limits.predict_concurrency,
                    "default_requests_per_second": limits.predict_requests_per_second, **rows}
    finally:
        mp.undo()


def timed(cfg_path: Path, run_id: str, paths: list[str], overrides: list[str]) -> dict:
    cfg = api.load(cfg_path, None, overrides)
    began = time.perf_counter()
    preds = api.predict(cfg, paths, run_id)
    seconds = time.perf_counter() - began
    assert [p.image for p in preds] == paths
    return {"images": len(paths), "seconds": round(seconds, 2), "images_per_s": round(len(paths) / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--providers", default="vertex,azureml,customvision")
    args = parser.parse_args()
    results = {"target": ">= 6x sequential throughput at 200 ms latency", "cpus": os.cpu_count(),
               "loadavg_1min_before": round(os.getloadavg()[0], 2), "providers": {}}
    for provider in args.providers.split(","):
        n = args.images if PER_REQUEST[provider] > 1 else args.images // 4  # Custom Vision: 1 image a request
        results["providers"][provider] = measure(provider, args.latency, n)
        print(provider, json.dumps(results["providers"][provider]), file=sys.stderr)
    out = ROOT / "bench" / "results" / "scoring.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

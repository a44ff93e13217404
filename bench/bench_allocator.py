"""Seconds per EfficientNet-Lite0 training step (batch 32, as `best` fine-tunes) under each C allocator
path, each run in a fresh process without LD_PRELOAD; writes bench/results/allocator.json.

Variants: "default" (glibc as it comes, IMGCLS_ALLOCATOR=default), "product" (what imgcls does by itself:
providers/local/allocator.py), "tunables" (glibc's defaults changed by GLIBC_TUNABLES in the environment,
what re-executing with them would give), two ablations of the product's two mallopt() settings, the product's with the mmap threshold capped
at 32 MiB (older glibcs refuse more), and two further
settings tried on top of it (one malloc arena; a 256 MiB top pad).
The machine may be shared: each variant runs `--repeat` times, interleaved, and medians are reported, of
wall seconds and of CPU seconds (user + system) per step, which other people's load barely moves.

    python bench/bench_allocator.py [--repeat 5] [--steps 8] [--variants default,product,tunables]
    python bench/bench_allocator.py --variants default,product,mmap-threshold-only,trim-threshold-only,\
        product+arena-max-1,product+top-pad-256m --out bench/results/allocator-ablations.json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HUGE = 2**31 - 1
VARIANTS = {  # name -> (environment additions, mallopt calls the child makes itself)
    "default": ({"IMGCLS_ALLOCATOR": "default"}, []),
    "product": ({}, []),
    "tunables": ({"IMGCLS_ALLOCATOR": "default",
                  "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296"},
                 []),
    "mmap-threshold-only": ({"IMGCLS_ALLOCATOR": "default"}, [(-3, HUGE)]),
    "trim-threshold-only": ({"IMGCLS_ALLOCATOR": "default"}, [(-1, HUGE)]),
    # what an older glibc would allow: it refuses mmap thresholds above 32 MiB (HEAP_MAX_SIZE / 2)
    "capped-32m+trim": ({"IMGCLS_ALLOCATOR": "default"}, [(-3, 32 << 20), (-1, HUGE)]),
    # the fallback for those: no mmap at all (M_MMAP_MAX 0) and no trimming
    "mmap-max-0+trim": ({"IMGCLS_ALLOCATOR": "default"}, [(-4, 0), (-1, HUGE)]),
    "product+arena-max-1": ({}, [(-8, 1)]),
    "product+top-pad-256m": ({}, [(-2, 256 << 20)]),
}
CLEARED = ("LD_PRELOAD", "GLIBC_TUNABLES", "MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
           "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_", "IMGCLS_ALLOCATOR")


def child(variant: str, steps: int) -> dict:
    """One fresh process: the product's start-up path, then a warm-up step and `steps` timed steps."""
    import ctypes

    for param, value in VARIANTS[variant][1]:
        ctypes.CDLL(None).mallopt(param, value)
    started = time.perf_counter()
    from imgcls.providers.local import allocator
    from imgcls.providers.local.backbone import FEATURE_DIM, load_backbone
    from imgcls.providers.local.finetune import BEST, freeze_early_stages
    from imgcls.providers.local.model import Classifier, Head, head_loss, torch  # configures the allocator

    features = load_backbone("lite0")[0]
    model = Classifier(features, Head(FEATURE_DIM, 5, BEST["dropout"])).to(memory_format=torch.channels_last)
    freeze_early_stages(features, BEST["frozen_stages"])
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eval()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=BEST["lr"])
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(BEST["batch_size"], 3, 224, 224, generator=gen).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 5, (BEST["batch_size"],), generator=gen)
    load_s = time.perf_counter() - started
    times, usage = [], None
    for step in range(steps + 1):
        if step == 1:  # the timed steps' page faults and kernel time: what glibc's munmap/trim costs
            usage = resource.getrusage(resource.RUSAGE_SELF)
        began = time.perf_counter()
        loss = head_loss(model(x), y, False, BEST["label_smoothing"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - began)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"variant": variant, "allocator": allocator.active(), "load_s": round(load_s, 2),
            "minor_faults_per_step": round((after.ru_minflt - usage.ru_minflt) / steps),
            "system_s_per_step": round((after.ru_stime - usage.ru_stime) / steps, 3),
            # CPU seconds (user + system) per step: unlike wall time, barely moved by other people's load
            "cpu_s_per_step": round((after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime) / steps, 3),
            "warmup_s": round(times[0], 3), "step_s": [round(t, 3) for t in times[1:]],
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "torch_threads": torch.get_num_threads()}


def run_fresh(variant: str, steps: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update(VARIANTS[variant][0])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    load = os.getloadavg()[0]
    out = subprocess.run([sys.executable, __file__, "--child", variant, "--steps", str(steps)], env=env,
                         capture_output=True, text=True, check=True)
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "loadavg_1min_before": round(load, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--variants", default="default,product,tunables")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "allocator.json")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.steps)))
        return
    variants = args.variants.split(",")
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(args.repeat):  # interleaved, so that a busy spell on the shared machine hits every variant
        for v in variants:
            runs[v].append(run_fresh(v, args.steps))
            print(f"repeat {r + 1}: {v}: {runs[v][-1]['step_s']} s/step", file=sys.stderr)
    summary = {}
    for v, rs in runs.items():
        per_run = [statistics.median(r["step_s"]) for r in rs]
        summary[v] = {"allocator": rs[0]["allocator"], "median_step_s": round(statistics.median(per_run), 3),
                      "per_process_median_step_s": per_run,
                      "median_cpu_s_per_step": statistics.median(r["cpu_s_per_step"] for r in rs),
                      "median_minor_faults_per_step": statistics.median(r["minor_faults_per_step"] for r in rs),
                      "median_system_s_per_step": statistics.median(r["system_s_per_step"] for r in rs),
                      "median_max_rss_mb": statistics.median(r["max_rss_mb"] for r in rs)}
    base = summary.get("default", {}).get("median_step_s")
    base_cpu = summary.get("default", {}).get("median_cpu_s_per_step")
    for v in summary:
        if base:
            summary[v]["speedup_vs_default"] = round(base / summary[v]["median_step_s"], 2)
            summary[v]["cpu_speedup_vs_default"] = round(base_cpu / summary[v]["median_cpu_s_per_step"], 2)
    results = {"loadavg_1min_after": round(os.getloadavg()[0], 2), "workload": "EfficientNet-Lite0 forward+backward+AdamW step, batch 32, 224 px, "
                           "best's frozen stages and channels_last",
               "steps_per_process": args.steps, "repeats": args.repeat, "cpus": os.cpu_count(),
               "glibc": _glibc_version(), "python": sys.version.split()[0], "summary": summary, "runs": runs}
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


def _glibc_version() -> str | None:
    import ctypes
    try:
        fn = ctypes.CDLL(None).gnu_get_libc_version
    except (OSError, TypeError, AttributeError):
        return None
    fn.restype = ctypes.c_char_p
    return fn().decode()


if __name__ == "__main__":
    main()

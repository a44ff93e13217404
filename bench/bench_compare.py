"""Quick vs best on flowers-dev through the public API, compared on the same test images.

Writes bench/results/compare.json (both accuracies, the difference with its bootstrap interval,
McNemar's p) and docs/report.png, a screenshot of the quick run's report in headless Chromium.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import imgcls.api as api  # noqa: E402
from imgcls.runs import to_jsonable  # noqa: E402


def evaluate(preset: str, budget: float, runs_dir: Path) -> dict:
    cfg = api.load(ROOT / "configs" / "flowers-dev.yaml",
                   overrides=[f"train.preset={preset}", f"train.budget_minutes={budget}", f"runs_dir={runs_dir}"])
    started = time.monotonic()
    run, evaluation = api.evaluate(cfg, gates=[])
    return {"run": run.id, "preset": preset, "seconds": round(time.monotonic() - started, 1),
            "accuracy": evaluation.metrics["accuracy"], "micro": evaluation.metrics["micro"],
            "report": evaluation.report}


def screenshot(report: str, out: Path) -> None:
    browser = shutil.which("chromium")
    if not browser:
        print("no chromium: skipping the screenshot", file=sys.stderr)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--user-data-dir=/tmp/imgcls-chrome", f"--screenshot={out}", "--window-size=1200,2200",
                    Path(report).resolve().as_uri()], check=True, capture_output=True, timeout=120,
                   env={k: v for k, v in os.environ.items() if k != "LD_PRELOAD"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget-minutes", type=float, default=15)
    parser.add_argument("--runs-dir", type=Path, default=ROOT / ".imgcls" / "bench-runs")
    args = parser.parse_args()
    # Fresh runs: a run of the same config would otherwise be reused, trained by an older engine.
    shutil.rmtree(args.runs_dir, ignore_errors=True)
    quick = evaluate("quick", args.budget_minutes, args.runs_dir)
    best = evaluate("best", args.budget_minutes, args.runs_dir)
    comparison = api.compare([quick["run"], best["run"]], args.runs_dir)
    pair = comparison["pairwise"][0]
    result = {"quick": quick, "best": best,
              "best_minus_quick": {"accuracy_diff": pair["accuracy_diff"], "ci_low": pair["ci_low"],
                                   "ci_high": pair["ci_high"], "confidence": pair["confidence"],
                                   "mcnemar_p": pair["mcnemar"]["p_value"], "b01": pair["mcnemar"]["b01"],
                                   "b10": pair["mcnemar"]["b10"]},
              "n_test_images": comparison["n_images"]}
    out = ROOT / "bench" / "results" / "compare.json"
    out.write_text(json.dumps(to_jsonable(result), indent=2) + "\n")
    print(json.dumps(to_jsonable(result), indent=2))
    subprocess.run([sys.executable, "-m", "imgcls.cli", "compare", quick["run"], best["run"],
                    "--runs-dir", str(args.runs_dir)], check=True)
    screenshot(quick["report"], ROOT / "docs" / "report.png")


if __name__ == "__main__":
    main()

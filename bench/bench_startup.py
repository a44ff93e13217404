"""Start-up time of `imgcls --help` and `imgcls providers` (target ≤ 0.3 s); writes bench/results/startup.json."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMGCLS = Path(sys.executable).with_name("imgcls")


def measure(args: list[str], repeat: int = 15) -> dict:
    times = []
    for _ in range(repeat + 2):
        start = time.perf_counter()
        subprocess.run([str(IMGCLS), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    times = sorted(times[2:])  # the first runs warm the page cache
    return {"median_s": round(statistics.median(times), 4), "p90_s": round(times[int(0.9 * len(times)) - 1], 4),
            "min_s": round(times[0], 4), "runs": repeat}


def main() -> None:
    results = {"help": measure(["--help"]), "providers": measure(["providers"]), "target_s": 0.3,
               "python": sys.version.split()[0], "cpus": os.cpu_count()}
    results["ok"] = all(results[k]["median_s"] <= 0.3 for k in ("help", "providers"))
    out = ROOT / "bench" / "results" / "startup.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

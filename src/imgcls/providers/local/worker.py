"""`python -m imgcls.providers.local.worker RUN_DIR`: trains a run in the background (train --no-wait)."""
from __future__ import annotations

import sys
import traceback
from pathlib import Path

from ...errors import ImgclsError
from ...progress import Progress
from ...runs import Run, now, write_json
from .provider import LocalProvider


def main(run_dir: str) -> int:
    run = Run(Path(run_dir))
    provider = LocalProvider(run.config(), run, Progress(enabled=True))
    try:
        provider.train_here()
    except ImgclsError as exc:
        write_json(run.file("work", "status.json"), {"state": "failed", "error": str(exc), "at": now()})
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # recorded for `status`, with the traceback in train.log
        traceback.print_exc()
        write_json(run.file("work", "status.json"), {"state": "failed", "error": f"{type(exc).__name__}: {exc}"})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

"""How a run's Azure ML resources are named: derived from the run id, so a resumed run finds them again,
and within Azure's rules (job names take no dots, endpoint names 3-32 characters unique in the region,
compute names 2-16, model versions are integers while data asset versions may be any string)."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

IMAGES_PREFIX = "imgcls/images/"          # content-addressed, shared by every run
DEPLOYMENT = "imgcls"                     # the one deployment of the run's online or batch endpoint


def short_id(run) -> str:
    """The part of the run id after `<name>-<provider>-`: `20260101-120000-ab12`."""
    return run.id.removeprefix(f"{run.ledger.get('name')}-{run.provider}-")


def _slug(text: str, allowed: str = r"A-Za-z0-9_-") -> str:
    return re.sub(rf"[^{allowed}]+", "-", text).strip("-")


def run_prefix(run) -> str:
    return f"imgcls/runs/{run.id}/"


def image_blob(sha256: str, suffix: str) -> str:
    return f"{IMAGES_PREFIX}{sha256}{suffix}"


def job(run, attempt: int = 1) -> str:
    base = _slug(f"imgcls-{run.id}")[:240]
    return base if attempt <= 1 else f"{base}-{attempt}"


def experiment(config_name: str) -> str:
    return _slug(f"imgcls-{config_name}")[:250]


def data_asset(config_name: str, split: str) -> str:
    return _slug(f"imgcls-{config_name}-{split}", r"A-Za-z0-9_.-")[:250]


def data_version(run) -> str:
    return _slug(short_id(run), r"A-Za-z0-9_.-") or "1"


def model(run) -> tuple[str, str]:
    """(name, version): one model name per run, version "1" — known before registering, never raced."""
    return _slug(f"imgcls-{run.ledger.get('name')}-{short_id(run)}", r"A-Za-z0-9_.-")[:250], "1"


def compute(run) -> str:
    """The default cluster name: unique to the project (the folder holding .imgcls/runs), and the same
    for all its runs, so they share one cluster and no one else's `gpu-cluster` is taken for it.
    `imgcls-` + 8 hex = 15 characters: Azure wants 2-16, a letter first."""
    runs_dir = Path(run.path).parent.resolve()
    root = runs_dir.parent.parent if runs_dir.parts[-2:] == (".imgcls", "runs") else runs_dir
    return f"imgcls-{hashlib.sha1(str(root).encode()).hexdigest()[:8]}"


def _stem(run) -> str:
    stem = _slug(str(run.ledger.get("name")).lower(), r"a-z0-9")[:14].strip("-")
    return stem if stem and stem[0].isalpha() else f"ic-{stem}".strip("-")


def endpoint(run) -> str:
    return f"{_stem(run)}-{hashlib.sha1(run.id.encode()).hexdigest()[:10]}"


def batch_endpoint(run) -> str:
    """Batch endpoint names share the region's namespace with online ones: another hash of the run id."""
    return f"{_stem(run)}-{hashlib.sha1(f'batch:{run.id}'.encode()).hexdigest()[:10]}"


def batch_job(run, key: str, attempt: int = 1) -> str:
    """The scoring job of one set of images (`key`: a hash of their contents), so a rerun finds it."""
    base = _slug(f"imgcls-{run.id}-batch-{key}")[:240]
    return base if attempt <= 1 else f"{base}-{attempt}"

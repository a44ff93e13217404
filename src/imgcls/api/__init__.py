"""The Python API: everything the CLI does, with the same arguments, returning plain values.

    import imgcls.api as imgcls
    cfg = imgcls.load("configs/flowers.yaml", provider="local")
    result = imgcls.run(cfg)

A function that takes a config also takes `run_id`; with a run id, the config may be None (the run's
own copy is used), from any folder under the project.
"""
from __future__ import annotations

from ..comparison import compare
from ..providers import registry
from .adopt import adopt
from .costs import bills, check_caps, down_expired, plan
from .dataset_export import export_dataset
from .lifecycle import (
    deploy,
    evaluate,
    export,
    import_dataset,
    labels_of_run,
    predict,
    run,
    to_prediction,
    train,
    validate,
)
from .migrate import migrate
from .runstate import (
    build_manifest,
    config_fingerprint,
    data_fingerprint,
    load,
    open_run,
    runs_dir,
    source_config,
)
from .state import doctor, down, report_path, runs, status


def providers(cfg=None) -> list[dict]:
    """Each provider: capabilities, limits, whether its extra is installed and credentials are found."""
    return registry.describe(cfg)


__all__ = [
    "adopt",
    "bills",
    "check_caps",
    "down_expired",
    "plan",
    "build_manifest",
    "compare",
    "config_fingerprint",
    "data_fingerprint",
    "deploy",
    "doctor",
    "down",
    "evaluate",
    "export",
    "export_dataset",
    "import_dataset",
    "labels_of_run",
    "load",
    "migrate",
    "open_run",
    "predict",
    "providers",
    "report_path",
    "run",
    "runs",
    "runs_dir",
    "source_config",
    "status",
    "to_prediction",
    "train",
    "validate",
]

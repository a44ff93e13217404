"""The Python API: everything the CLI does, with the same arguments, returning plain values.

    import imgcls.api as imgcls
    cfg = imgcls.load("configs/flowers.yaml", provider="local")
    result = imgcls.run(cfg)

A function that takes a config also takes `run_id`; with a run id, the config may be None (the run's
own copy is used), from any folder under the project. Where a RunConfig goes, a config file's path does
too (as -c takes it).
"""
from __future__ import annotations

import functools
import inspect
import os

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
    run,
    train,
    validate,
)
from .migrate import migrate
from .predicting import predict, to_prediction
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


def _config_or_path(fn):
    """`fn` with its first argument, `cfg`, also taken as a config file's path (loaded as `load` does)."""
    from ..config import RunConfig
    from ..errors import UsageError

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        args, given = list(args), args[0] if args else kwargs.get("cfg")
        if isinstance(given, (str, os.PathLike)):
            given = load(given)
        elif given is not None and not isinstance(given, RunConfig):
            raise UsageError(f"{fn.__name__}() takes a RunConfig (imgcls.api.load), a config file's path or None "
                             f"as cfg, not {type(given).__name__}")
        if args:
            args[0] = given
        elif "cfg" in kwargs:
            kwargs["cfg"] = given
        return fn(*args, **kwargs)
    return wrapper


for _name in __all__:
    _fn = globals()[_name]
    if inspect.isfunction(_fn) and next(iter(inspect.signature(_fn).parameters), None) == "cfg":
        globals()[_name] = _config_or_path(_fn)

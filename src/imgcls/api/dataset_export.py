"""dataset-export: a run's manifest (or a config's dataset as read now, split as a run would split it)
written out in another provider's import format or as a folder tree — the way out, for any provider."""
from __future__ import annotations

from pathlib import Path

from .. import runs as runs_mod
from ..config import RunConfig
from ..data import exporters, manifest
from ..errors import UsageError
from ..progress import Progress
from .runstate import QUIET, address, build_manifest

SPLITS = ("train", "validation", "test")


def export_dataset(cfg: RunConfig | None, out: str | Path, fmt: str, run_id: str | None = None,
                   splits: list[str] | tuple[str, ...] = (), uri_prefix: str | None = None,
                   progress: Progress = QUIET) -> dict:
    """Write the dataset into the folder `out` as `fmt` (see `formats()`): the manifest of run `run_id`,
    else the config's dataset with its deterministic split. `splits` keeps only those splits;
    `uri_prefix` lists images where they will be uploaded (their copies go to `out/images/`)."""
    if fmt not in exporters.OUT_FORMATS:
        raise UsageError(f"--format {fmt!r} is not a dataset-export format",
                         hint="one of: " + ", ".join(exporters.OUT_FORMATS))
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise UsageError(f"--split {unknown[0]!r} is not a split", hint="one of: " + ", ".join(SPLITS))
    if uri_prefix is not None and exporters.OUT_FORMATS[fmt].tree:
        raise UsageError(f"--uri-prefix applies to import files; {fmt} is a folder of image copies",
                         hint="drop --uri-prefix, or pick --format vertex-csv, vertex-jsonl or azureml-mltable")
    if uri_prefix is not None and "://" not in uri_prefix:
        raise UsageError(f"--uri-prefix {uri_prefix!r} is not a URI",
                         hint="e.g. gs://bucket/path or azureml://datastores/workspaceblobstore/paths/path")
    if run_id:
        cfg, run = address(cfg, run_id)
        path = run.file("manifest.jsonl")
        if not path.exists():
            raise UsageError(f"run {run.id} has no manifest yet", hint=f"imgcls dataset-import --run {run.id}")
        df, source = manifest.read(path), f"run {run.id}"
    elif cfg is None:
        raise UsageError("no config and no --run", hint="pass -c CONFIG, or --run RUN_ID (see `imgcls runs`)")
    else:
        df, source = build_manifest(cfg), cfg.dataset.source
    if splits:
        df = df[df["split"].isin(list(splits))].reset_index(drop=True)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file", hint="give a folder (it is created if missing)")
    written = exporters.write(df, fmt, out, cfg.multilabel, uri_prefix)
    for warning in written.warnings:
        progress.warn(warning)
    counts = manifest.summary(df[df["labels"].map(len) > 0])
    result = {"format": fmt, "source": source, "out": str(out), "files": [str(p) for p in written.files],
              "images": counts["images"], "labels": counts["labels"], "splits": counts["splits"],
              "copied": written.copied, "skipped_unlabelled": written.skipped_unlabelled, "uri_prefix": uri_prefix}
    if uri_prefix and written.copied:
        result["upload"] = f"upload {out / 'images'} to {uri_prefix.rstrip('/')}/images/"
    return runs_mod.to_jsonable(result)


def formats() -> dict[str, str]:
    """dataset-export format -> what it writes."""
    return {name: f.description for name, f in exporters.OUT_FORMATS.items()}

"""The images given to `imgcls predict`: files, folders, globs, import files (CSV/JSON Lines, as
`dataset-import` reads them) or a list on stdin, as paths to read (or, from an import file, remote URIs
that only `predict --batch` on a provider that reads them can take)."""
from __future__ import annotations

import glob as globlib
import os
from pathlib import Path

from ..errors import DataError
from . import manifest

IMPORT_SUFFIXES = (".csv", ".jsonl", ".json")


def expand_inputs(inputs: list[str]) -> list[str]:
    """Files, folders (recursively), globs and import files -> image paths (or an import file's remote
    URIs), in a stable order: an import file's images in its own order."""
    out: list[str] = []
    for item in inputs:
        if not item.strip():
            continue
        if item != item.strip() and not os.path.exists(item):
            item = item.strip()  # a pasted list's stray blanks; a file named with them is taken as it is
        if "://" in item:  # every provider is sent the image's bytes, read here
            raise DataError(f"{item}: only local image files can be predicted",
                            hint="download it first (e.g. `curl -O` or `gcloud storage cp`), then give the file")
        if os.path.isdir(item):
            out += sorted(str(p) for p in Path(item).rglob("*")
                          if p.is_file() and p.suffix.lower() in manifest.IMAGE_SUFFIXES)
        elif any(c in item for c in "*?["):
            matched = sorted(globlib.glob(item, recursive=True))
            if not matched:
                raise DataError(f"no files match {item!r}", hint="check the pattern (quote it to stop the shell)")
            out += [m for m in matched if os.path.isfile(m)]
        elif os.path.isfile(item) and item.lower().endswith(IMPORT_SUFFIXES):
            out += _import_file(Path(item))
        elif os.path.isfile(item):
            out.append(item)
        else:
            raise DataError(f"no such file: {item}", hint="give image files, folders or globs")
    if not out:
        raise DataError("no images to predict", hint="give image files, folders or globs (or a list on stdin)")
    return out


def _import_file(path: Path) -> list[str]:
    """The images an import file lists (relative paths resolved against it), as dataset-import reads them."""
    from . import formats, importers
    fmt = importers.detect_format(path)
    try:
        rows = formats.get(fmt).read(path)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text", hint="save the import file as UTF-8") from None
    if not rows:
        raise DataError(f"{path} lists no images", hint="give an import file with one image per row")
    return [str(r["uri"]) for r in rows]


def local_only(paths: list[str], allowed: tuple[str, ...] = (), why: str = "online prediction") -> None:
    """Refuse remote URIs (from an import file) whose scheme is not in `allowed`, naming the first one."""
    remote = [p for p in paths if "://" in p and p.split("://", 1)[0] not in allowed]
    if remote:
        also = f" (and {len(remote) - 1} more)" if len(remote) > 1 else ""
        raise DataError(f"{remote[0]}{also}: {why} reads local image files only",
                        hint="download them first and list the local files, or use `imgcls predict --batch` "
                             "on vertex, whose batch prediction jobs read gs:// images where they are")


def read_image(uri: str) -> bytes:
    """The bytes of one input image; a path that cannot be read is a DataError naming it."""
    try:
        return Path(uri).read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {uri}: {exc.strerror}", hint="check the path") from None

"""The images given to `imgcls predict`: files, folders, globs or a list on stdin, as paths to read."""
from __future__ import annotations

import glob as globlib
import os
from pathlib import Path

from ..errors import DataError
from . import manifest


def expand_inputs(inputs: list[str]) -> list[str]:
    """Files, folders (recursively) and globs -> image paths, in a stable order."""
    out: list[str] = []
    for item in inputs:
        item = item.strip()
        if not item:
            continue
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
        elif os.path.isfile(item):
            out.append(item)
        else:
            raise DataError(f"no such file: {item}", hint="give image files, folders or globs")
    if not out:
        raise DataError("no images to predict", hint="give image files, folders or globs (or a list on stdin)")
    return out


def read_image(uri: str) -> bytes:
    """The bytes of one input image; a path that cannot be read is a DataError naming it."""
    try:
        return Path(uri).read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {uri}: {exc.strerror}", hint="check the path") from None

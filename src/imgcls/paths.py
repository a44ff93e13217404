"""File names that come from elsewhere (a service's answer, a manifest) confined to the folder they are
meant for: resolved, then checked to stay inside it, so `../` or an absolute name cannot write elsewhere."""
from __future__ import annotations

from pathlib import Path

from .errors import ImgclsError, ProviderError


def confined(folder: Path, name: str, source: str, error: type[ImgclsError] = ProviderError) -> Path:
    """`folder / name`, refused (`error`, naming the name and who gave it) when, resolved, it would lie
    outside `folder` or be the folder itself: `..`, an absolute name or a symbolic link cannot lead out."""
    base = Path(folder).resolve()
    if not name or "\x00" in name:
        raise error(f"{source} gave the file name {name!r}, which is not a file name", name=name)
    target = (base / name).resolve()
    if target == base or not target.is_relative_to(base):
        raise error(f"{source} gave the file name {name!r}, which would be written outside {base}",
                    hint="nothing was written outside it; a file name from elsewhere must stay in its folder",
                    name=name)
    return Path(folder) / name

"""The C allocator under torch: on glibc, large blocks are kept instead of being handed back to the OS
after every free, which made one EfficientNet-Lite0 training step at batch 32 about 7x slower here.

glibc's malloc serves large requests with mmap and returns them with munmap (and trims the heap top),
so every activation of every training step costs fresh page faults and zeroed pages. Raising the
mmap and trim thresholds through mallopt() keeps those blocks in the heap for reuse, as tcmalloc
does. mallopt() acts in the running process, so it also holds for the Python API (`imgcls.train()`
in a notebook), where re-executing with GLIBC_TUNABLES could not. bench/bench_allocator.py measures it.
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

# mallopt() parameters, from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
# mallopt() takes an int: 2 GiB - 1 is the largest threshold it can be given. Blocks above it are rare
# and still mapped afresh; everything a CNN training step allocates stays below.
THRESHOLD = 2**31 - 1
OPT_OUT = "IMGCLS_ALLOCATOR"  # "default": leave the C allocator as it is (e.g. to compare, or to save memory)

_active: str | None = None


def configure() -> str:
    """Tune the C allocator once per process, before torch allocates; returns the path in effect:

    - "tcmalloc" / "jemalloc": the user preloaded one (LD_PRELOAD); it is left alone;
    - "glibc-tuned": glibc's mmap and trim thresholds raised through mallopt();
    - "default": anything else — musl, macOS, Windows, mallopt() refused, or IMGCLS_ALLOCATOR=default.
    """
    global _active
    if _active is None:
        _active = _configure()
    return _active


def active() -> str:
    """The path configure() chose, or "default" when it has not run in this process."""
    return _active or "default"


def _configure() -> str:
    preloaded = _preloaded()
    if preloaded:
        return preloaded
    if os.environ.get(OPT_OUT, "").strip().lower() == "default":
        return "default"
    libc = _glibc()
    if libc is None:
        return "default"
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success. Older glibcs refuse an mmap threshold above 32 MiB (HEAP_MAX_SIZE / 2),
    # too low: a batch of 32 has activations of 50-150 MiB (measured: as many page faults as untuned).
    # Then no mmap at all (M_MMAP_MAX 0): on glibc 2.36 it gives the same page faults and kernel time per
    # step as the raised threshold (bench/results/allocator-ablations.json, "mmap-max-0+trim").
    no_fresh_maps = libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD) == 1 or libc.mallopt(M_MMAP_MAX, 0) == 1
    kept = libc.mallopt(M_TRIM_THRESHOLD, THRESHOLD) == 1
    return "glibc-tuned" if no_fresh_maps and kept else "default"


def _preloaded(maps_file: str = "/proc/self/maps") -> str | None:
    """An allocator replacing malloc in this process (Linux: mapped from its own shared library)."""
    try:
        maps = Path(maps_file).read_text()
    except OSError:
        return None
    for name in ("tcmalloc", "jemalloc"):
        if f"lib{name}" in maps:
            return name
    return None


def _glibc():
    """The C library of this process if it is glibc (musl and macOS's libSystem have no
    gnu_get_libc_version), else None."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - the lookup is the test
        libc.mallopt  # noqa: B018
    except (OSError, TypeError, AttributeError):  # TypeError: Windows' CDLL wants a name
        return None
    return libc

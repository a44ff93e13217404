"""The C allocator path of the local engine: tuned glibc malloc in every fresh process that starts torch
work, left alone under a preloaded allocator, a clean "default" elsewhere."""
from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import pytest

from imgcls.providers.local import allocator

MiB = 1 << 20

# A fresh process takes the path every torch command takes (the engine's model module), then asks glibc
# itself (mallinfo2) what became of a 256 MiB block: served from a fresh mapping, and kept after free?
PROBE = """
import ctypes, json
import imgcls.providers.local.model  # where every torch command of the local engine starts
from imgcls.providers.local import allocator

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
before = libc.mallinfo2()
block = libc.malloc(256 << 20)
during = libc.mallinfo2()
libc.free(block)
after = libc.mallinfo2()
print(json.dumps({"allocator": allocator.active(), "mmapped": during.hblkhd - before.hblkhd,
                  "heap_kept_after_free": after.arena - before.arena}))
"""


def _glibc_with_mallinfo2() -> bool:
    try:
        libc = ctypes.CDLL(None)
        return hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallinfo2")
    except (OSError, TypeError):
        return False


def probe(**env) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "GLIBC_TUNABLES", allocator.OPT_OUT)}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True,
                         check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="needs glibc >= 2.33 (mallinfo2)")
def test_a_fresh_process_starting_torch_work_keeps_large_blocks_in_the_heap():
    pytest.importorskip("torch")
    tuned, untouched = probe(), probe(IMGCLS_ALLOCATOR="default")
    assert tuned["allocator"] == "glibc-tuned"
    # tuned: no fresh mapping for the block, and its memory stays in the heap for the next step's reuse
    assert tuned["mmapped"] == 0 and tuned["heap_kept_after_free"] >= 256 * MiB
    # glibc as it comes (the opt-out): the same block is mapped afresh and handed back on free
    assert untouched["allocator"] == "default"
    assert untouched["mmapped"] >= 256 * MiB and untouched["heap_kept_after_free"] < 256 * MiB


def test_a_preloaded_allocator_is_left_alone(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text("7f3c1a000000-7f3c1a02a000 r--p 00000000 fe:01 1234 "
                    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4.5.16\n")
    assert allocator._preloaded(str(maps)) == "tcmalloc"
    maps.write_text("7f3c1a000000-7f3c1a02a000 r--p 00000000 fe:01 1234 /usr/lib/x86_64-linux-gnu/libc.so.6\n")
    assert allocator._preloaded(str(maps)) is None
    assert allocator._preloaded(str(tmp_path / "no-proc")) is None  # macOS: no /proc


def test_a_glibc_that_refuses_a_high_mmap_threshold_gets_no_mmap_instead(monkeypatch):
    class Mallopt:  # a callable that takes ctypes' argtypes/restype like a C function does
        def __init__(self):
            self.calls = []

        def __call__(self, param, value):
            self.calls.append((param, value))
            return 0 if param == allocator.M_MMAP_THRESHOLD and value > 32 * MiB else 1

    class OldGlibc:
        gnu_get_libc_version = object()

        def __init__(self):
            self.mallopt = Mallopt()

    libc = OldGlibc()
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: libc)
    monkeypatch.setattr(allocator, "_preloaded", lambda: None)
    monkeypatch.setattr(allocator, "_active", None)
    monkeypatch.delenv(allocator.OPT_OUT, raising=False)
    assert allocator.configure() == "glibc-tuned"
    assert libc.mallopt.calls == [(allocator.M_MMAP_THRESHOLD, allocator.THRESHOLD), (allocator.M_MMAP_MAX, 0),
                                  (allocator.M_TRIM_THRESHOLD, allocator.THRESHOLD)]


@pytest.mark.parametrize("libc", ["no C library by that call", "musl", "macOS"])
def test_without_glibc_the_path_is_default_and_nothing_breaks(monkeypatch, libc):
    class Musl:  # musl has a mallopt that does nothing, and no gnu_get_libc_version
        def mallopt(self, *args):
            raise AssertionError("mallopt must not be called outside glibc")

    class LibSystem:  # macOS: neither
        pass

    def cdll(name):
        if libc == "musl":
            return Musl()
        if libc == "macOS":
            return LibSystem()
        raise TypeError("Windows: CDLL() needs a library name")

    monkeypatch.setattr(allocator.ctypes, "CDLL", cdll)
    monkeypatch.setattr(allocator, "_preloaded", lambda: None)
    monkeypatch.setattr(allocator, "_active", None)
    assert allocator.configure() == "default" and allocator.active() == "default"

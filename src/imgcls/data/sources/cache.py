"""The download cache: images stored by the SHA-256 of their bytes (`images/ab/abcd….jpg`), fetched in
parallel, each landing only once complete and verified, with an index of URI -> file so that an import
interrupted half-way fetches only what is still missing when it runs again."""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from ...errors import DataError, ImgclsError
from ..manifest import IMAGE_SUFFIXES
from .remote import RemoteImage

INDEX = "index.jsonl"
RETRIES = 3            # reads per image before it counts as failed (a flaky connection, a 503)
BACKOFF_S = 0.2        # first wait between reads; doubles
GIVE_UP_AFTER = 25     # failures in a row with no success: the source is down, stop asking it

# Magic numbers -> suffix: the file's name follows its bytes, so one hash has one name.
_MAGIC = [(b"\xff\xd8\xff", ".jpg"), (b"\x89PNG\r\n\x1a\n", ".png"), (b"GIF87a", ".gif"), (b"GIF89a", ".gif"),
          (b"BM", ".bmp"), (b"II*\x00", ".tif"), (b"MM\x00*", ".tif"), (b"\x00\x00\x01\x00", ".ico")]


def default_root(runs_dir: Path | None = None) -> Path:
    """$IMGCLS_CACHE/images, else `.imgcls/cache/images` next to the project's runs folder."""
    env = os.environ.get("IMGCLS_CACHE")
    if env:
        return Path(env) / "images"
    if runs_dir is None:
        from ...runs import project_runs_dir
        runs_dir = project_runs_dir()
    return Path(runs_dir).parent / "cache" / "images"


def suffix_for(data: bytes, uri: str) -> str:
    """The image's suffix from its bytes, else from the URI's path, else none."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    for magic, suffix in _MAGIC:
        if data.startswith(magic):
            return suffix
    suffix = Path(urlparse(uri).path).suffix.lower()
    return suffix if suffix in IMAGE_SUFFIXES else ""


@dataclass(frozen=True)
class Fetched:
    image: RemoteImage
    path: Path
    sha256: str
    downloaded: bool      # False: it was in the cache already


class ImageCache:
    def __init__(self, root: Path):
        self.root = Path(root).absolute()   # the manifest lists absolute paths
        self._lock = threading.Lock()
        self._index: dict[str, str] | None = None

    # -- the index: URI -> path relative to root ---------------------------------------------------
    def index(self) -> dict[str, str]:
        """URI -> cached file. Each line is appended only after its file is in place, so a line that
        is there names a complete file; a torn last line (killed mid-write) is ignored."""
        if self._index is None:
            found: dict[str, str] = {}
            try:
                with open(self.root / INDEX, encoding="utf-8") as fh:
                    for line in fh:
                        try:
                            rec = json.loads(line)
                            found[rec["uri"]] = rec["path"]
                        except (json.JSONDecodeError, KeyError, TypeError):
                            continue
            except FileNotFoundError:
                pass
            self._index = found
        return self._index

    def _remember(self, uri: str, rel: str) -> None:
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True)
            # One write of one line with O_APPEND: concurrent imports interleave whole lines.
            line = json.dumps({"uri": uri, "path": rel}) + "\n"
            fd = os.open(self.root / INDEX, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
            self.index()[uri] = rel

    # -- files --------------------------------------------------------------------------------------
    def lookup(self, image: RemoteImage) -> Path | None:
        """The cached file of `image`, if there is one: by the hash the source gave, else by its URI."""
        if image.sha256:
            folder = self.root / image.sha256[:2]
            for p in sorted(folder.glob(f"{image.sha256}*")) if folder.is_dir() else []:
                if p.name.split(".")[0] == image.sha256 and p.is_file():
                    return p
        rel = self.index().get(image.uri)
        if rel:
            p = self.root / rel
            if p.is_file():
                return p
        return None

    def store(self, data: bytes, uri: str) -> tuple[Path, str]:
        """Put `data` in the cache (temp file in the same folder, then rename: never a partial file
        under a final name) and return its path and hash."""
        sha = hashlib.sha256(data).hexdigest()
        final = self.root / sha[:2] / f"{sha}{suffix_for(data, uri)}"
        if not final.is_file():
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.parent / f".{sha}.{uuid.uuid4().hex}.part"
            try:
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, final)
            finally:
                tmp.unlink(missing_ok=True)
        return final, sha

    def fetch_one(self, image: RemoteImage) -> Fetched:
        hit = self.lookup(image)
        if hit is not None:
            sha = hit.name.split(".")[0]
            if image.uri not in self.index():
                self._remember(image.uri, hit.relative_to(self.root).as_posix())
            return Fetched(image, hit, sha, downloaded=False)
        data = _read(image)
        path, sha = self.store(data, image.uri)
        self._remember(image.uri, path.relative_to(self.root).as_posix())
        return Fetched(image, path, sha, downloaded=True)

    def fetch(self, images: list[RemoteImage], workers: int = 8, progress=None,
              source: str = "the source") -> list[Fetched]:
        """Every image, from the cache or the source, in the order given. Images that cannot be read
        are fetched no further than needed to name them: a DataError lists them (the others stay
        cached for the next try); an ImgclsError from a read (an AuthError, say) stops at once."""
        results: dict[int, Fetched] = {}
        failed: list[tuple[str, str]] = []
        in_a_row = 0
        pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="imgcls-fetch")
        try:
            pending = {pool.submit(self.fetch_one, img): i for i, img in enumerate(images)}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = pending.pop(fut)
                    exc = fut.exception()
                    if exc is None:
                        results[i] = fut.result()
                        in_a_row = 0
                    elif isinstance(exc, ImgclsError):
                        raise exc
                    else:
                        failed.append((images[i].uri, _describe(exc)))
                        in_a_row += 1
                if progress is not None:
                    progress.advance("downloading", len(results) + len(failed), len(images))
                if in_a_row >= GIVE_UP_AFTER:
                    break
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if failed:
            kept = len(results)
            shown = "; ".join(f"{u}: {why}" for u, why in failed[:5]) + (" …" if len(failed) > 5 else "")
            stopped = len(images) - kept - len(failed)
            raise DataError(
                f"{source}: {len(failed)} image(s) could not be read{f', {stopped} not tried' if stopped else ''}: "
                f"{shown}",
                hint=f"run the import again: the {kept} image(s) fetched are kept in {self.root} and not "
                     "fetched again", failed=[u for u, _ in failed])
        return [results[i] for i in range(len(images))]


def _read(image: RemoteImage) -> bytes:
    """The image's bytes, retried on transient errors, checked against the hash the source gave."""
    delay = BACKOFF_S
    for attempt in range(1, RETRIES + 1):
        try:
            data = image.read()
            if not isinstance(data, (bytes, bytearray)):
                raise TypeError(f"the source's reader returned {type(data).__name__}, not bytes")
            data = bytes(data)
            if image.sha256 and hashlib.sha256(data).hexdigest() != image.sha256:
                raise OSError(f"the bytes read do not match the source's SHA-256 {image.sha256[:12]}…")
            return data
        except ImgclsError:
            raise
        except Exception:
            if attempt == RETRIES:
                raise
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__

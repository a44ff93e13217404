"""Sources in object storage, read through fsspec (gcsfs, s3fs, adlfs): a folder-per-label tree, or an
import file (Vertex CSV/JSONL, Azure ML JSONL, an imgcls manifest) stored there, read by data/formats.

Credentials are each library's own: Google's application default credentials, the AWS variables and
files, AZURE_STORAGE_* (or the account in an abfs:// URI).
"""
from __future__ import annotations

import functools
import importlib.util
import os
import tempfile
import urllib.request
from pathlib import Path, PurePosixPath

from ...errors import AuthError, DataError, ImgclsError, MissingDependency
from .. import formats, importers, manifest
from .remote import RemoteImage

# scheme -> (module fsspec needs, the imgcls extra that installs it)
EXTRAS = {"gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs"), "s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3"),
          "az": ("adlfs", "azure-blob"), "abfs": ("adlfs", "azure-blob"), "abfss": ("adlfs", "azure-blob")}
_AUTH_WORDS = ("credential", "unauthori", "forbidden", "auth", "accessdenied", "access denied")


def require(scheme: str) -> None:
    """The fsspec implementation of `scheme` is installed, else a MissingDependency naming the extra."""
    module, extra = EXTRAS.get(scheme, (None, None))
    if module and importlib.util.find_spec(module) is None:
        raise MissingDependency(scheme, module, extra=extra, needed_by=f"reading {scheme}:// sources")


# Where each library looks for credentials, for the message when they are refused or missing.
CREDENTIALS = {"gs": "`gcloud auth application-default login` or GOOGLE_APPLICATION_CREDENTIALS",
               "s3": "AWS_PROFILE, `aws sso login` or the AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY variables",
               "az": "AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY "
                     "(or a signed-in Azure identity)"}
CREDENTIALS.update(gcs=CREDENTIALS["gs"], s3a=CREDENTIALS["s3"], abfs=CREDENTIALS["az"], abfss=CREDENTIALS["az"])


def filesystem(scheme: str):
    """The scheme's fsspec filesystem (fsspec keeps one instance, shared by the fetching threads)."""
    require(scheme)
    import fsspec
    return fsspec.filesystem(scheme, **_options(scheme))


def _options(scheme: str) -> dict:
    """Google credentials are looked up here, once: left to itself gcsfs tries every method in turn and
    then anonymous access, retrying each failed request, so a machine without credentials waits a
    minute or more before any error."""
    if scheme not in ("gs", "gcs"):
        return {}
    return _google_options(os.environ.get("STORAGE_EMULATOR_HOST"))


@functools.lru_cache(maxsize=4)
def _google_options(emulator: str | None) -> dict:
    # Once per process: the same credentials object keeps fsspec's one cached filesystem.
    if emulator:
        return {"token": "anon"}
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError
    try:
        credentials, project = google.auth.default(
            scopes=["https://www.googleapis.com/auth/devstorage.read_only"])
    except DefaultCredentialsError:
        raise AuthError("no Google credentials to read gs:// sources",
                        hint=f"sign in: {CREDENTIALS['gs']}") from None
    return {"token": credentials, **({"project": project} if project else {})}


def _path(uri: str) -> tuple[str, str]:
    scheme = uri.split("://", 1)[0].lower()
    fs = filesystem(scheme)
    return scheme, fs._strip_protocol(uri)


def failure(uri: str, exc: BaseException) -> ImgclsError:
    """What a storage error means for the user: not found / unreadable (data, 4) or refused (auth, 5)."""
    if isinstance(exc, AuthError):
        return AuthError(f"{uri}: {exc.message}", hint=exc.hint)
    if isinstance(exc, ImgclsError):
        return exc
    text = f"{type(exc).__name__} {exc}".lower()
    if isinstance(exc, PermissionError) or any(w in text.replace(" ", "") for w in _AUTH_WORDS):
        where = CREDENTIALS.get(uri.split("://", 1)[0].lower(), "the storage credentials")
        return AuthError(f"cannot read {uri}: access refused ({type(exc).__name__}: {str(exc)[:200]})",
                         hint=f"check the credentials ({where}) and their permission to read it")
    if isinstance(exc, FileNotFoundError):
        return DataError(f"{uri} not found", hint="check dataset.source: the bucket, and the path inside it")
    return DataError(f"cannot read {uri}: {type(exc).__name__}: {str(exc)[:200]}",
                     hint="check that the source exists and can be read")


def list_images(ref: str, cfg) -> tuple[list[RemoteImage], str]:
    """`ref` is the whole URI: a folder (tree of <label>/ folders, optionally under train/ validation/
    test/) or an import file."""
    root = ref.rstrip("/")
    try:
        scheme, path = _path(root)
        fs = filesystem(scheme)
        is_dir = fs.isdir(path)
        if not is_dir and not fs.exists(path):
            raise FileNotFoundError(path)
        rows = _tree(fs, root, path) if is_dir else _import_file(fs, root, path, cfg)
    except MissingDependency:
        raise
    except Exception as exc:   # OSError, and the libraries' own (gcsfs HttpError, botocore ClientError…)
        raise failure(ref, exc) from None
    rows = importers.merge_duplicates(rows)
    images = [RemoteImage(uri=r["uri"], labels=tuple(sorted(set(r["labels"]))), split=r.get("split"),
                          read=reader(r["uri"])) for r in rows]
    task = "multilabel" if any(len(i.labels) > 1 for i in images) else "multiclass"
    return images, task


def _tree(fs, root: str, path: str) -> list[dict]:
    """Rows of a folder tree, as importers.read_folder reads a local one (hidden names left out)."""
    rel_files = []
    for found in fs.find(path):
        rel = PurePosixPath(found).relative_to(PurePosixPath(path))
        if rel.suffix.lower() in manifest.IMAGE_SUFFIXES and not any(p.startswith(".") for p in rel.parts):
            rel_files.append(rel)
    tops = {r.parts[0] for r in rel_files if len(r.parts) > 1}
    by_split = bool(tops) and all(t.lower() in importers.SPLIT_DIRS for t in tops)
    rows = []
    for rel in sorted(rel_files):
        parts = rel.parts
        split = None
        if by_split and len(parts) > 1:
            split, parts = importers.SPLIT_DIRS[parts[0].lower()], parts[1:]
        labels = [parts[0]] if len(parts) > 1 else []   # a file beside the label folders is untagged
        rows.append({"uri": f"{root}/{rel.as_posix()}", "labels": labels, "split": split})
    if not rows:
        raise DataError(f"no images found under {root}",
                        hint="a folder needs <label>/ sub-folders with images (.jpg, .png, …)")
    return rows


def _import_file(fs, root: str, path: str, cfg) -> list[dict]:
    """Rows of an import file stored next to its images: read by the registered format readers from a
    local copy, with image paths relative to the file made relative to its folder in the bucket."""
    fmt = cfg.dataset.format if cfg is not None else "auto"
    name = PurePosixPath(path).name
    with tempfile.TemporaryDirectory(prefix="imgcls-source-") as tmp:
        local = Path(tmp) / name
        local.write_bytes(fs.cat_file(path))
        try:
            fmt = importers.detect_format(local) if fmt == "auto" else fmt
            if fmt == "folder":
                raise DataError(f"{root} is a file, dataset.format says folder", hint="set dataset.format: auto")
            if fmt == "manifest":
                rows = [{"uri": u, "labels": list(l), "split": s}
                        for u, l, s in zip(*(manifest.read(local)[c] for c in ("uri", "labels", "split")))]
            else:
                rows = formats.get(fmt).read(local)
        except UnicodeDecodeError:
            raise DataError(f"{root}: not UTF-8 text", hint="save the import file as UTF-8") from None
        except DataError as exc:   # name the file as the user wrote it, not our temporary copy
            raise DataError(exc.message.replace(str(local), root), hint=exc.hint) from None
        parent = root.rsplit("/", 1)[0]
        base = str(Path(tmp).resolve())
        for row in rows:
            row.pop("line", None)
            if row["uri"].startswith(base + "/"):
                row["uri"] = f"{parent}/{row['uri'][len(base) + 1:]}"
            elif "://" not in row["uri"]:
                raise DataError(f"{root} lists {row['uri']!r}, a path on this machine",
                                hint="an import file in a bucket lists images in storage (gs://…, s3://…) "
                                     "or paths relative to the file")
    return [r for r in rows if not r.get("hidden")]


def reader(uri: str):
    """A function that reads the bytes at `uri` (a bucket object or an https:// URL)."""
    scheme = uri.split("://", 1)[0].lower()
    if scheme in ("http", "https"):
        def read_http() -> bytes:
            with urllib.request.urlopen(uri, timeout=60) as resp:
                return resp.read()
        return read_http

    def read() -> bytes:
        fs = filesystem(scheme)
        try:
            return fs.cat_file(fs._strip_protocol(uri))
        except PermissionError as exc:
            raise failure(uri, exc) from None
    return read

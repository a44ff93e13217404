"""`azureml:<name>:<version>`, `azureml:<name>@latest` (a data asset) and `azureml://datastores/<ds>/paths/<p>`
as a dataset source: AutoML image JSON lines (`image_url`, `label`: a string, or a list for multi-label).

An mltable asset is read through its MLTable file's `paths` (file, folder, pattern), a uri_file asset is the
JSONL itself, a uri_folder one every .jsonl under it. Files and images come from the datastores' blob
containers with azure-storage-blob, as the provider uploads them; a data asset carries no split.
"""
from __future__ import annotations

import fnmatch
import json
import posixpath
import re

import yaml

from ... import safeyaml
from ...data.sources.remote import RemoteImage
from ...errors import DataError
from .settings import resolve

_ASSET = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)(?::(?P<version>[A-Za-z0-9_.-]+)|@(?P<label>latest))$")
# azureml://datastores/<ds>/paths/<path>, optionally with the workspace in front (what the SDK writes into
# a data asset's path and what the AutoML notebooks write into image_url).
_DATASTORE_URI = re.compile(r"^azureml://(?:subscriptions/[^/]+/resourcegroups/[^/]+/"
                            r"(?:providers/microsoft\.machinelearningservices/)?workspaces/(?P<ws>[^/]+)/)?"
                            r"datastores/(?P<ds>[^/]+)/paths/(?P<path>.*)$", re.IGNORECASE)
JSONL = (".jsonl", ".json")


def list_images(ref: str, cfg) -> tuple[list[RemoteImage], str]:
    """Every JSON line's image (an empty label list is an untagged image) and the task type."""
    direct = ref.startswith("azureml://")
    source = ref if direct else f"azureml:{ref}"
    m = None if direct else _ASSET.match(ref.strip())
    if not direct and not m:
        raise DataError(f"{source}: not an Azure ML data asset reference",
                        hint="write azureml:NAME:VERSION or azureml:NAME@latest (or an "
                             "azureml://datastores/NAME/paths/PATH to a JSONL file or MLTable folder)")
    settings = resolve(getattr(cfg, "azureml", None) if cfg is not None else None)
    from .client import Client  # azure-ai-ml (slow to import) only once an azureml: source is read

    store = _Store(Client(settings), getattr(getattr(cfg, "azureml", None), "storage_account_url", None), source)
    if direct:
        files = _files(store, ref, "mltable" if not ref.lower().endswith(JSONL) else "uri_file")
    else:
        name, version = m["name"], m["version"]
        asset = store.client.data_asset(name, version)
        if asset is None:
            which = f"version {version}" if version else "any version"
            raise DataError(f"{source}: workspace {settings.workspace} has no data asset {name} ({which})",
                            hint="list them with `az ml data list`; check azureml.workspace")
        files = _files(store, asset["path"], asset["type"])
    if not files:
        raise DataError(f"{source}: no JSON lines files found", hint="an image data asset lists its images in "
                                                                     "a .jsonl file (image_url, label)")
    return _images(store, files, source)


class _Store:
    """Reads azureml:// datastore URIs: one container client per datastore, opened when first used."""

    def __init__(self, client, account_url: str | None, source: str):
        self.client, self.account_url, self.source = client, account_url, source
        self._containers: dict[str, object] = {}

    def locate(self, uri: str) -> tuple[str, str]:
        """(datastore, path inside its container) of an azureml:// URI."""
        m = _DATASTORE_URI.match(uri)
        if not m:
            raise DataError(f"{self.source}: {uri!r} is not an azureml://datastores/<name>/paths/<path> URI",
                            hint="Azure ML image data lists its images by datastore URI")
        workspace = self.client.settings.workspace
        if m["ws"] and m["ws"].lower() != workspace.lower():
            raise DataError(f"{self.source}: {uri} is in workspace {m['ws']}, not {workspace}",
                            hint="read it with azureml.workspace set to that workspace")
        return m["ds"], m["path"]

    def container(self, datastore: str):
        if datastore not in self._containers:
            ds = self.client.datastore(datastore)
            if ds is None:
                raise DataError(f"{self.source}: workspace {self.client.settings.workspace} has no datastore "
                                f"{datastore}", hint="check the datastore name in the asset's paths")
            url = f"{ds['protocol']}://{ds['account']}.blob.{ds['endpoint']}"
            # azureml.storage_account_url stands in for the account it names (a private endpoint, a test's fake)
            if self.account_url and ds["account"] in self.account_url:
                url = self.account_url.rstrip("/")
            self._containers[datastore] = self.client.container(url, ds["container"], ds["credential"])
        return self._containers[datastore]

    def read(self, uri: str) -> bytes:
        datastore, path = self.locate(uri)
        return self.client.get_blob(self.container(datastore), path)

    def join(self, folder: str, relative: str) -> str:
        """A path relative to a folder URI (an MLTable's `./train.jsonl`), as a URI."""
        _, path = self.locate(folder)
        return folder[: len(folder) - len(path)] + posixpath.normpath(posixpath.join(path, relative)).lstrip("/")

    def under(self, uri: str) -> list[str]:
        """The URIs of every blob under a folder URI, sorted."""
        datastore, path = self.locate(uri)
        prefix = path.rstrip("/") + "/" if path.strip("/") else ""
        head = uri[: len(uri) - len(path)]
        return [head + n for n in sorted(self.client.blob_names(self.container(datastore), prefix))]


def _files(store: _Store, path: str, kind: str) -> list[str]:
    """The JSONL files a data asset (or datastore path) stands for."""
    if kind == "uri_file":
        return [path]
    if kind == "uri_folder":
        return [u for u in store.under(path) if u.lower().endswith(JSONL)]
    if kind != "mltable":
        raise DataError(f"{store.source}: a {kind} data asset is not an image dataset",
                        hint="give an mltable, uri_file or uri_folder asset of AutoML image JSON lines")
    mltable = path if path.rstrip("/").endswith("/MLTable") else path.rstrip("/") + "/MLTable"
    folder = mltable.rsplit("/", 1)[0] + "/"
    try:
        doc = safeyaml.load(store.read(mltable).decode("utf-8-sig"))[1] or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DataError(f"{store.source}: {mltable} is not a readable MLTable file ({exc})") from None
    steps = [next(iter(t)) if isinstance(t, dict) else str(t) for t in doc.get("transformations") or []]
    readers = [s for s in steps if s.startswith("read_")]
    if readers and "read_json_lines" not in readers:
        raise DataError(f"{store.source}: {mltable} reads its files with {readers[0]}, not read_json_lines",
                        hint="AutoML image data is JSON lines (image_url, label)")
    files = []
    for entry in doc.get("paths") or []:
        (how, where), = entry.items() if isinstance(entry, dict) and len(entry) == 1 else [(None, None)]
        if how not in ("file", "folder", "pattern") or not isinstance(where, str):
            raise DataError(f"{store.source}: {mltable}: a `paths` entry must be one of file:, folder:, pattern:",
                            hint=f"found {entry!r}")
        target = where if "://" in where else store.join(folder, where)
        if how == "file":
            files.append(target)
        elif how == "folder":
            files += [u for u in store.under(target) if u.lower().endswith(JSONL)]
        else:
            base = re.split(r"[*?\[]", target, maxsplit=1)[0].rsplit("/", 1)[0] + "/"
            files += [u for u in store.under(base) if fnmatch.fnmatchcase(u, target)]
    return files


def _images(store: _Store, files: list[str], source: str) -> tuple[list[RemoteImage], str]:
    images, seen, multilabel = [], set(), False
    for uri in files:
        for n, line in enumerate(store.read(uri).decode("utf-8-sig").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                image_url = row["image_url"]
            except (ValueError, KeyError, TypeError):
                raise DataError(f"{source}: line {n} of {uri} is not an AutoML image JSON line",
                                hint='each line is {"image_url": "azureml://…", "label": "cat"} '
                                     '(a list of labels for multi-label)') from None
            label = row.get("label")
            multilabel = multilabel or isinstance(label, list)
            labels = tuple(dict.fromkeys(str(x) for x in (label if isinstance(label, list) else [label])
                                         if x not in (None, "")))
            if image_url in seen:
                continue
            seen.add(image_url)
            store.locate(image_url)  # every URI checked now, not when the first fetch fails
            images.append(RemoteImage(uri=image_url, labels=labels, split=None,
                                      read=lambda u=image_url: store.read(u)))
    return images, "multilabel" if multilabel else "multiclass"

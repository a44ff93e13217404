"""`customvision:<project id or name>` as a dataset source: every tagged image of the project with its tag
names (untagged ones listed with no labels: reported and skipped), read through the SDK with the
provider's own settings (`customvision:` section, else VISION_* variables)."""
from __future__ import annotations

import re
import threading

from ...data.sources.remote import RemoteImage
from ...errors import DataError, ProviderError
from . import settings as settings_mod

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class LinkExpired(OSError):
    """The image's signed URL no longer answers (403/404): a fresh one is asked for."""


def list_images(ref: str, cfg) -> tuple[list[RemoteImage], str]:
    from .client import Client  # the SDK, only when the source is read
    ref = ref.strip()
    if not ref:
        raise DataError("customvision: needs a project id or name, e.g. customvision:flowers",
                        hint="`customvision:<project id>` or `customvision:<project name>`")
    client = Client(settings_mod.resolve(cfg.customvision if cfg is not None else None))
    project = find_project(client, ref)
    pid = project["id"]
    links = _Links(client, pid)
    images = []
    for tagged in (True, False):
        for img in client.listed_images(pid, tagged=tagged):
            links.seen(img)
            images.append(RemoteImage(uri=image_uri(pid, img["id"]), split=None,
                                      labels=tuple(img["tags"]) if tagged else (),
                                      read=links.reader(img["id"])))
    task = "multilabel" if (project.get("classification_type") or "").lower() == "multilabel" else "multiclass"
    return images, task


def image_uri(project_id: str, image_id: str) -> str:
    """The image's lasting name (its signed URLs expire): what the manifest's source_uri keeps."""
    return f"customvision:{project_id}/images/{image_id}"


def find_project(client, ref: str, error: type = DataError) -> dict:
    """The project `ref` names: by id when it is one, else by name (exactly, else ignoring case). None or
    several: `error` (a DataError for a dataset source, a UsageError for a model reference)."""
    if _GUID.match(ref):
        try:
            return client.project(ref)
        except ProviderError as exc:
            if exc.details.get("status") != 404:
                raise
    projects = client.projects()
    found = [p for p in projects if p["name"] == ref] or [p for p in projects if p["name"].lower() == ref.lower()]
    if len(found) == 1:
        return found[0]
    endpoint = client.settings.training_endpoint
    if found:
        ids = ", ".join(f"customvision:{p['id']}" for p in found)
        raise error(f"{len(found)} Custom Vision projects are named {ref!r} at {endpoint}",
                        hint=f"name one by its id: {ids}")
    names = ", ".join(sorted(p["name"] for p in projects)[:10]) or "none"
    raise error(f"no Custom Vision project {ref!r} at {endpoint}",
                    hint=f"give a project id or name; projects there: {names} "
                         f"(check {settings_mod.where('training_endpoint')} if none is yours)")


class _Links:
    """Each image's signed URL, as listed; when one has expired (a long or resumed import) the image is
    read again by id for a fresh one."""

    def __init__(self, client, project_id: str):
        self.client, self.project_id = client, project_id
        self._urls: dict[str, str] = {}
        self._lock = threading.Lock()

    def seen(self, img: dict) -> None:
        self._urls[img["id"]] = img["uri"]

    def reader(self, image_id: str):
        def read() -> bytes:
            try:
                return _get(self._urls.get(image_id))
            except LinkExpired:
                fresh = self.client.listed_images_by_ids(self.project_id, [image_id])
                if not fresh:
                    raise FileNotFoundError(f"image {image_id} is no longer in the project") from None
                with self._lock:
                    self._urls[image_id] = fresh[0]["uri"]
                return _get(self._urls[image_id])
        return read


def _get(url: str | None) -> bytes:
    import requests
    if not url:
        raise FileNotFoundError("the service gave no image URL")
    resp = requests.get(url, timeout=120)   # a signed URL: no key is sent
    if resp.status_code in (403, 404):
        raise LinkExpired(f"HTTP {resp.status_code} from the image URL")
    if resp.status_code >= 400:
        raise OSError(f"HTTP {resp.status_code} from the image URL")
    return resp.content

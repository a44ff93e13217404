"""Training API image routes of the fake: batch uploads (multipart, JSON base64, urls) with the
service's per-image statuses, listing, counting, tagging and deleting images."""
from __future__ import annotations

import base64
import binascii
import hashlib
import io
import time

from tests.fakes.customvision.server import fetch_image_url, routes
from tests.fakes.customvision.state import (
    MAX_BATCH_IMAGES,
    MAX_BATCH_TAGS,
    MAX_TAKE,
    MAX_TRAINING_IMAGE_BYTES,
    Image,
    Project,
    ServiceError,
    bad_request,
    inspect_image,
    new_id,
    not_found,
)


def _create(fake, project: Project, entries: list[tuple], batch_tags: list[str], metadata: dict):
    """entries: (sourceUrl, bytes or None when the source could not be read, tag ids).

    One result per entry, in order; OKDuplicate counts as not successful, like the service does,
    so isBatchSuccessful is false and the answer is 207 whenever any image was not created anew.
    """
    if not entries:
        raise bad_request("BadRequestImageBatch", "The batch contains no images.")
    if len(entries) > MAX_BATCH_IMAGES:
        raise bad_request("BadRequestImageBatch",
                          f"The batch contains {len(entries)} images; the limit is {MAX_BATCH_IMAGES}.")
    all_tags = set(batch_tags) | {t for _, _, tags in entries for t in tags}
    if len(all_tags) > MAX_BATCH_TAGS:
        raise bad_request("BadRequestImageBatch",
                          f"The batch uses {len(all_tags)} tags; the limit is {MAX_BATCH_TAGS}.")
    results = []
    for source, data, entry_tags in entries:
        tag_ids = list(dict.fromkeys(batch_tags + entry_tags))
        refused = fake.refuse_images.get(hashlib.sha256(data).hexdigest()) if data is not None else None
        status, image = (refused, None) if refused else \
            _create_one(project, data, tag_ids, metadata, fake.max_images_per_project)
        results.append({"sourceUrl": source, "status": status,
                        "image": project.image_json(image, fake.url) if image else None})
    ok = all(r["status"] == "OK" for r in results)
    return (200 if ok else 207), {"isBatchSuccessful": ok, "images": results}


def _create_one(project: Project, data: bytes | None, tag_ids: list[str], metadata: dict, quota: int):
    if data is None:
        return "ErrorSource", None
    if any(t not in project.tags for t in tag_ids):
        return "ErrorInvalidTag", None
    types = {project.tags[t].type for t in tag_ids}
    if "Negative" in types and len(types) > 1:
        return "ErrorNegativeAndRegularTagOnSameImage", None
    error, width, height = inspect_image(data)
    if error:
        return error, None
    duplicate = project.find_duplicate(data)
    if duplicate is not None:
        return "OKDuplicate", duplicate
    if len(project.images) >= quota:
        return "ErrorLimitExceed", None
    now = time.time()
    image = Image(new_id(), data, width, height, now, {t: now for t in tag_ids}, dict(metadata or {}))
    project.images[image.id] = image
    project.last_modified = now
    return "OK", image


def create_images_from_data(fake, req, project_id):
    project = fake.state.project(project_id)
    # Multipart parts keep their file name, quoted, as sourceUrl (the service's own example does).
    entries = [(f'"{name}"' if name is not None else None, data, []) for name, data in req.files()]
    return _create(fake, project, entries, req.ids("tagIds"), {})


def create_images_from_files(fake, req, project_id):
    project = fake.state.project(project_id)
    body = req.json() or {}
    entries = []
    for entry in body.get("images") or []:
        try:
            data = base64.b64decode(entry.get("contents") or "", validate=True)
        except (binascii.Error, ValueError):
            raise bad_request("BadRequestImageBatch", f"Contents of '{entry.get('name')}' are not base64.") \
                from None
        entries.append((entry.get("name"), data, [t.lower() for t in entry.get("tagIds") or []]))
    batch_tags = [t.lower() for t in body.get("tagIds") or []]
    return _create(fake, project, entries, batch_tags, body.get("metadata") or {})


def create_images_from_urls(fake, req, project_id):
    body = req.json() or {}
    # Download before taking the lock: a url may point at this very server.
    entries = [(e.get("url"), fetch_image_url(e.get("url"), MAX_TRAINING_IMAGE_BYTES),
                [t.lower() for t in e.get("tagIds") or []]) for e in body.get("images") or []]
    with fake.lock:
        fake.state.advance()
        project = fake.state.project(project_id)
        batch_tags = [t.lower() for t in body.get("tagIds") or []]
        return _create(fake, project, entries, batch_tags, body.get("metadata") or {})


# --- listing -------------------------------------------------------------------------------------

def _select(fake, req, project: Project, tagging: str) -> list[Image]:
    """Images of the workspace (or of an iteration's training set), filtered and ordered."""
    iteration_id = req.arg("iterationId")
    if iteration_id:
        iteration = project.iterations.get(iteration_id.lower())
        if iteration is None:
            raise not_found("NotFoundIteration", f"Iteration not found: {iteration_id}")
        trained = {i for i, _ in iteration.examples}
        images = [im for im in project.images.values() if im.id in trained]
    else:
        images = list(project.images.values())
    if tagging == "tagged":
        images = [im for im in images if im.tag_ids]
    elif tagging == "untagged":
        images = [im for im in images if not im.tag_ids]
    tag_ids = req.ids("tagIds")
    if tag_ids:
        images = [im for im in images if any(t in im.tag_ids for t in tag_ids)]
    return images


def _page(fake, req, project: Project, images: list[Image]):
    take, skip = int(req.number("take", 50)), int(req.number("skip", 0))
    if not 0 <= take <= MAX_TAKE or skip < 0:
        raise bad_request("BadRequestInvalid", f"take must be between 0 and {MAX_TAKE}; skip at least 0.")
    order = (req.arg("orderBy") or "Newest").lower()
    if order not in ("newest", "oldest"):
        raise bad_request("BadRequestInvalid", f"Unknown orderBy '{req.arg('orderBy')}'.")
    if order == "newest":
        images = images[::-1]  # insertion order is upload order
    return 200, [project.image_json(im, fake.url) for im in images[skip:skip + take]]


def get_images(fake, req, project_id):
    project = fake.state.project(project_id)
    tagging = (req.arg("taggingStatus") or "All").lower()
    return _page(fake, req, project, _select(fake, req, project, tagging))


def get_tagged_images(fake, req, project_id):
    project = fake.state.project(project_id)
    return _page(fake, req, project, _select(fake, req, project, "tagged"))


def get_untagged_images(fake, req, project_id):
    project = fake.state.project(project_id)
    return _page(fake, req, project, _select(fake, req, project, "untagged"))


def get_image_count(fake, req, project_id):
    project = fake.state.project(project_id)
    return 200, len(_select(fake, req, project, (req.arg("taggingStatus") or "All").lower()))


def get_tagged_image_count(fake, req, project_id):
    project = fake.state.project(project_id)
    return 200, len(_select(fake, req, project, "tagged"))


def get_untagged_image_count(fake, req, project_id):
    project = fake.state.project(project_id)
    return 200, len(_select(fake, req, project, "untagged"))


def get_images_by_ids(fake, req, project_id):
    project = fake.state.project(project_id)
    ids = req.ids("imageIds")
    if len(ids) > MAX_TAKE:
        raise bad_request("BadRequestInvalidIds", f"At most {MAX_TAKE} image ids per request.")
    return 200, [project.image_json(project.images[i], fake.url) for i in ids if i in project.images]


def delete_images(fake, req, project_id):
    project = fake.state.project(project_id)
    if req.flag("allImages"):
        project.images.clear()
    else:
        ids = req.ids("imageIds")
        if len(ids) > MAX_TAKE:
            raise bad_request("BadRequestInvalidIds", f"At most {MAX_TAKE} image ids per request.")
        for image_id in ids:
            project.images.pop(image_id, None)
    project.last_modified = time.time()
    return 204, None


# --- tagging -------------------------------------------------------------------------------------

def create_image_tags(fake, req, project_id):
    project = fake.state.project(project_id)
    created, duplicated = [], []
    for entry in (req.json() or {}).get("tags") or []:
        image_id, tag_id = (entry.get("imageId") or "").lower(), (entry.get("tagId") or "").lower()
        if image_id not in project.images or tag_id not in project.tags:
            raise bad_request("BadRequestInvalidIds", f"Unknown image '{image_id}' or tag '{tag_id}'.")
        image = project.images[image_id]
        pair = {"imageId": image_id, "tagId": tag_id}
        if tag_id in image.tag_ids:
            duplicated.append(pair)
        else:
            image.tag_ids[tag_id] = time.time()
            created.append(pair)
    return 200, {"created": created, "duplicated": duplicated, "exceeded": []}


def delete_image_tags(fake, req, project_id):
    project = fake.state.project(project_id)
    tag_ids = req.ids("tagIds")
    for image_id in req.ids("imageIds"):
        image = project.images.get(image_id)
        for tag_id in tag_ids if image else []:
            image.tag_ids.pop(tag_id, None)
    return 204, None


def get_image_bytes(fake, req, project_id, image_id, variant=None):
    try:
        image = fake.state.project(project_id).images.get(image_id.lower())
    except ServiceError:
        image = None
    if image is None or variant not in (None, "resized", "thumbnail"):
        raise not_found("BlobNotFound", "The specified blob does not exist.")
    if variant is None:
        return 200, image.data, "application/octet-stream"
    return 200, _reencoded(image.data, RESIZED_SIDE if variant == "resized" else THUMBNAIL_SIDE), "image/jpeg"


RESIZED_SIDE, THUMBNAIL_SIDE = 1024, 128


def _reencoded(data: bytes, side: int) -> bytes:
    """A JPEG copy at most `side` pixels on its long side: never the uploaded bytes."""
    from PIL import Image as PILImage
    with PILImage.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
        im.thumbnail((side, side))
        out = io.BytesIO()
        im.save(out, "JPEG", quality=85)
    return out.getvalue()


ROUTES = routes("training", [
    ("GET", "/projects/{project_id}/images", get_images),
    ("POST", "/projects/{project_id}/images", create_images_from_data),
    ("DELETE", "/projects/{project_id}/images", delete_images),
    ("GET", "/projects/{project_id}/images/count", get_image_count),
    ("POST", "/projects/{project_id}/images/files", create_images_from_files),
    ("POST", "/projects/{project_id}/images/urls", create_images_from_urls, False),
    ("GET", "/projects/{project_id}/images/id", get_images_by_ids),
    ("GET", "/projects/{project_id}/images/tagged", get_tagged_images),
    ("GET", "/projects/{project_id}/images/tagged/count", get_tagged_image_count),
    ("GET", "/projects/{project_id}/images/untagged", get_untagged_images),
    ("GET", "/projects/{project_id}/images/untagged/count", get_untagged_image_count),
    ("POST", "/projects/{project_id}/images/tags", create_image_tags),
    ("DELETE", "/projects/{project_id}/images/tags", delete_image_tags),
]) + routes("public", [
    ("GET", "/images/{project_id}/{image_id}", get_image_bytes),
    ("GET", "/images/{project_id}/{image_id}/{variant}", get_image_bytes),
])

"""Online prediction requests within Vertex's 1.5 MB limit: images re-encoded when one alone is too big,
then grouped so each request's JSON stays under the limit."""
from __future__ import annotations

import base64
import io

MAX_REQUEST_BYTES = 1_500_000    # Vertex refuses bigger online prediction requests (AutoML image models)
REQUEST_OVERHEAD = 512           # endpoint name, parameters, JSON punctuation
INSTANCE_OVERHEAD = 32           # {"content": "…"}, per image
QUALITIES = (90, 80, 70, 60, 50, 40)


def b64_size(n: int) -> int:
    return 4 * ((n + 2) // 3)


def fit(image: bytes, max_b64: int) -> bytes:
    """The image as is when its base64 fits, else a JPEG re-encoding (lower quality, then smaller) that does."""
    if b64_size(len(image)) <= max_b64:
        return image
    from PIL import Image

    with Image.open(io.BytesIO(image)) as im:
        im = im.convert("RGB")
        while True:
            for quality in QUALITIES:
                buf = io.BytesIO()
                im.save(buf, "JPEG", quality=quality, optimize=True)
                if b64_size(buf.tell()) <= max_b64:
                    return buf.getvalue()
            if min(im.size) <= 32:
                return buf.getvalue()  # cannot happen within 1.5 MB; the service will say so if it does
            im = im.resize((max(1, int(im.width * 0.7)), max(1, int(im.height * 0.7))), Image.LANCZOS)


def requests(images: list[bytes], max_instances: int, limit: int = MAX_REQUEST_BYTES) -> list[list[tuple[int, str]]]:
    """Groups of (index, base64 content): each group one request under `limit` bytes."""
    per_image = limit - REQUEST_OVERHEAD - INSTANCE_OVERHEAD
    groups: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    size = REQUEST_OVERHEAD
    for i, image in enumerate(images):
        content = base64.b64encode(fit(image, per_image)).decode("ascii")
        cost = len(content) + INSTANCE_OVERHEAD
        if current and (size + cost > limit or len(current) >= max_instances):
            groups.append(current)
            current, size = [], REQUEST_OVERHEAD
        current.append((i, content))
        size += cost
    if current:
        groups.append(current)
    return groups

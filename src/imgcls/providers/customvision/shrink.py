"""Fitting an image under Custom Vision's payload limits (6 MB to train, 4 MB to predict, 10,240 px a
side) by re-encoding it client-side with Pillow, so a big photo is sent smaller instead of refused."""
from __future__ import annotations

import io

MAX_SIDE = 10_240


def fit(data: bytes, max_bytes: int, max_side: int = MAX_SIDE) -> bytes:
    """`data` unchanged when it fits; else a JPEG (PNG when it has transparency) that does.

    Quality steps down first, then the image is halved until it fits; a file Pillow cannot read is
    returned as it is, for the service to judge.
    """
    if len(data) <= max_bytes and not _too_large(data, max_side):
        return data
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            image = im.copy()
    except Exception:
        return data
    alpha = image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info)
    image = image.convert("RGBA" if alpha else "RGB")
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side))
    while True:
        for quality in ((None,) if alpha else (90, 80, 70)):
            out = io.BytesIO()
            if alpha:
                image.save(out, "PNG", optimize=True)
            else:
                image.save(out, "JPEG", quality=quality, optimize=True)
            if out.tell() <= max_bytes:
                return out.getvalue()
        if min(image.size) <= 64:
            return out.getvalue()
        image = image.resize((max(1, image.width // 2), max(1, image.height // 2)))


def _too_large(data: bytes, max_side: int) -> bool:
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as im:
            return max(im.size) > max_side
    except Exception:
        return False

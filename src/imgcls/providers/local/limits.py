"""What the local endpoint refuses before it spends memory: images too large or too thin (read from their
header, before decoding), JSON with more values than its images need, and decoding past a memory budget."""
from __future__ import annotations

import asyncio
import contextlib
import io
import struct
import warnings

from PIL import Image, UnidentifiedImageError

from imgcls.config import EndpointLimits
from imgcls.providers.local.preprocess import Preprocessing, _draft, why_undecodable

# The local provider's formats. Never EPS or the like: Pillow would hand those to Ghostscript.
FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")
# Peak bytes per declared pixel while decoding and flattening to RGB (measured: RGBA PNG 8.7, RGB 4);
# a JPEG is decoded at reduced size, but a progressive one keeps every DCT coefficient of every component
# (2 bytes each: 3 a pixel for 4:2:0 YCbCr, 8 for 4:4:4 CMYK, measured 7.7), counted from its header.
BYTES_PER_PIXEL, JPEG_COEFFICIENT_BYTES, RESIZED_BYTES = 10, 2, 8
# JSON values a body may hold per image (an instance is 2-3; base64 holds no , [ or {) and in all.
VALUES_PER_IMAGE, VALUES_EXTRA = 16, 256


class Refused(Exception):
    """A request that gets an answer other than 200: its status, a message naming what is wrong, the
    fields at fault (pydantic's error list) and headers such as Retry-After."""

    def __init__(self, status: int, message: str, detail: list | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.detail, self.headers = status, message, detail, headers or {}


def check_json_values(raw: bytes, limits: EndpointLimits) -> None:
    """Refuse JSON with far more values than `max_images` images need, before parsing it: 8 MiB of `[[],[],…]`
    would take a JSON parser about 1 GB."""
    values = raw.count(b",") + raw.count(b"[") + raw.count(b"{")
    most = VALUES_PER_IMAGE * limits.max_images + VALUES_EXTRA
    if values > most:
        raise Refused(413, f"the JSON body has about {values} values; a request of up to {limits.max_images} "
                           f"images has at most {most} (deploy.limits.max_images)")


def decode_cost(raw: bytes, index: int, limits: EndpointLimits, prep: Preprocessing) -> int:
    """Bytes that decoding image #`index` may take, read from its header only; Refused (413) when it
    declares more than `max_pixels` or is so thin that resizing it would, (400) when it is not an image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw), formats=FORMATS) as img:  # reads the header, decodes nothing
                w, h = img.size
                fmt = img.format
                if min(w, h) < 1:
                    raise Refused(400, f"image #{index} declares an empty size {w}x{h}")
                _check_pixels(index, w, h, limits, prep)
                if fmt == "JPEG":  # the decoder will downscale by 1/2..1/8; draft() only computes the size
                    _draft(img, prep.resize)
                    dw, dh = img.size
                    cost = int(_jpeg_coefficients_per_pixel(img) * JPEG_COEFFICIENT_BYTES * w * h
                               + BYTES_PER_PIXEL * dw * dh)
                else:
                    cost = BYTES_PER_PIXEL * w * h
    except Refused:
        raise
    except Image.DecompressionBombError:  # Pillow's own guard, far above max_pixels: the header declared more
        raise Refused(413, f"image #{index} declares more than {2 * Image.MAX_IMAGE_PIXELS} pixels, over the "
                           f"limit of {limits.max_pixels} (deploy.limits.max_pixels)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, TypeError, KeyError,
            IndexError, struct.error) as exc:
        raise Refused(400, f"image #{index} is not a {'/'.join(FORMATS)} image ({type(exc).__name__}: "
                           f"{why_undecodable(exc)})") from None
    return cost + RESIZED_BYTES * _resized_pixels(w, h, prep)


def _jpeg_coefficients_per_pixel(img) -> float:
    """DCT coefficients a JPEG stores per pixel, from its components' sampling factors (its SOF header)."""
    layers = getattr(img, "layer", None) or [("", 1, 1, 0)] * 3
    h_max, v_max = max(layer[1] for layer in layers), max(layer[2] for layer in layers)
    return sum(layer[1] * layer[2] for layer in layers) / (h_max * v_max)


def _check_pixels(index: int, w: int, h: int, limits: EndpointLimits, prep: Preprocessing) -> None:
    if w * h > limits.max_pixels:
        raise Refused(413, f"image #{index} is {w}x{h} = {w * h} pixels, over the limit of {limits.max_pixels} "
                           f"(deploy.limits.max_pixels)")
    resized = _resized_pixels(w, h, prep)
    if resized > limits.max_pixels:
        raise Refused(413, f"image #{index} is {w}x{h}: too thin, resized to a shorter side of {prep.resize} it "
                           f"would be {resized} pixels, over the limit of {limits.max_pixels} "
                           f"(deploy.limits.max_pixels)")


def _resized_pixels(w: int, h: int, prep: Preprocessing) -> int:
    """Pixels of the image once its shorter side is scaled to `resize` (what preprocessing makes first)."""
    short, long = min(w, h), max(w, h)
    return prep.resize * max(prep.resize, -(-long * prep.resize // short))


class DecodeBudget:
    """Images are decoded at once only while their `decode_cost`s sum to at most `capacity` bytes; one image
    that costs more than the whole budget is decoded alone. Bounds the server's memory, not its requests."""

    def __init__(self, capacity: int):
        self.capacity, self.used = capacity, 0
        self._changed: asyncio.Condition | None = None  # made in the server's event loop, on first use

    @contextlib.asynccontextmanager
    async def hold(self, cost: int):
        cost = min(cost, self.capacity)
        if self._changed is None:
            self._changed = asyncio.Condition()
        async with self._changed:
            await self._changed.wait_for(lambda: self.used + cost <= self.capacity)
            self.used += cost
        try:
            yield
        finally:
            self.used -= cost  # one event loop: no lock needed to give it back
            async with self._changed:
                self._changed.notify_all()

"""Image decoding and the deterministic preprocessing shared by training, export and serving.

Pillow + numpy only, so that predicting and serving need neither torch nor torchvision.
"""
from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imgcls.errors import DataError

# The TF EfficientNet-Lite weights were trained on (x - 127) / 128 in 0..255 units; we keep
# mean/std in 0..1 units like every other framework, so those are 127/255 and 128/255.
LITE_MEAN = (127.0 / 255, 127.0 / 255, 127.0 / 255)
LITE_STD = (128.0 / 255, 128.0 / 255, 128.0 / 255)


@dataclass(frozen=True)
class Preprocessing:
    """What a model expects: shorter side resized to `resize`, center crop `size`, then normalised.

    `mean` and `std` are per RGB channel in 0..1 pixel units: x = (pixel / 255 - mean) / std.
    """

    size: int
    resize: int
    mean: tuple[float, float, float] = LITE_MEAN
    std: tuple[float, float, float] = LITE_STD
    layout: str = "NCHW"

    @classmethod
    def for_input(cls, size: int) -> Preprocessing:
        # TF's EfficientNet eval pipeline crops size/(size+32) of the shorter side (CROP_PADDING=32).
        return cls(size=size, resize=size + 32)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Preprocessing:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        """From `asdict` of one: preprocessing.json, or the "preprocessing" a model.pt records."""
        return cls(size=int(data["size"]), resize=int(data["resize"]), mean=tuple(data["mean"]),
                   std=tuple(data["std"]), layout=data.get("layout", "NCHW"))

    def apply(self, img: Image.Image) -> np.ndarray:
        """A decoded image as the network's input: (3, size, size) float32."""
        return normalize(self.pixels(img), self.mean, self.std)

    def pixels(self, img: Image.Image) -> np.ndarray:
        """A decoded image as the model sees it before normalising: shorter side resized to `resize`,
        center crop `size`, HWC uint8. The one place this geometry is written: training's validation
        crops, INT8 calibration and prediction must agree on it."""
        return np.asarray(center_crop(resize_shorter(img, self.resize), self.size), dtype=np.uint8)

    def crop(self, path) -> np.ndarray:
        """`pixels` of the image at `path` (decoded at draft size)."""
        return self.pixels(load_image(path, draft_size=self.resize))


def load_image(path_or_bytes, draft_size: int | None = None) -> Image.Image:
    """Decode to RGB with the EXIF orientation applied; DataError naming the file when it can't.

    `draft_size` lets the JPEG decoder downscale by 1/2..1/8 while decoding (much faster on big
    photos); the result is never smaller than `draft_size` on its shorter side.
    """
    is_bytes = isinstance(path_or_bytes, (bytes, bytearray, memoryview))
    name = "<bytes>" if is_bytes else str(path_or_bytes)
    try:
        data = bytes(path_or_bytes) if is_bytes else Path(path_or_bytes).read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read image {name}: {exc.strerror or exc}", path=name) from None
    try:
        with Image.open(io.BytesIO(data)) as img:
            if draft_size and img.format == "JPEG":
                _draft(img, draft_size)
            img.load()
            ImageOps.exif_transpose(img, in_place=True)  # a copy would cost the image's size again
            return img if img.mode == "RGB" else _to_rgb(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot decode image {name}: {why_undecodable(exc)}",
                        hint="is it a JPEG/PNG/WebP/BMP image?", path=name) from None


def why_undecodable(exc: Exception) -> str:
    """Pillow's reason, without the repr of our in-memory file that its 'cannot identify' message carries."""
    if isinstance(exc, UnidentifiedImageError):
        return "not an image format Pillow can read"
    return str(exc)[:200]


def _draft(img: Image.Image, size: int) -> None:
    # draft() keeps the image at least as large as asked on both sides, so ask for the aspect
    # ratio that makes the shorter side `size`.
    w, h = img.size
    scale = size / min(w, h)
    if scale < 1:
        img.draft("RGB", (max(1, int(w * scale)), max(1, int(h * scale))))


STRIP_ROWS = 256  # images needing more than a convert() are converted this many rows at a time


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        scale = _deep_gray_scale(img)

        def to_8_bits(strip):
            values = np.nan_to_num(np.asarray(strip, dtype=np.float32)) * scale + 0.5
            return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), "L")
        return _by_strips(img, to_8_bits)
    # Transparent pixels become white rather than whatever colour hides under alpha 0.
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        white = Image.new("RGBA", (img.width, min(STRIP_ROWS, img.height)), (255, 255, 255, 255))

        def onto_white(strip):
            background = white if strip.size == white.size else white.crop((0, 0, *strip.size))
            return Image.alpha_composite(background, strip.convert("RGBA"))
        return _by_strips(img, onto_white)
    return img.convert("RGB")


def _by_strips(img: Image.Image, convert) -> Image.Image:
    """`img` as RGB, `convert` applied STRIP_ROWS rows at a time: the same pixels as converting the whole
    image, without its full-size intermediate copies (alpha: an RGBA copy, a white background and the
    composite, 7 bytes a pixel instead of 23), which is what bounds the endpoint's memory on a large image."""
    w, h = img.size
    out = Image.new("RGB", img.size)
    for top in range(0, h, STRIP_ROWS):
        out.paste(convert(img.crop((0, top, w, min(top + STRIP_ROWS, h)))).convert("RGB"), (0, top))
    return out


def _deep_gray_scale(img: Image.Image) -> float:
    """What maps 16-bit, 32-bit and float grayscale to 8 bits (Pillow's convert clips them: a 16-bit PNG
    turns white). 16-bit modes span 0..65535; a 32-bit integer image is read as 16-bit data when it
    exceeds 255 (PNG, PGM and TIFF store 16-bit samples so), else as 8-bit; a float image is read as 0..1
    when it stays within 1, else as 0..255."""
    if img.mode.startswith("I;16"):
        return 255 / 65535
    high = img.getextrema()[1]
    if img.mode == "I":
        return 255 / 65535 if high > 255 else 1.0
    return 255.0 if high <= 1 else 1.0


def resize_shorter(img: Image.Image, shorter: int) -> Image.Image:
    w, h = img.size
    scale = shorter / min(w, h)
    new = (max(shorter, round(w * scale)), max(shorter, round(h * scale)))
    return img if new == (w, h) else img.resize(new, Image.BICUBIC, reducing_gap=3.0)


def center_crop(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def normalize(pixels: np.ndarray, mean, std) -> np.ndarray:
    """HWC uint8 -> CHW float32, (pixel / 255 - mean) / std."""
    scale = np.float32(1 / 255) / np.asarray(std, np.float32)
    shift = np.asarray(mean, np.float32) / np.asarray(std, np.float32)
    out = pixels.astype(np.float32) * scale - shift
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def batches(pool, fn, items, size: int):
    """Yield lists of fn(item), `size` at a time, preparing the next batch while the caller works."""
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    pending = [pool.submit(fn, it) for it in chunks[0]] if chunks else []
    for i in range(len(chunks)):
        current = pending
        pending = [pool.submit(fn, it) for it in chunks[i + 1]] if i + 1 < len(chunks) else []
        yield [f.result() for f in current]


def read_preprocessing(artifact_dir: Path) -> Preprocessing:
    return Preprocessing.from_json((Path(artifact_dir) / "preprocessing.json").read_text())


def augment(img: Image.Image, size: int, rng: np.random.Generator, min_scale: float = 0.25,
            jitter: float = 0.2) -> np.ndarray:
    """Training view: random resized crop, horizontal flip, brightness/contrast/saturation jitter.

    Returns HWC uint8; `normalize` turns it into the network's input.
    """
    w, h = img.size
    box = (0, 0, w, h)
    for _ in range(10):
        area = w * h * rng.uniform(min_scale, 1.0)
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw, ch = round(float(np.sqrt(area * ratio))), round(float(np.sqrt(area / ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            box = (x0, y0, x0 + cw, y0 + ch)
            break
    # resize(box=...) crops and scales in one pass, cheaper than crop() then resize().
    view = img.resize((size, size), Image.BILINEAR, box=box)
    if rng.random() < 0.5:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    x = np.asarray(view, dtype=np.float32)
    b, c, s = rng.uniform(1 - jitter, 1 + jitter, size=3)
    x = x * b
    x = (x - x.mean()) * c + x.mean()
    gray = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    x = (x - gray) * s + gray
    return np.clip(x, 0, 255).astype(np.uint8)

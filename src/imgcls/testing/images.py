"""Generated image folders for tests: colour per label plus noise, distinct per seed, learnt by any model."""
from __future__ import annotations

from pathlib import Path

COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200), "yellow": (220, 210, 40)}


def make_image(path: Path, colour, seed: int, size=(64, 48), fmt="JPEG") -> Path:
    """A distinct image per seed: the label's colour plus noise and a bright square placed by the seed."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(colour, dtype=np.float32) + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255)
    x, y = rng.integers(0, size[0] // 2), rng.integers(0, size[1] // 2)
    arr[y:y + size[1] // 4, x:x + size[0] // 4] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8)).save(path, fmt)
    return path


def make_dataset(root: Path, counts: dict[str, int], seed: int = 0, size=(64, 48)) -> Path:
    """root/<label>/<label>_<i>.jpg with colours from COLOURS (or grey for unknown labels)."""
    for k, (label, n) in enumerate(counts.items()):
        for i in range(n):
            make_image(root / label / f"{label}_{i:03d}.jpg", COLOURS.get(label, (128, 128, 128)),
                       seed * 100_000 + k * 1000 + i, size)
    return root

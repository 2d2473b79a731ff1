"""A built-in natural-image set for parity checks and calibration.

Real photographs matter here: random noise exercises none of the activation statistics
that break int8 (saturated SiLU, peaky softmax). scikit-image ships a handful of
photographs inside its wheel (no download); deterministic crops, flips and rescales
of them give as many distinct natural images as a check needs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Photographs bundled in scikit-image's wheel (colour first, then greyscale).
_PHOTOS = (
    "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
    "hubble_deep_field.jpg", "retina.jpg", "ihc.png", "camera.png", "coins.png",
    "moon.png", "grass.png", "gravel.png", "brick.png", "clock_motion.png",
)


def _photo_dir() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent


def _read_photos() -> list[np.ndarray]:
    from PIL import Image

    photos = []
    for name in _PHOTOS:
        path = _photo_dir() / name
        if path.exists():
            with Image.open(path) as im:
                photos.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
    if not photos:
        from .errors import VitdeployError

        raise VitdeployError("the built-in image set needs scikit-image's bundled photos; pip install scikit-image")
    return photos


def natural_images(n: int = 16, size: int = 224, seed: int = 0) -> np.ndarray:
    """``n`` distinct natural RGB images, uint8 (n, size, size, 3), the same for the same arguments."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos = _read_photos()
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        # First pass over the photos: the whole centre square; later passes: random crops.
        frac = 1.0 if i < len(photos) else rng.uniform(0.35, 0.9)
        side = int(min(h, w) * frac)
        top = (h - side) // 2 if i < len(photos) else int(rng.integers(0, h - side + 1))
        left = (w - side) // 2 if i < len(photos) else int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(photo[top:top + side, left:left + side])
        crop = crop.resize((size, size), Image.Resampling.BICUBIC)
        arr = np.asarray(crop)
        if i >= len(photos) and rng.random() < 0.5:
            arr = arr[:, ::-1]
        out[i] = arr
    return out


def write_image_folder(directory: str | Path, n: int = 16, size: int = 256, seed: int = 0) -> list[Path]:
    """Write :func:`natural_images` as PNG files (for commands that take an image directory)."""
    from PIL import Image

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(natural_images(n, size, seed)):
        p = directory / f"natural_{i:03d}.png"
        Image.fromarray(img).save(p)
        paths.append(p)
    return paths

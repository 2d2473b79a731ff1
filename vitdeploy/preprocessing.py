"""What each checkpoint source expects its input images to look like.

A model input is computed from 8-bit pixels as
``x[c] = (pixel[c] * scale - mean[c]) / std[c]`` with channels taken in
``channel_order`` (so for BGR, ``x[0]`` is the blue plane and ``mean[0]`` is blue's mean).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .diagnostics import first_line

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """Input convention of a checkpoint source: channel order, scaling, normalization, resize/crop."""

    channel_order: str  # "RGB" or "BGR"
    scale: float  # applied to 0..255 pixels before mean/std
    mean: tuple[float, float, float]  # in channel_order
    std: tuple[float, float, float]  # in channel_order
    resize: int  # shorter side, before the centre crop
    crop: int
    interpolation: str  # "bicubic" or "bilinear"
    source: str = ""  # human-readable provenance of the convention

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        d = dict(d)
        d["mean"] = tuple(d["mean"])
        d["std"] = tuple(d["std"])
        return cls(**d)

    def pixel_affine(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel (a, b) with ``x = a * pixel + b`` for pixels in 0..255, in channel_order."""
        std = np.asarray(self.std, dtype=np.float64)
        a = self.scale / std
        b = -np.asarray(self.mean, dtype=np.float64) / std
        return a.astype(np.float32), b.astype(np.float32)

    def normalize(self, rgb: np.ndarray) -> np.ndarray:
        """Turn uint8/float RGB pixels (N,H,W,3 or H,W,3, range 0..255) into the model's NCHW/CHW float32 input."""
        x = np.asarray(rgb, dtype=np.float32)
        if self.channel_order == "BGR":
            x = x[..., ::-1]
        a, b = self.pixel_affine()
        x = x * a + b
        return np.ascontiguousarray(np.moveaxis(x, -1, -3), dtype=np.float32)

    def describe(self) -> str:
        norm = "no mean/std" if self.mean == (0.0, 0.0, 0.0) and self.std == (1.0, 1.0, 1.0) else "mean/std normalized"
        return (f"{self.channel_order} x{self.scale:g}, {norm}, resize {self.resize} {self.interpolation}, "
                f"centre crop {self.crop}")


LEVIT = Preprocessing("RGB", 1 / 255, IMAGENET_MEAN, IMAGENET_STD, 256, 224, "bicubic",
                      "LeViT (official/timm/HF): RGB, ImageNet mean/std")
MOBILEVIT_BGR = Preprocessing("BGR", 1 / 255, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 288, 256, "bilinear",
                              "MobileViT ml-cvnets / HF weights: BGR in 0..1")
# timm evaluates with crop_pct 0.9: the shorter side is resized to crop / 0.9 (bicubic).
MOBILEVIT_RGB = Preprocessing("RGB", 1 / 255, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 284, 256, "bicubic",
                              "MobileViT timm: RGB in 0..1, timm eval resize (crop_pct 0.9)")
LEVIT_TIMM = Preprocessing("RGB", 1 / 255, IMAGENET_MEAN, IMAGENET_STD, 248, 224, "bicubic",
                           "LeViT timm: RGB, ImageNet mean/std, timm eval resize (crop_pct 0.9)")


def list_images(directory: str | Path, limit: int | None = None) -> list[Path]:
    """Image files under ``directory`` (recursive, sorted); at most ``limit``, spread evenly."""
    from .errors import VitdeployError

    d = Path(directory)
    if not d.is_dir():
        raise VitdeployError(f"{d}: not a directory of images")
    files = sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise VitdeployError(f"{d}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    if limit and limit < len(files):
        # Evenly spread over the sorted list, so an ImageFolder tree gives every class a share.
        files = [files[i * len(files) // limit] for i in range(limit)]
    return files


def load_image_rgb(path: str | Path, pre: Preprocessing) -> np.ndarray:
    """Read an image file, resize its shorter side and centre-crop as ``pre`` says; returns HxWx3 uint8 RGB."""
    from PIL import Image, UnidentifiedImageError

    from .errors import VitdeployError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = pre.resize / min(w, h)
            nw, nh = max(pre.crop, round(w * s)), max(pre.crop, round(h * s))
            resample = Image.Resampling.BICUBIC if pre.interpolation == "bicubic" else Image.Resampling.BILINEAR
            im = im.resize((nw, nh), resample)
            left, top = (nw - pre.crop) // 2, (nh - pre.crop) // 2
            im = im.crop((left, top, left + pre.crop, top + pre.crop))
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as e:
        raise VitdeployError(f"{path}: not a readable image ({e.__class__.__name__}: {first_line(e)})") from None
    except Exception as e:  # PIL's decoders raise SyntaxError, ValueError, DecompressionBombError ... on bad bytes
        raise VitdeployError(f"{path}: not a readable image ({e.__class__.__name__}: {first_line(e)})") from None


def load_images(paths: Sequence[str | Path], pre: Preprocessing) -> np.ndarray:
    """Images as one float32 NCHW batch preprocessed the way ``pre`` says."""
    return pre.normalize(np.stack([load_image_rgb(p, pre) for p in paths]))

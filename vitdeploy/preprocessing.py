"""How a checkpoint source expects its input images to look (:class:`Preprocessing`), and reading images that way.

Generic: each source's convention is declared by its family (the ``layouts`` of its
:class:`~vitdeploy.models.Family` row); ``checkpoints.preprocessing_for(family, layout)`` looks it up.

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
from .errors import VitdeployError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Image files are untrusted: their header is checked before any pixel is decoded.
# 50 megapixels admits a 48 MP phone photo (8064x6048) and is well below PIL's own decompression-bomb
# warning (89 MP) and error (179 MP); decoded as RGB it is ~150 MB.
MAX_IMAGE_PIXELS = 50_000_000
# Longest side / shortest side. Panoramas are ~4:1; past 16:1 the centre crop keeps under 1/16 of the
# image, and the shorter side resized to ``resize`` makes the long side unbounded (a 4000x1 PNG: 1.4 GB).
MAX_ASPECT = 16
# Bound on the resize/crop an artifact's metadata may ask for: model inputs here are 224-288 pixels.
MAX_SIDE = 4096
CHANNEL_ORDERS = ("RGB", "BGR")
INTERPOLATIONS = ("bicubic", "bilinear")


class PreprocessingError(VitdeployError, ValueError):
    """Preprocessing metadata that is not a usable convention (a ValueError too, so artifact readers that
    catch damaged-metadata errors name their file)."""


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
        """The convention stored in an artifact's metadata (untrusted JSON), checked field by field:
        :class:`PreprocessingError` (one line, exit 2) for anything that would compute wrong numbers."""
        if not isinstance(d, dict):
            raise PreprocessingError(f"preprocessing is a JSON {type(d).__name__}, not an object")
        known = {"channel_order", "scale", "mean", "std", "resize", "crop", "interpolation", "source"}
        unknown = sorted(set(d) - known)
        missing = sorted(known - {"source"} - set(d))
        if unknown or missing:
            what = "; ".join(x for x in (f"unknown {', '.join(unknown)}" if unknown else "",
                                         f"missing {', '.join(missing)}" if missing else "") if x)
            raise PreprocessingError(f"preprocessing fields: {what}")
        order = d["channel_order"]
        if order not in CHANNEL_ORDERS:
            raise PreprocessingError(f"preprocessing channel_order {order!r}: expected RGB or BGR")
        interpolation = d["interpolation"]
        if interpolation not in INTERPOLATIONS:
            raise PreprocessingError(f"preprocessing interpolation {interpolation!r}: expected bicubic or bilinear")
        scale = _number(d["scale"], "scale")
        if not scale > 0:
            raise PreprocessingError(f"preprocessing scale {scale!r}: must be > 0")
        mean = _triple(d["mean"], "mean")
        std = _triple(d["std"], "std")
        if not all(v > 0 for v in std):
            raise PreprocessingError(f"preprocessing std {list(std)}: every value must be > 0 (it divides)")
        resize, crop = _side(d["resize"], "resize"), _side(d["crop"], "crop")
        source = d.get("source", "")
        if not isinstance(source, str):
            raise PreprocessingError("preprocessing source: not a string")
        return cls(order, scale, mean, std, resize, crop, interpolation, source)

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


def _number(value, name: str) -> float:
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PreprocessingError(f"preprocessing {name} {value!r}: not a finite number")
    return float(value)


def _triple(value, name: str) -> tuple[float, float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise PreprocessingError(f"preprocessing {name} {value!r}: expected 3 numbers (one per channel)")
    a, b, c = (_number(v, name) for v in value)
    return a, b, c


def _side(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIDE:
        raise PreprocessingError(f"preprocessing {name} {value!r}: expected a whole number of pixels, 1..{MAX_SIDE}")
    return value


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
    """Read an image file, resize its shorter side and centre-crop as ``pre`` says; returns HxWx3 uint8 RGB.

    Dimensions are checked from the header before decoding (:data:`MAX_IMAGE_PIXELS`, :data:`MAX_ASPECT`);
    16-bit and float images are mapped to 0..255 by value (:func:`_to_rgb`), not truncated."""
    from PIL import Image, UnidentifiedImageError

    from .untrusted import require_regular_file

    require_regular_file(path, 1 << 30, "image")  # no FIFO or device; 1 GiB is past any photo file
    try:
        with Image.open(path) as im:
            _check_dimensions(path, *im.size)
            im = _to_rgb(path, im)
            w, h = im.size
            s = pre.resize / min(w, h)
            nw, nh = max(pre.crop, round(w * s)), max(pre.crop, round(h * s))
            resample = Image.Resampling.BICUBIC if pre.interpolation == "bicubic" else Image.Resampling.BILINEAR
            im = im.resize((nw, nh), resample)
            left, top = (nw - pre.crop) // 2, (nh - pre.crop) // 2
            im = im.crop((left, top, left + pre.crop, top + pre.crop))
            return np.asarray(im, dtype=np.uint8)
    except VitdeployError:
        raise
    except (UnidentifiedImageError, OSError) as e:
        raise VitdeployError(f"{path}: not a readable image ({e.__class__.__name__}: {first_line(e)})") from None
    except Exception as e:  # PIL's decoders raise SyntaxError, ValueError, DecompressionBombError ... on bad bytes
        raise VitdeployError(f"{path}: not a readable image ({e.__class__.__name__}: {first_line(e)})") from None


def _check_dimensions(path, w: int, h: int) -> None:
    if w < 1 or h < 1:
        raise VitdeployError(f"{path}: image of {w}x{h} pixels: empty")
    if w * h > MAX_IMAGE_PIXELS:
        raise VitdeployError(f"{path}: image of {w}x{h} pixels ({w * h / 1e6:.0f} MP): more than the "
                             f"{MAX_IMAGE_PIXELS / 1e6:.0f} MP vitdeploy reads; downscale it first")
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise VitdeployError(f"{path}: image of {w}x{h} pixels: aspect ratio beyond 1:{MAX_ASPECT}; "
                             "a centre crop of it would show almost nothing of it")


# 16-bit integer modes PIL opens (PNG, TIFF, PGM): full scale is 65535.
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def _to_rgb(path, im):
    """``im`` as 8-bit RGB by value: PIL's ``convert("RGB")`` clips 16-bit and float pixels to 0..255
    (a 16-bit PNG turns white, a 0..1 float TIFF black), so those modes are scaled here first.

    * 16-bit (``I;16*``): / 257 (65535 -> 255: the full-scale mapping, as a 16-bit -> 8-bit export does);
    * ``I`` (32-bit int, how PIL opens some 16-bit files): values in 0..65535 as 16-bit, else refused;
    * ``F`` (float): in [0, 1] x255; in [0, 255] as is; anything else (negative, HDR, NaN) refused.
    Palette, LA, CMYK, RGBA ... go through PIL's own conversion (alpha dropped)."""
    from PIL import Image

    mode = im.mode
    if mode not in _SIXTEEN_BIT_MODES + ("I", "F"):
        return im.convert("RGB")
    # PIL cannot convert I;16B/I;16N straight to every mode; "I" (int32) holds them all exactly.
    values = np.asarray(im.convert("I") if mode in _SIXTEEN_BIT_MODES else im)
    values = values.astype(np.float64)
    if mode == "F":
        if not np.isfinite(values).all():
            raise VitdeployError(f"{path}: float image holds NaN or infinite pixels")
        low, high = float(values.min()), float(values.max())
        if low >= 0 and high <= 1:
            values = values * 255
        elif not (low >= 0 and high <= 255):
            raise VitdeployError(f"{path}: float image with values {low:.3g}..{high:.3g}: expected 0..1 or "
                                 "0..255 (convert it to an 8-bit image first)")
    else:
        low, high = float(values.min()), float(values.max())
        if low < 0 or high > 65535:
            raise VitdeployError(f"{path}: 32-bit integer image with values {low:.0f}..{high:.0f}: expected "
                                 "16-bit values 0..65535 (convert it to an 8-bit image first)")
        values = values / 257
    gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")


def load_images(paths: Sequence[str | Path], pre: Preprocessing) -> np.ndarray:
    """Images as one float32 NCHW batch preprocessed the way ``pre`` says."""
    return pre.normalize(np.stack([load_image_rgb(p, pre) for p in paths]))

"""Trained reference checkpoints shipped with vitdeploy (what the demo and the low-precision tests use).

``levit_128s_photos.safetensors`` and ``mobilevit_xxs_photos.safetensors``: timm-layout fp16
weights trained from scratch by ``bench/train_reference.py`` on the photo-regions task
(``bench/photo_regions.py``: 22 classes, one per photograph from Debian's wallpaper packages,
held-out crops from image regions never trained on). ``heldout/``: a labelled sample of those
held-out crops (ImageFolder layout, ``vitdeploy eval --data``); ``labels.txt``: the class names.
No pretrained weights can be downloaded where vitdeploy is developed, and random weights say
nothing about what fp16/int8 cost, so these are what low precision is judged on.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import VitdeployError

DIR = Path(__file__).resolve().parent
VARIANTS = ("levit_128s", "mobilevit_xxs")


def checkpoint(variant: str) -> Path:
    """The committed reference checkpoint of ``variant``."""
    path = DIR / f"{variant}_photos.safetensors"
    if not path.is_file():
        raise VitdeployError(f"no committed reference for {variant}; these exist: {', '.join(VARIANTS)}")
    return path


def heldout_dir() -> Path:
    """Labelled held-out images of the reference task (ImageFolder: one folder per class)."""
    return DIR / "heldout"


def labels_file() -> Path:
    return DIR / "labels.txt"

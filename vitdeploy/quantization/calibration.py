"""Which images calibrate int8 and which judge it: one policy, one module, for every target.

Built-in natural images by default (:func:`vitdeploy.sample_images.natural_images`): the first
:data:`N_CALIB` calibrate, the last :data:`N_HELDOUT` (random crops, never calibrated on) judge.
"""

from __future__ import annotations

import numpy as np

from ..sample_images import natural_images

N_CALIB = 32
N_HELDOUT = 16
CALIB_SEED = 0
MIN_GIVEN_FOR_HELDOUT = 16  # --calib images: from this many on, a quarter are held out to judge int8


def natural_images_hw(n: int, height: int, width: int, seed: int = CALIB_SEED) -> np.ndarray:
    """:func:`vitdeploy.sample_images.natural_images` for a possibly non-square size."""
    side = max(height, width)
    images = natural_images(n, side, seed)
    top, left = (side - height) // 2, (side - width) // 2
    return np.ascontiguousarray(images[:, top:top + height, left:left + width])


def split_calibration(calib, height: int, width: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(calibration pixels, held-out pixels the int8 search judges on, description).

    Built-in natural images by default. Given images (``--calib``) are the user's domain, so the
    search judges on them too: every fourth is held out (never calibrated on) when at least
    ``MIN_GIVEN_FOR_HELDOUT`` are given; with fewer, all calibrate and the built-in images judge.
    """
    given = None if calib is None else np.asarray(calib)
    if given is None or len(given) < MIN_GIVEN_FOR_HELDOUT:
        builtin = natural_images_hw(N_CALIB + N_HELDOUT, height, width, seed=CALIB_SEED)
        if given is None:
            return builtin[:N_CALIB], builtin[N_CALIB:], "built-in natural images"
        return given, builtin[N_CALIB:], f"{len(given)} given images (judged on built-in natural images)"
    held = np.zeros(len(given), dtype=bool)
    held[3::4] = True
    return given[~held], given[held], f"{int((~held).sum())} given images ({int(held.sum())} more held out to judge)"

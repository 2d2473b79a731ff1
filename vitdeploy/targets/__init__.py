"""Export targets: each module turns a PyTorch model into a deployable artifact."""

from __future__ import annotations

from dataclasses import asdict

from ..errors import VitdeployError


class Conversion:
    """Base of every converter's result dataclass: JSON-able through :meth:`to_dict` (the path as a string)."""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def check_image_arguments(input_size, preprocessing, calib) -> tuple[int, int, int]:
    """The checks every target shares: (3, H, W) input, RGB/BGR source, calibration pixels (n, H, W, 3)."""
    import numpy as np

    if len(tuple(input_size)) != 3 or int(input_size[0]) != 3:
        raise VitdeployError(f"input size must be (3, H, W), got {tuple(input_size)}")
    if preprocessing.channel_order not in ("RGB", "BGR"):
        raise VitdeployError(f"channel order must be RGB or BGR, got {preprocessing.channel_order!r}")
    _, height, width = (int(v) for v in input_size)
    if calib is not None:
        calib = np.asarray(calib)
        if calib.ndim != 4 or calib.shape[1:] != (height, width, 3) or len(calib) == 0:
            raise VitdeployError(f"calibration images must be (n, {height}, {width}, 3) RGB pixels, "
                                 f"got shape {calib.shape}")
    return 3, height, width

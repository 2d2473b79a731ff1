"""The input convention the TFLite and ExecuTorch targets share: one image batch as RGB pixels 0..255 (NHWC,
the checkpoint's preprocessing inside the graph) or, with ``raw_input``, the preprocessed NCHW floats."""

from __future__ import annotations

import numpy as np

from ..formats import LAYOUT_PIXELS, LAYOUT_RAW
from ..preprocessing import Preprocessing


def pixel_input_spec(channels: int, height: int, width: int, pre: Preprocessing, raw_input: bool) -> dict:
    if raw_input:
        return {"name": "pixel_values", "shape": [1, channels, height, width], "dtype": "float32",
                "layout": LAYOUT_RAW, "channel_order": pre.channel_order}
    # The pixel input is always RGB: the flip for BGR checkpoints is part of the graph.
    return {"name": "image", "shape": [1, height, width, channels], "dtype": "float32",
            "layout": LAYOUT_PIXELS, "channel_order": "RGB"}


def pixel_input_module(model, preprocessing: Preprocessing):
    """Wrap ``model`` so it takes ``[N, H, W, 3]`` RGB pixels (0..255) and returns logits.

    The channel flip (BGR checkpoints), ``scale`` and mean/std fold into one 1x1 convolution:
    a single op that every backend runs and that int8 quantizes exactly (pixels are integers).
    """
    import torch

    a, b = preprocessing.pixel_affine()
    # Output channel c (in the checkpoint's channel order) reads RGB input channel source[c].
    source = [2, 1, 0] if preprocessing.channel_order == "BGR" else [0, 1, 2]
    weight = torch.zeros(3, 3, 1, 1)
    for c, s in enumerate(source):
        weight[c, s, 0, 0] = float(a[c])
    bias = torch.tensor(b, dtype=torch.float32)

    class PixelInput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = logits_module(model)
            self.register_buffer("weight", weight)
            self.register_buffer("bias", bias)

        def forward(self, image):
            x = torch.nn.functional.conv2d(image.permute(0, 3, 1, 2), self.weight, self.bias)
            return self.model(x)

    return PixelInput().eval()


def logits_module(model):
    """``model`` as a module returning a plain logits tensor (HF models return output objects)."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x):
            y = self.inner(x)
            if isinstance(y, torch.Tensor):
                return y
            if hasattr(y, "logits"):
                return y.logits
            if isinstance(y, (tuple, list)) and y and isinstance(y[0], torch.Tensor):
                return y[0]
            raise TypeError(f"the model returned {type(y).__name__}, not a logits tensor")

    return Logits().eval()


def image_hw(input_spec: dict) -> tuple[int, int]:
    shape = input_spec["shape"]
    return (shape[1], shape[2]) if input_spec["layout"] == LAYOUT_PIXELS else (shape[2], shape[3])


def model_inputs_from_pixels(pixels: np.ndarray, input_spec: dict, pre: Preprocessing) -> np.ndarray:
    """uint8 RGB NHWC pixels -> the batch the converted (float-interface) model takes."""
    if input_spec["layout"] == LAYOUT_RAW:
        return pre.normalize(pixels)
    return np.asarray(pixels, dtype=np.float32)

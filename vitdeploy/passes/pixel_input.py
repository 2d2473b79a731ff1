"""Input preprocessing folded into the network's first convolution, so the model takes RGB pixels itself.

For int8 the pixel-input graph otherwise quantizes twice in front of the stem (the preprocessing conv's
int8 output, then the stem); with the affine in the stem's weights, the first quantized value is the
pixel itself (measured on the ExecuTorch target: see ``targets/executorch.py``).
"""

from __future__ import annotations

import numpy as np


def fold_pixel_affine(model, preprocessing):
    """A copy of ``model`` whose stem conv reads RGB pixels 0..255, or None when that would not be exact.

    ``x = a * P(pixel) + b`` (``P``: the channel order). Exact only without a mean shift (``b == 0``,
    MobileViT's sources): then ``conv(W, a * P(x)) == conv(W', x)`` with ``W'`` the weights scaled by ``a``
    and permuted to RGB, zero padding included. With a shift (LeViT), zero padding would differ.
    """
    import copy

    import torch

    a, b = preprocessing.pixel_affine()
    conv = getattr(getattr(model, "stem", None), "weight_layer", None)
    if np.any(b != 0) or not isinstance(conv, torch.nn.Conv2d) or conv.in_channels != 3 or conv.groups != 1:
        return None
    source = [2, 1, 0] if preprocessing.channel_order == "BGR" else [0, 1, 2]
    folded = copy.deepcopy(model)
    first = folded.stem.weight_layer
    with torch.no_grad():
        weight = torch.zeros_like(first.weight)
        for c, s in enumerate(source):  # model channel c reads RGB channel s
            weight[:, s] = first.weight[:, c] * float(a[c])
        first.weight.copy_(weight)
    return folded

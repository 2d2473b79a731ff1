"""Activations: mirrors coremltools mil/ops/defs/iOS15/activation.py (and iOS17/activation.py)."""

from __future__ import annotations

import math

import numpy as np

from ..registry import register
from ._utils import erf, f32, sigmoid


@register("relu")
def relu(a):
    return np.maximum(f32(a["x"]), 0.0)


@register("relu6")
def relu6(a):
    return np.clip(f32(a["x"]), 0.0, 6.0)


@register("leaky_relu")
def leaky_relu(a):
    x = f32(a["x"])
    return np.where(x >= 0, x, x * np.float32(a.scalar("alpha", 0.01)))


@register("elu")
def elu(a):
    x = f32(a["x"])
    return np.where(x > 0, x, np.float32(a.scalar("alpha", 1.0)) * np.expm1(np.minimum(x, 0)))


@register("prelu")
def prelu(a):
    x = f32(a["x"])
    alpha = f32(a["alpha"]).reshape([1, -1] + [1] * (x.ndim - 2))
    return np.where(x >= 0, x, x * alpha)


@register("sigmoid")
def sigmoid_op(a):
    return sigmoid(f32(a["x"]))


@register("sigmoid_hard")
def sigmoid_hard(a):
    x = f32(a["x"])
    return np.clip(np.float32(a.scalar("alpha", 0.2)) * x + np.float32(a.scalar("beta", 0.5)), 0.0, 1.0)


@register("silu")
def silu(a):
    x = f32(a["x"])
    return x * sigmoid(x)


@register("softplus")
def softplus(a):
    return np.logaddexp(f32(a["x"]), 0.0)


@register("softplus_parametric")
def softplus_parametric(a):
    x = f32(a["x"])
    shape = [1, -1] + [1] * (x.ndim - 2)
    alpha, beta = f32(a["alpha"]).reshape(shape), f32(a["beta"]).reshape(shape)
    return alpha * np.logaddexp(beta * x, 0.0)


@register("softsign")
def softsign(a):
    x = f32(a["x"])
    return x / (1.0 + np.abs(x))


@register("scaled_tanh")
def scaled_tanh(a):
    return np.float32(a.scalar("alpha", 1.0)) * np.tanh(np.float32(a.scalar("beta", 1.0)) * f32(a["x"]))


@register("clamped_relu")
def clamped_relu(a):
    x = f32(a["x"])
    alpha, beta = np.float32(a.scalar("alpha", 0.0)), np.float32(a.scalar("beta", 6.0))
    return np.minimum(np.where(x >= 0, x, alpha * x), beta)


@register("thresholded_relu")
def thresholded_relu(a):
    x = f32(a["x"])
    return np.where(x > np.float32(a.scalar("alpha", 1.0)), x, np.float32(0.0))


@register("linear_activation")
def linear_activation(a):
    return np.float32(a.scalar("alpha")) * f32(a["x"]) + np.float32(a.scalar("beta", 0.0))


@register("gelu")
def gelu(a):
    x = f32(a["x"])
    mode = a.scalar("mode", "EXACT")
    if mode == "EXACT":
        return 0.5 * x * (1.0 + erf(x / np.float32(math.sqrt(2.0))))
    if mode == "TANH_APPROXIMATION":
        inner = np.float32(math.sqrt(2.0 / math.pi)) * (x + np.float32(0.044715) * x**3)
        return 0.5 * x * (1.0 + np.tanh(inner))
    if mode == "SIGMOID_APPROXIMATION":
        return x * sigmoid(np.float32(1.702) * x)
    raise a.unsupported(f"mode '{mode}'")


@register("softmax")
def softmax(a):
    x = f32(a["x"])
    axis = int(a.scalar("axis", -1))
    shifted = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return shifted / np.sum(shifted, axis=axis, keepdims=True)

"""Quantization-aware fine-tuning for full int8: adapt the float weights so per-tensor int8 loses less.

Why: float fallback cannot rescue a network whose int8 error is everywhere. MobileViT's SiLU does
not bound activations, so after BatchNorm folding a few channels of a tensor reach +-100 or more
while most stay within a few units, and TFLite's one int8 scale per tensor leaves those channels a
handful of levels (docs/troubleshooting.md, "int8 accuracy loss"). Fine-tuning with the rounding
in the loop lets the weights move to where int8 hurts less.

How: a copy of the (BatchNorm-folded) model is fitted to the original's logits -- distillation,
no labels -- on the calibration images with random crops, flips and mixing, while int8 is
simulated in its forward pass: per-output-channel symmetric int8 weights for every ``Conv2d`` /
``Linear`` (what ai-edge-quantizer does) and per-tensor asymmetric int8 on their inputs and outputs
and on every activation and LayerNorm output, with ranges as moving averages of batch min/max (the
TFLite calibration's default). Gradients pass the rounding straight through and stop at clipped
values. Attention's matmuls and softmax stay float in the simulation: the int8 route keeps them
float for XNNPACK anyway. The result is a plain float model; the usual int8 conversion (calibration,
float-fallback search) runs on it, judged against the *original* float model.

The TFLite target's ``--int8-finetune`` now trains the int8 graph itself (:mod:`vitdeploy.quantization.pt2e`),
whose ranges reach the file; after this module TFLite's calibration recomputed them.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

# Adam learning rate, tried on trained MobileViT-XXS: the distillation loss falls steadily over
# 200 steps (0.21 -> 0.07); on a small outlier net 3e-3 overshoots.
DEFAULT_LR = 1e-4
DEFAULT_BATCH = 8
_RANGE_MOMENTUM = 0.9
RANGE_LR = 1e-2  # Adam on the log-factors of learned ranges


@dataclass
class _ActivationQuant:
    """Per-tensor asymmetric int8 fake quantization: moving-average min/max ranges while observing;
    after :meth:`learn`, each end is the observed one times a learned factor ``exp(t)`` (LSQ-style
    range learning: the gradient of the rounding error and of clipping reaches the range)."""

    lo: object = None
    hi: object = None
    observe: bool = True
    log_lo: object = None  # learned log-factors (torch parameters) once learning
    log_hi: object = None

    def learn(self):
        """Start learning this tensor's range (from the observed one); returns the two parameters."""
        import torch

        self.observe = False
        self.log_lo = torch.nn.Parameter(torch.zeros(()))
        self.log_hi = torch.nn.Parameter(torch.zeros(()))
        return [self.log_lo, self.log_hi]

    def bounds(self):
        import torch

        lo, hi = torch.clamp(self.lo, max=0.0), torch.clamp(self.hi, min=0.0)
        if self.log_lo is not None:
            lo, hi = lo * torch.exp(self.log_lo), hi * torch.exp(self.log_hi)
        return lo, hi

    def __call__(self, x):
        if self.observe:
            lo, hi = x.detach().amin(), x.detach().amax()
            if self.lo is None:
                self.lo, self.hi = lo, hi
            else:
                self.lo = _RANGE_MOMENTUM * self.lo + (1 - _RANGE_MOMENTUM) * lo
                self.hi = _RANGE_MOMENTUM * self.hi + (1 - _RANGE_MOMENTUM) * hi
        lo, hi = self.bounds()
        return fake_quant_tensor(x, lo, hi, learn=self.log_lo is not None)


def fake_quant_tensor(x, lo, hi, learn: bool = False):
    """``x`` rounded to the 256-level grid spanning [lo, hi] (zero exactly representable), clipped.

    Straight-through gradient for ``x`` inside the range, zero outside it. ``learn``: the range
    gets gradients too (LSQ, Esser et al. 2020): rounding passes straight through, so the step size
    sees the rounding error, and clipped values pull their end of the range.
    """
    import torch

    scale = torch.clamp((hi - lo) / 255.0, min=1e-12)
    if learn:
        zero_point = _round_ste(-lo / scale)
        q = _round_ste(torch.clamp(x / scale + zero_point, 0, 255))
        return (q - zero_point) * scale
    zero_point = torch.round(-lo / scale)
    clipped = torch.clamp(x, lo, hi)
    q = (torch.clamp(torch.round(clipped / scale) + zero_point, 0, 255) - zero_point) * scale
    return clipped + (q - clipped).detach()


def _round_ste(t):
    return t + (t.round() - t).detach()


def fake_quant_weight(w):
    """Per-output-channel symmetric int8 (levels -127..127) with a straight-through gradient."""
    import torch

    dims = tuple(range(1, w.dim()))
    scale = w.detach().abs().amax(dim=dims, keepdim=True).clamp_min(1e-12) / 127.0
    q = torch.clamp(torch.round(w / scale), -127, 127) * scale
    return w + (q - w).detach()


class Int8Simulation:
    """Attach int8 simulation to a model in place (hooks + weight parametrizations); ``detach`` undoes it."""

    def __init__(self, model):
        from torch import nn
        from torch.nn.utils import parametrize

        class _WeightQuant(nn.Module):
            def forward(self, w):
                return fake_quant_weight(w)

        self.model = model
        self.ranges: list[_ActivationQuant] = []
        self._handles = []
        self._parametrized = []
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                parametrize.register_parametrization(module, "weight", _WeightQuant())
                self._parametrized.append(module)
                self._quantize_input(module)
                self._quantize_output(module)
            elif isinstance(module, (nn.SiLU, nn.Hardswish, nn.GELU, nn.ReLU, nn.LayerNorm)):
                self._quantize_output(module)

    def _quantize_input(self, module) -> None:
        q = _ActivationQuant()
        self.ranges.append(q)
        self._handles.append(module.register_forward_pre_hook(lambda _m, args: (q(args[0]), *args[1:])))

    def _quantize_output(self, module) -> None:
        q = _ActivationQuant()
        self.ranges.append(q)
        self._handles.append(module.register_forward_hook(lambda _m, _args, out: q(out)))

    def observe(self, flag: bool) -> None:
        """Whether forward passes update the activation ranges (training) or only use them."""
        for q in self.ranges:
            q.observe = flag

    def detach(self):
        """Remove the simulation, keeping the current float weights; returns the model."""
        from torch.nn.utils import parametrize

        for handle in self._handles:
            handle.remove()
        for module in self._parametrized:
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        self._handles, self._parametrized = [], []
        return self.model


def finetune_for_int8(model, images: np.ndarray, *, steps: int, eval_images: np.ndarray | None = None,
                      lr: float = DEFAULT_LR, batch: int = DEFAULT_BATCH, seed: int = 0, threads: int = 2,
                      learn_ranges: bool = False, progress: Callable[[str], None] | None = None) -> tuple[object, dict]:
    """A copy of ``model`` fine-tuned for ``steps`` Adam steps to match ``model``'s logits under simulated int8.

    ``images``: training batch in the model's input convention (NCHW float); ``eval_images``
    (never trained on) measure the simulated int8's logits cosine before and after. Returns the
    float model (``model`` is untouched) and a JSON-able report. ``learn_ranges``: after the first
    observation, learn each activation range (LSQ-style) instead of tracking batch min/max.
    """
    import torch

    if steps < 1:
        raise ValueError("steps must be >= 1")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _finetune(model, images, steps, eval_images, lr, batch, seed, progress or (lambda _msg: None),
                         learn_ranges)
    finally:
        torch.set_num_threads(previous_threads)  # a library call must not change the caller's torch


def _finetune(model, images, steps, eval_images, lr, batch, seed, say, learn_ranges=False) -> tuple[object, dict]:
    import torch

    teacher = copy.deepcopy(model).eval()
    student = copy.deepcopy(model).eval()  # eval: the BatchNorm-free folded model has no train-mode behaviour to keep
    sim = Int8Simulation(student)
    train_x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    eval_x = None if eval_images is None else torch.as_tensor(np.asarray(eval_images, dtype=np.float32))
    with torch.no_grad():
        sim.observe(True)
        student(train_x[: max(batch, 32)])  # initial ranges from plain images
    report = {"steps": int(steps), "lr": lr, "batch": batch, "images": int(len(train_x)),
              "sim_before": _sim_agreement(sim, student, teacher, eval_x)}
    groups = [{"params": list(student.parameters()), "lr": lr}]
    if learn_ranges:  # log-factors on each range end: Adam's steps are then relative (1 % at lr 1e-2)
        groups.append({"params": [p for q in sim.ranges for p in q.learn()], "lr": RANGE_LR})
    report["learn_ranges"] = learn_ranges
    started = time.perf_counter()
    losses = distill(student, teacher, train_x, torch.optim.Adam(groups), steps=steps, batch=batch, seed=seed,
                     say=say, before_step=lambda: sim.observe(not learn_ranges))
    report["sim_after"] = _sim_agreement(sim, student, teacher, eval_x)
    if learn_ranges:
        factors = np.exp([float(p.detach()) for q in sim.ranges for p in (q.log_lo, q.log_hi)])
        report["range_factors"] = {"min": round(float(factors.min()), 3), "median": round(float(np.median(factors)), 3),
                                   "max": round(float(factors.max()), 3)}
    report["loss_first10"] = round(float(np.mean(losses[:10])), 5)
    report["loss_last10"] = round(float(np.mean(losses[-10:])), 5)
    report["seconds"] = round(time.perf_counter() - started, 1)
    return sim.detach(), report


def distill(student, teacher, pool, optimizer, *, steps: int, batch: int, seed: int, say,
            before_step=None, clamp: tuple[float, float] | None = None) -> list[float]:
    """``steps`` optimizer steps fitting ``student`` to ``teacher``'s logits on augmented batches drawn from
    ``pool`` (MSE normalised by the target's variance, no labels); the per-step losses. ``before_step`` runs
    before each forward pass; ``clamp`` keeps augmented inputs in the pool's value range."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    losses = []
    for step in range(steps):
        x = augment(pool[torch.randint(0, len(pool), (batch,), generator=generator)], generator)
        if clamp is not None:
            x = x.clamp(*clamp)
        with torch.no_grad():
            target = teacher(x)
        if before_step is not None:
            before_step()
        loss = torch.nn.functional.mse_loss(student(x), target) / target.var().clamp_min(1e-12)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if (step + 1) % 10 == 0 or step + 1 == steps:
            say(f"int8 fine-tuning step {step + 1}/{steps}: loss {np.mean(losses[-10:]):.4f}")
    return losses


def augment(x, generator):
    """Random crops (60-100 % of the side, resized back), horizontal flips and 0-50 % mixing of two images."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = x.shape
    crops = []
    for i in range(n):
        side = float(torch.empty(1).uniform_(0.6, 1.0, generator=generator))
        ch, cw = max(1, int(h * side)), max(1, int(w * side))
        top = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
        crop = F.interpolate(x[i:i + 1, :, top:top + ch, left:left + cw], size=(h, w), mode="bilinear",
                             align_corners=False)
        crops.append(crop.flip(-1) if float(torch.rand(1, generator=generator)) < 0.5 else crop)
    out = torch.cat(crops)
    mix = torch.rand(n, 1, 1, 1, generator=generator) * 0.5
    return (1 - mix) * out + mix * out[torch.randperm(n, generator=generator)]


def _sim_agreement(sim: Int8Simulation, student, teacher, x) -> dict | None:
    """Simulated int8's logits cosine (worst, mean) and top-1 agreement against the float model."""
    import torch

    if x is None:
        return None
    from ..similarity import logits_agreement

    sim.observe(False)
    with torch.no_grad():
        return logits_agreement(student(x).numpy(), teacher(x).numpy())

"""Layer-wise localization: where does an artifact start to diverge from its checkpoint?

Reference intermediates come from forward hooks on the PyTorch model's blocks
(LeViT: ``stem``, ``stages.i.downsample``, ``stages.i.blocks.j``; MobileViT: ``stem``,
``stages.i.j``, ``final_conv``). Artifact intermediates:

* TFLite: a LiteRT interpreter with ``experimental_preserve_all_tensors=True`` and no XNNPACK
  delegate (a delegate fuses the graph into one node whose insides are not kept), every op's
  output read after ``invoke`` (int8 tensors dequantized with their scale/zero point).
* Core ML: the values the MIL interpreter's ``predict(..., observe=...)`` reports, in program order.

Mapping artifact tensors to blocks:

* **by name** -- litert-torch keeps the PyTorch module scope of every op in the tensor name
  (``.../Sequential_stages/LevitStage_2/Sequential_blocks/LevitBlock_1;...``, each segment
  ``<class>_<attribute>``); the module path is recovered from it and the block's output is the
  last tensor, in execution order, produced inside the block whose size fits the block's output.
  Names that spell the path with separators (``stages_2_blocks_1_...``, as MIL value names from
  ``torch.export`` graphs can) are matched too.
* **by shape** (fallback, blocks with no named tensor) -- the tensors after the previous block's
  match whose element count equals the block output's, under each layout that fits (same
  shape, NHWC for NCHW, (C, N) for (N, C) tokens), the best cosine to the reference wins.
  Caveat: a corrupted block whose residual passes its input through may be matched to that
  (uncorrupted) input, which shifts the blame one block later.

Per block: relative L2 and cosine between the reference output and the artifact tensor.
``first_divergent`` is the first block whose relative L2 exceeds the divergence threshold
(the precision preset's ``rel_l2_max``), ``jumps`` the blocks where the error grows the most
relative to the block before (errors under 5 % of the threshold -- the precision's own rounding
noise -- count as that floor). The logits row compares the artifact's real output.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import VitdeployError
from ..similarity import cosine_rows
from ..formats import EMULATED_SUFFIXES, LOCALIZED_SUFFIXES, format_of
from .intermediates import ArtifactTensors, _coreml_tensors, _emulated_values, _EverySize, _tflite_tensors

# How each format whose runtime keeps its intermediate tensors (the row's ``intermediates``) gives them.
_TENSOR_READERS = {"tflite": _tflite_tensors, "coreml": _coreml_tensors}

# Block relative L2 below this is "no error" when computing jump ratios (float32 noise).
_NOISE_FLOOR = 1e-6


# ----------------------------------------------------------------------------- reference side


def block_names(model) -> list[str]:
    """The blocks whose outputs localization compares, in the model's module order (its family says which);
    any other network: its top-level children."""
    from ..models import FAMILIES

    names = dict(model.named_modules())
    fam = FAMILIES.get(getattr(model, "family", None))
    out = fam.block_names(model) if fam else [n for n, _ in model.named_children()]
    return [n for n in out if n in names]


def reference_intermediates(model, x: np.ndarray, blocks: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({block: output (N, ...) float32}, logits) from forward hooks, blocks in execution order."""
    import torch

    modules = dict(model.named_modules())
    captured: dict[str, np.ndarray] = {}
    handles = []

    def hook(name):
        def fn(_module, _inputs, output):
            if isinstance(output, torch.Tensor):
                captured[name] = output.detach().float().numpy().copy()
        return fn

    for name in blocks:
        handles.append(modules[name].register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            logits = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    finally:
        for h in handles:
            h.remove()
    if not isinstance(logits, torch.Tensor):
        logits = getattr(logits, "logits", logits[0])
    return captured, logits.numpy()


# ----------------------------------------------------------------------------- name mapping


def _scope_paths(tensor_name: str) -> list[list[str]]:
    """Module attribute paths encoded in a litert-torch tensor name (one per ';'-joined location)."""
    paths = []
    for part in tensor_name.split(";"):
        if "/" not in part:
            continue
        attrs = []
        for segment in part.split("/"):
            last = segment.rsplit(".", 1)[-1]  # drop the module path of the class
            cls, sep, attr = last.partition("_")
            while cls == "" and sep:  # private class names (_Foo_attr)
                cls, sep, attr = attr.partition("_")
            attrs.append(attr if sep else "")
        paths.append(attrs)
    return paths


def _module_path(attrs: list[str], known: set[str]) -> str | None:
    """The longest suffix of ``attrs`` (after the converter's wrappers) that is a module of the model."""
    for start in range(len(attrs)):
        path = ".".join(a for a in attrs[start:] if a)
        if path in known:
            return path
    return None


def _block_of(path: str, blocks: list[str]) -> str | None:
    best = None
    for b in blocks:
        if path == b or path.startswith(b + "."):
            if best is None or len(b) > len(best):
                best = b
    return best


def _token_block(name: str, blocks: list[str]) -> str | None:
    """Blocks spelled inside a flat name (``stages_2_blocks_1_attn``), the deepest that matches."""
    tokens = [t for t in re.split(r"[^A-Za-z0-9]+", name) if t]
    best = None
    for b in blocks:
        bt = b.split(".")
        for i in range(len(tokens) - len(bt) + 1):
            if tokens[i:i + len(bt)] == bt:
                if best is None or len(b) > len(best):
                    best = b
                break
    return best


def _name_blocks(names: list[str], blocks: list[str], known: set[str]) -> list[str | None]:
    out = []
    for name in names:
        block = None
        for attrs in _scope_paths(name):
            path = _module_path(attrs, known)
            if path is not None:
                block = _block_of(path, blocks)
                if block is not None:
                    break
        if block is None and "/" not in name:
            block = _token_block(name, blocks)
        out.append(block)
    return out


# ----------------------------------------------------------------------------- layouts


def _layouts(ref_shape: tuple[int, ...]) -> list[tuple[str, callable]]:
    """Ways an artifact tensor (flattened per sample) may hold a reference output of ``ref_shape``."""
    out = [("same", lambda v: v)]
    if len(ref_shape) == 3:  # (C, H, W) held as (H, W, C)
        c, h, w = ref_shape
        out.append(("NHWC", lambda v: v.reshape(len(v), h, w, c).transpose(0, 3, 1, 2).reshape(len(v), -1)))
    if len(ref_shape) == 2:  # tokens (N, C) held as (C, N)
        n, c = ref_shape
        out.append(("transposed", lambda v: v.reshape(len(v), c, n).transpose(0, 2, 1).reshape(len(v), -1)))
    return out


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    """One cosine over every value of ``a`` and ``b`` (a whole block's output)."""
    return float(cosine_rows(np.ravel(b)[None], np.ravel(a)[None])[0])


def _best_layout(value: np.ndarray, ref: np.ndarray) -> tuple[str, np.ndarray, float]:
    best = None
    for name, fn in _layouts(ref.shape[1:]):
        v = fn(value)
        cos = _cosine(v, ref.reshape(len(ref), -1))
        if best is None or cos > best[2]:
            best = (name, v, cos)
    return best


def first_nonfinite(artifact: str | Path, x_chw: np.ndarray, pre, model=None, emulate: dict | None = None) -> str | None:
    """The first value, in execution order, that holds NaN or inf when ``artifact`` runs on one preprocessed
    input (``x_chw``, float CHW); named by block when ``model`` (the reference) lets the name be mapped.
    ``emulate``: read the values from a run on that emulated phone CPU (every value an extra output)."""
    from ..runtimes.coreml import nchw_to_rgb_pixels

    artifact = Path(artifact)
    rgb = nchw_to_rgb_pixels(np.asarray(x_chw, dtype=np.float32)[None], pre)
    fmt = format_of(artifact)
    tensors = _TENSOR_READERS[fmt.name](artifact, rgb, pre, _EverySize())
    if emulate and fmt.emulated:  # every value, as the phone computes it
        _, tensors.values, _ = _emulated_values(artifact, rgb, pre, tensors.names, emulate)
    index = next((i for i, v in enumerate(tensors.values) if not np.isfinite(v).all()), None)
    if index is None:
        return None
    name = tensors.names[index]
    short = name if len(name) <= 80 else name[:36] + " ... " + name[-36:]
    op = f" ({tensors.op_types[name]} op)" if name in tensors.op_types else ""
    block = None
    if model is not None:
        blocks = block_names(model)
        known = {n for n, _ in model.named_modules() if n}
        block = _name_blocks([name], blocks, known)[0]
    return f"block {block}, value '{short}'{op}" if block else f"'{short}'{op}"


# ----------------------------------------------------------------------------- result


@dataclass
class LocalizationResult:
    artifact: str
    checkpoint: str
    precision: str
    threshold: float  # rel L2 above which a block counts as divergent
    blocks: list[dict]  # block, rel_l2, cosine, cosine_min, max_abs, tensor, match, layout
    first_divergent: str | None
    jumps: list[dict]  # [{"block", "ratio", "rel_l2", "previous_rel_l2"}], largest first
    logits: dict  # rel_l2 / cosine of the final logits on the same images
    n_images: int
    mapping: dict  # {"by_name": k, "by_shape": k, "unmatched": k}
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    first_nonfinite: str | None = None  # the first block whose artifact output holds NaN/inf
    arm: dict | None = None  # the emulated CPU the artifact's values came from (None: the host)

    def to_dict(self) -> dict:
        return {"kind": "localization", "artifact": self.artifact, "checkpoint": self.checkpoint,
                "precision": self.precision, "threshold": self.threshold, "blocks": self.blocks,
                "first_divergent": self.first_divergent, "jumps": self.jumps, "logits": self.logits,
                "n_images": self.n_images, "mapping": self.mapping, "warnings": self.warnings,
                "seconds": self.seconds, "first_nonfinite": self.first_nonfinite, "arm": self.arm}

    def table(self) -> str:
        """A text table: block, relative L2, cosine, how the tensor was found; divergent rows marked."""
        rows = [("block", "rel L2", "cosine", "match", "")]
        for b in self.blocks:
            mark = ""
            if b["block"] == self.first_divergent:
                mark = "<- diverges here"
            elif self.jumps and b["block"] == self.jumps[0]["block"]:
                mark = "<- largest jump"
            if b["block"] == self.first_nonfinite and not mark:
                mark = "<- first not finite"
            if b["rel_l2"] is None:
                rows.append((b["block"], "-", "-", "unmatched", mark))
            else:
                rows.append((b["block"], f"{b['rel_l2']:.3e}", f"{b['cosine']:.6f}",
                             f"{b['match']}/{b['layout']}", mark))
        rows.append(("logits", f"{self.logits['rel_l2']:.3e}", f"{self.logits['cosine']:.6f}", "output", ""))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths[:4]))
        verdict = (f"divergence starts at {self.first_divergent} (rel L2 above {self.threshold:g})"
                   if self.first_divergent else f"no block above rel L2 {self.threshold:g}")
        if self.jumps:
            verdict += "; largest jumps: " + ", ".join(f"{j['block']} (x{j['ratio']:.3g})" for j in self.jumps)
        if self.first_nonfinite:
            verdict += f"; first block whose output is not finite: {self.first_nonfinite}"
        if self.arm:
            verdict = (f"on an emulated {self.arm['cpu']} ({'fp16' if self.arm.get('fp16_compute') else 'fp32'} "
                       f"arithmetic): {verdict}")
        return "\n".join(lines + [verdict])


# ----------------------------------------------------------------------------- main entry


def localize(artifact: str | Path, checkpoint: str | Path, *, images_dir: str | Path | None = None,
             n_images: int = 4, seed: int = 0, variant: str | None = None, by: str = "auto",
             precision: str | None = None, threshold: float | None = None, n_jumps: int = 3,
             emulate: dict | None = None) -> LocalizationResult:
    """Per-block error of ``artifact`` against ``checkpoint``; names where the divergence starts.

    ``emulate`` (a .tflite only; ``{"cpu", "fp16", "xnnpack"}`` as for parity): the blocks are matched on
    the host as usual, then their tensors are made extra model outputs and read from a run on that
    emulated phone CPU -- XNNPACK included, so fp16 arithmetic drift or overflow shows where it starts.

    ``by``: ``auto`` (names where the converter kept module paths, shapes for the rest),
    ``names`` (names only) or ``shapes`` (ignore names). ``threshold``: block rel L2 counted as
    divergent (default: the precision preset's ``rel_l2_max``).
    """
    from .. import checkpoints
    from ..preprocessing import load_image_rgb
    from ..sample_images import natural_images
    from ..preprocessing import list_images
    from .precision import artifact_precision
    from .tolerances import resolve

    started = time.perf_counter()
    artifact, checkpoint = Path(artifact), Path(checkpoint)
    if by not in ("auto", "names", "shapes"):
        raise VitdeployError(f"unknown mapping '{by}'; choose auto, names or shapes")
    if n_images < 1:
        raise VitdeployError("n_images must be >= 1")
    fmt = format_of(artifact)
    if fmt is None or not fmt.intermediates:
        raise VitdeployError(f"{artifact}: localization takes a {' or '.join(LOCALIZED_SUFFIXES)} artifact")
    if not artifact.exists():
        raise VitdeployError(f"{artifact}: no such file or directory")
    ckpt = checkpoints.load(checkpoint, variant=variant)
    model, pre = ckpt.model.eval(), ckpt.preprocessing
    size = ckpt.input_size[1]
    if images_dir is not None:
        rgb = np.stack([load_image_rgb(p, pre) for p in list_images(images_dir, n_images)])
    else:
        rgb = natural_images(n_images, size, seed=seed)
    if precision is None:
        precision, _ = artifact_precision(artifact)
    if threshold is None:
        threshold = resolve(precision)["rel_l2_max"] or 1e-3

    blocks = block_names(model)
    ref, ref_logits = reference_intermediates(model, pre.normalize(rgb), blocks)
    blocks = [b for b in blocks if b in ref]
    sizes = {int(np.prod(ref[b].shape[1:])) for b in blocks} | {int(ref_logits.shape[1])}
    tensors = _TENSOR_READERS[fmt.name](artifact, rgb, pre, sizes)
    if not tensors.names:
        raise VitdeployError(f"{artifact}: the runtime kept no intermediate tensors")

    known = {n for n, _ in model.named_modules() if n}
    owners = _name_blocks(tensors.names, blocks, known) if by != "shapes" else [None] * len(tensors.names)
    rows, position, matched = [], -1, {}
    counts = {"by_name": 0, "by_shape": 0, "unmatched": 0}
    for block in blocks:
        r = ref[block]
        n_el = int(np.prod(r.shape[1:]))
        match = None
        named = [i for i, o in enumerate(owners) if o == block and tensors.values[i].shape[1] == n_el]
        if named:
            i = named[-1]
            layout, v, cos = _best_layout(tensors.values[i], r)
            match = (i, "name", layout, v)
        elif by != "names":
            best = None
            for i in range(position + 1, len(tensors.names)):
                if tensors.values[i].shape[1] != n_el:
                    continue
                layout, v, cos = _best_layout(tensors.values[i], r)
                if best is None or cos >= best[0]:
                    best = (cos, i, layout, v)
            if best is not None:
                match = (best[1], "shape", best[2], best[3])
        if match is None:
            counts["unmatched"] += 1
            rows.append({"block": block, "shape": list(r.shape[1:]), "rel_l2": None, "cosine": None,
                         "cosine_min": None, "max_abs": None, "tensor": None, "match": None, "layout": None})
            continue
        i, how, layout, v = match
        counts["by_name" if how == "name" else "by_shape"] += 1
        position = max(position, i)
        matched[block] = (i, how, layout)
        rows.append(_block_row(block, r, v, tensors.names[i], how, layout))

    got_logits = tensors.logits
    if emulate:
        if not fmt.emulated:
            raise VitdeployError(f"{artifact}: an emulated phone CPU runs {'/'.join(EMULATED_SUFFIXES)} artifacts only")
        got_logits, rows, arm = _emulated_rows(artifact, rgb, pre, tensors, matched, ref, rows, emulate)
    else:
        arm = None
    if got_logits is not None and got_logits.shape != ref_logits.shape:
        got_logits = None
    from . import metrics as M

    logits = ({"rel_l2": M.rel_l2(ref_logits, got_logits), "cosine": float(M.cosine_per_sample(ref_logits,
                                                                                                 got_logits).min())}
              if got_logits is not None else {"rel_l2": float("nan"), "cosine": float("nan")})
    first = next((b["block"] for b in rows if b["rel_l2"] is not None and b["rel_l2"] > threshold), None)
    warnings = []
    if first is None and not math.isnan(logits["rel_l2"]) and logits["rel_l2"] > threshold:  # inf included
        first = "head"  # every block agrees, the output does not: pooling/classifier (or output handling)
        warnings.append("every block is within the threshold but the logits are not: the divergence is after "
                        "the last block (pooling, classifier head or output conversion)")
    if counts["unmatched"]:
        warnings.append(f"{counts['unmatched']} block(s) had no artifact tensor of a fitting size")
    if by == "auto" and counts["by_name"] == 0:
        warnings.append("the artifact's tensor names carry no module paths: blocks were matched by shape and "
                        "correlation only")
    return LocalizationResult(
        artifact=str(artifact), checkpoint=str(checkpoint), precision=precision, threshold=float(threshold),
        blocks=rows, first_divergent=first, jumps=_jumps(rows, n_jumps, float(threshold)), logits=logits, n_images=len(rgb),
        mapping=counts, warnings=warnings, seconds=round(time.perf_counter() - started, 3),
        first_nonfinite=next((b["block"] for b in rows if b.get("finite") is False), None), arm=arm)


def _emulated_rows(artifact: Path, rgb: np.ndarray, pre, tensors: ArtifactTensors, matched: dict, ref: dict,
                   rows: list[dict], emulate: dict) -> tuple[np.ndarray, list[dict], dict]:
    """(logits, rows, the emulated CPU): the matched blocks re-measured on an emulated CPU."""
    blocks = list(matched)
    names = [tensors.names[matched[b][0]] for b in blocks]
    logits, values, arm = _emulated_values(artifact, rgb, pre, names, emulate)
    by_block = {}
    for block, name, value in zip(blocks, names, values):
        _, how, layout = matched[block]
        fn = dict(_layouts(ref[block].shape[1:]))[layout]
        by_block[block] = _block_row(block, ref[block], fn(value), name, how, layout)
    return logits, [by_block.get(row["block"], row) for row in rows], arm


def _block_row(block: str, ref: np.ndarray, got: np.ndarray, tensor: str, how: str, layout: str) -> dict:
    r = ref.reshape(len(ref), -1).astype(np.float64)
    g = got.astype(np.float64)
    err = np.linalg.norm(g - r)
    rel = float(err / max(np.linalg.norm(r), 1e-30)) if math.isfinite(err) else float("inf")
    cos_each = cosine_rows(r, g)
    return {"block": block, "shape": list(ref.shape[1:]), "rel_l2": rel, "cosine": float(np.mean(cos_each)),
            "cosine_min": float(np.min(cos_each)),
            "max_abs": float(np.abs(g - r).max()) if np.isfinite(g).all() else float("inf"),
            "tensor": tensor if len(tensor) <= 300 else tensor[:140] + " ... " + tensor[-140:],
            "match": how, "layout": layout, "finite": bool(np.isfinite(g).all())}


def _jumps(rows: list[dict], n: int, threshold: float) -> list[dict]:
    """Blocks where the relative error grows most over the previous matched block.

    Errors below a floor (5 % of the divergence threshold: the precision's own rounding noise,
    e.g. fp16's first-block 1e-3) count as the floor, so rounding noise is not a "jump".
    """
    floor = max(_NOISE_FLOOR, 0.05 * threshold)
    out = []
    previous = floor
    for row in rows:
        if row["rel_l2"] is None:
            continue
        current = max(row["rel_l2"], floor)
        ratio = current / previous if math.isfinite(current) else float("inf")
        out.append({"block": row["block"], "ratio": float(ratio), "rel_l2": row["rel_l2"],
                    "previous_rel_l2": float(previous)})
        previous = current
    out = [j for j in out if j["ratio"] > 1.0]
    out.sort(key=lambda j: -j["ratio"])
    return out[:n]

"""Core ML graph quality: vitdeploy's .mlpackage vs HF transformers -> coremltools directly.

    .venv/bin/python bench/coreml_graph.py levit_128s mobilevit_xxs

Both come from ``bench/conversion.py`` (same weights; fp16, iOS16 ML Program): ``vitdeploy convert
--target coreml`` and ``torch.export`` + ``ct.convert(convert_to="mlprogram")`` of the HF model.
The program is read back from the saved .mlpackage (``coremltools`` MIL), consts excluded.

Neural Engine compatibility is judged per op with these rules (no Apple device here, so this is
a static check from what Apple and the community document about the ANE compiler, not a
measurement; an op that breaks a rule is likely to run on CPU/GPU and split the ANE graph):

1. **op type** on the ANE allow-list below (conv, linear, matmul, elementwise, activations,
   softmax, norms, pooling, reductions, reshape/transpose/concat/split/slice); anything else,
   in particular ``gather``/``gather_nd``/``scatter*``/``while_loop``/``cond``, fails;
2. **rank**: every non-const input/output rank <= 4 (Core ML accepts 5, but the ANE works on
   4-D (N)CHW tiles and rank-5 ops fall back or are split);
3. **dims**: every axis <= 16384 (ANE tensor dimension limit);
4. **dtype**: the op computes in fp16 (exempt: a fp32<->fp16 ``cast`` and the ``ImageType``
   scale/bias ops on the fp32 image input, which the ANE's input stage does); int32/bool compute
   (shape arithmetic, index math) runs on CPU.

Also reported: ``batch_norm`` left (the ANE runs it, but as a separate pass that folding removes)
and ``gather``. Goal for LeViT: >= 30 % fewer ops than the direct path, no batch_norm, no gather,
max rank <= 4.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ANE_OPS = {
    "conv", "conv_transpose", "linear", "matmul", "einsum",
    "add", "sub", "mul", "real_div", "maximum", "minimum", "pow", "sqrt", "rsqrt", "inverse", "square",
    "exp", "log", "abs", "erf", "tanh", "sigmoid", "sigmoid_hard", "silu", "relu", "relu6", "leaky_relu",
    "gelu", "softmax", "clip", "thresholded_relu", "elu", "prelu", "softplus",
    "layer_norm", "batch_norm", "instance_norm", "l2_norm",
    "avg_pool", "max_pool", "reduce_mean", "reduce_sum", "reduce_max", "reduce_min", "reduce_l2_norm",
    "reshape", "transpose", "concat", "split", "slice_by_index", "slice_by_size", "squeeze", "expand_dims",
    "pad", "tile", "upsample_nearest_neighbor", "upsample_bilinear", "pixel_shuffle", "space_to_depth",
    "depth_to_space", "identity", "cast",
}
MAX_RANK = 4
MAX_DIM = 16384


def _program(path: Path):
    import coremltools as ct

    from vitdeploy.formats.coreml import load_program

    return load_program(ct.models.MLModel(str(path), skip_model_load=True))


def _dtype(var) -> str:
    try:
        from coremltools.converters.mil.mil import types

        return types.builtin_to_string(var.dtype)
    except Exception:  # noqa: BLE001 - list/dict vars
        return "other"


def analyse(path: Path) -> dict:
    """Op counts, ranks and the per-op ANE rule check of one .mlpackage."""
    function = _program(path).functions["main"]
    counts: Counter = Counter()
    violations: Counter = Counter()
    by_rule: Counter = Counter()
    max_rank, ane_ok = 0, 0
    for op in function.operations:
        if op.op_type == "const":
            continue
        counts[op.op_type] += 1
        values = [v for v in op.outputs] + [v for v in op.inputs.values() if hasattr(v, "shape") and
                                              getattr(v, "op", None) is not None and v.op.op_type != "const"]
        shapes = [tuple(v.shape) for v in values if getattr(v, "shape", None) is not None]
        rank = max((len(s) for s in shapes), default=0)
        max_rank = max(max_rank, max((len(tuple(v.shape)) for v in op.outputs
                                      if getattr(v, "shape", None) is not None), default=0))
        broken = []
        if op.op_type not in ANE_OPS:
            broken.append("op type")
        if rank > MAX_RANK:
            broken.append("rank")
        if any(isinstance(d, int) and d > MAX_DIM for s in shapes for d in s):
            broken.append("dim")
        out_types = {_dtype(v) for v in op.outputs}
        boundary = op.name.endswith(("__scaled__", "__biased__"))  # ImageType scale/bias on the fp32 image
        if op.op_type != "cast" and not boundary and not out_types <= {"fp16"}:
            broken.append("dtype")
        if broken:
            violations[op.op_type] += 1
            by_rule.update(broken)
        else:
            ane_ok += 1
    total = sum(counts.values())
    return {"total_ops": total, "op_counts": dict(counts.most_common()), "batch_norm": counts.get("batch_norm", 0),
            "gather": sum(v for k, v in counts.items() if k.startswith("gather")), "max_rank": max_rank,
            "ane_ok_ops": ane_ok, "ane_ok_fraction": round(ane_ok / total, 4) if total else None,
            "ane_violations_by_op": dict(violations.most_common()), "ane_violations_by_rule": dict(by_rule)}


def compare(variant: str, conversions: list[dict]) -> dict:
    """vitdeploy vs direct for one variant (from bench/conversion.py rows)."""
    paths = {r["path"]: ROOT / r["artifact"] for r in conversions
             if r["variant"] == variant and r["target"] == "coreml" and r["mode"] == "fp16" and r.get("ok")}
    out: dict = {"variant": variant}
    for name in ("vitdeploy", "direct"):
        if name in paths and paths[name].exists():
            try:
                out[name] = analyse(paths[name])
            except Exception as e:  # noqa: BLE001
                out[name] = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
        else:
            err = next((r.get("error") for r in conversions if r["variant"] == variant and r["target"] == "coreml"
                        and r["mode"] == "fp16" and r["path"] == name), "not converted")
            out[name] = {"error": err}
    v, d = out["vitdeploy"], out["direct"]
    if "total_ops" in v and "total_ops" in d:
        out["op_reduction"] = round(1 - v["total_ops"] / d["total_ops"], 3)
        if variant.startswith("levit"):
            out["goal_met"] = (out["op_reduction"] >= 0.30 and v["batch_norm"] == 0 and v["gather"] == 0
                               and v["max_rank"] <= 4)
    return out


def main() -> None:
    from conversion import run_conversions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", default=["levit_128s"])
    args = parser.parse_args()
    jobs = (("coreml", "fp16", "vitdeploy"), ("coreml", "fp16", "direct"))
    conv = run_conversions(args.variants, jobs=jobs)
    for v in args.variants:
        print(json.dumps(compare(v, conv), indent=1))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()

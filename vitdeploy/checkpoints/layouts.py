"""Checkpoint layouts: recognise each ecosystem's key names and map them to timm's,
vitdeploy's canonical layout.

Every mapping is by name and structure, never by position: a safetensors file stores
keys sorted, so the order of a state dict carries no meaning.

| layout     | family    | written by                                  |
|------------|-----------|---------------------------------------------|
| timm       | both      | timm ``levit_*`` / ``mobilevit_*``          |
| timm-conv  | levit     | timm ``levit_conv_*`` (1x1 conv weights)    |
| official   | levit     | facebookresearch/LeViT                      |
| cvnets     | mobilevit | apple/ml-cvnets                             |
| hf         | both      | HF transformers ``Levit*``/``MobileViT*``   |
"""

from __future__ import annotations

import re
from collections import defaultdict

from ..errors import CheckpointError

LAYOUTS = ("timm", "timm-conv", "official", "cvnets", "hf")


def detect_layout(sd: dict) -> tuple[str, str]:
    """(layout, family) of a state dict, from its key names."""
    keys = sd.keys()
    has = lambda prefix: any(k.startswith(prefix) for k in keys)  # noqa: E731
    if has("levit.patch_embeddings."):
        return "hf", "levit"
    if has("mobilevit.conv_stem."):
        return "hf", "mobilevit"
    if has("patch_embed.0.c.") and has("blocks."):
        return "official", "levit"
    if has("stem.conv1.linear.") and has("stages."):
        qkv = next((v for k, v in sd.items() if k.endswith("attn.qkv.linear.weight")), None)
        return ("timm-conv" if qkv is not None and qkv.ndim == 4 else "timm"), "levit"
    if has("stem.conv.") and has("stages.0.0.conv1_1x1."):
        return "timm", "mobilevit"
    if has("conv_1.block.conv.") or has("encoder.conv_1.block.conv."):
        return "cvnets", "mobilevit"
    sample = ", ".join(sorted(keys)[:4])
    raise CheckpointError(f"not a LeViT or MobileViT checkpoint: unrecognised keys ({len(sd)} keys, e.g. {sample})")


def to_canonical(sd: dict, layout: str) -> dict:
    """Rename (and where needed reshape or split/merge) tensors into timm's layout."""
    if layout not in _CONVERTERS:
        raise CheckpointError(f"unknown layout '{layout}'; known: {', '.join(LAYOUTS)}")
    return _CONVERTERS[layout](sd)


def _rename(sd: dict, rules: list[tuple[str, str]]) -> dict:
    out = {}
    for key, value in sd.items():
        new = key
        for pattern, repl in rules:
            new = re.sub(pattern, repl, new)
        out[new] = value
    return out


# --- LeViT -------------------------------------------------------------------------------

def _timm_levit(sd: dict) -> dict:
    return {k: v for k, v in sd.items() if not k.endswith("attention_bias_idxs")}


def _timm_conv_levit(sd: dict) -> dict:
    """levit_conv_*: the same names, Linear weights stored as (out, in, 1, 1) convs."""
    out = {}
    for k, v in _timm_levit(sd).items():
        if k.endswith(".linear.weight") and v.ndim == 4 and not k.startswith("stem."):
            v = v.reshape(v.shape[0], v.shape[1])
        out[k] = v
    return out


def _official_levit(sd: dict) -> dict:
    """facebookresearch/LeViT: flat ``blocks.N`` list -> timm stages, by each block's kind."""
    sd = {k: v for k, v in sd.items() if not k.endswith("attention_bias_idxs")}
    out = {}
    for k, v in sd.items():
        if k.startswith("patch_embed."):
            idx, rest = k[len("patch_embed."):].split(".", 1)
            out[f"stem.conv{int(idx) // 2 + 1}.{_official_lbn(rest)}"] = v
        elif k.startswith(("head.", "head_dist.")):
            out[k.replace(".l.", ".linear.")] = v
    out.update(_official_blocks(sd))
    return out


def _official_blocks(sd: dict) -> dict:
    blocks: dict[int, dict[str, object]] = defaultdict(dict)
    for k, v in sd.items():
        m = re.match(r"blocks\.(\d+)\.(.+)", k)
        if m:
            blocks[int(m.group(1))][m.group(2)] = v
    out = {}
    stage, block, pending_mlp_target = 0, 0, None
    for n in sorted(blocks):
        params = blocks[n]
        if any(p.startswith("kv.") for p in params):  # AttentionSubsample: starts the next stage
            stage, block = stage + 1, 0
            prefix = f"stages.{stage}.downsample"
            for p, v in params.items():
                p = re.sub(r"^q\.1\.", "q.ln.", p)
                p = re.sub(r"^proj\.1\.", "proj.ln.", p)
                out[f"{prefix}.attn_downsample.{_official_lbn(p)}"] = v
            pending_mlp_target = f"{prefix}.mlp"
        elif any(p.startswith("m.qkv.") for p in params):  # residual attention
            prefix = f"stages.{stage}.blocks.{block}.attn"
            for p, v in params.items():
                p = re.sub(r"^proj\.1\.", "proj.ln.", p[len("m."):])
                out[f"{prefix}.{_official_lbn(p)}"] = v
            pending_mlp_target = f"stages.{stage}.blocks.{block}.mlp"
            block += 1
        elif any(p.startswith("m.0.") for p in params):  # residual MLP: follows its attention
            if pending_mlp_target is None:
                raise CheckpointError(f"official LeViT checkpoint: blocks.{n} is an MLP with no attention before it")
            for p, v in params.items():
                p = re.sub(r"^m\.0\.", "ln1.", p)
                p = re.sub(r"^m\.2\.", "ln2.", p)
                out[f"{pending_mlp_target}.{_official_lbn(p)}"] = v
            pending_mlp_target = None
        else:
            raise CheckpointError(f"official LeViT checkpoint: blocks.{n} has unexpected keys {sorted(params)[:4]}")
    return out


def _official_lbn(p: str) -> str:
    return re.sub(r"(^|\.)c\.", r"\1linear.", p)


def _hf_levit(sd: dict) -> dict:
    """HF Levit: per-stage ``layers`` (attn, mlp, ..., subsample, mlp) -> timm stages."""
    depths = defaultdict(int)
    for k in sd:
        m = re.match(r"levit\.encoder\.stages\.(\d+)\.layers\.(\d+)\.module\.queries_keys_values\.", k)
        if m:
            depths[int(m.group(1))] = max(depths[int(m.group(1))], int(m.group(2)) // 2 + 1)
    out = {}
    for k, v in sd.items():
        new = _hf_levit_key(k, depths)
        if new is not None:
            out[new] = v
    if "head_dist.linear.weight" not in out and "head.linear.weight" in out:
        # LevitForImageClassification has no distillation head; averaging a head with itself is the head.
        for k in [k for k in out if k.startswith("head.")]:
            out["head_dist." + k[len("head."):]] = out[k]
    return out


def _hf_levit_key(k: str, depths: dict) -> str | None:
    k = k.replace(".batch_norm.", ".bn.").replace(".convolution.", ".linear.")
    m = re.match(r"levit\.patch_embeddings\.embedding_layer_(\d)\.(.+)", k)
    if m:
        return f"stem.conv{m.group(1)}.{m.group(2)}"
    m = re.match(r"classifier(_distill)?\.(.+)", k)
    if m:
        return f"head{'_dist' if m.group(1) else ''}.{m.group(2)}"
    m = re.match(r"levit\.encoder\.stages\.(\d+)\.layers\.(\d+)\.(.+)", k)
    if not m:
        return k
    s, j, rest = int(m.group(1)), int(m.group(2)), m.group(3)
    rest = rest.replace("module.", "", 1)
    rest = (rest.replace("queries_keys_values.", "qkv.").replace("keys_values.", "kv.")
            .replace("queries.", "q.ln.").replace("projection.", "proj.ln.")
            .replace("linear_up.", "ln1.").replace("linear_down.", "ln2."))
    if j < 2 * depths[s]:
        part = "attn" if j % 2 == 0 else "mlp"
        return f"stages.{s}.blocks.{j // 2}.{part}.{rest}"
    part = "attn_downsample" if j == 2 * depths[s] else "mlp"
    return f"stages.{s + 1}.downsample.{part}.{rest}"


# --- MobileViT ---------------------------------------------------------------------------

def _timm_mobilevit(sd: dict) -> dict:
    return dict(sd)


_CVNETS_RULES = [
    (r"^encoder\.", ""),
    (r"^conv_1\.block\.", "stem."),
    (r"^conv_1x1_exp\.block\.", "final_conv."),
    (r"^classifier\.fc\.", "head.fc."),
    (r"^layer_(\d)\.", lambda m: f"stages.{int(m.group(1)) - 1}."),
    (r"\.block\.(exp_1x1|conv_3x3|red_1x1)\.block\.",
     lambda m: "." + {"exp_1x1": "conv1_1x1", "conv_3x3": "conv2_kxk", "red_1x1": "conv3_1x1"}[m.group(1)] + "."),
    (r"\.local_rep\.conv_3x3\.block\.", ".conv_kxk."),
    (r"\.local_rep\.conv_1x1\.block\.conv\.", ".conv_1x1."),
    (r"\.global_rep\.(\d+)\.pre_norm_mha\.0\.", r".transformer.\1.norm1."),
    (r"\.global_rep\.(\d+)\.pre_norm_mha\.1\.qkv_proj\.", r".transformer.\1.attn.qkv."),
    (r"\.global_rep\.(\d+)\.pre_norm_mha\.1\.out_proj\.", r".transformer.\1.attn.proj."),
    (r"\.global_rep\.(\d+)\.pre_norm_ffn\.0\.", r".transformer.\1.norm2."),
    (r"\.global_rep\.(\d+)\.pre_norm_ffn\.1\.", r".transformer.\1.mlp.fc1."),
    (r"\.global_rep\.(\d+)\.pre_norm_ffn\.4\.", r".transformer.\1.mlp.fc2."),
    (r"\.global_rep\.\d+\.(weight|bias)$", r".norm.\1"),
    (r"\.conv_proj\.block\.", ".conv_proj."),
    (r"\.fusion\.block\.", ".conv_fusion."),
]


def _cvnets_mobilevit(sd: dict) -> dict:
    out = {}
    for k, v in sd.items():
        new = k
        for pattern, repl in _CVNETS_RULES:
            new = re.sub(pattern, repl, new)
        # BatchNorm is "norm" in cvnets and "bn" in timm; the final transformer LayerNorm is "norm" in both.
        new = re.sub(r"\.(stem|conv\w*|final_conv)\.norm\.", r".\1.bn.", new)
        new = re.sub(r"^(stem|final_conv)\.norm\.", r"\1.bn.", new)
        out[new] = v
    return out


def _hf_mobilevit(sd: dict) -> dict:
    rules = [
        (r"^mobilevit\.conv_stem\.", "stem."),
        (r"^mobilevit\.conv_1x1_exp\.", "final_conv."),
        (r"^classifier\.", "head.fc."),
        (r"^mobilevit\.encoder\.layer\.([01])\.layer\.(\d+)\.", r"stages.\1.\2."),
        (r"^mobilevit\.encoder\.layer\.(\d)\.downsampling_layer\.", r"stages.\1.0."),
        (r"^mobilevit\.encoder\.layer\.(\d)\.", r"stages.\1.1."),
        (r"\.expand_1x1\.", ".conv1_1x1."), (r"\.conv_3x3\.", ".conv2_kxk."), (r"\.reduce_1x1\.", ".conv3_1x1."),
        (r"\.conv_1x1\.convolution\.", ".conv_1x1."),
        (r"\.conv_projection\.", ".conv_proj."), (r"\.fusion\.", ".conv_fusion."),
        (r"\.convolution\.", ".conv."), (r"\.normalization\.", ".bn."),
        (r"\.transformer\.layer\.(\d+)\.layernorm_before\.", r".transformer.\1.norm1."),
        (r"\.transformer\.layer\.(\d+)\.layernorm_after\.", r".transformer.\1.norm2."),
        (r"\.transformer\.layer\.(\d+)\.attention\.output\.dense\.", r".transformer.\1.attn.proj."),
        (r"\.transformer\.layer\.(\d+)\.intermediate\.dense\.", r".transformer.\1.mlp.fc1."),
        (r"\.transformer\.layer\.(\d+)\.output\.dense\.", r".transformer.\1.mlp.fc2."),
        (r"\.transformer\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.", r".transformer.\1.attn.\2."),
        (r"\.layernorm\.", ".norm."),
    ]
    renamed = _rename(sd, rules)
    return _merge_qkv(renamed)


def _merge_qkv(sd: dict) -> dict:
    """HF keeps query/key/value as three Linears; timm and cvnets use one fused qkv."""
    import torch

    out = {}
    for k, v in sd.items():
        m = re.match(r"(.+\.attn)\.(query|key|value)\.(weight|bias)$", k)
        if not m:
            out[k] = v
        elif m.group(2) == "query":
            base, kind = m.group(1), m.group(3)
            parts = [sd.get(f"{base}.{p}.{kind}") for p in ("query", "key", "value")]
            if any(p is None for p in parts):
                raise CheckpointError(f"HF MobileViT checkpoint: {base} lacks one of query/key/value {kind}")
            out[f"{base}.qkv.{kind}"] = torch.cat(parts, 0)
    return out


_CONVERTERS = {
    "timm": lambda sd: _timm_levit(sd) if any(k.startswith("stem.conv1.") for k in sd) else _timm_mobilevit(sd),
    "timm-conv": _timm_conv_levit,
    "official": _official_levit,
    "cvnets": _cvnets_mobilevit,
    "hf": lambda sd: _hf_levit(sd) if any(k.startswith("levit.") for k in sd) else _hf_mobilevit(sd),
}

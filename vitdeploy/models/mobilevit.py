"""MobileViT v1 (Mehta & Rastegari, 2022) in inference form.

Numerically the same network as apple/ml-cvnets, timm's ``mobilevit_*`` and HF
transformers' ``MobileViT*``; state-dict names are timm's. Every tensor stays at rank
<= 4: the attention splits q/k/v without timm's rank-5 reshape, and unfold/fold use
rank-4 reshapes and transposes (Core ML rejects rank > 5; mobile delegates want <= 4).

Checkpoint layouts (:func:`layout_of`, :func:`to_canonical`): ``timm`` (timm ``mobilevit_*``), ``cvnets``
(apple/ml-cvnets), ``hf`` (HF ``MobileViT*``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError
from .layers import ConvNormAct


@dataclass(frozen=True)
class MobileVitConfig:
    channels: tuple[int, ...]  # output channels of the five stages
    ir_depth: tuple[int, int]  # inverted-residual blocks in stages 0 and 1
    transformer_dims: tuple[int, int, int]
    transformer_depths: tuple[int, int, int]
    expansion: float
    stem_chs: int = 16
    num_features: int = 640
    num_heads: int = 4
    mlp_ratio: float = 2.0
    patch_size: int = 2
    img_size: int = 256
    num_classes: int = 1000


CONFIGS = {
    "mobilevit_xxs": MobileVitConfig((16, 24, 48, 64, 80), (1, 3), (64, 80, 96), (2, 4, 3), 2.0, num_features=320),
    "mobilevit_xs": MobileVitConfig((32, 48, 64, 80, 96), (1, 3), (96, 120, 144), (2, 4, 3), 4.0, num_features=384),
    "mobilevit_s": MobileVitConfig((32, 64, 96, 128, 160), (1, 3), (144, 192, 240), (2, 4, 3), 4.0, num_features=640),
}


class InvertedResidual(nn.Module):
    """1x1 expand (SiLU) -> 3x3 depthwise (SiLU) -> 1x1 project; residual when shapes allow."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, expansion: float):
        super().__init__()
        mid = _make_divisible(in_chs * expansion)
        self.conv1_1x1 = ConvNormAct(in_chs, mid, 1)
        self.conv2_kxk = ConvNormAct(mid, mid, 3, stride, groups=mid)
        self.conv3_1x1 = ConvNormAct(mid, out_chs, 1, act=False)
        self.has_shortcut = stride == 1 and in_chs == out_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3_1x1(self.conv2_kxk(self.conv1_1x1(x)))
        return x + y if self.has_shortcut else y


def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class MultiHeadAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q = q.reshape(B, N, self.num_heads, self.head_dim).transpose(1, 2)
        k = k.reshape(B, N, self.num_heads, self.head_dim).permute(0, 2, 3, 1)
        v = v.reshape(B, N, self.num_heads, self.head_dim).transpose(1, 2)
        attn = ((q * self.scale) @ k).softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)

    def query_projection(self) -> tuple[nn.Linear, list[int]]:
        """The Linear computing the queries and its query rows (the first third of qkv)."""
        return self.qkv, list(range(self.num_heads * self.head_dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.SiLU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MobileVitBlock(nn.Module):
    """Local conv representation -> transformer over 2x2 patches -> fuse with the input."""

    def __init__(self, chs: int, transformer_dim: int, depth: int, num_heads: int, mlp_ratio: float, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.conv_kxk = ConvNormAct(chs, chs, 3)
        self.conv_1x1 = nn.Conv2d(chs, transformer_dim, 1, bias=False)
        self.transformer = nn.Sequential(*[TransformerBlock(transformer_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(transformer_dim)
        self.conv_proj = ConvNormAct(transformer_dim, chs, 1)
        self.conv_fusion = ConvNormAct(2 * chs, chs, 3)

    def unfold(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B * P, N, C) with P pixels per patch and N patches."""
        B, C, H, W = x.shape
        p = self.patch_size
        nh, nw = H // p, W // p
        x = x.reshape(B * C * nh, p, nw, p).transpose(1, 2)
        x = x.reshape(B, C, nh * nw, p * p).transpose(1, 3)
        return x.reshape(B * p * p, nh * nw, C)

    def fold(self, x: torch.Tensor, B: int, C: int, H: int, W: int) -> torch.Tensor:
        p = self.patch_size
        nh, nw = H // p, W // p
        x = x.reshape(B, p * p, nh * nw, C).transpose(1, 3)
        x = x.reshape(B * C * nh, nw, p, p).transpose(1, 2)
        return x.reshape(B, C, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.conv_1x1(self.conv_kxk(x))
        B, C, H, W = x.shape
        p = self.patch_size
        new_h, new_w = math.ceil(H / p) * p, math.ceil(W / p) * p
        resized = (new_h, new_w) != (H, W)
        if resized:
            x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False)
        x = self.norm(self.transformer(self.unfold(x)))
        x = self.fold(x, B, C, new_h, new_w)
        if resized:
            x = F.interpolate(x, size=(H, W), mode="bilinear", align_corners=False)
        x = self.conv_proj(x)
        return self.conv_fusion(torch.cat((shortcut, x), dim=1))


class MobileVit(nn.Module):
    """MobileViT v1 classifier: NCHW images -> (B, num_classes) logits."""

    family = "mobilevit"

    def __init__(self, cfg: MobileVitConfig):
        super().__init__()
        self.cfg = cfg
        self.stem = ConvNormAct(3, cfg.stem_chs, 3, 2)
        stages = []
        in_chs = cfg.stem_chs
        for i, out_chs in enumerate(cfg.channels):
            if i < 2:
                blocks = [InvertedResidual(in_chs if j == 0 else out_chs, out_chs, (1 if i == 0 else 2) if j == 0 else 1,
                                           cfg.expansion) for j in range(cfg.ir_depth[i])]
            else:
                t = i - 2
                blocks = [InvertedResidual(in_chs, out_chs, 2, cfg.expansion),
                          MobileVitBlock(out_chs, cfg.transformer_dims[t], cfg.transformer_depths[t], cfg.num_heads,
                                         cfg.mlp_ratio, cfg.patch_size)]
            stages.append(nn.Sequential(*blocks))
            in_chs = out_chs
        self.stages = nn.Sequential(*stages)
        self.final_conv = ConvNormAct(in_chs, cfg.num_features, 1)
        self.num_features = cfg.num_features
        self.head = nn.Module()
        self.head.fc = nn.Linear(cfg.num_features, cfg.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_conv(self.stages(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x).mean((2, 3))
        return self.head.fc(x)


# ----------------------------------------------------------------------------- what the Family row calls


def build(cfg: MobileVitConfig) -> MobileVit:
    return MobileVit(cfg)


def state_dict_signature(sd: dict) -> dict:
    """The distinguishing config of a canonical (timm-named) MobileViT state dict, from its keys and shapes."""
    try:
        channels = [int(sd[f"stages.{s}.0.conv3_1x1.conv.weight"].shape[0]) for s in range(5)]
        dims = [int(sd[f"stages.{s}.1.conv_1x1.weight"].shape[0]) for s in (2, 3, 4)]
        features = int(sd["final_conv.conv.weight"].shape[0])
    except KeyError as e:
        raise CheckpointError(f"MobileViT checkpoint lacks {e.args[0]} (after mapping to timm names)") from None
    depths = [len({m.group(1) for k in sd if (m := re.match(rf"stages\.{s}\.1\.transformer\.(\d+)\.", k))})
              for s in (2, 3, 4)]
    return {"channels": channels, "transformer_dims": dims, "transformer_depths": depths, "num_features": features}


def block_names(model: MobileVit) -> list[str]:
    """Stem, every inverted-residual and MobileViT block, and the final 1x1 conv, in execution order."""
    out = ["stem"]
    for i, stage in enumerate(model.stages):
        out += [f"stages.{i}.{j}" for j in range(len(stage))]
    return out + ["final_conv"]


def classifier_heads(model: MobileVit) -> list:
    return [(None, model.head.fc)]


def pool(features: torch.Tensor) -> torch.Tensor:
    return features.mean((2, 3))  # feature map (B, C, H, W)


# ----------------------------------------------------------------------------- checkpoint layouts
# Every mapping is by name and structure, never by position: a safetensors file stores keys sorted.


def layout_of(sd: dict) -> str | None:
    """Which source wrote a MobileViT state dict (a layout of the Family row), from its key names; None: not
    MobileViT."""
    has = lambda prefix: any(k.startswith(prefix) for k in sd)  # noqa: E731
    if has("mobilevit.conv_stem."):
        return "hf"
    if has("stem.conv.") and has("stages.0.0.conv1_1x1."):
        return "timm"
    if has("conv_1.block.conv.") or has("encoder.conv_1.block.conv."):
        return "cvnets"
    return None


def to_canonical(sd: dict, layout: str) -> dict:
    """A state dict in ``layout`` renamed (HF: query/key/value merged into qkv) into timm's names."""
    return _TO_CANONICAL[layout](sd)


def _rename(sd: dict, rules: list[tuple[str, str]]) -> dict:
    out = {}
    for key, value in sd.items():
        new = key
        for pattern, repl in rules:
            new = re.sub(pattern, repl, new)
        out[new] = value
    return out


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


_TO_CANONICAL = {"timm": _timm_mobilevit, "cvnets": _cvnets_mobilevit, "hf": _hf_mobilevit}

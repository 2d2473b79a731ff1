"""LeViT (Graham et al., 2021) in inference form.

Numerically the same network as facebookresearch/LeViT, timm's ``levit_*`` and HF
transformers' ``Levit*``; state-dict names are timm's (linear mode). Differences that
matter for deployment:

* the attention bias table is expanded to a dense (heads, Nq, Nk) buffer whenever the
  model enters eval mode or loads weights, so an exported graph holds a constant and
  no gather;
* distillation: inference returns ``(head(x) + head_dist(x)) / 2``, like all three sources.

Checkpoint layouts (:func:`layout_of`, :func:`to_canonical`): ``timm`` (timm ``levit_*``), ``timm-conv``
(timm ``levit_conv_*``: 1x1 conv weights), ``official`` (facebookresearch/LeViT), ``hf`` (HF ``Levit*``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import CheckpointError
from .layers import ConvNorm, LinearNorm, NormLinear


@dataclass(frozen=True)
class LevitConfig:
    embed_dim: tuple[int, int, int]
    key_dim: int
    num_heads: tuple[int, int, int]
    depth: tuple[int, int, int]
    img_size: int = 224
    attn_ratio: float = 2.0
    mlp_ratio: float = 2.0
    num_classes: int = 1000


CONFIGS = {
    "levit_128s": LevitConfig((128, 256, 384), 16, (4, 6, 8), (2, 3, 4)),
    "levit_128": LevitConfig((128, 256, 384), 16, (4, 8, 12), (4, 4, 4)),
    "levit_192": LevitConfig((192, 288, 384), 32, (3, 5, 6), (4, 4, 4)),
    "levit_256": LevitConfig((256, 384, 512), 32, (4, 6, 8), (4, 4, 4)),
    "levit_384": LevitConfig((384, 512, 768), 32, (6, 9, 12), (4, 4, 4)),
}


def relative_position_index(resolution: int, stride: int = 1) -> torch.Tensor:
    """(Nq, Nk) index into a per-head bias row: |dy| * resolution + |dx| between query and key positions."""
    k = torch.arange(resolution)
    q = torch.arange(0, resolution, stride)
    k_pos = torch.stack(torch.meshgrid(k, k, indexing="ij")).flatten(1)
    q_pos = torch.stack(torch.meshgrid(q, q, indexing="ij")).flatten(1)
    rel = (q_pos[:, :, None] - k_pos[:, None, :]).abs()
    return rel[0] * resolution + rel[1]


class _BiasedAttentionBase(nn.Module):
    """Holds the learnt per-head bias rows and their dense expansion for inference."""

    def _init_bias(self, num_heads: int, resolution: int, stride: int) -> None:
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, resolution * resolution))
        idx = relative_position_index(resolution, stride)
        self.register_buffer("attention_bias_idxs", idx, persistent=False)
        self.register_buffer("attention_bias", torch.zeros(num_heads, *idx.shape), persistent=False)
        self.register_load_state_dict_post_hook(lambda module, _keys: module.refresh_attention_bias())

    @torch.no_grad()
    def refresh_attention_bias(self) -> None:
        """Expand the bias rows into the dense table used at inference (call after editing weights)."""
        self.attention_bias.copy_(self.attention_biases[:, self.attention_bias_idxs])

    def train(self, mode: bool = True):
        super().train(mode)
        if not mode:
            self.refresh_attention_bias()
        return self

    def _bias(self) -> torch.Tensor:
        if self.training:  # keeps gradients flowing into attention_biases
            return self.attention_biases[:, self.attention_bias_idxs]
        return self.attention_bias


class Attention(_BiasedAttentionBase):
    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: float, resolution: int):
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.val_dim = int(attn_ratio * key_dim)
        self.val_attn_dim = self.val_dim * num_heads
        self.scale = key_dim ** -0.5
        self.qkv = LinearNorm(dim, self.val_attn_dim + 2 * key_dim * num_heads)
        self.proj = nn.Sequential()
        self.proj.add_module("act", nn.Hardswish())
        self.proj.add_module("ln", LinearNorm(self.val_attn_dim, dim))
        self._init_bias(num_heads, resolution, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        q, k, v = self.qkv(x).view(B, N, self.num_heads, -1).split([self.key_dim, self.key_dim, self.val_dim], dim=3)
        q = q.permute(0, 2, 1, 3)
        k = k.permute(0, 2, 3, 1)
        v = v.permute(0, 2, 1, 3)
        attn = (q @ k) * self.scale + self._bias()
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, N, self.val_attn_dim)
        return self.proj(x)

    def query_projection(self) -> tuple[nn.Linear, list[int]]:
        """The Linear computing the queries and its query rows (the attention-scale fold multiplies them):
        per head, the first ``key_dim`` of its ``2 * key_dim + val_dim`` rows."""
        per_head = 2 * self.key_dim + self.val_dim
        return self.qkv.linear, [h * per_head + i for h in range(self.num_heads) for i in range(self.key_dim)]


class Subsample(nn.Module):
    """Keep every ``stride``-th token in both spatial directions."""

    def __init__(self, stride: int, resolution: int):
        super().__init__()
        self.stride = stride
        self.resolution = resolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, C = x.shape
        x = x.view(B, self.resolution, self.resolution, C)[:, :: self.stride, :: self.stride]
        return x.reshape(B, -1, C)


class AttentionDownsample(_BiasedAttentionBase):
    def __init__(self, in_dim: int, out_dim: int, key_dim: int, num_heads: int, attn_ratio: float,
                 resolution: int, stride: int = 2):
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.val_dim = int(attn_ratio * key_dim)
        self.val_attn_dim = self.val_dim * num_heads
        self.scale = key_dim ** -0.5
        self.kv = LinearNorm(in_dim, self.val_attn_dim + key_dim * num_heads)
        self.q = nn.Sequential()
        self.q.add_module("down", Subsample(stride, resolution))
        self.q.add_module("ln", LinearNorm(in_dim, key_dim * num_heads))
        self.proj = nn.Sequential()
        self.proj.add_module("act", nn.Hardswish())
        self.proj.add_module("ln", LinearNorm(self.val_attn_dim, out_dim))
        self._init_bias(num_heads, resolution, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        k, v = self.kv(x).view(B, N, self.num_heads, -1).split([self.key_dim, self.val_dim], dim=3)
        k = k.permute(0, 2, 3, 1)
        v = v.permute(0, 2, 1, 3)
        q = self.q(x).view(B, -1, self.num_heads, self.key_dim).permute(0, 2, 1, 3)
        attn = (q @ k) * self.scale + self._bias()
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, -1, self.val_attn_dim)
        return self.proj(x)

    def query_projection(self) -> tuple[nn.Linear, list[int]]:
        """The Linear computing the queries: every row is a query row."""
        layer = self.q.ln.linear
        return layer, list(range(layer.out_features))


class LevitMlp(nn.Module):
    def __init__(self, dim: int, hidden: int, out_dim: int | None = None):
        super().__init__()
        self.ln1 = LinearNorm(dim, hidden)
        self.act = nn.Hardswish()
        self.ln2 = LinearNorm(hidden, out_dim or dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln2(self.act(self.ln1(x)))


class LevitBlock(nn.Module):
    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: float, mlp_ratio: float, resolution: int):
        super().__init__()
        self.attn = Attention(dim, key_dim, num_heads, attn_ratio, resolution)
        self.mlp = LevitMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class LevitDownsample(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, key_dim: int, resolution: int):
        super().__init__()
        self.attn_downsample = AttentionDownsample(in_dim, out_dim, key_dim, in_dim // key_dim, 4.0, resolution)
        self.mlp = LevitMlp(out_dim, out_dim * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn_downsample(x)
        return x + self.mlp(x)


class LevitStage(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, key_dim: int, depth: int, num_heads: int, attn_ratio: float,
                 mlp_ratio: float, resolution: int, downsample: bool):
        super().__init__()
        if downsample:
            self.downsample = LevitDownsample(in_dim, out_dim, key_dim, resolution)
            resolution = (resolution - 1) // 2 + 1
        else:
            self.downsample = nn.Identity()
        self.resolution = resolution
        self.blocks = nn.Sequential(*[
            LevitBlock(out_dim, key_dim, num_heads, attn_ratio, mlp_ratio, resolution) for _ in range(depth)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class Stem16(nn.Module):
    """Four 3x3 stride-2 convolutions with hardswish between them: 224 -> 14x14 tokens."""

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__()
        c = out_chs
        self.conv1 = ConvNorm(in_chs, c // 8, 3, 2, 1)
        self.act1 = nn.Hardswish()
        self.conv2 = ConvNorm(c // 8, c // 4, 3, 2, 1)
        self.act2 = nn.Hardswish()
        self.conv3 = ConvNorm(c // 4, c // 2, 3, 2, 1)
        self.act3 = nn.Hardswish()
        self.conv4 = ConvNorm(c // 2, c, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.conv1(x))
        x = self.act2(self.conv2(x))
        x = self.act3(self.conv3(x))
        return self.conv4(x)


class Levit(nn.Module):
    """LeViT classifier with distillation head: NCHW images -> (B, num_classes) logits."""

    family = "levit"

    def __init__(self, cfg: LevitConfig):
        super().__init__()
        self.cfg = cfg
        dims = cfg.embed_dim
        self.stem = Stem16(3, dims[0])
        resolution = cfg.img_size // 16
        stages = []
        in_dim = dims[0]
        for i in range(3):
            stage = LevitStage(in_dim, dims[i], cfg.key_dim, cfg.depth[i], cfg.num_heads[i], cfg.attn_ratio,
                               cfg.mlp_ratio, resolution, downsample=i > 0)
            resolution = stage.resolution
            in_dim = dims[i]
            stages.append(stage)
        self.stages = nn.Sequential(*stages)
        self.num_features = dims[-1]
        self.head = NormLinear(dims[-1], cfg.num_classes)
        self.head_dist = NormLinear(dims[-1], cfg.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x).flatten(2).transpose(1, 2)
        return self.stages(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x).mean(1)
        return (self.head(x) + self.head_dist(x)) / 2


# ----------------------------------------------------------------------------- what the Family row calls


def build(cfg: LevitConfig) -> Levit:
    return Levit(cfg)


def state_dict_signature(sd: dict) -> dict:
    """The distinguishing config of a canonical (timm-named) LeViT state dict, from its keys and shapes."""
    def count(pattern: str) -> int:
        return len({m.group(1) for k in sd if (m := re.match(pattern, k))})

    try:
        dims = [int(sd[f"stages.{s}.blocks.0.attn.proj.ln.linear.weight"].shape[0]) for s in range(3)]
        heads = [int(sd[f"stages.{s}.blocks.0.attn.attention_biases"].shape[0]) for s in range(3)]
        qkv = sd["stages.0.blocks.0.attn.qkv.linear.weight"].shape[0]
    except KeyError as e:
        raise CheckpointError(f"LeViT checkpoint lacks {e.args[0]} (after mapping to timm names)") from None
    # qkv width = heads * (2 * key_dim + attn_ratio(2) * key_dim)
    key_dim = int(qkv) // (heads[0] * 4)
    depth = [count(rf"stages\.{s}\.blocks\.(\d+)\.") for s in range(3)]
    return {"embed_dim": dims, "key_dim": key_dim, "num_heads": heads, "depth": depth}


def block_names(model: Levit) -> list[str]:
    """Stem, each stage's downsample (where it has one) and every attention/MLP block, in execution order."""
    out = ["stem"]
    for i, stage in enumerate(model.stages):
        if not isinstance(stage.downsample, nn.Identity):
            out.append(f"stages.{i}.downsample")
        out += [f"stages.{i}.blocks.{j}" for j in range(len(stage.blocks))]
    return out


def classifier_heads(model: Levit) -> list:
    """The class head and the distillation head (BatchNorm, Linear): the logits are their mean."""
    return [(model.head.bn, model.head.linear), (model.head_dist.bn, model.head_dist.linear)]


def pool(features: torch.Tensor) -> torch.Tensor:
    return features.mean(1)  # tokens (B, N, C)


# ----------------------------------------------------------------------------- checkpoint layouts
# Every mapping is by name and structure, never by position: a safetensors file stores keys sorted.


def layout_of(sd: dict) -> str | None:
    """Which source wrote a LeViT state dict (a layout of the Family row), from its key names; None: not LeViT."""
    has = lambda prefix: any(k.startswith(prefix) for k in sd)  # noqa: E731
    if has("levit.patch_embeddings."):
        return "hf"
    if has("patch_embed.0.c.") and has("blocks."):
        return "official"
    if has("stem.conv1.linear.") and has("stages."):
        qkv = next((v for k, v in sd.items() if k.endswith("attn.qkv.linear.weight")), None)
        return "timm-conv" if qkv is not None and qkv.ndim == 4 else "timm"
    return None


def to_canonical(sd: dict, layout: str) -> dict:
    """A state dict in ``layout`` renamed (and where needed reshaped) into timm's names."""
    return _TO_CANONICAL[layout](sd)


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


_TO_CANONICAL = {"timm": _timm_levit, "timm-conv": _timm_conv_levit, "official": _official_levit, "hf": _hf_levit}

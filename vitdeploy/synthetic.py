"""Seeded stand-in models: every variant with deterministic random weights.

No pretrained weights can be downloaded here, so demos and tests use these. BatchNorm
statistics and attention biases are randomised too (fresh modules have mean 0, var 1
and zero biases, which would let a wrong fold or a missing bias go unnoticed).
"""

from __future__ import annotations

from pathlib import Path


def seeded_model(variant: str, seed: int = 0, num_classes: int = 1000):
    """An inference-form model of ``variant`` with deterministic, non-trivial random weights (eval mode)."""
    import torch

    from .models import create_model

    torch.manual_seed(seed)
    model = create_model(variant, num_classes=num_classes)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.weight.copy_(torch.rand(module.num_features, generator=g) * 0.5 + 0.75)
                module.bias.copy_(torch.randn(module.num_features, generator=g) * 0.1)
        for name, p in model.named_parameters():
            if name.endswith("attention_biases"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    images = _calibration_images(model.variant)
    _set_batchnorm_statistics(model, images)
    _make_head_discriminative(model, images, g)
    return model.eval()


def _calibration_images(variant: str):
    import torch

    from .models import family_of, variant_info
    from .sample_images import natural_images

    info = variant_info(variant)
    fam = family_of(variant)
    pre = fam.preprocessing(fam.canonical_layout)  # a stand-in's weights carry the model's own (canonical) names
    return torch.from_numpy(pre.normalize(natural_images(8, info.img_size, seed=1234)))


def _set_batchnorm_statistics(model, images) -> None:
    """Running statistics measured on real photos, as training leaves them.

    With default initialisation activations shrink layer after layer and the output
    stops depending on the input; data-derived statistics keep every layer's
    activations near unit scale, so errors anywhere in the graph reach the logits.
    """
    import torch

    from .models import family_of

    fam = family_of(model)
    named = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    bns = [m for _, m in named]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batch
    model.train()
    with torch.no_grad():
        model(images)
        for name, bn in named:
            bn.momentum = 0.1
            # A floor on the variance: a branch that is nearly constant over the photos
            # (uniform attention) must not get a huge gain, or the network turns chaotic
            # (a 1e-7 input change moving the logits by percents), which no trained model is.
            if fam.seeded_variance_floor:
                bn.running_var.add_(bn.running_var.median())
            if fam.residual_branch_ends and name.endswith(fam.residual_branch_ends):
                bn.weight.mul_(0.3)  # trained residual branches are small (zero-init BN)
    model.eval()


def _make_head_discriminative(model, images, g) -> None:
    """Normalise the classifier's input with feature statistics of real photos (logit std about 2).

    The variance gets a floor of (0.1 * mean)^2: pooled features of a random network
    vary little between images, and a head BatchNorm whose mean is hundreds of standard
    deviations loses float32 precision once folded, unlike any trained model's.
    """
    import torch

    from .models import family_of

    heads = family_of(model).classifier_heads(model)
    with torch.no_grad():
        feats = family_of(model).pool(model.forward_features(images))
        mu = feats.mean(0)
        var = feats.var(0) + (0.1 * mu) ** 2 + 1e-6
        d = feats.shape[1]
        for bn, linear in heads:
            if bn is not None:  # the head normalises in its own BatchNorm
                bn.running_mean.copy_(mu)
                bn.running_var.copy_(var)
                bn.weight.fill_(1.0)
                bn.bias.zero_()
                linear.weight.copy_(torch.randn(linear.weight.shape, generator=g) / d ** 0.5)
                linear.bias.zero_()
            else:  # no BatchNorm: the normalisation goes into the Linear
                w = torch.randn(linear.weight.shape, generator=g) / d ** 0.5 / var.sqrt()
                linear.weight.copy_(w)
                linear.bias.copy_(-(w @ mu))
        gain = 2.0 / model(images).std()
        for _, layer in heads:
            layer.weight.mul_(gain)
            layer.bias.mul_(gain)


def write_seeded_checkpoint(variant: str, path: str | Path, seed: int = 0) -> Path:
    """Save :func:`seeded_model` as a timm-layout checkpoint (.safetensors or .pth by suffix)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.contiguous() for k, v in seeded_model(variant, seed).state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
    else:
        torch.save(sd, path)
    return path

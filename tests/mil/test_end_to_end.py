"""End-to-end (slow): torch -> Core ML -> the MIL interpreter, on HF LeViT / MobileViT and small convnets."""

from __future__ import annotations

import numpy as np
import pytest

ct = pytest.importorskip("coremltools")
torch = pytest.importorskip("torch")

from vitdeploy.errors import VitdeployError  # noqa: E402
from vitdeploy.runtimes.mil import MILInterpreter  # noqa: E402

def _random_batchnorm_stats(model):
    """Seeded random BatchNorm affine parameters and running stats around 1/0."""
    gen = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.weight.data.copy_(torch.rand(module.weight.shape, generator=gen) + 0.5)
            module.bias.data.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=gen) * 0.1)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) + 0.5)
    return model.eval()


def _calibrated_batchnorm_stats(model, size):
    """Random BatchNorm affine parameters, running stats estimated from random images.

    MobileViT's conv stack has no residual path around most BatchNorms; with HF's init
    (BatchNorm weights ~ N(0, 0.02)) or arbitrary stats its activations vanish towards
    denormals or explode, which would make a parity check vacuous.
    """
    gen = torch.Generator().manual_seed(1)
    _random_batchnorm_stats(model)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn((4, 3, size, size), generator=gen))
    return model.eval()


def _levit_128s():
    from transformers import LevitConfig, LevitForImageClassificationWithTeacher

    torch.manual_seed(0)
    config = LevitConfig(
        hidden_sizes=[128, 256, 384], num_attention_heads=[4, 6, 8], depths=[2, 3, 4], key_dim=[16, 16, 16], num_labels=1000
    )
    # Calibrated stats make this random LeViT ill-conditioned (torch fp32 vs fp64 differ by 3e-3).
    return _random_batchnorm_stats(LevitForImageClassificationWithTeacher(config)), 224


def _mobilevit_xxs():
    from transformers import MobileViTConfig, MobileViTForImageClassification

    torch.manual_seed(0)
    config = MobileViTConfig(
        hidden_sizes=[64, 80, 96], neck_hidden_sizes=[16, 16, 24, 48, 64, 80, 320], expand_ratio=2.0, num_labels=1000
    )
    return _calibrated_batchnorm_stats(MobileViTForImageClassification(config), 256), 256


def _logits_module(model):
    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            return self.model(pixel_values).logits

    return Logits().eval()


def _cosine(a, b):
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def _w8(mlmodel):
    import coremltools.optimize.coreml as cto

    config = cto.OptimizationConfig(
        global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel")
    )
    return cto.linear_quantize_weights(mlmodel, config)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["levit", "mobilevit"])
def test_end_to_end_hf_models(tmp_path, family):
    model, size = _levit_128s() if family == "levit" else _mobilevit_xxs()
    module = _logits_module(model)
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((1, 3, size, size)).astype(np.float32))
    with torch.no_grad():
        ref = module(x).numpy()
    assert ref.std() > 0.01, "degenerate random model: the parity check would be vacuous"
    exported = torch.export.export(module, (x,)).run_decompositions({})

    def convert(precision, target):
        return ct.convert(
            exported,
            inputs=[ct.TensorType(name="pixel_values", shape=x.shape)],
            convert_to="mlprogram",
            minimum_deployment_target=target,
            compute_precision=precision,
        )

    fp32 = convert(ct.precision.FLOAT32, ct.target.iOS16)
    # w8 on iOS17 stores constexpr_affine_dequantize, on iOS18 constexpr_blockwise_shift_scale: cover both.
    fp16_target = ct.target.iOS17 if family == "levit" else ct.target.iOS18
    dequant_op = "constexpr_affine_dequantize" if family == "levit" else "constexpr_blockwise_shift_scale"
    fp16 = convert(ct.precision.FLOAT16, fp16_target)
    results = {}
    for name, mlmodel in [("fp32", fp32), ("fp16", fp16), ("w8", _w8(fp16))]:
        path = tmp_path / f"{family}_{name}.mlpackage"
        mlmodel.save(str(path))
        interp = MILInterpreter.load(path)
        out = interp.predict({"pixel_values": x.numpy()})
        results[name] = (out[interp.output_names[0]].astype(np.float32), interp)

    fp32_out = results["fp32"][0]
    max_rel = np.abs(fp32_out - ref).max() / np.abs(ref).max()
    assert max_rel < 1e-4, max_rel
    assert _cosine(results["fp16"][0], ref) >= 0.999
    assert _cosine(results["w8"][0], ref) >= 0.999
    assert dequant_op in results["w8"][1].op_counts()
    assert np.abs(results["fp16"][0] - fp32_out).max() > 1e-5, "fp16 emulation should leave a trace"
    assert not np.array_equal(results["fp16"][0], results["w8"][0])
    print(
        f"{family}: fp32 max rel {max_rel:.2e}, fp16 1-cosine {1 - _cosine(results['fp16'][0], ref):.2e}, "
        f"w8 1-cosine {1 - _cosine(results['w8'][0], ref):.2e}"
    )


@pytest.mark.slow
def test_mobilevit_at_224_resizes_patches_with_upsample_bilinear(tmp_path):
    """At 224 px the 7x7 feature map is not a multiple of the patch size: HF interpolates."""
    model, _ = _mobilevit_xxs()
    module = _logits_module(model)
    x = torch.from_numpy(np.random.default_rng(5).standard_normal((1, 3, 224, 224)).astype(np.float32))
    with torch.no_grad():
        ref = module(x).numpy()
    mlmodel = ct.convert(
        torch.export.export(module, (x,)).run_decompositions({}),
        inputs=[ct.TensorType(name="pixel_values", shape=x.shape)],
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS17,
        compute_precision=ct.precision.FLOAT32,
    )
    path = tmp_path / "mobilevit224.mlpackage"
    mlmodel.save(str(path))
    interp = MILInterpreter.load(path)
    assert interp.op_counts().get("upsample_bilinear", 0) >= 2
    out = interp.predict({"pixel_values": x.numpy()})[interp.output_names[0]]
    assert np.abs(out - ref).max() / np.abs(ref).max() < 1e-4


class _SmallConvNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.head = torch.nn.Linear(8, 5)
        with torch.no_grad():
            self.head.weight.mul_(20.0)  # logits of order 1, so a channel swap is far outside fp16 noise

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["RGB", "BGR"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_image_input_applies_layout_scale_and_bias(tmp_path, layout, precision):
    module = _SmallConvNet().eval()
    scale, bias = 1 / 58.0, [-2.1, -1.9, -1.7]  # bias is given in the model's channel order
    example = torch.zeros(1, 3, 20, 24)
    exported = torch.export.export(module, (example,)).run_decompositions({})
    mlmodel = ct.convert(
        exported,
        inputs=[ct.ImageType(name="image", shape=example.shape, scale=scale, bias=bias, color_layout=layout)],
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS17,
        compute_precision=ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16,
    )
    path = tmp_path / "image.mlpackage"
    mlmodel.save(str(path))
    interp = MILInterpreter.load(path)

    spec = interp.input_specs["image"]
    assert spec["kind"] == "image" and spec["color_layout"] == layout
    assert spec["height"] == 20 and spec["width"] == 24
    assert spec["scale"] == pytest.approx(scale) and spec["bias"] == pytest.approx(bias)

    rgb = np.random.default_rng(4).integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
    channels = rgb[..., ::-1] if layout == "BGR" else rgb
    manual = channels.transpose(2, 0, 1)[None].astype(np.float32) * np.float32(scale)
    manual = manual + np.array(bias, dtype=np.float32).reshape(1, 3, 1, 1)
    with torch.no_grad():
        ref = module(torch.from_numpy(manual)).numpy()
        swapped = module(torch.from_numpy(np.ascontiguousarray(manual[:, ::-1]))).numpy()

    out = interp.predict({"image": rgb})[interp.output_names[0]].astype(np.float32)
    tol = 1e-5 if precision == "fp32" else 1e-2
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)
    assert np.abs(ref - swapped).max() > 0.2, "channel order must matter for this check to mean anything"
    batched = interp.predict({"image": rgb[None].astype(np.float32)})[interp.output_names[0]]
    np.testing.assert_array_equal(batched, interp.predict({"image": rgb})[interp.output_names[0]])
    with pytest.raises(VitdeployError, match="20x24"):
        interp.predict({"image": rgb[:10]})
    with pytest.raises(VitdeployError, match="HxWx3"):
        interp.predict({"image": rgb[..., :2]})


@pytest.mark.slow
def test_corrupted_weight_blob_changes_output(tmp_path):
    module = _SmallConvNet().eval()
    x = torch.randn(1, 3, 20, 24)
    exported = torch.export.export(module, (x,)).run_decompositions({})
    mlmodel = ct.convert(
        exported,
        inputs=[ct.TensorType(name="x", shape=x.shape)],
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS17,
        compute_precision=ct.precision.FLOAT32,
    )
    path = tmp_path / "blob.mlpackage"
    mlmodel.save(str(path))
    before = MILInterpreter.load(path).predict({"x": x.numpy()})
    name = next(iter(before))
    np.testing.assert_allclose(before[name], module(x).detach().numpy(), rtol=1e-5, atol=1e-5)

    blob = path / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    data = bytearray(blob.read_bytes())
    weight_bytes = module.conv.weight.detach().numpy().astype(np.float32).tobytes()
    start = bytes(data).find(weight_bytes)
    assert start >= 0, "conv weight not stored in weight.bin"
    for i in range(start, start + 40 * 4, 4):
        data[i + 3] ^= 0x80  # flip the sign bit of 40 float32 weights
    blob.write_bytes(bytes(data))

    after = MILInterpreter.load(path).predict({"x": x.numpy()})
    assert np.abs(after[name] - before[name]).max() > 1e-2

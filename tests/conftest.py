"""Shared fixtures, the slow marker, and the alternate kernel paths.

``VITDEPLOY_TEST_KERNELS=alternate make test`` (``make test-alt-kernels``) runs the suite on other float
kernels than this CPU picks by default, so a tolerance tuned to one machine's accumulation order fails here
instead of on a user's machine (issue 31: four tests failed on an Intel Xeon without AVX-512):
- ``ONEDNN_MAX_CPU_ISA=AVX2`` and ``ATEN_CPU_CAPABILITY=avx2``: oneDNN and ATen without AVX-512 (set here,
  before torch is imported, so subprocesses inherit them too);
- ``torch.backends.mkldnn.enabled = False``: ATen's own convolutions instead of oneDNN's;
- TFLite without XNNPACK (``OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES``): the builtin kernels.
Tests that check XNNPACK's delegation itself skip in that mode (marked ``needs_default_kernels``).
"""

import os

ALTERNATE_KERNELS = os.environ.get("VITDEPLOY_TEST_KERNELS") == "alternate"
if ALTERNATE_KERNELS:
    os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
    os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")

import pytest

from fuzz_seeds import seeds  # noqa: F401 -- session fixture: valid inputs for every reader (fuzz, CLI walk)


def _force_alternate_kernels() -> None:
    import torch
    from ai_edge_litert import interpreter as litert

    torch.backends.mkldnn.enabled = False
    default_interpreter = litert.Interpreter

    class BuiltinKernelsInterpreter(default_interpreter):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("experimental_op_resolver_type", litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            super().__init__(*args, **kwargs)

    litert.Interpreter = BuiltinKernelsInterpreter  # vitdeploy imports it lazily, inside functions


if ALTERNATE_KERNELS:
    _force_alternate_kernels()


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if ALTERNATE_KERNELS:
        skip_alt = pytest.mark.skip(reason="checks XNNPACK's delegation; VITDEPLOY_TEST_KERNELS=alternate turns it off")
        for item in items:
            if "needs_default_kernels" in item.keywords:
                item.add_marker(skip_alt)
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow (make test does)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory):
    """A small conv + linear classifier converted with litert-torch (about 10 s, once per session): the device
    and farm tests' model."""
    torch = pytest.importorskip("torch")
    litert_torch = pytest.importorskip("litert_torch")
    from fuzz_seeds import tiny_torch_model

    path = tmp_path_factory.mktemp("model") / "tiny.tflite"
    litert_torch.convert(tiny_torch_model(), (torch.randn(1, 3, 16, 16),)).export(str(path))
    return path


@pytest.fixture(scope="session")
def transformer_tflite(tmp_path_factory) -> bytes:
    """One MobileViT transformer block (LayerNorm -> attention -> LayerNorm -> MLP, random weights) over 2x2
    patches as a float .tflite, converted once per session."""
    torch = pytest.importorskip("torch")
    litert_torch = pytest.importorskip("litert_torch")
    from vitdeploy.models.mobilevit import TransformerBlock

    torch.manual_seed(0)
    block = TransformerBlock(dim=32, num_heads=4, mlp_ratio=2.0).eval()
    path = tmp_path_factory.mktemp("transformer") / "transformer.tflite"
    with torch.no_grad():
        litert_torch.convert(block, (torch.randn(4, 16, 32),)).export(str(path))
    return path.read_bytes()


@pytest.fixture(scope="session")
def attention_tflite(tmp_path_factory) -> bytes:
    """One LeViT attention block (random weights: two BATCH_MATMULs per head group, SOFTMAX, hard-swish) as a
    float .tflite, converted once per session: the int8 matmul and calibration tests' model."""
    torch = pytest.importorskip("torch")
    litert_torch = pytest.importorskip("litert_torch")
    from vitdeploy.models.levit import Attention

    torch.manual_seed(0)
    block = Attention(dim=32, key_dim=8, num_heads=2, attn_ratio=2, resolution=4).eval()
    path = tmp_path_factory.mktemp("attention") / "attention.tflite"
    with torch.no_grad():
        litert_torch.convert(block, (torch.randn(1, 16, 32),)).export(str(path))
    return path.read_bytes()

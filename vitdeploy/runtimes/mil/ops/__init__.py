"""The MIL ops the interpreter executes, one module per coremltools op-definition file.

Importing this package imports every op module, which registers its ops in
:data:`vitdeploy.runtimes.mil.registry.REGISTRY`.
"""

from importlib import import_module

MODULE_NAMES = (
    "activation",
    "classify",
    "constexpr_ops",
    "control_flow",
    "conv",
    "elementwise_binary",
    "elementwise_unary",
    "image_resizing",
    "linear",
    "normalization",
    "pool",
    "quantization_ops",
    "reduction",
    "scatter_gather",
    "tensor_operation",
    "tensor_transformation",
    "transformers",
)
MODULES = tuple(import_module(f"{__name__}.{name}") for name in MODULE_NAMES)

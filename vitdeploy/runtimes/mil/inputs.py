"""Model inputs: what the program and the model description declare, and feeding values to them.

Image inputs: for ML Programs coremltools stores only the color layout and the size in the model
description (``imageType``); ``ImageType(scale=..., bias=...)`` becomes ``mul``/``add`` ops named
``<input>__scaled__``/``<input>__biased__`` at the start of the program. The interpreter therefore
only reorders the RGB pixels into the model's color layout and NCHW; the program applies scale and bias.
"""

from __future__ import annotations

import numpy as np

from vitdeploy.errors import VitdeployError

from .program import dtype_name, shape_of


def _image_preprocessing(function, input_name: str) -> tuple[float, list[float]]:
    """Scale and bias that coremltools folded into the program as `<input>__scaled__`/`__biased__` ops."""
    scale, bias = 1.0, [0.0, 0.0, 0.0]
    for op in function.operations:
        if op.op_type == "mul" and op.name == f"{input_name}__scaled__":
            scale = float(np.asarray(op.y.val).ravel()[0])
        elif op.op_type == "add" and op.name == f"{input_name}__biased__":
            bias = [float(v) for v in np.asarray(op.y.val).ravel()]
    return scale, bias


def _dtype_label(dtype: str) -> str:
    return {"fp16": "float16", "fp32": "float32"}.get(dtype, dtype)


def describe_inputs(spec, function) -> dict[str, dict]:
    """Input name -> {kind: tensor|image, shape, dtype; for images color_layout, scale, bias, height, width}."""
    described = {feature.name: feature for feature in spec.description.input}
    specs: dict[str, dict] = {}
    for name, var in function.inputs.items():
        entry = {"kind": "tensor", "shape": shape_of(var), "dtype": _dtype_label(dtype_name(var))}
        feature = described.get(name)
        if feature is not None and feature.type.WhichOneof("Type") == "imageType":
            image = feature.type.imageType
            color_space = image.ColorSpace.Name(image.colorSpace)
            scale, bias = _image_preprocessing(function, name)
            entry.update(
                kind="image",
                color_layout=color_space,
                scale=scale,
                bias=bias,
                height=int(image.height),
                width=int(image.width),
            )
        specs[name] = entry
    return specs


def image_to_tensor(pixels, spec: dict, name: str) -> np.ndarray:
    """RGB pixels (HxWx3 or NxHxWx3, 0..255) -> the tensor Core ML builds from the image buffer."""
    arr = np.asarray(pixels, dtype=np.float32)
    if spec["color_layout"] in ("GRAYSCALE", "GRAYSCALE_FLOAT16"):
        if arr.ndim >= 3 and arr.shape[-1] == 3:
            raise VitdeployError(f"grayscale image input '{name}' expects HxW or HxWx1 pixels, got shape {arr.shape}")
        if arr.ndim >= 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        arr = arr[..., None]
    elif arr.ndim not in (3, 4) or arr.shape[-1] != 3:
        raise VitdeployError(f"image input '{name}' expects HxWx3 or NxHxWx3 RGB pixels, got shape {arr.shape}")
    elif spec["color_layout"] == "BGR":
        arr = arr[..., ::-1]
    if arr.ndim == 3:
        arr = arr[None]
    fixed_size = spec["height"] > 0 and spec["width"] > 0  # 0 when the model takes flexible sizes
    if fixed_size and arr.shape[1:3] != (spec["height"], spec["width"]):
        raise VitdeployError(
            f"image input '{name}' expects {spec['height']}x{spec['width']} pixels, got {arr.shape[1]}x{arr.shape[2]}"
        )
    shape = spec["shape"]
    if len(shape) == 4 and shape[0] not in (-1, arr.shape[0]):
        raise VitdeployError(f"image input '{name}' expects a batch of {shape[0]}, got {arr.shape[0]} images")
    channels_last = len(shape) == 4 and shape[-1] == arr.shape[-1] and shape[1] != arr.shape[-1]
    tensor = arr if channels_last else np.transpose(arr, (0, 3, 1, 2))
    if len(shape) == 3:
        tensor = tensor[0]
    return np.ascontiguousarray(tensor)


def check_tensor_shape(value: np.ndarray, spec: dict, name: str) -> None:
    shape = spec["shape"]
    if len(shape) != value.ndim or any(d != -1 and d != v for d, v in zip(shape, value.shape)):
        raise VitdeployError(f"input '{name}' expects shape {shape}, got {list(value.shape)}")

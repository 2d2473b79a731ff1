"""Reading converted models for packaging: what the app helper needs to know about an artifact.

``inspect_mlpackage`` reads a Core ML package's spec (no Core ML runtime needed), ``inspect_tflite``
a LiteRT flatbuffer, ``inspect_pte`` an ExecuTorch program and the vitdeploy metadata inside it; all
refuse, with a one-line error, a model the generated helper cannot drive.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from ..diagnostics import quiet
from ..errors import VitdeployError
from ..formats import LAYOUT_PIXELS, LAYOUT_RAW
from ..untrusted import reading


def mlpackage_user_metadata(path: Path) -> dict:
    """The user-defined metadata of an .mlpackage (checked tree, read from its spec)."""
    with reading(path):
        return dict(_load_spec(path).description.metadata.userDefined)


def _load_spec(path: Path):
    from ..formats.coreml import check_package_tree

    check_package_tree(path)  # an artifact is untrusted: no link, no path out of the package, before coremltools
    try:
        with quiet(stdout=True):
            import coremltools as ct
    except ImportError as e:
        raise VitdeployError(f"reading a .mlpackage needs coremltools: pip install 'vitdeploy[coreml]' ({e})") from None
    try:
        with quiet(stdout=True):
            spec = ct.utils.load_spec(str(path))
    except Exception as e:  # noqa: BLE001 - coremltools raises many types for a broken package
        raise VitdeployError(f"{path}: not a readable Core ML model ({type(e).__name__}: {str(e).strip()[:200]})") from None
    return spec


def inspect_mlpackage(path: Path) -> dict:
    """Input/outputs/labels/metadata of an .mlpackage, read from its spec (no Core ML runtime needed)."""
    with reading(path):
        spec = _load_spec(path)
        desc = spec.description
        images = [i for i in desc.input if i.type.WhichOneof("Type") == "imageType"]
        if len(desc.input) != 1 or not images:
            kinds = ", ".join(f"{i.name} ({i.type.WhichOneof('Type')})" for i in desc.input)
            raise VitdeployError(f"{path}: the app helper needs one image input, the model has {kinds}; "
                                 "convert without --raw-input")
        image = images[0]
        color = {10: "GRAYSCALE", 20: "RGB", 30: "BGR"}.get(int(image.type.imageType.colorSpace), "RGB")
        meta = dict(desc.metadata.userDefined)
        config: dict = {}
        with contextlib.suppress(ValueError, TypeError):
            config = json.loads(meta.get("vitdeploy", "")) or {}
        outputs = {o.name: o.type.WhichOneof("Type") for o in desc.output}
        classifier = bool(desc.predictedProbabilitiesName)
        logits = config.get("logits_output") if config.get("logits_output") in outputs else None
        if logits is None:
            arrays = [name for name, kind in outputs.items() if kind == "multiArrayType"]
            logits = "logits" if "logits" in arrays else (arrays[0] if arrays else None)
        if not classifier and logits is None:
            raise VitdeployError(f"{path}: no classifier output and no multi-array (logits) output; "
                                 f"outputs are {', '.join(outputs) or 'none'}")
        labels = config.get("labels") or _mlprogram_class_labels(spec)
        labels = [str(label) for label in labels] if labels else None
        return {"input_name": image.name, "width": int(image.type.imageType.width),
                "height": int(image.type.imageType.height), "color_layout": color, "outputs": outputs,
                "classifier": classifier, "logits_output": logits, "labels": labels,
                "precision": meta.get("precision") or config.get("precision"),
                "preprocessing": config.get("preprocessing"),
                "model_type": spec.WhichOneof("Type")}


def _mlprogram_class_labels(spec) -> list[str] | None:
    """Class labels of an ML Program classifier (the ``classes`` of its ``classify`` op)."""
    if spec.WhichOneof("Type") == "neuralNetworkClassifier":
        labels = spec.neuralNetworkClassifier.stringClassLabels.vector
        return list(labels) or [str(v) for v in spec.neuralNetworkClassifier.int64ClassLabels.vector] or None
    if spec.WhichOneof("Type") != "mlProgram":
        return None
    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            for op in block.operations:
                if op.type != "classify" or "classes" not in op.inputs:
                    continue
                argument = op.inputs["classes"].arguments[0]
                if argument.WhichOneof("binding") != "value":
                    continue
                values = argument.value.immediateValue.list.values
                labels = []
                for v in values:
                    tensor = v.immediateValue.tensor
                    labels += [str(s) for s in tensor.strings.values] or [str(i) for i in tensor.ints.values]
                return labels or None
    return None


def inspect_tflite(path: Path) -> dict:
    """Input shape/dtype/quantization, class count, labels and vitdeploy config of a .tflite."""
    import numpy as np

    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:
        raise VitdeployError(f"reading a .tflite needs ai-edge-litert: pip install 'vitdeploy[tflite]' ({e})") from None
    from ..formats.tflite import read_tflite_metadata

    with reading(path):
        data = path.read_bytes()
        try:
            interpreter = Interpreter(model_content=data)
        except (ValueError, RuntimeError) as e:
            raise VitdeployError(f"{path}: not a readable .tflite model ({str(e).strip().splitlines()[0][:200]})") from None
        stored = read_tflite_metadata(data)
        inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise VitdeployError(f"{path}: the app helper needs one input and one output, found {len(inputs)} and {len(outputs)}")
        shape = [int(v) for v in inputs[0]["shape"]]
        dtype = np.dtype(inputs[0]["dtype"]).name
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
            layout = (stored["vitdeploy"] or {}).get("input", {}).get("layout")
            raw = layout == LAYOUT_RAW or (len(shape) == 4 and shape[1] == 3)
            hint = "; convert without --raw-input" if raw else ""
            raise VitdeployError(f"{path}: the app helper feeds a [1, H, W, 3] RGB pixel input, "
                                 f"the model takes {shape}{hint}")
        if dtype not in ("float32", "int8", "uint8"):
            raise VitdeployError(f"{path}: input dtype {dtype} is not supported by the helper (float32, int8, uint8)")
        out_shape = [int(v) for v in outputs[0]["shape"]]
        out_dtype = np.dtype(outputs[0]["dtype"]).name
        if len(out_shape) != 2 or out_shape[0] != 1:
            raise VitdeployError(f"{path}: expected one [1, classes] output, the model has {out_shape}")
        labels = stored["labels"]
        if labels is not None and len(labels) != out_shape[1]:
            raise VitdeployError(f"{path}: {len(labels)} labels stored but the model has {out_shape[1]} classes")
        config = stored["vitdeploy"] or {}
        return {"input_name": str(inputs[0]["name"]), "height": shape[1], "width": shape[2], "input_dtype": dtype,
                "output_dtype": out_dtype, "num_classes": out_shape[1], "labels": labels,
                "preprocessing": config.get("preprocessing"), "vitdeploy": bool(config),
                "layout": (config.get("input") or {}).get("layout", LAYOUT_PIXELS)}


def inspect_pte(path: Path) -> dict:
    """Input size, class count, delegates, labels and preprocessing of a .pte, read from the program.

    The helper feeds one [1, H, W, 3] float32 RGB pixel input and reads one [1, classes] float32
    output; ``labels`` and ``preprocessing`` come from the metadata ``vitdeploy convert`` stores in the
    program (``formats.executorch.read_pte_metadata``), None for a .pte written by anything else.
    """
    from ..formats.executorch import read_pte_metadata

    with reading(path):
        stored = read_pte_metadata(path)  # one parse; labels are checked there: a list of strings or None
        fwd = stored["forward"]
        if fwd is None:
            raise VitdeployError(f"{path}: no 'forward' method (methods: {', '.join(stored['methods'])})")
        if len(fwd["inputs"]) != 1 or len(fwd["outputs"]) != 1:
            raise VitdeployError(f"{path}: the app helper needs one input and one output, forward has "
                                 f"{len(fwd['inputs'])} and {len(fwd['outputs'])}")
        (inp,), (out,) = fwd["inputs"], fwd["outputs"]
        shape = inp["shape"] or []
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 3 or inp["dtype"] != "float32":
            hint = "; convert without --raw-input" if len(shape) == 4 and shape[1] == 3 else ""
            raise VitdeployError(f"{path}: the app helper feeds a [1, H, W, 3] float32 RGB pixel input, forward takes "
                                 f"{shape} {inp['dtype']}{hint}")
        out_shape = out["shape"] or []
        if len(out_shape) != 2 or out_shape[0] != 1 or out["dtype"] != "float32":
            raise VitdeployError(f"{path}: expected one [1, classes] float32 output, forward returns {out_shape} {out['dtype']}")
        labels, config = stored["labels"], stored["vitdeploy"]
        if labels is not None and len(labels) != out_shape[1]:
            raise VitdeployError(f"{path}: {len(labels)} labels but the model has {out_shape[1]} classes")
        return {"height": shape[1], "width": shape[2], "num_classes": out_shape[1], "labels": labels or None,
                "preprocessing": (config or {}).get("preprocessing"), "delegates": fwd["delegates"],
                "vitdeploy": config is not None}


def pte_warnings(info: dict) -> list[str]:
    """What the helper of a .pte described by :func:`inspect_pte` has to assume (both platforms)."""
    warnings = []
    if not info["vitdeploy"]:
        warnings.append("not written by vitdeploy convert: no preprocessing/labels metadata; the helper assumes "
                        "RGB pixels 0..255 with normalization inside the program and no centre crop")
    if not info["labels"]:
        warnings.append("the model carries no labels: results are named by class index")
    return warnings

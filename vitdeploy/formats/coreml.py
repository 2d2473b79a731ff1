"""The .mlpackage as vitdeploy writes and reads it: input/output names, the metadata entry, the program.

A leaf of the pipeline: the Core ML target writes through it; runtimes, parity, quantization and
packaging read through it without importing the converter. coremltools is imported lazily.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..diagnostics import first_line
from ..errors import VitdeployError
from . import LAYOUT_IMAGE, LAYOUT_RAW  # noqa: F401 (re-exported: the layouts an .mlpackage input declares)

IMAGE_INPUT = "image"
RAW_INPUT = "pixel_values"
LOGITS_OUTPUT = "logits"
LABEL_OUTPUT = "classLabel"
PROBS_OUTPUT = "probabilities"
METADATA_KEY = "vitdeploy"  # user_defined_metadata key of our JSON config
METADATA_FORMAT = 1


def load_program(mlmodel):
    """The pymil Program of an (unloaded) MLModel, read from its spec and weights."""
    from coremltools.converters.mil.frontend.milproto.load import load

    spec = mlmodel.get_spec()
    return load(spec, spec.specificationVersion, file_weights_dir=mlmodel.weights_dir)


def read_config(path: str | Path) -> dict:
    """The ``vitdeploy`` JSON metadata of an .mlpackage written by ``vitdeploy.targets.coreml.convert_coreml``."""
    try:
        import coremltools as ct
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise VitdeployError(f"reading .mlpackage needs coremltools: pip install 'vitdeploy[coreml]' ({e})") from None
    try:
        spec = ct.utils.load_spec(str(path))
    except Exception as e:  # noqa: BLE001 - a damaged package raises anything
        raise VitdeployError(f"{path}: not a readable .mlpackage ({e.__class__.__name__}: {first_line(e)})") from None
    raw = spec.description.metadata.userDefined.get(METADATA_KEY)
    if not raw:
        raise VitdeployError(f"{path}: no vitdeploy metadata (not converted by vitdeploy); cannot tell its input "
                             "convention")
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise VitdeployError(f"{path}: damaged vitdeploy metadata ({e})") from None
    if not isinstance(config, dict):
        raise VitdeployError(f"{path}: damaged vitdeploy metadata (a JSON {type(config).__name__}, not an object)")
    return config

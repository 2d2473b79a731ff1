"""``vitdeploy convert``: checkpoint -> BN-folded model -> Core ML, TFLite or ExecuTorch artifact."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .errors import VitdeployError
from .formats import TARGETS, artifact_name


def checkpoint_stem(checkpoint: str | Path) -> str:
    """The checkpoint's name without its weights suffix (a Hugging Face folder keeps its name)."""
    from .checkpoints.reader import weights_stem

    return weights_stem(Path(checkpoint).name)


def default_output(checkpoint: str | Path, target: str, quantize="fp32", precision: str | None = None) -> Path:
    """``<checkpoint stem>_<mode>.tflite|.mlpackage|...`` in the current directory (:func:`formats.artifact_name`);
    ``quantize``: a :class:`~vitdeploy.precisions.Precision`, or the API's words (:func:`precisions.parse_call`)."""
    from .precisions import parse_call

    return Path(artifact_name(checkpoint_stem(checkpoint), target, parse_call(target, quantize, precision)))


def read_labels(path: str | Path | None, num_classes: int) -> list[str] | None:
    """One label per line; the count must match the classifier."""
    if path is None:
        return None
    from .untrusted import LABELS_LIMIT, read_side_text

    p = Path(path)
    if not p.exists() and not p.is_symlink():
        raise VitdeployError(f"{p}: labels file not found")
    text = read_side_text(p, LABELS_LIMIT, "labels file")  # regular file, bounded, UTF-8: else one line
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if len(labels) != num_classes:
        more_or_fewer = "fewer" if len(labels) < num_classes else "more"
        raise VitdeployError(f"{p}: {len(labels)} labels, {more_or_fewer} than the model's {num_classes} classes "
                             "(one label per class, one per line)")
    return labels


def read_calibration_images(directory: str | Path | None, preprocessing, limit: int = 64) -> np.ndarray | None:
    """uint8 NHWC RGB pixels of up to ``limit`` images in ``directory``, spread evenly over its sorted
    files (every class folder of an ImageFolder tree contributes), resized and cropped as the source expects."""
    if directory is None:
        return None
    from .preprocessing import list_images, load_image_rgb

    d = Path(directory)
    if not d.is_dir():
        raise VitdeployError(f"{d}: --calib must be a directory of images")
    try:
        files = list_images(d, limit)
    except VitdeployError as e:
        raise VitdeployError(f"{e} for calibration") from None
    return np.stack([load_image_rgb(p, preprocessing) for p in files])


def convert(checkpoint: str | Path, target: str, *, out: str | Path | None = None, quantize=None,
            precision: str | None = None, calib_dir: str | Path | None = None, labels_file: str | Path | None = None,
            raw_input: bool = False, int8_io: bool = False, deployment_target: str | None = None,
            compute_units: str = "all", variant: str | None = None, int8_finetune: int = 0,
            delegate: str = "xnnpack", progress=None, force: bool = False) -> dict:
    """Convert a checkpoint to a Core ML, TFLite or ExecuTorch artifact; returns a JSON-able report.

    The shared work happens here once, for every target: the checkpoint's passes
    (:func:`vitdeploy.passes.prepare_for`), the request to the target's converter (:data:`vitdeploy.targets.
    CONVERTERS`) and the writing of what it returns (:func:`vitdeploy.targets.contract.publish`): a w8a8 model
    below the accuracy target is written aside as ``<stem>.below-target<suffix>`` (``accuracy_target_met``
    False in the report; the CLI exits 1 on it).
    ``int8_finetune`` (TFLite int8 only): steps of quantization-aware fine-tuning of the int8 graph on
    the calibration images, written with the scales it trained with (:mod:`vitdeploy.quantization.pt2e`).
    ``quantize``: a :class:`vitdeploy.precisions.Precision` (the CLI's, parsed once), or a name of
    :mod:`vitdeploy.precisions` (``fp32``, ``fp16``, ``w8``, ``w8a8``, ``w8a16``, ``dynamic``) or an alias
    (``none``, ``int8``), read with ``precision`` by :func:`vitdeploy.precisions.parse_call`. An artifact already at ``out`` is refused before
    any work unless ``force``.
    """
    from . import checkpoints
    from .diagnostics import raise_if_interrupted
    from .passes import prepare_for
    from .precisions import parse_call
    from .progress import note, step
    from .targets import converter, publish, refuse_untaken

    if target not in TARGETS:
        raise VitdeployError(f"unknown target '{target}'; choose one of {', '.join(TARGETS)}")
    precision = parse_call(target, quantize, precision)
    options = {"deployment_target": deployment_target, "compute_units": compute_units, "delegate": delegate}
    refuse_untaken(target, precision, {"int8_finetune": int8_finetune, "int8_io": int8_io, **options})
    from .outputs import check_artifact_path

    # The output path is judged before the checkpoint loads: a conversion takes 20-30 s.
    out = check_artifact_path(Path(out) if out else default_output(checkpoint, target, precision), target,
                              force=force)
    progress = _noting(progress)
    with step(f"converting {Path(checkpoint).name} -> {target} {precision.name}"):
        note("loading the checkpoint")
        t0 = time.perf_counter()
        ckpt = checkpoints.load(checkpoint, variant=variant)
        request = _request(ckpt, out, precision, calib_dir, labels_file, raw_input, int8_io, int8_finetune,
                           options, progress)
        # BatchNorm folded once, whatever the target; then the target's (and precision's) passes (passes.PIPELINES).
        note("folding BatchNorm")
        prepared = prepare_for(target, ckpt.model, delegate, precision.name)
        raise_if_interrupted()  # a Ctrl-C a converter's GC callback swallowed still stops the work here
        conversion = converter(target)(prepared.model, request)
        raise_if_interrupted()
        result = publish(conversion, out, progress).to_dict()
        result.update(bn_folding=prepared.bn_folding, rewrites={**result.get("rewrites", {}), **prepared.rewrites})
        result.update(_precision_words(precision))
        return {"checkpoint": str(checkpoint), "variant": ckpt.variant, "layout": ckpt.layout, "target": target,
                "total_seconds": round(time.perf_counter() - t0, 2), **result}


def _noting(said):
    """The converter's progress callback: each stage (each int8 search attempt) to ``said`` and on the ticking line."""
    from .progress import note

    def progress(msg: str) -> None:
        if said:
            said(msg)
        note(msg.strip())

    return progress


def _request(ckpt, out: Path, precision, calib_dir, labels_file, raw_input: bool, int8_io: bool,
             int8_finetune: int, options: dict, progress):
    """What the target's converter is asked (:class:`vitdeploy.targets.ConvertRequest`): the checkpoint's facts,
    its labels and calibration images read, the metadata every artifact carries."""
    from . import __version__
    from .targets import ConvertRequest

    labels = read_labels(labels_file, ckpt.num_classes) or ckpt.labels  # read first: its error comes first
    calib = read_calibration_images(calib_dir, ckpt.preprocessing)
    metadata = {"source_checkpoint": ckpt.name, "source_sha256": ckpt.sha256(), "variant": ckpt.variant,
                "layout": ckpt.layout, "preprocessing": ckpt.preprocessing.to_dict(),
                "vitdeploy_version": __version__}
    return ConvertRequest(input_size=ckpt.input_size, preprocessing=ckpt.preprocessing, out=out, variant=ckpt.variant,
                          source_model=ckpt.model, precision=precision, calib=calib,
                          labels=labels, raw_input=raw_input,
                          int8_io=int8_io, int8_finetune=int8_finetune, metadata=metadata, options=options,
                          progress=progress)


def _precision_words(precision) -> dict:
    """The report's precision in the one vocabulary (:mod:`vitdeploy.precisions`): ``precision`` and ``quantize``
    are both the canonical name (``w8a8``, never ``int8`` or ``none``: the ``--quantize`` that makes this file);
    a format with a compute precision (Core ML) adds ``compute_precision`` (fp16/fp32)."""
    words = {"precision": precision.name, "quantize": precision.name}
    if precision.compute is not None:
        words["compute_precision"] = precision.compute
    return words

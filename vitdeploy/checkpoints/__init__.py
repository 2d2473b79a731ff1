"""Load a LeViT or MobileViT checkpoint from any supported ecosystem.

``load(path)`` reads the file safely, recognises the family and its layout (timm, timm-conv, official,
cvnets, hf: whatever the registered families declare) and the variant from key names and tensor shapes,
maps the weights to vitdeploy's model and records the preprocessing the checkpoint's source expects.

Labels rule (:func:`find_labels`), first match wins: a Hugging Face folder's ``config.json`` ``id2label``;
``<stem>.labels.txt`` beside a checkpoint file ``<stem>.<ext>`` (``<stem>`` without the last suffix) (its count must match the classifier, else
an error); ``labels.txt`` in the checkpoint's folder (a HF folder: inside it), used when its count matches
the classifier and otherwise ignored with a note ``inspect`` shows. One label per line, blank lines skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CheckpointError
from ..models import VARIANTS, create_model, family, variant_info
from ..preprocessing import Preprocessing
from .layouts import detect_layout, layout_names, to_canonical
from ..untrusted import reading
from .reader import RawCheckpoint, read_checkpoint, sha256_of

__all__ = ["Checkpoint", "load", "detect_layout", "detect_variant", "preprocessing_for", "layout_names", "LAYOUTS"]


def __getattr__(name: str):
    if name == "LAYOUTS":  # the former constant: now whatever the registered families declare
        return layout_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (eval mode, weights in) and where it came from."""

    model: object  # torch.nn.Module
    variant: str
    family: str
    layout: str
    preprocessing: Preprocessing
    num_classes: int
    path: Path
    weights_file: Path
    wrapper: str | None = None
    other_entries: list[str] = field(default_factory=list)
    labels: list[str] | None = None
    variant_detected: bool = True
    labels_source: str | None = None  # where the labels came from (config.json id2label, a labels file)
    labels_note: str | None = None  # why a labels file beside it was not used

    @property
    def input_size(self) -> tuple[int, int, int]:
        return variant_info(self.variant).input_size

    @property
    def name(self) -> str:
        return self.path.name

    def sha256(self) -> str:
        return sha256_of(self.weights_file)

    def describe(self) -> dict:
        """JSON-able summary (what ``vitdeploy inspect`` prints)."""
        return {
            "path": str(self.path),
            "family": self.family,
            "variant": self.variant,
            "variant_source": "detected" if self.variant_detected else "--variant",
            "layout": self.layout,
            "wrapper": self.wrapper,
            "other_entries": self.other_entries,
            "params": sum(p.numel() for p in self.model.parameters()),
            "num_classes": self.num_classes,
            "input_size": list(self.input_size),
            "preprocessing": self.preprocessing.to_dict(),
            "labels": len(self.labels) if self.labels else None,
            "labels_source": self.labels_source,
        }


def preprocessing_for(family_name: str, layout: str) -> Preprocessing:
    """The input convention of a checkpoint source (timm checkpoints: timm's own evaluation resize)."""
    return family(family_name).preprocessing(layout)


def load(path: str | Path, variant: str | None = None, prefer_ema: bool = False) -> Checkpoint:
    """Load a checkpoint file or HF directory into a vitdeploy model (eval mode)."""
    raw = read_checkpoint(path, prefer_ema=prefer_ema)
    # Layout and variant errors name no file: the block names it. It builds the model too, so a TypeError
    # there may be vitdeploy's bug (exit 3), not the file's.
    with reading(raw.path, data_errors=False):
        layout, family_name = detect_layout(raw.state_dict)
        sd = to_canonical(raw.state_dict, layout, family_name)
        num_classes = _num_classes(sd, family_name)
        if variant is not None:
            info = variant_info(variant)
            if info.family != family_name:
                raise CheckpointError(f"{raw.path}: --variant {info.name} is a {info.family} model but this is a "
                                      f"{family_name} checkpoint ({layout} layout)")
            name, detected = info.name, False
        else:
            name, detected = detect_variant(sd, family_name), True
        model = create_model(name, num_classes=num_classes)
        _load_strict(model, sd, raw.path, name, layout)
        labels, source, note = find_labels(raw, num_classes)
        return Checkpoint(model=model.eval(), variant=name, family=family_name, layout=layout,
                          preprocessing=preprocessing_for(family_name, layout), num_classes=num_classes, path=raw.path,
                          weights_file=raw.file, wrapper=raw.wrapper, other_entries=raw.other_entries,
                          labels=labels, variant_detected=detected, labels_source=source, labels_note=note)


LABELS_FILE = "labels.txt"


def labels_beside(path: Path) -> tuple[Path, Path]:
    """(``<stem>.labels.txt``, the folder's ``labels.txt``) for a checkpoint file or HF folder ``path``."""
    path = Path(path)
    if path.is_dir():
        return path / LABELS_FILE, path / LABELS_FILE
    return path.with_name(f"{path.stem}.labels.txt"), path.with_name(LABELS_FILE)


def find_labels(raw: RawCheckpoint, num_classes: int) -> tuple[list[str] | None, str | None, str | None]:
    """(labels, where from, note) by the module's labels rule."""
    labels = _hf_labels(raw, num_classes)
    if labels:
        return labels, "config.json id2label", None
    own, shared = labels_beside(raw.path)
    if own != shared and (own.exists() or own.is_symlink()):
        found = _read_labels(own)
        if len(found) != num_classes:
            raise CheckpointError(f"{own}: {len(found)} labels for the checkpoint's {num_classes} classes "
                                  "(one label per class, one per line)")
        return found, own.name, None
    if shared.is_file():
        found = _read_labels(shared)
        if len(found) == num_classes:
            return found, shared.name, None
        return None, None, (f"{shared.name} beside it has {len(found)} labels for {num_classes} classes: not used; "
                            f"name a matching file {own.name}")
    return None, None, None


def _read_labels(path: Path) -> list[str]:
    from ..untrusted import LABELS_LIMIT, read_side_text

    text = read_side_text(path, LABELS_LIMIT, "labels file", error=CheckpointError)
    return [line.strip() for line in text.splitlines() if line.strip()]


# The most classes a classifier here may have: ImageNet-21k (21,843) is the largest label set these
# families are trained on; 100,000 leaves room for any real one, while a head declaring millions is corrupt
# (and its logits would not fit a phone app's label table anyway).
MAX_CLASSES = 100_000


def _num_classes(sd: dict, family_name: str) -> int:
    key = family(family_name).classifier
    if key not in sd:
        raise CheckpointError(f"{family_name} checkpoint has no classifier weight ('{key}' after mapping); "
                              "backbone-only checkpoints are not supported")
    shape = tuple(sd[key].shape)
    n = int(shape[0]) if shape else 0
    if n < 1:
        # A zero-class head builds an empty Linear and crashes converters natively (TFLite: SIGFPE).
        raise CheckpointError(f"classifier '{key}' has shape {shape}: zero classes")
    if n > MAX_CLASSES:
        raise CheckpointError(f"classifier '{key}' has {n:,} classes, more than any real label set "
                              f"({MAX_CLASSES:,}); the checkpoint is corrupt")
    return n


def detect_variant(sd: dict, family_name: str) -> str:
    """The variant whose architecture matches the canonical state dict's shapes."""
    fam = family(family_name)
    signature = fam.state_dict_signature(sd)
    for name in fam.configs():
        if fam.architecture(name) == signature:
            return name
    raise CheckpointError(f"{family_name} checkpoint matches no known variant (found {signature}); "
                          f"known: {', '.join(v for v, info in VARIANTS.items() if info.family == family_name)}")


def _load_strict(model, sd: dict, path: Path, variant: str, layout: str) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s): {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s): {', '.join(unexpected[:3])}"
                         f"{' ...' if len(unexpected) > 3 else ''}")
        raise CheckpointError(f"{path}: does not fit {variant} ({layout} layout): {'; '.join(parts)}")
    for k, v in expected.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{path}: '{k}' has shape {tuple(sd[k].shape)}, {variant} needs {tuple(v.shape)}")
        if not sd[k].dtype.is_floating_point and v.dtype.is_floating_point:
            raise CheckpointError(f"{path}: '{k}' holds {sd[k].dtype} values, expected floating point")
    _require_finite(sd, path)
    _require_sane_values(sd, path)
    model.load_state_dict({k: v.float() if v.dtype.is_floating_point else v for k, v in sd.items()}, strict=True)


def _require_finite(sd: dict, path: Path) -> None:
    """NaN/inf weights are corruption (or a diverged run): every output would be NaN, so say it at load."""
    import torch

    bad = [k for k, v in sd.items() if v.dtype.is_floating_point and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{path}: weights not finite (NaN or inf) in {len(bad)} tensor(s): "
                              f"{', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}")


# Largest |value| a weight may hold. Trained LeViT/MobileViT tensors stay below ~1e3 (seeded stand-ins
# measured on real photos: <= 160); 1e6 leaves three orders of magnitude of margin, and is where a model starts to
# go wrong silently: fp16 artifacts overflow at 65,504, and a few such layers overflow float32 logits.
MAX_ABS_WEIGHT = 1e6
# BatchNorm running_var is a squared scale: the same bound on its square root.
MAX_RUNNING_VAR = MAX_ABS_WEIGHT ** 2


def _require_sane_values(sd: dict, path: Path) -> None:
    """Values no training run produces, refused by tensor name before anything is converted: they fold or
    convert into a model that outputs NaN or garbage with exit 0.

    * BatchNorm ``running_var`` < 0: a variance cannot be negative; folding takes its square root (NaN).
    * ``|value| > MAX_ABS_WEIGHT`` (``running_var > MAX_RUNNING_VAR``): corruption or a diverged run.
    * ``num_batches_tracked`` < 0: a count (unused at inference, but a negative one marks a damaged file).
    """
    import torch

    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            if not v.dtype.is_floating_point and v.numel() and int(v.min()) < 0:
                raise CheckpointError(f"{path}: '{k}' is negative ({int(v.min())}); a batch count cannot be")
            continue
        if not v.dtype.is_floating_point or not v.numel():
            continue
        v = v.detach().to(torch.float64)
        if k.endswith("running_var"):
            low, high = float(v.min()), float(v.max())
            if low < 0:
                raise CheckpointError(f"{path}: BatchNorm '{k}' holds a negative variance ({low:.3g}); "
                                      "folding it would give NaN weights")
            if high > MAX_RUNNING_VAR:
                raise CheckpointError(f"{path}: BatchNorm '{k}' holds variance {high:.3g}, above "
                                      f"{MAX_RUNNING_VAR:.0e}: no trained model has it (corrupt checkpoint?)")
            continue
        peak = float(v.abs().max())
        if peak > MAX_ABS_WEIGHT:
            raise CheckpointError(f"{path}: '{k}' holds |value| {peak:.3g}, above {MAX_ABS_WEIGHT:.0e}: no trained "
                                  "model has such weights (corrupt checkpoint or a diverged run)")


def _hf_labels(raw: RawCheckpoint, num_classes: int) -> list[str] | None:
    with reading(raw.path):
        cfg = raw.hf_config or {}
        id2label = cfg.get("id2label")
        if not isinstance(id2label, dict) or len(id2label) != num_classes:
            return None
        try:
            labels = [str(id2label.get(str(i), id2label.get(i))) for i in range(num_classes)]
        except (TypeError, ValueError):
            return None
        # transformers writes LABEL_0, LABEL_1, ... when no labels were given: not worth showing.
        return None if all(label == f"LABEL_{i}" for i, label in enumerate(labels)) else labels

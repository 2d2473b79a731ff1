"""Top-1 / top-5 accuracy of several models (checkpoints and artifacts) on an ImageFolder directory.

Layout: ``data_dir/<class>/<image>``. Class index = position of the folder name in sorted order,
or, when ``data_dir/labels.txt`` exists (one label per line, line i = class index i), the line
whose text equals the folder name. Each model reads the images through its own runner with its
own preprocessing (resize, crop, channel order, normalization), so models from different sources
are compared on equal terms.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import VitdeployError
from ..preprocessing import IMAGE_SUFFIXES
from ..untrusted import reading


@dataclass
class Dataset:
    root: Path
    files: list[Path]
    targets: np.ndarray  # (N,) class index per file
    classes: list[str]  # folder names, sorted
    class_index: dict[str, int]
    labels_file: Path | None

    def to_dict(self) -> dict:
        return {"root": str(self.root), "images": len(self.files), "classes": len(self.classes),
                "labels_file": str(self.labels_file) if self.labels_file else None,
                "class_index": self.class_index}


def read_image_folder(data_dir: str | Path, limit_per_class: int | None = None) -> Dataset:
    root = Path(data_dir)
    if not root.is_dir():
        raise VitdeployError(f"{root}: not a directory (expected class subfolders with images)")
    with reading(root):
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise VitdeployError(f"{root}: no class subfolders (ImageFolder layout: {root}/<class>/<image>)")
        labels_file = root / "labels.txt"
        if labels_file.exists() or labels_file.is_symlink():
            lines = [line.strip() for line in _read_labels(labels_file)]
            lookup = {}
            for i, line in enumerate(lines):
                if line and line not in lookup:
                    lookup[line] = i
            unknown = [c for c in classes if c not in lookup]
            if unknown:
                raise VitdeployError(f"{labels_file}: class folder(s) not listed: {', '.join(unknown[:5])}"
                                     f"{' ...' if len(unknown) > 5 else ''}")
            index = {c: lookup[c] for c in classes}
        else:
            labels_file = None
            index = {c: i for i, c in enumerate(classes)}
        files, targets = [], []
        for c in classes:
            found = sorted(p for p in (root / c).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if limit_per_class:
                found = found[:limit_per_class]
            files += found
            targets += [index[c]] * len(found)
        if not files:
            raise VitdeployError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) in the class folders")
        return Dataset(root, files, np.asarray(targets, dtype=np.int64), classes, index, labels_file)


def _read_labels(path: Path) -> list[str]:
    """Lines of a labels file, or one clear error: a directory, a symlink loop or binary data is not one."""
    from ..untrusted import LABELS_LIMIT, read_side_text

    return read_side_text(path, LABELS_LIMIT, "labels file (one label per line)").splitlines()


@dataclass
class ModelAccuracy:
    model: str
    kind: str
    top1: float
    top5: float
    correct1: int
    correct5: int
    n: int
    seconds: float
    per_class_top1: dict[str, float] = field(default_factory=dict)
    nonfinite: int = 0  # images whose logits held NaN/inf (counted as misses)
    name: str = ""  # target + canonical precision from the artifact's metadata ("tflite w8a8", "checkpoint fp32")
    size_bytes: int | None = None  # the file (or .mlpackage folder) on disk
    delta_top1: float | None = None  # top-1 minus the first model's (the baseline column), in [-1, 1]

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class EvalResult:
    dataset: Dataset
    models: list[ModelAccuracy]

    def to_dict(self) -> dict:
        return {"kind": "eval", "dataset": self.dataset.to_dict(), "models": [m.to_dict() for m in self.models]}

    def table(self) -> str:
        rows = [("model", "target precision", "MB", "top-1", "vs first", "top-5", "images", "seconds")]
        for m in self.models:
            mb = f"{m.size_bytes / 1e6:.1f}" if m.size_bytes is not None else "-"
            delta = "baseline" if m is self.models[0] else f"{m.delta_top1 * 100:+.2f} pt"
            rows.append((m.model, m.name, mb, f"{m.top1:.2%}", delta, f"{m.top5:.2%}", str(m.n),
                         f"{m.seconds:.1f}"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(r))
                 for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines += [f"warning: {m.model}: outputs not finite on {m.nonfinite} of {m.n} inputs (counted as misses)"
                  for m in self.models if m.nonfinite]
        return "\n".join(lines) + f"\n{len(self.dataset.files)} images, {len(self.dataset.classes)} classes " \
                                  f"from {self.dataset.root}"


def evaluate(models: list[str | Path], data_dir: str | Path, *, threads: int = 2, batch_size: int = 16,
             limit_per_class: int | None = None, variant: str | None = None, runtime: str = "auto") -> EvalResult:
    """Accuracy of each model on ``data_dir``; every model sees the same images in its own input convention."""
    from ..progress import note
    from ..preprocessing import load_images
    from ..runtimes.open import open_runner
    from .precision import artifact_label

    if not models:
        raise VitdeployError("no model given to evaluate")
    if batch_size < 1:
        raise VitdeployError("batch_size must be >= 1")
    data = read_image_folder(data_dir, limit_per_class)
    results = []
    for i, model in enumerate(models, 1):
        note(f"{Path(model).name} ({i}/{len(models)})")  # the CLI's progress line: which model, of how many
        started = time.perf_counter()
        runner = open_runner(model, variant=variant, threads=threads, runtime=runtime)
        pre = getattr(runner, "preprocessing", None)
        if pre is None:
            raise VitdeployError(f"{model}: its preprocessing is unknown (no vitdeploy metadata); cannot read images")
        top5_hits = np.zeros(len(data.files), dtype=bool)
        top1_hits = np.zeros(len(data.files), dtype=bool)
        nonfinite = 0
        for start, logits in batched_logits(runner, data.files, batch_size):
            finite = np.isfinite(logits).all(1)
            nonfinite += int((~finite).sum())
            num_classes = logits.shape[1]
            target = data.targets[start:start + batch_size]
            if target.max() >= num_classes:
                raise VitdeployError(f"{model}: {num_classes} output classes, but the data has class index "
                                     f"{int(target.max())}")
            order = np.argsort(-np.where(np.isnan(logits), -np.inf, logits), axis=1, kind="stable")[:, :5]
            # NaN/inf logits rank nothing: a non-finite output is a miss, whatever argsort made of it.
            top1_hits[start:start + len(logits)] = (order[:, 0] == target) & finite
            top5_hits[start:start + len(logits)] = (order == target[:, None]).any(1) & finite
        per_class = {c: float(top1_hits[data.targets == data.class_index[c]].mean())
                     for c in data.classes if (data.targets == data.class_index[c]).any()}
        n = len(data.files)
        results.append(ModelAccuracy(model=str(model), kind=getattr(runner, "kind", Path(model).suffix.lstrip(".")),
                                     top1=float(top1_hits.mean()), top5=float(top5_hits.mean()),
                                     correct1=int(top1_hits.sum()), correct5=int(top5_hits.sum()), n=n,
                                     seconds=round(time.perf_counter() - started, 3), per_class_top1=per_class,
                                     nonfinite=nonfinite, name=artifact_label(model), size_bytes=size_on_disk(model)))
    for m in results:
        m.delta_top1 = round(m.top1 - results[0].top1, 6)
    return EvalResult(data, results)


def batched_logits(runner, files: list[Path], batch_size: int = 16):
    """(start index, float64 logits) per batch of image ``files``, each read with ``runner``'s own preprocessing."""
    from ..preprocessing import load_images

    for start in range(0, len(files), batch_size):
        x = load_images(files[start:start + batch_size], runner.preprocessing)
        yield start, np.asarray(runner.predict_nchw(x), dtype=np.float64)


def size_on_disk(path: str | Path) -> int | None:
    """Bytes of a file, or of every file under a folder (an .mlpackage, a Hugging Face directory)."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and not f.is_symlink())
    return None

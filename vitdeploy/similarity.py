"""How close two batches of logits are: the one cosine (and top-1 agreement) every stage uses.

The parity gate (:mod:`vitdeploy.parity.metrics`), layer localization, and the int8 searches of
every target judge candidates with these, so a "worst-image cosine 0.99" means the same number
everywhere. A leaf: numpy only.
"""

from __future__ import annotations

import numpy as np

_TINY = 1e-30


def cosine_rows(ref, got) -> np.ndarray:
    """Cosine similarity of each row of ``got`` with the same row of ``ref`` (float64, rows = samples).

    1.0 when both rows are all zero, 0.0 when only one is; a row of ``got`` that is not finite
    (NaN/inf: an overflowing model) scores -1, the worst there is.
    """
    r = np.asarray(ref, dtype=np.float64).reshape(len(ref), -1)
    g = np.asarray(got, dtype=np.float64).reshape(len(got), -1)
    nr, ng = np.linalg.norm(r, axis=1), np.linalg.norm(g, axis=1)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        cos = (r * g).sum(1) / np.maximum(nr * ng, _TINY)
    cos = np.where((nr == 0) & (ng == 0), 1.0, cos)
    cos = np.where(np.isfinite(cos) & np.isfinite(g).all(1), cos, -1.0)
    return np.clip(cos, -1.0, 1.0)


def logits_agreement(logits, reference) -> dict:
    """Per-image cosine (mean and min) and top-1 agreement of ``logits`` against ``reference``.

    An image whose logits are not finite counts as cosine -1 and a top-1 miss -- the worst a
    candidate can score, so no search keeps it -- and the count is reported as ``nonfinite_images``.
    """
    a = np.asarray(logits, dtype=np.float64).reshape(len(logits), -1)
    b = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    finite = np.isfinite(a).all(1)
    cos = cosine_rows(b, a)
    top1 = (np.where(finite[:, None], a, 0.0).argmax(1) == b.argmax(1)) & finite
    out = {"cosine_mean": round(float(cos.mean()), 6), "cosine_min": round(float(cos.min()), 6),
           "top1_agreement": round(float(top1.mean()), 4)}
    if not finite.all():
        out["nonfinite_images"] = int((~finite).sum())
    return out

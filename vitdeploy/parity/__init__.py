"""Parity gate, layer-wise localization and accuracy evaluation (see docs/parity.md).

    from vitdeploy.parity import run_parity, localize, evaluate
"""

from .evaluate import EvalResult, evaluate
from .localize import LocalizationResult, localize
from .metrics import compare
from .run import ParityResult, artifact_precision, run_parity
from .tolerances import PRESETS, Failure, parse_overrides, resolve

__all__ = ["ParityResult", "run_parity", "artifact_precision", "compare", "PRESETS", "Failure", "resolve",
           "parse_overrides", "localize", "LocalizationResult", "evaluate", "EvalResult"]

"""Which conversion options do something for which (target, precision), and the CLI's shared spellings.

Each row of the formats table (:data:`vitdeploy.formats.FORMATS`) names the options its target takes and, where
it matters, the canonical precisions they act on (:mod:`vitdeploy.precisions`); ``convert`` (and anything else
that converts) refuses an option that would be silently ignored with :func:`refuse_inapplicable`, and
:data:`SCOPE` is the same table by option. :data:`COMPUTE_UNITS` is the one spelling set per platform for
``--compute-units``; earlier spellings stay accepted as aliases with a one-line note. A leaf: it imports
nothing of vitdeploy's but errors and the formats table.
"""

from __future__ import annotations

from .errors import VitdeployError
from .formats import FORMATS


def _scope() -> dict[str, tuple[tuple[str, ...], tuple[str, ...] | None]]:
    """option -> (the targets whose rows take it, in table order; the precisions it acts on (None: any))."""
    scope: dict[str, tuple[tuple[str, ...], tuple[str, ...] | None]] = {}
    for fmt in FORMATS.values():
        for option, precisions in fmt.options.items():
            targets, _ = scope.get(option, ((), None))
            scope[option] = ((*targets, fmt.name), precisions)
    return scope


# What each option does is in each command's --help.
SCOPE = _scope()


def refuse_inapplicable(target: str, precision: str, given: list[str]) -> None:
    """One line naming the first option in ``given`` that does nothing for ``target`` at canonical ``precision``
    (as ``target``'s row in the formats table says); options no row names are not judged here."""
    takes = FORMATS[target].options
    for option in given:
        if option not in SCOPE:
            continue
        if option not in takes:
            raise VitdeployError(f"{option} is for --target {' and '.join(SCOPE[option][0])}: it does nothing for "
                                 f"--target {target}; drop it")
        precisions = takes[option]
        if precisions is not None and precision not in precisions:
            raise VitdeployError(f"{option} is for {'/'.join(precisions)}: it does nothing for {target} {precision}; "
                                 f"drop it")


# One spelling set per platform: Apple's MLComputeUnits names on iOS (what the harness, the farm tables and the
# generated Swift use), the delegate names on Android.
COMPUTE_UNITS = {"ios": ("all", "cpuOnly", "cpuAndGPU", "cpuAndNeuralEngine"),
                 "android": ("xnnpack", "cpu", "gpu", "nnapi")}
# Earlier spellings (convert's --compute-units before it took Apple's names).
COMPUTE_UNIT_ALIASES = {"ios": {"cpu": "cpuOnly", "cpu_only": "cpuOnly", "cpu_gpu": "cpuAndGPU",
                                "cpu_ne": "cpuAndNeuralEngine"}}
# Apple's names -> the converter's keys (targets.coreml.COMPUTE_UNITS).
COREML_CONVERTER_UNITS = {"all": "all", "cpuOnly": "cpu", "cpuAndGPU": "cpu_gpu", "cpuAndNeuralEngine": "cpu_ne"}


def compute_units(platform: str, values, say=None) -> tuple[str, ...]:
    """``values`` in ``platform``'s spelling (``ios``/``android``); an old spelling is taken with a one-line note
    (``say``), anything else refused in one line listing the choices."""
    canon = COMPUTE_UNITS[platform]
    lower = {c.lower(): c for c in canon}
    aliases = COMPUTE_UNIT_ALIASES.get(platform, {})
    out = []
    for value in values:
        key = str(value).strip()
        if key in canon:
            out.append(key)
        elif key.lower() in aliases:
            out.append(aliases[key.lower()])
            if say:
                say(f"note: --compute-units {key} is spelled {aliases[key.lower()]} now ({platform}: "
                    f"{', '.join(canon)})")
        elif key.lower() in lower:
            out.append(lower[key.lower()])
        else:
            raise VitdeployError(f"--compute-units {key}: not a {platform} compute unit; choose from "
                                 f"{', '.join(canon)}")
    return tuple(out)

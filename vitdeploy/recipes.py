"""Recipes: one YAML per variant saying how to build and check it (``vitdeploy/recipe_files/``, shipped with the
package); ``vitdeploy.build`` runs a whole matrix from them."""

from __future__ import annotations

import contextlib
import difflib
import functools
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import VitdeployError
from .formats import FORMATS, TARGETS
from .models import family_of, variant_info
from .untrusted import reading

_REQUIRED = ("variant", "targets", "parity")
# What the variant already fixes; older recipes repeated it, and may still, if it agrees.
_DERIVED = ("family", "input_size", "architecture", "preprocessing")
_TARGET_KEYS = ("quantize", "precision", "default")
# The recipes that ship with vitdeploy (package data): `build` uses them when --recipes is not given.
BUILTIN_RECIPES = Path(__file__).resolve().with_name("recipe_files")  # Core ML's compute precision (the `precision` list and default)

# The budget of a recipe file, checked before anything is built from it. A recipe is ~1 KB, ~60 YAML
# nodes, 4 levels deep: these bounds are 50-100x that. The file is read up to MAX_BYTES + 1 bytes (a
# regular file only: a FIFO or a link to /dev/zero would block or never end), and nodes and depth are
# counted as the composer pulls the parser's events, so nothing is built past a bound.
MAX_BYTES = 64 * 1024
MAX_NODES = 5000
MAX_DEPTH = 16


@dataclass
class Recipe:
    """How to build and check one variant; everything the variant fixes comes from its registered family."""

    path: Path
    variant: str
    targets: dict  # target -> {"quantize": [...], "precision": [...], "default": ...}
    parity: dict  # precision class -> tolerance overrides

    @property
    def family(self) -> str:
        return variant_info(self.variant).family

    @property
    def input_size(self) -> tuple[int, int, int]:
        return variant_info(self.variant).input_size

    @property
    def architecture(self) -> dict:
        return family_of(self.variant).architecture(self.variant)

    @property
    def preprocessing(self) -> dict:
        """The family's default input convention (a timm-layout checkpoint still gets timm's at load)."""
        return family_of(self.variant).preprocessing_default.to_dict()

    def cells(self) -> list[tuple[str, str, str]]:
        """(target, precision, quantize) for every artifact the recipe asks for; a target whose spec lists
        ``precision`` (Core ML's compute precision) gets every (precision, quantize) pair."""
        out = []
        with reading(self.path):
            for target, spec in self.targets.items():
                for precision in spec.get("precision", ["fp32"]):
                    out += [(target, precision, q) for q in spec.get("quantize", ["fp32"])]
        return out

    def default_mode(self, target: str) -> tuple[str, str | None]:
        """(precision, quantize) the recipe uses when the command line does not say; quantize None: not
        quantized, on a format whose unquantized models are named by their compute precision (Core ML)."""
        from .precisions import UNQUANTIZED, canonical

        with reading(self.path):
            default = (self.targets.get(target) or {}).get("default", UNQUANTIZED)
            compute = FORMATS[target].compute_precisions
            if isinstance(default, dict):  # {precision, quantize}: fp32 (or none) beside it is "not quantized"
                precision, quantize = default.get("precision", "fp16"), default.get("quantize", UNQUANTIZED)
                return precision, None if compute and canonical(quantize) == UNQUANTIZED else quantize
            # A name alone: a compute precision names itself; "none" is not quantized at the default compute.
            return "fp16", None if compute and default.strip().lower() == "none" else default


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe YAML file: every key and value is checked here, before any conversion,
    and a bad one is refused in one line naming the file (with "did you mean" for a near miss)."""
    p = Path(path)
    with reading(p):
        data = _parse_yaml(p, _read_recipe_text(p))
        if not isinstance(data, dict):
            raise VitdeployError(f"{p}: a recipe is a YAML mapping")
        _check_keys(p, data, (*_REQUIRED, *_DERIVED), "")
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise VitdeployError(f"{p}: recipe lacks {', '.join(missing)}")
        if not isinstance(data["variant"], str):
            raise VitdeployError(f"{p}: variant must be a name (e.g. levit_128s), got {_show(data['variant'], True)}")
        try:
            variant = variant_info(data["variant"]).name
        except VitdeployError:
            from .models import VARIANTS

            raise VitdeployError(f"{p}: unknown variant '{_show(data['variant'])}'"
                                 f"{did_you_mean(data['variant'], VARIANTS)}") from None
        recipe = Recipe(path=p, variant=variant, targets=_check_targets(p, data["targets"]),
                        parity=_check_parity(p, data["parity"]))
        disagree = [k for k in _DERIVED if k in data and _plain(data[k]) != _plain(_derived(recipe, k, data[k]))]
        if disagree:
            raise VitdeployError(f"{p}: {', '.join(disagree)} disagree with variant {recipe.variant} "
                                 f"(leave them out: the variant fixes them)")
    return recipe


def _read_recipe_text(p: Path) -> str:
    """The file's text, if it is a regular file of at most MAX_BYTES (opened without blocking on a FIFO)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(p, flags)
    except FileNotFoundError:
        raise VitdeployError(f"{p}: recipe not found") from None
    except OSError as e:
        raise VitdeployError(f"{p}: cannot read the recipe ({e.strerror or e})") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise VitdeployError(f"{p}: a folder, not a recipe file")
        if not stat.S_ISREG(mode):
            raise VitdeployError(f"{p}: not a regular file (a recipe is a small YAML file)")
        chunks, size = [], 0
        while size <= MAX_BYTES:
            chunk = os.read(fd, MAX_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > MAX_BYTES:
        raise VitdeployError(f"{p}: larger than {MAX_BYTES // 1024} KiB; a recipe is a small YAML file")
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise VitdeployError(f"{p}: not UTF-8 text") from None


def _parse_yaml(p: Path, text: str):
    import yaml

    loader = _budget_loader()(text)
    loader.recipe_path = p
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        raise VitdeployError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    except (ValueError, OverflowError, RecursionError) as e:  # e.g. an integer of 5000 digits
        raise VitdeployError(f"{p}: not valid YAML ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    finally:
        loader.dispose()


@functools.lru_cache(maxsize=None)
def _budget_loader():
    """A SafeLoader that refuses anchors/aliases and counts nodes and depth as it composes (before building)."""
    import yaml

    class BudgetLoader(yaml.SafeLoader):
        recipe_path: Path = Path("recipe")
        _nodes = 0
        _depth = 0

        def _refuse(self, event, why: str):
            raise VitdeployError(f"{self.recipe_path}: line {event.start_mark.line + 1}: {why}")

        def compose_node(self, parent, index):
            event = self.peek_event()
            # Refused outright rather than capped: a recipe has no use for them, and an alias is how a
            # 700-byte file ("billion laughs") expands to 10^9 nodes once constructed.
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                self._refuse(event, "YAML anchors and aliases (&name, *name) are not accepted in a recipe; "
                                    "write the values out")
            self._nodes += 1
            if self._nodes > MAX_NODES:
                self._refuse(event, f"more than {MAX_NODES} YAML nodes; a recipe is a small file")
            self._depth += 1
            try:
                if self._depth > MAX_DEPTH:
                    self._refuse(event, f"nested more than {MAX_DEPTH} levels deep; a recipe is a small file")
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

        def construct_mapping(self, node, deep=False):
            seen: set = set()
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node)
                if key in seen:  # YAML would keep the last one silently
                    raise VitdeployError(f"{self.recipe_path}: line {key_node.start_mark.line + 1}: "
                                         f"key '{_show(key)}' given twice")
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return BudgetLoader


def _show(value, as_repr: bool = False) -> str:
    """A value from the file as a message shows it: one line, at most 40 characters."""
    text = " ".join((repr(value) if as_repr else str(value)).splitlines())
    return text if len(text) <= 40 else text[:37] + "..."


def did_you_mean(word, choices) -> str:
    names = [str(c) for c in choices]
    close = difflib.get_close_matches(str(word)[:100], names, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else f"; choose from {', '.join(names)}"


def _check_keys(p: Path, mapping: dict, allowed, where: str) -> None:
    for key in mapping:
        if key not in allowed:
            raise VitdeployError(f"{p}: unknown key '{_show(key)}'{where}{did_you_mean(key, allowed)}")


def _names(p: Path, value, where: str) -> list[str]:
    """A list of names (a single name counts as a list of one)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise VitdeployError(f"{p}: {where} must be a non-empty list of names, got {_show(value, True)}")
    for item in items:
        if isinstance(item, bool):  # YAML 1.1 reads no/off/yes/on as booleans
            raise VitdeployError(f"{p}: {where} must be names, got {_show(item, True)} "
                                 f"(quote it: YAML reads no/off/yes as true/false)")
        if not isinstance(item, str):
            raise VitdeployError(f"{p}: {where} must be names, got {_show(item, True)}")
    return items


def _quantize_key(p: Path, target: str, name: str, where: str) -> str:
    """The converter's quantize key for ``name`` on ``target``, or a one-line refusal with a suggestion."""
    from .precisions import ALIASES, UNQUANTIZED, canonical, parse, quantize_choices

    fmt = FORMATS[target]
    if name.strip().lower() in fmt.compute_precisions and name.strip().lower() != UNQUANTIZED:
        quantized = ", ".join(q for q in fmt.precisions if q not in fmt.compute_precisions)
        raise VitdeployError(f"{p}: {where}: '{name}' is {fmt.title}'s compute precision; list it under "
                             f"targets.{target}.precision and use {UNQUANTIZED} (not quantized; or {quantized}) here")
    try:
        parse(target, name)
        note_old_spelling(p, name, where)
        return canonical(name)
    except VitdeployError:
        modes = [n for n in quantize_choices(target) if n == UNQUANTIZED or n not in fmt.compute_precisions]
        choices = [*modes, *(a for a, c in ALIASES.items() if c in modes)]
        raise VitdeployError(f"{p}: {where}: '{_show(name)}' is not a {target} mode"
                             f"{did_you_mean(name, choices)}") from None


_NOTED: set[str] = set()  # the old spellings already noted in this run


def note_old_spelling(p: Path, name: str, where: str) -> None:
    """One line on stderr, once per run and word, when a recipe says ``none``/``int8``/``int16``: still read,
    the canonical name (:mod:`vitdeploy.precisions`) is the word to write."""
    import sys

    from .precisions import OLD_SPELLINGS, canonical

    word = name.strip().lower()
    if word in OLD_SPELLINGS and word not in _NOTED:
        _NOTED.add(word)
        print(f"note: {p}: {where}: '{name}' is deprecated, write '{canonical(word)}'", file=sys.stderr)


def _check_precision(p: Path, target: str, name, where: str) -> str:
    """A compute precision of ``target`` (Core ML: fp16, fp32), lower-cased."""
    fmt = FORMATS[target]
    if not isinstance(name, str) or name.strip().lower() not in fmt.compute_precisions:
        raise VitdeployError(f"{p}: {where}: unknown {fmt.title} precision {_show(name, True)}"
                             f"{did_you_mean(name, fmt.compute_precisions)}")
    return name.strip().lower()


def _check_targets(p: Path, targets) -> dict:
    if not isinstance(targets, dict) or not targets:
        raise VitdeployError(f"{p}: targets must map each target ({', '.join(TARGETS)}) to its modes")
    out = {}
    for target, spec in targets.items():
        if target not in TARGETS:
            raise VitdeployError(f"{p}: unknown target '{_show(target)}'{did_you_mean(target, TARGETS)}")
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            raise VitdeployError(f"{p}: targets.{target} must be a mapping ({', '.join(_TARGET_KEYS)}), "
                                 f"got {_show(spec, True)}")
        _check_keys(p, spec, _TARGET_KEYS, f" in targets.{target}")
        spec = dict(spec)
        if "quantize" in spec:
            spec["quantize"] = _names(p, spec["quantize"], f"targets.{target}.quantize")
            seen: dict[str, str] = {}
            for q in spec["quantize"]:
                key = _quantize_key(p, target, q, f"targets.{target}.quantize")
                if key in seen:
                    raise VitdeployError(f"{p}: targets.{target}.quantize lists the same mode twice "
                                         f"('{_show(seen[key])}' and '{_show(q)}')")
                seen[key] = q
        if "precision" in spec:
            if not FORMATS[target].compute_precisions:
                having = " and ".join(f.title for f in FORMATS.values() if f.compute_precisions)
                raise VitdeployError(f"{p}: targets.{target}.precision: only {having} has a compute precision; "
                                     f"{target}'s precision is its quantize mode")
            names = _names(p, spec["precision"], f"targets.{target}.precision")
            spec["precision"] = [_check_precision(p, target, name, f"targets.{target}.precision") for name in names]
            if len(set(spec["precision"])) != len(spec["precision"]):
                raise VitdeployError(f"{p}: targets.{target}.precision lists the same precision twice")
        if "default" in spec:
            spec["default"] = _check_default(p, target, spec["default"])
        out[target] = spec
    return out


def _check_default(p: Path, target: str, default):
    where = f"targets.{target}.default"
    compute = FORMATS[target].compute_precisions  # a default may name one (Core ML), alone or with a quantize mode
    if isinstance(default, dict) and compute:
        _check_keys(p, default, ("precision", "quantize"), f" in {where}")
        default = dict(default)
        if "precision" in default:
            default["precision"] = _check_precision(p, target, default["precision"], f"{where}.precision")
        if "quantize" in default:
            if not isinstance(default["quantize"], str):
                raise VitdeployError(f"{p}: {where}.quantize must be a name, "
                                     f"got {_show(default['quantize'], True)}")
            _quantize_key(p, target, default["quantize"], f"{where}.quantize")
        return default
    elif isinstance(default, str):
        if default.strip().lower() in compute:
            return default.strip().lower()
        _quantize_key(p, target, default, where)
        return default
    else:
        form = "a mode name or {precision: ..., quantize: ...}" if compute else "a mode name"
        raise VitdeployError(f"{p}: {where} must be {form}, got {_show(default, True)}")


def _check_parity(p: Path, parity) -> dict:
    from .parity.tolerances import KEYS, PRESETS

    if not isinstance(parity, dict):
        raise VitdeployError(f"{p}: parity must map a precision preset ({', '.join(PRESETS)}) to tolerances")
    out = {}
    for preset, overrides in parity.items():
        if preset not in PRESETS:
            raise VitdeployError(f"{p}: unknown parity preset '{_show(preset)}'{did_you_mean(preset, PRESETS)}")
        overrides = {} if overrides is None else overrides
        if not isinstance(overrides, dict):
            raise VitdeployError(f"{p}: parity.{preset} must map tolerance names to numbers, "
                                 f"got {_show(overrides, True)}")
        _check_keys(p, overrides, KEYS, f" in parity.{preset}")
        out[preset] = {key: _tolerance(p, f"parity.{preset}.{key}", value) for key, value in overrides.items()}
    return out


def _tolerance(p: Path, where: str, value) -> float | None:
    """A finite number >= 0 (``None`` switches the check off); '1e-3', which YAML reads as text, counts."""
    if value is None:
        return None
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = float(value)
    if number is None or not math.isfinite(number):
        raise VitdeployError(f"{p}: {where} must be a number, got {_show(value, True)}")
    if number < 0:
        raise VitdeployError(f"{p}: {where} must not be negative, got {_show(value, True)}")
    if where.rsplit(".", 1)[-1] in _FRACTION_KEYS and number > 1:
        raise VitdeployError(f"{p}: {where} is a cosine or a fraction of images: at most 1, "
                             f"got {_show(value, True)}")
    return number


# Tolerances that are a cosine or a fraction, so a threshold above 1 could never pass.
_FRACTION_KEYS = ("cosine_min", "cosine_mean_min", "top1_min", "top5_min", "random_cosine_min")


def _derived(recipe: Recipe, key: str, given):
    """The recipe's value of ``key``; for a partial ``architecture``/``preprocessing`` mapping, just the keys given."""
    value = getattr(recipe, key)
    if isinstance(value, dict) and isinstance(given, dict):
        return {k: value.get(k) for k in given}
    return value


def _plain(value):
    """Lists for tuples, floats compared to 1e-9 relative, so YAML and dataclass values compare."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return float(f"{value:.9g}")
    return value


def load_recipes(directory: str | Path) -> list[Recipe]:
    d = Path(directory)
    with reading(d):
        files = sorted(d.glob("*.yaml")) + sorted(d.glob("*.yml"))
        if not files:
            raise VitdeployError(f"{d}: no recipe files (*.yaml)")
    return [load_recipe(f) for f in files]


def precision_class(target: str, precision: str, quantize: str) -> str:
    """Which parity tolerance preset an artifact of a recipe cell falls under (``quantize`` in any spelling)."""
    from .precisions import parse_call

    return parse_call(target, quantize, precision).parity_preset

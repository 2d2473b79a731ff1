"""The generated app helpers: ``VitdeployClassifier.swift`` / ``.kt`` from ``vitdeploy/templates``."""

from __future__ import annotations

import re
from importlib import resources

from ..errors import VitdeployError
from ..formats.executorch import COREML_BACKEND, RUNTIME_VERSION

SWIFT_HELPER = "VitdeployClassifier.swift"
KOTLIN_HELPER = "VitdeployClassifier.kt"
PACKAGE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")  # a Kotlin/Java package: fullmatch
SWIFT_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # fullmatch


def _template(name: str) -> str:
    return resources.files("vitdeploy").joinpath("templates", name).read_text(encoding="utf-8")


def _render(name: str, values: dict[str, str]) -> str:
    text = _template(name)
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    left = re.findall(r"@@[A-Z_]+@@", text)
    if left:
        raise RuntimeError(f"template {name} has unfilled fields {sorted(set(left))}")
    return text


# Every string that reaches generated code goes through one of these: names and labels come from the
# artifact (untrusted, like a checkpoint), so a quote, a backslash, a "$", a line break (CR, LF, U+2028/2029,
# NEL) or a NUL must never end a literal or a comment early.

_KOTLIN_HARD_KEYWORDS = frozenset(
    "as break class continue do else false for fun if in interface is null object package return super this "
    "throw true try typealias typeof val var when while".split())
SWIFT_RESERVED = frozenset(
    "associatedtype class deinit enum extension fileprivate func import init inout internal let open operator "
    "private precedencegroup protocol public rethrows static struct subscript typealias var break case catch "
    "continue default defer do else fallthrough for guard if in repeat return throw switch where while Any as "
    "await false is nil self Self super throws true try Type Protocol".split())


def _unicode_text(text: str, what: str) -> str:
    """``text``, refused when it holds a lone surrogate (a file name that is not UTF-8): no language escapes it."""
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        raise VitdeployError(f"{what} {text!r} is not valid Unicode (a file name that is not UTF-8); rename it")
    return text


def swift_string(text: str, what: str = "name") -> str:
    r"""A Swift string literal holding ``text`` exactly: ``\\ \" \n \r \t \0`` and ``\u{...}`` for every other
    character that is not printable (controls, U+2028/2029, NEL, format characters)."""
    out = []
    for c in _unicode_text(text, what):
        if c in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[c])
        elif c.isprintable():
            out.append(c)
        else:
            out.append(f"\\u{{{ord(c):X}}}")
    return '"' + "".join(out) + '"'


def kotlin_string(text: str, what: str = "name") -> str:
    r"""A Kotlin string literal holding ``text`` exactly: ``\\ \" \$ \n \r \t \b`` and ``\uXXXX`` (UTF-16
    units) for every other character that is not printable; ``$`` never starts a template."""
    out = []
    for c in _unicode_text(text, what):
        if c == "$":
            out.append("\\$")
        elif c == "\0":
            out.append("\\u0000")
        elif c in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[c])
        elif c == "\b":
            out.append("\\b")
        elif c.isprintable():
            out.append(c)
        else:
            data = c.encode("utf-16-be")
            out.extend(f"\\u{int.from_bytes(data[i:i + 2], 'big'):04X}" for i in range(0, len(data), 2))
    return '"' + "".join(out) + '"'


_SIMPLE_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}


def comment_text(text: str) -> str:
    r"""``text`` safe inside a ``//`` or ``/* */`` comment (Swift, Kotlin, Gradle) or a one-line README mention:
    every non-printable character (CR, LF, U+2028/2029, NEL, NUL, ...) as ``\\u{XXXX}``, ``*/`` and ``/*``
    broken apart."""
    shown = "".join(c if c.isprintable() else f"\\u{{{ord(c):04X}}}" for c in text)
    return shown.replace("*/", "*\u2215").replace("/*", "\u2215*")


def kotlin_package(name: str) -> str:
    """A Kotlin ``package`` header for ``name`` (dotted Java identifiers): hard keywords (``fun``, ``in``,
    ``object``, ... valid in a Java/Android namespace) are back-quoted. Raises VitdeployError otherwise."""
    if not isinstance(name, str) or not PACKAGE_NAME.fullmatch(name):
        raise VitdeployError(f"{name!r} is not a valid Kotlin package name")
    return ".".join(f"`{part}`" if part in _KOTLIN_HARD_KEYWORDS else part for part in name.split("."))


def swift_identifier(name: str, what: str = "model name") -> str:
    """``name`` when it is a Swift identifier Xcode can name a generated class after; else VitdeployError."""
    if not (isinstance(name, str) and SWIFT_IDENTIFIER.fullmatch(name)) or name in SWIFT_RESERVED:
        raise VitdeployError(f"{what} {name!r} is not a valid identifier (Xcode derives a Swift class from it); "
                             "rename the file to letters, digits and underscores, not starting with a digit "
                             "and not a Swift keyword")
    return name


def _crop_fraction(preprocessing: dict | None) -> float:
    """Share of the shorter side the centre crop keeps (``crop / resize``; 1.0 when unknown)."""
    if not preprocessing:
        return 1.0
    try:
        resize, crop = float(preprocessing["resize"]), float(preprocessing["crop"])
    except (KeyError, TypeError, ValueError):
        return 1.0
    return min(1.0, crop / resize) if resize > 0 and crop > 0 else 1.0


def swift_helper(info: dict, *, model_name: str, labels_resource: str | None, top_k: int) -> str:
    """Source of ``VitdeployClassifier.swift`` for a model described by :func:`inspect_mlpackage`."""
    units = ".cpuAndGPU" if info.get("precision") == "fp32" else ".all"
    return _render("VitdeployClassifier.swift.tmpl", {
        "MODEL_NAME": swift_string(swift_identifier(model_name)),
        "INPUT_NAME": swift_string(info["input_name"], "input name"),
        "LOGITS_OUTPUT": swift_string(info["logits_output"] or "", "output name"),
        "LABELS_RESOURCE": swift_string(labels_resource) if labels_resource else "nil",
        "INPUT_WIDTH": str(info["width"]),
        "INPUT_HEIGHT": str(info["height"]),
        "CROP_FRACTION": repr(float(_crop_fraction(info.get("preprocessing")))),
        "COMPUTE_UNITS": units,
        "TOP_K": str(top_k),
        "IS_CLASSIFIER": "true" if info["classifier"] else "false",
    })


def kotlin_helper(info: dict, *, package_name: str, model_asset: str, labels_asset: str | None, top_k: int,
                  executorch: bool = False) -> str:
    """Source of ``VitdeployClassifier.kt`` for a model described by :func:`inspect_tflite`, or with
    ``executorch`` for a .pte described by :func:`inspect_pte` (ExecuTorch Module): same fields, two templates."""
    return _render("VitdeployPteClassifier.kt.tmpl" if executorch else "VitdeployClassifier.kt.tmpl", {
        "PACKAGE": kotlin_package(package_name),
        "MODEL_ASSET": kotlin_string(model_asset),
        "MODEL_ASSET_PLAIN": comment_text(model_asset),
        "EXECUTORCH_VERSION": RUNTIME_VERSION,
        "LABELS_ASSET": kotlin_string(labels_asset) if labels_asset else "null",
        "INPUT_WIDTH": str(info["width"]),
        "INPUT_HEIGHT": str(info["height"]),
        "NUM_CLASSES": str(info["num_classes"]),
        "CROP_FRACTION": _float32_literal(_crop_fraction(info.get("preprocessing"))),
        "TOP_K": str(top_k),
    })


def _float32_literal(value: float) -> str:
    """Shortest Kotlin Float literal that round-trips (``0.8888889f``, not a double's 17 digits)."""
    import numpy as np

    text = np.format_float_positional(np.float32(value), unique=True, trim="0")
    return f"{text}f"


LINE_BREAKS = "\n\r"  # what the helpers' label readers split on (Kotlin readLines: LF, CR; Swift: LF)


def labels_text(labels: list[str]) -> bytes:
    """The labels resource the helpers read, one label per line. A label holding a line break (CR or LF)
    would shift every later class, and one that is not valid Unicode cannot be written: both refused."""
    for i, label in enumerate(labels):
        _unicode_text(label, f"label {i}")
        if any(c in LINE_BREAKS for c in label):
            raise VitdeployError(f"label {i} {label!r} holds a line break; the app reads labels one per line")
    return ("\n".join(labels) + "\n").encode("utf-8")


def swift_pte_helper(info: dict, *, model_file: str, labels_resource: str | None, top_k: int) -> str:
    """Source of ``VitdeployClassifier.swift`` for a .pte described by :func:`inspect_pte` (ExecuTorch Module)."""
    return _render("VitdeployPteClassifier.swift.tmpl", {
        "MODEL_FILE": swift_string(model_file),
        "MODEL_FILE_PLAIN": comment_text(model_file),
        "EXECUTORCH_VERSION": RUNTIME_VERSION,
        "COREML_PRODUCT": ", backend_coreml" if COREML_BACKEND in info["delegates"] else "",
        "LABELS_RESOURCE": swift_string(labels_resource) if labels_resource else "nil",
        "INPUT_WIDTH": str(info["width"]),
        "INPUT_HEIGHT": str(info["height"]),
        "NUM_CLASSES": str(info["num_classes"]),
        "CROP_FRACTION": repr(float(_crop_fraction(info.get("preprocessing")))),
        "TOP_K": str(top_k),
    })

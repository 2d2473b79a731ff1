"""The budget of a harness request/result file, before any field is read (a leaf).

A phone is not trusted: a broken or hostile harness writes anything. This is the JSON layer of the protocol
(docs/harness-protocol.md): at most so many bytes, read no further than that; UTF-8; nested no deeper than a
legitimate document; no duplicate keys; only finite numbers and integers of sane size; only Unicode strings.
Whatever breaks it is one line of :class:`ProtocolError` (exit 2), never an internal error.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from vitdeploy.errors import VitdeployError

REQUEST_MAX_BYTES = 1 << 20
RESULT_MAX_BYTES = 8 << 20  # latencies of 10^5 runs and a placement of 10^5 ops fit many times over
MAX_DEPTH = 16  # the deepest legitimate path is result > configs > [i] > op_placement > [j] > supported (6)
MAX_INT_DIGITS = 19


class ProtocolError(VitdeployError):
    """A request or result that does not follow docs/harness-protocol.md."""


def _short(v: Any, limit: int = 80) -> str:
    text = repr(v)
    return text if len(text) <= limit else text[:limit] + "..."


def read_capped(path: str | Path, cap: int, what: str) -> bytes:
    """The bytes of ``path``, refusing a file over ``cap`` bytes without reading more than ``cap + 1``."""
    with open(path, "rb") as f:
        data = f.read(cap + 1)
    if len(data) > cap:
        raise ProtocolError(f"{what}: larger than {cap} bytes")
    return data


def _depth_over(text: str, limit: int) -> bool:
    """Whether the JSON text nests arrays/objects deeper than ``limit`` -- decided before parsing (a
    recursive parser overflows on ``[[[[...``), in ``limit`` passes of C-speed regex: strings dropped, then
    innermost empty pairs removed once per level. Unbalanced brackets are left to the parser to report."""
    skeleton = re.sub(r"[^\[\]{}]", "", re.sub(r'"[^"\\]*(?:\\.[^"\\]*)*"', "", text))
    if re.search("[\\[{]{%d}" % (limit + 1), skeleton):  # the usual attack, [[[[..., in one scan
        return True
    for _ in range(limit):
        if not skeleton:
            return False
        reduced = re.sub(r"\[\]|\{\}", "", skeleton)
        if reduced == skeleton:
            return False  # unbalanced: not valid JSON, which json.loads says
        skeleton = reduced
    return bool(re.search(r"\[\]|\{\}", skeleton))


def _no_duplicates(pairs: list) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        dup = next(k for i, k in enumerate(keys) if k in keys[:i])
        raise ProtocolError(f"key {_short(dup)} appears twice in one object")
    return dict(pairs)


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ProtocolError(f"number {text[:40]} is out of range")
    return v


def _small_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ProtocolError(f"integer {text[:40]}... is out of range")
    return int(text)


def _not_a_number(text: str):
    raise ProtocolError(f"{text} is not a JSON number")


def _check_strings(v: Any) -> None:
    """Every string is Unicode a terminal and a report can hold (no lone surrogate from a ``\\ud800`` escape)."""
    todo = [v]
    while todo:
        x = todo.pop()
        if isinstance(x, str):
            try:
                x.encode("utf-8")
            except UnicodeEncodeError:
                raise ProtocolError("a string holds a lone UTF-16 surrogate (not Unicode text)") from None
        elif isinstance(x, dict):
            todo += list(x.keys()) + list(x.values())
        elif isinstance(x, list):
            todo += x


def parse_json(text: str | bytes, what: str, cap: int = RESULT_MAX_BYTES) -> Any:
    """A request/result document, within budget: at most ``cap`` bytes of UTF-8, nested at most MAX_DEPTH
    deep, no duplicate keys, no NaN/Infinity (nor 1e400), no integer over MAX_INT_DIGITS digits, no lone
    surrogate. Anything else is one line: ProtocolError("<what>: ...")."""
    try:
        if isinstance(text, (bytes, bytearray)):
            if len(text) > cap:
                raise ProtocolError(f"larger than {cap} bytes")
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as e:
                raise ProtocolError(f"not UTF-8 text (byte 0x{text[e.start]:02x} at offset {e.start})") from None
        elif len(text) > cap:
            raise ProtocolError(f"larger than {cap} bytes")
        if _depth_over(text, MAX_DEPTH):
            raise ProtocolError(f"nested deeper than {MAX_DEPTH} levels")
        try:
            doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_float=_finite_float,
                             parse_int=_small_int, parse_constant=_not_a_number)
        except json.JSONDecodeError as e:
            raise ProtocolError(f"not valid JSON ({e.msg} at line {e.lineno})") from None
        except RecursionError:
            raise ProtocolError(f"nested deeper than {MAX_DEPTH} levels") from None
        except ValueError as e:  # int() of a pathological literal
            raise ProtocolError(f"not valid JSON ({str(e)[:80]})") from None
        _check_strings(doc)
        return doc
    except ProtocolError as e:
        raise ProtocolError(f"{what}: {e}") from None

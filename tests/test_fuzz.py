"""Fuzz every reader of untrusted input through the CLI, with structured mutations (hypothesis, bounded).

Contract checked on every mutated input: exit 0 (the mutation left a valid file) or exit 2 with exactly one
line on stderr that starts with "error:" and names the file; never a traceback or an internal error (exit 3),
never code run from the file, never a half-written output. Mutations that must be detected (flipped tensor
bytes in a zip checkpoint, huge declared sizes) must exit 2. tools/fuzz_campaign.py runs the same properties
with a large example budget.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzz_seeds as F
from vitdeploy.cli import main

# Bounded for the normal suite: deterministic examples, no example database, no deadline (file I/O jitters).
FUZZ = settings(max_examples=int(os.environ.get("VITDEPLOY_FUZZ_EXAMPLES", "12")), deadline=None,
                derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


def cli(*args) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def stderr_lines(stderr: str) -> list[str]:
    # LiteRT's C++ runtime prints "INFO: Created TensorFlow Lite XNNPACK delegate" itself: not vitdeploy's line.
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("INFO: ")]


def assert_contract(code: int, stderr: str, names: list[Path], must_fail: bool = False) -> None:
    """Exit 0, or exit 2 with one "error:" line naming one of ``names``; never a traceback."""
    assert "Traceback" not in stderr, stderr
    assert code in ((2,) if must_fail else (0, 2)), f"exit {code}: {stderr}"
    if code == 2:
        lines = stderr_lines(stderr)
        assert len(lines) == 1 and lines[0].startswith("error: "), stderr
        assert any(p.name in lines[0] for p in names), f"{lines[0]!r} names none of {[p.name for p in names]}"


def mutated_copy(seed: Path, data: bytes, tmp: Path) -> Path:
    path = tmp / seed.name
    path.write_bytes(data)
    return path


def fuzz_inspect(seed: Path, data: bytes, bounds) -> None:
    """`vitdeploy inspect` on byte mutations of ``seed`` (cut/flipped at ``bounds``): the exit contract holds."""

    @FUZZ
    @given(mutated=byte_mutation(data, bounds))
    def check(mutated):
        with tempfile.TemporaryDirectory() as tmp:
            path = mutated_copy(seed, mutated, Path(tmp))
            code, _, err = cli("inspect", path)
            assert_contract(code, err, [path])

    check()


# ----------------------------------------------------------------------------- byte-level mutations


@st.composite
def byte_mutation(draw, data: bytes, boundaries: list[int]):
    """Truncation at a structure boundary (+- a few bytes), bit flips, a garbage splice or a zeroed range."""
    kind = draw(st.sampled_from(["truncate", "flip", "splice", "zero"]))
    n = len(data)
    if kind == "truncate":
        cut = draw(st.sampled_from(boundaries)) + draw(st.integers(-3, 3))
        return data[:max(0, min(n - 1, cut))]
    if kind == "flip":
        positions = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=8))
        return F.flip_bits(data, positions, draw(st.sampled_from([0x01, 0x10, 0x80, 0xFF])))
    start = draw(st.sampled_from(boundaries + [draw(st.integers(0, n - 1))]))
    if kind == "splice":
        junk = draw(st.binary(min_size=1, max_size=64))
        return data[:start] + junk + data[start + len(junk):]
    length = draw(st.integers(1, 512))
    return data[:start] + b"\x00" * min(length, max(0, n - start)) + data[start + length:]


# ----------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("fmt", ["pth", "legacy", "bin", "safetensors"])
def test_fuzz_checkpoint_files(seeds, fmt):
    seed = seeds[fmt]
    data = seed.read_bytes()
    bounds = F.safetensors_boundaries(data) if fmt == "safetensors" else F.zip_boundaries(data)
    fuzz_inspect(seed, data, bounds)


def test_fuzz_flipped_tensor_bytes_in_zip_checkpoint_are_caught(seeds, tmp_path):
    """torch's zip reader does not check CRC-32: vitdeploy must, so corrupted weights never load silently."""
    seed = seeds["pth"]
    data = seed.read_bytes()
    spans = [s for s in F.tensor_data_spans(data) if s[1] - s[0] > 64]

    @FUZZ
    @given(span=st.sampled_from(spans), offset=st.floats(0, 1), length=st.integers(1, 4096))
    def check(span, offset, length):
        start = span[0] + int(offset * (span[1] - span[0] - 1))
        mutated = F.flip_bits(data, list(range(start, min(span[1], start + length))))
        with tempfile.TemporaryDirectory() as tmp:
            path = mutated_copy(seed, mutated, Path(tmp))
            code, _, err = cli("inspect", path)
            assert_contract(code, err, [path], must_fail=True)
            assert "CRC" in err or "corrupt" in err, err

    check()


def test_zip_entries_that_lie_about_their_size(seeds, tmp_path):
    data = seeds["pth"].read_bytes()
    import io
    import zipfile

    infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
    largest = max(range(len(infos)), key=lambda i: infos[i].file_size)
    for index in sorted({0, 1, largest, len(infos) - 1}):  # the pickle, a 1-byte record, a tensor, the last
        info = infos[index]
        for size in {0, 1, info.file_size + 1, 2**32 - 1} - {info.file_size}:  # every size but the true one
            path = tmp_path / f"lie{index}_{size}.pth"
            path.write_bytes(F.rewrite_zip_sizes(data, index, size))
            code, _, err = cli("inspect", path)
            assert_contract(code, err, [path], must_fail=True)


def test_safetensors_huge_declared_sizes(seeds, tmp_path):
    data = seeds["safetensors"].read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    name = next(k for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32" and len(v["shape"]) > 1)
    cases = {"header_len": struct.pack("<Q", 2**62) + data[8:]}
    for field, value in (("shape", [2**40, 2**20]), ("data_offsets", [0, 2**60]), ("dtype", "F99"),
                         ("shape", [-1]), ("dtype", "I64")):
        h = dict(header)
        h[name] = dict(h[name], **{field: value})
        blob = json.dumps(h).encode()
        cases[f"{field}={value}"] = struct.pack("<Q", len(blob)) + blob + data[8 + n:]
    for label, blob in cases.items():
        path = tmp_path / "model.safetensors"
        path.write_bytes(blob)
        code, _, err = cli("inspect", path)
        assert code == 2, (label, err)
        assert_contract(code, err, [path], must_fail=True)


@pytest.mark.parametrize("case", ["config_garbage", "config_binary", "config_dir", "weights_dir",
                                  "weights_symlink_loop", "weights_empty", "no_weights"])
def test_hf_directory_mutations(seeds, tmp_path, case):
    hf = tmp_path / "hf"
    shutil.copytree(seeds["hf"], hf)
    weights, config = hf / "model.safetensors", hf / "config.json"
    if case == "config_garbage":
        config.write_text("{not json")
    elif case == "config_binary":
        config.write_bytes(b"\xff\xfe\x00garbage")
    elif case == "config_dir":
        config.unlink()
        config.mkdir()
    elif case == "weights_dir":
        weights.unlink()
        weights.mkdir()
    elif case == "weights_symlink_loop":
        weights.unlink()
        os.symlink(weights.name, weights)
    elif case == "weights_empty":
        weights.write_bytes(b"")
    else:
        weights.unlink()
    code, _, err = cli("inspect", hf)
    assert_contract(code, err, [hf], must_fail=case != "config_dir")


def test_pickle_that_runs_code_is_refused_and_never_run(tmp_path):
    path = tmp_path / "evil.pth"
    path.write_bytes(F.evil_pickle(tmp_path))
    code, _, err = cli("inspect", path)
    assert_contract(code, err, [path], must_fail=True)
    assert not (tmp_path / F.PWNED_MARKER).exists()


@FUZZ
@given(payload=st.binary(max_size=256), name=st.sampled_from(["model.pth", "w.pt", "w.bin", "m.safetensors",
                                                              "w.ckpt"]))
def test_fuzz_random_bytes_as_checkpoint(payload, name):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(payload)
        code, _, err = cli("inspect", path)
        assert_contract(code, err, [path], must_fail=True)


def test_text_file_named_pth_is_one_line(tmp_path):
    path = tmp_path / "model.pth"
    path.write_text("hello, I am not a checkpoint\n" * 10)
    code, _, err = cli("inspect", path)
    assert_contract(code, err, [path], must_fail=True)
    assert "not a readable PyTorch checkpoint" in err


# ----------------------------------------------------------------------------- inputs: images, .npy


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_fuzz_images(seeds, fmt):
    seed = seeds[fmt]
    data = seed.read_bytes()

    @FUZZ
    @given(mutated=byte_mutation(data, [0, 8, 16, 33, 64, len(data) // 2, len(data)]))
    def check(mutated):
        with tempfile.TemporaryDirectory() as tmp:
            path = mutated_copy(seed, mutated, Path(tmp))
            out = Path(tmp) / "logits.npy"
            code, _, err = cli("predict", seeds["tflite"], path, "--save-logits", out)
            assert_contract(code, err, [path])
            assert code == 0 or not out.exists()  # nothing half-written

    check()


def test_image_declaring_a_huge_size(seeds, tmp_path):
    for w, h in ((100000, 100000), (2**31 - 1, 1), (0, 10)):
        path = tmp_path / f"huge_{w}x{h}.png"
        path.write_bytes(F.png_with_size(w, h))
        code, _, err = cli("predict", seeds["tflite"], path)
        assert_contract(code, err, [path], must_fail=True)


@st.composite
def npy_mutation(draw):
    shape = draw(st.sampled_from([(1, 3, 16, 16), (2, 3, 16, 16), (3, 16, 16), (1, 3, 15, 16), (0, 3, 16, 16),
                                  (2**40, 3, 16, 16), (1,), ()]))
    descr = draw(st.sampled_from(["<f4", "<f8", "<f2", "<i4", "|u1", "<c8", "|O", "|b1", ">f4",
                                  "[('a', '<f4')]", "<U4", "|V16"]))
    payload_len = draw(st.sampled_from([0, 4, 3072, 6144, 12288]))
    fill = draw(st.sampled_from([b"\x00", b"\xff", b"\x7f\x80\x00\x00"]))  # 0, NaN bytes, +inf float32
    return F.npy_with_header(shape, descr, (fill * payload_len)[:payload_len])


@FUZZ
@given(blob=npy_mutation())
def test_fuzz_npy_batches(blob, request):
    seeds = request.getfixturevalue("seeds")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "batch.npy"
        path.write_bytes(blob)
        out = Path(tmp) / "logits.npy"
        code, _, err = cli("predict", seeds["tflite"], path, "--save-logits", out)
        assert_contract(code, err, [path])
        assert code == 0 or not out.exists()


def test_fuzz_npy_byte_mutations(seeds):
    data = seeds["npy"].read_bytes()

    @FUZZ
    @given(mutated=byte_mutation(data, [0, 6, 8, 10, 64, 128, len(data)]))
    def check(mutated):
        with tempfile.TemporaryDirectory() as tmp:
            path = mutated_copy(seeds["npy"], mutated, Path(tmp))
            code, _, err = cli("predict", seeds["tflite"], path)
            assert_contract(code, err, [path])

    check()


# ----------------------------------------------------------------------------- artifacts


def test_fuzz_tflite(seeds):
    seed = seeds["tflite"]
    data = seed.read_bytes()
    fuzz_inspect(seed, data, [0, 4, 8, 16, 32, len(data) // 4, len(data) // 2, len(data)])


def test_tflite_that_crashes_litert_is_one_line(seeds, tmp_path):
    """Found by tools/fuzz_campaign.py: one zeroed byte in the root table's offsets and LiteRT's loader
    dereferences garbage (SIGSEGV, the whole process gone). vitdeploy probes a file in a child process first."""
    data = bytearray(seeds["tflite"].read_bytes())
    data[16] = 0
    path = tmp_path / "tiny.tflite"
    path.write_bytes(bytes(data))
    code, _, err = cli("inspect", path)
    assert_contract(code, err, [path])


MLPACKAGE_PARTS = ["Manifest.json", "Data/com.apple.CoreML/model.mlmodel",
                   "Data/com.apple.CoreML/weights/weight.bin"]


def test_fuzz_mlpackage(seeds):
    seed = seeds["mlpackage"]

    @FUZZ
    @given(part=st.sampled_from(MLPACKAGE_PARTS), data=st.data())
    def check(part, data):
        with tempfile.TemporaryDirectory() as tmp:
            pkg = Path(tmp) / seed.name
            shutil.copytree(seed, pkg)
            blob = (pkg / part).read_bytes()
            bounds = [0, 1, 8, 64, len(blob) // 2, len(blob)]
            (pkg / part).write_bytes(data.draw(byte_mutation(blob, bounds)) if blob else b"x")
            code, _, err = cli("inspect", pkg)
            assert_contract(code, err, [pkg])

    check()


@pytest.mark.parametrize("case", ["no_manifest", "no_model", "no_weights", "model_dir", "empty_dir", "a_file",
                                  "symlink_loop"])
def test_mlpackage_structure(seeds, tmp_path, case):
    pkg = tmp_path / seeds["mlpackage"].name
    if case == "a_file":
        pkg.write_bytes(b"not a package")
    elif case == "empty_dir":
        pkg.mkdir()
    elif case == "symlink_loop":
        os.symlink(pkg.name, pkg)
    else:
        shutil.copytree(seeds["mlpackage"], pkg)
        target = pkg / {"no_manifest": MLPACKAGE_PARTS[0], "no_model": MLPACKAGE_PARTS[1],
                        "no_weights": MLPACKAGE_PARTS[2], "model_dir": MLPACKAGE_PARTS[1]}[case]
        target.unlink()
        if case == "model_dir":
            target.mkdir()
    code, _, err = cli("inspect", pkg)
    assert_contract(code, err, [pkg], must_fail=True)


# ----------------------------------------------------------------------------- recipes and labels


yaml_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=3),
                           max_leaves=8)


@st.composite
def recipe_mutation(draw, text: str):
    import yaml

    kind = draw(st.sampled_from(["bytes", "field", "drop"]))
    if kind == "bytes":
        data = text.encode()
        return draw(byte_mutation(data, [0, len(data) // 3, len(data) // 2, len(data)]))
    doc = yaml.safe_load(text)
    key = draw(st.sampled_from(sorted(doc)))
    if kind == "drop":
        doc.pop(key)
    else:
        doc[key] = draw(yaml_values)
    return yaml.safe_dump(doc).encode()


def test_fuzz_recipes(seeds):
    seed = seeds["recipe"]

    @FUZZ
    @given(blob=recipe_mutation(seed.read_text()))
    def check(blob):
        with tempfile.TemporaryDirectory() as tmp:
            path = mutated_copy(seed, blob, Path(tmp))
            empty = Path(tmp) / "empty.pth"  # a valid recipe gets this far, and stops here in milliseconds
            empty.write_bytes(b"")
            code, _, err = cli("convert", empty, "--target", "tflite", "--recipe", path, "-o", Path(tmp) / "o.tflite")
            assert_contract(code, err, [path, empty], must_fail=True)
            assert not (Path(tmp) / "o.tflite").exists()

    check()


def test_fuzz_eval_labels_file(seeds):
    @FUZZ
    @given(blob=st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
    def check(blob):
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "data"
            shutil.copytree(seeds["data"], data)
            (data / "labels.txt").write_bytes(blob)
            code, _, err = cli("eval", seeds["tflite"], "--data", data)
            assert_contract(code, err, [data / "labels.txt", data])

    check()


def test_eval_labels_file_is_a_directory(seeds, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(seeds["data"], data)
    (data / "labels.txt").unlink()
    (data / "labels.txt").mkdir()
    code, _, err = cli("eval", seeds["tflite"], "--data", data)
    assert_contract(code, err, [data / "labels.txt"], must_fail=True)


def test_seeds_are_valid(seeds, tmp_path):
    """The mutations start from inputs that pass: a failure above is the mutation's doing."""
    for key in ("pth", "legacy", "bin", "safetensors", "hf", "tflite", "mlpackage"):
        code, _, err = cli("inspect", seeds[key])
        assert code == 0, (key, err)
    code, _, err = cli("predict", seeds["tflite"], seeds["png"], seeds["jpg"])
    assert code == 0, err
    code, _, err = cli("predict", seeds["mlpackage"], seeds["npy"])
    assert code == 0, err
    code, _, err = cli("eval", seeds["tflite"], "--data", seeds["data"])
    assert code == 0, err


# ----------------------------------------------------------------------------- issue 28: structure, modes, results
# The surfaces around the byte-level readers: what an .mlpackage folder holds (links, special files, manifest
# paths), images of every PIL mode and odd sizes, and the result file a phone writes.

PACKAGE_EDITS = ("link_out", "link_in", "link_dir", "fifo", "manifest_dotdot", "manifest_absolute",
                 "manifest_missing", "deep", "many", "manifest_list")


@st.composite
def package_tree_edit(draw):
    """One structural edit of an .mlpackage (and where), as data, so the campaign can replay it."""
    return {"edit": draw(st.sampled_from(PACKAGE_EDITS)), "part": draw(st.sampled_from(MLPACKAGE_PARTS)),
            "n": draw(st.integers(1, 64))}


def apply_package_edit(pkg: Path, edit: dict, outside: Path) -> None:
    """Apply a :func:`package_tree_edit` to the package copy ``pkg``; ``outside`` is a file beyond it."""
    kind, part = edit["edit"], pkg / edit["part"]
    manifest = pkg / "Manifest.json"
    doc = json.loads(manifest.read_text())
    item = next(iter(doc["itemInfoEntries"].values()))
    if kind in ("link_out", "link_in"):
        part.unlink()
        os.symlink(outside if kind == "link_out" else pkg / "Manifest.json", part)
    elif kind == "link_dir":
        os.symlink(outside.parent, pkg / "Data" / "elsewhere")
    elif kind == "fifo":
        part.unlink()
        os.mkfifo(part)
    elif kind.startswith("manifest_") and kind != "manifest_list":
        item["path"] = {"manifest_dotdot": "../" * edit["n"] + "etc/passwd", "manifest_absolute": str(outside),
                        "manifest_missing": "com.apple.CoreML/nothing.mlmodel"}[kind]
        manifest.write_text(json.dumps(doc))
    elif kind == "manifest_list":
        manifest.write_text(json.dumps([doc] * edit["n"]))
    elif kind == "deep":
        (pkg / "Data" / Path(*["d"] * (12 + edit["n"] % 8))).mkdir(parents=True)
    elif kind == "many":
        extra = pkg / "Data" / "extra"
        extra.mkdir()
        for i in range(1000 + edit["n"]):
            (extra / f"{i}").touch()


def test_fuzz_mlpackage_structure(seeds):
    """inspect and package refuse every structural edit in one line (exit 2): nothing outside is read or copied."""
    seed = seeds["mlpackage"]

    @FUZZ
    @given(edit=package_tree_edit())
    def check(edit):
        with tempfile.TemporaryDirectory() as tmp:
            pkg, outside = Path(tmp) / seed.name, Path(tmp) / "secret.txt"
            outside.write_text("secret")
            shutil.copytree(seed, pkg)
            apply_package_edit(pkg, edit, outside)
            for args in (("inspect", pkg), ("package", pkg, "--platform", "ios", "-o", Path(tmp) / "app")):
                code, _, err = cli(*args)
                assert_contract(code, err, [pkg], must_fail=True)
            assert not (Path(tmp) / "app").exists()

    check()


IMAGE_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "I", "I;16", "F", "HSV")


@st.composite
def odd_image(draw):
    """An image of any PIL mode, with an extreme size or aspect and values over the mode's whole range."""
    mode = draw(st.sampled_from(IMAGE_MODES))
    w = draw(st.sampled_from([1, 2, 7, 64, 300, 5000, 20000]))
    h = draw(st.sampled_from([1, 2, 7, 64, 300]))
    fmt = draw(st.sampled_from(["png", "tiff", "bmp", "jpeg", "webp"]))
    peak = draw(st.sampled_from([0.0, 1.0, 255.0, 65535.0, 1e30, -1.0, float("nan")]))
    return {"mode": mode, "size": (w, h) if draw(st.booleans()) else (h, w), "format": fmt, "peak": peak}


def write_odd_image(spec: dict, folder: Path) -> Path | None:
    """The image ``spec`` describes, or None where PIL cannot write that mode in that format."""
    from PIL import Image

    w, h = spec["size"]
    grid = np.linspace(0, 1, w * h, dtype=np.float64).reshape(h, w)
    try:
        if spec["mode"] in ("I", "F", "I;16"):
            values = np.nan_to_num(grid * spec["peak"], nan=0.0) if spec["mode"] != "F" else grid * spec["peak"]
            dtype = {"I": np.int32, "F": np.float32, "I;16": np.uint16}[spec["mode"]]
            info = np.iinfo(dtype) if dtype != np.float32 else None
            if info is not None:
                values = np.clip(values, info.min, info.max)
            im = Image.fromarray(values.astype(dtype), mode=None if spec["mode"] != "I;16" else "I;16")
        else:
            im = Image.new(spec["mode"], (w, h))
        path = folder / f"odd.{spec['format']}"
        im.save(path)
        return path
    except (OSError, ValueError, KeyError, TypeError):
        return None


def test_fuzz_image_modes_and_sizes(seeds):
    """predict on every mode and extreme size: a class from a faithfully converted image, or one line (exit 2)."""

    @FUZZ
    @given(spec=odd_image())
    def check(spec):
        with tempfile.TemporaryDirectory() as tmp:
            path = write_odd_image(spec, Path(tmp))
            if path is None:
                return
            code, _, err = cli("predict", seeds["tflite"], path)
            assert_contract(code, err, [path])

    check()


@st.composite
def result_mutation(draw, text: str):
    """A harness result file edited where a hostile or broken phone would: a value replaced by any JSON value
    (or a non-JSON number), a key duplicated, nesting, size, bytes that are not UTF-8."""
    doc = json.loads(text)
    kind = draw(st.sampled_from(["value", "raw_number", "duplicate", "nest", "huge_string", "bytes"]))
    if kind == "value":
        paths = list(_json_paths(doc))
        path = draw(st.sampled_from(paths))
        value = draw(yaml_values | st.floats(allow_nan=False, allow_infinity=False, width=64))
        _json_set(doc, path, value)
        return json.dumps(doc).encode()
    if kind == "raw_number":
        bad = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "1" + "0" * 400, "-0"]))
        return json.dumps(doc).replace("1.0", bad, 1).encode()
    if kind == "duplicate":
        return json.dumps(doc).replace('"status": "ok"', '"status": "ok", "status": "error"', 1).encode()
    if kind == "nest":
        depth = draw(st.integers(10, 5000))
        doc["device"]["extra"] = None
        return json.dumps(doc).replace("null", "[" * depth + "]" * depth, 1).encode()
    if kind == "huge_string":
        doc["error"] = "x" * draw(st.sampled_from([501, 100_000, 9_000_000]))
        return json.dumps(doc).encode()
    return json.dumps(doc).encode().replace(b'"ok"', b'"o\xff\xfek"', 1)


def _json_paths(node, prefix=()):
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        yield from _json_paths(v, prefix + (k,))


def _json_set(doc, path, value):
    if not path:
        return
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value


def valid_result(req) -> str:
    """A well-formed harness result for ``req`` (the seed the mutations start from)."""
    configs = [{**c, "status": "ok", "error": None, "load_ms": 1.0, "init_ms": 2.0, "first_inference_ms": 3.0,
                "latencies_ms": [1.0] * req.runs, "peak_memory_kb": 100,
                "outputs": [{"file": f"{c['name']}.output0.bin", "shape": [1, 10], "dtype": "float32"}],
                "op_placement": None} for c in req.configs()]
    return json.dumps({"protocol": "vitdeploy-harness", "version": 1, "request_id": req.request_id, "status": "ok",
                       "error": None, "device": {"platform": req.platform, "model": "Pixel 7", "sdk": 34},
                       "configs": configs})


def harness_request():
    from vitdeploy.devices.protocol import HarnessRequest, TensorFile

    return HarnessRequest(platform="android", model="m.tflite", inputs=[TensorFile("input0.bin", [1, 3, 8, 8])],
                          compute_units=["xnnpack", "gpu"], runs=3, warmup=1, threads=[1, 4], request_id="r1")


def check_result_contract(blob: bytes, req, tmp: Path) -> None:
    """A result file is accepted (then every number in it is finite, in range and as requested) or refused
    with one line of ProtocolError; never any other exception."""
    import math

    from vitdeploy.devices.protocol import HarnessResult, ProtocolError

    path = tmp / "result.json"
    path.write_bytes(blob)
    try:
        result = HarnessResult.read(path, req)
    except ProtocolError as e:
        assert "\n" not in str(e) and len(str(e)) < 2000, str(e)[:300]
        return
    requested = {(c["compute_unit"], c["threads"]) for c in req.configs()}
    for c in result.configs:
        assert (c.compute_unit, c.threads) in requested
        assert all(isinstance(x, float) and math.isfinite(x) and x > 0 for x in c.latencies_ms)
        assert len(c.latencies_ms) <= req.runs


def test_fuzz_harness_result_file(tmp_path):
    req = harness_request()
    seed = valid_result(req)

    @FUZZ
    @given(blob=result_mutation(seed))
    def check(blob):
        check_result_contract(blob, req, tmp_path)

    check()

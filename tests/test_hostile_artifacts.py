"""Issue 28: an artifact is untrusted input, like a checkpoint.

Two defect classes: ``package`` / ``inspect`` must not leave an .mlpackage's folder (links, special files,
Manifest paths out of ``Data/``), and names/labels from an artifact must not inject code into the generated
Swift/Kotlin helpers, the Xcode project or the labels resource. Every hostile case: exit 2, one line on
stderr naming the package, no traceback, nothing written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from fuzz_seeds import deadline
from click.testing import CliRunner

from vitdeploy.cli import main
from vitdeploy.errors import VitdeployError
from vitdeploy.packaging import codegen
from vitdeploy.packaging.codegen import kotlin_helper, labels_text, swift_helper, swift_pte_helper

# Strings an artifact can carry in a file name, an input/output name or a label.
HOSTILE = ["a\rfun pwned() = Runtime.getRuntime().exec(\"id\")\r//", "a\nimport evil\n", 'a"b', "a\\b", "a$b",
           "a${System.exit(1)}", "a*/b/*c", "</string><key>x</key>", "a\u2028b\u2029c", "a\x00b", "a\x85b\x0bc",
           "a\\(evil())", "é😀"]





def run_cli(args: list[str]):
    with deadline(120):
        result = CliRunner().invoke(main, args, catch_exceptions=False)
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("INFO: ")]
    return result, lines


def assert_refused(args: list[str], name: str):
    result, lines = run_cli(args)
    assert "Traceback" not in result.output
    assert result.exit_code == 2, (args, result.output)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert name in lines[0], lines[0]
    return lines[0]


# ----------------------------------------------------------------------------- .mlpackage trees


@pytest.fixture(scope="module")
def image_package(tmp_path_factory) -> Path:
    """A tiny ML Program with an image input and vitdeploy's metadata: ``inspect`` and ``package`` both accept it."""
    ct = pytest.importorskip("coremltools")
    import torch

    from fuzz_seeds import _tiny_config, tiny_torch_model
    from vitdeploy.formats.coreml import METADATA_KEY

    traced = torch.jit.trace(tiny_torch_model(), torch.rand(1, 3, 16, 16))
    image = ct.ImageType(name="image", shape=(1, 3, 16, 16), scale=1 / 255, bias=[0, 0, 0],
                         color_layout=ct.colorlayout.RGB)
    model = ct.convert(traced, inputs=[image], outputs=[ct.TensorType(name="logits")], convert_to="mlprogram",
                       minimum_deployment_target=ct.target.iOS16)
    model.user_defined_metadata[METADATA_KEY] = json.dumps(_tiny_config("image", [1, 3, 16, 16], "image"))
    path = tmp_path_factory.mktemp("hostile_coreml") / "Tiny.mlpackage"
    model.save(str(path))
    return path


def _root_entry(pkg: Path, value: str) -> None:
    manifest = json.loads((pkg / "Manifest.json").read_text())
    manifest["itemInfoEntries"][manifest["rootModelIdentifier"]]["path"] = value
    (pkg / "Manifest.json").write_text(json.dumps(manifest))


def _deep(pkg: Path) -> None:
    folder = pkg / "Data"
    for _ in range(40):
        folder = folder / "d"
    folder.mkdir(parents=True)


# name -> (mutation of a copy of a valid package, the member the one-line refusal names)
TREE_CASES = {
    "symlink_to_file": (lambda p: os.symlink("/etc/hostname", p / "Data" / "com.apple.CoreML" / "extra"), "extra"),
    "symlink_to_dir": (lambda p: os.symlink("/etc", p / "Data" / "etc"), "Data/etc"),
    "symlink_replaces_model": (lambda p: (os.rename(p / "Data/com.apple.CoreML/model.mlmodel", p / "real.mlmodel"),
                                          os.symlink("../../real.mlmodel", p / "Data/com.apple.CoreML/model.mlmodel")),
                               "model.mlmodel"),
    "symlink_manifest": (lambda p: (os.rename(p / "Manifest.json", p / "Data" / "m.json"),
                                    os.symlink("Data/m.json", p / "Manifest.json")), "Manifest.json"),
    "link_loop": (lambda p: os.symlink("loop", p / "Data" / "loop"), "Data/loop"),
    "fifo_member": (lambda p: os.mkfifo(p / "Data" / "com.apple.CoreML" / "weights" / "pipe"), "pipe"),
    "fifo_manifest": (lambda p: ((p / "Manifest.json").unlink(), os.mkfifo(p / "Manifest.json")), "Manifest.json"),
    "manifest_dotdot": (lambda p: _root_entry(p, "../../../../../../etc/hostname"), "../../"),
    "manifest_inner_dotdot": (lambda p: _root_entry(p, "com.apple.CoreML/../../Manifest.json"), "/../"),
    "manifest_absolute": (lambda p: _root_entry(p, "/etc/hostname"), "/etc/hostname"),
    "manifest_missing_target": (lambda p: _root_entry(p, "com.apple.CoreML/absent.mlmodel"), "absent.mlmodel"),
    "manifest_root_is_dir": (lambda p: _root_entry(p, "com.apple.CoreML/weights"), "weights"),
    "manifest_huge": (lambda p: (p / "Manifest.json").write_bytes(b" " * (2 << 20) + b"{}"), "Manifest.json"),
    "manifest_not_json": (lambda p: (p / "Manifest.json").write_bytes(b"\xff\x00{not json"), "Manifest.json"),
    "manifest_not_object": (lambda p: (p / "Manifest.json").write_text("[1, 2]"), "itemInfoEntries"),
    "deep_nesting": (_deep, "nested more than"),
    "many_files": (lambda p: [(p / "Data" / f"f{i}").write_bytes(b"") for i in range(1100)], "more than"),
    "member_name_with_newline": (lambda p: os.symlink("/etc/hostname", p / "Data" / "x\ny"), "x\\ny"),
}


@pytest.fixture()
def hostile(image_package, tmp_path, request) -> Path:
    pkg = tmp_path / "in" / image_package.name
    shutil.copytree(image_package, pkg)
    TREE_CASES[request.param][0](pkg)
    return pkg


@pytest.mark.parametrize("hostile", list(TREE_CASES), indirect=True)
@pytest.mark.parametrize("command", ["inspect", "package"])
def test_hostile_package_tree_is_refused(hostile, command, tmp_path, request):
    case = request.node.callspec.params["hostile"]
    out = tmp_path / "out"
    args = ["inspect", str(hostile)] if command == "inspect" else ["package", str(hostile), "-o", str(out)]
    line = assert_refused(args, hostile.name)
    assert TREE_CASES[case][1] in line, line
    assert not out.exists()  # nothing half-written


def test_valid_package_and_a_link_to_it_are_accepted(image_package, tmp_path):
    """The control: the fixture itself inspects and packages. A link *to* the package folder (the name the
    user typed) is followed once -- the folder it names is checked like any other; links inside never are."""
    link = tmp_path / "Linked.mlpackage"
    link.symlink_to(image_package, target_is_directory=True)
    for pkg in (image_package, link):
        result, _ = run_cli(["inspect", str(pkg)])
        assert result.exit_code == 0, result.output
        result, _ = run_cli(["package", str(pkg), "-o", str(tmp_path / f"out_{pkg.stem}")])
        assert result.exit_code == 0, result.output
        copied = tmp_path / f"out_{pkg.stem}" / pkg.name
        assert copied.is_dir() and not copied.is_symlink()
        assert all(not p.is_symlink() for p in copied.rglob("*"))


def test_every_mlpackage_reader_checks_the_tree(image_package, tmp_path):
    """formats.coreml.read_config, the runner, the MIL program loader, parity's precision and packaging's
    inspect all refuse a package whose root model is a link out of it (before coremltools reads it)."""
    from vitdeploy.formats.coreml import read_config
    from vitdeploy.packaging.inspect import inspect_mlpackage
    from vitdeploy.parity.precision import artifact_precision
    from vitdeploy.runtimes.coreml import CoreMLRunner
    from vitdeploy.runtimes.mil import MILInterpreter, load_program, op_counts

    pkg = tmp_path / "Evil.mlpackage"
    shutil.copytree(image_package, pkg)
    outside = tmp_path / "outside.mlmodel"
    os.rename(pkg / "Data/com.apple.CoreML/model.mlmodel", outside)
    os.symlink(outside, pkg / "Data/com.apple.CoreML/model.mlmodel")
    readers = [read_config, CoreMLRunner, load_program, op_counts, MILInterpreter.load, artifact_precision,
               inspect_mlpackage]
    for reader in readers:
        with pytest.raises(VitdeployError, match="symbolic link"):
            reader(pkg)


def test_copy_and_digest_never_follow_links(tmp_path):
    from vitdeploy.packaging.files import copy_tree_atomically, tree_digest

    plain, linked = tmp_path / "plain", tmp_path / "linked"
    for root in (plain, linked):
        (root / "Data").mkdir(parents=True)
        (root / "Data" / "a.bin").write_bytes(b"weights")
    (plain / "Data" / "host").write_bytes(Path("/etc/hostname").read_bytes())
    os.symlink("/etc/hostname", linked / "Data" / "host")
    os.mkfifo(tmp_path / "pipe")
    os.symlink(tmp_path / "pipe", linked / "Data" / "pipe_link")
    with deadline(30):
        assert tree_digest(linked) != tree_digest(plain)  # a link is hashed as a link, its target never read
    with pytest.raises(VitdeployError, match="symbolic link"):
        copy_tree_atomically(linked, tmp_path / "dest" / "linked")
    assert not (tmp_path / "dest" / "linked").exists()
    copy_tree_atomically(plain, tmp_path / "dest" / "plain")
    assert tree_digest(tmp_path / "dest" / "plain") == tree_digest(plain)


# ----------------------------------------------------------------------------- single-file artifacts


@pytest.mark.parametrize("suffix", [".tflite", ".pte"])
@pytest.mark.parametrize("kind", ["fifo", "dev_zero_link", "fifo_link"])
@pytest.mark.parametrize("command", ["inspect", "package"])
def test_special_file_artifact_is_refused_without_hanging(suffix, kind, command, tmp_path):
    path = tmp_path / f"model{suffix}"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_zero_link":
        os.symlink("/dev/zero", path)
    else:
        os.mkfifo(tmp_path / "pipe")
        os.symlink(tmp_path / "pipe", path)
    out = tmp_path / "out"
    args = (["inspect", str(path)] if command == "inspect"
            else ["package", str(path), "--platform", "android", "-o", str(out)])
    assert_refused(args, path.name)
    assert not out.exists()


# ----------------------------------------------------------------------------- generated code


def decode_kotlin_literal(literal: str) -> str:
    """The value of a Kotlin string literal; raises on a template (``$x``, ``${``), an invalid escape or a raw
    line break -- what would make the literal mean something else than a constant."""
    assert literal[0] == literal[-1] == '"', literal
    body, out, i = literal[1:-1], [], 0
    simple = {"t": "\t", "b": "\b", "n": "\n", "r": "\r", "'": "'", '"': '"', "\\": "\\", "$": "$"}
    while i < len(body):
        c = body[i]
        if c == "\\":
            e = body[i + 1]
            if e in simple:
                out.append(simple[e])
                i += 2
            elif e == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", body[i + 2:i + 6]):
                out.append(chr(int(body[i + 2:i + 6], 16)))
                i += 6
            else:
                raise AssertionError(f"invalid Kotlin escape \\{e} in {literal!r}")
        elif c == '"' or (c == "$" and i + 1 < len(body) and (body[i + 1] == "{" or body[i + 1].isidentifier())):
            raise AssertionError(f"raw {c!r} ends the literal or starts a template in {literal!r}")
        elif not c.isprintable():
            raise AssertionError(f"raw non-printable {c!r} in {literal!r}")
        else:
            out.append(c)
            i += 1
    return "".join(out).encode("utf-16", "surrogatepass").decode("utf-16")  # \uD83D\uDE00 -> one character


def decode_swift_literal(literal: str) -> str:
    assert literal[0] == literal[-1] == '"', literal
    body, out, i = literal[1:-1], [], 0
    simple = {"0": "\0", "\\": "\\", "t": "\t", "n": "\n", "r": "\r", '"': '"', "'": "'"}
    while i < len(body):
        c = body[i]
        if c == "\\":
            e = body[i + 1]
            m = re.match(r"u\{([0-9A-Fa-f]{1,8})\}", body[i + 1:])
            if e in simple:
                out.append(simple[e])
                i += 2
            elif m:
                out.append(chr(int(m.group(1), 16)))
                i += 1 + m.end()
            else:
                raise AssertionError(f"invalid Swift escape (or interpolation) \\{e} in {literal!r}")
        elif c == '"' or not c.isprintable():
            raise AssertionError(f"raw {c!r} in {literal!r}")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def literal_after(source: str, prefix: str) -> str:
    """The string literal that follows ``prefix`` on its line (the line ends where any line break is)."""
    (line,) = [line for line in source.splitlines() if line.strip().startswith(prefix)]
    return line.strip()[len(prefix):].strip()


def assert_only_comments_and_literals_differ(clean: str, dirty: str, literal_lines: tuple[str, ...]):
    """``dirty`` (made from a hostile name) has the clean file's lines (``splitlines`` breaks on CR, LF,
    U+2028/2029, NEL, VT, FF: stricter than either language), changed only in comments and on the lines that
    hold the name's literal."""
    clean_lines, dirty_lines = clean.splitlines(), dirty.splitlines()
    assert len(clean_lines) == len(dirty_lines), "a name added or removed a line"
    for a, b in zip(clean_lines, dirty_lines):
        if a == b:
            continue
        stripped = a.strip()
        assert stripped.startswith("//") or any(stripped.startswith(p) for p in literal_lines), (a, b)
        assert b.strip().startswith(stripped.split("=")[0].strip() if "=" in stripped else "//"), (a, b)
        if stripped.startswith("//"):
            assert "*/" not in b and "/*" not in b, b


KT_INFO = {"width": 16, "height": 16, "num_classes": 3, "preprocessing": None}
SWIFT_INFO = {"input_name": "image", "width": 16, "height": 16, "color_layout": "RGB", "classifier": False,
              "logits_output": "logits", "labels": None, "precision": "fp16", "preprocessing": None}


@pytest.mark.parametrize("name", HOSTILE, ids=[repr(h)[:24] for h in HOSTILE])
@pytest.mark.parametrize("executorch", [False, True], ids=["litert", "executorch"])
def test_kotlin_helper_escapes_names(name, executorch):
    def render(asset, labels):
        return kotlin_helper(KT_INFO, package_name="com.example.app", model_asset=asset, labels_asset=labels,
                             top_k=3, class_name="M", executorch=executorch)

    clean, dirty = render("clean.tflite", "labels.txt"), render(name, name + "_labels")
    assert_only_comments_and_literals_differ(clean, dirty, ("const val MODEL_ASSET", "val LABELS_ASSET"))
    assert decode_kotlin_literal(literal_after(dirty, "const val MODEL_ASSET =")) == name
    assert decode_kotlin_literal(literal_after(dirty, "val LABELS_ASSET: String? =")) == name + "_labels"


def test_kotlin_package_names_are_checked_and_keywords_quoted():
    ok = kotlin_helper(KT_INFO, package_name="com.fun.in.app", model_asset="m.tflite", labels_asset=None, top_k=1,
                       class_name="M")
    assert "package com.`fun`.`in`.app\n" in ok
    for bad in ("com.example\n", "com.example\nimport evil", "com.example\r", "com..x", "1com.x", "com.x;"):
        with pytest.raises(VitdeployError, match="not a valid Kotlin package"):
            kotlin_helper(KT_INFO, package_name=bad, model_asset="m.tflite", labels_asset=None, top_k=1,
                          class_name="M")


@pytest.mark.parametrize("name", HOSTILE, ids=[repr(h)[:24] for h in HOSTILE])
def test_swift_helpers_escape_names_and_parse(name):
    from test_package import _swift_syntax_errors

    pte_info = {"width": 16, "height": 16, "num_classes": 3, "preprocessing": None, "delegates": []}
    clean = swift_pte_helper(pte_info, model_file="clean.pte", labels_resource="clean_labels.txt", top_k=3,
                             class_name="M")
    dirty = swift_pte_helper(pte_info, model_file=name, labels_resource=name + "_labels", top_k=3, class_name="M")
    assert_only_comments_and_literals_differ(clean, dirty, ("public static let modelFile",
                                                            "public static let labelsResource"))
    assert decode_swift_literal(literal_after(dirty, "public static let modelFile =")) == name
    assert _swift_syntax_errors(dirty) == []
    # An .mlpackage's input and output names come from its spec: as untrusted as a file name.
    clean = swift_helper(SWIFT_INFO, model_name="M", labels_resource="M_labels.txt", top_k=3, class_name="C")
    dirty = swift_helper(dict(SWIFT_INFO, input_name=name, logits_output=name), model_name="M",
                         labels_resource=name, top_k=3, class_name="C")
    assert_only_comments_and_literals_differ(clean, dirty, ("public static let inputName",
                                                            "public static let logitsOutput",
                                                            "public static let labelsResource"))
    assert decode_swift_literal(literal_after(dirty, "public static let inputName =")) == name
    assert _swift_syntax_errors(dirty) == []


@pytest.mark.parametrize("model_name", ["M\n", "M\rlet x = 1", "class", "Type", "M-1", "1M", "M\u2028"])
def test_swift_model_name_must_be_a_plain_identifier(model_name):
    with pytest.raises(VitdeployError, match="not a valid identifier"):
        swift_helper(SWIFT_INFO, model_name=model_name, labels_resource=None, top_k=3, class_name="C")


def test_labels_resource_keeps_one_label_per_line():
    labels = ['say "hi"', "a\\b", "$x ${y}", "</string>", "a\u2028b", "a\x00b", "*/", "é😀"]
    text = labels_text(labels).decode("utf-8")
    assert text.split("\n")[:-1] == labels  # what both helpers read: Kotlin readLines (LF, CR), Swift "\n"
    assert "\r" not in text
    for bad in (["ok", "a\rb"], ["a\nb"], ["a\r\nb"], ["\udcff"]):
        with pytest.raises(VitdeployError, match="label 0|label 1"):
            labels_text(bad)


def test_escape_functions_directly():
    for text in HOSTILE:
        assert decode_kotlin_literal(codegen.kotlin_string(text)) == text
        assert decode_swift_literal(codegen.swift_string(text)) == text
        comment = codegen.comment_text(text)
        assert len(comment.splitlines()) <= 1 and comment.isprintable() and "*/" not in comment
    for fn in (codegen.kotlin_string, codegen.swift_string):
        with pytest.raises(VitdeployError, match="not valid Unicode"):
            fn("bad\udcffname")


def test_pbxproj_refuses_names_its_writer_puts_raw_into_comments(tmp_path):
    """pbxproj quotes a file name in strings but writes it raw into /* name */ comments: names that would
    break a comment are refused before anything is written; others round-trip through the parser."""
    from vitdeploy.packaging.ios import add_files_to_pbxproj, find_xcode_project, parse_pbxproj, pbxproj_name

    harness = Path(__file__).resolve().parents[1] / "ios_harness"
    project = find_xcode_project(harness)
    for bad in ("a\nb.pte", "a\rb.pte", "a\u2028b.pte", "a\x00b.pte", "a*/b.pte", "a/*b.pte"):
        with pytest.raises(VitdeployError, match="cannot go into an Xcode project"):
            pbxproj_name(bad)
    for good in ('a"b.pte', "a\\b.pte", "a$b ${c}.pte", "</string>.pte", "a;b = c.pte", "é😀.pte"):
        text = add_files_to_pbxproj(project["pbx_text"], project["target_id"], project["group_id"],
                                    [(pbxproj_name(good), "resource")])
        tree = parse_pbxproj(text)
        assert good in [o.get("path") for o in tree["objects"].values() if o.get("isa") == "PBXFileReference"]
        assert len(text.splitlines()) == text.count("\n")  # no CR / U+2028 / NEL line of its own


@pytest.fixture(scope="module")
def pte_program(tmp_path_factory) -> Path:
    pytest.importorskip("executorch")
    from pte_fixtures import write_tiny_pte

    return write_tiny_pte(tmp_path_factory.mktemp("hostile_pte") / "tiny.pte",
                          metadata={"labels": ["a", "b", "c", "d", "e"], "preprocessing": {"resize": 9, "crop": 8}})


def test_package_cli_with_a_hostile_pte_name_injects_nothing(pte_program, tmp_path):
    """End to end: a .pte whose name carries CR-separated Kotlin/Swift code; the helpers keep the clean
    helpers' lines, and the Xcode project refuses the name."""
    from test_package import _swift_syntax_errors

    evil = tmp_path / "in" / "m\rfun pwned() {}\rval s = \"$x ${y}\" \u2028 \\(z).pte"  # no "/" in a file name
    evil.parent.mkdir()
    shutil.copy(pte_program, evil)
    clean = tmp_path / "in" / "clean.pte"
    shutil.copy(pte_program, clean)
    for platform in ("android", "ios"):
        outs = {}
        for artifact in (clean, evil):
            out = tmp_path / f"out_{platform}_{artifact is evil}"
            result, _ = run_cli(["package", str(artifact), "--platform", platform, "-o", str(out)])
            assert result.exit_code == 0, result.output
            # The helper class is named after the file, with everything but ASCII letters and digits dropped.
            class_name = "MFunPwnedValSXYZClassifier" if artifact is evil else "CleanClassifier"
            helper = codegen.helper_file_name(class_name, platform)
            assert sorted(p.name for p in out.iterdir() if p.suffix in (".kt", ".swift")) == [helper]
            # Compared with the clean helper line by line once the class names agree.
            outs[artifact] = (out / helper).read_text(encoding="utf-8").replace(class_name, "C")
            assert (out / evil.name if artifact is evil else out / clean.name).is_file()
            readme = (out / "README.md").read_text(encoding="utf-8")
            assert len(readme.splitlines()) == readme.count("\n")
        literal = ("const val MODEL_ASSET", "val LABELS_ASSET") if platform == "android" else (
            "public static let modelFile", "public static let labelsResource")
        assert_only_comments_and_literals_differ(outs[clean], outs[evil], literal)
        if platform == "ios":
            assert _swift_syntax_errors(outs[evil]) == []
    app = tmp_path / "ios_app"
    shutil.copytree(Path(__file__).resolve().parents[1] / "ios_harness", app)
    before = {p: p.read_bytes() for p in app.rglob("*") if p.is_file()}
    assert_refused(["package", str(evil), "--platform", "ios", "--into", str(app)], "Xcode project")
    assert {p: p.read_bytes() for p in app.rglob("*") if p.is_file()} == before

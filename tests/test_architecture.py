"""The shape of the tree: no import cycles in vitdeploy/, no oversized module without a stated reason.

Imports inside functions count: a lazy import keeps ``--help`` fast, it does not make a cycle harmless
(the two modules still cannot be understood, tested or moved apart).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vitdeploy"
MAX_LINES = 600
# A module longer than MAX_LINES says why in its docstring, with this phrase.
LONG_MODULE_MARKER = "Longer than 600 lines:"


def _modules(root: Path = PACKAGE) -> dict[str, Path]:
    mods = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _imported(module: str, path: Path, node: ast.Import | ast.ImportFrom, known: dict) -> list[str]:
    """vitdeploy modules an import statement loads (``from pkg import sub`` counts as ``pkg.sub`` only)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in known]
    if node.level:
        base = module.split(".")
        if path.name != "__init__.py":
            base = base[:-1]
        base = base[:len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    subs = [f"{prefix}.{a.name}" for a in node.names if f"{prefix}.{a.name}" in known]
    return subs + ([prefix] if len(subs) < len(node.names) and prefix in known else [])


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    known = _modules(root)
    graph = {m: set() for m in known}
    for module, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[module].update(t for t in _imported(module, path, node, known) if t != module)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_sees_a_lazy_cycle(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import g\n")
    (pkg / "c.py").write_text("from .b import f\n")
    assert cycles(import_graph(pkg)) == [["pkg.a", "pkg.b"]]


def test_no_import_cycles():
    found = cycles(import_graph())
    detail = "; ".join(" <-> ".join(c) for c in found)
    assert not found, f"import cycles in vitdeploy/: {detail}"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_size_or_a_stated_reason(path):
    text = path.read_text()
    lines = text.count("\n")
    if lines > MAX_LINES:
        docstring = ast.get_docstring(ast.parse(text)) or ""
        assert LONG_MODULE_MARKER in docstring, (
            f"{path.relative_to(PACKAGE)} has {lines} lines: split it, or say why at its top "
            f"('{LONG_MODULE_MARKER} ...')")


def test_the_cli_does_not_guess_the_bad_file_from_traceback_frames():
    """Readers name their file (``with untrusted.reading(path):``); the CLI maps exceptions to exit codes only.
    Scanning frames' locals for a path (or keeping a table of reader names) is how it used to guess."""
    tree = ast.parse((PACKAGE / "exits.py").read_text())
    names = {n.attr if isinstance(n, ast.Attribute) else n.id for n in ast.walk(tree)
             if isinstance(n, (ast.Attribute, ast.Name))}
    guessing = names & {"f_locals", "walk_tb", "tb_frame", "extract_tb", "_READERS"}
    assert not guessing, f"exits.py looks for the bad file in tracebacks ({', '.join(sorted(guessing))})"


def test_every_cli_command_is_in_the_api_under_its_name():
    import click

    import vitdeploy.api as api
    from vitdeploy.cli import main

    names = []
    for name, command in main.commands.items():
        if isinstance(command, click.Group):
            names += [f"{name}_{sub}" for sub in command.commands]
        else:
            names.append(name)
    missing = [n for n in names if not callable(getattr(api, n, None))]
    assert not missing, f"vitdeploy.api lacks {missing}"


# What the command modules (vitdeploy/cli.py, cli_*.py) may import of vitdeploy: the api (every command's work goes
# through it), the click plumbing and the exit codes, the option helpers and vocabulary (--target, --quantize), and
# what prints or writes a result. The first set whole, the second only by these names.
CLI_MAY_IMPORT = {"api", "cli_group", "cli_common", "errors", "exits", "options", "formats", "precisions",
                  "progress", "outputs", "files", "reports", "reports.farm"}
CLI_MAY_IMPORT_NAMES = {
    "": {"__version__"},
    "diagnostics": {"quiet_third_party_noise"},
    "parity": {"parse_overrides"},  # --tol KEY=VALUE
    "preprocessing": {"Preprocessing"},  # how inspect shows an input convention
    "devices": {"format_devices"},
    "build": {"cell_mode", "format_build_table", "format_plan"},
    "benchmark": {"format_markdown", "format_table", "plan", "plot"},  # plan: --targets/--precisions checked first
    "profile": {"format_many"},
    "op_profile": {"format_ops"},
}
_CLI_PLUMBING = {"cli_group", "cli_common"}


def _cli_command_modules(root: Path = PACKAGE) -> dict[str, Path]:
    return {p.stem: p for p in sorted(root.glob("cli*.py")) if p.stem not in _CLI_PLUMBING}


def cli_import_offenders(root: Path = PACKAGE) -> list[str]:
    """Every ``module[:name]`` of vitdeploy a command module imports outside CLI_MAY_IMPORT(_NAMES)."""
    known = _modules(root)
    package = root.name
    commands = _cli_command_modules(root)
    offenders = []
    for stem, path in commands.items():
        module = f"{package}.{stem}"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                pairs = [(a.name, None) for a in node.names if a.name.split(".")[0] == package]
            elif isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] == package):
                prefix = ".".join([package] + ([node.module] if node.module else [])) if node.level == 1 else \
                    node.module if not node.level else None
                assert prefix is not None, f"{path.name}: import from above the package"
                pairs = [(f"{prefix}.{a.name}", None) if f"{prefix}.{a.name}" in known else (prefix, a.name)
                         for a in node.names]
            else:
                continue
            for target, name in pairs:
                rel = target.removeprefix(package).lstrip(".")
                if rel in CLI_MAY_IMPORT or rel in commands or name in CLI_MAY_IMPORT_NAMES.get(rel, ()):
                    continue
                offenders.append(f"{path.name}:{node.lineno}: {rel or package}" + (f":{name}" if name else ""))
    return offenders


def test_cli_modules_import_only_the_api_and_the_cli_helpers():
    """A command parses its options, calls ``api.<command>`` and prints: it reaches nothing else of vitdeploy."""
    offenders = cli_import_offenders()
    assert not offenders, "the CLI goes around vitdeploy.api:\n" + "\n".join(offenders)


def test_cli_import_check_sees_a_direct_call(tmp_path):
    pkg = tmp_path / "vitdeploy"
    pkg.mkdir()
    for name in ("__init__", "api", "convert", "cli_common", "build"):
        (pkg / f"{name}.py").write_text("")
    (pkg / "cli.py").write_text("from . import api\nfrom .cli_common import echo\nfrom .build import format_plan\n"
                                "def f():\n    from .convert import convert\n    from .build import build\n")
    assert cli_import_offenders(pkg) == ["cli.py:5: convert:convert", "cli.py:6: build:build"]


def _api_calls(functions: dict[str, list[ast.FunctionDef]], name: str, seen: set | None = None) -> set[str]:
    """``api.X`` names a command module function references, with those of the module functions it calls."""
    seen = set() if seen is None else seen
    if name in seen:
        return set()
    seen.add(name)
    found: set[str] = set()
    for fn in functions.get(name, []):
        for node in ast.walk(fn):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "api":
                found.add(node.attr)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                found |= _api_calls(functions, node.func.id, seen)
    return found


def test_every_cli_command_calls_the_api_function_of_its_name():
    import click

    from vitdeploy.cli import main

    functions: dict[str, list[ast.FunctionDef]] = {}
    for path in _cli_command_modules().values():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef):
                functions.setdefault(node.name, []).append(node)
    commands = []
    for name, command in main.commands.items():
        subs = command.commands.items() if isinstance(command, click.Group) else [(None, command)]
        commands += [(f"{name}_{sub}" if sub else name, c) for sub, c in subs]
    missing = [f"{name} ({c.callback.__name__})" for name, c in commands
               if name not in _api_calls(functions, c.callback.__name__)]
    assert not missing, f"commands that do not call api.<their name>: {missing}"


def test_api_save_helpers_write_whole_files(tmp_path):
    import numpy as np

    import vitdeploy.api as api

    api.save_array(tmp_path / "a.npy", np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.arange(6, dtype=np.float32).reshape(2, 3))
    api.save_text(tmp_path / "t.txt", "héllo\n")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_formats_table_holds_canonical_precisions_and_drives_the_target_choices():
    from vitdeploy.cli import main
    from vitdeploy.formats import ARTIFACT_SUFFIXES, FORMATS, TARGETS
    from vitdeploy.precisions import PRECISIONS

    for fmt in FORMATS.values():
        assert set(fmt.precisions) <= set(PRECISIONS), fmt
    assert set(ARTIFACT_SUFFIXES) == {".tflite", ".mlpackage", ".pte"}
    target = next(p for p in main.commands["convert"].params if p.name == "target")
    assert tuple(target.type.choices) == TARGETS


def test_no_family_branching_outside_models():
    """Family knowledge lives in the registered Family rows (vitdeploy.models): no module outside models/
    compares anything with a family's name."""
    from vitdeploy.models import FAMILIES

    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "models" in path.relative_to(PACKAGE).parts[:1]:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                names = [c.value for c in [node.left, *node.comparators] if isinstance(c, ast.Constant)]
                if set(names) & set(FAMILIES):
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not offenders, offenders


def _outside_models() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if p.relative_to(PACKAGE).parts[0] != "models"]


def test_no_family_name_outside_models():
    """Stricter than a comparison: no module outside models/ spells a family's name at all (a dict key, a
    default, a tuple of names); it asks the registry (families(), family_of) instead."""
    from vitdeploy.models import FAMILIES

    offenders = []
    for path in _outside_models():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in FAMILIES:
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.value!r}")
    assert not offenders, offenders


def test_no_module_outside_models_imports_a_family_module():
    """A pass or a loader that imports vitdeploy.models.levit holds LeViT knowledge: it asks the Family row,
    or a hook the family's classes define (query_projection), instead."""
    from vitdeploy.models import FAMILIES

    family_modules = {fam.module for fam in FAMILIES.values()}
    graph = import_graph()
    offenders = {m: sorted(graph[m] & family_modules) for m in graph
                 if not m.startswith("vitdeploy.models") and graph[m] & family_modules}
    assert not offenders, offenders


def test_input_conventions_are_declared_by_their_family():
    """A checkpoint source's Preprocessing is data of its family's row (models/), not a constant elsewhere."""
    offenders = []
    for path in _outside_models():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            value = getattr(node, "value", None)
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(value, ast.Call) \
                    and getattr(value.func, "id", None) == "Preprocessing":
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not offenders, offenders


# Nothing may be added here: a format-dependent branch reads the row (vitdeploy.formats); precisions.py reads
# the rows' precisions and compute precisions since precision is one object (issue 29).
FORMAT_DISPATCH_ALLOWED = ()
# Names compared with "coreml" that are no target: the ExecuTorch delegate and the Core ML runtime choice.
_NOT_A_TARGET = {"delegate", "runtime"}


def format_dispatch_offenders() -> list[str]:
    """Every suffix literal (".pte", "model.tflite") and every comparison with a target name ("coreml") in the
    package outside vitdeploy/formats/ and the allowlist: what the formats table exists to answer."""
    from vitdeploy.formats import FORMATS

    targets = set(FORMATS)
    suffixes = "|".join(re.escape(s[1:]) for f in FORMATS.values() for s in (f.suffix, *f.old_suffixes))
    file_name = re.compile(rf"^[\w.-]*\.({suffixes})$", re.IGNORECASE)  # ".pte", "model.tflite"
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("formats/") or rel.startswith(FORMAT_DISPATCH_ALLOWED):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                    and not node.value.startswith("vitdeploy.") and file_name.match(node.value)):
                offenders.append(f"{rel}:{node.lineno}: suffix literal {node.value!r}")
            elif isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                named = {s.id for s in sides if isinstance(s, ast.Name)}
                values = {c.value for s in sides for c in ([s] if isinstance(s, ast.Constant) else
                          s.elts if isinstance(s, (ast.Tuple, ast.List, ast.Set)) else []) if isinstance(c, ast.Constant)}
                if values & targets and not named & _NOT_A_TARGET:
                    offenders.append(f"{rel}:{node.lineno}: compares with {sorted(values & targets)}")
    return offenders


def test_no_format_dispatch_outside_formats():
    """Format knowledge lives in the rows of vitdeploy.formats.FORMATS: no module outside formats/ names an
    artifact suffix or compares anything with a target name; it asks formats.format_of(path) and reads the row."""
    offenders = format_dispatch_offenders()
    assert not offenders, "\n".join(offenders)

"""The layout rules of CONTRIBUTING.md, checked on the source: no function in the installed packages over
80 lines, nothing in them imports from ``scripts/`` or ``tests/``, every module that runs as a program is a
command, and ``scripts/`` is never installed."""

from __future__ import annotations

import ast
import configparser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edge", "convert", "calibrate", "bench", "train", "collect")
MAX_LINES = 80
#: Functions still over MAX_LINES, by "path:qualified name": this list only shrinks (an entry that is
#: fixed must be removed, a new long function is refused).
LONG: dict = {}
#: Modules with a ``__main__`` block that are not console_scripts, and why they are product code.
MAIN_MODULES = {
    "train/ood.py": "a pipeline step (`python -m train.ood`): adds the open-set score output to a trained model",
}


def _modules():
    for pkg in PACKAGES:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            yield p.relative_to(ROOT).as_posix(), ast.parse(p.read_text(encoding="utf-8"), str(p))


def _functions(tree: ast.AST, prefix: str = ""):
    """(qualified name, node) of every function and method, nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}{node.name}"
            if not isinstance(node, ast.ClassDef):
                yield name, node
            yield from _functions(node, name + ".")
        else:
            yield from _functions(node, prefix)


def _long_functions():
    return {f"{path}:{name}": node.end_lineno - node.lineno + 1
            for path, tree in _modules() for name, node in _functions(tree)
            if node.end_lineno - node.lineno + 1 > MAX_LINES}


def test_no_product_function_over_80_lines():
    found = _long_functions()
    new = {k: n for k, n in found.items() if k not in LONG}
    assert not new, f"functions over {MAX_LINES} lines (split them): {new}"
    fixed = sorted(set(LONG) - set(found))
    assert not fixed, f"no longer over {MAX_LINES} lines: remove from LONG in tests/test_layout.py: {fixed}"


def test_the_check_counts_lines_of_nested_functions_and_methods():
    body = "\n".join(f"        x{i} = {i}" for i in range(MAX_LINES))
    tree = ast.parse(f"class A:\n    def long(self):\n{body}\n\n    def short(self):\n        return 1\n")
    sizes = {name: node.end_lineno - node.lineno + 1 for name, node in _functions(tree)}
    assert sizes == {"A.long": MAX_LINES + 1, "A.short": 2}


def _imported(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_the_checks_see_imports_and_main_blocks():
    tree = ast.parse("import os, tests.helpers\nfrom scripts.fixtures import polling\nfrom . import x\n"
                     "if __name__ == '__main__':\n    pass\n")
    assert sorted(_imported(tree)) == ["os", "scripts.fixtures", "tests.helpers"] and _has_main(tree)
    assert not _has_main(ast.parse("def main():\n    pass\n"))


def test_product_never_imports_scripts_or_tests():
    bad = sorted(f"{path}: {name}" for path, tree in _modules() for name in _imported(tree)
                 if name.split(".")[0] in ("scripts", "tests"))
    assert not bad, "experiment scripts and test helpers stay out of the installed packages: " + "; ".join(bad)


def _console_modules():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = [ln.strip() for ln in cfg["options.entry_points"]["console_scripts"].splitlines() if ln.strip()]
    return {ln.split("=", 1)[1].strip().split(":")[0].replace(".", "/") + ".py" for ln in lines}


def _has_main(tree: ast.AST) -> bool:
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare) \
                and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__":
            return True
    return False


def test_every_runnable_module_is_a_command():
    """An experiment or figure script runs as a program: in the packages, only the commands do."""
    commands = _console_modules()
    assert "edge/capture/cli.py" in commands and len(commands) >= 7
    runnable = {path for path, tree in _modules() if _has_main(tree)}
    stray = sorted(runnable - commands - set(MAIN_MODULES))
    assert not stray, f"modules run as programs that are not commands (move them to scripts/): {stray}"
    assert set(MAIN_MODULES) <= runnable, "MAIN_MODULES lists a module that no longer runs as a program"


def test_scripts_and_tests_are_not_installed():
    setuptools = pytest.importorskip("setuptools")
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    include = [ln.strip() for ln in cfg["options.packages.find"]["include"].splitlines() if ln.strip()]
    found = setuptools.find_packages(str(ROOT), include=include)
    assert {p.split(".")[0] for p in found} == set(PACKAGES), found

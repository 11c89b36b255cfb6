"""Imports point one way: cli -> callbacks -> gans (training) -> models (inference) -> nets/data/metrics
-> the plumbing every layer may use (errors, image IO, the torch-free ONNX runner). No cycles, and no import from a
lower layer up (imports inside functions count: that is where cycles hide). An import under `if TYPE_CHECKING:`
never runs, so it makes no cycle; it still may not point up."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: top to bottom; a module may import its own layer (without a cycle) or any layer below
LAYERS = [
    ("entry points", ("ganforge.cli",)),
    ("callbacks", ("ganforge.callbacks",)),
    ("training", ("ganforge.gans",)),
    ("inference models", ("ganforge.models",)),
    ("building blocks", ("ganforge.nets", "ganforge.data", "ganforge.metrics")),
    ("plumbing", ("ganforge.export", "ganforge.utils")),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / "ganforge").rglob("*.py"))}


def type_checking_nodes(tree: ast.AST) -> set[int]:
    """The ids of the nodes inside `if TYPE_CHECKING:` blocks."""
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            inside.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return inside


def imports_of(name: str, path: Path, known: set[str], type_only: bool = True) -> set[str]:
    """The ganforge modules `name` imports, anywhere in the file (`type_only=False`: not those only the type
    checker reads)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    skip = set() if type_only else type_checking_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name and t != "ganforge":
                found.add(t)
    return found


def layer_of(name: str) -> int:
    for i, (_, prefixes) in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{name} belongs to no layer: add it to LAYERS in {__file__}")


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = modules()
    return {n: imports_of(n, p, set(mods)) for n, p in mods.items() if n != "ganforge"}


@pytest.fixture(scope="module")
def runtime_graph() -> dict[str, set[str]]:
    mods = modules()
    return {n: imports_of(n, p, set(mods), type_only=False) for n, p in mods.items() if n != "ganforge"}


def test_every_module_has_a_layer(graph):
    for name in graph:
        layer_of(name)


def test_no_import_points_up(graph):
    upward = [
        f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
        for a, deps in graph.items()
        for b in deps
        if layer_of(b) < layer_of(a)
    ]
    assert not upward, "imports that point up:\n" + "\n".join(upward)


def test_no_import_cycle(runtime_graph):
    graph = runtime_graph
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state and (cycle := visit(m)):
                return cycle
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (cycle := visit(n)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_the_checker_sees_violations(tmp_path):
    """The rules above catch a cycle and an upward import (so a green run means something)."""
    fake = {"ganforge.gans.x": {"ganforge.cli.train"}, "ganforge.cli.train": {"ganforge.gans.x"}}
    assert layer_of("ganforge.cli.train") < layer_of("ganforge.gans.x")
    assert any(layer_of(b) < layer_of(a) for a, deps in fake.items() for b in deps)
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from ganforge.cli.predict import main\n")
    assert imports_of("ganforge.gans.m", src, {"ganforge.cli.predict"}) == {"ganforge.cli.predict"}
    src.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ganforge.cli.predict import main\n")
    assert imports_of("ganforge.gans.m", src, {"ganforge.cli.predict"}) == {"ganforge.cli.predict"}
    assert imports_of("ganforge.gans.m", src, {"ganforge.cli.predict"}, type_only=False) == set()

"""The package's shape: each layer imports only its own and lower ones (CLI -> stages -> models ->
audio and settings), no import cycle between modules, and small modules and functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"settings": "settings", "preprocessing": "preprocessing", "models": "models", "pipeline": "pipeline"}
STAGES = ("preprocessing.splice", "preprocessing.split", "pipeline.training", "pipeline.inference", "pipeline.evaluation")
MAX_FUNCTION_LINES, MAX_MODULE_LINES = 80, 350


def layer(module: str) -> int:
    """0 settings, 1 audio (preprocessing's I/O, signal helpers and parallel engines), 2 models, 3 stages, 4 the CLI."""
    if module.startswith("settings"):
        return 0
    if module.startswith(STAGES):
        return 3
    if module.startswith("preprocessing"):
        return 1
    if module.startswith("models"):
        return 2
    return 4  # pipeline.cli, pipeline.demo


def modules() -> dict[str, Path]:
    found = {}
    for folder in PACKAGES:
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Our modules that ``name`` imports anywhere in its body (a function-level import counts too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for t in targets:
            t = t.removeprefix("audio_superres.")
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


GRAPH = {name: imports_of(name, path, set(modules())) for name, path in modules().items()}


def test_no_import_reaches_up_a_layer():
    upward = [f"{a} -> {b}" for a, targets in GRAPH.items() for b in targets if layer(b) > layer(a) and not b.startswith(a + ".")]
    assert upward == []


def test_no_import_cycle_between_modules():
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(GRAPH.get(node, ())):
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue  # a package and its own modules (re-exports in __init__)
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(trail[trail.index(nxt) :] + [nxt]) if nxt in trail else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_the_settings_schema_imports_nothing_of_ours():
    assert GRAPH["settings.schema"] == set()


@pytest.mark.parametrize("name", sorted(modules()))
def test_modules_and_functions_stay_small(name):
    source = modules()[name].read_text()
    assert len(source.splitlines()) <= MAX_MODULE_LINES
    long = [
        f"{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []

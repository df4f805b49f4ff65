"""The package's import graph: no circle between its parts, and only public names of
``lesionquant.segment`` used outside it (read from the source with ``ast``)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "lesionquant"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    """The part a module belongs to: a subpackage (``lesionquant.batch``) or a module of
    the package root (``lesionquant.settings``, ``lesionquant`` itself)."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return name.startswith("lesionquant.") and (
        (PKG / rel).with_suffix(".py").is_file() or (PKG / rel / "__init__.py").is_file())


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[tuple[str, tuple[str, ...]]]:
    """``(module, names)`` of every import that can run (inside functions too; not the
    ``if TYPE_CHECKING:`` blocks)."""
    out: list[tuple[str, tuple[str, ...]]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.extend((a.name, ()) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, tuple(a.name for a in node.names)))
            # ``from lesionquant import qa`` imports the subpackage too.
            out.extend((f"{node.module}.{a.name}", ()) for a in node.names
                       if _is_module(f"{node.module}.{a.name}"))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def _graph() -> dict[str, dict[str, set[str]]]:
    """unit -> {imported unit -> {importing module, ...}} for imports inside the package."""
    graph: dict[str, dict[str, set[str]]] = {}
    for path in sorted(PKG.rglob("*.py")):
        module = _module_name(path)
        for target, _ in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if target != "lesionquant" and not target.startswith("lesionquant."):
                continue
            src, dst = _unit(module), _unit(target)
            if src != dst:
                graph.setdefault(src, {}).setdefault(dst, set()).add(module)
    return graph


def _cycle(graph: dict[str, dict[str, set[str]]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := dfs(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := dfs(node)):
            return found
    return None


def test_no_import_circle_between_the_parts_of_the_package():
    graph = _graph()
    # The edges the architecture names are there (the graph is read, not empty) ...
    assert "lesionquant.segment" in graph["lesionquant.measure"]
    assert "lesionquant.batch" in graph["lesionquant.review"]
    assert "lesionquant.segment" in graph["lesionquant.settings"]
    # ... and none closes a circle (batch -> qa -> qa/review -> batch was one).
    cycle = _cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_circle_check_finds_a_circle():
    graph = {"a": {"b": {"a.x"}}, "b": {"c": {"b.y"}}, "c": {"a": {"c.z"}}}
    assert _cycle(graph) == ["a", "b", "c", "a"]


def test_segment_is_used_through_its_public_names_only():
    import lesionquant.segment as segment
    import lesionquant.segment.labels as labels

    public = {"lesionquant.segment": set(segment.__all__),
              "lesionquant.segment.labels": set(labels.__all__)}
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        module = _module_name(path)
        if module == "lesionquant.segment" or module.startswith("lesionquant.segment."):
            continue
        for target, names in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if not (target == "lesionquant.segment" or target.startswith("lesionquant.segment.")):
                continue
            if target not in public or not set(names) <= public[target]:
                bad.append(f"{module}: from {target} import {', '.join(names)}")
    assert bad == []


@pytest.mark.parametrize("name", ["segment_lungs", "segment_lesions", "lesion_sides", "to_lps",
                                  "ClassicalLungs", "method_name", "weights_sha256"])
def test_every_lazy_public_name_of_segment_resolves(name):
    segment = importlib.import_module("lesionquant.segment")
    assert name in segment.__all__ and getattr(segment, name) is not None

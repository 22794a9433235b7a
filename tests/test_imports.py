"""The house's import direction: no import cycle anywhere in labkit (lazy imports inside functions count too),
the CLI calls into labkit.serve and never the other way, and labkit.messages never imports what sends them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from support import ROOT


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run (``if TYPE_CHECKING:`` blocks never do)."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, at the top or inside a function."""
    files = {module_name(p, package): p for p in package.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        deps: set[str] = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[:len(base) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in files else module
                           for alias in node.names]
            for target in targets:
                while target and target not in files:  # `import a.b.c` imports a.b.c (and its parents)
                    target = target.rpartition(".")[0]
                if target and target != name:
                    deps.add(target)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None. A package's own ``__init__`` importing its modules is
    not a cycle by itself; a module importing its package back (``from .. import x``) closes one."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in graph.get(todo.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_the_checker_finds_a_lazy_cycle_and_a_reach_back(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import f\n")
    (pkg / "a.py").write_text("def f():\n    return 1\n\ndef __getattr__(name):\n    from .b import g\n    return g\n")
    (pkg / "b.py").write_text("from .a import f\ng = f\n")
    (pkg / "sub" / "__init__.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                             "    from ..b import g\n")
    graph = import_graph(pkg)
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]
    assert graph["pkg.sub"] == set(), "a TYPE_CHECKING import never runs"
    (pkg / "b.py").write_text("g = 1\n")
    (pkg / "sub" / "c.py").write_text("def run():\n    from .. import a\n    return a\n")
    graph = import_graph(pkg)
    assert find_cycle(graph) is None
    assert "pkg.a" in graph["pkg.sub.c"]


def test_labkit_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph(ROOT / "labkit"))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_serve_and_messages_never_import_the_cli_or_what_sends_messages() -> None:
    graph = import_graph(ROOT / "labkit")
    serve_modules = [m for m in graph if m == "labkit.serve" or m.startswith("labkit.serve.")]
    for module in [*serve_modules, "labkit.messages"]:
        bad = reachable(graph, module) & {"labkit.cli", "labkit.conversation", "labkit.streaming"}
        if module.startswith("labkit.serve"):
            bad -= {"labkit.streaming"}  # not used there today, but not forbidden
        assert not bad, f"{module} imports {sorted(bad)}"
    assert "labkit.serve.main" in reachable(graph, "labkit.cli"), "the CLI calls into labkit.serve"


def test_labkit_serve_runs_in_a_fresh_interpreter_without_the_cli() -> None:
    code = ("import sys, labkit.serve\n"
            "assert labkit.serve.main_serve(['--dry-run', '--python', '/x/python'], gpus=[], out=lambda s: None) == 0\n"
            "assert 'labkit.cli' not in sys.modules, 'labkit.serve reached back into labkit.cli'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)

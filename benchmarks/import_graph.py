"""Import graph of the ``bench`` package: cycles and imports of the method packages.

    python benchmarks/import_graph.py [--lazy]

Counts module-level imports (``--lazy``: also imports inside functions; ``if TYPE_CHECKING`` blocks
never count). Prints each strongly connected component of more than one module and every ``bench``
module that imports ``brainvis`` or ``baselines``; exits 1 if there is either.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ("brainvis", "baselines")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def imports(path: Path, lazy: bool) -> set[str]:
    """Absolute module names ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes, top: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node):
                continue
            if isinstance(node, ast.Import) and (top or lazy):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and (top or lazy):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                subs = {f"{base}.{a.name}" for a in node.names}
                found.update(subs & MODULES)  # "from pkg import submodule" depends on the submodule
                if subs - MODULES:
                    found.add(base)
            inner = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(ast.iter_child_nodes(node), top and not inner)

    visit(tree.body, True)
    return found


MODULES: set[str] = set()


def graph(package: str = "bench", lazy: bool = False) -> dict[str, set[str]]:
    files = {module_name(p): p for p in (ROOT / package).rglob("*.py")}
    MODULES.update(files)
    return {m: {i for i in imports(p, lazy) if i in files or i.split(".")[0] in PLUGINS} - {m} for m, p in files.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in g:
                continue
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(g):
        if v not in index:
            strong(v)
    return out


def plugin_imports(g: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((m, i) for m, deps in g.items() for i in deps if i.split(".")[0] in PLUGINS)


def main(argv: list[str]) -> int:
    g = graph(lazy="--lazy" in argv)
    bad = False
    for comp in cycles(g):
        bad = True
        print("cycle:", " <-> ".join(comp))
    for m, i in plugin_imports(g):
        bad = True
        print(f"{m} imports {i}")
    if not bad:
        print(f"{len(g)} bench modules: no cycles, no imports of {' or '.join(PLUGINS)}")
    return int(bad)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""The library's layout: no import cycles between its modules (lazy imports inside functions
count too), the training code apart from the book-facing helpers, and the engine knowing no
method by name."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "pseudohealthy_lib"
#: the book-facing helpers: plots, widgets, notebook set-up; training code must not need them
BOOK_FACING = {"viz", "explore", "notebook"}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports() -> dict[str, set[str]]:
    """Module -> the library modules it imports, anywhere in its code."""
    mods = {module_name(p): p for p in PKG.rglob("*.py")}
    graph = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                cands = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                cands = [a.name for a in node.names]
            else:
                continue
            deps |= {c for c in cands if c in mods and c != name}
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
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
    for v in graph:
        if v not in index:
            visit(v)
    return out


def package_edges(graph):
    """Ignore a package's own __init__ re-exporting its modules (pseudohealthy_lib.methods ->
    pseudohealthy_lib.methods.antgan is not a cycle with antgan -> methods.base)."""
    return {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}


def test_no_import_cycles():
    assert cycles(package_edges(imports())) == []


def test_the_cycle_finder_can_say_no():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


def test_training_code_does_not_need_the_book_helpers_and_the_engine_no_methods():
    graph = package_edges(imports())
    training = ["engine", "methods.base", "methods.cyclegan", "methods.antgan", "methods.segmentor", "presets",
                "recipes", "zoo", "evaluate", "networks", "losses", "metrics"]
    for name in training:
        deps = graph[f"pseudohealthy_lib.{name}"]
        assert not {f"pseudohealthy_lib.{b}" for b in BOOK_FACING} & deps, name
    assert not {d for d in graph["pseudohealthy_lib.engine"] if d.startswith("pseudohealthy_lib.methods")}

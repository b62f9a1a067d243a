"""Static checks of the package's import graph (no imports executed: an AST scan of gencomp_jax/).

(a) No import cycles, function-level imports included: an edge A -> B for every `import B`,
    `from B import name` and relative import anywhere in A (module level, functions, methods, try
    blocks); `from P import m` with P.m a module is an edge to P.m. Imports under
    `if TYPE_CHECKING:` never run and are skipped; `importlib.import_module("...")` (how
    registry.discover() finds methods by name) is a string, not an edge.
(b) The dependency direction of DESIGN.md: the building blocks never import what drives them.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "gencomp_jax"

BUILDING_BLOCKS = ("nn", "diffusion", "entropy", "channel", "theory", "metrics", "data")
# layer (first name below the package) -> layers it must never import
FORBIDDEN = {
    **{layer: ("codecs", "train", "eval", "cli", "objectives", "registry") for layer in BUILDING_BLOCKS},
    "models": ("codecs", "train", "eval", "cli"),
}


def module_files(root: pathlib.Path) -> dict[str, pathlib.Path]:
    """Dotted module name -> file, for every .py under the package directory `root`."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = (root.name,) + path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every Import / ImportFrom node, at any depth, except under `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph(root: pathlib.Path) -> dict[str, dict[str, int]]:
    """module -> {imported module of the same package: line of the first such import}."""
    files = module_files(root)
    graph = {}
    for name, path in files.items():
        is_pkg = path.name == "__init__.py"
        edges = {}
        for node in _imports(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                    anchor = anchor[:len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for a in node.names:
                    full = f"{base}.{a.name}" if base else a.name
                    targets.append(full if full in files else base)
            for t in targets:
                if t in files and t != name:
                    edges.setdefault(t, node.lineno)
        graph[name] = edges
    return graph


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a cycle through them."""
    index, low, on, stack, sccs = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
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
                sccs.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_through(graph, comp) for comp in sccs]


def _cycle_through(graph, comp):
    """One concrete cycle inside a strongly connected component (breadth-first back to its start)."""
    inside, start = set(comp), comp[0]
    prev, frontier = {start: None}, [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w == start:
                    path = [v]
                    while prev[path[-1]] is not None:
                        path.append(prev[path[-1]])
                    return path[::-1] + [start]
                if w in inside and w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return comp


def _where(files, module, line):
    path = files[module]
    package_dir = path.parents[len(module.split(".")) - (1 if path.name == "__init__.py" else 2)]
    return f"{path.relative_to(package_dir.parent)}:{line}"


def _describe(graph, files, cycle):
    return " -> ".join(cycle) + "  (" + ", ".join(
        _where(files, a, graph[a][b]) for a, b in zip(cycle, cycle[1:])) + ")"


def layering_violations(graph: dict[str, dict[str, int]], files) -> list[str]:
    """'file:line: a imports b (...)' for every import against FORBIDDEN."""
    out = []
    for a, edges in sorted(graph.items()):
        layer = a.split(".")[1] if "." in a else ""
        for b, line in sorted(edges.items()):
            target = b.split(".")[1] if "." in b else ""
            if target in FORBIDDEN.get(layer, ()):
                out.append(f"{_where(files, a, line)}: {a} imports {b} "
                           f"({layer} must not depend on {target})")
    return out


def test_no_import_cycles():
    graph, files = import_graph(PACKAGE), module_files(PACKAGE)
    assert len(graph) > 40 and sum(map(len, graph.values())) > 80  # the scan sees the package
    cycles = find_cycles(graph)
    assert not cycles, "import cycles (break them, e.g. move what both sides need into a leaf module):\n" + \
        "\n".join(_describe(graph, files, c) for c in cycles)


def test_dependencies_point_one_way():
    graph, files = import_graph(PACKAGE), module_files(PACKAGE)
    violations = layering_violations(graph, files)
    assert not violations, "imports against the layering of DESIGN.md:\n" + "\n".join(violations)


@pytest.fixture
def toy_package(tmp_path):
    """A package with a function-level cycle through a relative import, and a layering violation."""
    pkg = tmp_path / "gencomp_jax"
    for sub in ("", "metrics", "codecs"):
        (pkg / sub).mkdir(exist_ok=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "metrics" / "fid.py").write_text("from gencomp_jax.metrics import util\n")
    (pkg / "metrics" / "util.py").write_text(
        "import importlib\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gencomp_jax.codecs import ntc\n"
        "def f():\n    try:\n        from .inception import net\n    except ImportError:\n        pass\n"
        "    return importlib.import_module('gencomp_jax.codecs.ntc')\n")
    (pkg / "metrics" / "inception.py").write_text("def g():\n    from ..metrics.fid import h\n")
    (pkg / "codecs" / "ntc.py").write_text("import gencomp_jax.metrics.fid\n")
    (pkg / "metrics" / "bad.py").write_text("class A:\n    def m(self):\n        import gencomp_jax.codecs.ntc\n")
    return pkg


def test_the_scan_finds_function_level_cycles_and_wrong_directions(toy_package):
    graph, files = import_graph(toy_package), module_files(toy_package)
    assert graph["gencomp_jax.metrics.util"] == {"gencomp_jax.metrics.inception": 7}  # TYPE_CHECKING, string: none
    assert graph["gencomp_jax.metrics.inception"] == {"gencomp_jax.metrics.fid": 2}
    cycles = find_cycles(graph)
    assert cycles == [["gencomp_jax.metrics.fid", "gencomp_jax.metrics.util", "gencomp_jax.metrics.inception",
                       "gencomp_jax.metrics.fid"]]
    assert _describe(graph, files, cycles[0]).endswith("(gencomp_jax/metrics/fid.py:1, gencomp_jax/metrics/util.py:7, "
                                                      "gencomp_jax/metrics/inception.py:2)")
    v = layering_violations(graph, files)
    assert len(v) == 1 and v[0].startswith("gencomp_jax/metrics/bad.py:3: ") and "metrics must not depend on codecs" in v[0]

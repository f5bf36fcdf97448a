"""Layers, enforced (issue 23): imports go downward only, in the order deploycheck/layers.py writes, and no
modules of deploycheck import each other round a loop.

The import graph is read from the source with `ast`: every `import` and `from ... import` of a deploycheck
module, at module level and inside functions, where `from deploycheck.checks import smoke` is an import of
the module deploycheck.checks.smoke and `from deploycheck.checks.smoke import X` one of the same module. A
function-level import that hides a cycle is an edge of that cycle like any other, so it is named with it;
with no cycle left such imports are not needed, and the function-level imports that remain are listed (a
warning in the test's output) for a reader to judge: only cycles and upward imports fail.
"""
from __future__ import annotations

import ast
import shutil
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploycheck import layers

PACKAGE = Path(layers.__file__).resolve().parent

# Edges (importer, imported) that break the rules today and are being removed by other parts of issue 23.
# Only these: anything else upward or round a loop fails. An entry no longer needed (the import is gone, or
# it is neither upward nor on a cycle) is named in a warning: remove it, so that the list ends empty.
KNOWN: dict[tuple[str, str], str] = {}  # edges allowed while being removed: none left (issue 23)


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    path: str          # relative to the package's parent, for messages
    line: int
    in_function: bool

    @property
    def edge(self) -> tuple[str, str]:
        return self.importer, self.imported

    def where(self) -> str:
        return f"{self.path}:{self.line}" + (" (in a function)" if self.in_function else "")


# -- the graph ---------------------------------------------------------------------------------------------
def modules_of(package: Path) -> dict[str, Path]:
    """Module name -> file, for every module of the package (a .py file whose folders are all packages:
    data kept inside the package, such as a bot's source, is not part of it)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        folders = path.relative_to(package).parents
        if not all((package / folder / "__init__.py").is_file() for folder in folders):
            continue
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_in(module: str, source: str, path: str, is_package: bool, modules) -> list[Import]:
    """The imports of package modules in one module's source."""
    root = module.split(".")[0]

    def innermost(name: str) -> str | None:           # the module a dotted name lives in
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        return name if name in modules and name.split(".")[0] == root else None

    def absolute(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[:len(package) - (node.level - 1)]
        return ".".join(package + ([node.module] if node.module else []))

    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = absolute(child)
                names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                         for alias in child.names]
            else:
                visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))
                continue
            for name in names:
                target = innermost(name)
                imp = Import(module, target, path, child.lineno, in_function) if target else None
                if imp and target != module and imp not in found:   # `from x import a, b`: one import of x
                    found.append(imp)

    visit(ast.parse(source, path), False)
    return found


def import_graph(package: Path) -> tuple[dict[str, Path], list[Import]]:
    modules = modules_of(package)
    found = []
    for module, path in modules.items():
        found += imports_in(module, path.read_text(encoding="utf-8"), str(path.relative_to(package.parent)),
                            path.name == "__init__.py", modules)
    return modules, found


def cycles(edges) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    graph = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(found)


def loop_through(component: list[str], edges) -> list[str]:
    """One loop inside a cycle's modules, from its first module back to it (shortest, breadth first)."""
    inside = set(component)
    start, paths = component[0], {component[0]: [component[0]]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for a, b in sorted(edges):
            if a == v and b in inside:
                if b == start:
                    return paths[v] + [start]
                if b not in paths:
                    paths[b] = paths[v] + [b]
                    queue.append(b)
    return component


def reaches(edges, start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        v = todo.pop()
        if v == goal:
            return True
        if v not in seen:
            seen.add(v)
            todo += [b for a, b in edges if a == v]
    return False


# -- the rules ---------------------------------------------------------------------------------------------
def upward(edge) -> bool:
    a, b = layers.layer_of(edge[0]), layers.layer_of(edge[1])
    return a is not None and b is not None and b < a


def problems(modules, found: list[Import], known=KNOWN) -> list[str]:
    """What breaks the layers, one line (or paragraph) each, naming the modules and where they import."""
    by_edge: dict[tuple[str, str], list[Import]] = defaultdict(list)
    for imp in found:
        by_edge[imp.edge].append(imp)
    out = [f"{module} is in no layer: add it (or its package) to deploycheck/layers.py"
           for module in modules if layers.layer_of(module) is None]
    for edge, imports in sorted(by_edge.items()):
        if edge not in known and upward(edge):
            out.append(f"upward import: {edge[0]} (layer {layers.name_of(layers.layer_of(edge[0]))!r}) imports "
                       f"{edge[1]} (layer {layers.name_of(layers.layer_of(edge[1]))!r}) at "
                       + ", ".join(i.where() for i in imports))
    checked = [edge for edge in by_edge if edge not in known]
    for component in cycles(checked):
        loop = loop_through(component, checked)
        lines = [f"    {a} -> {b} at " + ", ".join(i.where() for i in by_edge[(a, b)])
                 + ("   <- a function-level import hiding the cycle" if all(i.in_function for i in by_edge[(a, b)])
                    else "")
                 for a, b in sorted(checked) if a in component and b in component]
        out.append(f"import cycle: {' -> '.join(loop)}; the imports among {', '.join(component)}:\n"
                   + "\n".join(lines))
    return out


def no_longer_needed(found: list[Import], known=KNOWN) -> list[str]:
    """The KNOWN entries whose import is gone, or is neither upward nor on a cycle any more."""
    edges = {imp.edge for imp in found}
    out = []
    for edge, who in sorted(known.items()):
        if edge not in edges:
            out.append(f"{edge[0]} -> {edge[1]} ({who}) is no longer imported")
        elif not upward(edge) and not reaches(edges, edge[1], edge[0]):
            out.append(f"{edge[0]} -> {edge[1]} ({who}) is neither upward nor on a cycle any more")
    return out


def check_layers(package: Path, known=KNOWN) -> list[Import]:
    """Fail naming every upward import and cycle of `package`; the imports when there are none."""
    modules, found = import_graph(package)
    broken = problems(modules, found, known)
    if broken:
        pytest.fail(f"{len(broken)} layer problem(s) in {package} (order: deploycheck/layers.py):\n"
                    + "\n".join(broken), pytrace=False)
    return found


# -- the package as it is -----------------------------------------------------------------------------------
class FunctionLevelImports(UserWarning):
    """Imports of deploycheck modules inside functions: no cycle needs them once the layer test passes."""


class KnownEdgeGone(UserWarning):
    """An entry of KNOWN that nothing needs any more."""


def test_imports_go_downward_only_and_round_no_loop():
    found = check_layers(PACKAGE)
    gone = no_longer_needed(found)
    if gone:
        warnings.warn(KnownEdgeGone("remove from KNOWN in tests/selftest/test_layers.py:\n"
                                    + "\n".join(f"    {line}" for line in gone)), stacklevel=1)
    inside = sorted((i for i in found if i.in_function), key=lambda i: (i.path, i.line))
    if inside:
        warnings.warn(FunctionLevelImports(
            f"{len(inside)} function-level import(s) of deploycheck modules; no cycle needs them (the layer "
            "test passed), so each should move to the top of its module unless it waits on purpose (a back "
            "end only some runs use, an optional dependency):\n"
            + "\n".join(f"    {i.where().removesuffix(' (in a function)')}: {i.importer} -> {i.imported}"
                        + ("   (known, being removed)" if i.edge in KNOWN else "") for i in inside)),
            stacklevel=1)


def test_every_prefix_is_in_one_layer_only():
    seen = [prefix for _, prefixes in layers.LAYERS for prefix in prefixes]
    assert len(seen) == len(set(seen)), f"a prefix is in two layers: {sorted(p for p in seen if seen.count(p) > 1)}"
    assert layers.layer_of("deploycheck.fleet.driver") < layers.layer_of("deploycheck.pytest_plugin") \
        < layers.layer_of("deploycheck.fleet.tenants"), "the fleet driver sits apart from (above) its package"
    assert layers.layer_of("deploycheck") == layers.layer_of("deploycheck.failure")
    assert layers.layer_of("deploycheck_other") is None and layers.layer_of("deploycheckx.failure") is None


# -- the check itself: it sees what it exists to catch --------------------------------------------------
def test_from_import_of_a_submodule_is_an_import_of_that_submodule():
    modules = {"deploycheck", "deploycheck.a", "deploycheck.a.b", "deploycheck.c", "deploycheck.d.e", "deploycheck.d"}
    source = ("import os\n"
              "from deploycheck.a import b\n"              # the submodule a.b
              "from deploycheck.a import name\n"           # a name in a's __init__: the package a
              "from deploycheck.a.b import thing\n"        # a name in a.b
              "import deploycheck.d.e as e\n"
              "from . import a\n"                          # relative, from the top-level module c
              "from .d import e\n"
              "from deploycheck_other import x\n"          # not ours
              "class K:\n    from deploycheck import a\n"  # a class body runs at import: module level
              "def f():\n    from deploycheck.a import b\n"
              "async def g():\n    import deploycheck.d\n")
    got = [(i.imported, i.line, i.in_function)
           for i in imports_in("deploycheck.c", source, "deploycheck/c.py", False, modules)]
    assert got == [("deploycheck.a.b", 2, False), ("deploycheck.a", 3, False), ("deploycheck.a.b", 4, False),
                   ("deploycheck.d.e", 5, False), ("deploycheck.a", 6, False), ("deploycheck.d.e", 7, False),
                   ("deploycheck.a", 10, False), ("deploycheck.a.b", 12, True), ("deploycheck.d", 14, True)]
    # Names imported together from one module are one import of it; a module importing itself is none.
    (one,) = imports_in("deploycheck.c", "from deploycheck.a.b import p, q\nfrom deploycheck import c\n",
                        "deploycheck/c.py", False, modules)
    assert (one.imported, one.line) == ("deploycheck.a.b", 1)
    # Relative imports in a package's __init__ start from that package.
    (inner,) = imports_in("deploycheck.a", "from .b import x\n", "deploycheck/a/__init__.py", True, modules)
    assert inner.imported == "deploycheck.a.b"


@pytest.fixture
def planted(tmp_path):
    """A copy of the package to plant imports in: plant("record/ledger.py", code) appends code to a module."""
    copy = tmp_path / "deploycheck"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))

    def plant(relative: str, code: str) -> Path:
        path = copy / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text((path.read_text(encoding="utf-8") if path.exists() else "") + code, encoding="utf-8")
        return copy
    return plant


def failure_of(package: Path) -> str:
    with pytest.raises(pytest.fail.Exception) as failed:
        check_layers(package)
    return str(failed.value)


def test_a_planted_upward_import_fails_naming_it(planted):
    package = planted("record/ledger.py", "\n\ndef _planted():\n    from deploycheck.checks import smoke\n")
    message = failure_of(package)
    assert ("upward import: deploycheck.record.ledger (layer 'infra, telegram, record') imports "
            "deploycheck.checks.smoke (layer 'checks') at deploycheck/record/ledger.py:") in message
    assert "(in a function)" in message


def test_a_planted_module_level_upward_import_fails_naming_it(planted):
    package = planted("failure.py", "\nfrom deploycheck.pytest_plugin import state\n")
    message = failure_of(package)
    assert "upward import: deploycheck.failure (layer 'base') imports deploycheck.pytest_plugin.state" in message


def test_a_planted_cycle_fails_naming_its_modules(planted):
    package = planted("telegram/fake_model.py",
                      "\n\ndef _planted():\n    from deploycheck.telegram import fake_methods\n")
    message = failure_of(package)
    assert ("import cycle: deploycheck.telegram.fake_methods -> deploycheck.telegram.fake_model -> "
            "deploycheck.telegram.fake_methods") in message
    assert ("deploycheck.telegram.fake_model -> deploycheck.telegram.fake_methods at "
            "deploycheck/telegram/fake_model.py:") in message
    assert "a function-level import hiding the cycle" in message
    assert "upward import: deploycheck.telegram.fake_model" not in message    # one layer: only the loop is wrong


def test_a_new_package_outside_the_layers_fails(planted):
    package = planted("gadgets/__init__.py", "")
    assert "deploycheck.gadgets is in no layer" in failure_of(package)


def test_a_known_edge_no_longer_needed_is_named(planted):
    modules, found = import_graph(planted("failure.py", ""))
    known = {("deploycheck.failure", "deploycheck.redact"): "nobody",         # not imported at all
             ("deploycheck.checks.smoke", "deploycheck.failure"): "nobody"}   # downward, on no cycle
    assert no_longer_needed(found, known) == [
        "deploycheck.checks.smoke -> deploycheck.failure (nobody) is neither upward nor on a cycle any more",
        "deploycheck.failure -> deploycheck.redact (nobody) is no longer imported"]

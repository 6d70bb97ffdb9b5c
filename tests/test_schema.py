"""One schema for what a study stores: every stored name is a constant of
``lrsearch.store.names``, spelled nowhere else, and the layers import one way.

The checks read the source (``ast``), so they hold for code no test runs.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import lrsearch
from lrsearch.store import names

PACKAGE = Path(lrsearch.__file__).parent
#: Where stored names may be spelled: the schema itself.
SCHEMA = PACKAGE / "store"
#: Attributes and variables that hold a trial's or a study's attrs.
ATTR_HOLDERS = frozenset({"user_attrs", "system_attrs", "attrs"})
#: Calls that write an attr, and calls that build a trial's attrs.
WRITERS = frozenset({"set_user_attr", "set_system_attr"})
BUILDERS = frozenset({"Unit", "create_trial", "FixedTrial"})


def _sources() -> Iterator[tuple[Path, ast.AST]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text(), filename=str(path))


def _holder(node: ast.AST) -> bool:
    """Whether ``node`` is ``x.user_attrs`` / ``x.attrs`` / a variable named so."""
    if isinstance(node, ast.Attribute):
        return node.attr in ATTR_HOLDERS
    return isinstance(node, ast.Name) and node.id in ATTR_HOLDERS


def _text(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _literal_names(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Each place an attr name is spelled as a string: ``(line, name)``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and _holder(node.value) and _text(node.slice):
            yield node.lineno, str(_text(node.slice))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            func = node.func
            first = _text(node.args[0]) if node.args else None
            if first and (func.attr in WRITERS or (func.attr == "get" and _holder(func.value))):
                yield node.lineno, first
        if isinstance(node, ast.Call):
            called = getattr(node.func, "id", getattr(node.func, "attr", None))
            for kw in node.keywords if called in BUILDERS else ():
                if kw.arg == "user_attrs" and isinstance(kw.value, ast.Dict):
                    for key in kw.value.keys:
                        if _text(key):
                            yield node.lineno, str(_text(key))
        text = _text(node)
        if text and text.partition("attrs_")[0] in ("user_", "system_") and text[-1] != "_":
            yield node.lineno, text  # a column of trials_dataframe, with the name spelled


def test_no_stored_name_is_spelled_outside_the_schema() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {name!r}"
        for path, tree in _sources()
        if SCHEMA not in path.parents
        for line, name in _literal_names(tree)
    ]
    assert found == [], (
        "stored names spelled as strings (use lrsearch.store.names):\n" + "\n".join(found)
    )


def test_the_check_finds_what_it_looks_for() -> None:
    code = """
trial.set_user_attr("schedule", 1)
a = study.user_attrs["comparison"]
b = stored.attrs.get("config", {})
c = Unit(key, user_attrs={"arm": 1})
d = df["user_attrs_pruned_reason"]
e = trial.set_user_attr(SCHEDULE, 1)
"""
    found = [name for _, name in _literal_names(ast.parse(code))]
    assert found == ["schedule", "comparison", "config", "arm", "user_attrs_pruned_reason"]


def test_every_name_constant_is_unique_within_its_holder() -> None:
    values = [getattr(names, n) for n in names.__all__ if n.isupper()]
    assert all(isinstance(v, str) and v for v in values)


def _imports(tree: ast.AST, package: str) -> Iterator[str]:
    """What a module imports: ``a.b`` for ``import a.b``, ``a.b.c`` for ``from a.b import c``
    (the caller keeps the longest prefix that is a module)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            yield from (f"{base}.{a.name}" for a in node.names)


def _graph() -> dict[str, set[str]]:
    """lrsearch's modules and the lrsearch modules each imports (anywhere in its code)."""
    trees: dict[str, ast.AST] = {}
    packages: set[str] = set()
    for path, tree in _sources():
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
            packages.add(".".join(parts))
        trees[".".join(parts)] = tree
    graph: dict[str, set[str]] = {}
    for name, tree in trees.items():
        package = name if name in packages else name.rpartition(".")[0]
        deps = set()
        for target in _imports(tree, package):
            while target and target not in trees:
                target = target.rpartition(".")[0]
            if target and target != name:
                deps.add(target)
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycle() -> None:
    assert _cycles(_graph()) == []


@pytest.mark.parametrize("layer", ["lrsearch.pipeline", "lrsearch.training", "lrsearch.store"])
def test_nothing_below_the_report_imports_it(layer: str) -> None:
    graph = _graph()
    below = {m: d for m, d in graph.items() if m == layer or m.startswith(layer + ".")}
    assert below, layer
    above = ("lrsearch.report", "lrsearch.cli", "lrsearch.study")
    wrong = {m: sorted(d for d in deps if d.startswith(above)) for m, deps in below.items()}
    assert {m: d for m, d in wrong.items() if d} == {}


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]

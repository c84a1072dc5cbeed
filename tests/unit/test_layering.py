"""The house runs one way: proxy <- domain packages <- plugins <- worker, ops <- bench, tests.

Read from the code itself (every import statement, also those inside functions), so a new module
is covered the day it lands. A room may import its own floor and the floors below; a plugin
imports no other plugin; and no chain of imports between modules comes back to where it started.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# the floor of each top-level package; domain packages (floor 2) are found by exclusion. The web
# console is an operator's tool like ops/ (it shares `fhirplug queue`'s dead-letter helpers)
FLOORS = {"proxy": 1, "plugins": 3, "worker": 4, "ops": 4, "console": 4, "bench": 5, "tests": 5}
NOT_CODE = {"store", "profiles", "ig", "var", ".venv", ".git", "node_modules"}


def packages() -> list[str]:
    return sorted(
        p.name
        for p in ROOT.iterdir()
        if p.is_dir()
        and p.name not in NOT_CODE
        and not p.name.startswith(".")
        and (p / "__init__.py").exists()
    )


def floor(package: str) -> int:
    return FLOORS.get(package, 2)


def modules() -> dict[str, Path]:
    out = {}
    for pkg in packages():
        for f in (ROOT / pkg).rglob("*.py"):
            parts = f.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = f
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports, resolved to the longest known module name."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for t in targets:
            parts = t.split(".")
            for i in range(len(parts), 0, -1):
                candidate = ".".join(parts[:i])
                if candidate in known:
                    found.add(candidate)
                    break
    found.discard(name)
    return found


GRAPH = {}


def graph() -> dict[str, set[str]]:
    if not GRAPH:
        mods = modules()
        GRAPH.update({n: imports_of(n, p, set(mods)) for n, p in mods.items()})
    return GRAPH


def top(module: str) -> str:
    return module.split(".", 1)[0]


def test_the_tree_has_every_floor():
    assert {"proxy", "plugins", "worker", "ops"} <= set(packages())


def test_no_import_goes_up_a_floor():
    upward = sorted(
        f"{m} (floor {floor(top(m))}) imports {t} (floor {floor(top(t))})"
        for m, targets in graph().items()
        for t in targets
        if floor(top(t)) > floor(top(m))
    )
    assert not upward, "\n".join(upward)


def test_no_plugin_imports_another_plugin():
    across = sorted(
        f"{m} imports {t}"
        for m, targets in graph().items()
        if top(m) == "plugins" and m != "plugins"
        for t in targets
        if top(t) == "plugins" and t != "plugins"
    )
    assert not across, "\n".join(across)


def test_domain_packages_do_not_import_each_other_in_a_circle():
    domains = {p for p in packages() if floor(p) == 2}
    edges = {
        (top(m), top(t))
        for m, targets in graph().items()
        for t in targets
        if top(m) in domains and top(t) in domains and top(m) != top(t)
    }
    both_ways = sorted(f"{a} <-> {b}" for a, b in edges if (b, a) in edges)
    assert not both_ways, both_ways


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_modules():
    # a package's __init__ re-exporting its own modules is not a cycle of design
    g = {
        m: {t for t in ts if not m.startswith(t + ".")}
        for m, ts in graph().items()
        if not m.startswith("tests")
    }
    assert not cycles(g), cycles(g)


@pytest.mark.parametrize(
    "importer,imported,allowed",
    [("proxy.app", "worker.metrics", False), ("plugins.routing", "hubspoke.identifiers", True)],
)
def test_the_rule_itself(importer, imported, allowed):
    assert (floor(top(imported)) <= floor(top(importer))) is allowed

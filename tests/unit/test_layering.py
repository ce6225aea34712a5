"""The layout's rule, checked from the source: each package imports only the packages below it.

Every import counts, including those inside functions and under TYPE_CHECKING: a cycle hidden
behind a function-local import is still a cycle a reader has to untangle. `make lint` runs this.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]

# (package prefix, layer): a module may import its own package and lower layers only. Packages on
# the same layer are siblings and may not import each other. The longest matching prefix wins.
LAYERS: dict[str, int] = {
    "serving.schema": 0,
    "serving.settings": 1,
    "serving.tables": 1,
    "serving.text": 2,
    "serving.features": 3,
    "serving.model": 4,
    "serving.store": 5,
    "serving.runtime": 6,
    "serving.remote": 6,  # article pages and Coral's GraphQL API: fetched from other servers
    "serving.services": 7,
    "serving.api": 8,  # errors, deps, middleware, http: what every router shares
    "serving.api.routes": 9,
    "serving.api.integrations": 9,
    "serving.api.queue": 9,
    "serving.api.app": 10,
    "serving.web": 0,  # templates and static files, no code
    "training.data": 20,
    "training.experiment": 21,
    "training.registry": 22,
    "training.labels": 23,
    "training.batch": 23,
    "training.bench": 24,
    "training.cli": 25,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(module: str) -> str | None:
    matches = [p for p in LAYERS if module == p or module.startswith(p + ".")]
    return max(matches, key=len) if matches else None


def project_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for root in ("serving", "training")
        for path in sorted((REPO / root).rglob("*.py"))
    }


def imports_of(path: Path, module: str, known: set[str]) -> set[str]:
    """Project modules this file imports, anywhere in it (a `from pkg import mod` names pkg.mod)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names]
            names = [name if name in known else base for name in names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    return {module: imports_of(path, module, known) for module, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for module, targets in sorted(graph.items()):
        source = package_of(module)
        for target in sorted(targets):
            destination = package_of(target)
            if source is None or destination is None or source == destination:
                continue
            if source.split(".")[0] != destination.split(".")[0]:
                continue  # training → serving is the allowed direction; the reverse has its own test
            if LAYERS[destination] >= LAYERS[source]:
                wrong.append(
                    f"{module} ({source}, layer {LAYERS[source]}) imports {target} "
                    f"({destination}, layer {LAYERS[destination]})"
                )
    return wrong


def test_every_module_belongs_to_a_layer() -> None:
    unplaced = [m for m in project_modules() if package_of(m) is None and m not in ("serving", "training")]
    assert unplaced == [], f"add these modules' packages to LAYERS: {unplaced}"


def test_no_import_cycles_between_modules() -> None:
    assert cycles(import_graph()) == []


def test_no_package_imports_one_above_it_or_beside_it() -> None:
    assert upward_imports(import_graph()) == []


def test_the_checks_see_a_cycle_and_an_upward_import() -> None:
    # The checks themselves must be able to fail.
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert upward_imports({"serving.model.x": {"serving.store.y"}, "serving.store.y": set()})

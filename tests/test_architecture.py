"""The platform's imports point one way: declarations, then the engine, then
the Dagster adapters, then the tools. Read from the source (every import,
module-level or inside a function), so a lazy import cannot hide a cycle."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "platform" / "dagmesh"

# The layers are the package's folders, bottom first. `config` (every setting)
# and `errors` (the DagmeshError base) sit at the root, under everything.
LAYERS = ["foundation", "declarations", "engine", "orchestration", "tools"]
FOUNDATION = {"dagmesh.config", "dagmesh.errors"}
NO_DAGSTER = {"foundation", "declarations", "engine"}
DAGSTER = {"dagster", "dagster_dbt", "dagster_graphql", "dagster_postgres", "dagster_webserver"}


def layer(module: str) -> str:
    """The layer of a dagmesh module: its folder under the package."""
    if module in FOUNDATION:
        return "foundation"
    folder = module.split(".")[1] if module.count(".") else ""
    assert folder in LAYERS, f"{module} is in no layer: move it into one of {LAYERS[1:]}"
    return folder


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Module → every module it imports (dagmesh modules and third-party
    top-level names), wherever in the file the import stands."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    found.add(full if full in modules else base)
        graph[name] = {m if m in modules else m.split(".")[0] for m in found}
    return graph


@pytest.fixture(scope="module")
def imports() -> dict[str, set[str]]:
    return _imports()


def test_the_platform_has_no_import_cycle(imports):
    internal = {m: {d for d in deps if d in imports} - {m} for m, deps in imports.items()}
    try:
        list(TopologicalSorter(internal).static_order())
    except CycleError as error:
        pytest.fail(f"import cycle: {' -> '.join(error.args[1])}")


def _reaches(imports: dict[str, set[str]], start: str) -> set[str]:
    seen, stack = set(), [start]
    while stack:
        for dep in imports.get(stack.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                stack.append(dep)
    return seen


def _platform_modules(imports: dict[str, set[str]]) -> list[str]:
    return sorted(m for m in imports if m != "dagmesh")


def test_every_module_sits_in_a_layer_folder(imports):
    layers = {m: layer(m) for m in _platform_modules(imports)}
    for name in LAYERS[1:]:
        assert name in layers.values(), f"no module in {name}/"


@pytest.mark.parametrize("module", _platform_modules(_imports()))
def test_imports_point_down_only(imports, module):
    """A module imports its own layer and the layers below it, never above."""
    rank = LAYERS.index(layer(module))
    above = {
        dep
        for dep in imports[module]
        if dep in imports and dep != "dagmesh" and LAYERS.index(layer(dep)) > rank
    }
    assert not above, f"{module} ({layer(module)}) imports a layer above it: {sorted(above)}"


@pytest.mark.parametrize(
    "module", [m for m in _platform_modules(_imports()) if layer(m) in NO_DAGSTER]
)
def test_declarations_and_engine_know_nothing_of_dagster(imports, module):
    reached = _reaches(imports, module)
    assert not reached & DAGSTER, (
        f"{module} imports Dagster (through {sorted(reached & set(imports))})"
    )


def test_the_package_root_exports_declarations_only(imports):
    """`import dagmesh` (what every domain does) loads no Dagster and no tool."""
    reached = _reaches(imports, "dagmesh")
    assert not reached & DAGSTER
    assert {layer(m) for m in reached if m in imports and m != "dagmesh"} <= set(LAYERS[:3])


MAX_FUNCTION_LINES = 60


def test_no_platform_function_is_longer_than_a_screen():
    """Each function of the platform fits in 60 lines, docstring included."""
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines})")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"

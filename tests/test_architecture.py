"""The platform's imports point one way: declarations, then the engine, then
the Dagster adapters, then the tools. Read from the source (every import,
module-level or inside a function), so a lazy import cannot hide a cycle."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "platform" / "dagmesh"

# What a domain engineer declares with, and what the registry and governance
# read: no Dagster, no engine.
DECLARATIONS = {
    "dagmesh.product",
    "dagmesh.spec",
    "dagmesh.contracts.model",
    "dagmesh.dbt.manifest",
    "dagmesh.registry",
    "dagmesh.errors",
    "dagmesh.config",
}
# Computes, checks, masks and publishes data: no Dagster.
ENGINE = {
    "dagmesh.storage",
    "dagmesh.landing",
    "dagmesh.masking",
    "dagmesh.audit",
    "dagmesh.audit_log",
    "dagmesh.port_health",
    "dagmesh.access",
    "dagmesh.build",
    "dagmesh.publish",
    "dagmesh.context",
    "dagmesh.contracts.checks",
    "dagmesh.contracts.generate",
    "dagmesh.contracts.breaking",
    "dagmesh.dbt.project",
    "dagmesh.dbt.adoption",
    "dagmesh.governance",
    "dagmesh.registration",
    "dagmesh.workspace",
    "dagmesh.atomic",
    "dagmesh.sql",
    "dagmesh.privacy",
    "dagmesh.timestamps",
    "dagmesh.grants",
    "dagmesh.dbt.grant_plugin",
    "dagmesh.extensions",
    "dagmesh.objectstore",
}


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


@pytest.mark.parametrize("module", sorted(DECLARATIONS | ENGINE))
def test_declarations_and_engine_know_nothing_of_dagster(imports, module):
    assert module in imports, f"{module} is gone: update the layer lists"
    reached = _reaches(imports, module)
    assert not reached & {"dagster", "dagster_dbt", "dagster_graphql"}, (
        f"{module} imports Dagster (through {sorted(reached & set(imports))})"
    )


# A declaration may name where a product's port lives (storage) and read its
# dbt project's manifest (dbt.project), and nothing else of the engine.
DECLARATIONS_MAY_USE = DECLARATIONS | {
    "dagmesh",
    "dagmesh.atomic",
    "dagmesh.storage",
    "dagmesh.grants",  # storage locks each step's DuckDB to its grant
    "dagmesh.dbt.project",
    "dagmesh.dbt.adoption",
    "dagmesh.instance",
    "dagmesh.sql",
    "dagmesh.context",
}


@pytest.mark.parametrize("module", sorted(DECLARATIONS))
def test_declarations_do_not_import_the_engine(imports, module):
    reached = {m for m in _reaches(imports, module) if m.startswith("dagmesh")}
    assert reached <= DECLARATIONS_MAY_USE, (
        f"{module} reaches {sorted(reached - DECLARATIONS_MAY_USE)}"
    )

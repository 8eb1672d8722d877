"""Reading a dbt manifest the mesh's way: meta, classification, access and
the column tests of a node. Plain data, no Dagster and no dbt run, so the
declaration layer (product specs, contracts) can use it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PORTS_DATABASE = "ports"
"""The database name under which a dbt project reads published products:
a source ``{name: sales, database: ports, tables: [{name: orders}]}`` reads
the current version of ``sales/orders``."""

# dbt's model access levels, read as the mesh's: `protected` (dbt's default)
# lets other dbt projects ref a model only when allowed, like `internal`.
ACCESS_LEVELS = {"public": "public", "protected": "internal", "private": "private"}


def node_meta(props: Mapping[str, Any]) -> dict[str, Any]:
    """A dbt node's or column's ``meta``, ``config.meta`` taking precedence."""
    return {**props.get("meta", {}), **props.get("config", {}).get("meta", {})}


def classification(column: Mapping[str, Any], node: Mapping[str, Any] | None = None) -> str | None:
    """A dbt column's ``meta.classification`` (``pii``, ``pseudonymous``...),
    else its model's (``+meta: {classification: internal}``)."""
    for props in (column, node or {}):
        if value := node_meta(props).get("classification"):
            return str(value)
    return None


def node_access(props: Mapping[str, Any]) -> str:
    """The mesh access level of a dbt node (seeds and snapshots: internal)."""
    return ACCESS_LEVELS.get(props.get("access") or "protected", "internal")


def product_name(node: Mapping[str, Any]) -> str:
    """The product a dbt model, seed or snapshot is: its name, and for a
    versioned model ``<name>_v<version>`` (dbt's own relation name for it),
    so that each version is a product of its own."""
    version = node.get("version")
    return node["name"] if version is None else f"{node['name']}_v{version}"


def is_ephemeral(node: Mapping[str, Any]) -> bool:
    """An ephemeral model: inlined into the models that ref it, never built."""
    return node.get("config", {}).get("materialized") == "ephemeral"


def tested_node(test: Mapping[str, Any], manifest: Mapping[str, Any]) -> str | None:
    """The unique_id of the node a dbt test is a check of, by dagster-dbt's
    rule (so the mesh lists exactly the checks Dagster runs): a test with one
    upstream node checks it; else ``meta.dagster.ref`` names it; else the
    generic test's ``attached_node`` (a ``relationships`` test checks the
    model it is defined on, not the one it refers to)."""
    upstream = test.get("depends_on", {}).get("nodes", [])
    attached = test.get("attached_node")
    if len(upstream) == 1:
        attached = upstream[0]
    ref = (test.get("config", {}).get("meta") or test.get("meta") or {}).get("dagster", {})
    ref = ref.get("ref") or {}
    if ref:
        package = ref.get("package") or manifest.get("metadata", {}).get("project_name")
        wanted = (ref["name"], package, ref.get("version"))
        attached = next(
            (
                uid
                for uid, node in manifest["nodes"].items()
                if (node["name"], node.get("package_name"), node.get("version")) == wanted
            ),
            None,
        )
    return attached


def column_tests(manifest: Mapping[str, Any], unique_id: str) -> dict[str, set[str]]:
    """Generic dbt tests on single columns of a node: column → {unique, not_null...}."""
    tested: dict[str, set[str]] = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] == "test" and node.get("attached_node") == unique_id:
            rule = (node.get("test_metadata") or {}).get("name")
            column = node.get("column_name")
            if rule and column:
                tested.setdefault(column, set()).add(rule)
    return tested

"""Reading a dbt manifest the mesh's way: meta, classification, access and
the column tests of a node. Plain data, no Dagster and no dbt run, so the
declaration layer (product specs, contracts) can use it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagmesh.errors import DagmeshError

PORTS_DATABASE = "ports"
"""The database name under which a dbt project reads published products:
a source ``{name: sales, database: ports, tables: [{name: orders}]}`` reads
the current version of ``sales/orders``."""


class DbtGraphError(DagmeshError, ValueError):
    """A dbt project's nodes cannot be ordered (they read each other)."""


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


def unit_tests_of(manifest: Mapping[str, Any], unique_id: str) -> list[dict[str, Any]]:
    """The dbt unit tests of a model (each is a blocking check of it: dbt
    does not build a model whose unit test fails)."""
    return [
        unit
        for unit in manifest.get("unit_tests", {}).values()
        if unique_id in unit.get("depends_on", {}).get("nodes", [])
    ]


def relation(props: Mapping[str, Any]) -> tuple[str, str, str]:
    """The relation a source reads or a node builds, as DuckDB compares
    names (case-insensitively): (database, schema, identifier)."""
    name = props.get("identifier") or props.get("alias") or props["name"]
    return (str(props.get("database") or "").lower(), str(props["schema"]).lower(), name.lower())


def own_source_producers(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Sources the project fills itself: source unique_id → the unique_id of
    the model, seed or snapshot of the project whose relation it reads (a
    staging model reading ``source('ecom', 'raw_customers')`` that the
    project's seed ``raw_customers`` loads). dbt orders nothing between the
    two; the mesh makes each such source an edge to its producer.

    A producer that itself reads the source (an incremental model reading
    its own table through ``source()``) is left out: that is no edge."""
    project = manifest.get("metadata", {}).get("project_name")
    built = {
        relation(node): uid
        for uid, node in manifest["nodes"].items()
        if node["resource_type"] in ("model", "seed", "snapshot")
        and node.get("package_name", project) == project
        and not is_ephemeral(node)
        and node.get("schema")
    }
    producers = {}
    for uid, source in manifest["sources"].items():
        producer = built.get(relation(source))
        if producer and source.get("database") != PORTS_DATABASE:
            producers[uid] = producer
    return {
        uid: producer
        for uid, producer in producers.items()
        if uid not in upstream_nodes(manifest, producer, producers)
    }


def upstream_nodes(
    manifest: Mapping[str, Any], unique_id: str, producers: Mapping[str, str] | None = None
) -> set[str]:
    """Every node and source ``unique_id`` reads, transitively; a source the
    project fills (``producers``) reads its producer."""
    producers = producers or {}
    seen: set[str] = set()
    pending = [unique_id]
    while pending:
        current = pending.pop()
        node = manifest["nodes"].get(current)
        parents = list(node.get("depends_on", {}).get("nodes", [])) if node else []
        if current in producers:
            parents.append(producers[current])
        for parent in parents:
            if parent not in seen:
                seen.add(parent)
                pending.append(parent)
    return seen


def build_phases(
    manifest: Mapping[str, Any], selected: set[str], producers: Mapping[str, str]
) -> list[list[str]]:
    """The selected nodes in the order their relations must exist: one
    ``dbt build`` per phase. A node is in a later phase than the producer of
    every source it reads (dbt does not order those), and in no earlier
    phase than a selected node it refs (dbt orders those within a phase).
    One phase when nothing selected reads a source the selection builds.

    Raises DbtGraphError naming the nodes when sources and refs form a cycle."""
    phase: dict[str, int] = {}
    visiting: list[str] = []

    def phase_of(uid: str) -> int:
        if uid in phase:
            return phase[uid]
        if uid in visiting:
            cycle = [manifest["nodes"][u]["name"] for u in visiting[visiting.index(uid) :]]
            raise DbtGraphError(
                "these nodes read each other through source() and ref(): " + " -> ".join(cycle)
            )
        visiting.append(uid)
        level = 0
        for parent in manifest["nodes"][uid].get("depends_on", {}).get("nodes", []):
            upstream = manifest["nodes"].get(parent)
            if parent in selected or (upstream is not None and is_ephemeral(upstream)):
                level = max(level, phase_of(parent))
            elif producers.get(parent) in selected:
                level = max(level, phase_of(producers[parent]) + 1)
        visiting.pop()
        phase[uid] = level
        return level

    for uid in sorted(selected):
        phase_of(uid)
    last = max((phase[uid] for uid in selected), default=0)
    phases: list[list[str]] = [[] for _ in range(last + 1)]
    for uid in sorted(selected):
        phases[phase[uid]].append(uid)
    return [nodes for nodes in phases if nodes]

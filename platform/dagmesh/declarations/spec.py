"""One description of a product, whether Python/SQL or dbt built it.

Contracts are generated from it and governance policies judge it, so both
work the same for a ``sql_product`` and a dbt model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagmesh.declarations.dbt_manifest import (
    PORTS_DATABASE,
    classification,
    column_tests,
    is_ephemeral,
    node_access,
    node_meta,
    own_source_producers,
    product_name,
    tested_node,
    unit_tests_of,
)
from dagmesh.declarations.product import Domain, Product, allowed


@dataclass(frozen=True)
class ColumnSpec:
    """A published column as its declaration (Python or dbt yml) states it."""

    name: str
    type: str
    description: str = ""
    classification: str | None = None
    required: bool = False
    unique: bool = False
    joinable: bool = False

    @property
    def masking(self) -> str | None:
        """How other domains see it: ``hash``, ``redact`` or None (as is)."""
        if self.classification != "pii":
            return None
        return "hash" if self.joinable else "redact"


@dataclass
class ProductSpec:
    """What a product's declaration says, in one shape for every kind."""

    domain: str
    name: str
    kind: str  # sql, python or dbt
    owner: str
    description: str
    access: str
    columns: list[ColumnSpec]
    consumers: list[str] = field(default_factory=list)
    primary_key: list[str] = field(default_factory=list)
    consumes: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # landing alias -> declared path
    blocking_checks: list[str] = field(default_factory=list)
    # Checks that run and are recorded but never block (dbt: severity warn).
    warning_checks: list[str] = field(default_factory=list)
    defined_in: Path | None = None
    # The platform audits not-null and primary key itself; dbt's tests do it for dbt models.
    row_audits: bool = True

    @property
    def ref(self) -> str:
        """``domain/name``."""
        return f"{self.domain}/{self.name}"

    @property
    def masking(self) -> dict[str, str]:
        """PII column → how other domains see it (``hash`` or ``redact``)."""
        return {c.name: c.masking for c in self.columns if c.masking}

    @property
    def personal(self) -> set[str]:
        """Columns never shown in messages and previews."""
        return {c.name for c in self.columns if c.classification == "pii"}

    @property
    def exposed(self) -> bool:
        """True when another domain may read it: public, or internal with a
        consumer outside its own domain. What is not exposed is the domain's
        internals (dbt: seeds, staging and protected or private models by
        default) and answers only to the domain-internal policies."""
        if self.access == "public":
            return True
        return self.access == "internal" and any(c != self.domain for c in self.consumers)

    def readable_by(self, consumer_domain: str) -> bool:
        """True when ``consumer_domain`` may read this product."""
        return allowed(self.domain, self.access, self.consumers, consumer_domain)


def python_spec(product: Product) -> ProductSpec:
    """The spec of a product declared in Python."""
    required = {c.name for c in product.columns if not c.nullable} | set(product.primary_key)
    checks = []
    if required:
        checks.append("not_null")
    if product.primary_key:
        checks.append("primary_key")
    return ProductSpec(
        domain=product.domain,
        name=product.name,
        kind=product.kind,
        owner=product.owner,
        description=product.description,
        access=product.access,
        consumers=list(product.consumers),
        columns=[
            ColumnSpec(
                c.name,
                c.type,
                c.description,
                product.column_classification(c),
                required=c.name in required,
                unique=product.primary_key == [c.name],
                joinable=c.joinable,
            )
            for c in product.columns
        ],
        primary_key=list(product.primary_key),
        consumes=sorted(set(product.consumes.values())),
        sources={alias: source.path for alias, source in product.sources.items()},
        blocking_checks=checks,
        defined_in=Path(product.defined_at[0]) if product.defined_at else None,
    )


def _dbt_columns(node: Mapping[str, Any], manifest: Mapping[str, Any]) -> list[ColumnSpec]:
    """The columns a dbt yml declares; required and unique from the model's
    and the column's constraints and from the column's tests."""
    rules: dict[str, set[str]] = {
        name: set(tests) for name, tests in column_tests(manifest, node["unique_id"]).items()
    }
    for constraint in node.get("constraints", []):
        for column in constraint.get("columns", []):
            rules.setdefault(column, set()).add(constraint["type"])
    columns = []
    for name, column in node.get("columns", {}).items():
        kinds = {c["type"] for c in column.get("constraints", [])} | rules.get(name, set())
        columns.append(
            ColumnSpec(
                name,
                column.get("data_type") or "",
                column.get("description") or "",
                classification(column, node),
                required=bool({"not_null", "primary_key"} & kinds),
                unique=bool({"unique", "primary_key"} & kinds),
                joinable=node_meta(column).get("masking") == "hash",
            )
        )
    return columns


def _dbt_consumes(domain: str, node: Mapping[str, Any], manifest: Mapping[str, Any]) -> list[str]:
    """Products a dbt node reads: published ports (``ports`` sources) and
    the domain's own nodes; through an ephemeral model (not a product), what
    it reads."""
    consumes: set[str] = set()
    producers = own_source_producers(manifest)
    pending, seen = list(node.get("depends_on", {}).get("nodes", [])), set()
    while pending:
        parent = pending.pop()
        if parent in seen:
            continue
        seen.add(parent)
        if parent in producers:  # a source the project's own seed or model fills
            pending.append(producers[parent])
        elif parent.startswith("source."):
            source = manifest["sources"][parent]
            if source.get("database") == PORTS_DATABASE:
                consumes.add(f"{source['source_name']}/{source['name']}")
        elif parent in manifest["nodes"]:
            upstream = manifest["nodes"][parent]
            if is_ephemeral(upstream):
                pending += upstream.get("depends_on", {}).get("nodes", [])
            else:
                consumes.add(f"{domain}/{product_name(upstream)}")
    return sorted(consumes)


def _dbt_tests(
    node: Mapping[str, Any], manifest: Mapping[str, Any], blocking: bool = True
) -> list[str]:
    """The error-severity (``blocking``) or warn-severity dbt tests of a node:
    those Dagster attaches to it as checks (:func:`tested_node`), so that a
    ``relationships`` test belongs to the model it is written on, not to the
    model it refers to. The node's unit tests are blocking checks too."""
    names = [
        test["name"]
        for test in manifest["nodes"].values()
        if test["resource_type"] == "test"
        and tested_node(test, manifest) == node["unique_id"]
        and (str(test.get("config", {}).get("severity", "error")).lower() == "error") == blocking
    ]
    if blocking:
        names += [u["name"] for u in unit_tests_of(manifest, node["unique_id"])]
    return list(dict.fromkeys(names))


def dbt_spec(
    domain: Domain, node: Mapping[str, Any], manifest: Mapping[str, Any], project_dir: Path
) -> ProductSpec:
    """The spec of a dbt model, seed or snapshot of ``domain``'s project.

    Types, descriptions and classification (``meta.classification`` on the
    column, else on the model) come from the yml; required and unique from
    constraints and tests; the owner from the dbt group, else the domain.
    """
    model_meta = node_meta(node)
    group = manifest.get("groups", {}).get(f"group.{node.get('package_name')}.{node.get('group')}")
    owner = (group or {}).get("owner", {}).get("name") or model_meta.get("owner") or domain.owner
    return ProductSpec(
        domain=domain.name,
        name=product_name(node),
        kind="dbt",
        owner=owner,
        description=node.get("description") or "",
        access=node_access(node),
        consumers=list(model_meta.get("consumers") or []),
        columns=_dbt_columns(node, manifest),
        primary_key=list(model_meta.get("primary_key") or []),
        consumes=_dbt_consumes(domain.name, node, manifest),
        blocking_checks=_dbt_tests(node, manifest),
        warning_checks=_dbt_tests(node, manifest, blocking=False),
        defined_in=project_dir / node["original_file_path"],
        row_audits=False,
    )

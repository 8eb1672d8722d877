"""How dbt nodes become mesh products: one translator for every domain."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtProject

from dagmesh.declarations.contract import Contract
from dagmesh.declarations.dbt_manifest import (
    PORTS_DATABASE,
    classification,
    node_access,
    node_meta,
    product_name,
)
from dagmesh.declarations.spec import ProductSpec
from dagmesh.orchestration.assets import (
    MATERIALIZE_LINK,
    contract_metadata,
    freshness_policy,
    materialize_with_upstream_link,
)
from dagmesh.orchestration.automation import from_dbt_meta
from dagmesh.orchestration.results import column_schema


class MeshDbtTranslator(DagsterDbtTranslator):
    """dbt nodes of ``domain`` as its products.

    - models, seeds and snapshots: key ``[domain, name]``, group = domain,
      owner from the dbt group (``team:<owner name>``) or the domain's team;
    - sources in the ``ports`` database: the producer's key
      ``[source name, table]`` (``sales.orders`` → ``["sales", "orders"]``),
      so the dependency is an edge across code locations;
    - other sources: ``[domain, source, table]``, or ``meta.dagster.asset_key``;
      but reading a source whose relation a model, seed or snapshot of the
      project builds (``own_sources``: source unique_id → product name) is
      an edge to that product, and no source asset (dagster-dbt refuses a
      source key equal to a model's, so the dep is rewritten instead).

    Source metadata on deps is off: with several dbt projects in one
    workspace, dagster-dbt 0.29 fails to load when two projects describe one
    shared key differently ("All metadata for AssetDeps ... must be identical").
    """

    def __init__(
        self,
        domain: str,
        owner: str,
        contracts: Mapping[str, Contract | None] | None = None,
        specs: Mapping[str, ProductSpec] | None = None,
        own_sources: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            settings=DagsterDbtTranslatorSettings(
                enable_source_metadata=False, enable_code_references=True
            )
        )
        self.domain = domain
        self.owner = owner
        self.contracts = dict(contracts or {})
        self.specs = dict(specs or {})
        self.own_sources = dict(own_sources or {})

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        props = dbt_resource_props
        if props.get("meta", {}).get("dagster", {}).get("asset_key"):
            return super().get_asset_key(props)
        if props["resource_type"] == "source":
            if props.get("database") == PORTS_DATABASE:
                return dg.AssetKey([props["source_name"], props["name"]])
            return dg.AssetKey([self.domain, props["source_name"], props["name"]])
        return dg.AssetKey([self.domain, product_name(props)])

    def get_automation_condition(
        self, dbt_resource_props: Mapping[str, Any]
    ) -> dg.AutomationCondition | None:
        return from_dbt_meta(node_meta(dbt_resource_props))

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return self.domain

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> Sequence[str] | None:
        group = dbt_resource_props.get("group")
        owner = group.get("owner", {}).get("name") if isinstance(group, Mapping) else None
        owner = owner or dbt_resource_props.get("meta", {}).get("owner") or self.owner
        return [owner if owner.startswith("team:") or "@" in owner else f"team:{owner}"]

    def get_description(self, dbt_resource_props: Mapping[str, Any]) -> str:
        return dbt_resource_props.get("description") or (
            f"dbt {dbt_resource_props['resource_type']} {dbt_resource_props['name']}"
        )

    def get_tags(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, str]:
        tags = dict(super().get_tags(dbt_resource_props))
        if dbt_resource_props["resource_type"] == "source":
            return tags
        tags["dagmesh/domain"] = self.domain
        tags["dagmesh/access"] = node_access(dbt_resource_props)
        columns = dbt_resource_props.get("columns", {}).values()
        if any(classification(c) == "pii" for c in columns):
            tags["dagmesh/pii"] = "true"
        return tags

    def get_metadata(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, Any]:
        props = dbt_resource_props
        metadata = dict(super().get_metadata(props))
        if props["resource_type"] == "source":
            return metadata
        metadata["dagmesh/product"] = f"{self.domain}/{product_name(props)}"
        metadata[MATERIALIZE_LINK] = materialize_with_upstream_link(metadata["dagmesh/product"])
        metadata["dagmesh/access"] = node_access(props)
        metadata["dagmesh/dbt_materialized"] = props.get("config", {}).get("materialized", "")
        if props.get("contract", {}).get("enforced"):
            metadata["dagmesh/dbt_contract"] = "enforced"
        return metadata

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None
    ) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        if unique_id.startswith("source."):
            return spec
        spec = self._own_sources_as_products(manifest, spec)
        consumes = sorted("/".join(dep.asset_key.path) for dep in spec.deps)
        props = self.get_resource_props(manifest, unique_id)
        name = product_name(props)
        contract = self.contracts.get(name)
        policy = freshness_policy(contract)
        if policy is not None:
            spec = spec.replace_attributes(freshness_policy=policy)
        metadata: dict[str, Any] = {"dagmesh/consumes": json.dumps(consumes)}
        if name in self.specs:
            metadata["dagster/column_schema"] = column_schema(self.specs[name])
        return spec.merge_attributes(
            kinds={"parquet"}, metadata={**metadata, **contract_metadata(contract)}
        )

    def _own_sources_as_products(
        self, manifest: Mapping[str, Any], spec: dg.AssetSpec
    ) -> dg.AssetSpec:
        """``spec`` with each dep on a source the project fills itself
        replaced by a dep on the product that fills it."""
        if not self.own_sources:
            return spec
        producer_of = {
            self.get_asset_key(manifest["sources"][uid]): dg.AssetKey([self.domain, name])
            for uid, name in self.own_sources.items()
        }
        if not any(dep.asset_key in producer_of for dep in spec.deps):
            return spec
        deps: dict[dg.AssetKey, dg.AssetDep] = {}
        for dep in spec.deps:
            key = producer_of.get(dep.asset_key, dep.asset_key)
            if key not in deps and key != spec.key:
                deps[key] = dg.AssetDep(key, partition_mapping=dep.partition_mapping)
        return spec.replace_attributes(deps=list(deps.values()))

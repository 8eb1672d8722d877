"""dbt models of the finance and marketing domains are products like Python
ones: same keys, owners and checks, published through the same ports."""

from __future__ import annotations

import importlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pytest
from dagster import AssetCheckKey, AssetKey, DagsterInstance, RunsFilter

from dagmesh.engine.dbt.project import dbt_project
from dagmesh.orchestration.runner import MATERIALIZATION_TAG, materialize, workspace_context
from tests.conftest import port_file, query

DBT_PRODUCTS = {
    "finance/delay_costs",
    "finance/weekly_delay_impact",
    "marketing/lead_attribution",
    "marketing/ad_audiences",
}


@pytest.fixture(scope="module")
def graph(mesh_home):
    with DagsterInstance.get() as instance, workspace_context(instance) as context:
        yield context.create_request_context().asset_graph


def test_dbt_models_are_products_of_their_domain(graph):
    keys = {"/".join(k.path) for k in graph.materializable_asset_keys}
    assert keys >= DBT_PRODUCTS
    node = graph.get(AssetKey(["finance", "delay_costs"]))
    assert node.group_name == "finance"
    assert node.owners == ["team:finance"]  # from the dbt group's owner
    assert node.description.startswith("Per delayed order")
    assert {"dagster/kind/dbt", "dagster/kind/duckdb", "dagster/kind/parquet"} <= set(node.tags)
    assert node.tags["dagmesh/access"] == "public"
    assert "dagster/code_references" in node.metadata
    assert node.metadata["dagmesh/dbt_contract"].value == "enforced"
    schema = {c.name: c for c in node.metadata["dagster/column_schema"].schema.columns}
    assert schema["revenue_at_risk"].type == "decimal(18,2)"
    assert schema["order_id"].description == "The delayed order (sales/orders)."
    assert not schema["order_id"].constraints.nullable
    assert schema["order_id"].constraints.unique
    audiences = graph.get(AssetKey(["marketing", "ad_audiences"]))
    email = next(
        c
        for c in audiences.metadata["dagster/column_schema"].schema.columns
        if c.name == "email_sha256"
    )
    assert email.tags == {"classification": "pseudonymous"}


def test_dbt_tests_are_blocking_asset_checks(graph):
    node = graph.get(AssetKey(["finance", "delay_costs"]))
    checks = {c.name for c in node.check_keys}
    assert {"unique_delay_costs_order_id", "not_null_delay_costs_cause"} <= checks
    assert any(name.startswith("accepted_values_delay_costs_cause") for name in checks)
    from domains.finance.definitions import defs

    specs = defs.resolve_assets_def(node.key).check_specs
    assert specs and all(spec.blocking for spec in specs)


def test_dbt_sources_are_edges_to_the_producers_in_other_locations(graph):
    parents = {
        "/".join(k.path) for k in graph.get(AssetKey(["finance", "delay_costs"])).parent_keys
    }
    assert parents == {"shipping/shipping_delays", "sales/order_items", "finance/refunds"}
    assert graph.get_repository_handle(AssetKey(["shipping", "shipping_delays"])).location_name == (
        "shipping"
    )
    # A Python product consuming a dbt product of its own domain, and of another.
    exports = graph.get(AssetKey(["marketing", "audience_exports"])).parent_keys
    assert AssetKey(["marketing", "ad_audiences"]) in exports
    profile = graph.get(AssetKey(["customers", "customer_360"])).parent_keys
    assert AssetKey(["marketing", "lead_attribution"]) in profile


def check_statuses(instance: DagsterInstance, key: AssetKey) -> dict[str, str]:
    """The last execution status of each dbt test of ``key``."""
    defs = importlib.import_module(f"domains.{key.path[0]}.definitions").defs
    check_keys = [AssetCheckKey(key, s.name) for s in defs.resolve_assets_def(key).check_specs]
    check_keys = [k for k in check_keys if k.asset_key == key]
    summaries = instance.event_log_storage.get_asset_check_summary_records(check_keys)
    return {
        k.name: s.last_check_execution_record.status.value
        for k, s in summaries.items()
        if s.last_check_execution_record
    }


def test_dbt_materializations_report_rows_columns_and_checks(materialized, mesh_home: Path):
    with DagsterInstance.get() as instance:
        for ref in DBT_PRODUCTS:
            key = AssetKey(ref.split("/"))
            event = instance.get_latest_materialization_event(key)
            assert event is not None, ref
            metadata = event.asset_materialization.metadata
            data = port_file(mesh_home, ref)
            assert (
                metadata["dagster/row_count"].value == query(f"SELECT count(*) FROM '{data}'")[0][0]
            )
            assert metadata["dagster/row_count"].value > 0
            columns = [c.name for c in metadata["dagster/column_schema"].schema.columns]
            assert columns == [name for name, *_ in query(f"DESCRIBE SELECT * FROM '{data}'")]
            assert Path(data).resolve().parent.name == metadata["dagmesh/version"].value
            statuses = check_statuses(instance, key)
            assert statuses and set(statuses.values()) == {"SUCCEEDED"}, (ref, statuses)
            # The platform's checks ran on the staged model too: schema and contract rules.
            assert {"schema", "row_count"} <= set(statuses), (ref, statuses)


def test_dbt_reads_the_pinned_published_port_never_working_tables(materialized, mesh_home):
    version = (mesh_home / "domains/finance/ports/delay_costs/current/version.json").read_text()
    shipping = Path(port_file(mesh_home, "shipping/shipping_delays")).resolve().parent.name
    assert f'"shipping/shipping_delays": "{shipping}"' in version
    ports = duckdb.connect(str(mesh_home / "domains/finance/dbt/ports.duckdb"), read_only=True)
    views = dict(
        ports.execute(
            "SELECT schema_name || '.' || view_name, sql FROM duckdb_views() WHERE NOT internal"
        ).fetchall()
    )
    ports.close()
    assert set(views) == {"shipping.shipping_delays", "sales.order_items", "finance.refunds"}
    assert (
        f"/domains/shipping/ports/shipping_delays/versions/{shipping}/data.parquet"
        in views["shipping.shipping_delays"]
    )
    # finance's own DuckDB file holds finance's models only.
    working = duckdb.connect(
        str(mesh_home / "domains/finance/dbt/warehouse.duckdb"), read_only=True
    )
    tables = {
        name for (name,) in working.execute("SELECT table_name FROM duckdb_tables()").fetchall()
    }
    working.close()
    assert tables == {"delay_costs", "weekly_delay_impact"}


def test_with_upstream_runs_the_producer_domains_first(materialized, mesh_home):
    outcome = materialize(["finance/weekly_delay_impact"], with_upstream=True, timeout=600)
    assert outcome.success, [f.message for f in outcome.failures]
    assert {"sales/orders", "shipping/shipping_delays", "finance/delay_costs"} <= set(
        outcome.materialized
    )
    with DagsterInstance.get() as instance:
        runs = instance.get_run_records(
            RunsFilter(tags={MATERIALIZATION_TAG: outcome.materialization_id})
        )
        started = {
            r.dagster_run.tags.get("dagster/code_location")
            or next(iter(r.dagster_run.asset_selection)).path[0]: (r.start_time, r.end_time)
            for r in runs
        }
    assert started["finance"][0] >= started["shipping"][1]
    assert started["shipping"][0] >= started["sales"][1]


def test_preparing_again_never_leaves_readers_without_a_manifest(mesh_home: Path):
    """A code server loading while `dagmesh prepare` runs reads the old
    manifest or the new one, never a missing or half-written file."""
    from dagmesh.engine.workspace import load_mesh

    project = dbt_project(load_mesh()["finance"])
    before = json.loads(project.manifest_path.read_text())["metadata"]["generated_at"]
    reads, broken = 0, []
    with ThreadPoolExecutor(1) as pool:
        parsing = pool.submit(project.prepare, mesh_home)
        while not parsing.done():
            try:
                json.loads(project.manifest_path.read_text())
                reads += 1
            except (OSError, ValueError) as error:
                broken.append(repr(error))
            time.sleep(0.01)
        parsing.result()
    assert not broken, broken[:3]
    assert reads > 10
    after = json.loads(project.manifest_path.read_text())["metadata"]["generated_at"]
    assert after != before


def test_a_process_that_moves_to_another_checkout_reads_that_checkouts_project(
    tmp_path: Path, monkeypatch
):
    """The per-domain project object follows ``DAGMESH_PROJECT``: a test or a
    tool that switches checkouts in one process never parses the other one."""
    from dagmesh.declarations.product import Domain

    for name in ("one", "two"):
        project = tmp_path / name / "dbt_projects" / "shop"
        project.mkdir(parents=True)
        (project / "dbt_project.yml").write_text(f"name: shop_{name}\nprofile: shop\n")
    domain = Domain("shop", "team:shop", "A shop.", dbt_project="dbt_projects/shop")
    monkeypatch.setenv("DAGMESH_PROJECT", str(tmp_path / "one"))
    first = dbt_project(domain)
    assert dbt_project(domain) is first  # one object per checkout
    monkeypatch.setenv("DAGMESH_PROJECT", str(tmp_path / "two"))
    second = dbt_project(domain)
    assert (first.name, second.name) == ("shop_one", "shop_two")
    assert second.project_dir == tmp_path / "two" / "dbt_projects" / "shop"

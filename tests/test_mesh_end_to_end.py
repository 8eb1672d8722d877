"""The whole sample mesh materialized across code locations, checked against
what the source generator knows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from dagster import AssetKey, DagsterInstance
from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter

from dagmesh.orchestration.runner import MATERIALIZATION_TAG
from tests import reconcile
from tests.conftest import port_file, query
from tests.reconcile import LocalPorts

ALL_PRODUCTS = {
    "sales/orders",
    "sales/order_items",
    "sales/daily_revenue",
    "shipping/shipments",
    "shipping/returns",
    "shipping/shipping_delays",
    "shipping/delay_risk_model",
    "shipping/open_order_delay_risk",
    "marketing/crm_leads",
    "marketing/lead_attribution",
    "marketing/ad_audiences",
    "marketing/audience_exports",
    "customers/customer_profiles",
    "customers/customer_360",
    "finance/refunds",
    "finance/delay_costs",
    "finance/weekly_delay_impact",
}


def test_every_product_is_materialized_as_dagster_runs(materialized, mesh_home: Path):
    assert set(materialized.materialized) == ALL_PRODUCTS
    instance = DagsterInstance.get()
    runs = instance.get_runs(
        filters=RunsFilter(tags={MATERIALIZATION_TAG: materialized.materialization_id})
    )
    assert {r.run_id for r in runs} == set(materialized.run_ids)
    assert all(r.status == DagsterRunStatus.SUCCESS for r in runs)
    # One run never mixes domains: Dagster runs one code location per run.
    for run in runs:
        assert len({key.path[0] for key in run.asset_selection}) == 1
    event = instance.get_latest_materialization_event(AssetKey(["sales", "orders"]))
    metadata = event.asset_materialization.metadata
    assert metadata["dagster/row_count"].value > 0
    assert metadata["dagmesh/version"].value.endswith(event.run_id[:8])
    assert metadata["dagmesh/quarantined_rows"].value > 0


def test_orders_and_revenue_reconcile_with_the_sources(materialized, mesh_home, truth):
    reconcile.orders_and_revenue(LocalPorts(mesh_home), truth)


def test_delays_reconcile_with_the_generated_scenarios(materialized, mesh_home, truth):
    reconcile.delays(LocalPorts(mesh_home), truth)


def test_quarantine_counts_equal_the_injected_defects(materialized, mesh_home, truth):
    reconcile.quarantine_counts(LocalPorts(mesh_home), truth)
    quarantined = mesh_home / "domains/sales/ports/orders/current/quarantine/order_events.parquet"
    rows = pd.read_parquet(quarantined)
    assert set(rows["_reject_reason"]) == {"missing order_id", "invalid order_ts"}
    assert rows["_source_file"].str.endswith(".csv").all()  # each row says where it came from


def test_marketing_and_finance_reconcile(materialized, mesh_home, truth):
    reconcile.marketing_finance_and_customers(LocalPorts(mesh_home), truth)


def test_reverse_etl_files_match_the_audiences(materialized, mesh_home):
    exports = pd.read_parquet(port_file(mesh_home, "marketing/audience_exports"))
    assert set(exports["ad_platform"]) == {"google", "meta", "linkedin"}
    for row in exports.itertuples():
        sent = pd.read_csv(row.file)
        assert len(sent) == row.members
        assert sent["email_sha256"].str.fullmatch("[0-9a-f]{64}").all()


def test_ports_are_readable_without_dagmesh(materialized, mesh_home):
    """Plain pandas (pyarrow) and plain DuckDB read every published port."""
    for ref in ALL_PRODUCTS:
        frame = pd.read_parquet(port_file(mesh_home, ref))
        assert len(frame) == query(f"SELECT count(*) FROM '{port_file(mesh_home, ref)}'")[0][0]

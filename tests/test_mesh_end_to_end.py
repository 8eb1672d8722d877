"""The whole sample mesh materialized across code locations, checked against
what the source generator knows."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from dagster import AssetKey, DagsterInstance
from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter

from dagmesh.orchestration.runner import MATERIALIZATION_TAG
from tests.conftest import port_file, query

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
    orders = port_file(mesh_home, "sales/orders")
    items = port_file(mesh_home, "sales/order_items")
    revenue = port_file(mesh_home, "sales/daily_revenue")
    ((count, cancelled),) = query(
        f"SELECT count(*), count(*) FILTER (WHERE status = 'cancelled') FROM '{orders}'"
    )
    assert count == truth["orders"]  # duplicates and late events collapsed, defects out
    assert cancelled == truth["cancelled_orders"]
    statuses = dict(query(f"SELECT status, count(*) FROM '{orders}' GROUP BY ALL"))
    assert statuses == truth["orders_by_status"]  # the late-arriving event wins
    ((lines, line_sum),) = query(f"SELECT count(*), sum(line_amount) FROM '{items}'")
    assert lines == truth["order_lines"]
    assert float(line_sum) == truth["revenue"]
    ((gross, net),) = query(f"SELECT sum(gross_revenue), sum(net_revenue) FROM '{revenue}'")
    assert gross == line_sum  # revenue equals the sum of order lines
    assert float(net) == round(truth["revenue"] - truth["revenue_by_status"]["cancelled"], 2)


def test_delays_reconcile_with_the_generated_scenarios(materialized, mesh_home, truth):
    delays = port_file(mesh_home, "shipping/shipping_delays")
    by_cause = dict(query(f"SELECT cause, count(*) FROM '{delays}' GROUP BY ALL"))
    assert by_cause == truth["delays_by_cause"]
    shipments = port_file(mesh_home, "shipping/shipments")
    ((reshipped,),) = query(
        f"SELECT count(*) FROM '{shipments}' WHERE shipped_at IS NULL AND shipped_on IS NULL"
    )
    assert reshipped == truth["returned_reshipped"]
    ((differs,),) = query(f"SELECT count(*) FROM '{shipments}' WHERE handover_days >= 2")
    assert differs == truth["delays_by_cause"]["carrier"]
    weekly = port_file(mesh_home, "finance/weekly_delay_impact")
    late = dict(query(f"SELECT cause, sum(delayed_orders) FROM '{weekly}' GROUP BY ALL"))
    assert late == {c: n for c, n in truth["delays_by_cause"].items() if c != "on_time"}


def test_quarantine_counts_equal_the_injected_defects(materialized, mesh_home, truth):
    found = {}
    for ref, table in [
        ("sales/orders", "orders"),
        ("sales/order_items", "order_items"),
        ("customers/customer_profiles", "customers"),
        ("finance/refunds", "refunds"),
    ]:
        domain, name = ref.split("/")
        record = json.loads(
            (
                mesh_home / "domains" / domain / "ports" / name / "current" / "version.json"
            ).read_text()
        )
        (reasons,) = record["quarantined"].values()
        found[table] = reasons
    assert found == truth["quarantine"]
    quarantined = mesh_home / "domains/sales/ports/orders/current/quarantine/order_events.parquet"
    rows = pd.read_parquet(quarantined)
    assert set(rows["_reject_reason"]) == {"missing order_id", "invalid order_ts"}
    assert rows["_source_file"].str.endswith(".csv").all()  # each row says where it came from


def test_marketing_and_finance_reconcile(materialized, mesh_home, truth):
    leads = port_file(mesh_home, "marketing/crm_leads")
    assert (
        dict(query(f"SELECT channel, count(*) FROM '{leads}' GROUP BY ALL"))
        == truth["leads_by_channel"]
    )
    attribution = port_file(mesh_home, "marketing/lead_attribution")
    ((converted,),) = query(f"SELECT count(*) FROM '{attribution}' WHERE customer_id IS NOT NULL")
    assert converted == truth["converted_leads"]
    refunds = port_file(mesh_home, "finance/refunds")
    ((n, amount),) = query(f"SELECT count(*), sum(amount) FROM '{refunds}'")
    assert (n, float(amount)) == (truth["refunds"], truth["refund_amount"])
    profiles = port_file(mesh_home, "customers/customer_profiles")
    c360 = port_file(mesh_home, "customers/customer_360")
    assert query(f"SELECT count(*) FROM '{profiles}'") == [(truth["customers"],)]
    assert query(f"SELECT count(*) FROM '{c360}'") == [(truth["customers"],)]


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

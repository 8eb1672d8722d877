"""Every domain's code location loads, with the cross-domain graph and the
product metadata Dagster users expect."""

from __future__ import annotations

import dagster as dg
import pytest
from dagster import AssetKey, DagsterInstance, DefaultSensorStatus

from dagmesh import Column, Domain
from dagmesh.engine.registry import MeshError
from dagmesh.engine.specs import product_names
from dagmesh.engine.workspace import load_mesh
from dagmesh.orchestration.definitions import domain_definitions
from dagmesh.orchestration.runner import workspace_context

EXPECTED_CROSS_DOMAIN_EDGES = {
    ("sales/orders", "shipping/shipping_delays"),
    ("sales/orders", "marketing/lead_attribution"),
    ("sales/order_items", "marketing/lead_attribution"),
    ("shipping/shipping_delays", "marketing/ad_audiences"),
    ("sales/orders", "customers/customer_360"),
    ("sales/order_items", "customers/customer_360"),
    ("shipping/shipping_delays", "customers/customer_360"),
    ("marketing/lead_attribution", "customers/customer_360"),
    ("shipping/shipping_delays", "finance/delay_costs"),
    ("sales/order_items", "finance/delay_costs"),
    ("sales/orders", "shipping/delay_risk_model"),
    ("sales/order_items", "shipping/delay_risk_model"),
    ("sales/orders", "shipping/open_order_delay_risk"),
    ("sales/order_items", "shipping/open_order_delay_risk"),
    ("shipping/open_order_delay_risk", "customers/customer_360"),
}


@pytest.fixture(scope="module")
def workspace_graph(mesh_home):
    with DagsterInstance.get() as instance, workspace_context(instance) as context:
        request = context.create_request_context()
        errors = {n: e.load_error for n, e in request.get_code_location_entries().items()}
        yield errors, request.asset_graph


def test_every_code_location_loads(workspace_graph):
    errors, _ = workspace_graph
    assert set(errors) == {"sales", "shipping", "marketing", "customers", "finance"}
    assert not any(errors.values()), errors


def test_cross_domain_edges_are_in_the_loaded_asset_graph(workspace_graph):
    _, graph = workspace_graph
    products = {"/".join(k.path) for k in graph.materializable_asset_keys}
    assert len(products) >= 14
    edges = {
        ("/".join(parent.path), "/".join(key.path))
        for key in graph.materializable_asset_keys
        for parent in graph.get(key).parent_keys
        if parent.path[0] != key.path[0]
    }
    assert edges == EXPECTED_CROSS_DOMAIN_EDGES
    # The consumer location holds no copy: the edge resolves to the producer's asset.
    producer = graph.get_repository_handle(AssetKey(["sales", "orders"]))
    assert producer.location_name == "sales"


def test_products_carry_owner_group_kinds_schema_and_checks(workspace_graph):
    _, graph = workspace_graph
    node = graph.get(AssetKey(["customers", "customer_profiles"]))
    assert node.owners == ["team:customer-experience"]
    assert node.group_name == "customers"
    assert {"dagster/kind/duckdb", "dagster/kind/parquet", "dagster/kind/sql"} <= set(node.tags)
    schema = node.metadata["dagster/column_schema"].schema
    email = next(c for c in schema.columns if c.name == "email")
    assert email.tags == {"classification": "pii"}
    assert "dagster/code_references" in node.metadata
    assert {c.name for c in node.check_keys} == {"schema", "not_null", "primary_key", "row_count"}
    from domains.customers.definitions import defs

    specs = defs.resolve_assets_def(node.key).check_specs
    assert all(spec.blocking for spec in specs)


def test_the_mesh_declares_at_least_fourteen_products_in_five_domains(mesh_home):
    mesh = load_mesh()
    assert set(mesh) == {"sales", "shipping", "marketing", "customers", "finance"}
    assert sum(len(product_names(d)) for d in mesh.values()) >= 14


def test_consuming_an_unknown_product_fails_at_load_naming_both(mesh_home):
    analytics = Domain("analytics", owner="bi", description="Reporting.")
    analytics.sql_product(
        "late_orders",
        description="Late orders.",
        columns=[Column("order_id", "VARCHAR", "Order.")],
        consumes=["shipping/shipment_delays"],
        sql="SELECT order_id FROM shipment_delays",
    )
    with pytest.raises(MeshError) as error:
        domain_definitions(analytics)
    message = str(error.value)
    assert "analytics/late_orders" in message and "'shipping/shipment_delays'" in message
    assert "shipping_delays" in message  # and it lists what does exist


def test_an_unsafe_name_is_rejected():
    sales = Domain("sales_test", owner="sales", description="Test.")
    with pytest.raises(ValueError, match="not a valid name"):
        sales.sql_product(
            "orders; DROP TABLE x",
            description="Bad.",
            columns=[Column("a", "INTEGER", "A.")],
            sql="SELECT 1 AS a",
        )


def test_contracts_give_checks_freshness_and_metadata(workspace_graph):
    _, graph = workspace_graph
    blocking = {
        ("sales", "orders"): {"status_valid_values", "row_count"},
        ("sales", "daily_revenue"): {"net_is_gross_minus_cancelled"},
        ("finance", "refunds"): {"amount_positive", "reason_valid_values"},
        ("finance", "delay_costs"): {"row_count", "schema"},  # a dbt model: the same checks
    }
    for path, names in blocking.items():
        node = graph.get(AssetKey(list(path)))
        checks = {c.asset_check.name: c.asset_check for c in graph.get_checks_for_asset(node.key)}
        assert names <= set(checks), (path, set(checks))
        assert all(checks[n].blocking for n in names)
        assert node.metadata["dagmesh/contract_version"].value == "1.0.0"
    shipments = graph.get_checks_for_asset(AssetKey(["shipping", "shipments"]))
    warning = next(c.asset_check for c in shipments if c.asset_check.name == "carrier_null_check")
    assert not warning.blocking
    model = {
        c.asset_check.name: c.asset_check
        for c in graph.get_checks_for_asset(AssetKey(["shipping", "delay_risk_model"]))
    }
    assert all(model[f"metric_{m}"].blocking for m in ("roc_auc", "brier_skill"))
    scores = {
        c.asset_check.name: c.asset_check
        for c in graph.get_checks_for_asset(AssetKey(["shipping", "open_order_delay_risk"]))
    }
    assert not scores["feature_drift"].blocking and scores["delay_risk_is_a_probability"].blocking
    tags = graph.get(AssetKey(["shipping", "delay_risk_model"])).tags
    assert {"dagster/kind/scikitlearn", "dagster/kind/model"} <= set(tags)
    for path, days in {("sales", "orders"): 1, ("finance", "weekly_delay_impact"): 7}.items():
        policy = graph.get(AssetKey(list(path))).freshness_policy
        assert policy.fail_window.to_timedelta().days == days


def test_every_domain_has_alert_sensors(workspace_graph):
    with DagsterInstance.get() as instance, workspace_context(instance) as context:
        request = context.create_request_context()
        for name, entry in request.get_code_location_entries().items():
            repo = next(iter(entry.code_location.get_repositories().values()))
            sensors = {s.name: s for s in repo.get_sensors()}
            expected = {"run_failure_alerts", "freshness_alerts", "automation"}
            assert {f"{name}_{kind}" for kind in expected} <= set(sensors)
            automation = sensors[f"{name}_automation"]
            assert automation.default_status == DefaultSensorStatus.RUNNING


def test_products_declare_how_they_stay_up_to_date(workspace_graph):
    _, graph = workspace_graph
    conditions = {
        "/".join(k.path): graph.get(k).automation_condition for k in graph.materializable_asset_keys
    }
    assert all(conditions.values()), [ref for ref, c in conditions.items() if c is None]
    # A consumer in another code location than its upstream refreshes when it changes.
    eager = dg.AutomationCondition.eager()
    for ref in ("shipping/shipping_delays", "customers/customer_360", "finance/delay_costs"):
        assert conditions[ref].get_label() == eager.get_label(), ref
    assert "0 * * * *" in str(conditions["sales/orders"])


def test_every_product_links_to_materializing_it_with_its_upstream(workspace_graph):
    """Each product's page (Python, SQL, model or dbt) carries one link: the
    `mesh` job's launchpad with the product and `with_upstream: true`
    filled in (the UI's `.../playground/setup?config=` route)."""
    import re
    from urllib.parse import parse_qs, urlsplit

    import yaml

    from dagmesh.orchestration.mesh_location import materialize_products

    _, graph = workspace_graph
    for key in graph.materializable_asset_keys:
        ref = "/".join(key.path)
        link = graph.get(key).metadata["dagmesh/materialize_with_upstream"]
        assert isinstance(link, dg.MarkdownMetadataValue), ref
        label, target = re.fullmatch(r"\[([^\]]+)\]\(([^)\s]+)\)", link.md_str).groups()
        assert label == "Materialize with upstream across domains"
        url = urlsplit(target)
        assert url.path == "/locations/mesh/jobs/materialize_products/playground/setup", ref
        run_config = yaml.safe_load(parse_qs(url.query)["config"][0])
        request = run_config["ops"]["materialize_across_domains"]["config"]
        assert request == {"products": [ref], "with_upstream": True}, ref
        assert dg.validate_run_config(materialize_products, run_config), ref

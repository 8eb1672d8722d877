"""Every domain's code location loads, with the cross-domain graph and the
product metadata Dagster users expect."""

from __future__ import annotations

import pytest
from dagster import AssetKey, DagsterInstance

from dagmesh import Column, Domain
from dagmesh.registry import MeshError, load_mesh
from dagmesh.runner import workspace_context

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
    assert sum(len(d.product_names()) for d in mesh.values()) >= 14


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
        analytics.definitions()
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

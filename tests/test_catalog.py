"""The data product catalog over the materialized sample mesh: terminal,
JSON and a static site, with health rolled up per domain."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from dagmesh.declarations.spec import ColumnSpec
from dagmesh.engine.mesh_view import MeshView
from dagmesh.tools.catalog import Entry, domain_health, write_site
from tests.conftest import REPO

DAGMESH = str(Path(sys.executable).with_name("dagmesh"))


def _catalog(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DAGMESH_HOME": str(home), "DAGMESH_PROJECT": str(REPO)}
    return subprocess.run(
        [DAGMESH, "catalog", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_json_lists_every_product_with_its_state(materialized, mesh_home: Path):
    result = _catalog(mesh_home, "--json")
    assert result.returncode == 0, result.stderr
    catalog = json.loads(result.stdout)
    products = {p["ref"]: p for p in catalog["products"]}
    assert len(products) == 17
    orders = products["sales/orders"]
    assert orders["owner"] == "team:sales"
    assert orders["access"] == "public"
    assert orders["contract_version"] == "1.0.0"
    assert orders["description"].startswith("One row per order")
    assert orders["freshness"] == "fresh" and orders["last_update"]
    assert orders["checks"]["status_valid_values"] == "passed"
    assert {"schema", "not_null", "primary_key", "row_count"} <= set(orders["checks"])
    assert {"customers/customer_360", "shipping/shipping_delays"} <= set(orders["consumers"])
    assert orders["versions"] and orders["versions"][0]["rows"] > 1000
    dbt = products["finance/delay_costs"]
    assert dbt["kind"] == "dbt" and "unique_delay_costs_order_id" in dbt["checks"]
    assert set(catalog["domains"]) == {"sales", "shipping", "marketing", "customers", "finance"}
    for health in catalog["domains"].values():
        assert health["healthy"] + len(health["unhealthy"]) == health["products"]


def test_the_terminal_table_and_domain_health(materialized, mesh_home: Path):
    result = _catalog(mesh_home)
    assert result.returncode == 0, result.stderr
    assert "sales/orders" in result.stdout and "team:logistics" in result.stdout
    assert re.search(r"^sales: \d/3 healthy", result.stdout, flags=re.MULTILINE)


def test_the_static_site(materialized, mesh_home: Path, tmp_path: Path):
    site = tmp_path / "site"
    result = _catalog(mesh_home, "--html", str(site))
    assert result.returncode == 0, result.stderr
    index = (site / "index.html").read_text()
    assert index.count("<tr class='product'") == 17
    assert "id='q'" in index  # the search box
    # The lineage picture: every product a box, the 15 cross-domain edges in red
    # (the delay-risk model and its scores read sales/orders and sales/order_items;
    # customer_360 reads the scores).
    assert index.count("<rect ") == 17
    assert index.count("stroke='#b00020'") == 15
    page = (site / "products" / "sales__orders.html").read_text()
    for expected in (
        "team:sales",
        "order_id",
        "status_valid_values",
        "Recent versions",
        "customers__customer_360.html",
        "dataProduct: orders",
    ):
        assert expected in page, expected


def _entry(ref: str, **state) -> Entry:
    defaults = dict(
        kind="sql",
        owner="team:x",
        description="d",
        access="public",
        contract_version="1.0.0",
        contract_status="active",
        freshness_sla="1 day",
        freshness="fresh",
        last_update="now",
        last_run="SUCCESS",
        checks={"schema": "passed"},
        consumers=[],
        consumes=[],
        columns=[],
    )
    return Entry(ref=ref, domain=ref.split("/")[0], **{**defaults, **state})


def test_health_rolls_up_per_domain():
    entries = [
        _entry("a/fine"),
        _entry("a/stale", freshness="stale"),
        _entry("a/failing", checks={"schema": "passed", "row_count": "failed"}),
        _entry("a/crashed", last_run="FAILURE"),
        _entry("b/fine", freshness="no SLA"),
    ]
    assert domain_health(entries) == {
        "a": {"products": 4, "healthy": 1, "unhealthy": ["a/stale", "a/failing", "a/crashed"]},
        "b": {"products": 1, "healthy": 1, "unhealthy": []},
    }


def test_the_site_escapes_what_domain_teams_write(tmp_path: Path):
    attack = "<script>alert(1)</script>"
    column = asdict(ColumnSpec(name="id", type="VARCHAR", description=attack))
    entries = [_entry("a/x", description=attack, columns=[column])]
    index = write_site(entries, MeshView(domains={}), tmp_path)
    page = (tmp_path / "products" / "a__x.html").read_text()
    for html in (index.read_text(), page):
        assert attack not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert page.count("&lt;script&gt;") == 2  # the description and the column's

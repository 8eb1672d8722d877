"""Write–audit–publish: a failing product never replaces its last good version."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from dagmesh import Column, Domain, Landing
from dagmesh.engine.storage import OutputPort
from dagmesh.orchestration.assets import product_asset
from dagmesh.orchestration.resources import MeshStorage


def _inventory(landing: Path) -> Domain:
    domain = Domain("inventory", owner="stock", description="Stock levels.")
    domain.sql_product(
        "stock",
        description="Units in stock per SKU.",
        sources={"counts": Landing("wms/stock", "csv", columns=["sku", "units"])},
        columns=[
            Column("sku", "VARCHAR", "SKU.", nullable=False),
            Column("units", "INTEGER", "Units in stock.", nullable=False),
        ],
        primary_key="sku",
        sql="SELECT sku, try_cast(units AS INTEGER) AS units FROM counts",
    )
    domain.sql_product(
        "low_stock",
        description="SKUs with fewer than 5 units.",
        consumes=["stock"],
        columns=[Column("sku", "VARCHAR", "SKU.")],
        sql="SELECT sku FROM stock WHERE units < 5",
    )
    (landing / "wms" / "stock").mkdir(parents=True, exist_ok=True)
    return domain


def _deliver(landing: Path, text: str) -> None:
    (landing / "wms" / "stock" / "stock-0001.csv").write_text(text)


def _materialize(domain: Domain, home: Path, instance) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [product_asset(p) for p in domain.products.values()],
        resources={"mesh": MeshStorage(home=str(home))},
        instance=instance,
        raise_on_error=False,
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_failed_audit_keeps_the_last_good_version(home: Path):
    domain = _inventory(home / "landing")
    with dg.instance_for_test() as instance:
        _deliver(home / "landing", "sku,units\nA,3\nB,10\n")
        assert _materialize(domain, home, instance).success
        port = OutputPort(home, "inventory", "stock")
        good = port.require_current()
        good_rows = pd.read_parquet(good.data_file)

        _deliver(home / "landing", "sku,units\nA,3\nB,ten\nC,1\n")  # 'ten' → NULL units
        result = _materialize(domain, home, instance)
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        message = failure.step_failure_data.error.message
        assert "inventory/stock" in message and "'units'" in message and "not_null" in message
        assert "'sku': 'B'" in message  # a sample of the failing rows
        # Downstream products in the run did not run.
        assert not result.asset_materializations_for_node("inventory__low_stock")
        # The check result is in the instance, for the UI.
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey(["inventory", "stock"]), "not_null")]
        )
        assert check
        # Consumers still read the last good version, unchanged.
        assert port.require_current() == good
        pd.testing.assert_frame_equal(pd.read_parquet(port_file_of(home)), good_rows)
        assert not any((home / "domains/inventory/staging/stock").iterdir())


def port_file_of(home: Path) -> Path:
    return home / "domains/inventory/ports/stock/current/data.parquet"


def test_schema_violation_names_the_column_and_the_types(home: Path):
    domain = Domain("inventory", owner="stock", description="Stock levels.")
    domain.sql_product(
        "valuation",
        description="Stock value.",
        columns=[Column("value", "DECIMAL(18,2)", "Value in EUR.")],
        sql="SELECT 1.5::DOUBLE AS value",
    )
    with dg.instance_for_test() as instance:
        result = _materialize(domain, home, instance)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert (
        "inventory/valuation: column 'value' violates schema: type is DOUBLE, the product "
        "declares DECIMAL(18,2)" in failure.step_failure_data.error.message
    )
    assert OutputPort(home, "inventory", "valuation").current() is None


def test_versions_are_kept_up_to_the_configured_number(home: Path):
    domain = _inventory(home / "landing")
    with dg.instance_for_test() as instance:
        for units in range(7):
            _deliver(home / "landing", f"sku,units\nA,{units}\n")
            result = dg.materialize(
                [product_asset(domain.products["stock"])],
                resources={"mesh": MeshStorage(home=str(home), keep_versions=3)},
                instance=instance,
            )
            assert result.success
    port = OutputPort(home, "inventory", "stock")
    versions = port.versions()
    assert len(versions) == 3
    assert port.require_current() == versions[-1]
    # Older versions stay readable as they were published.
    assert [pd.read_parquet(v.data_file)["units"].item() for v in versions] == [4, 5, 6]
    assert versions[0].info()["rows"] == 1

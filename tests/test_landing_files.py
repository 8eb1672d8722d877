"""Malformed source files fail ingestion with the file and the problem named."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from dagmesh.engine.build import build_product
from dagmesh.engine.landing import SourceFileError
from dagmesh.orchestration.assets import product_asset
from dagmesh.orchestration.resources import MeshStorage
from domains.sales.products import sales
from domains.shipping.products import shipping


@pytest.fixture
def landing_copy(mesh_home: Path, tmp_path: Path) -> Path:
    """A private home whose landing is a copy of the generated sources."""
    home = tmp_path / "home"
    shutil.copytree(mesh_home / "landing", home / "landing")
    return home


def _build(home: Path, product) -> None:
    build_product(product, MeshStorage(home=str(home)), run_id="test-run")


def test_truncated_csv_names_the_file(landing_copy: Path):
    last = sorted((landing_copy / "landing/shop/orders").glob("*.csv"))[-1]
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2].rsplit(b",", 3)[0])  # cut inside a row
    with pytest.raises(SourceFileError) as error:
        _build(landing_copy, sales.products["orders"])
    assert "sales/orders" in str(error.value) and last.name in str(error.value)
    assert "malformed" in str(error.value)


def test_wrong_columns_name_the_file_and_the_columns(landing_copy: Path):
    first = sorted((landing_copy / "landing/shop/orders").glob("*.csv"))[0]
    lines = first.read_text().splitlines(keepends=True)
    first.write_text(lines[0].replace("order_ts", "ordered") + "".join(lines[1:]))
    with pytest.raises(SourceFileError) as error:
        _build(landing_copy, sales.products["orders"])
    message = str(error.value)
    assert first.name in message and "wrong columns" in message
    assert "missing ['order_ts']" in message and "unexpected ['ordered']" in message


def test_wrong_encoding_names_the_file(landing_copy: Path):
    last = sorted((landing_copy / "landing/shop/orders").glob("*.csv"))[-1]
    with open(last, "ab") as handle:
        handle.write(
            "E9999999999,O999999999,C00000001,placed,2026-01-01T00:00:00Z,"
            "2026-01-01T00:00:00Z,EUR,2026-01-06\n".replace("placed", "pl\xe4ced").encode("latin-1")
        )
    with pytest.raises(SourceFileError) as error:
        _build(landing_copy, sales.products["orders"])
    assert last.name in str(error.value) and "utf-8" in str(error.value).lower()


def test_truncated_parquet_and_jsonl_name_the_file(landing_copy: Path):
    parquet = sorted((landing_copy / "landing/warehouse/shipments").glob("*.parquet"))[0]
    parquet.write_bytes(parquet.read_bytes()[:-100])
    with pytest.raises(SourceFileError, match=parquet.name):
        _build(landing_copy, shipping.products["shipments"])
    jsonl = sorted((landing_copy / "landing/shop/order_items").glob("*.jsonl"))[0]
    jsonl.write_bytes(jsonl.read_bytes()[:-7])
    with pytest.raises(SourceFileError, match=jsonl.name):
        _build(landing_copy, sales.products["order_items"])


def test_the_run_fails_with_the_message_and_publishes_nothing(landing_copy: Path):
    last = sorted((landing_copy / "landing/shop/orders").glob("*.csv"))[-1]
    last.write_bytes(b"\xff\xfe" + last.read_bytes())
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [product_asset(sales.products["orders"])],
            resources={"mesh": MeshStorage(home=str(landing_copy))},
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert last.name in failure.step_failure_data.error.message
    assert not (landing_copy / "domains/sales/ports/orders/current").exists()

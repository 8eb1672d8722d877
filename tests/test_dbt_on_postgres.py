"""The finance dbt domain on a PostgreSQL warehouse (``DAGMESH_DBT_TARGET=postgres``).

A real PostgreSQL cluster on 127.0.0.1 (tests/servers.py) and real Dagster
runs: finance's upstream products are published on the embedded profile,
finance's dbt models are built once on DuckDB and once on PostgreSQL from
the same pinned inputs, and both publish the same products through the same
audit and publish path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import yaml
from dagster import AssetKey, DagsterInstance

from tests.cli import flat
from tests.conftest import REPO, SCALE, TEST_PII_KEY, port_file, query
from tests.environment import environment
from tests.servers import Postgres, postgres_server
from tests.test_dbt_domains import check_statuses

FINANCE = ["finance/delay_costs", "finance/weekly_delay_impact"]
DAGMESH = str(Path(sys.executable).with_name("dagmesh"))


@pytest.fixture(scope="module")
def warehouse() -> Iterator[Postgres]:
    with postgres_server("warehouse") as server:
        yield server


def _warehouse_env(server: Postgres) -> dict[str, str]:
    return {
        "DAGMESH_DBT_PG_HOST": server.host,
        "DAGMESH_DBT_PG_PORT": str(server.port),
        "DAGMESH_DBT_PG_USER": server.user,
        "DAGMESH_DBT_PG_PASSWORD": server.password,
        "DAGMESH_DBT_PG_DB": server.database,
    }


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, warehouse: Postgres) -> Iterator[Path]:
    """A data directory of its own, finance's upstream published (embedded
    profile), the warehouse's connection in the environment only."""
    from dagmesh.orchestration.instance import ensure_dagster_home
    from source_systems.generator import generate
    from tests.conftest import register_domains_of_the_workspace

    home = tmp_path_factory.mktemp("dbt_on_postgres")
    env = {
        "DAGMESH_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "DAGMESH_PROJECT": str(REPO),
        "DAGMESH_PII_KEY": TEST_PII_KEY,
        **_warehouse_env(warehouse),
    }
    with environment({**env, "DAGMESH_DBT_TARGET": None, "DAGMESH_PROFILE": None}):
        ensure_dagster_home()
        generate(home / "landing", scale=SCALE, seed=7)
        register_domains_of_the_workspace()
        yield home


def _step_timings() -> str:
    """The finance dbt step's own timing lines of the latest run."""
    with DagsterInstance.get() as instance:
        run = instance.get_runs(limit=1)[0]
        messages = [e.user_message for e in instance.all_logs(run.run_id)]
    wanted = ("dbt build of finance", "loaded ", "published finance/")
    return "; ".join(m for m in messages if m.startswith(wanted))


def _materialize(refs: list[str], with_upstream: bool = False, **env: str):
    from dagmesh.orchestration.runner import materialize

    with environment(env):
        started = time.perf_counter()
        outcome = materialize(refs, with_upstream=with_upstream, timeout=600)
        return outcome, time.perf_counter() - started


def _rounded(row: tuple) -> tuple:
    """A row with its floating-point values to 12 significant digits: the
    two engines may differ in the last bit of a division (decimals and
    everything else compare exactly)."""
    return tuple(float(f"{v:.12g}") if isinstance(v, float) else v for v in row)


def _snapshot(home: Path) -> dict[str, dict]:
    """Each finance product's published version, row count, schema and rows."""
    snapshot = {}
    with DagsterInstance.get() as instance:
        for ref in FINANCE:
            data = port_file(home, ref)
            snapshot[ref] = {
                "version": Path(data).resolve().parent.name,
                "rows": query(f"SELECT count(*) FROM '{data}'")[0][0],
                "schema": query(f"SELECT column_name, column_type FROM (DESCRIBE '{data}')"),
                "data": sorted(map(_rounded, query(f"SELECT * FROM '{data}'")), key=repr),
                "checks": check_statuses(instance, AssetKey(ref.split("/"))),
            }
    return snapshot


@pytest.fixture(scope="module")
def built(home: Path) -> dict:
    """finance built on DuckDB, then on PostgreSQL from the same inputs."""
    outcome, upstream = _materialize(FINANCE, with_upstream=True)
    assert outcome.success, [f"{f.product}: {f.message}" for f in outcome.failures]
    on_duckdb = _snapshot(home)
    outcome, duckdb_seconds = _materialize(FINANCE)
    assert outcome.success, [f"{f.product}: {f.message}" for f in outcome.failures]
    duckdb_steps = _step_timings()
    outcome, postgres_seconds = _materialize(FINANCE, DAGMESH_DBT_TARGET="postgres")
    assert outcome.success, [f"{f.product}: {f.message}" for f in outcome.failures]
    timings = {"upstream": upstream, "duckdb": duckdb_seconds, "postgres": postgres_seconds}
    print(f"\nfinance dbt at scale {SCALE}, whole materialization (s): {json.dumps(timings)}")
    print(f"duckdb step: {duckdb_steps}\npostgres step: {_step_timings()}")
    return {"duckdb": on_duckdb, "postgres": _snapshot(home), "seconds": timings}


def test_finance_publishes_the_same_products_on_postgres_as_on_duckdb(built: dict):
    for ref in FINANCE:
        duck, pg = built["duckdb"][ref], built["postgres"][ref]
        assert pg["version"] != duck["version"], ref  # a new version, published
        assert pg["rows"] == duck["rows"] > 0, ref
        assert pg["schema"] == duck["schema"], ref
        assert pg["data"] == duck["data"], ref
        assert set(pg["checks"]) == set(duck["checks"]), ref
        assert set(pg["checks"].values()) == {"SUCCEEDED"}, (ref, pg["checks"])
        assert {"schema", "row_count"} <= set(pg["checks"]), ref


def test_the_models_are_in_the_domains_schema_and_the_inputs_in_its_ports_schema(
    built: dict, home: Path, warehouse: Postgres
):
    tables = set(
        warehouse.query(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables "
            "WHERE table_schema LIKE 'finance%%'"
        )
    )
    assert {t for (t,) in tables} == {
        "finance.delay_costs",
        "finance.weekly_delay_impact",
        "finance__ports.shipping__shipping_delays",
        "finance__ports.sales__order_items",
        "finance__ports.finance__refunds",
    }
    # The loaded input is the pinned published version, row for row.
    record = json.loads(
        (home / "domains/finance/ports/delay_costs/current/version.json").read_text()
    )
    shipping = Path(port_file(home, "shipping/shipping_delays")).resolve().parent.name
    assert record["inputs"]["shipping/shipping_delays"] == shipping
    rows = query(f"SELECT count(*) FROM '{port_file(home, 'shipping/shipping_delays')}'")[0][0]
    assert warehouse.query('SELECT count(*) FROM finance__ports."shipping__shipping_delays"') == [
        (rows,)
    ]


def test_no_password_in_the_profile_the_event_log_or_the_data_directory(
    built: dict, home: Path, warehouse: Postgres
):
    profile = yaml.safe_load((home / "domains/finance/dbt/profiles.yml").read_text())
    target = profile["finance"]["outputs"]["postgres"]
    assert target["pass"] == "{{ env_var('DAGMESH_DBT_PG_PASSWORD') }}"
    assert target["user"] == "{{ env_var('DAGMESH_DBT_PG_USER') }}"
    secret = warehouse.password.encode()
    leaks = [p for p in home.rglob("*") if p.is_file() and secret in p.read_bytes()]
    assert leaks == []  # DAGSTER_HOME (event log, compute logs) is inside it
    with DagsterInstance.get() as instance:
        for run in instance.get_runs(limit=10):
            for entry in instance.all_logs(run.run_id):
                assert warehouse.password not in str(entry), run.run_id


def test_a_missing_warehouse_variable_is_refused_by_name(home: Path):
    env = {**os.environ, "DAGMESH_DBT_TARGET": "postgres", "COLUMNS": "200"}
    env.pop("DAGMESH_DBT_PG_PASSWORD")
    env["DAGMESH_DBT_PG_HOST"] = ""
    result = subprocess.run(
        [DAGMESH, "materialize", "finance/delay_costs"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert (
        "dbt target postgres needs DAGMESH_DBT_PG_HOST, DAGMESH_DBT_PG_PASSWORD in the environment"
        in flat(result)
    )


def _publish_duplicate_delay(home: Path) -> None:
    """A new version of shipping/shipping_delays in which one delayed order
    appears twice (what a faulty producer could publish)."""
    from dagmesh.engine.storage import OutputPort

    port = OutputPort(home, "shipping", "shipping_delays")
    current = port.require_current()
    staging = port.start_staging("test-duplicate")
    for item in current.path.iterdir():
        if item.is_file() and item.name != "version.json":
            shutil.copy2(item, staging / item.name)
    data = staging / "data.parquet"
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT * FROM '{current.data_file}' UNION ALL "
        f"(SELECT * FROM '{current.data_file}' WHERE is_delayed LIMIT 1)) "
        f"TO '{data}.new' (FORMAT parquet)"
    )
    con.close()
    os.replace(f"{data}.new", data)
    record = {k: v for k, v in current.info().items() if k not in ("product", "version", "run_id")}
    port.publish(staging, "test-duplicate", record, keep=10)


def test_a_failing_dbt_test_on_postgres_keeps_the_last_good_version(built: dict, home: Path):
    good = {ref: Path(port_file(home, ref)).resolve() for ref in FINANCE}
    _publish_duplicate_delay(home)
    outcome, _ = _materialize(FINANCE, DAGMESH_DBT_TARGET="postgres")
    assert not outcome.success
    message = " ".join(f.message for f in outcome.failures)
    assert "dbt test unique_delay_costs_order_id failed on column order_id" in message
    assert "failing rows (personal data masked)" in message
    for ref in FINANCE:
        assert Path(port_file(home, ref)).resolve() == good[ref], ref
        rows = query(f"SELECT count(*) FROM '{port_file(home, ref)}'")[0][0]
        assert rows == built["postgres"][ref]["rows"], ref

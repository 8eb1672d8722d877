"""The finance dbt domain on a PostgreSQL warehouse (``DAGMESH_DBT_TARGET=postgres``).

A real PostgreSQL cluster on 127.0.0.1 (tests/servers.py) and real Dagster
runs: finance's upstream products are published on the embedded profile,
finance's dbt models are built once on DuckDB and once on PostgreSQL from
the same pinned inputs, and both publish the same products through the same
audit and publish path.

Each domain logs in with a role of its own (finance_dbt, marketing_dbt), set
up by `dagmesh warehouse grants --apply` as the cluster's admin: finance's
models build and publish with finance's role, and PostgreSQL refuses a
finance model reading marketing's schema. The dbt projects are a copy (the
finance project gets a planted model), the domains' code the repository's.
"""

from __future__ import annotations

import json
import os
import secrets
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
# A model planted in (a copy of) finance's dbt project: first harmless, then
# reading marketing's schema, which finance's role may not.
PEEK = "finance/peek_marketing"
PEEK_FIRST = "select 1 as id, 'first' as version\n"
PEEK_AT_MARKETING = "select id, 'peeked' as version from marketing.campaign_budget\n"
DAGMESH = str(Path(sys.executable).with_name("dagmesh"))
# Each domain's own warehouse role, with a password of this test run.
ROLES = {"finance": "finance_dbt", "marketing": "marketing_dbt"}
PASSWORDS = {domain: "role-" + secrets.token_hex(12) for domain in ROLES}


@pytest.fixture(scope="module")
def warehouse() -> Iterator[Postgres]:
    with postgres_server("warehouse") as server:
        yield server


def _warehouse_env(server: Postgres) -> dict[str, str | None]:
    """The server, the admin role (only `warehouse grants --apply` reads it)
    and each domain's own role; the retired shared role's variables unset."""
    env: dict[str, str | None] = {**server.warehouse_env(ROLES, PASSWORDS)}
    env.update({"DAGMESH_DBT_PG_USER": None, "DAGMESH_DBT_PG_PASSWORD": None})
    return env


def _as_role(server: Postgres, domain: str) -> Postgres:
    """The server as ``domain``'s role logs in."""
    return Postgres(server.host, server.port, ROLES[domain], PASSWORDS[domain], server.database)


def _project_copy(root: Path) -> Path:
    """A project root whose dbt projects are a copy (finance's with the
    planted model); workspace, settings and domains' code the repository's."""
    root.mkdir()
    for name in ("workspace.yaml", "pyproject.toml"):
        shutil.copy2(REPO / name, root / name)
    for name in ("domains", "source_systems"):
        (root / name).symlink_to(REPO / name, target_is_directory=True)
    shutil.copytree(
        REPO / "dbt_projects",
        root / "dbt_projects",
        ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"),
    )
    (root / "dbt_projects/finance/models/peek_marketing.sql").write_text(PEEK_FIRST)
    return root


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, warehouse: Postgres) -> Iterator[Path]:
    """A data directory of its own, finance's upstream published (embedded
    profile), the warehouse's connection and the domains' roles in the
    environment only, the roles and schemas set up by `dagmesh warehouse
    grants --apply`, and a table of marketing's in its own schema."""
    from dagmesh.orchestration.instance import ensure_dagster_home
    from source_systems.generator import generate
    from tests.conftest import register_domains_of_the_workspace

    home = tmp_path_factory.mktemp("dbt_on_postgres")
    root = _project_copy(home.parent / f"{home.name}-project")
    env = {
        "DAGMESH_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "DAGMESH_PROJECT": str(root),
        "DAGMESH_PII_KEY": TEST_PII_KEY,
        **_warehouse_env(warehouse),
    }
    with environment({**env, "DAGMESH_DBT_TARGET": None, "DAGMESH_PROFILE": None}):
        granted = subprocess.run(
            [DAGMESH, "warehouse", "grants", "--apply", "finance", "marketing"],
            env={**os.environ, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert granted.returncode == 0, flat(granted)
        assert "applied for finance (finance_dbt), marketing (marketing_dbt)" in flat(granted)
        _as_role(warehouse, "marketing").query(  # as marketing's role, in its schema
            "CREATE TABLE marketing.campaign_budget AS SELECT 1 AS id, 100 AS budget; SELECT 1"
        )
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
    # With the planted model, harmless still: its first version is published.
    outcome, postgres_seconds = _materialize([*FINANCE, PEEK], DAGMESH_DBT_TARGET="postgres")
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
        "finance.peek_marketing",
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


def test_a_missing_warehouse_variable_is_refused_by_name(home: Path):
    env = {**os.environ, "DAGMESH_DBT_TARGET": "postgres", "COLUMNS": "200"}
    env.pop("DAGMESH_DBT_PG_DB")
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
        "dbt target postgres needs DAGMESH_DBT_PG_HOST, DAGMESH_DBT_PG_DB in the environment"
        in flat(result)
    )


def test_a_domain_without_its_own_role_is_refused_by_name(built: dict, home: Path):
    """No shared role to fall back on: finance's run names its variable, even
    with the retired shared ones (and marketing's) set."""
    from dagmesh.orchestration.runner import MaterializeError

    good = Path(port_file(home, "finance/delay_costs")).resolve()
    with pytest.raises(MaterializeError) as refused:  # finance's code location refuses to load
        _materialize(
            ["finance/delay_costs"],
            DAGMESH_DBT_TARGET="postgres",
            DAGMESH_DBT_PG_FINANCE_PASSWORD="",
            DAGMESH_DBT_PG_USER="finance_dbt",
            DAGMESH_DBT_PG_PASSWORD=PASSWORDS["finance"],
        )
    message = str(refused.value)
    assert "code location finance failed to load" in message, message
    assert "dbt target postgres needs DAGMESH_DBT_PG_FINANCE_PASSWORD in the environment" in (
        message
    ), message
    assert "DAGMESH_DBT_PG_USER and DAGMESH_DBT_PG_PASSWORD are no longer read" in message
    assert PASSWORDS["finance"] not in message
    assert Path(port_file(home, "finance/delay_costs")).resolve() == good


def test_the_domains_roles_own_their_schemas_and_nothing_else(built: dict, warehouse: Postgres):
    owners = warehouse.query(
        "SELECT schemaname || '.' || tablename, tableowner FROM pg_tables "
        "WHERE schemaname IN ('finance', 'finance__ports', 'marketing', 'marketing__ports')"
    )
    assert owners and {owner for _, owner in owners} == {"finance_dbt", "marketing_dbt"}
    assert {t for t, owner in owners if owner == "marketing_dbt"} == {"marketing.campaign_budget"}
    schemas = dict(
        warehouse.query(
            "SELECT nspname, pg_get_userbyid(nspowner) FROM pg_namespace "
            "WHERE nspname LIKE 'finance%%' OR nspname LIKE 'marketing%%'"
        )
    )
    assert schemas == {
        "finance": "finance_dbt",
        "finance__ports": "finance_dbt",
        "marketing": "marketing_dbt",
        "marketing__ports": "marketing_dbt",
    }
    finance = _as_role(warehouse, "finance")
    refusals = {
        "SELECT * FROM marketing.campaign_budget": "permission denied for schema marketing",
        "CREATE TABLE marketing.x (i int)": "permission denied for schema marketing",
        "CREATE TABLE public.x (i int)": "permission denied for schema public",
        "CREATE SCHEMA elsewhere": "permission denied for database warehouse",
    }
    for sql, refusal in refusals.items():
        with pytest.raises(Exception, match=refusal):
            finance.query(sql)


def test_the_printed_grants_hold_no_password(home: Path):
    result = subprocess.run(
        [DAGMESH, "warehouse", "grants", "finance", "marketing"],
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, flat(result)
    assert 'ALTER SCHEMA "finance__ports" OWNER TO "finance_dbt";' in result.stdout
    assert 'REVOKE CREATE, TEMPORARY ON DATABASE "warehouse" FROM PUBLIC;' in result.stdout
    assert '\\password "marketing_dbt"' in result.stdout
    assert not [s for s in PASSWORDS.values() if s in result.stdout + result.stderr]


def test_a_model_reading_another_domains_schema_is_refused_by_postgres(built: dict, home: Path):
    """The planted model now reads marketing's schema: PostgreSQL refuses
    finance's role, the run names the product and the schema, its siblings
    publish, and its last good version stays."""
    peek = Path(os.environ["DAGMESH_PROJECT"]) / "dbt_projects/finance/models/peek_marketing.sql"
    good = Path(port_file(home, PEEK)).resolve()
    siblings = {ref: Path(port_file(home, ref)).resolve() for ref in FINANCE}
    peek.write_text(PEEK_AT_MARKETING)
    try:
        outcome, seconds = _materialize([*FINANCE, PEEK], DAGMESH_DBT_TARGET="postgres")
    finally:
        peek.write_text(PEEK_FIRST)
    print(f"\nfinance with a denied model on postgres: {seconds:.1f}s")
    print(f"failures: {[f'{f.product}: {f.message}' for f in outcome.failures]}")
    assert not outcome.success
    failures = {f.product: f.message for f in outcome.failures}
    assert set(failures) == {PEEK}, failures
    assert "permission denied for schema marketing" in failures[PEEK], failures[PEEK]
    assert Path(port_file(home, PEEK)).resolve() == good
    assert query(f"SELECT version FROM '{port_file(home, PEEK)}'") == [("first",)]
    for ref, before in siblings.items():
        assert Path(port_file(home, ref)).resolve() != before, ref  # a new version


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


def test_no_password_in_the_profile_the_event_log_or_the_data_directory(
    built: dict, home: Path, warehouse: Postgres
):
    profile = yaml.safe_load((home / "domains/finance/dbt/profiles.yml").read_text())
    target = profile["finance"]["outputs"]["postgres"]
    assert target["pass"] == "{{ env_var('DAGMESH_DBT_PG_FINANCE_PASSWORD') }}"
    assert target["user"] == "{{ env_var('DAGMESH_DBT_PG_FINANCE_USER') }}"
    passwords = [warehouse.password, *PASSWORDS.values()]
    root = Path(os.environ["DAGMESH_PROJECT"])  # the copy: its build/ holds dbt's logs
    files = [p for folder in (home, root) for p in folder.rglob("*") if p.is_file()]
    leaks = [(p, s[:7]) for p in files for s in passwords if s.encode() in p.read_bytes()]
    assert leaks == []  # DAGSTER_HOME (event log, compute logs) is inside it
    with DagsterInstance.get() as instance:
        for run in instance.get_runs(limit=20):
            for entry in instance.all_logs(run.run_id):
                assert not [s for s in passwords if s in str(entry)], run.run_id

"""dbt on a PostgreSQL warehouse: the ``postgres`` dbt target.

A domain's dbt project builds its models in the warehouse (dbt-postgres),
in a schema of its own (``<domain>``); what its models read from other
domains' ports is loaded by the platform, per run, into a second schema of
its own (``<domain>__ports``, one table ``<domain>__<product>`` per pinned
version) through DuckDB's postgres extension; after ``dbt build`` each
built model is read back by the same extension into the run's staging
Parquet file and goes through the shared audit and publish path.

The connection comes only from the environment (:data:`dagmesh.config.DBT_PG_ENV`):
the profile names the variables (dbt's ``env_var()``), DuckDB reaches the
server through libpq's own variables (``PGHOST``...) set from them in the
step's process. No password is written to a file or a log line.

dbt sources read from ports name the database ``ports`` (as on DuckDB,
where it is an attached file). PostgreSQL refuses any name in another
database ("cross-database references are not implemented") and dbt has no
setting mapping a source's database to a schema, so dbt runs of this target
go through :func:`main`: dbt's own command line with dbt-postgres's relation
class swapped for :class:`PortsRelation`, which renders ``ports.<domain>.<product>``
as ``"<consumer>__ports"."<domain>__<product>"`` and every other name as
dbt-postgres does. The project's files stay as they are.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from dagmesh import config
from dagmesh.declarations.dbt_manifest import PORTS_DATABASE
from dagmesh.engine import extensions
from dagmesh.engine.sql import ident, literal

TARGET = config.POSTGRES_DBT_TARGET
# Set by the platform in the dbt process's environment: the schema the
# consumer's pinned inputs are loaded into.
PORTS_SCHEMA_ENV = "DAGMESH_DBT_PORTS_SCHEMA"
# libpq's own variables, which DuckDB's postgres extension (``ATTACH ''``) reads.
LIBPQ_ENV = {
    "host": "PGHOST",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "password": "PGPASSWORD",
}
WAREHOUSE = "warehouse"  # the alias DuckDB attaches the warehouse under


def models_schema(domain: str) -> str:
    """The schema a domain's dbt models are built in."""
    return domain


def ports_schema(domain: str) -> str:
    """The schema a domain's pinned inputs are loaded into, per run."""
    return f"{domain}__ports"


def ports_table(domain: str, product: str) -> str:
    """The table holding the pinned version of ``domain/product``."""
    return f"{domain}__{product}"


def profile_target(domain: str, threads: int) -> dict[str, Any]:
    """The ``postgres`` output of a domain's generated profile: every
    connection setting an ``env_var()`` of :data:`dagmesh.config.DBT_PG_ENV`,
    rendered by dbt when it runs (never a value in the file)."""
    env = {key: "{{ env_var('" + name + "') }}" for key, name in config.DBT_PG_ENV.items()}
    return {
        "type": "postgres",
        "host": env["host"],
        # dbt casts a number rendered from an env var with `| as_number`.
        "port": "{{ env_var('" + config.DBT_PG_ENV["port"] + "') | as_number }}",
        "dbname": env["dbname"],
        "user": env["user"],
        "pass": env["password"],
        "schema": models_schema(domain),
        "threads": threads,
        # Not the psycopg2 default of no timeout: a stopped server fails the run.
        "connect_timeout": 10,
    }


def dbt_process_env(domain: str) -> dict[str, str]:
    """What a dbt process of this target needs besides the connection."""
    return {PORTS_SCHEMA_ENV: ports_schema(domain)}


@contextmanager
def libpq_env() -> Iterator[None]:
    """libpq's connection variables from :data:`dagmesh.config.DBT_PG_ENV`
    for the block (DuckDB's postgres extension reads them), restored after."""
    config.check_dbt_target_env()
    saved = {name: os.environ.get(name) for name in LIBPQ_ENV.values()}
    try:
        for key, name in LIBPQ_ENV.items():
            os.environ[name] = os.environ[config.DBT_PG_ENV[key]]
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def attach(con: duckdb.DuckDBPyConnection, read_only: bool = False) -> None:
    """Attach the warehouse to ``con`` as ``warehouse`` (postgres extension
    loaded from its wheel; the connection from the environment)."""
    extensions.load(con, "postgres")
    mode = ", READ_ONLY" if read_only else ""
    with libpq_env():
        con.execute(f"ATTACH '' AS {WAREHOUSE} (TYPE postgres{mode})")


@dataclass(frozen=True)
class LoadedInput:
    """A pinned version loaded into the warehouse."""

    table: str
    rows: int


def load_inputs(
    domain: str, files: Mapping[tuple[str, str], Path | str], store: Any = None
) -> list[LoadedInput]:
    """Replace ``<domain>__ports`` in the warehouse by one table per pinned
    version (``files``: (domain, product) → its Parquet file, or its object
    URL when ``store`` (a :class:`~dagmesh.engine.storage.MeshStore`) keeps
    the ports on object storage: read with ``domain``'s identity), in one
    transaction: a failure leaves the previous inputs as they were."""
    schema = ports_schema(domain)
    con = duckdb.connect()
    loaded = []
    try:
        attach(con)
        if store is not None and store.objects is not None:
            store.objects.attach(con, domain)
        con.execute(f"CALL postgres_execute({literal(WAREHOUSE)}, {literal(_drop(schema))})")
        con.execute(
            f"CALL postgres_execute({literal(WAREHOUSE)}, "
            f"{literal('CREATE SCHEMA ' + ident(schema))})"
        )
        for (source, product), file in sorted(files.items()):
            table = ports_table(source, product)
            target = f"{WAREHOUSE}.{ident(schema)}.{ident(table)}"
            con.execute(f"CREATE TABLE {target} AS SELECT * FROM read_parquet({literal(file)})")
            rows = con.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
            loaded.append(LoadedInput(f"{schema}.{table}", rows))
    finally:
        con.close()
    return loaded


def _drop(schema: str) -> str:
    return f"DROP SCHEMA IF EXISTS {ident(schema)} CASCADE"


def copy_relation(con: duckdb.DuckDBPyConnection, node: Mapping[str, Any], file: Path) -> None:
    """Copy a built model from the warehouse (``con`` has it attached, see
    :func:`attach`) into the Parquet ``file``."""
    relation = f"{WAREHOUSE}.{ident(node['schema'])}.{ident(node.get('alias') or node['name'])}"
    con.execute(
        f"COPY (SELECT * FROM {relation}) TO {literal(file)} (FORMAT parquet, COMPRESSION zstd)"
    )


def failing_rows_query(compiled_sql: str) -> str:
    """DuckDB SQL running a dbt test's compiled (PostgreSQL) SQL in the warehouse."""
    return f"SELECT * FROM postgres_query({literal(WAREHOUSE)}, {literal(compiled_sql)})"


# ---------------------------------------------------------------------------
# The dbt command line of this target.
# ---------------------------------------------------------------------------


def dbt_executable() -> str:
    """``dagmesh-dbt-postgres``, the entry point of :func:`main`, next to this Python."""
    candidate = Path(sys.executable).with_name("dagmesh-dbt-postgres")
    return str(candidate) if candidate.exists() else "dagmesh-dbt-postgres"


def _ports_relation() -> type:
    from dbt.adapters.postgres.relation import PostgresRelation

    class PortsRelation(PostgresRelation):
        """dbt-postgres's relation, with a source in the ``ports`` database
        named as its pinned table in the consumer's ports schema."""

        @classmethod
        def create(cls, database=None, schema=None, identifier=None, type=None, **kwargs):
            # dbt-adapters' signature (``type`` included), which dbt calls by keyword.
            consumer = os.environ.get(PORTS_SCHEMA_ENV)
            if database == PORTS_DATABASE and schema and identifier and consumer:
                database, schema, identifier = None, consumer, ports_table(schema, identifier)
            return super().create(database, schema, identifier, type, **kwargs)

    return PortsRelation


def main() -> None:
    """dbt's command line, with dbt-postgres naming port sources as above."""
    from dbt.adapters.postgres import impl
    from dbt.cli.main import cli

    impl.PostgresAdapter.Relation = _ports_relation()
    cli()

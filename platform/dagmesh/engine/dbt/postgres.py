"""dbt on a PostgreSQL warehouse: the ``postgres`` dbt target.

A domain's dbt project builds its models in the warehouse (dbt-postgres),
in a schema of its own (``<domain>``); what its models read from other
domains' ports is loaded by the platform, per run, into a second schema of
its own (``<domain>__ports``, one table ``<domain>__<product>`` per pinned
version) through DuckDB's postgres extension; after ``dbt build`` each
built model is read back by the same extension into the run's staging
Parquet file and goes through the shared audit and publish path.

The connection comes only from the environment: the server from
:data:`dagmesh.config.DBT_PG_ENV`, the login from the domain's own role
(:func:`dagmesh.config.dbt_pg_role_env`, ``DAGMESH_DBT_PG_<DOMAIN>_USER`` and
``_PASSWORD``, no shared fallback). The profile names the variables (dbt's
``env_var()``), DuckDB reaches the server through libpq's own variables
(``PGHOST``...) set from them in the step's process for the attach. No
password is written to a file or a log line. The domain's role owns its two
schemas and nothing else: PostgreSQL refuses its SQL every other domain's
(:func:`grant_statements`, applied once by the operator with
``dagmesh warehouse grants``).

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


def connection_env(domain: str) -> dict[str, str]:
    """Connection setting → the variable holding it, for ``domain``'s role."""
    return {**config.DBT_PG_ENV, **config.dbt_pg_role_env(domain)}


def profile_target(domain: str, threads: int) -> dict[str, Any]:
    """The ``postgres`` output of a domain's generated profile: every
    connection setting an ``env_var()`` (the server's and the domain's own
    role's, :func:`connection_env`), rendered by dbt when it runs (never a
    value in the file)."""
    env = {key: "{{ env_var('" + name + "') }}" for key, name in connection_env(domain).items()}
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
def libpq_env(domain: str) -> Iterator[None]:
    """libpq's connection variables as ``domain``'s role (:func:`connection_env`)
    for the block (DuckDB's postgres extension reads them), restored after."""
    config.check_dbt_target_env(domain)
    names = connection_env(domain)
    saved = {name: os.environ.get(name) for name in LIBPQ_ENV.values()}
    try:
        for key, name in LIBPQ_ENV.items():
            os.environ[name] = os.environ[names[key]]
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def attach(con: duckdb.DuckDBPyConnection, domain: str, read_only: bool = False) -> None:
    """Attach the warehouse to ``con`` as ``warehouse``, logged in as
    ``domain``'s role (postgres extension loaded from its wheel; the
    connection from the environment)."""
    extensions.load(con, "postgres")
    mode = ", READ_ONLY" if read_only else ""
    with libpq_env(domain):
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
    the ports on object storage: read with ``domain``'s identity), as
    ``domain``'s role, in one transaction: a failure leaves the previous
    inputs as they were. The schema is the operator's to create (the role
    has no ``CREATE`` on the database, see :func:`grant_statements`): its
    tables are dropped and written, the schema stays."""
    schema = ports_schema(domain)
    con = duckdb.connect()
    loaded = []
    try:
        attach(con, domain)
        if store is not None and store.objects is not None:
            store.objects.attach(con, domain)
        existing = con.execute(
            f"SELECT tablename FROM postgres_query({literal(WAREHOUSE)}, "
            f"{literal(_tables_of(schema))})"
        ).fetchall()
        if not con.execute(
            f"SELECT * FROM postgres_query({literal(WAREHOUSE)}, {literal(_schema_exists(schema))})"
        ).fetchall():
            raise duckdb.CatalogException(
                f"schema {schema} does not exist in the warehouse: the operator creates it, "
                f"owned by domain {domain}'s role (dagmesh warehouse grants)"
            )
        con.execute("BEGIN")
        for (table,) in existing:
            drop = f"DROP TABLE IF EXISTS {ident(schema)}.{ident(table)} CASCADE"
            con.execute(f"CALL postgres_execute({literal(WAREHOUSE)}, {literal(drop)})")
        for (source, product), file in sorted(files.items()):
            table = ports_table(source, product)
            target = f"{WAREHOUSE}.{ident(schema)}.{ident(table)}"
            con.execute(f"CREATE TABLE {target} AS SELECT * FROM read_parquet({literal(file)})")
            rows = con.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
            loaded.append(LoadedInput(f"{schema}.{table}", rows))
        con.execute("COMMIT")
    finally:
        con.close()
    return loaded


def _tables_of(schema: str) -> str:
    return f"SELECT tablename FROM pg_tables WHERE schemaname = {literal(schema)}"


def _schema_exists(schema: str) -> str:
    return f"SELECT 1 AS found FROM pg_namespace WHERE nspname = {literal(schema)}"


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


# ---------------------------------------------------------------------------
# The operator's side: one role per domain, owning only its two schemas.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    """One statement of the grants: its SQL as shown (never a password) and,
    when it sets a role's password, the variable the password is read from."""

    sql: str
    password_of: str | None = None  # the domain whose role gets its password


def grant_statements(
    roles: Mapping[str, str], database: str, existing: set[str] | None = None
) -> list[Statement]:
    """What makes PostgreSQL enforce the domains' grants (``roles``: domain →
    its role): nobody but the operator creates schemas or objects in the
    database or in ``public``; each domain's role logs in, may use temporary
    tables (dbt's incremental models), and owns ``<domain>`` and
    ``<domain>__ports`` with no privilege on another domain's schema.
    ``existing``: roles that exist already (created, with their passwords,
    when missing; ``None`` shows both forms)."""
    db = ident(database)
    statements = [
        Statement(f"REVOKE CREATE, TEMPORARY ON DATABASE {db} FROM PUBLIC"),
        Statement("REVOKE ALL ON SCHEMA public FROM PUBLIC"),
    ]
    for domain, role in sorted(roles.items()):
        name = ident(role)
        attributes = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
        if existing is None or role not in existing:
            statements.append(Statement(f"CREATE ROLE {name} {attributes}"))
        statements.append(Statement(f"ALTER ROLE {name} PASSWORD", password_of=domain))
        statements.append(Statement(f"GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {name}"))
        for schema in (models_schema(domain), ports_schema(domain)):
            statements += [
                Statement(f"CREATE SCHEMA IF NOT EXISTS {ident(schema)} AUTHORIZATION {name}"),
                Statement(f"ALTER SCHEMA {ident(schema)} OWNER TO {name}"),
                Statement(f"REVOKE ALL ON SCHEMA {ident(schema)} FROM PUBLIC"),
            ]
    return statements


def grants_script(roles: Mapping[str, str], database: str) -> str:
    """The statements of :func:`grant_statements` as SQL to read or run with
    psql (a role's password left to ``\\password``, never printed)."""
    lines = [
        "-- dagmesh warehouse grants: run once as an admin role, again after adding a domain.",
        "-- CREATE ROLE fails for a role that exists already: skip it then.",
    ]
    for statement in grant_statements(roles, database):
        if statement.password_of is not None:
            role = roles[statement.password_of]
            lines.append(f"\\password {ident(role)}")
        else:
            lines.append(statement.sql + ";")
    return "\n".join(lines) + "\n"


def _admin_connection(database: str | None = None):
    """psycopg2 connection as the operator's role (:data:`dagmesh.config.DBT_PG_ADMIN_ENV`)."""
    import psycopg2

    names = {**config.DBT_PG_ENV, **config.DBT_PG_ADMIN_ENV}
    if missing := [n for n in names.values() if not os.environ.get(n, "").strip()]:
        raise config.SettingError(
            f"dagmesh warehouse grants --apply needs {', '.join(missing)} in the environment "
            "(the warehouse and an admin role; secrets are never read from files)"
        )
    value = {key: os.environ[name].strip() for key, name in names.items()}
    value["password"] = os.environ[config.DBT_PG_ADMIN_ENV["password"]]
    return psycopg2.connect(
        host=value["host"],
        port=int(value["port"]),
        dbname=database or value["dbname"],
        user=value["user"],
        password=value["password"],
        connect_timeout=10,
    )


def apply_grants(roles: Mapping[str, str]) -> list[str]:
    """Run :func:`grant_statements` as the operator's role in one transaction
    (psycopg2) and return the statements run, as shown. A role's password,
    when its ``DAGMESH_DBT_PG_<DOMAIN>_PASSWORD`` is set, is hashed here
    (SCRAM) before it is sent; a role that is a superuser, bypasses row
    security or is a member of another domain's role is refused."""
    from psycopg2.extensions import encrypt_password

    if len(set(roles.values())) != len(roles):
        shared = sorted({r for r in roles.values() if list(roles.values()).count(r) > 1})
        raise config.SettingError(
            f"domains share a warehouse role ({', '.join(shared)}): each needs its own"
        )
    database = os.environ[config.DBT_PG_ENV["dbname"]].strip()
    connection = _admin_connection()
    done = []
    try:
        with connection, connection.cursor() as cursor:
            admin = os.environ[config.DBT_PG_ADMIN_ENV["user"]].strip()
            if admin in roles.values():
                raise config.SettingError(f"the admin role {admin} is a domain's role too")
            wanted = list(roles.values())
            cursor.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (wanted,))
            existing = {name for (name,) in cursor.fetchall()}
            _refuse_privileged(cursor, roles, existing)
            for statement in grant_statements(roles, database, existing):
                if statement.password_of is None:
                    cursor.execute(statement.sql)
                    done.append(statement.sql)
                    continue
                domain = statement.password_of
                variable = config.dbt_pg_role_env(domain)["password"]
                if not (password := os.environ.get(variable, "")):
                    continue
                hashed = encrypt_password(password, roles[domain], connection, "scram-sha-256")
                cursor.execute(f"{statement.sql} %s", (hashed,))
                done.append(f"{statement.sql} <{variable}, hashed>")
    finally:
        connection.close()
    return done


def _refuse_privileged(cursor: Any, roles: Mapping[str, str], existing: set[str]) -> None:
    """SettingError when an existing domain role could step over the grants."""
    for domain, role in sorted(roles.items()):
        if role not in existing:
            continue
        cursor.execute("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = %s", (role,))
        if cursor.fetchone()[0]:
            raise config.SettingError(
                f"role {role} of domain {domain} is a superuser or bypasses row security: "
                "PostgreSQL would grant it everything; give the domain a plain role"
            )
        for other, other_role in roles.items():
            if other == domain or other_role not in existing:
                continue
            cursor.execute("SELECT pg_has_role(%s, %s, 'USAGE')", (role, other_role))
            if cursor.fetchone()[0]:
                raise config.SettingError(
                    f"role {role} of domain {domain} is a member of {other_role}, domain "
                    f"{other}'s role: it would read and write that domain's schemas"
                )

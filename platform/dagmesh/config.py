"""dagmesh's settings, in one place: every environment variable it reads and
the ``[tool.dagmesh]`` table of the project's pyproject.toml; and where it
keeps things (the repository root, the workspace and DAGMESH_HOME).

All state lives under one data directory, ``DAGMESH_HOME``. Its default is
``.dagmesh/`` at the root of the project (the folder holding workspace.yaml),
which .gitignore excludes.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from dagmesh.errors import DagmeshError

WORKSPACE_FILE = "workspace.yaml"
# The platform's own code location (cross-domain materializations): no
# domain may take its name.
MESH_LOCATION = "mesh"
# Its job and the job's one op (the launchpad's config lives under the op).
MESH_JOB = "materialize_products"
MESH_OP = "materialize_across_domains"
# How many cross-domain materializations the run queue lets run at once; the
# queue's global cap is raised by as many so they never hold the slots their
# domains' runs need.
MESH_RUN_LIMIT = 2


class SettingError(DagmeshError, ValueError):
    """An environment variable or a ``[tool.dagmesh]`` setting holds a value
    dagmesh cannot use."""


def _number(name: str, kind: type[int] | type[float], minimum: float) -> int | float | None:
    """The environment variable ``name`` as a ``kind`` of at least
    ``minimum``, None when unset or empty; SettingError (one line naming the
    variable and what it wants) otherwise."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    want = "a whole number" if kind is int else "a number"
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or value != value or value in (float("inf"), float("-inf")):
        raise SettingError(
            f"{name}={raw[:40]!r} is not {want}; unset it or give {want} ≥ {minimum}"
        )
    if value < minimum:
        raise SettingError(f"{name}={raw[:40]!r} is too small; give {want} ≥ {minimum}")
    return value


def project_root() -> Path:
    """The folder holding ``workspace.yaml``: ``DAGMESH_PROJECT``, else the
    nearest one above the working directory, else the checkout this package
    was installed from (editable installs)."""
    if env := os.environ.get("DAGMESH_PROJECT"):
        return Path(env).resolve()
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / WORKSPACE_FILE).is_file():
            return folder
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / WORKSPACE_FILE).is_file():
        return checkout
    raise FileNotFoundError(
        f"no {WORKSPACE_FILE} found above {Path.cwd()}; run dagmesh from the project "
        "folder or set DAGMESH_PROJECT"
    )


def workspace_file() -> Path:
    """The workspace.yaml listing one code location per domain."""
    return project_root() / WORKSPACE_FILE


def mesh_home() -> Path:
    """The data directory: ``DAGMESH_HOME`` or ``<project>/.dagmesh``."""
    if env := os.environ.get("DAGMESH_HOME"):
        return Path(env).resolve()
    return project_root() / ".dagmesh"


def landing_dir() -> Path:
    """Where the source systems drop their files: ``$DAGMESH_HOME/landing``."""
    return mesh_home() / "landing"


def dagster_home() -> Path:
    """``DAGSTER_HOME`` if set, else ``$DAGMESH_HOME/dagster`` (created with a
    dagster.yaml on first use by :func:`dagmesh.orchestration.instance.ensure_dagster_home`)."""
    if env := os.environ.get("DAGSTER_HOME"):
        return Path(env).resolve()
    return mesh_home() / "dagster"


def registry_dir() -> Path:
    """The mesh registry (each domain's published interfaces):
    ``DAGMESH_REGISTRY``, else ``$DAGMESH_HOME/registry``."""
    if env := os.environ.get("DAGMESH_REGISTRY"):
        return Path(env).resolve()
    return mesh_home() / "registry"


MAX_RUNS_ENV = "DAGMESH_MAX_RUNS"
MEMORY_LIMIT_ENV = "DAGMESH_DUCKDB_MEMORY_LIMIT"
# What DuckDB's memory_limit takes: a size with a unit, or a share of RAM.
_MEMORY = re.compile(r"^\d+(\.\d+)?\s*(([KMGT]i?)?B|%)$", re.IGNORECASE)


def max_runs() -> int:
    """How many runs ``dagmesh materialize`` keeps going at once:
    ``DAGMESH_MAX_RUNS`` (a whole number ≥ 1; SettingError otherwise), else
    the number of cores."""
    return int(_number(MAX_RUNS_ENV, int, 1) or 0) or os.cpu_count() or 1


def default_memory_limit() -> str:
    """``DAGMESH_DUCKDB_MEMORY_LIMIT`` (e.g. ``8GB``, ``512MiB``; SettingError
    if it is not a size), else 80 % of RAM divided by the runs that may go
    at once (:func:`max_runs`): DuckDB's own default gives every step 80 %
    of RAM, so concurrent steps could together ask for more than the
    machine has; past the limit DuckDB spills to disk."""
    if env := os.environ.get(MEMORY_LIMIT_ENV, "").strip():
        if not _MEMORY.match(env):
            raise SettingError(
                f"{MEMORY_LIMIT_ENV}={env[:40]!r} is not a memory size; give e.g. 8GB or 512MiB"
            )
        return env
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"{int(ram * 0.8 / max_runs()) // 2**20}MB"


PII_KEY_ENV = "DAGMESH_PII_KEY"


def pii_key() -> str | None:
    """The secret of the keyed hash of joinable PII columns
    (``DAGMESH_PII_KEY``), or None: such columns are then redacted."""
    return os.environ.get(PII_KEY_ENV) or None


ALERT_WEBHOOK_URL_ENV = "DAGMESH_ALERT_WEBHOOK_URL"
ALERT_WEBHOOK_TIMEOUT_ENV = "DAGMESH_ALERT_WEBHOOK_TIMEOUT"


def alert_webhook_url() -> str:
    """Where alerts are POSTed (``DAGMESH_ALERT_WEBHOOK_URL``), or ``""``.

    Raises SettingError for a URL with a space or a control character (a tab,
    a newline...): URL parsers drop or split on them differently, which once
    put the URL's token in a log line. The message never shows the URL.
    """
    url = os.environ.get(ALERT_WEBHOOK_URL_ENV, "").strip()
    bad = next((i for i, c in enumerate(url) if ord(c) < 0x21 or ord(c) == 0x7F), None)
    if bad is not None:
        raise SettingError(
            f"{ALERT_WEBHOOK_URL_ENV} holds a space or control character (tab, newline...) at "
            f"position {bad + 1}; set it to a plain http(s) URL (percent-encode what needs it). "
            "The URL is not shown: it may carry a token."
        )
    return url


def alert_webhook_timeout() -> str:
    """``DAGMESH_ALERT_WEBHOOK_TIMEOUT`` as written (the alerts module parses
    it, and falls back to its default with a warning: an alert never raises)."""
    return os.environ.get(ALERT_WEBHOOK_TIMEOUT_ENV, "").strip()


def check_settings() -> None:
    """Raise SettingError (one line naming the variable) if any numeric or
    size setting in the environment is unusable: the command line checks
    them all before doing anything, so a typo fails at once, not deep in a run."""
    max_runs()
    default_memory_limit()
    alert_webhook_url()
    _number(ALERT_WEBHOOK_TIMEOUT_ENV, float, 0.001)
    profile()
    check_dbt_target_env()


DBT_TARGET_ENV = "DAGMESH_DBT_TARGET"
DEFAULT_DBT_TARGET = "embedded"
# dbt on a PostgreSQL warehouse (dbt-postgres): its connection only ever from
# these variables (the generated profile names them, never their values). The
# server is shared; each domain logs in with a role of its own
# (:func:`dbt_pg_role_env`), so PostgreSQL itself refuses one domain's SQL
# another domain's schemas.
POSTGRES_DBT_TARGET = "postgres"
DBT_PG_ENV = {
    "host": "DAGMESH_DBT_PG_HOST",
    "port": "DAGMESH_DBT_PG_PORT",
    "dbname": "DAGMESH_DBT_PG_DB",
}
# The operator's role for ``dagmesh warehouse grants --apply`` (creates the
# domains' roles and schemas once); never read by a domain's run.
DBT_PG_ADMIN_ENV = {
    "user": "DAGMESH_DBT_PG_ADMIN_USER",
    "password": "DAGMESH_DBT_PG_ADMIN_PASSWORD",
}
# Variables of the single shared role of earlier versions: no longer read.
_RETIRED_DBT_PG_ENV = ("DAGMESH_DBT_PG_USER", "DAGMESH_DBT_PG_PASSWORD")
_RESERVED_ROLE_DOMAINS = frozenset({"ADMIN"})  # DAGMESH_DBT_PG_ADMIN_* is the operator's


def dbt_target() -> str:
    """The dbt target runs use: ``DAGMESH_DBT_TARGET``, else the profile's
    ``dbt_target``, else ``embedded`` (a DuckDB file per domain)."""
    if env := os.environ.get(DBT_TARGET_ENV, "").strip():
        return env
    return profile().dbt_target or DEFAULT_DBT_TARGET


def dbt_pg_role_env(domain: str) -> dict[str, str]:
    """The variables holding ``domain``'s own warehouse role:
    ``DAGMESH_DBT_PG_<DOMAIN>_USER`` and ``_PASSWORD`` (``<DOMAIN>`` upper-cased,
    other characters as ``_``). There is no shared fallback."""
    name = re.sub(r"[^A-Z0-9]", "_", domain.upper())
    if name in _RESERVED_ROLE_DOMAINS:
        raise SettingError(
            f"domain {domain}: its warehouse role's variables would be the operator's "
            f"({DBT_PG_ADMIN_ENV['user']}); rename the domain to use the postgres dbt target"
        )
    return {"user": f"DAGMESH_DBT_PG_{name}_USER", "password": f"DAGMESH_DBT_PG_{name}_PASSWORD"}


def check_dbt_target_env(domain: str | None = None) -> None:
    """With the ``postgres`` dbt target selected, raise SettingError naming
    every variable that is unset or empty (never a value): the server's
    (:data:`DBT_PG_ENV`) and, given ``domain``, that domain's role
    (:func:`dbt_pg_role_env`); and one whose port is not a port number."""
    if dbt_target() != POSTGRES_DBT_TARGET:
        return
    wanted = list(DBT_PG_ENV.values())
    if domain is not None:
        wanted += dbt_pg_role_env(domain).values()
    if missing := [env for env in wanted if not os.environ.get(env, "").strip()]:
        whose = f" and domain {domain}'s own role" if domain is not None else ""
        retired = [env for env in _RETIRED_DBT_PG_ENV if os.environ.get(env)]
        hint = (
            f"; {' and '.join(retired)} are no longer read: each domain has its own role"
            if retired and domain is not None
            else ""
        )
        raise SettingError(
            f"dbt target {POSTGRES_DBT_TARGET} needs {', '.join(missing)} in the environment "
            f"(the warehouse's PostgreSQL connection{whose}; secrets are never read from "
            f"files){hint}"
        )
    port = _number(DBT_PG_ENV["port"], int, 1)
    if port is not None and port > 65535:
        raise SettingError(f"{DBT_PG_ENV['port']}={port} is not a port number (1-65535)")


def dbt_pg_role(domain: str) -> str:
    """``domain``'s warehouse role name (checked: SettingError naming the
    variables when they are unset)."""
    name = dbt_pg_role_env(domain)["user"]
    if not (role := os.environ.get(name, "").strip()):
        raise SettingError(f"domain {domain} has no warehouse role: set {name} in the environment")
    return role


def tool_settings() -> dict[str, Any]:
    """The ``[tool.dagmesh]`` table of the project's pyproject.toml ({} if none)."""
    pyproject = project_root() / "pyproject.toml"
    if not pyproject.is_file():
        return {}
    return _tool_settings(pyproject, pyproject.stat().st_mtime_ns)


@cache
def _tool_settings(pyproject: Path, mtime_ns: int) -> dict[str, Any]:
    try:
        settings = tomllib.loads(pyproject.read_text())
    except tomllib.TOMLDecodeError as error:
        raise SettingError(f"{pyproject} is not valid TOML: {error}") from None
    return settings.get("tool", {}).get("dagmesh", {})


# ---------------------------------------------------------------------------
# Profiles: how the mesh runs (embedded default, or e.g. production).
# ---------------------------------------------------------------------------

PROFILE_ENV = "DAGMESH_PROFILE"
EMBEDDED_PROFILE = "embedded"
# The Dagster instance's PostgreSQL connection: each setting the profile's
# ``[...postgres]`` table does not give is read from its environment variable
# when Dagster loads the instance; the password only ever from the environment.
PG_ENV = {
    "hostname": "DAGMESH_PG_HOST",
    "port": "DAGMESH_PG_PORT",
    "username": "DAGMESH_PG_USER",
    "db_name": "DAGMESH_PG_DB",
    "password": "DAGMESH_PG_PASSWORD",
}
PG_SECRETS = frozenset({"password"})
_PROFILE_KEYS = frozenset(
    {"instance", "max_concurrent_runs", "domain_run_limit", "domain_run_limits", "workspace"}
    | {"ports", "dbt_target"}
)
# Ports on S3-compatible object storage (``ports = "s3://bucket/prefix"``):
# the endpoint and its options come from the profile's ``[...s3]`` table or,
# where it gives none, from these variables; each domain's identity only from
# DAGMESH_S3_<DOMAIN>_KEY_ID / _SECRET (:func:`s3_credentials`).
S3_ENV = {
    "endpoint": "DAGMESH_S3_ENDPOINT",
    "region": "DAGMESH_S3_REGION",
    "use_ssl": "DAGMESH_S3_USE_SSL",
    "url_style": "DAGMESH_S3_URL_STYLE",
}
S3_DEFAULTS = {"region": "us-east-1", "use_ssl": "true", "url_style": "path"}


@dataclass(frozen=True)
class Profile:
    """One ``[tool.dagmesh.profiles.<name>]`` table, checked.

    ``instance`` is ``sqlite`` (under DAGMESH_HOME) or ``postgres``; a
    profile with ``max_concurrent_runs`` or a domain run limit queues runs
    (Dagster's QueuedRunCoordinator: the daemon starts them within the
    limits); ``workspace`` is the workspace file runs load (e.g. one
    ``grpc_server`` per domain), relative to the project; ``dbt_target``
    the dbt target of every domain's runs (``DAGMESH_DBT_TARGET`` wins).
    """

    name: str
    instance: str = "sqlite"
    postgres: dict[str, str | int] = field(default_factory=dict)
    max_concurrent_runs: int | None = None
    domain_run_limit: int | None = None
    domain_run_limits: dict[str, int] = field(default_factory=dict)
    workspace: str | None = None
    ports: str | None = None
    s3: dict[str, str | bool] = field(default_factory=dict)
    dbt_target: str | None = None

    @property
    def queued(self) -> bool:
        """Runs go through Dagster's run queue (only a daemon starts them)."""
        return bool(self.max_concurrent_runs or self.domain_run_limit or self.domain_run_limits)

    def required_env(self) -> list[str]:
        """The environment variables the instance reads when it loads."""
        if self.instance != "postgres":
            return []
        return [env for key, env in PG_ENV.items() if key not in self.postgres]


def profile_name() -> str:
    """``DAGMESH_PROFILE``, else ``embedded`` (SQLite, runs start at once)."""
    return os.environ.get(PROFILE_ENV, "").strip() or EMBEDDED_PROFILE


def profile() -> Profile:
    """The selected profile, its table checked; SettingError naming the
    profile and the key otherwise. ``embedded`` (the default) is built in:
    SQLite under DAGMESH_HOME, runs started at once."""
    name = profile_name()
    if name == EMBEDDED_PROFILE:
        # Fixed: `make run` never depends on a settings file.
        return Profile(name)
    profiles = tool_settings().get("profiles", {})
    table = profiles.get(name) if isinstance(profiles, dict) else None
    if table is None:
        names = [EMBEDDED_PROFILE, *profiles] if isinstance(profiles, dict) else []
        known = ", ".join(sorted(names))
        raise SettingError(
            f"{PROFILE_ENV}={name[:40]!r}: no [tool.dagmesh.profiles.{name[:40]}] in "
            f"{project_root() / 'pyproject.toml'}; profiles: {known}"
        )
    return _checked_profile(name, table)


def _limit(name: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SettingError(f"profile {name}: {key} = {value!r} is not a whole number ≥ 1")
    return value


def _checked_profile(name: str, table: Any) -> Profile:
    where = f"[tool.dagmesh.profiles.{name}]"
    if not isinstance(table, dict):
        raise SettingError(f"{where} must be a table")
    if unknown := set(table) - _PROFILE_KEYS - {"postgres", "s3"}:
        raise SettingError(
            f"{where}: unknown key {sorted(unknown)[0]!r}; keys: "
            f"{', '.join(sorted(_PROFILE_KEYS | {'postgres', 's3'}))}"
        )
    instance = table.get("instance", "sqlite")
    if instance not in ("sqlite", "postgres"):
        raise SettingError(f"{where}: instance = {instance!r}; give 'sqlite' or 'postgres'")
    postgres = _checked_postgres(where, table.get("postgres", {}))
    limits = table.get("domain_run_limits", {})
    if not isinstance(limits, dict):
        raise SettingError(f"{where}: domain_run_limits must be a table of domain = limit")
    optional = {k: table.get(k) for k in ("max_concurrent_runs", "domain_run_limit")}
    workspace = table.get("workspace")
    if workspace is not None and not isinstance(workspace, str):
        raise SettingError(f"{where}: workspace must be a path (relative to the project)")
    return Profile(
        name,
        instance=instance,
        postgres=postgres,
        domain_run_limits={d: _limit(name, f"domain_run_limits.{d}", n) for d, n in limits.items()},
        workspace=workspace,
        ports=_checked_ports(where, table.get("ports")),
        s3=_checked_s3(where, table.get("s3", {})),
        dbt_target=_checked_dbt_target(where, table.get("dbt_target")),
        **{k: None if v is None else _limit(name, k, v) for k, v in optional.items()},
    )


def _checked_postgres(where: str, table: Any) -> dict[str, str | int]:
    if not isinstance(table, dict):
        raise SettingError(f"{where}: postgres must be a table")
    for key, value in table.items():
        if key in PG_SECRETS:
            # A secret in a checked-in file is the leak this refuses.
            raise SettingError(
                f"{where}: postgres.{key} must not be in a file; set {PG_ENV[key]} in the "
                "environment instead"
            )
        if key not in PG_ENV:
            raise SettingError(
                f"{where}: unknown postgres key {key!r}; keys: "
                f"{', '.join(k for k in PG_ENV if k not in PG_SECRETS)}"
            )
        if key == "port":
            _limit(where, "postgres.port", value)
        elif not isinstance(value, str) or not value:
            raise SettingError(f"{where}: postgres.{key} must be a non-empty string")
    return dict(table)


def _checked_dbt_target(where: str, value: Any) -> str | None:
    """``dbt_target``: the dbt target of every domain's runs under this
    profile (``postgres``, or one of ``[tool.dagmesh.dbt_targets]``)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise SettingError(f"{where}: dbt_target must be a target name, e.g. 'postgres'")
    return value.strip()


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_KEY_PART = re.compile(r"[A-Za-z0-9._-]+")


def _checked_ports(where: str, value: Any) -> str | None:
    """``ports``: where output ports live; only ``s3://bucket[/prefix]``
    (the local disk under DAGMESH_HOME is the default, not a setting)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("s3://"):
        raise SettingError(f"{where}: ports = {str(value)[:60]!r}; give 's3://bucket/prefix'")
    bucket, _, prefix = value.removeprefix("s3://").strip("/").partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise SettingError(f"{where}: ports = {value[:60]!r}: {bucket[:63]!r} is not a bucket name")
    parts = prefix.split("/") if prefix else []
    if not all(_KEY_PART.fullmatch(p) and p.strip(".") for p in parts):
        raise SettingError(
            f"{where}: ports = {value[:60]!r}: the prefix may hold only letters, digits, "
            "'.', '_', '-' between slashes (no '.' or '..' parts)"
        )
    return f"s3://{bucket}" + (f"/{prefix}" if prefix else "")


def _checked_s3(where: str, table: Any) -> dict[str, str | bool]:
    if not isinstance(table, dict):
        raise SettingError(f"{where}: s3 must be a table")
    for key, value in table.items():
        if key not in S3_ENV:
            # Keys and secrets are per domain and only ever in the environment.
            raise SettingError(
                f"{where}: s3.{key} is not a setting (keys: {', '.join(S3_ENV)}); each domain's "
                "credentials come only from DAGMESH_S3_<DOMAIN>_KEY_ID and _SECRET"
            )
        if key == "use_ssl" and not isinstance(value, bool):
            raise SettingError(f"{where}: s3.use_ssl must be true or false")
        if key == "url_style" and value not in ("path", "vhost"):
            raise SettingError(f"{where}: s3.url_style = {value!r}; give 'path' or 'vhost'")
        if key != "use_ssl" and (not isinstance(value, str) or not value):
            raise SettingError(f"{where}: s3.{key} must be a non-empty string")
    return dict(table)


@dataclass(frozen=True)
class S3Settings:
    """Where the ports live on S3 and how to reach it (no credentials)."""

    bucket: str
    prefix: str
    endpoint: str
    region: str
    use_ssl: bool
    url_style: str


def s3_settings(selected: Profile | None = None) -> S3Settings | None:
    """The selected profile's object storage for ports, or None (local disk).
    SettingError when the endpoint is neither in the profile nor in
    DAGMESH_S3_ENDPOINT."""
    selected = selected or profile()
    if not selected.ports:
        return None
    values: dict[str, Any] = {}
    for key, env in S3_ENV.items():
        value = selected.s3.get(key, os.environ.get(env, "").strip() or S3_DEFAULTS.get(key))
        values[key] = value
    if not values["endpoint"]:
        raise SettingError(
            f"profile {selected.name}: ports on {selected.ports} need an endpoint: give "
            "s3.endpoint in the profile or DAGMESH_S3_ENDPOINT (host:port)"
        )
    use_ssl = values["use_ssl"]
    if isinstance(use_ssl, str):
        if use_ssl.lower() not in ("true", "false"):
            raise SettingError(f"DAGMESH_S3_USE_SSL={use_ssl[:10]!r}; give true or false")
        use_ssl = use_ssl.lower() == "true"
    bucket, _, prefix = selected.ports.removeprefix("s3://").partition("/")
    return S3Settings(
        bucket=bucket,
        prefix=prefix,
        endpoint=str(values["endpoint"]),
        region=str(values["region"]),
        use_ssl=use_ssl,
        url_style=str(values["url_style"]),
    )


def s3_credential_env(domain: str) -> tuple[str, str]:
    """The environment variables holding ``domain``'s S3 key id and secret."""
    name = re.sub(r"[^A-Z0-9]", "_", domain.upper())
    return f"DAGMESH_S3_{name}_KEY_ID", f"DAGMESH_S3_{name}_SECRET"


def s3_credentials(domain: str) -> tuple[str, str]:
    """``domain``'s own S3 identity (key id, secret), from the environment
    only; SettingError naming the variables (never their values) when unset."""
    names = s3_credential_env(domain)
    values = [os.environ.get(n, "").strip() for n in names]
    if not all(values):
        missing = [n for n, v in zip(names, values, strict=True) if not v]
        raise SettingError(
            f"domain {domain} has no S3 identity: set {' and '.join(missing)} in the "
            "environment (each domain reads and writes object storage with its own credentials)"
        )
    return values[0], values[1]


def check_profile_env(selected: Profile | None = None) -> None:
    """Raise SettingError naming every environment variable the profile's
    instance needs and that is unset or empty (their values never shown)."""
    selected = selected or profile()
    if missing := [env for env in selected.required_env() if not os.environ.get(env)]:
        raise SettingError(
            f"profile {selected.name} needs {', '.join(missing)} in the environment "
            "(the Dagster instance's PostgreSQL connection; secrets are never read from files)"
        )


def run_workspace_file() -> Path:
    """The workspace file runs load: the profile's ``workspace`` (e.g. one
    ``grpc_server`` entry per domain), else workspace.yaml."""
    if workspace := profile().workspace:
        path = project_root() / workspace
        if not path.is_file():
            raise SettingError(
                f"profile {profile_name()}: workspace {path} does not exist; write it with "
                f"`dagmesh workspace --grpc --out {workspace}`"
            )
        return path
    return workspace_file()


# No network calls from dbt at run time (version check, usage stats), no telemetry.
QUIET_ENV = {
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "DBT_VERSION_CHECK": "false",
    "DAGSTER_DISABLE_TELEMETRY": "true",
}


def quiet_tools() -> None:
    """Set :data:`QUIET_ENV` in this process (and so in its children)."""
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)

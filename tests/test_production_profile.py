"""The production profile on real servers: the Dagster instance on a
PostgreSQL cluster started here, runs through Dagster's queue with a limit of
one run per domain, each domain's code in its own gRPC code server process,
the daemon and the webserver as separate processes, as a deployment runs them.

A small two-domain mesh (alpha's calendar feeds beta's weeks) keeps it quick.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import duckdb
import pytest
import yaml
from dagster import DagsterEventType, DagsterInstance
from dagster._core.remote_origin import GrpcServerCodeLocationOrigin

from dagmesh.config import Profile
from dagmesh.orchestration.instance import dagster_yaml
from tests.cli import BIN, dagmesh, flat, ok
from tests.environment import environment
from tests.processes import graphql, stop, wait_until_ready
from tests.servers import Postgres, free_port, free_port_range, postgres_server

PROFILE = """
[tool.dagmesh.profiles.production]
instance = "postgres"
workspace = "workspace.grpc.yaml"
max_concurrent_runs = 2
domain_run_limit = 1

[tool.dagmesh.profiles.leaky]
instance = "postgres"
postgres = { hostname = "127.0.0.1", password = "written-in-a-file" }
"""
WEEKS = """

beta.sql_product(
    "weeks",
    description="Days per ISO week of alpha's calendar.",
    consumes={"days": "alpha/calendar"},
    classification="internal",
    access="private",
    columns=[
        Column("iso_week", "INTEGER", "ISO 8601 week number.", nullable=False),
        Column("days", "BIGINT", "Days in the week.", nullable=False),
    ],
    primary_key="iso_week",
    sql="SELECT iso_week, count(*)::BIGINT AS days FROM days GROUP BY iso_week",
)
"""


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One PostgreSQL cluster for the session, stopped after."""
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, postgres: Postgres) -> dict:
    """A project of two domains (beta consumes alpha), registered, with the
    production profile and its environment (secrets in the environment only)."""
    root = tmp_path_factory.mktemp("production") / "project"
    (root / "domains").mkdir(parents=True)
    (root / "domains" / "__init__.py").write_text("")
    (root / "workspace.yaml").write_text("load_from: []\n")
    (root / "pyproject.toml").write_text(PROFILE)
    env = {
        **os.environ,
        "DAGMESH_PROJECT": str(root),
        "DAGMESH_HOME": str(root / ".dagmesh"),
        "DAGSTER_HOME": str(root / ".dagmesh" / "dagster"),
        "COLUMNS": "200",
        **postgres.env(),
    }
    env.pop("DAGMESH_PROFILE", None)
    for name in ("alpha", "beta"):
        ok(dagmesh(env, "new", "domain", name))
    with (root / "domains" / "beta" / "products.py").open("a") as products:
        products.write(WEEKS)
    ok(dagmesh(env, "contracts", "sync"))
    ok(dagmesh(env, "register"))
    ok(
        dagmesh(
            env,
            "workspace",
            "--grpc",
            f"--base-port={free_port_range(3)}",
            "--out",
            str(root / "workspace.grpc.yaml"),
        )
    )
    written = yaml.safe_load((root / "workspace.grpc.yaml").read_text())["load_from"]
    ports = {e["grpc_server"]["location_name"]: e["grpc_server"]["port"] for e in written}
    env["DAGMESH_PROFILE"] = "production"
    return {"root": root, "env": env, "ports": ports}


@pytest.fixture(scope="module")
def code_servers(project: dict) -> Iterator[dict[str, int]]:
    """Each domain's own gRPC code server, started as the workspace file's
    comments say (`dagmesh code-server ...`), all at once as a deployment
    starts them, stopped after."""
    from dagster._grpc.client import DagsterGrpcClient

    lines = (project["root"] / "workspace.grpc.yaml").read_text().splitlines()
    commands = [line.removeprefix("#   ") for line in lines if line.startswith("#   dagmesh ")]
    assert len(commands) == 2, lines
    log = project["root"] / "code-servers.log"
    with log.open("w") as output:
        servers = [
            subprocess.Popen(
                [str(BIN / "dagmesh"), *command.split()[1:]],
                cwd=project["root"],
                env=project["env"],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            for command in commands
        ]
    try:
        for port in project["ports"].values():
            client = DagsterGrpcClient(port=port, host="127.0.0.1")
            wait_until_ready(lambda c=client: c.ping("x"), 120, "the code servers", log)
        yield project["ports"]
    finally:
        stop(*servers)


@pytest.fixture(scope="module")
def daemon(project: dict, code_servers) -> Iterator[None]:
    """`dagmesh daemon` (dagster-daemon on the profile's instance), until
    its queue loop has a heartbeat in PostgreSQL."""
    process = subprocess.Popen(
        [str(BIN / "dagmesh"), "daemon"],
        cwd=project["root"],
        env=project["env"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # `dagmesh daemon` writes the instance's dagster.yaml before it starts.
        settings = Path(project["env"]["DAGSTER_HOME"]) / "dagster.yaml"
        wait_until_ready(lambda: "QueuedRunCoordinator" in settings.read_text(), 60, "dagster.yaml")
        with _instance(project) as instance:
            wait_until_ready(
                lambda: "QUEUED_RUN_COORDINATOR" in instance.get_daemon_heartbeats(),
                120,
                "the daemon's queue",
            )
        yield
    finally:
        stop(process)


def _instance(project: dict) -> DagsterInstance:
    """The profile's instance, opened in this process with its environment."""
    with environment(project["env"]):
        return DagsterInstance.get()


def test_a_missing_secret_or_a_secret_in_a_file_is_refused_by_name(project: dict):
    # No password in the environment: named, nothing written, exit 2.
    env = {k: v for k, v in project["env"].items() if k != "DAGMESH_PG_PASSWORD"}
    for command in (("materialize", "--all"), ("daemon",)):
        result = dagmesh(env, *command, timeout=120)
        assert result.returncode == 2, flat(result)
        assert "profile production needs DAGMESH_PG_PASSWORD" in flat(result)
    assert not (project["root"] / ".dagmesh" / "dagster" / "dagster.yaml").exists()
    # Two missing: both named.
    env.pop("DAGMESH_PG_HOST")
    assert "needs DAGMESH_PG_HOST, DAGMESH_PG_PASSWORD" in flat(
        dagmesh(env, "materialize", "--all", timeout=120)
    )
    # A password written into the settings file is refused, for every command.
    leaky = {**project["env"], "DAGMESH_PROFILE": "leaky"}
    result = dagmesh(leaky, "lint", timeout=120)
    assert result.returncode == 2
    assert "postgres.password must not be in a file; set DAGMESH_PG_PASSWORD" in flat(result)
    assert "written-in-a-file" not in flat(result)
    # A profile that does not exist names the profiles there are.
    result = dagmesh({**project["env"], "DAGMESH_PROFILE": "prod"}, "lint", timeout=120)
    assert result.returncode == 2
    assert "DAGMESH_PROFILE='prod': no [tool.dagmesh.profiles.prod]" in flat(result)
    assert "profiles: embedded, leaky, production" in flat(result)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"instance": "mysql"}, "instance = 'mysql'; give 'sqlite' or 'postgres'"),
        ({"domain_run_limit": 0}, "domain_run_limit = 0 is not a whole number ≥ 1"),
        ({"max_concurrent_runs": "4"}, "max_concurrent_runs = '4' is not a whole number"),
        ({"domain_run_limits": {"beta": True}}, "domain_run_limits.beta = True is not"),
        ({"max_concurent_runs": 4}, "unknown key 'max_concurent_runs'"),
        ({"postgres": {"host": "db"}}, "unknown postgres key 'host'"),
    ],
)
def test_a_bad_profile_setting_is_named(table: dict, message: str):
    from dagmesh.config import SettingError, _checked_profile

    with pytest.raises(SettingError, match="profile") as error:
        _checked_profile("production", table)
    assert message in str(error.value)


def test_a_pyproject_that_is_not_toml_is_named_not_a_traceback(tmp_path: Path):
    """A profile table declared twice (an easy slip when adding a profile)."""
    (tmp_path / "workspace.yaml").write_text("load_from: []\n")
    (tmp_path / "pyproject.toml").write_text(PROFILE + PROFILE)
    env = {**os.environ, "DAGMESH_PROJECT": str(tmp_path), "DAGMESH_PROFILE": "production"}
    env["DAGMESH_HOME"] = str(tmp_path / "home")
    result = dagmesh(env, "materialize", "--all")
    assert result.returncode == 2, flat(result)
    assert f"{tmp_path / 'pyproject.toml'} is not valid TOML" in flat(result)
    assert "Cannot declare ('tool', 'dagmesh', 'profiles', 'production') twice" in flat(result)
    assert "Traceback" not in flat(result)


def test_the_queue_limits_every_domain_and_lets_one_go_higher(project: dict, monkeypatch):
    monkeypatch.setenv("DAGMESH_PROJECT", str(project["root"]))
    monkeypatch.setenv("DAGMESH_PROFILE", "production")
    settings = yaml.safe_load(
        dagster_yaml(
            Profile(
                "production",
                instance="postgres",
                max_concurrent_runs=3,
                domain_run_limit=1,
                domain_run_limits={"beta": 2},
                workspace="workspace.grpc.yaml",
            )
        )
    )
    assert settings["run_coordinator"]["class"] == "QueuedRunCoordinator"
    queue = settings["concurrency"]["runs"]
    # Room for the cross-domain materializations (location `mesh`, at most 2
    # at once) on top of the 3 runs of domains: they never hold their slots.
    assert queue["max_concurrent_runs"] == 3 + 2
    rules = {
        (r["key"], json.dumps(r["value"])): r["limit"] for r in queue["tag_concurrency_limits"]
    }
    assert rules == {
        ("dagster/code_location", '{"applyLimitPerUniqueValue": true}'): 2,
        ("dagster/code_location", '"alpha"'): 1,
        ("dagster/code_location", '"beta"'): 2,
        ("dagster/code_location", '"mesh"'): 2,
    }


def test_the_embedded_default_is_unchanged_and_comes_back(
    project: dict, tmp_path: Path, monkeypatch
):
    from dagmesh.orchestration.instance import EMBEDDED_DAGSTER_YAML, ensure_dagster_home

    monkeypatch.setenv("DAGMESH_PROJECT", str(project["root"]))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    for name, value in project["env"].items():
        if name.startswith("DAGMESH_PG_"):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("DAGMESH_PROFILE", "production")
    written = tmp_path / "dagster" / "dagster.yaml"
    ensure_dagster_home()
    assert "QueuedRunCoordinator" in written.read_text()
    monkeypatch.delenv("DAGMESH_PROFILE")
    ensure_dagster_home()
    assert written.read_text() == EMBEDDED_DAGSTER_YAML
    assert "DefaultRunCoordinator" in EMBEDDED_DAGSTER_YAML


def test_bad_grpc_workspace_requests_and_a_missing_workspace_are_named(project: dict):
    env = {**project["env"], "DAGMESH_PROFILE": ""}
    for args, message in [
        (("--host", "{zone}.svc"), "host '{zone}.svc': only {domain} may be in braces"),
        (("--base-port", "65535"), "are not valid"),
        (("--base-port", "0"), "are not valid"),
    ]:
        result = dagmesh(env, "workspace", "--grpc", *args, timeout=120)
        assert result.returncode == 2, flat(result)
        assert message in flat(result)
    moved = project["root"] / "workspace.grpc.yaml"
    moved.rename(moved.with_suffix(".away"))
    try:
        result = dagmesh(project["env"], "materialize", "--all", timeout=120)
    finally:
        moved.with_suffix(".away").rename(moved)
    assert result.returncode == 2, flat(result)
    assert "workspace.grpc.yaml does not exist; write it with `dagmesh workspace --grpc" in (
        flat(result)
    )


def test_a_code_server_for_a_domain_the_workspace_lacks_is_refused_by_name(project: dict):
    result = dagmesh(project["env"], "code-server", "gamma", "-p", str(free_port()), timeout=120)
    assert result.returncode == 2, flat(result)
    assert "'gamma' is not a code location of workspace.yaml: alpha, beta" in flat(result)


def test_code_servers_started_together_share_one_instance_storage(project: dict, code_servers):
    """Both servers started at once on a fresh DAGSTER_HOME: the storage was
    created once, on the profile's PostgreSQL (no SQLite file beside it)."""
    home = Path(project["env"]["DAGSTER_HOME"])
    assert "postgres" in yaml.safe_load((home / "dagster.yaml").read_text())["storage"]
    assert not list(home.rglob("*.db")), list(home.rglob("*.db"))


def test_without_a_daemon_materialize_says_what_to_start(project: dict, code_servers):
    result = dagmesh(project["env"], "materialize", "--all", timeout=300)
    assert result.returncode == 2, flat(result)
    assert "no dagster-daemon is running" in flat(result)
    assert "`dagmesh daemon`" in flat(result)


def test_a_cross_domain_materialization_goes_through_the_queue(
    project: dict, postgres: Postgres, code_servers: dict[str, int], daemon
):
    result = dagmesh(project["env"], "materialize", "--all", timeout=600)
    assert result.returncode == 0, flat(result)
    assert "materialized 3 products" in flat(result)

    # The runs are in PostgreSQL: one per domain, both succeeded, both queued.
    runs = postgres.query(
        "SELECT r.run_id, r.status, t.value, r.start_time, r.end_time FROM runs r "
        "JOIN run_tags t ON t.run_id = r.run_id AND t.key = 'dagster/code_location' "
        "WHERE r.run_id IN (SELECT run_id FROM run_tags WHERE key = 'dagmesh/materialization')"
    )
    by_domain = {row[2]: (row[0], row[1], row[3], row[4]) for row in runs}
    assert sorted(by_domain) == ["alpha", "beta"], runs
    assert {status for _, status, _, _ in by_domain.values()} == {"SUCCESS"}
    enqueued = postgres.query(
        "SELECT DISTINCT run_id FROM event_logs WHERE dagster_event_type = %s",
        (DagsterEventType.RUN_ENQUEUED.value,),
    )
    assert {r[0] for r in enqueued} >= {v[0] for v in by_domain.values()}
    # Beta's run waited for alpha's published calendar (wave by wave).
    assert by_domain["beta"][2] >= by_domain["alpha"][3]

    # Each run ran in its domain's own code server. The daemon looks at the
    # queue every second (Dagster's default, 5 s, is waited once per domain).
    with _instance(project) as instance:
        assert instance.run_coordinator.dequeue_interval_seconds == 1
        for domain, (run_id, *_) in by_domain.items():
            run = instance.get_run_by_id(run_id)
            origin = run.remote_job_origin.repository_origin.code_location_origin
            assert isinstance(origin, GrpcServerCodeLocationOrigin)
            assert (origin.host, origin.port) == ("127.0.0.1", code_servers[domain])

    published = project["root"] / ".dagmesh/domains/beta/ports/weeks/current/data.parquet"
    weeks = duckdb.connect().execute(f"SELECT sum(days) FROM '{published}'").fetchone()[0]
    assert weeks >= 365 * 2


def test_the_domain_limit_makes_a_second_run_of_a_domain_wait_in_the_queue(
    project: dict, postgres: Postgres, daemon
):
    # Two materializations of the same domain at once: both succeed, and the
    # run that came second waited QUEUED until the first one had ended.
    processes = [
        subprocess.Popen(
            [str(BIN / "dagmesh"), "materialize", "alpha/calendar"],
            cwd=project["root"],
            env=project["env"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    ids = [o.split("dagmesh/materialization=")[1].split()[0] for o in outputs]
    runs = postgres.query(
        "SELECT r.run_id, r.status, r.start_time, r.end_time, "
        "(SELECT min(e.timestamp) FROM event_logs e WHERE e.run_id = t.value "
        " AND e.dagster_event_type = %s) FROM runs r JOIN run_tags t ON t.run_id = r.run_id "
        "WHERE t.key = 'dagmesh/materialization' AND t.value = ANY(%s) ORDER BY r.start_time",
        (DagsterEventType.RUN_ENQUEUED.value, ids),
    )
    assert [r[1] for r in runs] == ["SUCCESS", "SUCCESS"], runs
    first, second = runs
    assert second[2] >= first[3]  # started after the first ended
    # though its materialization was queued before it ended (event times are
    # naive UTC): with a limit of one run per domain, the cross-domain
    # materializations (location `mesh`) also go one at a time.
    assert second[4].replace(tzinfo=UTC).timestamp() < first[3]


def test_no_secret_is_written_to_the_instance_files_or_logs(
    project: dict, postgres: Postgres, daemon
):
    home = project["root"] / ".dagmesh"
    written = (home / "dagster" / "dagster.yaml").read_text()
    settings = yaml.safe_load(written)
    db = settings["storage"]["postgres"]["postgres_db"]
    assert db["password"] == {"env": "DAGMESH_PG_PASSWORD"}
    assert db["hostname"] == {"env": "DAGMESH_PG_HOST"}
    assert settings["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert settings["run_monitoring"]["enabled"] is True
    leaks = [
        str(path)
        for path in home.rglob("*")
        if path.is_file() and postgres.password.encode() in path.read_bytes()
    ]
    assert not leaks
    assert any(home.rglob("materialize-*.log"))  # the logs were there to look into


def test_the_webserver_loads_the_domains_code_servers_and_shows_the_runs(
    project: dict, code_servers: dict[str, int], daemon
):
    port = free_port()
    webserver = subprocess.Popen(
        [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port)]
        + ["-w", str(project["root"] / "workspace.grpc.yaml")],
        cwd=project["root"],
        env=project["env"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    query = (
        "{ workspaceOrError { ... on Workspace { locationEntries { name "
        "locationOrLoadError { __typename } } } } "
        'runsOrError(filter: {tags: [{key: "dagster/code_location", value: "beta"}]}) '
        "{ ... on Runs { results { status } } } }"
    )

    try:
        data = wait_until_ready(
            lambda: graphql(f"http://127.0.0.1:{port}", query, timeout=10)["data"],
            120,
            "the webserver",
        )
        pages = _pages_in_chromium(
            f"http://127.0.0.1:{port}",
            {"production-runs": "/runs", "production-weeks": "/assets/beta/weeks"},
        )
    finally:
        stop(webserver)
    # What an operator sees in the UI over the PostgreSQL instance.
    assert "beta" in pages["production-runs"] and "alpha" in pages["production-runs"]
    assert "Success" in pages["production-runs"]
    weeks = pages["production-weeks"]
    assert "Latest materialization" in weeks and "dagmesh/version" in weeks
    assert re.search(r"\d{8}T\d+Z-[0-9a-f]{8}", weeks), "no published version on the page"
    entries = {
        e["name"]: e["locationOrLoadError"]["__typename"]
        for e in data["workspaceOrError"]["locationEntries"]
    }
    assert entries == {"alpha": "RepositoryLocation", "beta": "RepositoryLocation"}
    assert [r["status"] for r in data["runsOrError"]["results"]] == ["SUCCESS"]


def _pages_in_chromium(base: str, paths: dict[str, str]) -> dict[str, str]:
    """The text of each page of the UI at ``base``, as Debian's chromium shows
    it (a screenshot of each under the UI artifacts)."""
    from playwright.sync_api import sync_playwright

    from tests.test_ui import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    texts = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for shot, path in paths.items():
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                skip = page.get_by_role("button", name="Skip")  # first-visit dialog
                page.goto(base + path, wait_until="networkidle", timeout=120_000)
                page.wait_for_timeout(1500)
                if skip.is_visible():
                    skip.click()
                page.screenshot(path=str(ARTIFACTS / f"{shot}.png"), full_page=True)
                texts[shot] = page.inner_text("body")
        finally:
            browser.close()
    return texts

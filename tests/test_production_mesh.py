"""The whole sample mesh on the production profile, as a deployment runs it,
reconciled with the generator's truth exactly as on the embedded profile
(tests/test_mesh_end_to_end.py).

Real servers on 127.0.0.1, started here and stopped after:

- the Dagster instance on a PostgreSQL cluster; runs through Dagster's queue
  (``dagmesh daemon``), at most one run per domain;
- each domain's code in its own gRPC code server (``dagmesh code-server``,
  the commands ``dagmesh workspace --grpc`` writes);
- ports on SeaweedFS, each domain with its own S3 identity;
- the dbt domains (marketing, finance) on a second PostgreSQL cluster as the
  warehouse, each with its own role (``dagmesh warehouse grants --apply``).

``dagmesh materialize --all`` runs as a user types it; the checks then read
only the bucket (as its admin) and the instance.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, DagsterInstance

from tests import reconcile
from tests.cli import BIN, dagmesh, flat, ok
from tests.conftest import REPO, SCALE, TEST_PII_KEY
from tests.environment import environment
from tests.processes import graphql, stop, wait_until_ready
from tests.reconcile import S3Ports
from tests.servers import SeaweedS3, free_port, free_port_range, postgres_server, s3_server
from tests.test_mesh_end_to_end import ALL_PRODUCTS

DOMAINS = ["sales", "shipping", "marketing", "customers", "finance"]
DBT_DOMAINS = ["marketing", "finance"]
LINKED = ["domains", "dbt_projects", "source_systems", "workspace.yaml"]
PROFILE = """
[tool.dagmesh.profiles.deployment]
instance = "postgres"
workspace = "workspace.grpc.yaml"
ports = "{ports}"
dbt_target = "postgres"
max_concurrent_runs = 2
domain_run_limit = 1
"""


def _project(root: Path, s3: SeaweedS3) -> Path:
    """The repository's mesh (linked) with a production profile in its pyproject.toml."""
    root.mkdir(parents=True)
    for name in LINKED:
        (root / name).symlink_to(REPO / name)
    profile = PROFILE.format(ports=s3.ports)
    (root / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text() + profile)
    return root


def _start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    with log.open("w") as output:
        return subprocess.Popen(
            [str(BIN / "dagmesh"), *command],
            cwd=env["DAGMESH_PROJECT"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def _code_servers(root: Path, env: dict, stack: ExitStack) -> None:
    """Each domain's gRPC code server, started from the commands
    ``dagmesh workspace --grpc`` writes into the workspace file."""
    from dagster._grpc.client import DagsterGrpcClient

    workspace = root / "workspace.grpc.yaml"
    ok(
        dagmesh(
            env,
            "workspace",
            "--grpc",
            f"--base-port={free_port_range(len(DOMAINS) + 1)}",
            "--out",
            str(workspace),
        )
    )
    entries = yaml.safe_load(workspace.read_text())["load_from"]
    lines = workspace.read_text().splitlines()
    commands = [line.removeprefix("#   ") for line in lines if line.startswith("#   dagmesh ")]
    assert len(commands) == len(entries) >= len(DOMAINS), lines
    log = root / "code-servers.log"
    for index, command in enumerate(commands):
        server = _start(command.split()[1:], env, root / f"code-server-{index}.log")
        stack.callback(stop, server)
    for entry in entries:
        client = DagsterGrpcClient(port=entry["grpc_server"]["port"], host="127.0.0.1")
        wait_until_ready(lambda c=client: c.ping("x"), 180, "the code servers", log)


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The servers, the project and its environment, the warehouse's roles,
    the landing files, the registry, the code servers and the daemon; then
    ``dagmesh materialize --all``."""
    from source_systems.generator import generate

    work = tmp_path_factory.mktemp("production_mesh")
    with ExitStack() as stack:
        instance_pg = stack.enter_context(postgres_server("dagster"))
        warehouse = stack.enter_context(postgres_server("warehouse"))
        s3 = stack.enter_context(s3_server(DOMAINS))
        root = _project(work / "project", s3)
        home = work / "home"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("DAGMESH_")},
            "DAGMESH_PROJECT": str(root),
            "DAGMESH_HOME": str(home),
            "DAGSTER_HOME": str(home / "dagster"),
            "DAGMESH_PII_KEY": TEST_PII_KEY,
            "DAGMESH_PROFILE": "deployment",
            "COLUMNS": "200",
            **instance_pg.env(),
            **s3.env(),
            **warehouse.warehouse_env(DBT_DOMAINS),
        }
        generate(home / "landing", scale=SCALE, seed=7)
        grants = ok(dagmesh(env, "warehouse", "grants", "--apply", *DBT_DOMAINS))
        assert "applied for finance (finance_dbt), marketing (marketing_dbt)" in flat(grants)
        ok(dagmesh(env, "register"))
        _code_servers(root, env, stack)
        daemon = _start(["daemon"], env, root / "daemon.log")
        stack.callback(stop, daemon)
        wait_until_ready(
            lambda: (
                ("QUEUED_RUN_COORDINATOR",)
                in instance_pg.query("SELECT daemon_type FROM daemon_heartbeats")
            ),
            180,
            "the daemon's queue",
            root / "daemon.log",
        )
        started = time.perf_counter()
        materialized = dagmesh(env, "materialize", "--all", timeout=900)
        seconds = time.perf_counter() - started
        print(f"\nproduction profile, whole mesh at scale {SCALE}: {seconds:.1f}s")
        yield {
            "env": env,
            "home": home,
            "s3": s3,
            "instance": instance_pg,
            "warehouse": warehouse,
            "materialized": materialized,
            "truth": json.loads((home / "landing" / "_truth.json").read_text()),
        }


@pytest.fixture(scope="module")
def ports(production: dict) -> S3Ports:
    assert production["materialized"].returncode == 0, flat(production["materialized"])
    return S3Ports(production["s3"])


def test_materialize_all_publishes_every_product_to_object_storage(production: dict, ports):
    assert f"materialized {len(ALL_PRODUCTS)} products" in flat(production["materialized"])
    for ref in ALL_PRODUCTS:
        assert ports.query(f"SELECT count(*) FROM '{ports.data(ref)}'")[0][0] > 0, ref
    # Nothing was published on the local disk: the profile keeps ports on S3.
    assert not list(production["home"].glob("domains/*/ports/*/current"))


def test_every_run_went_through_the_queue_one_location_each(production: dict, ports):
    """One cross-domain run in the ``mesh`` location (the command's request,
    queued like any run) launched one run per domain and dependency wave."""
    runs = production["instance"].query(
        "SELECT r.status, r.pipeline_name, (SELECT value FROM run_tags t WHERE "
        "t.run_id = r.run_id AND t.key = 'dagster/code_location') FROM runs r"
    )
    assert runs and {status for status, _, _ in runs} == {"SUCCESS"}
    by_location = {location for _, _, location in runs}
    assert by_location == {*DOMAINS, "mesh"}
    assert [job for _, job, location in runs if location == "mesh"] == ["materialize_products"]


def test_orders_and_revenue_reconcile_with_the_sources(production: dict, ports):
    reconcile.orders_and_revenue(ports, production["truth"])


def test_delays_reconcile_with_the_generated_scenarios(production: dict, ports):
    reconcile.delays(ports, production["truth"])


def test_quarantine_counts_equal_the_injected_defects(production: dict, ports):
    reconcile.quarantine_counts(ports, production["truth"])


def test_marketing_and_finance_reconcile(production: dict, ports):
    reconcile.marketing_finance_and_customers(ports, production["truth"])


def test_dbt_models_were_built_in_the_warehouse_by_their_domains_roles(production: dict, ports):
    owners = dict(
        production["warehouse"].query(
            "SELECT schemaname || '.' || tablename, tableowner FROM pg_tables "
            "WHERE schemaname IN ('marketing', 'finance')"
        )
    )
    assert owners["marketing.ad_audiences"] == "marketing_dbt"
    assert owners["finance.delay_costs"] == "finance_dbt"
    # The audiences' hashes are the same hex digests DuckDB would compute.
    audiences = ports.data("marketing/ad_audiences")
    ((bad,),) = ports.query(
        f"SELECT count(*) FROM '{audiences}' WHERE NOT regexp_full_match(email_sha256, "
        "'[0-9a-f]{64}')"
    )
    assert bad == 0


def test_the_instance_shows_each_products_published_version(production: dict, ports):
    """What the UI reads: each product's latest materialization in the
    PostgreSQL instance names the version its S3 pointer holds."""
    env = production["env"]
    settings = {k: v for k, v in env.items() if k.startswith(("DAGMESH_", "DAGSTER_HOME"))}
    with environment(settings), DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        for ref in ALL_PRODUCTS:
            event = instance.get_latest_materialization_event(AssetKey(ref.split("/")))
            assert event is not None, ref
            version = event.asset_materialization.metadata["dagmesh/version"].value
            assert f"/versions/{version}/" in ports.data(ref), ref


VERSIONS_QUERY = """
{ assetNodes { assetKey { path }
    assetMaterializations(limit: 1) { runId
      metadataEntries { label ... on TextMetadataEntry { text } } } } }
"""


def test_the_ui_over_the_postgresql_instance_shows_every_published_version(production: dict, ports):
    """dagster-webserver on the domains' code servers and the PostgreSQL
    instance: each product's latest materialization names the version its
    S3 pointer holds, and chromium shows customer_360's."""
    from tests.test_production_profile import _pages_in_chromium

    env = production["env"]
    port = free_port()
    webserver = subprocess.Popen(
        [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port)]
        + ["-w", str(Path(env["DAGMESH_PROJECT"]) / "workspace.grpc.yaml")],
        cwd=env["DAGMESH_PROJECT"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        log = Path(env["DAGMESH_PROJECT"]) / "webserver.log"
        url = f"http://127.0.0.1:{port}"
        nodes = wait_until_ready(
            lambda: graphql(url, VERSIONS_QUERY)["data"]["assetNodes"], 120, "the webserver", log
        )
        page = _pages_in_chromium(url, {"production-mesh-c360": "/assets/customers/customer_360"})[
            "production-mesh-c360"
        ]
    finally:
        stop(webserver)
    shown = {}
    for node in nodes:
        ref = "/".join(node["assetKey"]["path"])
        if ref in ALL_PRODUCTS and node["assetMaterializations"]:
            entries = node["assetMaterializations"][0]["metadataEntries"]
            shown[ref] = next(e.get("text") for e in entries if e["label"] == "dagmesh/version")
    assert set(shown) == ALL_PRODUCTS
    for ref, version in shown.items():
        assert f"/versions/{version}/" in ports.data(ref), ref
    assert "Latest materialization" in page
    assert shown["customers/customer_360"] in page

"""Benchmark: the whole sample mesh on the embedded profile against the production profile.

Generates the landing files once (``dagmesh generate --scale N``, not timed),
then times ``dagmesh materialize --all``:

1. **embedded**: ``DAGMESH_PROFILE`` unset: SQLite instance under
   ``<work>/embedded``, runs started at once, ports on the local disk, dbt on
   DuckDB;
2. **production**: a project folder ``<work>/project`` (the repository's
   domains, dbt projects and workspace.yaml, linked; its pyproject.toml with
   a ``[tool.dagmesh.profiles.bench]`` table), ``DAGMESH_PROFILE=bench``:

   - the Dagster instance on a PostgreSQL cluster started here
     (tests/servers.py: 127.0.0.1, as the ``postgres`` user when run as root);
   - the QueuedRunCoordinator (``max_concurrent_runs``, one run per domain),
     with ``dagmesh daemon`` started here before the timed command;
   - ports on a SeaweedFS S3 server started here, one identity per domain
     (``DAGMESH_S3_<DOMAIN>_KEY_ID/_SECRET``);
   - dbt on DuckDB, as on the embedded profile; ``--dbt-target postgres``
     puts it on the ``postgres`` target, a second PostgreSQL cluster as the
     warehouse, each dbt domain with its own role (``dagmesh warehouse
     grants --apply``, not timed).

For each run: the wall time of the command, the peak RSS of its process tree
(sum over the command and its descendants, sampled every 50 ms) and, for the
production run, of the daemon's tree and of the servers (PostgreSQL clusters,
SeaweedFS) sampled at the same instants, the 1-minute load average at the
start. Then the row count of every published product on both profiles (read
back from the local ports and from S3 with a plain boto3 client), which must
match. Run on demand, never in CI::

    .venv/bin/python bench/bench_profiles.py --scale 1M --workdir /tmp/bench-profiles
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import psutil

BENCH = Path(__file__).resolve().parent
PROJECT = BENCH.parent
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(BENCH))

from bench_mesh import dagmesh_command, generate, mib, parse_scale  # noqa: E402

from tests.processes import stop, wait_until_ready  # noqa: E402
from tests.servers import Postgres, SeaweedS3, postgres_server, s3_server  # noqa: E402

SAMPLE_SECONDS = 0.05
DETACHED = "detached"  # processes of the mesh outside the sampled trees
# The mesh's own processes (not the servers): command, detached, daemon.
MESH_GROUPS = ("materialize", DETACHED, "daemon")
PROFILE_NAME = "bench"
DOMAINS = ["sales", "shipping", "marketing", "customers", "finance"]
DBT_DOMAINS = ["marketing", "finance"]
LINKED = ["domains", "dbt_projects", "source_systems", "workspace.yaml"]


def profile_table(s3: SeaweedS3, dbt_target: str) -> str:
    lines = [
        f"\n[tool.dagmesh.profiles.{PROFILE_NAME}]",
        'instance = "postgres"',
        "max_concurrent_runs = 4",
        "domain_run_limit = 1",
        f'ports = "{s3.ports}"',
    ]
    if dbt_target == "postgres":
        lines.append('dbt_target = "postgres"')
    return "\n".join(lines) + "\n"


def make_project(folder: Path, s3: SeaweedS3, dbt_target: str) -> Path:
    """A project folder that is the repository's mesh with one more profile."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in LINKED:
        (folder / name).symlink_to(PROJECT / name)
    text = (PROJECT / "pyproject.toml").read_text() + profile_table(s3, dbt_target)
    (folder / "pyproject.toml").write_text(text)
    return folder


# ---------------------------------------------------------------------------
# Sampling RSS of several process trees at the same instants.
# ---------------------------------------------------------------------------


class GroupSampler(threading.Thread):
    """Every 50 ms, the summed RSS of each group of process trees; keeps
    each group's peak and the peak of the sum of all groups."""

    def __init__(self, groups: dict[str, list[int]], home: Path) -> None:
        super().__init__(daemon=True)
        self.groups = {name: [psutil.Process(p) for p in pids] for name, pids in groups.items()}
        self.groups[DETACHED] = []
        self.home = str(home)
        self.homes: dict[int, bool] = {}
        self.stop = threading.Event()
        self.peak = dict.fromkeys(self.groups, 0)
        self.peak_total = 0
        self.peak_mesh = 0
        self.peak_procs = 0

    def _tree(self, roots: list[psutil.Process]) -> list[psutil.Process]:
        procs = []
        for root in roots:
            with contextlib.suppress(psutil.Error):
                procs += [root, *root.children(recursive=True)]
        return procs

    def _of_this_mesh(self, proc: psutil.Process) -> bool:
        """The process runs with this run's DAGMESH_HOME (read once per pid)."""
        if proc.pid not in self.homes:
            try:
                self.homes[proc.pid] = proc.environ().get("DAGMESH_HOME") == self.home
            except psutil.Error:
                self.homes[proc.pid] = False
        return self.homes[proc.pid]

    def sample(self) -> None:
        total = count = 0
        trees = {name: self._tree(roots) for name, roots in self.groups.items()}
        # Dagster's code servers outlive their parent (they are reparented to
        # init): every other process with this DAGMESH_HOME is counted too.
        seen = {proc.pid for tree in trees.values() for proc in tree}
        trees[DETACHED] = [
            proc
            for proc in psutil.process_iter()
            if proc.pid not in seen and proc.pid != os.getpid() and self._of_this_mesh(proc)
        ]
        mesh = 0
        for name, tree in trees.items():
            rss = 0
            for proc in tree:
                with contextlib.suppress(psutil.Error):
                    rss += proc.memory_info().rss
                    count += 1
            self.peak[name] = max(self.peak[name], rss)
            total += rss
            mesh += rss if name in MESH_GROUPS else 0
        self.peak_total = max(self.peak_total, total)
        self.peak_mesh = max(self.peak_mesh, mesh)
        self.peak_procs = max(self.peak_procs, count)

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(SAMPLE_SECONDS)


@dataclass
class Run:
    name: str
    wall: float
    load: float
    returncode: int
    peak: dict[str, int]
    peak_total: int
    peak_mesh: int
    peak_procs: int


def timed(name: str, command: list[str], env, cwd: Path, log: Path, others) -> Run:
    """Run ``command`` and sample its tree and the ``others`` groups (name → pids)."""
    load = os.getloadavg()[0]
    with open(log, "w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        sampler = GroupSampler({"materialize": [proc.pid], **others}, Path(env["DAGMESH_HOME"]))
        sampler.start()
        proc.wait()
        wall = time.perf_counter() - start
        sampler.stop.set()
        sampler.join()
    return Run(
        name,
        wall,
        load,
        proc.returncode,
        sampler.peak,
        sampler.peak_total,
        sampler.peak_mesh,
        sampler.peak_procs,
    )


def postmaster_pid(server: Postgres) -> int:
    """The PostgreSQL cluster's main process (listening on its port)."""
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and str(server.port) in cmdline and "-D" in cmdline:
            return proc.pid
    raise RuntimeError(f"no postgres process for port {server.port}")


def weed_pid(s3: SeaweedS3) -> int:
    for proc in psutil.process_iter(["cmdline"]):
        if any(str(s3.folder) in part for part in proc.info["cmdline"] or []):
            return proc.pid
    raise RuntimeError(f"no weed process for {s3.folder}")


# ---------------------------------------------------------------------------
# Row counts of every published product.
# ---------------------------------------------------------------------------


def local_counts(home: Path) -> dict[str, int]:
    counts = {}
    for data in sorted((home / "domains").glob("*/ports/*/current/data.parquet")):
        domain, product = data.parts[-5], data.parts[-3]
        query = f"SELECT count(*) FROM read_parquet('{data}')"
        counts[f"{domain}/{product}"] = duckdb.execute(query).fetchone()[0]
    return counts


def s3_counts(s3: SeaweedS3) -> dict[str, int]:
    import pyarrow.parquet as pq

    client = s3.client()
    prefix = f"{s3.prefix}/published/"
    counts = {}
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix)
    for page in pages:
        for item in page.get("Contents", []):
            key = item["Key"]
            if not key.endswith("/current.json"):
                continue
            domain, product = key[len(prefix) :].split("/")[:2]
            body = client.get_object(Bucket=s3.bucket, Key=key)["Body"].read()
            version = json.loads(body)["version"]
            data_key = f"{prefix}{domain}/{product}/versions/{version}/data.parquet"
            data = client.get_object(Bucket=s3.bucket, Key=data_key)["Body"].read()
            counts[f"{domain}/{product}"] = pq.ParquetFile(io.BytesIO(data)).metadata.num_rows
    return counts


def instance_runs(server: Postgres) -> list[tuple]:
    """(status, location, materialization tag) of every run of the production instance."""
    return server.query(
        "SELECT r.status, "
        "(SELECT value FROM run_tags t WHERE t.run_id = r.run_id "
        "AND t.key = 'dagster/code_location'), "
        "(SELECT value FROM run_tags t WHERE t.run_id = r.run_id "
        "AND t.key = 'dagmesh/materialization') FROM runs r"
    )


# ---------------------------------------------------------------------------


def register(env: dict[str, str], cwd: Path, log: Path) -> None:
    """``dagmesh register`` (every domain's interfaces into the registry), not timed."""
    with open(log, "w") as out:
        done = subprocess.run(
            [dagmesh_command(), "register"], env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
        )
    if done.returncode:
        sys.exit(f"dagmesh register failed (exit {done.returncode}); see {log}")


def grants(env: dict[str, str], cwd: Path, log: Path) -> None:
    """``dagmesh warehouse grants --apply``: the dbt domains' roles and schemas, not timed."""
    with open(log, "w") as out:
        done = subprocess.run(
            [dagmesh_command(), "warehouse", "grants", "--apply"],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if done.returncode:
        sys.exit(f"dagmesh warehouse grants failed (exit {done.returncode}); see {log}")


def registered_products(home: Path) -> set[str]:
    """Every product of the registry under ``home`` (what both runs must publish)."""
    refs = set()
    for document in (home / "registry").glob("*.json"):
        domain = json.loads(document.read_text())
        refs |= {f"{document.stem}/{name}" for name in domain.get("products", {})}
    return refs


def fail(what: str, run: Run, log: Path) -> None:
    tail = log.read_text(errors="replace").splitlines()[-40:]
    print("\n".join(tail), file=sys.stderr)
    print(f"{what} failed (exit {run.returncode}); full output in {log}", file=sys.stderr)


def run_embedded(work: Path) -> tuple[Run, dict[str, int]]:
    home = work / "embedded"
    for name in ("domains", "dagster", "registry", "logs"):
        shutil.rmtree(home / name, ignore_errors=True)
    env = dict(os.environ, DAGMESH_HOME=str(home))
    for name in ("DAGSTER_HOME", "DAGMESH_PROFILE", "DAGMESH_PROJECT", "DAGMESH_DBT_TARGET"):
        env.pop(name, None)
    register(env, PROJECT, work / "embedded-register.log")
    log = work / "embedded.log"
    run = timed("embedded", [dagmesh_command(), "materialize", "--all"], env, PROJECT, log, {})
    if run.returncode:
        fail("embedded materialize --all", run, log)
    return run, local_counts(home)


def run_production(work: Path, dbt_target: str) -> tuple[Run, dict[str, int], list[tuple]]:
    home = work / "production"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    (home / "landing").symlink_to(work / "embedded" / "landing")
    with contextlib.ExitStack() as servers:
        instance_pg = servers.enter_context(postgres_server("dagster"))
        s3 = servers.enter_context(s3_server(DOMAINS))
        # The warehouse only when dbt runs there.
        warehouse = (
            servers.enter_context(postgres_server("warehouse"))
            if dbt_target == "postgres"
            else None
        )
        project = make_project(work / "project", s3, dbt_target)
        env = dict(os.environ)
        for name in ("DAGSTER_HOME", "DAGMESH_DBT_TARGET"):
            env.pop(name, None)
        env.update(
            DAGMESH_PROJECT=str(project),
            DAGMESH_HOME=str(home),
            DAGMESH_PROFILE=PROFILE_NAME,
            **instance_pg.env(),
            **s3.env(),
        )
        if warehouse:
            env.update(warehouse.warehouse_env(DBT_DOMAINS))
            grants(env, project, work / "production-grants.log")
        register(env, project, work / "production-register.log")
        with open(work / "daemon.log", "w") as out:
            daemon = subprocess.Popen(
                [dagmesh_command(), "daemon"],
                env=env,
                cwd=project,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            started = time.perf_counter()
            wait_until_ready(
                lambda: (
                    ("QUEUED_RUN_COORDINATOR",)
                    in instance_pg.query("SELECT daemon_type FROM daemon_heartbeats")
                ),
                180,
                "the daemon's queue heartbeat",
            )
            print(f"daemon ready after {time.perf_counter() - started:.1f}s (not timed)")
            others = {
                "daemon": [daemon.pid],
                "postgres (instance)": [postmaster_pid(instance_pg)],
                "seaweedfs": [weed_pid(s3)],
            }
            if warehouse:
                others["postgres (warehouse)"] = [postmaster_pid(warehouse)]
            log = work / "production.log"
            command = [dagmesh_command(), "materialize", "--all"]
            run = timed("production", command, env, project, log, others)
            if run.returncode:
                fail("production materialize --all", run, log)
            counts = s3_counts(s3)
            # Products a profile keeps on the local disk (if any) count too.
            counts.update({k: v for k, v in local_counts(home).items() if k not in counts})
            runs = instance_runs(instance_pg)
        finally:
            stop(daemon)
    return run, counts, runs


def report(
    runs: list[Run], counts: dict[str, dict[str, int]], prod_runs, dbt_target, expected: set[str]
) -> bool:
    print()
    print(
        f"{'profile':<12}{'wall s':>9}{'mesh RSS MiB':>14}{'all RSS MiB':>13}"
        f"{'procs':>7}{'load':>7}"
    )
    for run in runs:
        print(
            f"{run.name:<12}{run.wall:>9.1f}{mib(run.peak_mesh):>14}{mib(run.peak_total):>13}"
            f"{run.peak_procs:>7}{run.load:>7.2f}"
        )
    print(
        "(peak RSS summed over processes, sampled every 50 ms. mesh: the materialize "
        "command's tree, every other process with this DAGMESH_HOME (code servers, run "
        "workers: Dagster reparents them to init) and the daemon's tree; all: plus the "
        "servers (PostgreSQL, SeaweedFS). load: 1-minute load average at the start)"
    )
    for run in runs:
        shares = ", ".join(f"{name} {mib(rss)}" for name, rss in run.peak.items())
        print(f"{run.name}: peak RSS per group (MiB, each its own peak): {shares}")
    if len(runs) == 2:
        a, b = runs
        print(
            f"ratio production/embedded: wall {b.wall / a.wall:.2f}x, peak RSS (mesh) "
            f"{b.peak_mesh / a.peak_mesh:.2f}x, peak RSS (all) "
            f"{b.peak_total / a.peak_total:.2f}x"
        )
    print(f"production dbt target: {dbt_target}")
    if prod_runs is not None:
        by_status: dict[str, int] = {}
        outside = 0
        for status, _location, tag in prod_runs:
            by_status[status] = by_status.get(status, 0) + 1
            outside += tag is None
        print(
            f"production instance: {len(prod_runs)} runs {by_status}; "
            f"{outside} not tagged dagmesh/materialization (the mesh run itself, sensors)"
        )
    print()
    names = list(counts)
    refs = sorted(set().union(expected, *counts.values()))
    print(f"{'product':<34}" + "".join(f"{n:>14}" for n in names))
    same = True
    for ref in refs:
        values = [counts[n].get(ref) for n in names]
        same &= len(set(values)) == 1 and None not in values
        cells = "".join(f"{v:>14,}" if v is not None else f"{'missing':>14}" for v in values)
        print(f"{ref:<34}{cells}{'' if len(set(values)) == 1 else '   DIFFERS'}")
    print(f"row counts {'match' if same else 'DO NOT match'} ({len(refs)} products)")
    return same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=parse_scale, default="1M", help="orders: 10000, 1M, 10M")
    parser.add_argument("--workdir", type=Path, default=None, help="kept; landing reused")
    parser.add_argument(
        "--dbt-target",
        choices=["postgres", "embedded"],
        default="embedded",
        help="dbt target of the production profile (default embedded, i.e. DuckDB; "
        "postgres: a second PostgreSQL cluster as the warehouse)",
    )
    parser.add_argument("--skip-embedded", action="store_true")
    args = parser.parse_args()
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="dagmesh-profiles-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    print(f"profiles bench: {args.scale:,} orders, work folder {work} (kept)")
    generate(work / "embedded", args.scale, work)
    runs, counts, prod_runs = [], {}, None
    if not args.skip_embedded:
        run, counts["embedded"] = run_embedded(work)
        print(f"embedded: {run.wall:.1f}s, peak RSS {mib(run.peak_mesh)} MiB")
        runs.append(run)
    run, counts["production"], prod_runs = run_production(work, args.dbt_target)
    print(f"production: {run.wall:.1f}s, peak RSS {mib(run.peak_mesh)} MiB")
    runs.append(run)
    expected = registered_products(work / "production")
    ok = report(runs, counts, prod_runs, args.dbt_target, expected)
    if not ok or any(r.returncode for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()

"""Benchmark: how dagmesh's fixed costs grow with the size of the mesh.

Writes a synthetic mesh of ``--domains N`` domains with ``--products P`` tiny
SQL products each (products chain inside a domain; every domain after the
first consumes one or two products of the one or two domains before it), its
contracts (``dagmesh contracts sync`` plus a latency SLA, so ``dagmesh lint``
passes), and a "bare Dagster" twin: the same N code locations, asset keys and
dependencies as plain ``@dg.asset`` functions running ``SELECT 1`` in DuckDB.

Then it measures, median of ``--repeat`` runs, each in a fresh subprocess:

- **location load**: importing one mid-mesh domain's definitions and making
  Dagster resolve them (``Definitions.validate_loadable``) and snapshot them
  (``RepositorySnap.from_def``, what a code server serializes);
- **run worker start**: ``RUN_STARTING`` → ``RUN_START`` of a one-product run
  in the Dagster instance (the run worker process importing the location);
- ``dagmesh register``, ``dagmesh lint`` and ``dagmesh catalog --json``;
- ``dagmesh materialize --all`` against the bare twin driven by the same
  orchestration (``dagmesh.orchestration.runner.materialize``);
- the summed RSS of ``dagster dev`` serving every location.

Run on demand, never in CI::

    .venv/bin/python bench/bench_scale.py --domains 5 --products 50 --repeat 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml

BENCH = Path(__file__).resolve().parent
MIB = 1024 * 1024
COMMAND_TIMEOUT = 3600.0
DEV_TIMEOUT = 15 * 60.0
DEV_SETTLE = 5.0
LINGER_TIMEOUT = 120.0
CHAIN = 10  # p000..p009 chain, p010 starts a new chain, ...

# What a code server does with a location, timed in a fresh interpreter:
# import dagster, import the location's module (the domain's code and, for
# dagmesh, the platform's load-time checks), resolve the definitions into a
# repository and validate it, then build the snapshot a code server sends.
LOAD_SCRIPT = """
import importlib, json, sys, time
t0 = time.perf_counter()
import dagster as dg
from dagster._core.remote_representation.external_data import RepositorySnap
t1 = time.perf_counter()
module = importlib.import_module(sys.argv[1])
t2 = time.perf_counter()
dg.Definitions.validate_loadable(module.defs)
repo = module.defs.get_repository_def()
t3 = time.perf_counter()
snap = RepositorySnap.from_def(repo)
t4 = time.perf_counter()
print(json.dumps({
    "import_dagster": t1 - t0, "import_location": t2 - t1, "resolve": t3 - t2,
    "snapshot": t4 - t3, "total": t4 - t0, "assets": len(snap.asset_nodes),
}))
"""

# The bare twin is materialized by the same orchestration as `dagmesh
# materialize` (one run per code location, launched through Dagster's GraphQL
# API once its upstream locations are done, at most one run per core), so
# the difference is what the platform's assets and code locations cost.
RUNNER_SCRIPT = """
import sys
from dagmesh.orchestration.runner import materialize
outcome = materialize(sys.argv[1:], timeout=3000)
print(f"{len(outcome.materialized)} materialized, {len(outcome.run_ids)} runs")
for failure in outcome.failures:
    print(f"FAILED {failure.product}: {failure.message}")
for location, error in outcome.load_errors.items():
    print(f"FAILED to load {location}: {error}")
sys.exit(0 if outcome.success else 1)
"""

WORKSPACE_QUERY = """
{ workspaceOrError { __typename
    ... on Workspace { locationEntries { name loadStatus
        locationOrLoadError { __typename
            ... on PythonError { message causes { message } } } } }
    ... on PythonError { message } } }
"""


# --------------------------------------------------------------------------
# The synthetic projects
# --------------------------------------------------------------------------


def dname(i: int) -> str:
    """The name of domain ``i``: ``d000``."""
    return f"d{i:03d}"


def pname(k: int) -> str:
    """The name of product ``k`` of a domain: ``p000``."""
    return f"p{k:03d}"


def mesh_plan(domains: int, products: int) -> dict[tuple[int, int], list[str]]:
    """What each product ``(domain, product)`` consumes, as ``consumes=`` names.

    Inside a domain, ``pK`` consumes ``pK-1`` except every :data:`CHAIN`-th
    product, which starts a chain; ``p000`` of every domain reads nothing (it
    is the product the run-worker measurement materializes alone). Domain
    ``i >= 1``: ``p001`` also consumes ``d(i-1)/p003`` and, from ``i >= 2``,
    ``p002`` also consumes ``d(i-2)/p004`` (clipped to the last product), so
    there are cross-domain edges and no cycle.
    """
    plan: dict[tuple[int, int], list[str]] = {}
    for i in range(domains):
        for k in range(products):
            consumes = [pname(k - 1)] if k % CHAIN else []
            if k == 1 and i >= 1:
                consumes.append(f"{dname(i - 1)}/{pname(min(3, products - 1))}")
            if k == 2 and i >= 2:
                consumes.append(f"{dname(i - 2)}/{pname(min(4, products - 1))}")
            plan[(i, k)] = consumes
    return plan


def product_sql(consumes: list[str]) -> str:
    """A one-line query over the product's inputs (each a table named by its alias)."""
    aliases = [ref.rsplit("/", 1)[-1] for ref in consumes]
    if not aliases:
        return "SELECT range::BIGINT AS id, 2::BIGINT AS v FROM range(3)"
    if len(aliases) == 1:
        return f"SELECT id, (v + 1)::BIGINT AS v FROM {aliases[0]}"
    first, second = aliases[:2]
    return (
        f"SELECT a.id, (a.v + coalesce(b.v, 0))::BIGINT AS v "
        f"FROM {first} a LEFT JOIN {second} b USING (id)"
    )


def write_mesh_project(
    project: Path, domains: int, products: int, plan: dict[tuple[int, int], list[str]]
) -> None:
    """The synthetic dagmesh project: workspace.yaml and one package per domain."""
    root = project / "domains"
    root.mkdir(parents=True)
    (root / "__init__.py").write_text('"""Synthetic domains of bench/bench_scale.py."""\n')
    for i in range(domains):
        name = dname(i)
        package = root / name
        (package / "contracts").mkdir(parents=True)
        (package / "__init__.py").write_text(f'"""Synthetic domain {name}."""\n')
        (package / "definitions.py").write_text(
            f'"""The {name} domain\'s Dagster code location."""\n\n'
            "from dagmesh.orchestration.definitions import domain_definitions\n"
            f"from domains.{name}.products import {name}\n\n"
            f"defs = domain_definitions({name})\n"
        )
        lines = [
            f'"""Synthetic domain {name}: {products} one-line SQL products."""',
            "",
            "from dagmesh import Column, Domain",
            "",
            f'{name} = Domain("{name}", owner="team{i:03d}", '
            f'description="Synthetic domain {name} of the scale benchmark.")',
        ]
        for k in range(products):
            consumes = plan[(i, k)]
            consumes_line = f"    consumes={consumes!r},\n" if consumes else ""
            lines.append(
                f"\n{name}.sql_product(\n"
                f'    "{pname(k)}",\n'
                f'    description="Synthetic product {name}/{pname(k)}.",\n'
                f"{consumes_line}"
                "    columns=[\n"
                '        Column("id", "BIGINT", "Row identifier.", nullable=False),\n'
                '        Column("v", "BIGINT", "A value."),\n'
                "    ],\n"
                '    primary_key="id",\n'
                '    classification="internal",\n'
                f"    sql={product_sql(consumes)!r},\n"
                ")"
            )
        (package / "products.py").write_text("\n".join(lines) + "\n")
    write_workspace(project, domains)


def write_bare_project(
    bare: Path, domains: int, products: int, plan: dict[tuple[int, int], list[str]]
) -> None:
    """The bare Dagster twin: same locations, asset keys and dependencies, each
    asset running ``SELECT 1`` in DuckDB and returning None. Its locations use
    the in-process executor, as dagmesh's do, so steps cost the same launch."""
    root = bare / "domains"
    root.mkdir(parents=True)
    (root / "__init__.py").write_text('"""Bare Dagster twin of the synthetic domains."""\n')
    for i in range(domains):
        name = dname(i)
        package = root / name
        package.mkdir()
        (package / "__init__.py").write_text(f'"""Bare Dagster twin of {name}."""\n')
        lines = [
            f'"""Bare Dagster twin of {name}: {products} trivial assets."""',
            "",
            "import dagster as dg",
            "import duckdb",
            "",
            "",
            "def _trivial() -> None:",
            '    duckdb.sql("SELECT 1").fetchall()',
        ]
        functions = []
        for k in range(products):
            deps = []
            for ref in plan[(i, k)]:
                domain, product = ref.split("/") if "/" in ref else (name, ref)
                deps.append(f"dg.AssetKey([{domain!r}, {product!r}])")
            deps_arg = f", deps=[{', '.join(deps)}]" if deps else ""
            function = f"{name}_{pname(k)}"
            functions.append(function)
            lines += [
                "",
                "",
                f'@dg.asset(key=["{name}", "{pname(k)}"], group_name="{name}"{deps_arg})',
                f"def {function}() -> None:",
                f'    """Trivial asset {name}/{pname(k)}."""',
                "    _trivial()",
            ]
        lines += [
            "",
            "",
            "defs = dg.Definitions(",
            f"    assets=[{', '.join(functions)}],",
            "    executor=dg.in_process_executor,",
            ")",
        ]
        (package / "definitions.py").write_text("\n".join(lines) + "\n")
    write_workspace(bare, domains)


def write_workspace(project: Path, domains: int) -> None:
    """workspace.yaml: one python_module location per domain, importing from ``project``."""
    entries = [
        {
            "python_module": {
                "module_name": f"domains.{dname(i)}.definitions",
                "location_name": dname(i),
                "working_directory": str(project),
            }
        }
        for i in range(domains)
    ]
    (project / "workspace.yaml").write_text(yaml.safe_dump({"load_from": entries}, sort_keys=False))


def add_latency_sla(project: Path) -> int:
    """Give every generated contract the owner's part governance asks of a
    public product: a latency SLA (the primary key is its blocking check).
    Returns how many contract files were written."""
    sla = [{"property": "latency", "value": 1, "unit": "d", "description": "Daily."}]
    written = 0
    for path in sorted(project.glob("domains/*/contracts/*.odcs.yaml")):
        text = path.read_text()
        header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
        document = yaml.safe_load(text)
        document["slaProperties"] = sla
        body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
        path.write_text(header + body)
        written += 1
    return written


# --------------------------------------------------------------------------
# Running things
# --------------------------------------------------------------------------


@dataclass
class Ran:
    """One finished subprocess."""

    returncode: int
    wall: float
    log: Path

    def output(self, lines: int = 40) -> str:
        """The last ``lines`` lines of its output."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Setting:
    """Where one side (dagmesh or bare) lives, and its subprocess environment."""

    name: str
    project: Path
    home: Path

    @property
    def dagster_home(self) -> Path:
        """Its Dagster instance."""
        return self.home / "dagster"

    def env(self) -> dict[str, str]:
        """The environment of its subprocesses."""
        env = dict(os.environ)
        env.update(
            DAGMESH_PROJECT=str(self.project),
            DAGMESH_HOME=str(self.home),
            DAGSTER_HOME=str(self.dagster_home),
            DBT_SEND_ANONYMOUS_USAGE_STATS="false",
            DO_NOT_TRACK="1",
        )
        return env


def script(name: str) -> str:
    """A console script next to this interpreter (``dagmesh``, ``dagster``)."""
    path = Path(sys.executable).with_name(name)
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        sys.exit(f"no {name} console script next to {sys.executable} or on PATH")
    return found


def session_members(sid: int) -> list[psutil.Process]:
    """Live processes of the session ``sid`` (a command we started and what it spawned)."""
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def run(
    command: list[str],
    setting: Setting,
    log: Path,
    timeout: float = COMMAND_TIMEOUT,
    stdout: Path | None = None,
) -> Ran:
    """Run ``command`` in ``setting``'s project folder (output to ``log``, or
    only its stderr when ``stdout`` is given), in its own session; return its
    exit code and wall time. What it spawned and left behind (code servers
    shutting down) is waited for, untimed, so it does not compete with the
    next measurement."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out, open(stdout or os.devnull, "w") as data:
        start = time.perf_counter()
        proc = subprocess.Popen(
            command,
            cwd=setting.project,
            env=setting.env(),
            stdout=data if stdout else out,
            stderr=out,
            start_new_session=True,
        )
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_session(proc)
            returncode = -signal.SIGKILL
        except BaseException:  # Ctrl-C: do not leave code servers behind
            stop_session(proc)
            raise
        wall = time.perf_counter() - start
    leftovers = session_members(proc.pid)
    _, alive = psutil.wait_procs(leftovers, timeout=LINGER_TIMEOUT)
    for proc_left in alive:
        with contextlib.suppress(psutil.Error):
            proc_left.kill()
    return Ran(returncode, wall, log)


def stop_session(proc: subprocess.Popen) -> None:
    """SIGTERM the session (process group) ``proc`` leads, then SIGKILL what is left."""
    members = session_members(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    _, alive = psutil.wait_procs(members, timeout=30)
    for member in alive:
        with contextlib.suppress(psutil.Error):
            member.kill()


class MeasureError(RuntimeError):
    """A measured command failed; the message holds its output."""


def checked(ran: Ran, what: str) -> Ran:
    """``ran`` if it succeeded, else a MeasureError with the tail of its output."""
    if ran.returncode != 0:
        raise MeasureError(f"{what} exited {ran.returncode} ({ran.log}):\n{ran.output()}")
    return ran


# --------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the result table: values per side, or the error that stopped it."""

    label: str
    unit: str
    what: str
    values: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)

    def median(self, side: str) -> float | None:
        """Median of ``side``'s values (None if none)."""
        values = self.values.get(side)
        return statistics.median(values) if values else None


def attempt(row: Row, side: str, measure: Callable[[], float]) -> None:
    """Append ``measure()`` to ``row``'s values for ``side``, or record why it failed."""
    if side in row.errors:
        return
    try:
        row.values.setdefault(side, []).append(measure())
    except MeasureError as error:
        row.errors[side] = str(error)
        print(f"FAILED: {row.label} ({side}): {error}", file=sys.stderr)


def last_run(dagster_home: Path) -> dict[str, float | str]:
    """Launch→start (``RUN_STARTING`` → ``RUN_START``) and start→end of the
    newest run of an instance, and its status."""
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    with DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home))) as instance:
        runs = instance.get_runs(limit=1)
        if not runs:
            raise MeasureError(f"no run in the instance {dagster_home}")
        run_ = runs[0]
        stats = instance.get_run_stats(run_.run_id)
        if not (stats.launch_time and stats.start_time):
            raise MeasureError(f"run {run_.run_id} has no RUN_STARTING/RUN_START ({run_.status})")
        return {
            "run_id": run_.run_id,
            "status": run_.status.value,
            "launch_to_start": stats.start_time - stats.launch_time,
            "run_time": (stats.end_time or stats.start_time) - stats.start_time,
        }


def instance_totals(dagster_home: Path) -> dict[str, float]:
    """Over every run of an instance: runs, summed launch→start, run time and step time."""
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    totals = {"runs": 0.0, "launch_to_start": 0.0, "run_time": 0.0, "step_time": 0.0}
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home))) as instance:
        for run_ in instance.get_runs():
            stats = instance.get_run_stats(run_.run_id)
            totals["runs"] += 1
            if stats.launch_time and stats.start_time:
                totals["launch_to_start"] += stats.start_time - stats.launch_time
            if stats.start_time and stats.end_time:
                totals["run_time"] += stats.end_time - stats.start_time
            for step in instance.get_run_step_stats(run_.run_id):
                if step.start_time and step.end_time:
                    totals["step_time"] += step.end_time - step.start_time
    return totals


def location_load(setting: Setting, module: str, log: Path) -> dict[str, float]:
    """Load one code location in a fresh interpreter: wall time of the
    subprocess and the in-process phases printed by :data:`LOAD_SCRIPT`."""
    ran = checked(run([sys.executable, "-c", LOAD_SCRIPT, module], setting, log), "location load")
    last = ran.log.read_text().strip().splitlines()[-1]
    try:
        phases = json.loads(last)
    except json.JSONDecodeError:
        raise MeasureError(f"location load printed no timings ({log}):\n{ran.output()}") from None
    return {"wall": ran.wall, **phases}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def workspace_status(port: int) -> dict[str, str] | None:
    """Each location's load status from the webserver's GraphQL (``LOADED``,
    or ``ERROR: ...`` for a location that loaded with an error), or None
    while the webserver does not answer."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": WORKSPACE_QUERY}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.loads(response.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
        return None
    workspace = (body.get("data") or {}).get("workspaceOrError") or {}
    if workspace.get("__typename") != "Workspace":
        return None
    status = {}
    for entry in workspace["locationEntries"]:
        loaded = entry.get("locationOrLoadError") or {}
        if loaded.get("__typename") == "PythonError":
            # The innermost cause is the location's own exception.
            error = (loaded.get("causes") or [loaded])[-1]["message"].strip()
            status[entry["name"]] = "ERROR: " + (error.splitlines() or ["?"])[0]
        else:
            status[entry["name"]] = entry["loadStatus"]
    return status


def tree_rss(root: psutil.Process) -> tuple[int, int]:
    """Summed RSS of a process and all its descendants, and how many there are."""
    try:
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0
    total = count = 0
    for proc in tree:
        try:
            total += proc.memory_info().rss
            count += 1
        except psutil.Error:
            continue
    return total, count


def serve(setting: Setting, locations: int, log: Path) -> dict[str, float]:
    """Start ``dagster dev`` on setting's workspace (127.0.0.1, a free port),
    wait until every location is LOADED, and measure the summed RSS of its
    process tree (peak while starting, and DEV_SETTLE seconds after all
    loaded); then stop it."""
    port = free_port()
    command = [
        script("dagster"),
        "dev",
        "-w",
        str(setting.project / "workspace.yaml"),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    with open(log, "w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            command,
            cwd=setting.project,
            env=setting.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    root = psutil.Process(proc.pid)
    peak = 0
    try:
        deadline = time.monotonic() + DEV_TIMEOUT
        status: dict[str, str] | None = None
        while time.monotonic() < deadline:
            peak = max(peak, tree_rss(root)[0])
            if proc.poll() is not None:
                raise MeasureError(
                    f"dagster dev exited {proc.returncode} ({log}):\n"
                    + "\n".join(log.read_text(errors="replace").splitlines()[-40:])
                )
            status = workspace_status(port)
            if status is not None and len(status) == locations:
                failed = {k: v for k, v in status.items() if v.startswith("ERROR")}
                if failed:
                    raise MeasureError(f"dagster dev: locations failed to load: {failed}")
                if all(v == "LOADED" for v in status.values()):
                    break
            time.sleep(1.0)
        else:
            raise MeasureError(f"dagster dev: not all loaded after {DEV_TIMEOUT:.0f}s: {status}")
        loaded = time.perf_counter() - start
        settle_end = time.monotonic() + DEV_SETTLE
        while time.monotonic() < settle_end:
            peak = max(peak, tree_rss(root)[0])
            time.sleep(0.5)
        rss, procs = tree_rss(root)
        return {"loaded_s": loaded, "rss": rss, "peak_rss": max(peak, rss), "procs": procs}
    finally:
        stop_session(proc)


# --------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------


def setup(
    work: Path, domains: int, products: int
) -> tuple[Setting, Setting, dict[tuple[int, int], list[str]]]:
    """Write both projects, the contracts and the instances' homes; check lint."""
    for name in ("project", "bare", "home", "bare_home", "logs"):
        shutil.rmtree(work / name, ignore_errors=True)
    mesh = Setting("dagmesh", work / "project", work / "home")
    bare = Setting("bare", work / "bare", work / "bare_home")
    plan = mesh_plan(domains, products)
    write_mesh_project(mesh.project, domains, products, plan)
    write_bare_project(bare.project, domains, products, plan)
    mesh.home.mkdir()
    bare.home.mkdir()
    logs = work / "logs"
    dagmesh = script("dagmesh")
    ran = run([dagmesh, "contracts", "sync"], mesh, logs / "contracts-sync.log")
    if ran.returncode:
        sys.exit(f"dagmesh contracts sync failed ({ran.log}):\n{ran.output()}")
    print(f"contracts: {add_latency_sla(mesh.project)} files synced, latency SLA added")
    # Both instances get the dagster.yaml dagmesh writes (same run coordinator
    # and pools), so both sides run under the same instance settings.
    for setting in (mesh, bare):
        ensure = (
            "from dagmesh.orchestration.instance import ensure_dagster_home; ensure_dagster_home()"
        )
        ran = run([sys.executable, "-c", ensure], setting, logs / f"home-{setting.name}.log")
        if ran.returncode:
            sys.exit(f"could not create {setting.dagster_home} ({ran.log}):\n{ran.output()}")
    return mesh, bare, plan


def bench(args: argparse.Namespace, work: Path) -> dict[str, Row]:
    """Run every measurement; return the rows of the table."""
    n, p, k = args.domains, args.products, args.repeat
    mesh, bare, _ = setup(work, n, p)
    logs = work / "logs"
    dagmesh = script("dagmesh")
    mid = dname(n // 2)
    rows = {
        "load": Row(
            "location load",
            "s",
            f"{mid} in a fresh interpreter: import + resolve + snapshot, in-process",
        ),
        "load_wall": Row(
            "location load (process wall)", "s", "the same, interpreter start included"
        ),
        "worker": Row(
            "run worker start",
            "s",
            f"RUN_STARTING→RUN_START of a run of {mid}/p000 (worker imports the location)",
        ),
        "one": Row("materialize 1 product (wall)", "s", f"{mid}/p000 alone, CLI/runner wall"),
        "register": Row("dagmesh register", "s", "all domains, once"),
        "lint": Row("dagmesh lint", "s", f"all {n * p} products"),
        "catalog": Row("dagmesh catalog --json", "s", f"all {n * p} products"),
        "all": Row("materialize --all", "s", f"{n * p} products, tiny data, clean instance"),
        "per_product": Row("  per product", "s", "materialize --all wall / products"),
        "dev_rss": Row("dagster dev RSS", "MiB", f"process tree, {n} locations LOADED + 5 s"),
        "dev_peak": Row("dagster dev peak RSS", "MiB", "process tree, while starting"),
        "dev_loaded": Row("dagster dev until loaded", "s", "start → every location LOADED"),
    }

    print("register: dagmesh register (all domains)")
    attempt(
        rows["register"],
        "dagmesh",
        lambda: checked(run([dagmesh, "register"], mesh, logs / "register.log"), "register").wall,
    )

    ran = run([dagmesh, "lint"], mesh, logs / "lint-check.log")
    if ran.returncode:
        print(ran.output(200), file=sys.stderr)
        sys.exit(f"dagmesh lint fails on the synthetic mesh (exit {ran.returncode}); see {ran.log}")
    print("lint: the synthetic mesh passes dagmesh lint")

    module = f"domains.{mid}.definitions"
    for i in range(1, k + 1):
        for setting in (mesh, bare):
            print(f"location load #{i} ({setting.name}, {mid})")

            def load(setting: Setting = setting, i: int = i) -> float:
                phases = location_load(setting, module, logs / f"load-{setting.name}-{i}.log")
                rows["load_wall"].values.setdefault(setting.name, []).append(phases["wall"])
                rows["load"].extra.setdefault(setting.name, []).append(phases)
                return phases["total"]

            attempt(rows["load"], setting.name, load)

    one = f"{mid}/{pname(0)}"
    commands = {
        "dagmesh": [dagmesh, "materialize", one],
        "bare": [sys.executable, "-c", RUNNER_SCRIPT, one],
    }
    for i in range(1, k + 1):
        for setting in (mesh, bare):
            print(f"run worker start #{i} ({setting.name}, {one})")
            log = logs / f"one-{setting.name}-{i}.log"

            def one_run(setting: Setting = setting, log: Path = log) -> float:
                ran = checked(run(commands[setting.name], setting, log), f"materialize {one}")
                rows["one"].values.setdefault(setting.name, []).append(ran.wall)
                stats = last_run(setting.dagster_home)
                rows["worker"].extra.setdefault(setting.name, []).append(stats)
                return float(stats["launch_to_start"])

            attempt(rows["worker"], setting.name, one_run)

    for i in range(1, k + 1):
        print(f"lint #{i}")
        attempt(
            rows["lint"],
            "dagmesh",
            lambda i=i: checked(run([dagmesh, "lint"], mesh, logs / f"lint-{i}.log"), "lint").wall,
        )

    if not args.skip_materialize:
        commands = {
            "dagmesh": [dagmesh, "materialize", "--all"],
            "bare": [sys.executable, "-c", RUNNER_SCRIPT],
        }
        for i in range(1, k + 1):
            for setting in (mesh, bare):
                print(f"materialize --all #{i} ({setting.name}, {n * p} products)")
                # A clean instance and no published versions (the registry stays).
                shutil.rmtree(setting.home / "domains", ignore_errors=True)
                shutil.rmtree(setting.dagster_home, ignore_errors=True)
                log = logs / f"all-{setting.name}-{i}.log"

                def materialize_all(setting: Setting = setting, log: Path = log) -> float:
                    ran = checked(run(commands[setting.name], setting, log), "materialize --all")
                    totals = instance_totals(setting.dagster_home)
                    rows["all"].extra.setdefault(setting.name, []).append(totals)
                    rows["per_product"].values.setdefault(setting.name, []).append(
                        ran.wall / (n * p)
                    )
                    return ran.wall

                attempt(rows["all"], setting.name, materialize_all)

    for i in range(1, k + 1):
        print(f"catalog --json #{i}")
        log = logs / f"catalog-{i}.log"

        def catalog(log: Path = log, i: int = i) -> float:
            data = logs / f"catalog-{i}.json"
            command = [dagmesh, "catalog", "--json"]
            ran = checked(run(command, mesh, log, stdout=data), "catalog --json")
            try:
                products = len(json.loads(data.read_text())["products"])
            except (ValueError, KeyError, TypeError) as error:
                raise MeasureError(f"catalog --json printed no catalog ({data}): {error}") from None
            if products != n * p:
                raise MeasureError(f"catalog --json lists {products} products, not {n * p}")
            return ran.wall

        attempt(rows["catalog"], "dagmesh", catalog)

    for setting in (mesh, bare):
        print(f"dagster dev ({setting.name}, {n} locations)")
        log = logs / f"dev-{setting.name}.log"

        def dev(setting: Setting = setting, log: Path = log) -> float:
            served = serve(setting, n, log)
            rows["dev_peak"].values.setdefault(setting.name, []).append(served["peak_rss"] / MIB)
            rows["dev_loaded"].values.setdefault(setting.name, []).append(served["loaded_s"])
            rows["dev_rss"].extra[setting.name] = {"procs": served["procs"]}
            print(
                f"  {setting.name}: {served['rss'] / MIB:,.0f} MiB in {served['procs']} "
                f"processes, all loaded after {served['loaded_s']:.1f}s"
            )
            return served["rss"] / MIB

        attempt(rows["dev_rss"], setting.name, dev)
    return rows


def fmt(value: float | None, unit: str) -> str:
    """A table cell."""
    if value is None:
        return "-"
    if unit == "MiB":
        return f"{value:,.0f} MiB"
    return f"{value:.3f} s" if value < 1 else f"{value:.2f} s"


def report(rows: dict[str, Row], args: argparse.Namespace, edges: int) -> None:
    """Print the table (rich) of medians and dagmesh/bare ratios."""
    from rich.console import Console
    from rich.table import Table

    n, p = args.domains, args.products
    table = Table(
        title=f"dagmesh at scale: {n} domains × {p} products = {n * p} products, "
        f"{edges} cross-domain edges (median of {args.repeat})"
    )
    for column in ("measure", "dagmesh", "bare Dagster", "dagmesh/bare", "what"):
        table.add_column(column, justify="right" if column != "what" else "left")
    for row in rows.values():
        if not row.values and not row.errors:
            continue
        cells = []
        for side in ("dagmesh", "bare"):
            failed = side in row.errors
            cells.append("[red]failed[/]" if failed else fmt(row.median(side), row.unit))
        a, b = row.median("dagmesh"), row.median("bare")
        ratio = f"{a / b:.2f}x" if a is not None and b else "-"
        table.add_row(row.label, *cells, ratio, row.what)
    Console(width=max(160, shutil.get_terminal_size().columns)).print(table)

    load = rows["load"].extra
    for side, phases in load.items():
        median = {
            key: statistics.median(ph[key] for ph in phases)
            for key in ("import_dagster", "import_location", "resolve", "snapshot")
        }
        print(
            f"location load phases ({side}, median): "
            + ", ".join(f"{key} {value:.2f}s" for key, value in median.items())
        )
    for side, totals in rows["all"].extra.items():
        last = totals[-1]
        print(
            f"materialize --all ({side}, last run): {last['runs']:.0f} Dagster runs; summed: "
            f"launch→start {last['launch_to_start']:.1f}s, run time {last['run_time']:.1f}s, "
            f"steps {last['step_time']:.1f}s"
        )
    for row in rows.values():
        for side, error in row.errors.items():
            first = error.splitlines()[0] if error else ""
            print(f"FAILED {row.label} ({side}): {first}")


def main() -> None:
    """Parse the options, run the benchmark, print the table (and JSON)."""
    parser = argparse.ArgumentParser(
        description="How dagmesh's fixed costs grow with the mesh: a synthetic mesh of N "
        "domains × P products against the same graph as bare Dagster assets."
    )
    parser.add_argument("--domains", type=int, default=5, help="domains (code locations)")
    parser.add_argument("--products", type=int, default=50, help="SQL products per domain")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; medians reported")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="work folder (default: a new temp folder under /tmp, deleted at the end "
        "unless --keep or a measurement fails); its project/, bare/, home/, bare_home/ "
        "and logs/ are recreated",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    parser.add_argument(
        "--skip-materialize", action="store_true", help="skip the materialize --all runs"
    )
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args()
    if args.domains < 1 or args.products < 1 or args.repeat < 1:
        parser.error("--domains, --products and --repeat are at least 1")

    temporary = args.workdir is None
    work = Path(tempfile.mkdtemp(prefix="dagmesh-scale-", dir="/tmp")) if temporary else None
    work = (work or args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    edges = sum(
        1
        for consumes in mesh_plan(args.domains, args.products).values()
        for ref in consumes
        if "/" in ref
    )
    print(
        f"dagmesh scale bench: {args.domains} domains × {args.products} products, "
        f"{edges} cross-domain edges, {args.repeat} run(s) each; work folder {work}; "
        f"{os.cpu_count()} cores"
    )
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load_start = os.getloadavg()[0]
    rows = bench(args, work)
    report(rows, args, edges)
    load_end = os.getloadavg()[0]
    print(
        f"1-min load average: {load_start:.2f} at start, {load_end:.2f} at end (the numbers "
        "mean something only on an otherwise idle machine)"
    )
    failed = any(row.errors for row in rows.values())
    if args.json:
        print(
            json.dumps(
                {
                    "date": started,
                    "cores": os.cpu_count(),
                    "domains": args.domains,
                    "products": args.products,
                    "cross_domain_edges": edges,
                    "repeat": args.repeat,
                    "workdir": str(work),
                    "load_start": load_start,
                    "load_end": load_end,
                    "rows": {
                        key: {
                            "label": row.label,
                            "unit": row.unit,
                            "values": row.values,
                            "median": {side: row.median(side) for side in row.values},
                            "errors": row.errors,
                            "extra": row.extra,
                        }
                        for key, row in rows.items()
                    },
                },
                indent=2,
                default=str,
            )
        )
    if temporary and not args.keep and not failed:
        shutil.rmtree(work, ignore_errors=True)
    elif temporary:
        print(f"(work folder kept: {work})", file=sys.stderr)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()

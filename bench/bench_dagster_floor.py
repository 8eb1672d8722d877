"""Benchmark: the platform's own overhead against Dagster's floor.

``dagmesh materialize --all`` of the sample mesh against its trivial twin
(``bench/dagster_twin.py``): the same products as assets with the same keys
and dependencies, one code location per domain, each asset doing nothing,
materialized through Dagster alone (``dagster asset materialize`` per domain
and dependency wave, at most as many at once as dagmesh runs). What the twin
costs, no platform on Dagster can avoid; what dagmesh costs beyond it is its
own (code servers, run workers, governance, the work itself at this scale).

The landing files are generated once (not timed); every repetition starts
from a clean state (no published products, no runs in either instance), the
two alternate, and the medians and their ratio are printed, with the
1-minute load average at the start of each run. Run on demand, never in CI::

    .venv/bin/python bench/bench_dagster_floor.py --repeat 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from bench_mesh import (  # noqa: E402
    Measurement,
    dagmesh_command,
    fail,
    generate,
    measure,
    mesh_env,
    mib,
    parse_scale,
    register,
    reset_mesh,
)
from dagster_twin import write_twin  # noqa: E402

TARGET = 1.5
TWIN_SCRIPT = BENCH / "dagster_twin.py"


def mesh_graph(mesh: Path) -> dict[str, list[str]]:
    """Every product of the repository's mesh (dbt models included) → the
    products it reads, as dagmesh itself sees them."""
    os.environ["DAGMESH_HOME"] = str(mesh)
    from dagmesh.engine.specs import domain_specs
    from dagmesh.engine.workspace import load_mesh

    graph = {}
    for domain in load_mesh().values():
        for spec in domain_specs(domain).values():
            graph[spec.ref] = sorted(spec.consumes)
    return graph


def twin_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGMESH_")}
    env["DAGSTER_HOME"] = str(home)
    return env


def reset_twin(home: Path) -> None:
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    # The instance's SQLite storage created once, not timed: the first runs
    # start at once, and several processes creating it together race on its
    # schema ("alembic_version has more than one head").
    create = "from dagster import DagsterInstance; DagsterInstance.get().dispose()"
    subprocess.run([sys.executable, "-c", create], env=twin_env(home), check=True)


def line(name: str, runs: list[Measurement]) -> str:
    walls = [m.wall for m in runs]
    loads = ", ".join(f"{m.load:.2f}" for m in runs)
    rss = mib(statistics.median(m.peak_rss for m in runs))
    return (
        f"{name:<10}{statistics.median(walls):>10.2f}{rss:>14}"
        f"{statistics.median(m.cpu for m in runs):>10.1f}   runs: "
        + ", ".join(f"{w:.2f}" for w in walls)
        + f"; load at start: {loads}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=parse_scale, default="10000", help="orders (default 10000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; medians compared")
    parser.add_argument("--workdir", type=Path, default=None, help="kept; landing reused")
    args = parser.parse_args()
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="dagmesh-floor-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    mesh, twin, twin_home = work / "mesh", work / "twin", work / "twin-home"
    print(f"floor bench: {args.scale:,} orders, {args.repeat} run(s) each, work folder {work}")
    generate(mesh, args.scale, work)
    register(mesh, work / "register.log")
    graph = mesh_graph(mesh)
    write_twin(graph, twin)
    print(f"twin: {len(graph)} trivial assets in {len({r.split('/')[0] for r in graph})} locations")
    max_runs = os.environ.get("DAGMESH_MAX_RUNS") or str(os.cpu_count() or 1)
    runs: dict[str, list[Measurement]] = {"dagmesh": [], "twin": []}
    for i in range(1, args.repeat + 1):
        reset_mesh(mesh)
        log = work / f"dagmesh-{i}.log"
        measured = measure([dagmesh_command(), "materialize", "--all"], mesh_env(mesh), log)
        if measured.returncode:
            fail("dagmesh materialize --all", measured, log)
            sys.exit(1)
        runs["dagmesh"].append(measured)
        print(f"dagmesh #{i}: {measured.wall:.2f}s (load {measured.load:.2f})")
        reset_twin(twin_home)
        log = work / f"twin-{i}.log"
        command = [sys.executable, str(TWIN_SCRIPT), str(twin), "--max-runs", max_runs]
        measured = measure(command, twin_env(twin_home), log)
        if measured.returncode:
            fail("the Dagster twin", measured, log)
            sys.exit(1)
        runs["twin"].append(measured)
        print(f"twin    #{i}: {measured.wall:.2f}s (load {measured.load:.2f})")
    print(f"\n{'':<10}{'wall s':>10}{'peak RSS MiB':>14}{'CPU s':>10}")
    for name, measured in runs.items():
        print(line(name, measured))
    ratio = statistics.median(m.wall for m in runs["dagmesh"]) / statistics.median(
        m.wall for m in runs["twin"]
    )
    verdict = "met" if ratio <= TARGET else "not met"
    print(f"ratio dagmesh/twin: wall {ratio:.2f}x (target <= {TARGET}x: {verdict})")


if __name__ == "__main__":
    main()

"""Benchmark: what a with-upstream request pays to load the workspace, every
code location against only those it reads from.

``dagmesh materialize REF --with-upstream`` (and the UI's "Materialize with
upstream across domains", the ``mesh`` job) loads the code locations before
its first run: it used to load all of them; it now loads the domains the
registry says REF reads from, transitively. This times that load (code
servers started, asset graph read, servers stopped) both ways, alternating,
``--repeat`` times, in a registered mesh (``dagmesh generate`` and ``dagmesh
register`` first, not timed), and prints the medians and their ratio with
the 1-minute load average at the start of each run. Run on demand::

    .venv/bin/python bench/bench_workspace_load.py --ref finance/weekly_delay_impact
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PROJECT = BENCH.parent


def setup(home: Path) -> None:
    """Landing files and the registry of the repository's mesh under ``home``."""
    dagmesh = str(Path(sys.executable).with_name("dagmesh"))
    for command in (["generate", "--scale", "10000"], ["register"]):
        subprocess.run([dagmesh, *command], cwd=PROJECT, check=True, capture_output=True)


def timed_load(only: set[str] | None) -> float:
    """Seconds to load the workspace (``only`` those locations) and read its asset graph."""
    from dagster import DagsterInstance

    from dagmesh.orchestration.runner import workspace_context

    with DagsterInstance.get() as instance:
        started = time.perf_counter()
        with workspace_context(instance, only) as context:
            graph = context.create_request_context().asset_graph
            assert graph.materializable_asset_keys
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ref", default="finance/weekly_delay_impact")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="dagmesh-load-"))
    os.environ["DAGMESH_HOME"] = str(home)
    os.environ.pop("DAGSTER_HOME", None)
    setup(home)
    from dagmesh.config import quiet_tools
    from dagmesh.orchestration.instance import ensure_dagster_home
    from dagmesh.orchestration.runner import locations_needed

    quiet_tools()
    ensure_dagster_home()
    only = locations_needed([args.ref], with_upstream=True)
    print(f"{args.ref} --with-upstream needs {sorted(only or [])} (work folder {home})")
    times: dict[str, list[float]] = {"all locations": [], "needed only": []}
    loads: dict[str, list[float]] = {name: [] for name in times}
    for _ in range(args.repeat):
        for name, subset in (("all locations", None), ("needed only", only)):
            loads[name].append(os.getloadavg()[0])
            times[name].append(timed_load(subset))
    for name, seconds in times.items():
        shown = ", ".join(f"{s:.2f}" for s in seconds)
        at = ", ".join(f"{v:.2f}" for v in loads[name])
        print(f"{name:<14} median {statistics.median(seconds):6.2f}s  runs: {shown}; load: {at}")
    ratio = statistics.median(times["needed only"]) / statistics.median(times["all locations"])
    print(f"ratio needed/all: {ratio:.2f}x")


if __name__ == "__main__":
    main()

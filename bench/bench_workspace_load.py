"""Benchmark: what a request pays to load the workspace before its first run.

``dagmesh materialize`` (and the UI's "Materialize with upstream across
domains", the ``mesh`` job) loads the code locations before it launches
anything. Two levers are timed here, each load being code servers started,
asset graph read, servers stopped:

- all locations, one by one: Dagster's own ``WorkspaceProcessContext``,
  which starts each code server once the previous one has loaded its code;
- all locations, together: dagmesh's :func:`~dagmesh.orchestration.code_servers.loaded_workspace`;
- needed only: together, and only the domains the registry says REF reads
  from, transitively (what ``REF --with-upstream`` loads).

They alternate, ``--repeat`` times, in a registered mesh (``dagmesh generate``
and ``dagmesh register`` first, not timed); the medians and their ratios are
printed with the 1-minute load average at the start of each run. Run on demand::

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


def timed_load(only: set[str] | None, one_by_one: bool = False) -> float:
    """Seconds to load the workspace (``only`` those locations) and read its
    asset graph; ``one_by_one``: as Dagster alone loads it."""
    from dagster import DagsterInstance
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    from dagmesh import config
    from dagmesh.orchestration.runner import workspace_context

    with DagsterInstance.get() as instance:
        started = time.perf_counter()
        if one_by_one:
            target = WorkspaceFileTarget(paths=[str(config.run_workspace_file())])
            loading = WorkspaceProcessContext(instance, target)
        else:
            loading = workspace_context(instance, only)
        with loading as context:
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
    ways = {
        "all, one by one": (None, True),
        "all, together": (None, False),
        "needed only": (only, False),
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    loads: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.repeat):
        for name, (subset, one_by_one) in ways.items():
            loads[name].append(os.getloadavg()[0])
            times[name].append(timed_load(subset, one_by_one))
    for name, seconds in times.items():
        shown = ", ".join(f"{s:.2f}" for s in seconds)
        at = ", ".join(f"{v:.2f}" for v in loads[name])
        print(f"{name:<16} median {statistics.median(seconds):6.2f}s  runs: {shown}; load: {at}")
    median = {name: statistics.median(seconds) for name, seconds in times.items()}
    base = median["all, one by one"]
    print(f"ratio all together / one by one: {median['all, together'] / base:.2f}x")
    print(f"ratio needed only / all one by one: {median['needed only'] / base:.2f}x")


if __name__ == "__main__":
    main()

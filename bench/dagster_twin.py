"""The sample mesh's dependency graph as trivial assets in one code location
per domain, materialized through Dagster alone: Dagster's floor.

``write_twin(graph, folder)`` writes ``<folder>/<domain>.py`` (a Definitions of
trivial assets, keyed ``[domain, product]``, with the same dependencies, the
in-process executor as dagmesh's domain jobs) and ``graph.json``. Run as a
script (``python bench/dagster_twin.py FOLDER [--max-runs N]``) it
materializes every asset: one ``dagster asset materialize -f <domain>.py``
process per domain and dependency wave, a domain's run started once what it
reads from other domains has materialized, at most ``--max-runs`` at once
(dagmesh's default: the cores). No platform code is imported.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

MODULE = '''"""Trivial twin of domain {domain}: same keys and dependencies, no work."""

import dagster as dg

GRAPH = {graph!r}


def _trivial(key: str, deps: list[str]) -> dg.AssetsDefinition:
    @dg.asset(
        key=dg.AssetKey(key.split("/")),
        deps=[dg.AssetKey(dep.split("/")) for dep in deps],
        group_name="{domain}",
    )
    def _asset() -> dg.MaterializeResult:
        return dg.MaterializeResult()

    return _asset


defs = dg.Definitions(
    assets=[_trivial(key, deps) for key, deps in GRAPH.items()],
    executor=dg.in_process_executor,
)
'''


def write_twin(graph: dict[str, list[str]], folder: Path) -> Path:
    """Write the twin's modules (one per domain) and ``graph.json`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    domains = sorted({ref.split("/")[0] for ref in graph})
    for domain in domains:
        own = {ref: deps for ref, deps in graph.items() if ref.startswith(f"{domain}/")}
        (folder / f"{domain}.py").write_text(MODULE.format(domain=domain, graph=own))
    (folder / "graph.json").write_text(json.dumps(graph, indent=2, sort_keys=True))
    return folder


def _ready(graph: dict[str, list[str]], done: set[str], busy: set[str]) -> dict[str, list[str]]:
    """Products that can run now, by domain (domains not running): every
    input done, or of the same domain and runnable in the same run."""
    ready: set[str] = set()
    changed = True
    while changed:
        changed = False
        for ref, deps in graph.items():
            domain = ref.split("/")[0]
            if ref in done or ref in ready or domain in busy:
                continue
            if all(
                d in done or d not in graph or (d.split("/")[0] == domain and d in ready)
                for d in deps
            ):
                ready.add(ref)
                changed = True
    by_domain: dict[str, list[str]] = {}
    for ref in sorted(ready):
        by_domain.setdefault(ref.split("/")[0], []).append(ref)
    return by_domain


def materialize_all(folder: Path, max_runs: int) -> int:
    """Materialize every asset of the twin; the exit code (0 when all succeeded)."""
    graph = json.loads((folder / "graph.json").read_text())
    dagster = str(Path(sys.executable).with_name("dagster"))
    done: set[str] = set()
    # pid -> (process, domain, products); the Popen objects are kept so that
    # subprocess never reaps them behind os.wait()'s back.
    running: dict[int, tuple[subprocess.Popen, str, list[str]]] = {}
    while len(done) < len(graph):
        busy = {domain for _, domain, _ in running.values()}
        for domain, refs in _ready(graph, done, busy).items():
            if len(running) >= max_runs:
                break
            command = [dagster, "asset", "materialize", "-f", str(folder / f"{domain}.py")]
            command += ["--select", ",".join(refs)]
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
            running[process.pid] = (process, domain, refs)
        if not running:
            print(f"nothing can run: {sorted(set(graph) - done)}", file=sys.stderr)
            return 1
        pid, status = os.wait()  # the next run to end: no polling
        process, domain, refs = running.pop(pid)
        process.returncode = code = os.waitstatus_to_exitcode(status)
        if code:
            print(f"{domain}: dagster exited {code}", file=sys.stderr)
            return code
        done |= set(refs)
    print(f"materialized {len(done)} assets")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--max-runs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    sys.exit(materialize_all(args.folder, args.max_runs))


if __name__ == "__main__":
    main()

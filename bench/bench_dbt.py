"""Benchmark: a dbt domain's products through dagmesh against plain ``dbt build``.

Setup, not timed: generate the landing files (``--scale``), then materialize
the domain's dbt products with everything upstream once, so every port they
read is published and dbt's partial-parse state is warm on both sides. A plain
dbt profile is written for the same, unmodified project: its own DuckDB file
(``<work>/plain/warehouse.duckdb``), the same inputs (a copy of the ``ports``
file dagmesh pinned: views over the same published Parquet versions), the
same threads and DuckDB memory limit.

Then ``--repeat`` times, alternating:

A. ``dagmesh materialize <every dbt product of the domain>`` as a user runs
   it: loading the domain's code location, one Dagster run, ``dbt build``
   (models and their tests as asset checks), publishing each model;
B. ``dbt build`` of the same project with the plain profile.

Prints wall time and peak RSS of each process tree (medians), dbt's own
elapsed time from ``run_results.json`` on both sides, and, last, the ratios.
Run on demand, never in CI::

    .venv/bin/python bench/bench_dbt.py --scale 10M --domain marketing --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import yaml
from bench_mesh import PROJECT, Measurement, dagmesh_command, generate, measure, mesh_env, mib
from bench_mesh import parse_scale as parse_orders

TARGET_RATIO = 1.15


def dbt_products(domain: str) -> list[str]:
    """``domain/name`` of every dbt product of the domain (its prepared manifest)."""
    from dagmesh.engine.dbt.project import dbt_project
    from dagmesh.engine.workspace import load_mesh

    project = dbt_project(load_mesh()[domain])
    if project is None:
        sys.exit(f"domain {domain} has no dbt project")
    return [f"{domain}/{name}" for name in sorted(project.product_nodes())]


def plain_profile(mesh: Path, plain: Path, domain: str) -> tuple[Path, Path]:
    """A profiles.yml for plain dbt: same project, same inputs and settings,
    its own database. Returns (profiles dir, dbt project dir)."""
    from dagmesh.engine.dbt.project import dbt_project
    from dagmesh.engine.workspace import load_mesh

    project = dbt_project(load_mesh()[domain])
    state = mesh / "domains" / domain / "dbt"
    meshed = yaml.safe_load((state / "profiles.yml").read_text())[project.profile_name]
    output = dict(meshed["outputs"]["embedded"])
    plain.mkdir(parents=True, exist_ok=True)
    shutil.copy(state / "ports.duckdb", plain / "ports.duckdb")
    output["path"] = str(plain / "warehouse.duckdb")
    output["attach"] = [{"path": str(plain / "ports.duckdb"), "alias": "ports", "read_only": True}]
    # Same DuckDB settings (memory limit), its own spill folder; no grant
    # plugin: locking DuckDB to what a step may read is dagmesh's.
    output["config_options"] = {**output["config_options"], "temp_directory": str(plain / "tmp")}
    output.pop("plugins", None)
    profile = {project.profile_name: {"target": "plain", "outputs": {"plain": output}}}
    (plain / "profiles.yml").write_text(yaml.safe_dump(profile))
    return plain, project.project_dir


def dbt_elapsed(target: Path) -> float:
    """dbt's own elapsed time for the last invocation writing ``target``."""
    return json.loads((target / "run_results.json").read_text())["elapsed_time"]


def last_run_phases(mesh: Path) -> dict[str, float]:
    """Seconds of the last Dagster run's phases, from the instance: before the
    run was created (CLI start, code server, launch), the run worker's start,
    and the dbt step itself."""
    from dagster import DagsterInstance

    os.environ["DAGSTER_HOME"] = str(mesh / "dagster")
    with DagsterInstance.get() as instance:
        record = instance.get_run_records(limit=1)[0]
        times = {}
        for entry in instance.get_records_for_run(record.dagster_run.run_id).records:
            event = entry.event_log_entry.dagster_event
            if event and event.event_type_value in ("STEP_START", "STEP_SUCCESS", "PIPELINE_START"):
                times[event.event_type_value] = entry.event_log_entry.timestamp
    created = record.create_timestamp.timestamp()
    return {
        "worker start": times["PIPELINE_START"] - created,
        "step": times["STEP_SUCCESS"] - times["STEP_START"],
    }


def run_dagmesh(mesh: Path, products: list[str], log: Path) -> Measurement:
    """Time ``dagmesh materialize`` of the products."""
    return measure([dagmesh_command(), "materialize", *products], mesh_env(mesh), log)


def run_plain(plain: Path, project_dir: Path, log: Path) -> Measurement:
    """Time plain ``dbt build`` of the project."""
    dbt = str(Path(sys.executable).with_name("dbt"))
    command = [
        dbt,
        "build",
        "--project-dir",
        str(project_dir),
        "--profiles-dir",
        str(plain),
        "--target-path",
        str(plain / "target"),
        "--log-path",
        str(plain / "logs"),
    ]
    env = {
        **mesh_env(plain),
        "DBT_VERSION_CHECK": "false",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    return measure(command, env, log)


def check(name: str, measured: Measurement, log: Path) -> None:
    """Stop when a measured command failed."""
    if measured.returncode:
        sys.exit(f"{name} failed (exit {measured.returncode}); see {log}")


def main() -> None:
    """Parse arguments, set up once, measure, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="1M", help="orders: 10000, 1M, 10M")
    parser.add_argument("--domain", default="marketing", help="a domain with a dbt project")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dagmesh-bench-dbt"))
    parser.add_argument(
        "--reuse", action="store_true", help="skip the setup when the inputs are published"
    )
    args = parser.parse_args()
    scale = parse_orders(args.scale)
    work = args.workdir.resolve()
    mesh, plain = work / "mesh", work / "plain"
    work.mkdir(parents=True, exist_ok=True)
    generate(mesh, scale, work)
    products = dbt_products(args.domain)

    if not (args.reuse and (mesh / "domains" / args.domain / "dbt" / "ports.duckdb").exists()):
        print(f"setup: {' '.join(products)} --with-upstream (not timed)")
        setup = subprocess.run(
            [dagmesh_command(), "materialize", *products, "--with-upstream"],
            env=mesh_env(mesh),
            cwd=PROJECT,
            capture_output=True,
            text=True,
        )
        if setup.returncode:
            sys.exit(f"setup failed:\n{setup.stderr[-3000:]}")
    profiles, project_dir = plain_profile(mesh, plain, args.domain)
    mesh_target = mesh / "domains" / args.domain / "dbt" / "target"

    # One untimed run of plain dbt so that its partial parse is warm too.
    check("plain dbt build (warm-up)", run_plain(profiles, project_dir, work / "warm.log"), work)
    runs: dict[str, list[tuple[Measurement, float]]] = {"dagmesh": [], "plain dbt": []}
    phases: list[dict[str, float]] = []
    for i in range(args.repeat):
        log = work / f"dagmesh-{i}.log"
        measured = run_dagmesh(mesh, products, log)
        check("dagmesh materialize", measured, log)
        runs["dagmesh"].append((measured, dbt_elapsed(mesh_target)))
        phases.append(last_run_phases(mesh))
        log = work / f"plain-{i}.log"
        measured = run_plain(profiles, project_dir, log)
        check("dbt build", measured, log)
        runs["plain dbt"].append((measured, dbt_elapsed(plain / "target")))
        print(
            f"  run {i + 1}: dagmesh {runs['dagmesh'][-1][0].wall:.2f}s, "
            f"plain dbt {measured.wall:.2f}s"
        )

    print(f"\n{args.domain} at {scale:,} orders, median of {args.repeat} (2 cores):")
    print(f"{'':12}{'wall':>10}{'dbt elapsed':>14}{'peak RSS':>12}{'CPU':>10}")
    medians = {}
    for name, measured in runs.items():
        wall = statistics.median(m.wall for m, _ in measured)
        elapsed = statistics.median(e for _, e in measured)
        rss = statistics.median(m.peak_rss for m, _ in measured)
        cpu = statistics.median(m.cpu for m, _ in measured)
        medians[name] = (wall, rss)
        print(f"{name:12}{wall:>9.2f}s{elapsed:>13.2f}s{mib(rss):>12}{cpu:>9.1f}s")
    step = statistics.median(p["step"] for p in phases)
    worker = statistics.median(p["worker start"] for p in phases)
    print(
        f"dagmesh phases (median): run worker start {worker:.2f}s, dbt step {step:.2f}s "
        f"(= {step / medians['plain dbt'][0]:.2f}x plain dbt build), the rest (CLI, code "
        f"server, launch, polling) {medians['dagmesh'][0] - worker - step:.2f}s"
    )
    wall_ratio = medians["dagmesh"][0] / medians["plain dbt"][0]
    rss_ratio = medians["dagmesh"][1] / medians["plain dbt"][1]
    verdict = "met" if wall_ratio <= TARGET_RATIO else "NOT met"
    print(f"target wall <= {TARGET_RATIO}x: {verdict}")
    print(f"ratio dagmesh/plain dbt: wall {wall_ratio:.2f}x, peak_rss {rss_ratio:.2f}x")


if __name__ == "__main__":
    main()

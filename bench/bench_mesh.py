"""Benchmark: the whole sample mesh through dagmesh against the same SQL in raw DuckDB.

Generates the landing files once (``dagmesh generate --scale N``, not timed),
then, ``--repeat`` times, from a clean state each time:

1. ``dagmesh materialize --all`` as a subprocess (``DAGMESH_HOME=<work>/mesh``,
   ``DAGSTER_HOME`` unset, so the instance lives in ``<work>/mesh/dagster``);
2. ``bench/raw_duckdb.py --home <work>/raw``: the same products, same reads
   and quarantine, same SQL and Parquet writes, in one DuckDB connection of
   one process.

For each it measures the wall time and the peak RSS of the whole process tree
(the sum over the process and all its descendants, and over the code servers
it started that left the tree, sampled every 200 ms), and
prints the medians and, as the last line, their ratios. Run on demand, never
in CI::

    .venv/bin/python bench/bench_mesh.py --scale 1M [--repeat 3] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import psutil

BENCH = Path(__file__).resolve().parent
PROJECT = BENCH.parent
RAW_SCRIPT = BENCH / "raw_duckdb.py"
SAMPLE_SECONDS = 0.2
LINGER_TIMEOUT = 120
MIB = 1024 * 1024
TARGET_WALL = 1.3
TARGET_RSS = 2.0
TARGET_SCALE = 10_000_000


@dataclass
class Measurement:
    """One timed run of a command."""

    wall: float
    peak_rss: int
    peak_procs: int
    max_single_rss: int
    cpu: float
    load: float
    returncode: int
    started: float
    leftovers: list[str] = field(default_factory=list)
    linger: float = 0.0


class TreeSampler(threading.Thread):
    """Samples the summed RSS of a process and all its descendants, and of
    the processes it started that left its tree: Dagster's code servers are
    reparented to init, so with ``home`` every process started since the
    root with ``DAGMESH_HOME=home`` (and its descendants) is counted too.

    One pass over the process table per sample (parents, RSS, CPU times),
    every :data:`SAMPLE_SECONDS`: walking the tree with psutil's
    ``children()`` rescans the table per call, and sampling every 50 ms that
    way took a third of a core from the measured run."""

    def __init__(self, pid: int, home: str | None = None) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.home = home
        self.started = self.root.create_time()
        self.homes: dict[int, bool] = {}
        self.stop = threading.Event()
        self.peak_rss = 0
        self.peak_procs = 0
        self.max_single_rss = 0
        self.cpu: dict[int, float] = {}
        self.seen: dict[int, psutil.Process] = {}

    def _of_this_run(self, proc: psutil.Process) -> bool:
        """Started since the root, with ``DAGMESH_HOME=home`` (read once per pid)."""
        if proc.pid not in self.homes:
            try:
                self.homes[proc.pid] = (
                    self.home is not None
                    and proc.create_time() >= self.started
                    and proc.environ().get("DAGMESH_HOME") == self.home
                )
            except psutil.Error:
                self.homes[proc.pid] = False
        return self.homes[proc.pid]

    def sample(self) -> None:
        table = {}
        for proc in psutil.process_iter(["ppid", "memory_info", "cpu_times"]):
            if proc.info["memory_info"] is not None:
                table[proc.pid] = proc
        if self.root.pid not in table:
            return
        children: dict[int, list[int]] = {}
        for pid, proc in table.items():
            children.setdefault(proc.info["ppid"], []).append(pid)
        roots = [self.root.pid] + [
            pid
            for pid, proc in table.items()
            if pid != self.root.pid and pid != os.getpid() and self._of_this_run(proc)
        ]
        members, stack = set(), roots
        while stack:
            pid = stack.pop()
            if pid not in members:
                members.add(pid)
                stack += children.get(pid, [])
        total = 0
        for pid in members:
            proc = table[pid]
            rss = proc.info["memory_info"].rss
            times = proc.info["cpu_times"]
            self.cpu[pid] = times.user + times.system
            total += rss
            self.max_single_rss = max(self.max_single_rss, rss)
            self.seen.setdefault(pid, proc)
        self.peak_rss = max(self.peak_rss, total)
        self.peak_procs = max(self.peak_procs, len(members))

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(SAMPLE_SECONDS)

    def leftovers(self) -> list[psutil.Process]:
        """Descendants seen during the run that are still alive after it."""
        alive = []
        for pid, proc in self.seen.items():
            if pid == self.root.pid:
                continue
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.NoSuchProcess:
                continue
        return alive


def describe(proc: psutil.Process) -> str:
    """``pid command`` of a process, shortened."""
    try:
        command = " ".join(proc.cmdline()[1:4])
    except psutil.Error:
        command = "?"
    return f"{proc.pid} {command}"


def measure(command: list[str], env: dict[str, str], log: Path) -> Measurement:
    """Run ``command`` (output to ``log``); time it and sample its process tree."""
    with open(log, "w") as out:
        load = os.getloadavg()[0]
        started = time.time()
        start = time.perf_counter()
        proc = subprocess.Popen(command, env=env, cwd=PROJECT, stdout=out, stderr=subprocess.STDOUT)
        sampler = TreeSampler(proc.pid, env.get("DAGMESH_HOME"))
        sampler.start()
        proc.wait()
        wall = time.perf_counter() - start
        sampler.stop.set()
        sampler.join()
    # Descendants still alive (e.g. code servers finishing their shutdown)
    # would compete with the next measurement: wait for them, untimed.
    leftovers = sampler.leftovers()
    described = [describe(p) for p in leftovers]
    start = time.perf_counter()
    psutil.wait_procs(leftovers, timeout=LINGER_TIMEOUT)
    return Measurement(
        wall=wall,
        peak_rss=sampler.peak_rss,
        peak_procs=sampler.peak_procs,
        max_single_rss=sampler.max_single_rss,
        cpu=sum(sampler.cpu.values()),
        load=load,
        returncode=proc.returncode,
        started=started,
        leftovers=described,
        linger=time.perf_counter() - start,
    )


def parse_scale(text: str) -> int:
    """``10000``, ``250k``, ``1M``, ``10M`` → orders (as ``dagmesh generate`` reads it)."""
    import typer

    from dagmesh.tools.cli import parse_scale as dagmesh_parse_scale

    try:
        return dagmesh_parse_scale(text)
    except typer.BadParameter as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def dagmesh_command() -> str:
    """The dagmesh console script next to this interpreter (else on PATH)."""
    script = Path(sys.executable).with_name("dagmesh")
    if script.exists():
        return str(script)
    found = shutil.which("dagmesh")
    if not found:
        sys.exit("no dagmesh console script next to this python or on PATH")
    return found


def mesh_env(mesh: Path) -> dict[str, str]:
    """The environment of the dagmesh subprocesses."""
    env = dict(os.environ)
    env["DAGMESH_HOME"] = str(mesh)
    env.pop("DAGSTER_HOME", None)
    return env


def generate(mesh: Path, scale: int, work: Path) -> None:
    """Generate the landing files (skipped when already there at this scale)."""
    truth = mesh / "landing" / "_truth.json"
    if truth.exists():
        known = json.loads(truth.read_text())
        if known.get("scale") == scale and known.get("seed") == 42:
            print(f"landing: reusing {truth.parent} ({scale:,} orders)")
            return
    start = time.perf_counter()
    untimed_dagmesh(mesh, ["generate", "--scale", str(scale)], work / "generate.log")
    size = sum(f.stat().st_size for f in (mesh / "landing").rglob("*") if f.is_file())
    print(
        f"landing: generated {scale:,} orders in {time.perf_counter() - start:.1f}s "
        f"({size / MIB:,.0f} MiB, not timed)"
    )


def register(mesh: Path, log: Path) -> None:
    """``dagmesh register`` (every domain's interfaces into the registry), not timed."""
    untimed_dagmesh(mesh, ["register"], log)


def untimed_dagmesh(mesh: Path, arguments: list[str], log: Path) -> None:
    """Run ``dagmesh ARGUMENTS`` on ``mesh``, its output to ``log``; exit if it fails."""
    with open(log, "w") as out:
        done = subprocess.run(
            [dagmesh_command(), *arguments],
            env=mesh_env(mesh),
            cwd=PROJECT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if done.returncode:
        sys.exit(f"dagmesh {arguments[0]} failed (exit {done.returncode}); see {log}")


def reset_mesh(mesh: Path) -> None:
    """Forget every published product and Dagster run; keep the landing."""
    for name in ("domains", "dagster"):
        shutil.rmtree(mesh / name, ignore_errors=True)


def reset_raw(raw: Path, landing: Path) -> None:
    """An empty raw home whose ``landing`` links to the generated landing."""
    shutil.rmtree(raw, ignore_errors=True)
    raw.mkdir(parents=True)
    (raw / "landing").symlink_to(landing)


def note_leftovers(name: str, measured: Measurement) -> None:
    if measured.leftovers:
        print(
            f"  {len(measured.leftovers)} {name} subprocesses outlived it by up to "
            f"{measured.linger:.1f}s (waited for, not timed): " + "; ".join(measured.leftovers)
        )


def fail(what: str, measured: Measurement, log: Path) -> None:
    tail = log.read_text(errors="replace").splitlines()[-30:]
    print("\n".join(tail), file=sys.stderr)
    sys.exit(f"{what} failed (exit {measured.returncode}); full output in {log}")


def dagster_breakdown(mesh: Path, measured: Measurement) -> tuple[dict[str, float], dict]:
    """From the Dagster instance of the last dagmesh run: seconds per step
    (``domain/product``, or ``<domain>_dbt`` for a domain's dbt build, summed
    over the runs that have it), and totals (runs, summed launch→start latency,
    run time, step time, when the first run was launched and the last one ended)."""
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    steps: dict[str, float] = {}
    totals = {"runs": 0.0, "launch_to_start": 0.0, "run_time": 0.0, "step_time": 0.0}
    launches, ends = [], []
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(mesh / "dagster"))) as instance:
        for run in instance.get_runs():
            stats = instance.get_run_stats(run.run_id)
            totals["runs"] += 1
            if stats.launch_time and stats.start_time:
                totals["launch_to_start"] += stats.start_time - stats.launch_time
                launches.append(stats.launch_time)
            if stats.start_time and stats.end_time:
                totals["run_time"] += stats.end_time - stats.start_time
                ends.append(stats.end_time)
            for step in instance.get_run_step_stats(run.run_id):
                if step.start_time and step.end_time:
                    seconds = step.end_time - step.start_time
                    key = step.step_key.replace("__", "/")
                    steps[key] = steps.get(key, 0.0) + seconds
                    totals["step_time"] += seconds
    totals["first_launch"] = min(launches) - measured.started if launches else float("nan")
    totals["last_end"] = max(ends) - measured.started if ends else float("nan")
    totals["wall"] = measured.wall
    return steps, totals


def row_counts(mesh: Path, raw: Path, refs: list[str]) -> dict[str, tuple[int | None, int | None]]:
    """Rows of each product as published by dagmesh and as written raw."""

    def count(path: Path) -> int | None:
        if not path.exists():
            return None
        query = f"SELECT count(*) FROM read_parquet('{path}')"
        return duckdb.execute(query).fetchone()[0]

    counts = {}
    for ref in refs:
        domain, name = ref.split("/")
        published = mesh / "domains" / domain / "ports" / name / "current" / "data.parquet"
        counts[ref] = (count(published), count(raw / domain / f"{name}.parquet"))
    return counts


def mib(value: float) -> str:
    return f"{value / MIB:,.0f}"


def report(
    scale: int,
    runs: dict[str, list[Measurement]],
    steps: dict[str, float],
    totals: dict[str, float],
    raw_times: dict[str, float],
    counts: dict[str, tuple[int | None, int | None]],
) -> None:
    print()
    print(
        f"{'run':<12}{'wall s':>10}{'peak RSS MiB':>15}{'max 1-proc MiB':>16}{'procs':>7}"
        f"{'CPU s':>9}{'load':>7}"
    )
    for name, measured in runs.items():
        for i, m in enumerate(measured, 1):
            print(
                f"{name + ' #' + str(i):<12}{m.wall:>10.2f}{mib(m.peak_rss):>15}"
                f"{mib(m.max_single_rss):>16}{m.peak_procs:>7}{m.cpu:>9.1f}{m.load:>7.2f}"
            )
    print(
        "(peak RSS: sum over the process tree; max 1-proc: largest single process; procs: "
        "most processes at once; CPU: user+system of the tree, sampled; load: 1-min load "
        "average at start, from any process on the machine)"
    )

    print()
    print(
        f"dagmesh (last run): first run launched at {totals['first_launch']:.1f}s, last run "
        f"ended at {totals['last_end']:.1f}s, process exited at {totals['wall']:.1f}s"
    )
    print(
        f"  {totals['runs']:.0f} Dagster runs; summed over them: launch→start "
        f"{totals['launch_to_start']:.1f}s, run time {totals['run_time']:.1f}s, "
        f"product steps {totals['step_time']:.1f}s"
    )
    print()
    print(f"{'product (last run)':<30}{'rows':>13}{'dagmesh step s':>16}{'raw s':>9}{'ratio':>8}")
    for ref, seconds in raw_times.items():
        published, written = counts.get(ref, (None, None))
        rows = f"{written:,}" if written is not None else "?"
        if published != written:
            rows = f"{published}≠{written}"
        step = steps.get(ref)
        ratio = f"{step / seconds:.1f}x" if step and seconds else ""
        step_text = f"{step:.2f}" if step is not None else "?"
        print(f"{ref:<30}{rows:>13}{step_text:>16}{seconds:>9.2f}{ratio:>8}")
    shared = {key: seconds for key, seconds in steps.items() if key not in raw_times}
    if shared:
        listed = ", ".join(f"{key} {seconds:.2f}s" for key, seconds in sorted(shared.items()))
        print(f"steps of several products (a domain's dbt build, tests included): {listed}")
    mismatched = [ref for ref, (a, b) in counts.items() if a != b]
    if mismatched:
        print(f"WARNING: row counts differ between dagmesh and raw for {mismatched}")

    wall = {name: statistics.median(m.wall for m in ms) for name, ms in runs.items()}
    rss = {name: statistics.median(m.peak_rss for m in ms) for name, ms in runs.items()}
    repeats = len(runs["dagmesh"])
    print()
    print(f"median of {repeats} run(s) at {scale:,} orders:")
    print(f"{'':<12}{'wall s':>10}{'peak RSS MiB':>15}")
    for name in runs:
        print(f"{name:<12}{wall[name]:>10.2f}{mib(rss[name]):>15}")
    wall_ratio = wall["dagmesh"] / wall["raw"]
    rss_ratio = rss["dagmesh"] / rss["raw"]
    targets = f"targets at {TARGET_SCALE:,} orders: wall ≤ {TARGET_WALL}x, peak RSS ≤ {TARGET_RSS}x"
    if scale >= TARGET_SCALE:
        wall_ok = "met" if wall_ratio <= TARGET_WALL else "NOT met"
        rss_ok = "met" if rss_ratio <= TARGET_RSS else "NOT met"
        targets += f" (wall {wall_ok}, peak RSS {rss_ok})"
    else:
        targets += " (not judged at this scale: fixed costs dominate)"
    print(targets)
    print(f"ratio dagmesh/raw: wall {wall_ratio:.2f}x, peak_rss {rss_ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Materialize the sample mesh through dagmesh and as raw DuckDB; compare."
    )
    parser.add_argument("--scale", type=parse_scale, default="10000", help="orders: 10000, 1M, 10M")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; medians reported")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="work folder (default: a new temp folder under /tmp); a given folder is kept, "
        "and its landing is reused when generated at the same scale",
    )
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat is at least 1")

    temporary = args.workdir is None
    work = Path(tempfile.mkdtemp(prefix="dagmesh-bench-", dir="/tmp")) if temporary else None
    work = (work or args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    mesh, raw = work / "mesh", work / "raw"
    fate = "deleted at the end unless a run fails" if temporary and not args.keep else "kept"
    print(f"dagmesh bench: {args.scale:,} orders, {args.repeat} run(s) each")
    print(f"work folder: {work} ({fate})")
    try:
        generate(mesh, args.scale, work)
        register(mesh, work / "register.log")
        runs: dict[str, list[Measurement]] = {"dagmesh": [], "raw": []}
        raw_command = [sys.executable, str(RAW_SCRIPT), "--home", str(raw)]
        for i in range(1, args.repeat + 1):
            reset_mesh(mesh)
            log = work / f"dagmesh-{i}.log"
            measured = measure([dagmesh_command(), "materialize", "--all"], mesh_env(mesh), log)
            if measured.returncode:
                fail("dagmesh materialize --all", measured, log)
            runs["dagmesh"].append(measured)
            print(f"dagmesh #{i}: {measured.wall:.2f}s, peak RSS {mib(measured.peak_rss)} MiB")
            note_leftovers("dagmesh", measured)

            reset_raw(raw, mesh / "landing")
            log = work / f"raw-{i}.log"
            measured = measure(raw_command, mesh_env(mesh), log)
            if measured.returncode:
                fail("raw_duckdb.py", measured, log)
            runs["raw"].append(measured)
            print(f"raw     #{i}: {measured.wall:.2f}s, peak RSS {mib(measured.peak_rss)} MiB")
            note_leftovers("raw", measured)

        raw_times = json.loads((raw / "_timings.json").read_text())
        steps, totals = dagster_breakdown(mesh, runs["dagmesh"][-1])
        counts = row_counts(mesh, raw, list(raw_times))
        report(args.scale, runs, steps, totals, raw_times, counts)
    except BaseException:
        if temporary:
            print(f"(work folder kept for inspection: {work})", file=sys.stderr)
        raise
    if temporary and not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Benchmark: the platform's timestamp macros against a plain cast.

Builds N timestamp texts shaped like the shop's landing files (offsets
``+HH:MM``, ``-HH:MM``, ``+HHMM``, ``Z``, none) in one DuckDB, then times,
medians of ``--repeat``:

- ``cast``: ``timezone('UTC', s::TIMESTAMPTZ)``, what a script without the
  offset check would run (the floor);
- ``try_utc_timestamp``: the ``reject_if`` form (NULL when impossible);
- ``utc_timestamp``: the failing form products select.

Run on demand::

    .venv/bin/python bench/bench_timestamps.py --rows 10000000 --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import duckdb

from dagmesh.engine.timestamps import define_timestamp_macros

FORMS = {
    "cast": "timezone('UTC', s::TIMESTAMPTZ)",
    "try_utc_timestamp": "try_utc_timestamp(s)",
    "utc_timestamp": "utc_timestamp(s)",
}
TEXTS = """
    SELECT strftime(TIMESTAMP '2026-01-01' + to_seconds(i * 7), '%Y-%m-%dT%H:%M:%S')
        || ['+02:00', '-05:00', '+0530', 'Z', '', '+00:00', '-1200', '+14:00'][i % 8 + 1] AS s
    FROM range($rows) r(i)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    con = duckdb.connect()
    define_timestamp_macros(con)
    con.execute(f"CREATE TABLE texts AS {TEXTS}", {"rows": args.rows})
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    print(f"{args.rows:,} timestamp texts, DuckDB threads {threads}, medians of {args.repeat}")
    medians = {}
    for name, expression in FORMS.items():
        seconds = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            con.execute(f"SELECT count({expression}) FROM texts").fetchone()
            seconds.append(time.perf_counter() - start)
        medians[name] = statistics.median(seconds)
    for name, median in medians.items():
        rate = args.rows / median / 1e6
        print(f"{name:18s} {median:7.3f} s  {rate:6.1f} M rows/s  {median / medians['cast']:5.2f}x")


if __name__ == "__main__":
    main()

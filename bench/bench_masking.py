"""What masking personal data for other domains costs at publish time.

Writes N rows shaped like customers/customer_profiles (id, name, email,
phone, street, city) to Parquet, then times, each in a fresh DuckDB:

- ``copy``: the published file rewritten as is (the floor: read + write);
- ``masked``: :func:`dagmesh.engine.masking.write_masked` with email hashed
  (HMAC-SHA256 inside DuckDB) and the other three personal columns redacted.

Prints the median of ``--repeat`` runs of each and their ratio::

    python bench/bench_masking.py --rows 1000000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import duckdb

from dagmesh.engine.masking import write_masked
from dagmesh.engine.sql import literal

COLUMNS = [
    ("customer_id", "VARCHAR"),
    ("full_name", "VARCHAR"),
    ("email", "VARCHAR"),
    ("phone", "VARCHAR"),
    ("street_address", "VARCHAR"),
    ("city", "VARCHAR"),
]
METHODS = {"full_name": "redact", "email": "hash", "phone": "redact", "street_address": "redact"}


def _source(folder: Path, rows: int) -> Path:
    path = folder / "raw.parquet"
    duckdb.connect().execute(
        f"""COPY (SELECT 'C' || i AS customer_id, 'Name ' || (i * 7919 % 100003) AS full_name,
                  'user' || i || '@example.com' AS email, '+49 30 ' || (i * 31 % 9999999) AS phone,
                  (i % 997) || ' Main Street' AS street_address, 'City ' || (i % 300) AS city
            FROM range({rows}) t(i)) TO {literal(path)} (FORMAT parquet, COMPRESSION zstd)"""
    )
    return path


def _time(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = _source(folder, args.rows)
        target = folder / "data.parquet"

        def copy() -> None:
            duckdb.connect().execute(
                f"COPY (SELECT * FROM read_parquet({literal(source)})) TO {literal(target)} "
                "(FORMAT parquet, COMPRESSION zstd)"
            )

        def masked() -> None:
            write_masked(duckdb.connect(), source, target, COLUMNS, METHODS, b"bench-key")

        times = {"copy": [], "masked": []}
        for _ in range(args.repeat):
            times["copy"].append(_time(copy))
            times["masked"].append(_time(masked))
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"rows: {args.rows:,}; median of {args.repeat} runs each")
    for name, value in medians.items():
        print(f"  {name:>6}: {value:.3f} s  ({args.rows / value / 1e6:.1f} M rows/s)")
    print(f"  masked / copy: {medians['masked'] / medians['copy']:.2f}x")


if __name__ == "__main__":
    main()

"""What one publish costs on S3 (a local SeaweedFS) against the local disk.

Builds the same SQL product (``--rows`` orders generated in DuckDB, no
landing files) with :func:`dagmesh.engine.build.build_product` on a store whose
ports are on the local disk, then on one whose ports are on SeaweedFS
(tests/servers.py: 127.0.0.1, per-domain identities). Times, median of
``--repeat`` runs each:

- ``build``: the whole step (compute, stage, audit, publish);
- ``publish``: :meth:`OutputPort.publish` alone, of the same staged
  data.parquet (local: rename + symlink swap; S3: upload + version.json +
  one PUT of the pointer).

Run from the project root::

    python bench/bench_publish_s3.py --rows 1000000
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dagmesh import Column, Domain, config  # noqa: E402
from dagmesh.config import Profile  # noqa: E402
from dagmesh.engine.build import build_product  # noqa: E402
from dagmesh.engine.objectstore import ObjectStore  # noqa: E402
from dagmesh.engine.storage import DATA_FILE, MeshStore  # noqa: E402
from tests.servers import s3_server  # noqa: E402


def _product(rows: int):
    sales = Domain("sales", owner="shop", description="Orders.")
    return sales.sql_product(
        "orders",
        description="Orders.",
        columns=[
            Column("order_id", "BIGINT", "Id.", nullable=False),
            Column("customer_id", "BIGINT", "Customer."),
            Column("amount", "DOUBLE", "Amount."),
        ],
        primary_key="order_id",
        sql=f"select range order_id, range % 9973 customer_id, random() * 100 amount "
        f"from range({rows})",
    )


def _time_builds(product, store: MeshStore, repeat: int) -> list[float]:
    times = []
    for run in range(repeat):
        start = time.perf_counter()
        assert build_product(product, store, f"bench{run}").published
        times.append(time.perf_counter() - start)
    return times


def _time_publishes(store: MeshStore, repeat: int) -> list[float]:
    port = store.port("sales", "orders")
    source = port.require_current().owner_file
    local = Path(tempfile.mkdtemp(prefix="bench-src-")) / DATA_FILE
    if isinstance(source, str):  # on S3: fetch it once, outside the timing
        con = store.connect("sales")
        con.execute(f"COPY (FROM read_parquet('{source}')) TO '{local}' (FORMAT parquet)")
        con.close()
    else:
        shutil.copy(source, local)
    times = []
    for run in range(repeat):
        staging = port.start_staging(f"pub{run}")
        shutil.copy(local, staging / DATA_FILE)
        start = time.perf_counter()
        port.publish(staging, f"pub{run}", {"rows": 0}, keep=store.keep_versions)
        times.append(time.perf_counter() - start)
    shutil.rmtree(local.parent, ignore_errors=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    product = _product(args.rows)
    work = Path(tempfile.mkdtemp(prefix="bench-publish-"))
    results = {}
    try:
        local = MeshStore(work / "local")
        results["local"] = (
            _time_builds(product, local, args.repeat),
            _time_publishes(local, args.repeat),
        )
        with s3_server(["sales"]) as s3:
            os.environ.update(s3.env())
            settings = config.s3_settings(Profile("bench", ports=s3.ports))
            remote = MeshStore(work / "s3", objects=ObjectStore(settings, config.s3_credentials))
            results["s3"] = (
                _time_builds(product, remote, args.repeat),
                _time_publishes(remote, args.repeat),
            )
            size = os.path.getsize(local.port("sales", "orders").require_current().data_file)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"rows={args.rows} data.parquet={size / 1e6:.1f} MB, median of {args.repeat}")
    for name, (builds, publishes) in results.items():
        print(
            f"{name:6} build {statistics.median(builds):7.3f} s   "
            f"publish {statistics.median(publishes):7.3f} s   "
            f"(builds {', '.join(f'{t:.3f}' for t in builds)}; "
            f"publishes {', '.join(f'{t:.3f}' for t in publishes)})"
        )


if __name__ == "__main__":
    main()

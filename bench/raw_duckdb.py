"""The sample mesh as a hand-written DuckDB script: the baseline of bench_mesh.py.

Runs every product of the workspace, in dependency order across domains, in
ONE in-memory DuckDB connection of ONE process, with no orchestration, no
audits and no versioned publishing:

- a landing source becomes a view through :func:`dagmesh.landing.attach_landing`,
  so the shape checks, the ``reject_if`` quarantine (written to Parquet) and
  the reader options are exactly the platform's;
- a consumed product is a view over the Parquet file written before it;
- the product's SQL (or, for a Python product, its compute function given a
  :class:`dagmesh.context.ProductContext`) computes the result;
- its declared columns go to ``<home>/<domain>/<product>.parquet`` (zstd), as
  the platform writes its staged ``data.parquet``.

Usage::

    python bench/raw_duckdb.py --home /tmp/raw [--landing /tmp/mesh/landing]

The landing folder defaults to ``<home>/landing`` (bench_mesh.py makes it a
symlink to the landing of the dagmesh run). Seconds per product go to
``<home>/_timings.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from graphlib import TopologicalSorter
from pathlib import Path

import duckdb

from dagmesh.context import ProductContext
from dagmesh.landing import attach_landing
from dagmesh.product import Product
from dagmesh.registry import load_mesh
from dagmesh.sql import ident, literal

PROJECT = Path(__file__).resolve().parents[1]
TIMINGS_FILE = "_timings.json"


def ordered_products(workspace: Path | None = None) -> list[Product]:
    """Every product of the workspace, each after everything it consumes."""
    products = {p.ref: p for d in load_mesh(workspace).values() for p in d.products.values()}
    sorter = TopologicalSorter({ref: set(p.consumes.values()) for ref, p in products.items()})
    sorter.prepare()
    order: list[Product] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        order += [products[ref] for ref in ready]
        sorter.done(*ready)
    return order


def output_file(home: Path, ref: str) -> Path:
    """Where the raw script writes ``domain/product``."""
    domain, name = ref.split("/")
    return home / domain / f"{name}.parquet"


def build(con: duckdb.DuckDBPyConnection, product: Product, home: Path, landing: Path) -> None:
    """Compute one product in ``con`` and write its declared columns to Parquet."""
    for alias, ref in product.consumes.items():
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {ident(alias)} AS "
            f"SELECT * FROM read_parquet({literal(output_file(home, ref))})"
        )
    domain_dir = home / product.domain
    for alias, source in product.sources.items():
        quarantine = domain_dir / f"{product.name}_quarantine"
        attach_landing(con, product.ref, alias, source, landing, quarantine)
    if product.sql is not None:
        relation = con.sql(product.sql)
    else:
        log = logging.getLogger("raw_duckdb")
        result = product.compute(ProductContext(product, con, "raw", domain_dir, log))
        if not isinstance(result, duckdb.DuckDBPyRelation):
            con.register("__python_result", result)
            result = con.table("__python_result")
        relation = result
    target = output_file(home, product.ref)
    target.parent.mkdir(parents=True, exist_ok=True)
    columns = ", ".join(ident(c.name) for c in product.columns)
    relation.select(columns).write_parquet(str(target), compression="zstd")


def run(home: Path, landing: Path) -> dict[str, float]:
    """Build the whole mesh; return seconds per product (in build order)."""
    spill = home / "tmp"
    spill.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    con = duckdb.connect(":memory:", config={"temp_directory": str(spill)})
    try:
        for product in ordered_products(PROJECT / "workspace.yaml"):
            start = time.perf_counter()
            build(con, product, home, landing)
            timings[product.ref] = time.perf_counter() - start
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--landing", type=Path, default=None, help="landing folder (default: HOME/landing)"
    )
    args = parser.parse_args()
    home = args.home.resolve()
    landing = (args.landing or home / "landing").resolve()
    if not landing.is_dir():
        parser.error(f"no landing folder {landing}; run `dagmesh generate` first")
    home.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    timings = run(home, landing)
    total = time.perf_counter() - start
    (home / TIMINGS_FILE).write_text(json.dumps(timings, indent=2) + "\n")
    print(f"built {len(timings)} products in {total:.2f}s into {home}")


if __name__ == "__main__":
    main()

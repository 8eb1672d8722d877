"""The sample mesh as a hand-written DuckDB script: the baseline of bench_mesh.py.

Runs every product of the workspace, in dependency order across domains, in
ONE in-memory DuckDB connection of ONE process, with no orchestration, no
audits and no versioned publishing:

- a landing source becomes a view through :func:`dagmesh.engine.landing.attach_landing`,
  so the shape checks, the ``reject_if`` quarantine (written to Parquet) and
  the reader options are exactly the platform's;
- a consumed product is a view over the Parquet file written before it;
- the product's SQL (or, for a Python product, its compute function given a
  :class:`dagmesh.engine.context.ProductContext`) computes the result;
- a model product trains, evaluates and saves its model with the platform's
  own :func:`dagmesh.engine.learning.stage_model` (the same fit; its output is
  the feature card), a scoring product scores with
  :func:`dagmesh.engine.learning.stage_scores` from the model file written
  before it; scikit-learn gets every core, as a script would give it;
- a model of a domain's dbt project (``dbt_project(domain)``) is its ``raw_code`` from
  the prepared manifest, rendered with jinja2 alone: ``source('sales',
  'orders')`` becomes a view over ``sales/orders``, ``ref('x')`` one over the
  same domain's model ``x`` (no dbt at run time, no dbt tests); with an
  enforced contract its declared columns are cast to their ``data_type``;
- its declared columns go to ``<home>/<domain>/<product>.parquet`` (zstd), as
  the platform writes its staged ``data.parquet``.

Usage::

    python bench/raw_duckdb.py --home /tmp/raw [--landing /tmp/mesh/landing]

The landing folder defaults to ``<home>/landing`` (bench_mesh.py makes it a
symlink to the landing of the dagmesh run). Seconds per product go to
``<home>/_timings.json``. A dbt project whose manifest is missing or stale is
parsed first (``dbt parse``, as dagmesh prepares it; not in those timings).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

import duckdb
import jinja2

from dagmesh.declarations.product import Domain, Product
from dagmesh.engine.context import ProductContext
from dagmesh.engine.dbt.project import dbt_project
from dagmesh.engine.landing import attach_landing
from dagmesh.engine.learning import stage_model, stage_scores
from dagmesh.engine.sql import ident, literal
from dagmesh.engine.storage import DATA_FILE
from dagmesh.engine.timestamps import define_timestamp_macros
from dagmesh.engine.workspace import load_mesh

PROJECT = Path(__file__).resolve().parents[1]
# One build at a time here: scikit-learn gets every core, as a script gives it.
THREADS = os.cpu_count() or 1
TIMINGS_FILE = "_timings.json"


@dataclass
class DbtModel:
    """A model of a domain's dbt project, as this script builds it."""

    domain: str
    node: dict[str, Any]
    consumes: dict[str, str]
    """Manifest unique_id of each parent → the product it is (``domain/name``)."""

    @property
    def ref(self) -> str:
        """``domain/model``, as other products consume it."""
        return f"{self.domain}/{self.node['name']}"


Step = Product | DbtModel


def parent_ref(
    domain: str, uid: str, ports: dict[str, tuple[str, str]], nodes: dict[str, Any]
) -> str:
    """The product a dbt model of ``domain`` reads as ``uid``: a port source
    (another or the same domain's product) or a model of the same project."""
    if uid in ports:
        return "/".join(ports[uid])
    if uid in nodes:
        return f"{domain}/{nodes[uid]['name']}"
    raise ValueError(f"dbt node {uid} of domain {domain} is neither a port source nor a model")


def dbt_models(domain: Domain) -> list[DbtModel]:
    """The dbt products of ``domain``, each with the products it reads."""
    project = dbt_project(domain)
    if project is None:
        return []
    ports, nodes = project.port_sources(), project.manifest["nodes"]
    models = []
    for name, node in project.product_nodes().items():
        if node["resource_type"] != "model":
            raise ValueError(
                f"{domain.name}/{name} is a dbt {node['resource_type']}; "
                "raw_duckdb.py builds dbt models only"
            )
        parents = node.get("depends_on", {}).get("nodes", [])
        consumes = {uid: parent_ref(domain.name, uid, ports, nodes) for uid in parents}
        models.append(DbtModel(domain.name, node, consumes))
    return models


def ordered_products(workspace: Path | None = None) -> list[Step]:
    """Every product of the workspace (dbt models included), each after
    everything it consumes."""
    steps: dict[str, Step] = {}
    for domain in load_mesh(workspace).values():
        steps.update({p.ref: p for p in domain.products.values()})
        steps.update({m.ref: m for m in dbt_models(domain)})
    sorter = TopologicalSorter({ref: set(s.consumes.values()) for ref, s in steps.items()})
    sorter.prepare()
    order: list[Step] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        order += [steps[ref] for ref in ready]
        sorter.done(*ready)
    return order


def output_file(home: Path, ref: str) -> Path:
    """Where the raw script writes ``domain/product``."""
    domain, name = ref.split("/")
    return home / domain / f"{name}.parquet"


def model_folder(home: Path, ref: str) -> Path:
    """Where the raw script saves the model product ``ref`` (model, card, profile)."""
    domain, name = ref.split("/")
    return home / domain / f"{name}_model"


@dataclass
class SavedModel:
    """A model the raw script saved, as :func:`stage_scores` reads a published
    version: its ``version`` name, ``has(file)`` and ``file(name)``."""

    folder: Path
    version: str = "raw"

    def has(self, name: str) -> bool:
        return (self.folder / name).is_file()

    def file(self, name: str) -> str:
        return str(self.folder / name)


@dataclass
class SavedModelRead:
    """The shape of a granted read (:class:`dagmesh.engine.access.PortRead`)
    of a saved model."""

    version: SavedModel


def product_relation(
    con: duckdb.DuckDBPyConnection, product: Product, home: Path, landing: Path
) -> duckdb.DuckDBPyRelation:
    """Compute a declared (SQL or Python) product in ``con``: its declared columns."""
    for alias, ref in product.consumes.items():
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {ident(alias)} AS "
            f"SELECT * FROM read_parquet({literal(output_file(home, ref))})"
        )
    domain_dir = home / product.domain
    for alias, source in product.sources.items():
        quarantine = domain_dir / f"{product.name}_quarantine"
        attach_landing(con, product.ref, alias, source, landing, quarantine)
    ctx = ProductContext(product, con, "raw", domain_dir, logging.getLogger("raw_duckdb"))
    if product.training is not None:
        staging = model_folder(home, product.ref)
        staging.mkdir(parents=True, exist_ok=True)
        stage_model(ctx, staging, THREADS)
        return con.sql(f"SELECT * FROM read_parquet({literal(staging / DATA_FILE)})")
    if product.scoring is not None:
        model = SavedModelRead(SavedModel(model_folder(home, product.scoring.model)))
        relation, _drift, _record = stage_scores(ctx, model, domain_dir, THREADS)
    elif product.sql is not None:
        relation = con.sql(product.sql)
    else:
        result = product.compute(ctx)
        if not isinstance(result, duckdb.DuckDBPyRelation):
            con.register("__python_result", result)
            result = con.table("__python_result")
        relation = result
    return relation.select(", ".join(ident(c.name) for c in product.columns))


def product_view(con: duckdb.DuckDBPyConnection, home: Path, ref: str) -> str:
    """A temp view named ``ref`` over the Parquet written for it; its quoted name."""
    name = ident(ref)
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {name} AS "
        f"SELECT * FROM read_parquet({literal(output_file(home, ref))})"
    )
    return name


def render_model(con: duckdb.DuckDBPyConnection, model: DbtModel, home: Path) -> str:
    """The model's SQL: its ``raw_code`` with ``source(domain, product)`` and
    ``ref(model)`` replaced by views over the Parquet of those products."""
    template = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(
        model.node["raw_code"]
    )
    return template.render(
        source=lambda domain, product: product_view(con, home, f"{domain}/{product}"),
        ref=lambda name: product_view(con, home, f"{model.domain}/{name}"),
        config=lambda **_: "",
        # The sample projects' own macros, as they render on DuckDB
        # (dbt_projects/marketing/macros/sha256_hex.sql, default__ variant).
        sha256_hex=lambda expression: f"sha256({expression})",
    )


def model_columns(node: dict[str, Any]) -> str:
    """The select list of a model's output: with an enforced contract, its
    declared columns in order, cast to their ``data_type`` (as dbt builds the
    table); otherwise every column, as the platform publishes it."""
    if not node.get("config", {}).get("contract", {}).get("enforced"):
        return "*"
    selected = []
    for column in node["columns"].values():
        name, kind = ident(column["name"]), column.get("data_type")
        selected.append(f"CAST({name} AS {kind}) AS {name}" if kind else name)
    return ", ".join(selected)


def model_relation(
    con: duckdb.DuckDBPyConnection, model: DbtModel, home: Path
) -> duckdb.DuckDBPyRelation:
    """Compute a dbt model in ``con`` from its rendered SQL."""
    return con.sql(render_model(con, model, home)).select(model_columns(model.node))


def build(con: duckdb.DuckDBPyConnection, step: Step, home: Path, landing: Path) -> None:
    """Compute one product in ``con`` and write its output columns to Parquet."""
    if isinstance(step, DbtModel):
        relation = model_relation(con, step, home)
    else:
        relation = product_relation(con, step, home, landing)
    target = output_file(home, step.ref)
    target.parent.mkdir(parents=True, exist_ok=True)
    relation.write_parquet(str(target), compression="zstd")


def run(home: Path, landing: Path) -> dict[str, float]:
    """Build the whole mesh; return seconds per product (in build order)."""
    spill = home / "tmp"
    spill.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    con = duckdb.connect(":memory:", config={"temp_directory": str(spill)})
    # The products' SQL calls the mesh's timestamp macros: the same SQL needs them.
    define_timestamp_macros(con)
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

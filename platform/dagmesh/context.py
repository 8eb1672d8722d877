"""What a Python product's function receives."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import duckdb

from dagmesh.atomic import replaced_atomically
from dagmesh.product import Product
from dagmesh.sql import ident


@dataclass
class ProductContext:
    """The DuckDB connection of this step, with every input attached as a table.

    Inputs (``consumes`` and ``sources``) are views named by their alias, so a
    function can use SQL (:meth:`sql`) or relations (:meth:`input`) and keep
    large data inside DuckDB.
    """

    product: Product
    con: duckdb.DuckDBPyConnection
    run_id: str
    domain_dir: Path
    log: logging.Logger | logging.LoggerAdapter

    def input(self, alias: str) -> duckdb.DuckDBPyRelation:
        """An input (consumed product or landing source) as a DuckDB relation."""
        if alias not in self.product.consumes and alias not in self.product.sources:
            known = sorted([*self.product.consumes, *self.product.sources])
            raise KeyError(f"{self.product.ref} has no input {alias!r}; its inputs are {known}")
        return self.con.table(ident(alias))

    def sql(self, query: str, params: dict | None = None) -> duckdb.DuckDBPyRelation:
        """Run SQL in this step's DuckDB; inputs are tables named by alias,
        ``$name`` placeholders take ``params``."""
        return self.con.sql(query, params=params) if params else self.con.sql(query)

    @property
    def outbox(self) -> Path:
        """The domain's outbox for files sent to external systems (reverse ETL)."""
        path = self.domain_dir / "outbox"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def send_to_outbox(self, relation: duckdb.DuckDBPyRelation, name: str) -> Path:
        """Write ``relation`` as CSV to ``outbox/<name>`` and return the path.

        The file is written aside and renamed, so an uploader watching the
        outbox never picks up a partial file.
        """
        target = self.outbox / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with replaced_atomically(target) as partial:
            relation.write_csv(str(partial))
        return target

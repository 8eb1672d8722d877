"""What a Python product's function receives."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import duckdb

from dagmesh.declarations.product import Product
from dagmesh.engine.access import refused
from dagmesh.engine.atomic import replaced_atomically
from dagmesh.engine.grants import Grant
from dagmesh.engine.sql import ident
from dagmesh.errors import DagmeshError

MAX_NAME_PART = 200  # bytes per path part: room for the temporary name beside it


class OutputNameError(DagmeshError, ValueError):
    """A file name a product writes would leave the product's own folder."""


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
    grant: Grant | None = None

    def input(self, alias: str) -> duckdb.DuckDBPyRelation:
        """An input (consumed product or landing source) as a DuckDB relation."""
        if alias not in self.product.consumes and alias not in self.product.sources:
            known = sorted([*self.product.consumes, *self.product.sources])
            raise KeyError(f"{self.product.ref} has no input {alias!r}; its inputs are {known}")
        return self.con.table(ident(alias))

    def sql(self, query: str, params: dict | None = None) -> duckdb.DuckDBPyRelation:
        """Run SQL in this step's DuckDB; inputs are tables named by alias,
        ``$name`` placeholders take ``params``."""
        try:
            return self.con.sql(query, params=params) if params else self.con.sql(query)
        except duckdb.Error as error:
            # Recorded here, so a function that catches it cannot hide the attempt.
            if denied := refused(error, self.grant):
                raise denied from error
            raise

    @property
    def outbox(self) -> Path:
        """The domain's outbox for files sent to external systems (reverse ETL)."""
        path = self.domain_dir / "outbox"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def send_to_outbox(self, relation: duckdb.DuckDBPyRelation, name: str) -> Path:
        """Write ``relation`` as CSV to ``outbox/<name>`` and return the path.

        ``name`` is a relative path inside the outbox (``platform/file.csv``);
        one with ``..``, an absolute path, a NUL, a hidden part or a folder
        leading elsewhere is refused with OutputNameError. The file is written
        aside and renamed, so an uploader watching the outbox never picks up a
        partial file.
        """
        target = self.outbox_path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.outbox_path(name)  # again: a folder just made must not lead elsewhere
        with replaced_atomically(target) as partial:
            try:
                relation.write_csv(str(partial))
            except duckdb.Error as error:
                if denied := refused(error, self.grant):
                    raise denied from error
                raise
        return target

    def outbox_path(self, name: str) -> Path:
        """Where ``outbox/<name>`` is; raises OutputNameError unless it stays
        inside this domain's outbox."""
        problem = output_name_problem(name)
        outbox = self.outbox.resolve()
        target = outbox.joinpath(*PurePosixPath(name).parts) if problem is None else outbox
        if problem is None and not target.resolve().is_relative_to(outbox):
            problem = "leads out of the outbox through a link"
        if problem is not None:
            raise OutputNameError(
                f"{self.product.ref}: outbox file name {name!r} {problem}; use a relative "
                "name made of plain folder and file names (letters, digits, - _ .)"
            )
        return target


def output_name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a file inside a product's folder, or None."""
    if not isinstance(name, str) or not name:
        return "is empty or not text"
    if any(ord(c) < 32 for c in name):
        return "contains a control character"
    if "\\" in name:
        return "contains a backslash"
    path = PurePosixPath(name)
    if path.is_absolute():
        return "is absolute"
    parts = name.split("/")
    if ".." in parts:
        return "goes outside its folder (..)"
    if "" in parts:
        return "has an empty part (//)"
    if any(part.startswith(".") for part in parts):
        return "has a hidden part (starting with '.')"
    if any(len(part.encode()) > MAX_NAME_PART for part in path.parts):
        return f"has a part longer than {MAX_NAME_PART} bytes"
    return None

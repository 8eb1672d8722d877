"""What a step may touch, enforced by DuckDB.

A product's step may read and write its own domain's working folders (its
staging folder, the domain's ``tmp/`` spill and ``outbox/``), read the
landing files its declaration names and the pinned published files of the
products it consumes with access; nothing else. :func:`lock` gives DuckDB
exactly that (``allowed_directories``/``allowed_paths``), switches every
other file access off (``enable_external_access=false``) and locks the
configuration, so SQL in a product, a contract rule or a dbt model cannot
widen it again. :func:`denial` reads DuckDB's refusal out of its error;
:func:`dagmesh.engine.access.refused` turns it into a :class:`GrantDeniedError`
naming the step and the path, and records it as a denied read.

Only DuckDB is locked down: a Python product's own code (``open()``, a
second DuckDB) runs with the process's rights, like any code in the
repository, and is reviewed as code.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from dagmesh.engine.atomic import write_atomically
from dagmesh.engine.sql import literal
from dagmesh.errors import DagmeshError


class GrantDeniedError(DagmeshError, PermissionError):
    """A step tried to read or write outside what the platform grants it, or
    to change the DuckDB configuration that enforces the grant."""


GRANTED = (
    "its own staging, tmp and outbox folders, the landing files it declares and the pinned "
    "versions of the products it consumes"
)

_PATH = re.compile(r'Cannot access (?:file|directory) "([^"\n]*)"')
_LOCKED = re.compile(r'Cannot change configuration option "([^"\n]*)" - the configuration has')


@dataclass(frozen=True)
class Grant:
    """What one step may touch: ``directories`` it reads and writes (with
    everything under them), ``files`` it reads."""

    step: str  # the product (``domain/name``) or dbt project the step builds
    home: Path
    directories: tuple[Path, ...] = ()
    files: tuple[Path | str, ...] = ()  # local paths, or object URLs (``s3://...``)
    run_id: str = field(default="", compare=False)

    def allowed_directories(self) -> list[str]:
        """The directories as DuckDB compares them: as given and resolved,
        each with a trailing ``/`` (DuckDB matches prefixes: ``/a/b`` would
        also allow ``/a/bc``)."""
        return sorted({f"{str(p).rstrip('/')}/" for p in _spellings(self.directories)})

    def allowed_paths(self) -> list[str]:
        """The files as DuckDB compares them: as given and resolved."""
        return sorted({str(p) for p in _spellings(self.files)})

    def to_json(self) -> str:
        """The grant as JSON (a dbt run reads it in its own process)."""
        return json.dumps(
            {
                "step": self.step,
                "home": str(self.home),
                "run_id": self.run_id,
                "directories": [str(p) for p in self.directories],
                "files": [str(p) for p in self.files],
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> Grant:
        """The grant :meth:`to_json` wrote."""
        data = json.loads(text)
        return cls(
            step=data["step"],
            home=Path(data["home"]),
            directories=tuple(Path(p) for p in data["directories"]),
            files=tuple(p if is_url(p) else Path(p) for p in data["files"]),
            run_id=data.get("run_id", ""),
        )

    def write(self, path: Path) -> None:
        """Save the grant to ``path`` atomically."""
        write_atomically(path, self.to_json(), durable=False)


def is_url(path: Path | str) -> bool:
    """Whether ``path`` names an object (``s3://bucket/key``), not a local file."""
    return isinstance(path, str) and "://" in path


def _spellings(paths: Iterable[Path | str]) -> set[Path | str]:
    """Each path as given (absolute) and resolved: DuckDB checks the text of
    the path a query names, and the platform names some paths resolved.
    An object URL is taken exactly as given."""
    found: set[Path | str] = set()
    for path in paths:
        if is_url(path):
            found.add(path)
            continue
        absolute = Path(path).absolute()
        found.add(absolute)
        found.add(absolute.resolve())
    return found


def lock(con: duckdb.DuckDBPyConnection, grant: Grant) -> None:
    """Restrict ``con`` to ``grant`` and lock its configuration.

    DuckDB takes ``allowed_directories``/``allowed_paths`` only after the
    database started and while external access is still on, so the order
    matters; once ``lock_configuration`` is set no statement can change any
    option again (not even this one).
    """
    con.execute(f"SET allowed_directories = {_list(grant.allowed_directories())}")
    con.execute(f"SET allowed_paths = {_list(grant.allowed_paths())}")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def _list(values: list[str]) -> str:
    return "[" + ", ".join(literal(v) for v in values) + "]::VARCHAR[]"


@dataclass(frozen=True)
class Denial:
    """What DuckDB refused: a path outside the grant, or a configuration change."""

    path: str | None
    option: str | None = None

    def target(self, home: Path) -> str:
        """The product a refused path belongs to (``domain/product``), else
        the path (or the configuration option) itself."""
        if self.path is None:
            return f"duckdb configuration {self.option or '(extensions)'}"
        parts = Path(os.path.normpath(self.path)).parts
        domains = Path(home).absolute().parts + ("domains",)
        if parts[: len(domains)] == domains and len(parts) > len(domains) + 2:
            domain, area, product = parts[len(domains) : len(domains) + 3]
            if area == "ports":
                return f"{domain}/{product}"
        return self.path

    def reason(self) -> str:
        """What was refused, for the audit log."""
        if self.option is not None:
            return f"tried to change DuckDB's configuration ({self.option})"
        if self.path is None:
            return "tried to load a DuckDB extension from disk"
        return f"tried to access {self.path}, outside the step's grant"

    def message(self, step: str) -> str:
        """One sentence naming the step, the path or option, and the rule."""
        if self.option is not None:
            return (
                f"{step}: may not change DuckDB's configuration ({self.option}): the platform "
                f"locks each step to what it is granted ({GRANTED})"
            )
        if self.path is None:
            return f"{step}: may not load DuckDB extensions from disk (locked by the platform)"
        return (
            f"{step}: access denied to {self.path}: a step may touch only {GRANTED}; "
            "declare what it needs (consumes= or a Landing source) instead of naming a path"
        )


def denial(text: str) -> Denial | None:
    """The refusal DuckDB's error text (or a dbt message quoting it)
    describes, or None when it is another error."""
    if match := _PATH.search(text):
        return Denial(match.group(1))
    if match := _LOCKED.search(text):
        return Denial(None, match.group(1))
    if "Permission Error" in text and "extensions is disabled" in text:
        return Denial(None)
    return None

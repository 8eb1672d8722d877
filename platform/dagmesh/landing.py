"""Reading raw source files: shape checks, quarantine of unusable rows, and
clear errors for malformed files."""

from __future__ import annotations

import csv
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import duckdb

from dagmesh.errors import DagmeshError
from dagmesh.product import Landing, landing_escape, landing_path_problem
from dagmesh.sql import ident, literal, path_list

REJECT_REASON = "_reject_reason"
SOURCE_FILE = "_source_file"


class SourceFileError(DagmeshError, RuntimeError):
    """A landing file cannot be read: names the product, the file and the problem."""


@dataclass
class LandingScan:
    """What one product read from one landing source."""

    alias: str
    files: list[Path]
    quarantine_file: Path | None


def landing_files(landing_root: Path, source: Landing, product_ref: str = "") -> list[Path]:
    """The files of a landing source, in name order.

    Files whose name starts with ``.`` (uploads in progress) are skipped. A
    source folder or file that leads out of the landing area (``..``, a
    symbolic link), or an entry that is not a regular file (a FIFO, a
    folder named ``x.csv``) raises SourceFileError naming ``product_ref``
    and the path: reading it could leak another domain's data or hang.
    """
    who = f"{product_ref}: " if product_ref else ""
    problem = landing_path_problem(source.path) or landing_escape(landing_root, source.path)
    if problem:
        raise SourceFileError(f"{who}landing source path {source.path!r} {problem}")
    folder = landing_root / source.path
    if not folder.is_dir():
        return []
    root = Path(landing_root).resolve()
    files = []
    for path in sorted(folder.glob(f"*{source.suffix}")):
        if path.name.startswith("."):
            continue
        if not path.resolve().is_relative_to(root):
            raise SourceFileError(
                f"{who}landing file {path} leads out of the landing area through a link; refused"
            )
        files.append(_regular_file(path, who))
    return files


def _regular_file(path: Path, who: str) -> Path:
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        raise SourceFileError(
            f"{who}landing file {path} cannot be read ({error.strerror})"
        ) from error
    if not stat.S_ISREG(mode):
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a folder"
            if stat.S_ISDIR(mode)
            else "a device or socket"
        )
        raise SourceFileError(
            f"{who}landing file {path} is not a regular file ({kind}); refused, as reading "
            "it could hang the run"
        )
    return path


def _reader(source: Landing, files: list[Path], with_file_name: bool = True) -> str:
    columns = (
        "{" + ", ".join(f"{literal(n)}: {literal(t)}" for n, t in source.column_types.items()) + "}"
    )
    file_name = f", filename = {literal(SOURCE_FILE)}" if with_file_name else ""
    paths = path_list(files)
    if source.format == "csv":
        return (
            f"read_csv({paths}, header = true, auto_detect = false, delim = ',', quote = '\"', "
            f"escape = '\"', strict_mode = true, columns = {columns}{file_name})"
        )
    if source.format == "json":
        return f"read_json({paths}, format = 'newline_delimited', columns = {columns}{file_name})"
    return f"read_parquet({paths}{file_name})"


def _file_columns(con: duckdb.DuckDBPyConnection, source: Landing, file: Path) -> list[str]:
    if source.format == "csv":
        with open(file, encoding="utf-8", newline="") as handle:
            return next(csv.reader(handle), [])
    if source.format == "json":
        query = f"DESCRIBE SELECT * FROM read_json({literal(file)}, format = 'newline_delimited')"
    else:
        query = f"DESCRIBE SELECT * FROM read_parquet({literal(file)})"
    return [row[0] for row in con.execute(query).fetchall()]


def _problem(error: Exception) -> str:
    if isinstance(error, UnicodeDecodeError):
        return f"not valid UTF-8 ({error.reason} at byte {error.start})"
    # DuckDB says where, then why; the raw line it echoes may hold personal data.
    lines = [
        line.strip()
        for line in str(error).splitlines()
        if line.strip() and not line.startswith(("Original Line", "Possible Solution"))
    ]
    return "; ".join(lines[:2]) or type(error).__name__


def check_file_shape(
    con: duckdb.DuckDBPyConnection, product_ref: str, source: Landing, file: Path
) -> None:
    """Raise SourceFileError unless ``file`` has exactly the expected columns."""
    expected = list(source.column_types)
    try:
        found = _file_columns(con, source, file)
    except (duckdb.Error, UnicodeDecodeError, OSError) as error:
        raise SourceFileError(f"{product_ref}: cannot read {file}: {_problem(error)}") from error
    ordered = source.format == "csv"
    if (found != expected) if ordered else (set(found) != set(expected)):
        missing = [c for c in expected if c not in found]
        extra = [c for c in found if c not in expected]
        raise SourceFileError(
            f"{product_ref}: {file} has the wrong columns: expected {expected}, found {found}"
            f" (missing {missing}, unexpected {extra})"
        )


def diagnose(
    con: duckdb.DuckDBPyConnection, product_ref: str, source: Landing, files: list[Path]
) -> None:
    """Read every file in full on its own; raise SourceFileError for the first
    one that fails. Used after a bulk read failed, to name the culprit."""
    for file in files:
        widths = ", ".join(f"max(length({ident(c)}::VARCHAR))" for c in source.column_types)
        try:
            con.execute(
                f"SELECT count(*), {widths} FROM {_reader(source, [file], False)}"
            ).fetchall()
        except duckdb.Error as error:
            raise SourceFileError(
                f"{product_ref}: malformed file {file}: {_problem(error)}"
            ) from error


def attach_landing(
    con: duckdb.DuckDBPyConnection,
    product_ref: str,
    alias: str,
    source: Landing,
    landing_root: Path,
    quarantine_dir: Path,
    files: list[Path] | None = None,
) -> LandingScan:
    """Expose a landing source as the view ``alias`` holding its usable rows.

    Checks every file's columns first, writes the rows matching a
    ``reject_if`` rule to ``quarantine_dir/<alias>.parquet`` with their
    reason and file, and leaves the rest (plus ``_source_file``) in the view.
    ``files`` are the source's files when the caller listed them already
    (:func:`landing_files`, to grant the step exactly those).
    """
    if files is None:
        files = landing_files(landing_root, source, product_ref)
    if not files:
        raise SourceFileError(
            f"{product_ref}: no {source.format} files (*{source.suffix}) in "
            f"{landing_root / source.path}; run `dagmesh generate` or deliver the source files"
        )
    for file in files:
        check_file_shape(con, product_ref, source, file)

    raw = ident(f"__raw_{alias}")
    con.execute(f"CREATE OR REPLACE TEMP VIEW {raw} AS SELECT * FROM {_reader(source, files)}")
    if not source.reject_if:
        con.execute(f"CREATE OR REPLACE TEMP VIEW {ident(alias)} AS SELECT * FROM {raw}")
        return LandingScan(alias, files, None)

    cases = " ".join(
        f"WHEN ({predicate}) THEN {literal(reason)}"
        for reason, predicate in source.reject_if.items()
    )
    judged = ident(f"__judged_{alias}")
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {judged} AS "
        f"SELECT *, CASE {cases} END AS {REJECT_REASON} FROM {raw}"
    )
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    quarantine_file = quarantine_dir / f"{alias}.parquet"
    try:
        con.execute(
            f"COPY (SELECT * FROM {judged} WHERE {REJECT_REASON} IS NOT NULL) "
            f"TO {literal(quarantine_file)} (FORMAT parquet)"
        )
    except duckdb.Error:
        diagnose(con, product_ref, source, files)
        raise
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {ident(alias)} AS "
        f"SELECT * EXCLUDE ({REJECT_REASON}) FROM {judged} WHERE {REJECT_REASON} IS NULL"
    )
    return LandingScan(alias, files, quarantine_file)

"""Reading raw source files: shape checks, quarantine of unusable rows, and
clear errors for malformed files."""

from __future__ import annotations

import csv
import os
import re
import stat
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb

from dagmesh.declarations.product import Landing, landing_escape, landing_path_problem
from dagmesh.engine.sql import ident, literal, path_list
from dagmesh.errors import DagmeshError

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


# The header is read on its own, at most this much: a file with no line
# terminator (or a header with an unclosed quote) must not be read whole.
MAX_HEADER_BYTES = 64 * 1024
# A column name is shown in a message only if it looks like one; anything
# else in a header line may be row data (a missing header, a stray quote).
_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def _csv_header(product_ref: str, file: Path) -> list[str]:
    with open(file, "rb") as handle:
        head = handle.readline(MAX_HEADER_BYTES + 1)
    if len(head) > MAX_HEADER_BYTES:
        raise SourceFileError(
            f"{product_ref}: malformed file {file}: line 1 (the header) is longer than "
            f"{MAX_HEADER_BYTES} bytes (a missing line terminator, or not a CSV file)"
        )
    text = head.decode("utf-8").rstrip("\r\n")
    try:
        return next(csv.reader([text], strict=True), [])
    except csv.Error:
        raise SourceFileError(
            f"{product_ref}: malformed file {file}: line 1 (the header) has an unterminated quote"
        ) from None


def _file_columns(
    con: duckdb.DuckDBPyConnection, product_ref: str, source: Landing, file: Path
) -> list[str]:
    if source.format == "csv":
        return _csv_header(product_ref, file)
    if source.format == "json":
        query = f"DESCRIBE SELECT * FROM read_json({literal(file)}, format = 'newline_delimited')"
    else:
        query = f"DESCRIBE SELECT * FROM read_parquet({literal(file)})"
    return [row[0] for row in con.execute(query).fetchall()]


# What DuckDB says, as (pattern, rule): only these facts reach a message,
# never DuckDB's own text, which quotes the offending line or value.
_RULES = [
    (r"Expected Number of Columns: (\d+) Found: (\d+)", "expected {0} values, found {1}"),
    (r"unterminated quote", "a quoted value is never closed (unterminated quote)"),
    (
        r"Maximum line size of (\d+) bytes exceeded",
        "a line longer than {0} bytes (a missing line terminator?)",
    ),
    (r"(?i)invalid unicode|not utf-8", "not valid UTF-8"),
    (
        r'"maximum_object_size" of (\d+) bytes exceeded',
        "a JSON line longer than {0} bytes (a missing line terminator?)",
    ),
    (r"Malformed JSON[^:]*: ([a-z][a-z ,]{0,60})\.", "malformed JSON ({0})"),
    (r"JSON transform error", "a JSON value does not have its declared type"),
    (r"(?i)magic bytes|parquet", "not a readable Parquet file (truncated or corrupt)"),
    (
        r"(?i)could not convert|conversion error|out of range",
        "a value cannot be converted to its declared type",
    ),
]
_LINE = re.compile(r"(?:CSV Error on Line:|in line) ?(\d+)")
_COLUMN = re.compile(r'(?:when converting column|source column) "?([A-Za-z_][A-Za-z0-9_]*)"?')


def _problem(error: Exception, columns: Collection[str] = ()) -> str:
    """Where and why a file could not be read (line, column, rule), from
    DuckDB's message: never DuckDB's text itself, which quotes the row."""
    if isinstance(error, UnicodeDecodeError):
        return f"not valid UTF-8 ({error.reason} at byte {error.start})"
    text = str(error)
    where = []
    if line := _LINE.search(text):
        where.append(f"line {line.group(1)}")
    if (column := _COLUMN.search(text)) and column.group(1) in columns:
        where.append(f"column {column.group(1)}")
    rule = next(
        (
            template.format(*match.groups())
            for pattern, template in _RULES
            if (match := re.search(pattern, text))
        ),
        f"{type(error).__name__} (DuckDB's details are withheld: they may quote row data)",
    )
    return ": ".join([", ".join(where), rule]) if where else rule


def _header_problem(expected: list[str], found: list[str]) -> str:
    """The wrong-columns message, showing only names that look like names
    and only when line 1 is a header at all."""
    if not set(found) & set(expected):
        return (
            f"line 1 has none of the expected columns {expected}: the header is missing or "
            "the file is another source's (its values are not shown: they may be personal data)"
        )
    missing = [c for c in expected if c not in found]
    extra = [
        c if _PLAIN_NAME.match(c) else f"column {i} (name not shown)"
        for i, c in enumerate(found, 1)
        if c not in expected
    ]
    return (
        f"has the wrong columns: expected {expected}, found {len(found)} columns"
        f" (missing {missing}, unexpected {extra})"
    )


def check_file_shape(
    con: duckdb.DuckDBPyConnection, product_ref: str, source: Landing, file: Path
) -> None:
    """Raise SourceFileError unless ``file`` has exactly the expected columns."""
    expected = list(source.column_types)
    try:
        found = _file_columns(con, product_ref, source, file)
    except (duckdb.Error, UnicodeDecodeError, OSError) as error:
        # from None: DuckDB's error (kept as the cause) would carry the row.
        problem = _problem(error, expected)
        raise SourceFileError(f"{product_ref}: cannot read {file}: {problem}") from None
    ordered = source.format == "csv"
    if (found != expected) if ordered else (set(found) != set(expected)):
        raise SourceFileError(f"{product_ref}: {file} {_header_problem(expected, found)}")


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
            problem = _problem(error, list(source.column_types))
            raise SourceFileError(f"{product_ref}: malformed file {file}: {problem}") from None


def _first_line_holding(file: Path, value: str) -> int | None:
    """The number of the first line of a text file that holds ``value``."""
    needle = value.encode("utf-8")
    with open(file, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if needle in line:
                return number
    return None


def locate_value(
    con: duckdb.DuckDBPyConnection,
    sources: Mapping[str, tuple[Landing, list[Path]]],
    value: str,
    column: str | None = None,
) -> tuple[Path, int | None, str] | None:
    """Where a value an error quoted comes from: the first (file, line, column)
    of the landing sources holding it (``column`` first, if a source has
    it), or None. The value is only searched for, never reported."""
    for source, files in sources.values():
        names = [column] if column in source.column_types else list(source.column_types)
        matches = ", ".join(
            f"bool_or(contains({ident(c)}::VARCHAR, $value)) AS {ident(c)}" for c in names
        )
        for file in files:
            try:
                row = con.execute(
                    f"SELECT {matches} FROM {_reader(source, [file], False)}", {"value": value}
                ).fetchone()
            except duckdb.Error:
                continue
            hit = next((c for c, found in zip(names, row or (), strict=False) if found), None)
            if hit is not None:
                line = None if source.format == "parquet" else _first_line_holding(file, value)
                return file, line, hit
    return None


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
    # Rejected rows are raw source rows: owner-only whatever the umask.
    quarantine_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    quarantine_dir.chmod(0o700)
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

"""A durable, queryable audit trail of publishes and cross-domain reads.

Every publish of a product, every cross-domain read and every denied read is
appended as one JSON object per line to ``<home>/audit/events-<YYYY-MM>.jsonl``.
Monthly files let operators rotate or archive old months without touching the
file that is being written to.

Many processes (parallel Dagster run workers) append at the same time, so each
event is written with a single ``os.write`` on an ``O_APPEND`` descriptor: the
kernel places the whole line at the end of the file in one step, so lines from
different writers never interleave. ``fsync`` makes the event survive a crash
once :func:`record` returns.

:func:`query` reads the files back with DuckDB.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
from rich.table import Table

from dagmesh.engine.sql import ident

AUDIT_DIR = "audit"
EVENTS = frozenset({"publish", "read", "read_denied"})
COLUMNS = (
    "at",
    "event",
    "product",
    "consumer",
    "version",
    "rows",
    "contract_version",
    "run_id",
    "reason",
)

_FILE_GLOB = "events-*.jsonl"
_RESERVED = frozenset({"at", "event"})


def audit_dir(home: Path) -> Path:
    """The directory holding the monthly event files."""
    return Path(home) / AUDIT_DIR


def _check_event(event: str) -> None:
    if event not in EVENTS:
        raise ValueError(f"unknown audit event {event!r}; expected one of {sorted(EVENTS)}")


def record(home: Path, event: str, **fields: Any) -> None:
    """Append one event to this month's audit file.

    The line carries ``at`` (UTC ISO timestamp with microseconds) and ``event``
    followed by ``fields``. Raises :class:`ValueError` for an unknown event or a
    field named ``at``/``event``, and :class:`OSError` if the line could not be
    written whole.
    """
    _check_event(event)
    clash = _RESERVED & fields.keys()
    if clash:
        raise ValueError(f"audit fields may not be named {sorted(clash)}")
    now = datetime.now(UTC)
    # Fixed-width ISO text ("+00:00", always 6 fractional digits) so lines sort
    # and parse the same way whichever process wrote them.
    entry = {"at": now.isoformat(timespec="microseconds"), "event": event, **fields}
    # ensure_ascii keeps the line pure ASCII and escapes any newline inside a
    # value, so one event is always exactly one line. default=str covers Paths etc.
    line = (json.dumps(entry, separators=(",", ":"), default=str) + "\n").encode()

    directory = audit_dir(home)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"events-{now:%Y-%m}.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        # One write of the whole line: a second write for a remainder could land
        # after another process's line, so a short write is an error, not a retry.
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"short write to {path}: {written} of {len(line)} bytes")
        os.fsync(fd)
    finally:
        os.close(fd)


def record_publish(
    home: Path,
    *,
    run_id: str,
    product: str,
    version: str,
    rows: int,
    contract_version: str | None,
) -> None:
    """Record that ``product`` (a ``domain/product`` ref) published ``version``."""
    record(
        home,
        "publish",
        run_id=run_id,
        product=product,
        version=version,
        rows=rows,
        contract_version=contract_version,
    )


def record_read(home: Path, *, run_id: str, consumer: str, product: str, version: str) -> None:
    """Record that ``consumer`` (a product ref or a domain name) read ``product``'s ``version``."""
    record(home, "read", run_id=run_id, consumer=consumer, product=product, version=version)


def record_denied(home: Path, *, run_id: str, consumer: str, product: str, reason: str) -> None:
    """Record that ``consumer`` was refused a read of ``product``, and why."""
    record(home, "read_denied", run_id=run_id, consumer=consumer, product=product, reason=reason)


def _plain(value: Any) -> Any:
    """Undo DuckDB's type sniffing so values come back as they were recorded."""
    # read_json turns ISO strings into TIMESTAMPTZ/DATE and run ids into UUID.
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def query(home: Path, product: str | None = None, event: str | None = None) -> list[dict[str, Any]]:
    """Audit events, oldest first, as dicts (fields absent from an event are ``None``).

    ``product`` keeps events where it is the product published/read or the
    consumer; ``event`` keeps one kind of event (:class:`ValueError` if unknown).
    Returns an empty list when nothing has been recorded yet. A line torn by a
    crash mid-write is skipped rather than making the whole trail unreadable.
    """
    if event is not None:
        _check_event(event)
    # An explicit, sorted list of files rather than a DuckDB glob: the data
    # directory's own path may contain glob characters, and month names sort
    # chronologically.
    files = sorted(str(p) for p in audit_dir(home).glob(_FILE_GLOB) if p.is_file())
    if not files:
        return []
    at, seq = ident("at"), ident("_seq")
    # sample_size=-1: sniff types from every line, otherwise a later value that
    # doesn't fit the sniffed type (say a run id that isn't a UUID) would be
    # nulled by ignore_errors. The empty UNION ALL BY NAME guarantees the
    # filter columns exist even before any read has been recorded. All values
    # travel as parameters, never as SQL text.
    sql = f"""
        WITH log AS (
            SELECT *, row_number() OVER () AS {seq}
            FROM read_json(
                $files, format = 'newline_delimited', union_by_name = true,
                sample_size = -1, ignore_errors = true
            )
            UNION ALL BY NAME
            SELECT NULL::VARCHAR AS event, NULL::VARCHAR AS product,
                   NULL::VARCHAR AS consumer
            WHERE false
        )
        SELECT * EXCLUDE ({seq}) FROM log
        WHERE event IS NOT NULL
          AND ($product::VARCHAR IS NULL OR product = $product OR consumer = $product)
          AND ($event::VARCHAR IS NULL OR event = $event)
        ORDER BY {at}, {seq}
    """
    with duckdb.connect() as con:
        cursor = con.execute(sql, {"files": files, "product": product, "event": event})
        names = [column[0] for column in cursor.description]
        rows = cursor.fetchall()
    return [{name: _plain(value) for name, value in zip(names, row, strict=True)} for row in rows]


def format_events(events: list[dict[str, Any]]) -> Table:
    """A rich table of ``events`` for the CLI; blank cells where a field is absent."""
    table = Table(title="Audit log")
    for column in COLUMNS:
        table.add_column(column, no_wrap=column in ("at", "run_id"))
    for entry in events:
        table.add_row(*("" if entry.get(c) is None else str(entry[c]) for c in COLUMNS))
    return table

"""Parsing source timestamps to UTC, refusing impossible UTC offsets.

DuckDB's ``::TIMESTAMPTZ`` accepts any two-digit offset, ``+99:99``
included, and silently shifts the time by four days. Every step's DuckDB
gets two macros that products use on raw timestamp text instead:

- ``utc_timestamp(text)``: the UTC ``TIMESTAMP``; NULL stays NULL; an offset
  outside -12:00..+14:00 (or with minutes of 60 or more), or text that is no
  timestamp, fails the step (the platform then names the file and line);
- ``try_utc_timestamp(text)``: the same, NULL instead of failing (for
  ``reject_if`` rules and optional columns).
"""

from __future__ import annotations

import duckdb

# Earliest and latest offsets in use anywhere (Baker Island, Line Islands).
MIN_OFFSET_MINUTES = -12 * 60
MAX_OFFSET_MINUTES = 14 * 60

# try_cast, not ::INTEGER: DuckDB 1.4 may evaluate both sides of the OR in
# dagmesh_offset_ok, and '' (no offset) must not fail the cast there. The
# regex admits only digits, so a non-empty offset always casts.
# The trailing offset after a time of day: +HH, +HHMM or +HH:MM ('' if none or Z).
_OFFSET = r"\d:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*([+-]\d{2}(?::?\d{2})?)$"

MACROS = f"""
CREATE OR REPLACE TEMP MACRO dagmesh_utc_offset(s) AS
    regexp_extract(trim(s::VARCHAR), '{_OFFSET}', 1);
CREATE OR REPLACE TEMP MACRO dagmesh_offset_minutes(o) AS
    (CASE WHEN o[1] = '-' THEN -1 ELSE 1 END)
    * (coalesce(try_cast(o[2:3] AS INTEGER), 0) * 60
       + coalesce(try_cast(nullif(replace(o[4:], ':', ''), '') AS INTEGER), 0));
CREATE OR REPLACE TEMP MACRO dagmesh_offset_ok(s) AS
    dagmesh_utc_offset(s) = ''
    OR (
        coalesce(try_cast(nullif(replace(dagmesh_utc_offset(s)[4:], ':', ''), '') AS INTEGER), 0)
            < 60
        AND dagmesh_offset_minutes(dagmesh_utc_offset(s))
            BETWEEN {MIN_OFFSET_MINUTES} AND {MAX_OFFSET_MINUTES}
    );
CREATE OR REPLACE TEMP MACRO try_utc_timestamp(s) AS
    CASE WHEN dagmesh_offset_ok(s) THEN timezone('UTC', try_cast(s AS TIMESTAMPTZ)) END;
CREATE OR REPLACE TEMP MACRO utc_timestamp(s) AS
    CASE
        WHEN s IS NULL THEN NULL
        WHEN dagmesh_offset_ok(s) THEN timezone('UTC', s::VARCHAR::TIMESTAMPTZ)
        ELSE error(
            'UTC offset out of range (allowed -12:00 to +14:00, minutes below 60) in "'
            || s::VARCHAR || '"'
        )
    END;
"""


def define_timestamp_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Define ``utc_timestamp`` and ``try_utc_timestamp`` in ``con``."""
    con.execute(MACROS)

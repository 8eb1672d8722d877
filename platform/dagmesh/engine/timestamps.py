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

# The trailing offset after a time of day, as ::TIMESTAMPTZ reads it: +HH,
# +HHMM or +HH:MM (none, or Z, is UTC).
_TIME = r"\d:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*"
# Those outside MIN..MAX_OFFSET_MINUTES or with minutes of 60 or more, as one
# regular expression: one match per value (RE2 has no look-ahead, so the
# complement of the allowed offsets is spelled out).
_IMPOSSIBLE_OFFSET = (
    r"(\+(1[5-9]|[2-9]\d)(:?\d{2})?"  # +15 and beyond
    r"|-(1[3-9]|[2-9]\d)(:?\d{2})?"  # -13 and beyond
    r"|[+-]\d{2}:?[6-9]\d"  # minutes 60-99
    r"|\+14:?(0[1-9]|[1-5]\d)"  # past +14:00
    r"|-12:?(0[1-9]|[1-5]\d))$"  # past -12:00
)
assert (MIN_OFFSET_MINUTES, MAX_OFFSET_MINUTES) == (-12 * 60, 14 * 60), "update the expression"

MACROS = f"""
CREATE OR REPLACE TEMP MACRO dagmesh_offset_ok(s) AS
    NOT regexp_matches(trim(s::VARCHAR), '{_TIME}{_IMPOSSIBLE_OFFSET}');
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

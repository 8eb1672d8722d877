"""The timestamp macros against the rule they implement, every offset spelling
exhaustively: +HH, +HHMM and +HH:MM for hours and minutes 00-99, both signs,
after times of day of each shape ::TIMESTAMPTZ reads."""

from __future__ import annotations

import re

import duckdb
import pytest

from dagmesh.engine.timestamps import (
    MAX_OFFSET_MINUTES,
    MIN_OFFSET_MINUTES,
    define_timestamp_macros,
)

TIMES = [
    "2026-03-01T10:00:00",
    "2026-03-01 10:00",
    "2026-03-01T10:00:00.123 ",
    "1999-12-31 23:59:59,5",
]
# The offset as the rule reads it, written independently of the macros.
OFFSET = re.compile(r"\d:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*([+-])(\d{2})(?::?(\d{2}))?$")


def allowed(text: str) -> bool:
    """The rule: no offset, or one within -12:00..+14:00 with minutes below 60."""
    found = OFFSET.search(text.strip())
    if found is None:
        return True
    sign, hours, minutes = found.group(1), int(found.group(2)), int(found.group(3) or 0)
    total = (-1 if sign == "-" else 1) * (hours * 60 + minutes)
    return minutes < 60 and MIN_OFFSET_MINUTES <= total <= MAX_OFFSET_MINUTES


def spellings() -> list[str]:
    offsets = []
    for sign in "+-":
        for hours in range(100):
            offsets.append(f"{sign}{hours:02d}")
            for minutes in range(100):
                offsets += [f"{sign}{hours:02d}{minutes:02d}", f"{sign}{hours:02d}:{minutes:02d}"]
    odd = ["", "Z", " UTC", "+1", "+053", "+05:3", "+05:30:00", "+0530 ", "-1", "garbage", "  "]
    return [time + offset for time in TIMES for offset in [*offsets, *odd]] + [
        "not a time",
        "+05:00",
    ]


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    define_timestamp_macros(con)
    return con


def test_every_offset_spelling_is_judged_by_the_rule(con: duckdb.DuckDBPyConnection):
    texts = spellings()
    assert len(texts) > 160_000
    con.execute("CREATE TABLE t AS SELECT unnest($texts) AS s", {"texts": texts})
    judged = dict(con.execute("SELECT s, dagmesh_offset_ok(s) FROM t").fetchall())
    wrong = [t for t in texts if judged[t] != allowed(t)]
    assert wrong == [], wrong[:10]
    assert sum(judged.values()) < len(texts)  # some are refused: the rule is not vacuous


def test_allowed_offsets_convert_and_impossible_ones_fail(con: duckdb.DuckDBPyConnection):
    rows = con.execute(
        "SELECT s, try_utc_timestamp(s)::VARCHAR FROM unnest(["
        "'2026-01-01T00:00:00+14:00', '2026-01-01T00:00:00-1200', '2026-01-01T00:00:00+14:30',"
        "'2026-01-01T00:00:00-12:01', NULL]) u(s)"
    ).fetchall()
    assert rows == [
        ("2026-01-01T00:00:00+14:00", "2025-12-31 10:00:00"),
        ("2026-01-01T00:00:00-1200", "2026-01-01 12:00:00"),
        ("2026-01-01T00:00:00+14:30", None),
        ("2026-01-01T00:00:00-12:01", None),
        (None, None),
    ]
    assert con.execute("SELECT utc_timestamp(NULL)").fetchall() == [(None,)]
    with pytest.raises(duckdb.Error, match=r"UTC offset out of range .*\+14:30"):
        con.execute("SELECT utc_timestamp('2026-01-01T00:00:00+14:30')").fetchall()

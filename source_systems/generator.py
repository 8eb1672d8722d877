"""Deterministic generator of the sample business's source-system files.

See ``source_systems/README.md`` for the contract. Everything row-shaped is
generated inside DuckDB from ``range(n)`` with hash-based pseudo-randomness
(``hash(hash(key, seed, salt))``, deterministic across connections and
processes for a given DuckDB build); Faker only builds small vocabularies (names, streets,
cities, SKUs) that the SQL picks from. Each table is written with
``COPY (... ORDER BY <total order>)`` part by part, so the same scale and seed
give byte-identical files.

Time is modelled as integer seconds since 2026-01-01T00:00:00Z ("sec") and days
since 2026-01-01 ("day"), so every UTC date is ``sec // 86400``.
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from faker import Faker

__all__ = ["TABLES", "generate"]

Progress = Callable[[str, float], None]

#: (system, table) -> file extension, in the order the files are written.
TABLES: dict[tuple[str, str], str] = {
    ("shop", "orders"): "csv",
    ("shop", "order_items"): "jsonl",
    ("crm", "customers"): "csv",
    ("crm", "leads"): "jsonl",
    ("warehouse", "shipments"): "parquet",
    ("warehouse", "return_shipments"): "jsonl",
    ("ledger", "refunds"): "csv",
}

EPOCH_2026 = 1_767_225_600  # 2026-01-01T00:00:00Z as a Unix timestamp
HOUR = 3_600
DAY = 86_400
ORDER_DAYS = 181  # 2026-01-01 .. 2026-06-30
PROMISE_DAYS = 5

# shares (see README)
NEW_CUSTOMER_SHARE = 0.25  # customers ~ orders / 4
CANCEL_SHARE = 0.05
LATER_EVENT_SHARE = 0.60  # of all orders (includes every cancelled order)
EVENT_DUP_SHARE = 0.02
EVENT_DEFECT_SHARE = 0.0005  # per defect kind (0.1 % in total)
ITEM_DUP_SHARE = 0.01
ITEM_DEFECT_SHARE = 0.0005  # per defect kind
CUSTOMER_DUP_SHARE = 0.01
CUSTOMER_DEFECT_SHARE = 0.001
LEAD_SHARE = 0.8  # leads ~ customers * 0.8
LEAD_CONVERTED_SHARE = 0.5
REFUND_LATE_SHARE = 0.40  # of delayed orders
REFUND_DAMAGED_SHARE = 0.005  # of on-time delivered orders
REFUND_COMMA_SHARE = 0.15
REFUND_DEFECT_SHARE = 0.002

#: DuckDB threads used for generation (None: DuckDB's default, the number of cores). The
#: output does not depend on it; tests set it to prove that.
THREADS: int | None = None

# rows per file are kept at or below ~1,000,000 by chunking on the driving key
ORDERS_CHUNK = 580_000  # orders per chunk; ~1.6 events per order plus lates of the previous chunk
ITEMS_CHUNK = 380_000  # orders per items file (~2.5 lines per order)
CUSTOMERS_CHUNK = 950_000
LEADS_CHUNK = 950_000
SHIPMENTS_CHUNK = 1_000_000  # orders per file (~0.95 shipments per order)
RETURNS_CHUNK = 20_000_000
REFUNDS_CHUNK = 11_000_000

COUNTRIES = [  # (code, faker locale, phone prefix, weight in %)
    ("DE", "de_DE", "+49", 45),
    ("AT", "de_AT", "+43", 10),
    ("NL", "nl_NL", "+31", 15),
    ("FR", "fr_FR", "+33", 15),
    ("IT", "it_IT", "+39", 8),
    ("ES", "es_ES", "+34", 7),
]
NAMES_PER_LOCALE = 60
CITIES_PER_COUNTRY = 40
STREETS_PER_COUNTRY = 60
N_SKUS = 500
EMAIL_DOMAINS = ["example.com", "example.org", "example.net", "mail.example", "post.example"]
CARRIERS = ["DHL", "DPD", "UPS", "GLS", "Hermes"]
AD_PLATFORMS = ["google", "meta", "linkedin"]

# The planted, learnable cause of delays (the delay-risk model must find it): one carrier
# loses parcels in its hubs and one destination country's orders wait in the warehouse.
# Shares are shifted so that the overall causes keep their shares (80/7/8/5 %).
SLOW_CARRIER = "Hermes"
SLOW_COUNTRY = "IT"
SLOW_CARRIER_CARRIER_SHARE = 0.32  # carrier delays among the slow carrier's orders
SLOW_COUNTRY_WAREHOUSE_SHARE = 0.50  # warehouse delays among orders to the slow country
CARRIER_SHARE = 0.08
WAREHOUSE_SHARE = 0.07
RETURN_SHARE = 0.05

DEFECT_REASONS = {
    "orders": ("missing order_id", "invalid order_ts"),
    "order_items": ("non-positive quantity", "missing unit_price"),
    "customers": ("missing customer_id",),
    "refunds": ("invalid amount",),
}
CAUSES = ("on_time", "warehouse", "carrier", "return_reship")
STATUSES = ("placed", "paid", "shipped", "delivered", "cancelled")
CHANNELS = ("organic", "lead_generation", "both")


# --------------------------------------------------------------------------- helpers


def _q(path: Path) -> str:
    """A path as a single-quoted SQL string literal."""
    return "'" + str(path).replace("'", "''") + "'"


def _chunk(n_rows: int, chunk: int) -> int:
    return max(1, math.ceil(n_rows / chunk))


def _ascii_word(s: str) -> str:
    folded = unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z]", "", folded) or "user"


def _cents_to_float(cents: int | None) -> float:
    return float((Decimal(int(cents or 0)) / 100).quantize(Decimal("0.01")))


def _macros(seed: int) -> list[str]:
    s = int(seed)
    return [
        # 64 pseudo-random bits from (key, seed, salt). DuckDB combines the hashes of
        # several arguments by a cheap combine, so streams with different salts would be
        # correlated; hashing the combined hash again decorrelates them.
        f"CREATE MACRO h64(k, salt) AS hash(hash(k, {s}::BIGINT, salt))",
        # uniform double in [0, 1) and uniform integer in [0, n)
        "CREATE MACRO rnd(k, salt) AS (h64(k, salt) >> 11)::DOUBLE / 9007199254740992.0",
        "CREATE MACRO rint(k, salt, n) AS (h64(k, salt) % (n)::UBIGINT)::BIGINT",
        f"CREATE MACRO uts(sec) AS make_timestamp(({EPOCH_2026}::BIGINT + (sec)) * 1000000)",
        "CREATE MACRO udate(day) AS DATE '2026-01-01' + (day)::INTEGER",
        "CREATE MACRO iso_z(sec) AS strftime(uts(sec), '%Y-%m-%dT%H:%M:%SZ')",
        # ISO-8601 with a varying UTC offset, r in [0, 6)
        "CREATE MACRO iso_var(sec, r) AS CASE r"
        " WHEN 0 THEN strftime(uts(sec), '%Y-%m-%d %H:%M:%SZ')"
        " WHEN 1 THEN strftime(uts(sec), '%Y-%m-%dT%H:%M:%SZ')"
        " WHEN 2 THEN strftime(uts((sec) + 3600), '%Y-%m-%dT%H:%M:%S+01:00')"
        " WHEN 3 THEN strftime(uts((sec) + 7200), '%Y-%m-%dT%H:%M:%S+02:00')"
        " WHEN 4 THEN strftime(uts((sec) - 18000), '%Y-%m-%dT%H:%M:%S-05:00')"
        " ELSE strftime(uts(sec), '%Y-%m-%dT%H:%M:%S+00:00') END",
        # random casing, r in [0, 10): mostly lower, some UPPER, some Capitalised
        "CREATE MACRO mcase(s, r) AS CASE WHEN r < 5 THEN lower(s) WHEN r < 7 THEN upper(s)"
        " ELSE upper(left(s, 1)) || lower(substr(s, 2)) END",
        # stray spaces, r in [0, 10): mostly none
        "CREATE MACRO mspace(s, r) AS CASE r WHEN 7 THEN ' ' || s WHEN 8 THEN s || ' '"
        " WHEN 9 THEN ' ' || s || ' ' ELSE s END",
        "CREATE MACRO did(prefix, n, w) AS prefix || lpad((n)::VARCHAR, w, '0')",
        "CREATE MACRO money(cents, comma) AS ((cents) // 100)::VARCHAR"
        " || CASE WHEN comma THEN ',' ELSE '.' END || lpad(((cents) % 100)::VARCHAR, 2, '0')",
    ]


def _stable_faker(locale: str) -> Faker:
    """A Faker whose element lists do not depend on PYTHONHASHSEED.

    Some providers build their lists from sets at import time (e.g. ``it_IT``
    cities), so their order, and hence what a seeded Faker draws, differs from
    process to process. Sorting every list of strings on the provider instances
    makes the draws depend on the seed only.
    """
    fk = Faker(locale)
    for provider in fk.providers:
        for name in dir(type(provider)):
            if name.startswith("_"):
                continue
            value = getattr(type(provider), name, None)
            if isinstance(value, list) and value and all(isinstance(x, str) for x in value):
                setattr(provider, name, sorted(value))
    return fk


def _vocabularies(seed: int) -> dict[str, pa.Table]:
    """Small seeded vocabularies that the SQL picks from."""
    Faker.seed(seed)
    fakers = {code: _stable_faker(locale) for code, locale, _, _ in COUNTRIES}
    first: list[str] = []
    last: list[str] = []
    for code, *_ in COUNTRIES:
        fk = fakers[code]
        first += [fk.unique.first_name() for _ in range(NAMES_PER_LOCALE)]
        last += [fk.unique.last_name() for _ in range(NAMES_PER_LOCALE)]
    first = list(dict.fromkeys(first))
    last = list(dict.fromkeys(last))
    # per country a block of CITIES_PER_COUNTRY cities / STREETS_PER_COUNTRY streets,
    # so the SQL picks index country * block + k
    cities: list[str] = []
    streets: list[str] = []
    for code, *_ in COUNTRIES:
        fk = fakers[code]
        cities += [fk.unique.city() for _ in range(CITIES_PER_COUNTRY)]
        streets += [fk.unique.street_name() for _ in range(STREETS_PER_COUNTRY)]
    sku_faker = fakers["DE"]
    skus = [
        sku_faker.unique.bothify("??-####", letters="ABCDEFGHJKLMNPQRSTUVWXYZ")
        for _ in range(N_SKUS)
    ]
    rng = random.Random(seed * 1_000_003 + 17)
    prices = []
    for _ in range(N_SKUS):  # log-uniform 2.00 .. 200.00, mostly ending in .99 / .49 / .00
        euros = math.exp(rng.uniform(math.log(2.0), math.log(200.0)))
        cents = int(euros) * 100 + rng.choice([99, 99, 49, 0, 95])
        prices.append(min(20_000, max(200, cents)))
    return {
        "v_first": pa.table(
            {
                "idx": list(range(len(first))),
                "name": first,
                "ascii": [_ascii_word(x) for x in first],
            }
        ),
        "v_last": pa.table(
            {
                "idx": list(range(len(last))),
                "name": last,
                "ascii": [_ascii_word(x) for x in last],
            }
        ),
        "v_city": pa.table({"idx": list(range(len(cities))), "name": cities}),
        "v_street": pa.table({"idx": list(range(len(streets))), "name": streets}),
        "v_country": pa.table(
            {
                "ci": list(range(len(COUNTRIES))),
                "code": [c for c, *_ in COUNTRIES],
                "prefix": [p for _, _, p, _ in COUNTRIES],
            }
        ),
        "v_sku": pa.table({"idx": list(range(N_SKUS)), "sku": skus, "price_cents": prices}),
    }


def _clean(landing_dir: Path) -> None:
    for (system, table), ext in TABLES.items():
        d = landing_dir / system / table
        if d.is_dir():
            for f in d.glob(f"{table}-*.{ext}"):
                f.unlink()
        d.mkdir(parents=True, exist_ok=True)
    truth = landing_dir / "_truth.json"
    if truth.exists():
        truth.unlink()


class _Runner:
    """Wraps a DuckDB connection and the progress callback."""

    def __init__(self, con: duckdb.DuckDBPyConnection, progress: Progress | None, total: float):
        self.con = con
        self.progress = progress
        self.total = total
        self.done = 0.0

    def step(self, label: str, weight: float = 1.0) -> None:
        self.done += weight
        if self.progress is not None:
            self.progress(label, min(1.0, self.done / self.total))

    def sql(self, query: str) -> None:
        self.con.execute(query)

    def one(self, query: str) -> tuple[Any, ...]:
        row = self.con.execute(query).fetchone()
        assert row is not None
        return row

    def pairs(self, query: str) -> dict[str, Any]:
        return {str(k): v for k, v in self.con.execute(query).fetchall()}

    def copy_parts(
        self,
        landing_dir: Path,
        system: str,
        table: str,
        n_parts: int,
        select_for_part: Callable[[int], str],
        weight: float,
    ) -> list[str]:
        ext = TABLES[(system, table)]
        options = {
            "csv": "FORMAT csv, HEADER true, DELIMITER ','",
            "jsonl": "FORMAT json",
            "parquet": "FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880",
        }[ext]
        names = []
        for p in range(n_parts):
            name = f"{table}-{p + 1:04d}.{ext}"
            path = landing_dir / system / table / name
            self.sql(f"COPY ({select_for_part(p)}) TO {_q(path)} ({options})")
            names.append(name)
            self.step(f"writing {system}/{table} ({p + 1}/{n_parts})", weight / n_parts)
        return names


def _country_weights() -> list[str]:
    """``CASE`` branches mapping ``r_country`` in [0, 100) to a country index."""
    weights = []
    acc = 0
    for ci, (*_, w) in enumerate(COUNTRIES):
        acc += w
        weights.append(f"WHEN r_country < {acc} THEN {ci}")
    return weights


# --------------------------------------------------------------------------- generate


def generate(
    landing_dir: Path,
    scale: int = 10_000,
    seed: int = 42,
    progress: Callable[[str, float], None] | None = None,
) -> dict:
    """Generate the landing files of all source systems and their truth.

    Writes ``landing_dir/<system>/<table>/<table>-NNNN.<ext>`` for the shop,
    crm, warehouse and ledger tables described in ``source_systems/README.md``
    and ``landing_dir/_truth.json``; existing files of these tables are
    removed first, so regeneration replaces them.

    Args:
        landing_dir: the landing area (``$DAGMESH_HOME/landing``).
        scale: number of real orders (at least 100).
        seed: seed of all pseudo-randomness; same scale and seed give the same bytes.
        progress: optional ``progress(step_description, fraction_done)`` callback.

    Returns:
        The truth dict that was written to ``_truth.json``.
    """
    scale = int(scale)
    seed = int(seed)
    if scale < 100:
        raise ValueError(f"scale must be at least 100 orders, got {scale}")
    landing_dir = Path(landing_dir)
    if progress is not None:
        progress("preparing", 0.0)
    _clean(landing_dir)

    tmp = Path(tempfile.mkdtemp(prefix="dagmesh-gen-"))
    con = duckdb.connect(":memory:", config={"preserve_insertion_order": True})
    try:
        con.execute(f"SET temp_directory = {_q(tmp)}")
        if THREADS is not None:
            con.execute(f"SET threads = {int(THREADS)}")
        run = _Runner(con, progress, total=23.0)
        truth = _generate(run, landing_dir, scale, seed)
    finally:
        con.close()
        shutil.rmtree(tmp, ignore_errors=True)

    (landing_dir / "_truth.json").write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    if progress is not None:
        progress("done", 1.0)
    return truth


def _generate(run: _Runner, landing: Path, n: int, seed: int) -> dict:
    con = run.con
    for m in _macros(seed):
        run.sql(m)
    for name, table in _vocabularies(seed).items():
        con.register(f"{name}_arrow", table)
        run.sql(f"CREATE TABLE {name} AS SELECT * FROM {name}_arrow")
        con.unregister(f"{name}_arrow")
    n_first = run.one("SELECT count(*) FROM v_first")[0]
    n_last = run.one("SELECT count(*) FROM v_last")[0]
    run.step("vocabularies")

    # ------------------------------------------------------------------ orders
    span = ORDER_DAYS * DAY
    country_weights = _country_weights()
    slow_carrier_i = CARRIERS.index(SLOW_CARRIER)
    slow_country_i = [c for c, *_ in COUNTRIES].index(SLOW_COUNTRY)
    country_share = dict((c, w / 100) for c, _, _, w in COUNTRIES)[SLOW_COUNTRY]
    carrier_share = 1 / len(CARRIERS)
    # the other carriers' and countries' shares keep the overall shares
    other_carrier_share = (CARRIER_SHARE - carrier_share * SLOW_CARRIER_CARRIER_SHARE) / (
        1 - carrier_share
    )
    other_warehouse_share = (WAREHOUSE_SHARE - country_share * SLOW_COUNTRY_WAREHOUSE_SHARE) / (
        1 - country_share
    )
    p_later = (LATER_EVENT_SHARE - CANCEL_SHARE) / (1 - CANCEL_SHARE)
    run.sql(f"""
        CREATE TABLE o1 AS
        SELECT i, i + 1 AS order_no,
               (i < 10 OR rnd(i, 'new') < {NEW_CUSTOMER_SHARE}) AS is_new,
               floor((i + rnd(i, 'ts')) * {span} / {n})::BIGINT AS t
        FROM range({n}) r(i)
    """)
    run.sql(f"""
        CREATE TABLE ord AS
        WITH c AS (
            SELECT *, sum(is_new::INTEGER) OVER (
                ORDER BY i ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)::BIGINT AS ncust
            FROM o1
        ), k AS (
            SELECT i, order_no, is_new, t, t // {DAY} AS day,
                   CASE WHEN is_new THEN ncust ELSE 1 + rint(i, 'cust', ncust) END::BIGINT
                       AS cust,
                   rint(i, 'carrier', {len(CARRIERS)}) AS carrier_i,
                   rnd(i, 'scenario') AS u_scen
            FROM c
        ), p AS (
            -- the customer's country (as crm/customers writes it) and the planted shares
            SELECT *,
                   CASE WHEN carrier_i = {slow_carrier_i} THEN {SLOW_CARRIER_CARRIER_SHARE}
                        ELSE {other_carrier_share} END AS p_carrier,
                   CASE WHEN country_i = {slow_country_i} THEN {SLOW_COUNTRY_WAREHOUSE_SHARE}
                        ELSE {other_warehouse_share} END AS p_warehouse
            FROM (SELECT *, CASE {" ".join(country_weights)} END AS country_i
                  FROM (SELECT *, rint(cust, 'country', 100) AS r_country FROM k))
        ), s AS (
            SELECT i, order_no, is_new, t, day, cust, carrier_i, country_i,
                   CASE WHEN rnd(i, 'cancel') < {CANCEL_SHARE} THEN 'cancelled'
                        WHEN u_scen < p_warehouse THEN 'warehouse'
                        WHEN u_scen < p_warehouse + p_carrier THEN 'carrier'
                        WHEN u_scen < p_warehouse + p_carrier + {RETURN_SHARE}
                            THEN 'return_reship'
                        ELSE 'on_time' END AS scenario,
                   1 + rint(i, 'nlines', 4) AS n_lines
            FROM p
        ), sh AS (
            SELECT *,
                   CASE WHEN scenario IN ('on_time', 'carrier')
                            THEN t + {4 * HOUR} + rint(i, 'ship', {16 * HOUR + 1})
                        WHEN scenario = 'warehouse'
                            THEN t + {3 * DAY} + rint(i, 'ship', {3 * DAY + 1})
                   END AS shipped,
                   CASE WHEN scenario = 'return_reship'
                        THEN t + {2 * DAY} + rint(i, 'returned', {3 * DAY + 1}) END AS returned,
                   CASE WHEN scenario = 'return_reship'
                        THEN t + {6 * DAY} + rint(i, 'reship', {3 * DAY + 1}) END AS reshipped
            FROM s
        ), sc AS (
            SELECT *,
                   CASE WHEN scenario = 'carrier' THEN shipped // {DAY} + 3 + rint(i, 'scan', 3)
                        WHEN scenario IN ('on_time', 'warehouse') THEN shipped // {DAY}
                   END AS scan_day
            FROM sh
        ), b AS (
            SELECT *,
                   CASE scenario
                       WHEN 'on_time' THEN shipped + {DAY}
                       WHEN 'warehouse' THEN greatest(shipped + {2 * DAY}, (day + 6) * {DAY})
                       WHEN 'carrier' THEN greatest((scan_day + 2) * {DAY} + {8 * HOUR},
                                                    (day + 6) * {DAY} + {8 * HOUR})
                       WHEN 'return_reship' THEN reshipped + {DAY}
                   END AS d_lo,
                   CASE scenario
                       WHEN 'on_time' THEN least(shipped + {3 * DAY}, (day + 6) * {DAY} - 1)
                       WHEN 'warehouse' THEN shipped + {3 * DAY}
                       WHEN 'carrier' THEN (scan_day + 3) * {DAY} + {20 * HOUR}
                       WHEN 'return_reship' THEN reshipped + {2 * DAY}
                   END AS d_hi
            FROM sc
        ), d AS (
            SELECT * EXCLUDE (d_lo, d_hi),
                   d_lo + rint(i, 'deliver', d_hi - d_lo + 1) AS delivered,
                   scenario = 'cancelled' OR rnd(i, 'later') < {p_later} AS has_later,
                   CASE WHEN scenario = 'cancelled' THEN 'cancelled'
                        WHEN u_st < 0.15 THEN 'paid'
                        WHEN u_st < 0.35 THEN 'shipped'
                        ELSE 'delivered' END AS later_status
            FROM (SELECT *, rnd(i, 'laterstatus') AS u_st FROM b)
        )
        SELECT * EXCLUDE (later_status),
               CASE WHEN has_later THEN later_status END AS later_status,
               CASE WHEN NOT has_later THEN NULL
                    WHEN later_status = 'cancelled'
                        THEN t + {HOUR} + rint(i, 'latert', {47 * HOUR + 1})
                    WHEN later_status = 'paid' THEN t + 60 + rint(i, 'latert', 3541)
                    WHEN later_status = 'shipped' THEN coalesce(shipped, reshipped)
                    ELSE delivered END AS later_t,
               CASE WHEN has_later THEN later_status ELSE 'placed' END AS final_status,
               CASE WHEN scenario = 'cancelled' THEN NULL
                    ELSE greatest(0, delivered // {DAY} - (day + {PROMISE_DAYS})) END AS delay_days
        FROM d
        ORDER BY i
    """)
    run.sql("DROP TABLE o1")
    n_customers = run.one("SELECT count(*) FROM ord WHERE is_new")[0]
    n_later = run.one("SELECT count(*) FROM ord WHERE has_later")[0]
    run.step("orders", 2)

    # ------------------------------------------------------------------ order lines
    run.sql(f"""
        CREATE TABLE lines AS
        WITH l AS (
            SELECT i, order_no, unnest(range(1, n_lines + 1)) AS line_no FROM ord
        ), k AS (
            SELECT *, i * 8 + line_no AS lk FROM l
        )
        SELECT k.i, k.order_no, k.line_no, v.sku,
               [1, 1, 1, 1, 1, 2, 2, 2, 3, 5][rint(k.lk, 'qty', 10) + 1] AS quantity,
               v.price_cents
        FROM k JOIN v_sku v ON v.idx = rint(k.lk, 'sku', {N_SKUS})
        ORDER BY k.i, k.line_no
    """)
    run.sql("""
        CREATE TABLE ord_value AS
        SELECT i, sum(quantity * price_cents)::BIGINT AS value_cents,
               sum(quantity * price_cents) FILTER (WHERE line_no = 1)::BIGINT AS line1_cents
        FROM lines GROUP BY i
    """)
    run.step("order lines")

    # ------------------------------------------------------------------ truth from clean data
    truth: dict[str, Any] = {"scale": n, "seed": seed}
    (
        truth["orders"],
        truth["cancelled_orders"],
        truth["shipped_orders"],
        truth["returned_reshipped"],
    ) = run.one("""
        SELECT count(*), count(*) FILTER (WHERE scenario = 'cancelled'),
               count(*) FILTER (WHERE scenario <> 'cancelled'),
               count(*) FILTER (WHERE scenario = 'return_reship')
        FROM ord
    """)
    truth["order_events"] = n + n_later
    truth["customers"] = n_customers
    n_lines, revenue_cents = run.one("SELECT count(*), sum(quantity * price_cents) FROM lines")
    truth["order_lines"] = n_lines
    truth["revenue"] = _cents_to_float(revenue_cents)
    by_status = {
        s: (c, r)
        for s, c, r in con.execute("""
            SELECT o.final_status, count(*), sum(v.value_cents)
            FROM ord o JOIN ord_value v USING (i) GROUP BY ALL
        """).fetchall()
    }
    truth["orders_by_status"] = {s: by_status.get(s, (0, 0))[0] for s in STATUSES}
    truth["revenue_by_status"] = {s: _cents_to_float(by_status.get(s, (0, 0))[1]) for s in STATUSES}
    # the mesh's delay rule, applied to the clean data; it must recover the scenarios
    run.sql(f"""
        CREATE TABLE cause AS
        SELECT i, scenario, delay_days,
               CASE WHEN delay_days = 0 THEN 'on_time'
                    WHEN scenario = 'return_reship' THEN 'return_reship'
                    WHEN scan_day - shipped // {DAY} >= 2 THEN 'carrier'
                    ELSE 'warehouse' END AS cause
        FROM ord WHERE scenario <> 'cancelled'
    """)
    mismatches = run.one("SELECT count(*) FROM cause WHERE cause <> scenario")[0]
    if mismatches:
        raise AssertionError(f"{mismatches} orders whose delay cause differs from their scenario")
    causes = {
        c: (k, dd)
        for c, k, dd in con.execute(
            "SELECT cause, count(*), sum(delay_days) FROM cause GROUP BY ALL"
        ).fetchall()
    }
    run.sql("DROP TABLE cause")
    truth["delays_by_cause"] = {c: causes.get(c, (0, 0))[0] for c in CAUSES}
    truth["planted_delay_signal"] = {
        "slow_carrier": SLOW_CARRIER.lower(),
        "slow_country": SLOW_COUNTRY,
        **dict(
            zip(
                ("delay_rate_slow_carrier", "delay_rate_slow_country", "delay_rate_others"),
                run.one(f"""
                    SELECT avg((scenario <> 'on_time')::INTEGER)
                               FILTER (WHERE carrier_i = {slow_carrier_i}),
                           avg((scenario <> 'on_time')::INTEGER)
                               FILTER (WHERE country_i = {slow_country_i}),
                           avg((scenario <> 'on_time')::INTEGER) FILTER (
                               WHERE carrier_i <> {slow_carrier_i}
                                 AND country_i <> {slow_country_i})
                    FROM ord WHERE scenario <> 'cancelled'
                """),
                strict=True,
            )
        ),
    }
    truth["delay_days_by_cause"] = {c: int(causes.get(c, (0, 0))[1]) for c in CAUSES}
    run.step("truth")

    # ------------------------------------------------------------------ shop/orders (events)
    o_chunk = min(ORDERS_CHUNK, math.ceil(n / 3))
    o_parts = _chunk(n, o_chunk) + 1
    n_events = n + n_later
    k_ev = max(3, round(n_events * EVENT_DEFECT_SHARE))
    last_part = o_parts - 1
    run.sql(f"""
        CREATE TABLE ev AS
        WITH real AS (
            SELECT i, 0 AS kind, 2 * i + 1 AS ev_no, order_no, cust, t, day,
                   'placed' AS status, t AS upd, i // {o_chunk} AS part
            FROM ord
            UNION ALL
            SELECT i, 1, 2 * i + 2, order_no, cust, t, day, later_status, later_t,
                   i // {o_chunk} + 1
            FROM ord WHERE has_later
        ), dup AS (
            SELECT * REPLACE (CASE WHEN rnd(ev_no, 'dupfile') < 0.5 THEN part
                                   ELSE least(part + 1, {last_part}) END AS part)
            FROM real WHERE rnd(ev_no, 'dup') < {EVENT_DUP_SHARE}
        ), defect AS (
            SELECT o.i, 2 + d.kind AS kind, {2 * n + 1} + d.kind * {k_ev} + d.j AS ev_no,
                   CASE WHEN d.kind = 1 THEN {n + 1} + d.j END AS order_no,
                   o.cust, o.t, o.day, 'placed' AS status, o.t AS upd, o.i // {o_chunk} AS part
            FROM (SELECT kind, j, (j * {n}) // {k_ev} + (kind * {n}) // {2 * k_ev} AS host
                  FROM range(2) a(kind), range({k_ev}) b(j)) d
            JOIN ord o ON o.i = d.host
        )
        SELECT *, 0 AS copy FROM real
        UNION ALL SELECT *, 1 FROM dup
        UNION ALL SELECT *, 0 FROM defect
        ORDER BY part, i, kind, copy
    """)
    n_ev_dup = run.one("SELECT count(*) FROM ev WHERE copy = 1")[0]
    truth["late_events"] = run.one("""
        SELECT count(*) FROM ev l JOIN ev p ON p.i = l.i AND p.kind = 0 AND p.copy = 0
        WHERE l.kind = 1 AND l.copy = 0 AND l.part > p.part
    """)[0]
    run.step("order events")
    orders_files = run.copy_parts(
        landing,
        "shop",
        "orders",
        o_parts,
        lambda p: (
            f"""
            SELECT did('E', ev_no, 10) AS event_id,
                   CASE WHEN order_no IS NOT NULL THEN did('O', order_no, 9) END AS order_id,
                   did('C', cust, 8) AS customer_id,
                   mspace(mcase(status, rint(ev_no, 'stcase', 10)),
                          rint(ev_no, 'stspace', 10)) AS status,
                   CASE WHEN kind = 3 THEN 'not-a-date'
                        ELSE iso_var(t, rint(ev_no, 'ots', 6)) END AS order_ts,
                   iso_var(upd, rint(ev_no, 'uts', 6)) AS updated_at,
                   mcase('EUR', rint(ev_no, 'cur', 10)) AS currency,
                   strftime(udate(day + {PROMISE_DAYS}), '%Y-%m-%d') AS promised_delivery_date
            FROM ev WHERE part = {p} ORDER BY i, kind, copy
        """
        ),
        weight=4,
    )
    run.sql("DROP TABLE ev")

    # ------------------------------------------------------------------ shop/order_items
    k_it = max(3, round(n_lines * ITEM_DEFECT_SHARE))
    i_chunk = ITEMS_CHUNK
    i_parts = _chunk(n, i_chunk)
    run.sql(f"""
        CREATE TABLE it AS
        WITH real AS (
            SELECT i, order_no, line_no, sku, quantity, price_cents, 0 AS copy FROM lines
        ), dup AS (
            SELECT * REPLACE (1 AS copy) FROM real
            WHERE rnd(i * 8 + line_no, 'itemdup') < {ITEM_DUP_SHARE}
        ), defect AS (
            SELECT o.i, o.order_no, o.n_lines + 1 AS line_no, v.sku,
                   CASE WHEN d.kind = 0 THEN -rint(d.host, 'badqty', 3) ELSE 1 END AS quantity,
                   CASE WHEN d.kind = 0 THEN v.price_cents END AS price_cents, 0 AS copy
            FROM (SELECT kind, j, (j * {n}) // {k_it} + (kind * {n}) // {2 * k_it} AS host
                  FROM range(2) a(kind), range({k_it}) b(j)) d
            JOIN ord o ON o.i = d.host
            JOIN v_sku v ON v.idx = rint(d.host, 'badsku', {N_SKUS})
        )
        SELECT *, i // {i_chunk} AS part FROM (
            SELECT * FROM real UNION ALL SELECT * FROM dup UNION ALL SELECT * FROM defect)
        ORDER BY part, i, line_no, copy
    """)
    n_it_dup = run.one("SELECT count(*) FROM it WHERE copy = 1")[0]
    run.sql("DROP TABLE lines")
    run.step("order items")
    items_files = run.copy_parts(
        landing,
        "shop",
        "order_items",
        i_parts,
        lambda p: (
            f"""
            SELECT did('O', order_no, 9) AS order_id, line_no::INTEGER AS line_no, sku,
                   quantity::INTEGER AS quantity,
                   (price_cents::DECIMAL(18, 0) * 0.01)::DECIMAL(10, 2) AS unit_price
            FROM it WHERE part = {p} ORDER BY i, line_no, copy
        """
        ),
        weight=3,
    )
    run.sql("DROP TABLE it")

    # ------------------------------------------------------------------ crm/customers
    k_cu = max(3, round(n_customers * CUSTOMER_DEFECT_SHARE))
    c_weights = _country_weights()
    run.sql(f"""
        CREATE TABLE cbase AS
        WITH k AS (
            SELECT cust AS ak, cust AS host, t AS first_t FROM ord WHERE is_new
            UNION ALL
            SELECT {n_customers + 1} + j, h.cust, h.t
            FROM range({k_cu}) r(j)
            JOIN ord h ON h.is_new AND h.cust = (j * {n_customers}) // {k_cu} + 1
        ), a AS (
            SELECT *, rint(ak, 'first', {n_first}) AS fi, rint(ak, 'last', {n_last}) AS li,
                   CASE {" ".join(c_weights)} END AS ci
            FROM (SELECT *, rint(ak, 'country', 100) AS r_country FROM k)
        )
        SELECT a.ak, a.host, a.first_t,
               a.first_t - rint(a.ak, 'signup', least(a.first_t, {30 * DAY}) + 1) AS signup_t,
               a.ci, f.name || ' ' || l.name AS full_name,
               f.ascii || '.' || l.ascii || a.ak::VARCHAR || '@'
                   || {EMAIL_DOMAINS}[rint(a.ak, 'domain', {len(EMAIL_DOMAINS)}) + 1]
                   AS email_base
        FROM a JOIN v_first f ON f.idx = a.fi JOIN v_last l ON l.idx = a.li
        ORDER BY a.ak
    """)
    c_parts = _chunk(n_customers, CUSTOMERS_CHUNK)
    run.sql(f"""
        CREATE TABLE cu AS
        WITH real AS (SELECT ak, host, 0 AS copy FROM cbase WHERE ak <= {n_customers}),
        dup AS (SELECT ak, host, 1 FROM real WHERE rnd(ak, 'custdup') < {CUSTOMER_DUP_SHARE}),
        defect AS (SELECT ak, host, 0 FROM cbase WHERE ak > {n_customers})
        SELECT *, (host - 1) // {CUSTOMERS_CHUNK} AS part FROM (
            SELECT * FROM real UNION ALL SELECT * FROM dup UNION ALL SELECT * FROM defect)
        ORDER BY part, host, ak, copy
    """)
    n_cu_dup = run.one("SELECT count(*) FROM cu WHERE copy = 1")[0]
    run.step("customers")
    customers_files = run.copy_parts(
        landing,
        "crm",
        "customers",
        c_parts,
        lambda p: (
            f"""
            SELECT CASE WHEN c.ak <= {n_customers} THEN did('C', c.ak, 8) END AS customer_id,
                   b.full_name,
                   mspace(mcase(b.email_base, rint(c.ak, 'emailcase', 10)),
                          rint(c.ak, 'emailspace', 10)) AS email,
                   vc.prefix || ' ' || (100 + rint(c.ak, 'phone1', 900))::VARCHAR || ' '
                       || lpad(rint(c.ak, 'phone2', 10000000)::VARCHAR, 7, '0') AS phone,
                   vs.name || ' ' || (1 + rint(c.ak, 'houseno', 199))::VARCHAR
                       AS street_address,
                   vy.name AS city,
                   mcase(vc.code, rint(c.ak, 'ccase', 10)) AS country,
                   iso_var(b.signup_t, rint(c.ak, 'signupfmt', 6)) AS signup_ts
            FROM cu c
            JOIN cbase b ON b.ak = c.ak
            JOIN v_country vc ON vc.ci = b.ci
            JOIN v_city vy
                ON vy.idx = b.ci * {CITIES_PER_COUNTRY} + rint(c.ak, 'city', {CITIES_PER_COUNTRY})
            JOIN v_street vs ON vs.idx = b.ci * {STREETS_PER_COUNTRY}
                                         + rint(c.ak, 'street', {STREETS_PER_COUNTRY})
            WHERE c.part = {p} ORDER BY c.host, c.ak, c.copy
        """
        ),
        weight=2,
    )
    run.sql("DROP TABLE cu")

    # ------------------------------------------------------------------ crm/leads
    n_leads = max(1, round(n_customers * LEAD_SHARE))
    mult = next(p for p in (1_000_003, 999_983, 999_979, 999_961) if n_customers % p != 0)
    run.sql(f"""
        CREATE TABLE ld AS
        WITH l AS (
            SELECT j, j + 1 AS lead_no, rnd(j, 'converted') < {LEAD_CONVERTED_SHARE} AS conv,
                   rnd(j, 'channel') AS u_ch
            FROM range({n_leads}) r(j)
        )
        SELECT l.j, l.lead_no,
               CASE WHEN conv THEN 1 + (j * {mult}) % {n_customers} END AS cust,
               CASE WHEN u_ch < 0.45 THEN 'organic' WHEN u_ch < 0.85 THEN 'lead_generation'
                    ELSE 'both' END AS channel,
               j // {LEADS_CHUNK} AS part
        FROM l ORDER BY j
    """)
    truth["leads"] = n_leads
    truth["converted_leads"] = run.one("SELECT count(*) FROM ld WHERE cust IS NOT NULL")[0]
    lc = run.pairs("SELECT channel, count(*) FROM ld GROUP BY ALL")
    truth["leads_by_channel"] = {c: lc.get(c, 0) for c in CHANNELS}
    run.step("leads")
    leads_files = run.copy_parts(
        landing,
        "crm",
        "leads",
        _chunk(n_leads, LEADS_CHUNK),
        lambda p: (
            f"""
            SELECT did('L', ld.lead_no, 8) AS lead_id,
                   mspace(mcase(coalesce(b.email_base,
                                         f.ascii || '.' || l.ascii || '.l' || ld.lead_no::VARCHAR
                                         || '@' || {EMAIL_DOMAINS}[
                                             rint(ld.j, 'leaddomain', {len(EMAIL_DOMAINS)}) + 1]),
                                rint(ld.j, 'leadcase', 10)),
                          rint(ld.j, 'leadspace', 10)) AS email,
                   CASE ld.channel
                       WHEN 'organic' THEN ['organic', 'Organic', 'ORGANIC'][
                           rint(ld.j, 'chspell', 3) + 1]
                       WHEN 'lead_generation' THEN ['lead_generation', 'Lead Generation',
                                                    'lead-gen'][rint(ld.j, 'chspell', 3) + 1]
                       ELSE ['both', 'Both'][rint(ld.j, 'chspell', 2) + 1] END AS channel,
                   CASE WHEN ld.channel <> 'organic'
                        THEN {AD_PLATFORMS}[rint(ld.j, 'adplatform', 3) + 1] END AS ad_platform,
                   iso_var(CASE WHEN b.ak IS NOT NULL
                                THEN rint(ld.j, 'leadts', b.signup_t + 1)
                                ELSE rint(ld.j, 'leadts', {span}) END,
                           rint(ld.j, 'leadtsfmt', 6)) AS created_at,
                   CASE WHEN ld.cust IS NOT NULL THEN did('C', ld.cust, 8) END AS customer_id
            FROM ld
            LEFT JOIN cbase b ON b.ak = ld.cust
            JOIN v_first f ON f.idx = rint(ld.j, 'leadfirst', {n_first})
            JOIN v_last l ON l.idx = rint(ld.j, 'leadlast', {n_last})
            WHERE ld.part = {p} ORDER BY ld.j
        """
        ),
        weight=1,
    )
    run.sql("DROP TABLE ld")
    run.sql("DROP TABLE cbase")

    # ------------------------------------------------------------------ warehouse
    shipments_files = run.copy_parts(
        landing,
        "warehouse",
        "shipments",
        _chunk(n, SHIPMENTS_CHUNK),
        lambda p: (
            f"""
            SELECT did('S', order_no, 9) AS shipment_id, did('O', order_no, 9) AS order_id,
                   {CARRIERS}[carrier_i + 1] AS carrier,
                   {[c for c, *_ in COUNTRIES]}[country_i + 1] AS destination_country,
                   CASE WHEN scenario <> 'return_reship' THEN uts(shipped) END AS shipped_at,
                   CASE WHEN scenario <> 'return_reship' THEN udate(scan_day) END AS shipped_on,
                   CASE WHEN scenario <> 'return_reship' THEN uts(delivered) END AS delivered_at
            FROM ord
            WHERE scenario <> 'cancelled' AND i // {SHIPMENTS_CHUNK} = {p}
            ORDER BY i
        """
        ),
        weight=2,
    )
    returns_files = run.copy_parts(
        landing,
        "warehouse",
        "return_shipments",
        _chunk(n, RETURNS_CHUNK),
        lambda p: (
            f"""
            SELECT did('R', order_no, 9) AS return_id, did('O', order_no, 9) AS order_id,
                   did('S', order_no, 9) AS original_shipment_id,
                   iso_z(returned) AS returned_at, iso_z(reshipped) AS reshipped_at,
                   strftime(udate(reshipped // {DAY}), '%Y-%m-%d') AS reshipped_on,
                   iso_z(delivered) AS delivered_at
            FROM ord
            WHERE scenario = 'return_reship' AND i // {RETURNS_CHUNK} = {p}
            ORDER BY i
        """
        ),
        weight=0.5,
    )

    # ------------------------------------------------------------------ ledger/refunds
    run.sql(f"""
        CREATE TABLE rf AS
        WITH r AS (
            SELECT o.i, o.order_no, o.delivered,
                   CASE WHEN o.delay_days > 0 AND rnd(o.i, 'refundlate') < {REFUND_LATE_SHARE}
                            THEN 'late_delivery'
                        WHEN o.scenario <> 'cancelled' AND o.delay_days = 0
                             AND rnd(o.i, 'refunddamaged') < {REFUND_DAMAGED_SHARE}
                            THEN 'damaged' END AS reason,
                   v.value_cents, v.line1_cents
            FROM ord o JOIN ord_value v USING (i)
        )
        SELECT i, order_no AS refund_no, order_no, reason, 0 AS kind,
               CASE WHEN reason = 'late_delivery'
                    THEN (value_cents * (10 + rint(i, 'refundpct', 21)) + 50) // 100
                    ELSE line1_cents END AS cents,
               delivered + {DAY} + rint(i, 'refundts', {9 * DAY + 1}) AS refunded
        FROM r WHERE reason IS NOT NULL
    """)
    n_refunds, refund_cents = run.one("SELECT count(*), sum(cents) FROM rf")
    k_rf = max(3, round(n_refunds * REFUND_DEFECT_SHARE))
    run.sql(f"""
        INSERT INTO rf
        SELECT o.i, {n + 1} + d.j, o.order_no,
               CASE WHEN d.j % 2 = 0 THEN 'damaged' ELSE 'late_delivery' END, 1, NULL,
               coalesce(o.delivered, o.t) + {2 * DAY}
        FROM range({k_rf}) d(j) JOIN ord o ON o.i = (d.j * {n}) // {k_rf}
    """)
    truth["refunds"] = n_refunds
    truth["refund_amount"] = _cents_to_float(refund_cents)
    rr = {
        r: (c, a)
        for r, c, a in con.execute(
            "SELECT reason, count(*), sum(cents) FROM rf WHERE kind = 0 GROUP BY ALL"
        ).fetchall()
    }
    truth["refunds_by_reason"] = {r: rr.get(r, (0, 0))[0] for r in ("late_delivery", "damaged")}
    truth["refund_amount_by_reason"] = {
        r: _cents_to_float(rr.get(r, (0, 0))[1]) for r in ("late_delivery", "damaged")
    }
    run.step("refunds")
    refunds_files = run.copy_parts(
        landing,
        "ledger",
        "refunds",
        _chunk(n, REFUNDS_CHUNK),
        lambda p: (
            f"""
            SELECT did('RF', refund_no, 9) AS refund_id, did('O', order_no, 9) AS order_id,
                   CASE WHEN kind = 1 THEN 'n/a'
                        ELSE money(cents, rnd(i, 'comma') < {REFUND_COMMA_SHARE}) END AS amount,
                   'EUR' AS currency, iso_z(refunded) AS refunded_at, reason
            FROM rf WHERE i // {REFUNDS_CHUNK} = {p} ORDER BY i, kind
        """
        ),
        weight=0.5,
    )

    # ------------------------------------------------------------------ truth (rest)
    truth["duplicates"] = {"orders": n_ev_dup, "order_items": n_it_dup, "customers": n_cu_dup}
    defects = {"orders": (k_ev, k_ev), "order_items": (k_it, k_it), "customers": (k_cu,)}
    defects["refunds"] = (k_rf,)
    truth["quarantine"] = {
        table: dict(zip(reasons, defects[table], strict=True))
        for table, reasons in DEFECT_REASONS.items()
    }
    files = {
        "shop/orders": orders_files,
        "shop/order_items": items_files,
        "crm/customers": customers_files,
        "crm/leads": leads_files,
        "warehouse/shipments": shipments_files,
        "warehouse/return_shipments": returns_files,
        "ledger/refunds": refunds_files,
    }
    truth["files"] = files
    truth["rows"] = {
        "shop/orders": n_events + n_ev_dup + 2 * k_ev,
        "shop/order_items": n_lines + n_it_dup + 2 * k_it,
        "crm/customers": n_customers + n_cu_dup + k_cu,
        "crm/leads": n_leads,
        "warehouse/shipments": truth["shipped_orders"],
        "warehouse/return_shipments": truth["returned_reshipped"],
        "ledger/refunds": n_refunds + k_rf,
    }
    return truth

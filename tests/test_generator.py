"""Tests of the source-system generator (source_systems/generator.py).

Every truth number is re-derived from the landing files with plain DuckDB queries,
the way the mesh reads them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from source_systems import generator
from source_systems.generator import generate

SCALE = 10_000
SEED = 7

CSV_HEADERS = {
    "shop/orders": "event_id,order_id,customer_id,status,order_ts,updated_at,currency,"
    "promised_delivery_date",
    "crm/customers": "customer_id,full_name,email,phone,street_address,city,country,signup_ts",
    "ledger/refunds": "refund_id,order_id,amount,currency,refunded_at,reason",
}
JSON_KEYS = {
    "shop/order_items": ["order_id", "line_no", "sku", "quantity", "unit_price"],
    "crm/leads": ["lead_id", "email", "channel", "ad_platform", "created_at", "customer_id"],
    "warehouse/return_shipments": [
        "return_id",
        "order_id",
        "original_shipment_id",
        "returned_at",
        "reshipped_at",
        "reshipped_on",
        "delivered_at",
    ],
}


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _dec(x: float) -> Decimal:
    return Decimal(str(x)).quantize(Decimal("0.01"))


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("landing")
    calls: list[tuple[str, float]] = []
    truth = generate(root, scale=SCALE, seed=SEED, progress=lambda s, f: calls.append((s, f)))
    fractions = [f for _, f in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(calls) > 10
    assert json.loads((root / "_truth.json").read_text()) == truth
    return root


@pytest.fixture(scope="module")
def truth(landing: Path) -> dict:
    return json.loads((landing / "_truth.json").read_text())


@pytest.fixture(scope="module")
def con(landing: Path) -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    c.execute("SET TimeZone = 'UTC'")
    L = str(landing)
    ts = "(({})::TIMESTAMPTZ)::TIMESTAMP"
    c.execute(f"""
        CREATE TABLE ev_raw AS
        SELECT * EXCLUDE (filename),
               regexp_extract(filename, 'orders-(\\d+)\\.csv$', 1)::INTEGER AS file_no
        FROM read_csv('{L}/shop/orders/*.csv', all_varchar = true, header = true,
                      delim = ',', quote = '"', filename = true)
    """)
    # one row per real event (exact duplicates collapse), with the first file it is in
    c.execute(f"""
        CREATE TABLE ev AS
        SELECT event_id, order_id, customer_id, lower(trim(status)) AS status,
               {ts.format("order_ts")} AS order_ts, {ts.format("updated_at")} AS updated_at,
               upper(currency) AS currency, promised_delivery_date::DATE AS promised,
               min(file_no) AS file_no
        FROM ev_raw WHERE order_id IS NOT NULL AND order_ts <> 'not-a-date'
        GROUP BY ALL
    """)
    c.execute("""
        CREATE TABLE orders AS
        SELECT order_id, any_value(customer_id) AS customer_id,
               min(order_ts) AS order_ts, min(order_ts)::DATE AS order_date,
               any_value(promised) AS promised,
               arg_max(status, updated_at) AS status,
               min(file_no) FILTER (WHERE status = 'placed') AS placed_file
        FROM ev GROUP BY order_id
    """)
    c.execute(f"""
        CREATE TABLE items_raw AS
        SELECT * FROM read_json('{L}/shop/order_items/*.jsonl', format = 'newline_delimited',
            columns = {{order_id: 'VARCHAR', line_no: 'INTEGER', sku: 'VARCHAR',
                       quantity: 'INTEGER', unit_price: 'DECIMAL(10,2)'}})
    """)
    c.execute("""
        CREATE TABLE items AS
        SELECT DISTINCT * FROM items_raw WHERE quantity > 0 AND unit_price IS NOT NULL
    """)
    c.execute(f"""
        CREATE TABLE customers_raw AS
        SELECT * FROM read_csv('{L}/crm/customers/*.csv', all_varchar = true, header = true,
                               delim = ',', quote = '"')
    """)
    c.execute(f"""
        CREATE TABLE leads AS
        SELECT * FROM read_json('{L}/crm/leads/*.jsonl', format = 'newline_delimited',
            columns = {{lead_id: 'VARCHAR', email: 'VARCHAR', channel: 'VARCHAR',
                       ad_platform: 'VARCHAR', created_at: 'VARCHAR', customer_id: 'VARCHAR'}})
    """)
    c.execute(f"""
        CREATE TABLE shipments AS SELECT * FROM read_parquet('{L}/warehouse/shipments/*.parquet')
    """)
    c.execute(f"""
        CREATE TABLE returns AS
        SELECT return_id, order_id, original_shipment_id,
               {ts.format("returned_at")} AS returned_at,
               {ts.format("reshipped_at")} AS reshipped_at, reshipped_on::DATE AS reshipped_on,
               {ts.format("delivered_at")} AS delivered_at
        FROM read_json('{L}/warehouse/return_shipments/*.jsonl', format = 'newline_delimited',
            columns = {{return_id: 'VARCHAR', order_id: 'VARCHAR',
                       original_shipment_id: 'VARCHAR', returned_at: 'VARCHAR',
                       reshipped_at: 'VARCHAR', reshipped_on: 'VARCHAR',
                       delivered_at: 'VARCHAR'}})
    """)
    c.execute(f"""
        CREATE TABLE refunds_raw AS
        SELECT * FROM read_csv('{L}/ledger/refunds/*.csv', all_varchar = true, header = true,
                               delim = ',', quote = '"')
    """)
    # the mesh's delay rule (README)
    c.execute("""
        CREATE TABLE delays AS
        WITH d AS (
            SELECT s.order_id, s.shipped_at, s.shipped_on, r.order_id IS NOT NULL AS reshipped,
                   coalesce(s.delivered_at, r.delivered_at)::DATE AS delivered_date,
                   o.promised, o.order_ts, s.delivered_at, r.reshipped_at,
                   r.delivered_at AS re_delivered_at
            FROM shipments s
            LEFT JOIN returns r USING (order_id)
            JOIN orders o USING (order_id)
        )
        SELECT *, greatest(0, delivered_date - promised) AS delay_days,
               CASE WHEN greatest(0, delivered_date - promised) = 0 THEN 'on_time'
                    WHEN reshipped THEN 'return_reship'
                    WHEN shipped_on - shipped_at::DATE >= 2 THEN 'carrier'
                    ELSE 'warehouse' END AS cause
        FROM d
    """)
    return c


def _one(con: duckdb.DuckDBPyConnection, sql: str):
    return con.execute(sql).fetchone()


def _map(con: duckdb.DuckDBPyConnection, sql: str) -> dict:
    return dict(con.execute(sql).fetchall())


# ------------------------------------------------------------------------------- determinism


def test_deterministic_and_thread_independent(
    landing: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # another process with another string-hash seed (Faker vocabularies must not depend on it)
    again = tmp_path / "again"
    code = (
        "import sys, pathlib; from source_systems.generator import generate; "
        "generate(pathlib.Path(sys.argv[1]), scale=int(sys.argv[2]), seed=int(sys.argv[3]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run(
        [sys.executable, "-c", code, str(again), str(SCALE), str(SEED)],
        check=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert _files(again) == _files(landing)
    monkeypatch.setattr(generator, "THREADS", 1)
    single = tmp_path / "single"
    generate(single, scale=SCALE, seed=SEED)
    assert _files(single) == _files(landing)


def test_other_seed_differs_and_regeneration_replaces(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    generate(a, scale=1_000, seed=1)
    generate(b, scale=1_000, seed=2)
    fa, fb = _files(a), _files(b)
    assert fa.keys() == fb.keys()
    assert all(fa[k] != fb[k] for k in fa)
    stale = a / "shop" / "orders" / "orders-0099.csv"
    stale.write_text("stale")
    other = a / "shop" / "orders" / "README.txt"
    other.write_text("not ours")
    generate(a, scale=1_000, seed=2)
    assert not stale.exists() and other.exists()
    other.unlink()
    assert _files(a) == fb


def test_chunking_limits_rows_and_keeps_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 4_000
    plain = generate(tmp_path / "plain", scale=n, seed=3)
    for name, value in [
        ("ORDERS_CHUNK", 580),
        ("ITEMS_CHUNK", 1_000),
        ("CUSTOMERS_CHUNK", 300),
        ("LEADS_CHUNK", 300),
        ("SHIPMENTS_CHUNK", 1_000),
        ("RETURNS_CHUNK", 1_000),
        ("REFUNDS_CHUNK", 1_000),
    ]:
        monkeypatch.setattr(generator, name, value)
    small = generate(tmp_path / "small", scale=n, seed=3)
    drop = ("files", "rows")
    assert {k: v for k, v in small.items() if k not in drop} == {
        k: v for k, v in plain.items() if k not in drop
    }
    assert small["rows"] == plain["rows"]
    # the real chunk sizes scaled down by 1000: every file stays below "1,000,000 rows"
    c = duckdb.connect()
    root = tmp_path / "small"
    for table, limit in [
        ("shop/orders", 1_000),
        ("shop/order_items", 2_632),
        ("crm/customers", 316),
        ("crm/leads", 316),
    ]:
        files = small["files"][table]
        assert len(files) >= 2, table
        for f in files:
            path = root / table / f
            if path.suffix == ".csv":
                rows = len(path.read_text(encoding="utf-8").splitlines()) - 1
            else:
                rows = len(path.read_text(encoding="utf-8").splitlines())
            assert 0 < rows <= limit, (f, rows)
    assert len(small["files"]["warehouse/shipments"]) == 4
    got = c.execute(f"""
        SELECT count(*) FROM read_parquet('{root}/warehouse/shipments/*.parquet')
    """).fetchone()[0]
    assert got == small["shipped_orders"]


# ------------------------------------------------------------------------------- formats


def test_formats(landing: Path, truth: dict) -> None:
    for (system, table), ext in generator.TABLES.items():
        key = f"{system}/{table}"
        names = truth["files"][key]
        assert names == [f"{table}-{i:04d}.{ext}" for i in range(1, len(names) + 1)]
        assert sorted(p.name for p in (landing / system / table).iterdir()) == names
        total = 0
        for name in names:
            path = landing / system / table / name
            if ext == "csv":
                lines = path.read_text(encoding="utf-8").splitlines()
                assert lines[0] == CSV_HEADERS[key]
                total += len(lines) - 1
            elif ext == "jsonl":
                for line in path.read_text(encoding="utf-8").splitlines():
                    rec = json.loads(line)
                    assert list(rec) == JSON_KEYS[key]
                    total += 1
            else:
                schema = pq.read_schema(path)
                assert schema.names == [
                    "shipment_id",
                    "order_id",
                    "carrier",
                    "destination_country",
                    "shipped_at",
                    "shipped_on",
                    "delivered_at",
                ]
                assert [schema.field(i).type for i in range(4)] == [pa.string()] * 4
                assert pa.types.is_timestamp(schema.field("shipped_at").type)
                assert schema.field("shipped_at").type.tz is None
                assert pa.types.is_timestamp(schema.field("delivered_at").type)
                assert schema.field("shipped_on").type == pa.date32()
                total += pq.read_metadata(path).num_rows
        assert total == truth["rows"][key], key
    assert len(truth["files"]["shop/orders"]) >= 2


def test_raw_value_forms(con: duckdb.DuckDBPyConnection) -> None:
    bad = _one(
        con,
        r"""
        SELECT count(*) FILTER (WHERE NOT regexp_full_match(event_id, 'E\d{10}')),
               count(*) FILTER (WHERE order_id IS NOT NULL
                                AND NOT regexp_full_match(order_id, 'O\d{9}')),
               count(*) FILTER (WHERE NOT regexp_full_match(customer_id, 'C\d{8}')),
               count(*) FILTER (WHERE order_ts <> 'not-a-date' AND NOT regexp_full_match(order_ts,
                   '2\d{3}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)')),
               count(*) FILTER (WHERE NOT regexp_full_match(updated_at,
                   '2\d{3}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)')),
               count(*) FILTER (WHERE upper(currency) <> 'EUR'),
               count(*) FILTER (WHERE lower(trim(status)) NOT IN
                   ('placed', 'paid', 'shipped', 'delivered', 'cancelled')),
               count(*) FILTER (WHERE NOT regexp_full_match(promised_delivery_date,
                   '\d{4}-\d\d-\d\d'))
        FROM ev_raw
        """,
    )
    assert bad == (0,) * 8
    variety = _one(
        con,
        r"""
        SELECT count(DISTINCT status), count(DISTINCT currency),
               count(DISTINCT regexp_extract(updated_at, '(Z|[+-]\d\d:\d\d)$')),
               count(DISTINCT substr(updated_at, 11, 1)),
               count(*) FILTER (WHERE status <> trim(status))
        FROM ev_raw
        """,
    )
    assert variety[0] >= 20 and variety[1] >= 3 and variety[2] >= 4 and variety[3] == 2
    assert variety[4] > 0
    # emails and country codes: random casing and stray spaces
    mess = _one(
        con,
        """
        SELECT count(*) FILTER (WHERE email <> trim(email)),
               count(*) FILTER (WHERE trim(email) <> lower(trim(email))),
               count(DISTINCT country), count(DISTINCT upper(country))
        FROM customers_raw
        """,
    )
    assert mess[0] > 0 and mess[1] > 0 and mess[2] > mess[3]
    refunds = _one(
        con,
        r"""
        SELECT count(*) FILTER (WHERE regexp_full_match(amount, '\d+,\d\d')),
               count(*) FILTER (WHERE regexp_full_match(amount, '\d+\.\d\d')),
               count(*) FILTER (WHERE NOT regexp_full_match(amount, '\d+[.,]\d\d|n/a'))
        FROM refunds_raw
        """,
    )
    assert refunds[0] > 0 and refunds[1] > refunds[0] and refunds[2] == 0


# ------------------------------------------------------------------------------- truth: shop


def test_truth_orders(con: duckdb.DuckDBPyConnection, truth: dict) -> None:
    assert truth["scale"] == SCALE and truth["seed"] == SEED
    # every event_id is one real event (duplicates are exact copies)
    assert _one(con, "SELECT count(*), count(DISTINCT event_id) FROM ev") == (
        truth["order_events"],
        truth["order_events"],
    )
    assert _one(con, "SELECT count(*) FROM orders")[0] == truth["orders"] == SCALE
    assert _one(con, "SELECT count(*) FROM orders WHERE placed_file IS NULL")[0] == 0
    by_status = _map(con, "SELECT status, count(*) FROM orders GROUP BY ALL")
    assert by_status == {k: v for k, v in truth["orders_by_status"].items() if v}
    assert by_status["cancelled"] == truth["cancelled_orders"]
    # order date is the UTC date; promised date = order date + 5
    assert _one(con, "SELECT count(*) FROM orders WHERE promised <> order_date + 5")[0] == 0
    assert _one(con, "SELECT min(order_date), max(order_date) FROM orders") == (
        dt.date(2026, 1, 1),
        dt.date(2026, 6, 30),
    )
    # some orders' local date differs from their UTC date (offsets matter)
    shifted = _one(
        con,
        """SELECT count(*) FROM ev_raw WHERE order_ts <> 'not-a-date'
           AND left(order_ts, 10)::DATE <> (order_ts::TIMESTAMPTZ)::DATE""",
    )[0]
    assert shifted > 0
    # the later events: all in a later file than the order's placed event
    late, later_total = _one(
        con,
        """SELECT count(*) FILTER (WHERE e.file_no > o.placed_file), count(*)
           FROM ev e JOIN orders o USING (order_id) WHERE e.status <> 'placed'""",
    )
    assert late == later_total == truth["late_events"] == truth["order_events"] - SCALE
    assert 0.55 < late / SCALE < 0.65
    assert _one(
        con,
        """SELECT count(*) FROM ev e JOIN orders o USING (order_id)
           WHERE e.status <> 'placed' AND e.updated_at <= o.order_ts""",
    ) == (0,)
    # duplicates: exact copies, some of them in another file
    rows, distinct_rows, cross_file = _one(
        con,
        """SELECT (SELECT count(*) FROM ev_raw),
                  (SELECT count(*) FROM (SELECT DISTINCT * EXCLUDE (file_no) FROM ev_raw)),
                  (SELECT count(*) FROM (SELECT event_id FROM ev_raw GROUP BY event_id
                                         HAVING count(DISTINCT file_no) > 1))""",
    )
    assert rows - distinct_rows == truth["duplicates"]["orders"]
    assert 0.015 < truth["duplicates"]["orders"] / truth["order_events"] < 0.025
    assert cross_file > 0
    # defects
    q = truth["quarantine"]["orders"]
    assert set(q) == {"missing order_id", "invalid order_ts"}
    got = _one(
        con,
        """SELECT count(*) FILTER (WHERE order_id IS NULL),
                  count(*) FILTER (WHERE order_ts = 'not-a-date') FROM ev_raw""",
    )
    assert got == (q["missing order_id"], q["invalid order_ts"])
    assert min(got) >= 3 and sum(got) / truth["order_events"] < 0.002
    # invalid-order_ts rows are not real orders
    assert _one(
        con,
        """SELECT count(*) FROM ev_raw r JOIN orders o USING (order_id)
           WHERE r.order_ts = 'not-a-date'""",
    ) == (0,)
    assert 0.04 < truth["cancelled_orders"] / SCALE < 0.06


def test_truth_order_items(con: duckdb.DuckDBPyConnection, truth: dict) -> None:
    n_lines, n_orders, lo, hi = _one(
        con,
        """SELECT count(*), count(DISTINCT order_id), min(n), max(n) FROM (
               SELECT order_id, count(*) AS n FROM items GROUP BY order_id)
           JOIN items USING (order_id)""",
    )
    assert n_lines == truth["order_lines"] and n_orders == SCALE and (lo, hi) == (1, 4)
    assert _one(con, "SELECT count(DISTINCT (order_id, line_no)) FROM items")[0] == n_lines
    assert _one(
        con, "SELECT count(*) FROM items WHERE order_id NOT IN (SELECT order_id FROM orders)"
    ) == (0,)
    revenue = _one(con, "SELECT sum(quantity * unit_price) FROM items")[0]
    assert revenue == _dec(truth["revenue"])
    by_status = _map(
        con,
        """SELECT o.status, sum(i.quantity * i.unit_price)
           FROM items i JOIN orders o USING (order_id) GROUP BY ALL""",
    )
    assert by_status == {k: _dec(v) for k, v in truth["revenue_by_status"].items() if v}
    lo_price, hi_price = _one(con, "SELECT min(unit_price), max(unit_price) FROM items_raw")
    assert Decimal("2.00") <= lo_price and hi_price <= Decimal("200.00")
    dup = _one(
        con,
        """SELECT count(*) - (SELECT count(*) FROM (SELECT DISTINCT * FROM items_raw))
           FROM items_raw""",
    )[0]
    assert dup == truth["duplicates"]["order_items"] and 0.005 < dup / n_lines < 0.015
    q = truth["quarantine"]["order_items"]
    got = _one(
        con,
        """SELECT count(*) FILTER (WHERE quantity <= 0),
                  count(*) FILTER (WHERE unit_price IS NULL) FROM items_raw""",
    )
    assert got == (q["non-positive quantity"], q["missing unit_price"]) and min(got) >= 3
    # defect lines sit on real orders
    assert _one(
        con,
        """SELECT count(*) FROM items_raw WHERE (quantity <= 0 OR unit_price IS NULL)
           AND order_id NOT IN (SELECT order_id FROM orders)""",
    ) == (0,)


# ------------------------------------------------------------------------------- truth: crm


def test_truth_customers(con: duckdb.DuckDBPyConnection, truth: dict) -> None:
    n, missing = _one(
        con,
        """SELECT count(DISTINCT customer_id), count(*) FILTER (WHERE customer_id IS NULL)
           FROM customers_raw""",
    )
    assert (
        n == truth["customers"]
        and missing == truth["quarantine"]["customers"]["missing customer_id"]
    )
    assert missing >= 3 and 0.2 < n / SCALE < 0.3
    # exactly the customers who ordered
    assert _one(
        con,
        """SELECT count(*) FROM (SELECT DISTINCT customer_id FROM orders
           EXCEPT SELECT customer_id FROM customers_raw)""",
    ) == (0,)
    assert _one(
        con,
        """SELECT count(*) FROM (SELECT customer_id FROM customers_raw
           WHERE customer_id IS NOT NULL EXCEPT SELECT customer_id FROM orders)""",
    ) == (0,)
    rows, distinct_rows = _one(
        con,
        """SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT * FROM customers_raw))
           FROM customers_raw""",
    )
    assert rows - distinct_rows == truth["duplicates"]["customers"] > 0
    # no real customer appears with different attributes
    assert _one(
        con,
        """SELECT count(*) FROM (SELECT customer_id FROM customers_raw
           WHERE customer_id IS NOT NULL GROUP BY customer_id
           HAVING count(DISTINCT (full_name, email, signup_ts)) > 1)""",
    ) == (0,)
    # normalised emails are unique; signup before the first order, in 2026
    assert _one(
        con, "SELECT count(DISTINCT lower(trim(email))) = count(DISTINCT email) FROM customers_raw"
    ) == (True,)
    assert _one(
        con,
        """SELECT count(*) FROM (SELECT DISTINCT customer_id, signup_ts FROM customers_raw
                                 WHERE customer_id IS NOT NULL) c
           JOIN (SELECT customer_id, min(order_ts) AS first FROM orders GROUP BY ALL) o
           USING (customer_id)
           WHERE (c.signup_ts::TIMESTAMPTZ)::TIMESTAMP > o.first
              OR (c.signup_ts::TIMESTAMPTZ)::TIMESTAMP < TIMESTAMP '2026-01-01'""",
    ) == (0,)


def test_truth_leads(con: duckdb.DuckDBPyConnection, truth: dict) -> None:
    assert _one(con, "SELECT count(*), count(DISTINCT lead_id) FROM leads") == (
        truth["leads"],
        truth["leads"],
    )
    assert 0.75 < truth["leads"] / truth["customers"] < 0.85
    spellings = {
        "organic": {"organic", "Organic", "ORGANIC"},
        "lead_generation": {"lead_generation", "Lead Generation", "lead-gen"},
        "both": {"both", "Both"},
    }
    raw = _map(con, "SELECT channel, count(*) FROM leads GROUP BY ALL")
    assert set(raw) == set().union(*spellings.values())
    by_channel = {c: sum(raw[s] for s in spelled) for c, spelled in spellings.items()}
    assert by_channel == truth["leads_by_channel"]
    # the mapping a mesh would use
    mapped = _map(
        con,
        """SELECT CASE replace(replace(lower(trim(channel)), ' ', '_'), '-', '_')
                      WHEN 'lead_gen' THEN 'lead_generation'
                      ELSE replace(replace(lower(trim(channel)), ' ', '_'), '-', '_') END AS ch,
                  count(*) FROM leads GROUP BY ALL""",
    )
    assert mapped == truth["leads_by_channel"]
    assert _one(
        con,
        """SELECT count(*) FROM leads WHERE (ad_platform IS NULL) <> (lower(channel) = 'organic')
           OR (ad_platform IS NOT NULL AND ad_platform NOT IN ('google', 'meta', 'linkedin'))""",
    ) == (0,)
    converted = _one(con, "SELECT count(*) FROM leads WHERE customer_id IS NOT NULL")[0]
    assert converted == truth["converted_leads"] and 0.45 < converted / truth["leads"] < 0.55
    assert _one(
        con, "SELECT count(DISTINCT customer_id) FROM leads WHERE customer_id IS NOT NULL"
    ) == (converted,)
    # converted leads: email equals their customer's email up to casing and spaces
    matched = _one(
        con,
        """SELECT count(*) FROM leads l
           JOIN (SELECT DISTINCT customer_id, lower(trim(email)) AS e FROM customers_raw
                 WHERE customer_id IS NOT NULL) c USING (customer_id)
           WHERE lower(trim(l.email)) = c.e""",
    )[0]
    assert matched == converted
    # unconverted leads have their own emails
    assert _one(
        con,
        """SELECT count(*) FROM leads l WHERE customer_id IS NULL AND lower(trim(email)) IN
           (SELECT lower(trim(email)) FROM customers_raw)""",
    ) == (0,)
    assert _one(con, "SELECT count(*) FROM leads WHERE email <> trim(email)")[0] > 0


# ------------------------------------------------------------------------------- truth: warehouse


def test_truth_shipments_and_delays(con: duckdb.DuckDBPyConnection, truth: dict) -> None:
    n, distinct = _one(con, "SELECT count(*), count(DISTINCT order_id) FROM shipments")
    assert n == distinct == truth["shipped_orders"] == SCALE - truth["cancelled_orders"]
    # no shipment for a cancelled order, every other order has one
    assert _one(
        con,
        """SELECT count(*) FROM orders o LEFT JOIN shipments s USING (order_id)
           WHERE (o.status = 'cancelled') = (s.order_id IS NOT NULL)""",
    ) == (0,)
    assert _one(con, "SELECT count(*) FROM returns")[0] == truth["returned_reshipped"]
    assert _one(
        con,
        """SELECT count(*) FROM returns r JOIN shipments s USING (order_id)
           WHERE r.original_shipment_id = s.shipment_id
             AND s.shipped_at IS NULL AND s.shipped_on IS NULL AND s.delivered_at IS NULL""",
    ) == (truth["returned_reshipped"],)
    assert _one(
        con,
        """SELECT count(*) FROM shipments
           WHERE (shipped_at IS NULL) <> (order_id IN (SELECT order_id FROM returns))""",
    ) == (0,)
    causes = _map(con, "SELECT cause, count(*) FROM delays GROUP BY ALL")
    assert causes == truth["delays_by_cause"]
    days = _map(con, "SELECT cause, sum(delay_days) FROM delays GROUP BY ALL")
    assert {k: int(v) for k, v in days.items()} == truth["delay_days_by_cause"]
    shares = {k: v / truth["shipped_orders"] for k, v in causes.items()}
    for cause, share in {
        "on_time": 0.80,
        "warehouse": 0.07,
        "carrier": 0.08,
        "return_reship": 0.05,
    }.items():
        assert abs(shares[cause] - share) < 0.02, cause


def test_scenario_timings(con: duckdb.DuckDBPyConnection) -> None:
    """Each scenario's timing, as the README describes it, per derived cause."""
    hour = "INTERVAL 1 HOUR"
    bad = _map(
        con,
        f"""
        SELECT cause, count(*) FILTER (WHERE NOT (CASE cause
            WHEN 'on_time' THEN shipped_at BETWEEN order_ts + 4 * {hour}
                                               AND order_ts + 20 * {hour}
                AND shipped_on = shipped_at::DATE
                AND delivered_at BETWEEN shipped_at + 24 * {hour} AND shipped_at + 72 * {hour}
                AND delivered_date <= promised
            WHEN 'warehouse' THEN shipped_at BETWEEN order_ts + 72 * {hour}
                                                 AND order_ts + 144 * {hour}
                AND shipped_on = shipped_at::DATE
                AND delivered_at BETWEEN shipped_at + 48 * {hour} AND shipped_at + 72 * {hour}
                AND delivered_date > promised
            WHEN 'carrier' THEN shipped_at BETWEEN order_ts + 4 * {hour}
                                               AND order_ts + 20 * {hour}
                AND shipped_on - shipped_at::DATE BETWEEN 3 AND 5
                AND delivered_date - shipped_on BETWEEN 2 AND 3
                AND delivered_date > promised
            ELSE reshipped_at BETWEEN order_ts + 144 * {hour} AND order_ts + 216 * {hour}
                AND re_delivered_at BETWEEN reshipped_at + 24 * {hour}
                                        AND reshipped_at + 48 * {hour}
                AND delivered_date > promised
            END)) FROM delays GROUP BY ALL
        """,
    )
    assert bad == {"on_time": 0, "warehouse": 0, "carrier": 0, "return_reship": 0}
    assert _one(
        con,
        """SELECT count(*) FROM returns WHERE NOT (returned_at < reshipped_at
           AND reshipped_on = reshipped_at::DATE AND delivered_at > reshipped_at)""",
    ) == (0,)
    assert _one(
        con,
        "SELECT min(delivered_date) >= DATE '2026-01-01', max(delivered_date) < DATE "
        "'2027-01-01' FROM delays",
    ) == (True, True)


# ------------------------------------------------------------------------------- truth: ledger


def test_truth_refunds(con: duckdb.DuckDBPyConnection, truth: dict) -> None:
    invalid = _one(con, "SELECT count(*) FROM refunds_raw WHERE amount = 'n/a'")[0]
    assert invalid == truth["quarantine"]["refunds"]["invalid amount"] >= 3
    con.execute("""
        CREATE OR REPLACE TEMP TABLE refunds AS
        SELECT refund_id, order_id, replace(amount, ',', '.')::DECIMAL(18, 2) AS amount,
               reason, (refunded_at::TIMESTAMPTZ)::TIMESTAMP AS refunded_at
        FROM refunds_raw WHERE amount <> 'n/a'
    """)
    n, distinct, total = _one(
        con, "SELECT count(*), count(DISTINCT refund_id), sum(amount) FROM refunds"
    )
    assert n == distinct == truth["refunds"] and total == _dec(truth["refund_amount"])
    by_reason = _map(con, "SELECT reason, count(*) FROM refunds GROUP BY ALL")
    assert by_reason == truth["refunds_by_reason"]
    amounts = _map(con, "SELECT reason, sum(amount) FROM refunds GROUP BY ALL")
    assert amounts == {k: _dec(v) for k, v in truth["refund_amount_by_reason"].items()}
    # late_delivery only for delayed orders (10-30 % of the order value), damaged only on time
    checks = _one(
        con,
        """
        WITH v AS (SELECT order_id, sum(quantity * unit_price) AS value FROM items GROUP BY ALL)
        SELECT count(*) FILTER (WHERE r.reason = 'late_delivery' AND d.cause = 'on_time'),
               count(*) FILTER (WHERE r.reason = 'damaged' AND d.cause <> 'on_time'),
               count(*) FILTER (WHERE r.reason = 'late_delivery'
                                AND NOT r.amount BETWEEN v.value * 0.10 - 0.01
                                                     AND v.value * 0.30 + 0.01),
               count(*) FILTER (WHERE r.amount <= 0 OR r.amount > v.value),
               count(*) FILTER (WHERE d.order_id IS NULL),
               count(*) FILTER (WHERE r.refunded_at <= coalesce(d.delivered_at,
                                                               d.re_delivered_at))
        FROM refunds r LEFT JOIN delays d USING (order_id) JOIN v USING (order_id)
        """,
    )
    assert checks == (0, 0, 0, 0, 0, 0)
    delayed = sum(v for k, v in truth["delays_by_cause"].items() if k != "on_time")
    assert 0.33 < truth["refunds_by_reason"]["late_delivery"] / delayed < 0.47
    on_time = truth["delays_by_cause"]["on_time"]
    assert 0.001 < truth["refunds_by_reason"]["damaged"] / on_time < 0.01


def test_truth_keys(truth: dict) -> None:
    for key in [
        "scale",
        "seed",
        "orders",
        "order_events",
        "late_events",
        "cancelled_orders",
        "customers",
        "order_lines",
        "revenue",
        "revenue_by_status",
        "duplicates",
        "quarantine",
        "shipped_orders",
        "delays_by_cause",
        "returned_reshipped",
        "leads",
        "leads_by_channel",
        "converted_leads",
        "refunds",
        "refund_amount",
        "refunds_by_reason",
    ]:
        assert key in truth, key
    assert set(truth["quarantine"]) == {"orders", "order_items", "customers", "refunds"}
    assert set(truth["delays_by_cause"]) == {"on_time", "warehouse", "carrier", "return_reship"}
    assert set(truth["leads_by_channel"]) == {"organic", "lead_generation", "both"}


def test_small_scale_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate(tmp_path, scale=10)

"""Security of the mesh: masked ports, the owner's raw reads, denied reads,
the audit trail, and the alerts of blocked publications."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from dagmesh import Column, Domain
from dagmesh.engine import audit_log
from dagmesh.engine.access import AccessDeniedError
from dagmesh.engine.build import build_product
from dagmesh.orchestration.assets import product_asset
from dagmesh.orchestration.resources import MeshStorage
from tests.conftest import REPO, TEST_PII_KEY
from tests.test_contract_checks import BAD, _contract, _product

PII_COLUMNS = {"crm/customers": ["full_name", "email", "phone", "street_address"]}


def _raw_pii_values(landing: Path) -> duckdb.DuckDBPyConnection:
    """A DuckDB holding every personal value the generator wrote, raw and
    normalised the way products normalise them (trimmed, lower case)."""
    con = duckdb.connect()
    customers = str(landing / "crm" / "customers" / "*.csv")
    leads = str(landing / "crm" / "leads" / "*.jsonl")
    con.execute(
        "CREATE TABLE pii AS "
        + " UNION ".join(
            f"SELECT {f}(v) AS v FROM (SELECT unnest([full_name, email, phone, street_address]) "
            f"AS v FROM read_csv('{customers}', all_varchar=true)) WHERE v IS NOT NULL "
            f"UNION SELECT {f}(email) FROM read_json('{leads}') WHERE email IS NOT NULL"
            for f in ("trim", "lower")
        )
    )
    return con


def _varchar_columns(con: duckdb.DuckDBPyConnection, file: Path) -> list[str]:
    described = con.execute(f"DESCRIBE SELECT * FROM '{file}'").fetchall()
    return [name for name, kind, *_ in described if kind == "VARCHAR"]


def _raw_hits(con: duckdb.DuckDBPyConnection, file: Path) -> dict[str, int]:
    hits = {}
    for column in _varchar_columns(con, file):
        n = con.execute(
            f"SELECT count(*) FROM '{file}' WHERE \"{column}\" IN (SELECT v FROM pii)"
        ).fetchall()[0][0]
        if n:
            hits[column] = n
    return hits


def test_no_port_other_domains_read_holds_raw_pii(materialized, mesh_home: Path):
    con = _raw_pii_values(mesh_home / "landing")
    assert con.execute("SELECT count(*) FROM pii").fetchall()[0][0] > 5_000
    ports = sorted(mesh_home.glob("domains/*/ports/*/current/data.parquet"))
    assert len(ports) == 17
    leaks = {str(p.relative_to(mesh_home)): h for p in ports if (h := _raw_hits(con, p))}
    assert leaks == {}
    # The scan finds raw values where they are: the owner's raw file.
    raw = mesh_home / "domains/customers/ports/customer_profiles/current/raw.parquet"
    assert set(_raw_hits(con, raw)) == {"full_name", "email", "phone", "street_address"}


def test_joinable_pii_is_a_keyed_hash_and_the_rest_is_redacted(materialized, mesh_home: Path):
    port = mesh_home / "domains/customers/ports/customer_profiles/current"
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT m.email, r.email, m.full_name, m.phone, m.city = r.city "
        f"FROM '{port}/data.parquet' m JOIN '{port}/raw.parquet' r USING (customer_id) "
        "WHERE r.email IS NOT NULL LIMIT 50"
    ).fetchall()
    assert len(rows) == 50
    for masked, raw, name, phone, same_city in rows:
        assert masked == hmac.new(TEST_PII_KEY.encode(), raw.encode(), hashlib.sha256).hexdigest()
        assert name is None and phone is None
        assert same_city
    info = json.loads((port / "version.json").read_text())
    assert info["masked_columns"] == {
        "full_name": "redact",
        "email": "hash",
        "phone": "redact",
        "street_address": "redact",
    }
    # Equal emails give equal hashes across products: customer_360 joins on it.
    joined = con.execute(
        f"SELECT count(*) FROM '{port}/data.parquet' p JOIN "
        f"'{mesh_home}/domains/customers/ports/customer_360/current/data.parquet' c "
        "USING (customer_id) WHERE p.email = c.email"
    ).fetchall()[0][0]
    assert joined > 1000


def test_the_owner_domain_reads_raw_values(materialized, mesh_home: Path):
    # customer_360 (customers) consumed customer_profiles raw: its own raw file has emails.
    raw = mesh_home / "domains/customers/ports/customer_360/current/raw.parquet"
    emails = duckdb.connect().execute(f"SELECT email FROM '{raw}' WHERE email IS NOT NULL LIMIT 5")
    assert all("@" in e for (e,) in emails.fetchall())


def test_the_audit_trail_records_publishes_and_cross_domain_reads(materialized, mesh_home):
    env = {**os.environ, "DAGMESH_HOME": str(mesh_home), "DAGMESH_PROJECT": str(REPO)}
    dagmesh = str(Path(sys.executable).with_name("dagmesh"))
    result = subprocess.run(
        [dagmesh, "audit", "sales/orders", "--json"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    publishes = [e for e in events if e["event"] == "publish" and e["product"] == "sales/orders"]
    current = (mesh_home / "domains/sales/ports/orders/current").resolve().name
    assert publishes[-1]["version"] == current
    assert publishes[-1]["contract_version"] == "1.0.0"
    assert publishes[-1]["rows"] > 1000
    readers = {e["consumer"] for e in events if e["event"] == "read"}
    # Python (customers, shipping) and dbt (marketing) consumers are all recorded.
    assert {"customers/customer_360", "shipping/shipping_delays"} <= readers
    assert any(r.startswith("marketing/") for r in readers)
    # Every read names a version that was published (other tests publish more).
    assert {e["version"] for e in events if e["event"] == "read"} <= {
        e["version"] for e in publishes
    }
    table = subprocess.run(
        [dagmesh, "audit", "sales/orders"], env=env, capture_output=True, text=True
    )
    assert "customers/customer_360" in table.stdout


def _vault(home: Path) -> tuple[Domain, Domain]:
    vault = Domain("vault", owner="security", description="Secrets.")
    vault.sql_product(
        "keys",
        description="Private keys.",
        columns=[Column("k", "INTEGER", "Key.", classification="internal")],
        access="private",
        sql="SELECT 1 AS k",
    )
    vault.sql_product(
        "shared_keys",
        description="Keys shared with finance only.",
        columns=[Column("k", "INTEGER", "Key.", classification="internal")],
        access="internal",
        consumers=["finance"],
        sql="SELECT 1 AS k",
    )
    thief = Domain("thief", owner="thief", description="Reads what it should not.")
    for name in ("keys", "shared_keys"):
        thief.sql_product(
            f"stolen_{name}",
            description="Copies the vault.",
            consumes=[f"vault/{name}"],
            columns=[Column("k", "INTEGER", "Key.", classification="internal")],
            sql=f"SELECT k FROM {name}",
        )
    mesh = MeshStorage(home=str(home))
    for product in vault.products.values():
        assert build_product(product, mesh, "vault-run").published
    return vault, thief


def test_a_read_the_access_level_forbids_is_denied_and_recorded(tmp_path: Path):
    home = tmp_path / "home"
    _, thief = _vault(home)
    mesh = MeshStorage(home=str(home))
    with pytest.raises(AccessDeniedError, match="thief/stolen_keys may not read vault/keys"):
        build_product(thief.products["stolen_keys"], mesh, "thief-run")
    with pytest.raises(AccessDeniedError, match=r"internal to vault and \['finance'\]"):
        build_product(thief.products["stolen_shared_keys"], mesh, "thief-run")
    denied = audit_log.query(home, event="read_denied")
    assert [(e["consumer"], e["product"]) for e in denied] == [
        ("thief/stolen_keys", "vault/keys"),
        ("thief/stolen_shared_keys", "vault/shared_keys"),
    ]
    assert denied[0]["reason"] == "vault/keys is private to vault"
    assert not (home / "domains/thief/ports/stolen_keys/current").exists()
    assert audit_log.query(home, event="read") == []


def test_a_denied_read_fails_the_dagster_run_with_the_reason(tmp_path: Path):
    home = tmp_path / "home"
    _, thief = _vault(home)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [product_asset(thief.products["stolen_keys"])],
            resources={"mesh": MeshStorage(home=str(home))},
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "access denied: thief/stolen_keys may not read vault/keys" in str(
        failure.step_failure_data.error.message
    )


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        length = int(self.headers["Content-Length"])
        _Hook.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hook.received = []
    monkeypatch.setenv("DAGMESH_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/a")
    yield _Hook.received
    server.shutdown()


def test_a_blocked_publication_alerts_through_the_webhook(tmp_path: Path, webhook, caplog):
    contract = _contract(tier_rules=[{"rule": "validValues", "validValues": ["gold", "silver"]}])
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [product_asset(_product(BAD), contract)],
            resources={"mesh": MeshStorage(home=str(tmp_path))},
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success
    [alert] = [a for a in webhook if a["kind"] == "check_failure"]
    assert alert["subject"] == "shop/customers"
    assert "column 'tier' violates validValues" in alert["message"]
    assert "'email': '***'" in alert["message"] and "b@x.com" not in alert["message"]
    assert "dagmesh alert [check_failure] shop/customers" in caplog.text

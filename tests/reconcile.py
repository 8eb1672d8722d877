"""The sample mesh's published products checked against what the source
generator knows (``landing/_truth.json``), wherever the ports live.

A :class:`Ports` says where each product's published data and version record
are: :class:`LocalPorts` on the embedded profile's disk, :class:`S3Ports` on
an S3 server (read as its admin). The checks only read ports, in a throwaway
DuckDB: no dagmesh code decides what they see.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import duckdb

QUARANTINED = {
    "sales/orders": "orders",
    "sales/order_items": "order_items",
    "customers/customer_profiles": "customers",
    "finance/refunds": "refunds",
}


class Ports(Protocol):
    def data(self, ref: str) -> str:
        """The current published data file of ``domain/product`` (a path or URL)."""

    def record(self, ref: str) -> dict:
        """The current published version's ``version.json``."""

    def query(self, sql: str) -> list[tuple]:
        """Rows of ``sql`` in a DuckDB that can read :meth:`data`'s files."""


class LocalPorts:
    """Ports on the local disk under a ``DAGMESH_HOME``."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def _current(self, ref: str) -> Path:
        domain, name = ref.split("/")
        return self.home / "domains" / domain / "ports" / name / "current"

    def data(self, ref: str) -> str:
        return str(self._current(ref) / "data.parquet")

    def record(self, ref: str) -> dict:
        return json.loads((self._current(ref) / "version.json").read_text())

    def query(self, sql: str) -> list[tuple]:
        return duckdb.connect().execute(sql).fetchall()


class S3Ports:
    """Ports on an S3 server (``tests.servers.SeaweedS3``), read as its admin:
    each port's ``current.json`` pointer resolved once, as a reader does."""

    def __init__(self, server) -> None:
        from dagmesh.engine.extensions import load

        self.server = server
        self.client = server.client()
        self.versions: dict[str, str] = {}
        self.connection = duckdb.connect()
        load(self.connection, "httpfs")  # from its wheel: no download
        key_id, secret = server.admin
        self.connection.execute(
            "CREATE SECRET admin (TYPE s3, KEY_ID ?, SECRET ?, ENDPOINT ?, URL_STYLE 'path', "
            "USE_SSL false, REGION 'us-east-1')",
            [key_id, secret, server.endpoint],
        )

    def _version_key(self, ref: str, name: str) -> str:
        prefix = f"{self.server.prefix}/published/{ref}"
        if ref not in self.versions:
            pointer = self._get(f"{prefix}/current.json")
            self.versions[ref] = pointer["version"]
        return f"{prefix}/versions/{self.versions[ref]}/{name}"

    def data(self, ref: str) -> str:
        return f"s3://{self.server.bucket}/{self._version_key(ref, 'data.parquet')}"

    def record(self, ref: str) -> dict:
        return self._get(self._version_key(ref, "version.json"))

    def _get(self, key: str) -> dict:
        return json.loads(self.client.get_object(Bucket=self.server.bucket, Key=key)["Body"].read())

    def query(self, sql: str) -> list[tuple]:
        return self.connection.execute(sql).fetchall()


def orders_and_revenue(ports: Ports, truth: dict) -> None:
    """Orders, order lines and daily revenue equal the generator's counts and sums."""
    orders, items = ports.data("sales/orders"), ports.data("sales/order_items")
    ((count, cancelled),) = ports.query(
        f"SELECT count(*), count(*) FILTER (WHERE status = 'cancelled') FROM '{orders}'"
    )
    assert count == truth["orders"]  # duplicates and late events collapsed, defects out
    assert cancelled == truth["cancelled_orders"]
    statuses = dict(ports.query(f"SELECT status, count(*) FROM '{orders}' GROUP BY ALL"))
    assert statuses == truth["orders_by_status"]  # the late-arriving event wins
    ((lines, line_sum),) = ports.query(f"SELECT count(*), sum(line_amount) FROM '{items}'")
    assert lines == truth["order_lines"]
    assert float(line_sum) == truth["revenue"]
    revenue = ports.data("sales/daily_revenue")
    ((gross, net),) = ports.query(f"SELECT sum(gross_revenue), sum(net_revenue) FROM '{revenue}'")
    assert gross == line_sum  # revenue equals the sum of order lines
    assert float(net) == round(truth["revenue"] - truth["revenue_by_status"]["cancelled"], 2)


def delays(ports: Ports, truth: dict) -> None:
    """Delays by cause, re-shipped returns and carrier hand-overs equal the
    generated scenarios, through shipping and finance's weekly impact."""
    delayed = ports.data("shipping/shipping_delays")
    by_cause = dict(ports.query(f"SELECT cause, count(*) FROM '{delayed}' GROUP BY ALL"))
    assert by_cause == truth["delays_by_cause"]
    shipments = ports.data("shipping/shipments")
    ((reshipped,),) = ports.query(
        f"SELECT count(*) FROM '{shipments}' WHERE shipped_at IS NULL AND shipped_on IS NULL"
    )
    assert reshipped == truth["returned_reshipped"]
    ((differs,),) = ports.query(f"SELECT count(*) FROM '{shipments}' WHERE handover_days >= 2")
    assert differs == truth["delays_by_cause"]["carrier"]
    weekly = ports.data("finance/weekly_delay_impact")
    late = dict(ports.query(f"SELECT cause, sum(delayed_orders) FROM '{weekly}' GROUP BY ALL"))
    assert late == {c: n for c, n in truth["delays_by_cause"].items() if c != "on_time"}


def quarantine_counts(ports: Ports, truth: dict) -> None:
    """Each version record's quarantine counts equal the injected defects."""
    found = {}
    for ref, table in QUARANTINED.items():
        (reasons,) = ports.record(ref)["quarantined"].values()
        found[table] = reasons
    assert found == truth["quarantine"]


def marketing_finance_and_customers(ports: Ports, truth: dict) -> None:
    """Leads, conversions, refunds and customers equal the generator's."""
    leads = ports.data("marketing/crm_leads")
    by_channel = dict(ports.query(f"SELECT channel, count(*) FROM '{leads}' GROUP BY ALL"))
    assert by_channel == truth["leads_by_channel"]
    attribution = ports.data("marketing/lead_attribution")
    ((converted,),) = ports.query(
        f"SELECT count(*) FROM '{attribution}' WHERE customer_id IS NOT NULL"
    )
    assert converted == truth["converted_leads"]
    refunds = ports.data("finance/refunds")
    ((n, amount),) = ports.query(f"SELECT count(*), sum(amount) FROM '{refunds}'")
    assert (n, float(amount)) == (truth["refunds"], truth["refund_amount"])
    for ref in ("customers/customer_profiles", "customers/customer_360"):
        assert ports.query(f"SELECT count(*) FROM '{ports.data(ref)}'") == [(truth["customers"],)]

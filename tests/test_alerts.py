"""Alerts against real parts: a real HTTP webhook on localhost and real Dagster instances."""

from __future__ import annotations

import base64
import datetime
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dagster as dg
import pytest

from dagmesh.orchestration.alerts import (
    Alert,
    freshness_alert_sensor,
    run_failure_alert_sensor,
    send_alert,
)

ORDERS = dg.AssetKey(["sales", "orders"])
RETURNS = dg.AssetKey(["sales", "returns"])  # never materialized


@dataclass
class Webhook:
    """A real HTTP server recording what was POSTed to it."""

    url: str
    posts: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200  # what the server answers
    delay: float = 0.0  # seconds to wait before answering


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # http.server calls do_<METHOD>
        hook: Webhook = self.server.hook  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers["Content-Length"]))
        hook.posts.append(
            {
                "path": self.path,
                "content_type": self.headers["Content-Type"],
                "authorization": self.headers["Authorization"],
                "json": json.loads(body),
            }
        )
        time.sleep(hook.delay)
        self.send_response(hook.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # quiet: no access log on stderr
        pass


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Webhook]:
    """A webhook server on 127.0.0.1, with ``DAGMESH_ALERT_WEBHOOK_URL`` pointing at it."""
    for proxy in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.delenv("DAGMESH_ALERT_WEBHOOK_TIMEOUT", raising=False)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    hook = Webhook(url=f"http://127.0.0.1:{server.server_address[1]}/hook")
    server.hook = hook  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("DAGMESH_ALERT_WEBHOOK_URL", hook.url)
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port() -> int:
    """A localhost port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- send_alert


def test_send_alert_posts_json_and_logs(webhook: Webhook, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dagmesh.orchestration.alerts")
    alert = Alert(
        kind="check_failure",
        subject="sales/orders",
        message="Product sales/orders failed rule not_null on column order_id (3 rows).",
        details={"run_id": "abc123", "rule": "not_null"},
    )

    send_alert(alert)

    assert len(webhook.posts) == 1
    post = webhook.posts[0]
    assert post["path"] == "/hook"
    assert post["content_type"] == "application/json"
    body = post["json"]
    assert body["kind"] == "check_failure"
    assert body["subject"] == "sales/orders"
    assert body["message"] == alert.message
    assert body["details"] == {"run_id": "abc123", "rule": "not_null"}
    sent_at = datetime.datetime.fromisoformat(body["sent_at"])
    assert sent_at.utcoffset() == datetime.timedelta(0)
    assert abs((datetime.datetime.now(datetime.UTC) - sent_at).total_seconds()) < 60

    [record] = [r for r in caplog.records if r.name == "dagmesh.orchestration.alerts"]
    assert record.levelno == logging.ERROR
    assert record.getMessage() == f"dagmesh alert [check_failure] sales/orders: {alert.message}"


def test_webhook_credentials_in_url_become_basic_auth(
    webhook: Webhook, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dagmesh.orchestration.alerts")
    url = webhook.url.replace("http://", "http://alerts:s%3Acret@") + "?token=t0ken"
    monkeypatch.setenv("DAGMESH_ALERT_WEBHOOK_URL", url)

    send_alert(Alert("run_failure", "orders_job", "Run 1 of job orders_job failed."))

    [post] = webhook.posts
    assert post["path"] == "/hook?token=t0ken"
    expected = base64.b64encode(b"alerts:s:cret").decode()
    assert post["authorization"] == f"Basic {expected}"
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "cret" not in caplog.text
    assert "t0ken" not in caplog.text


def test_freshness_breach_logs_at_warning_without_webhook(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("DAGMESH_ALERT_WEBHOOK_URL", raising=False)
    caplog.set_level(logging.INFO, logger="dagmesh.orchestration.alerts")

    send_alert(Alert("freshness_breach", "sales/orders", "Data product sales/orders is stale."))

    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "dagmesh alert [freshness_breach] sales/orders: Data product sales/orders is stale."
    )


def test_unreachable_webhook_warns_without_leaking_the_url(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    port = closed_port()
    monkeypatch.setenv(
        "DAGMESH_ALERT_WEBHOOK_URL",
        f"http://alice:hunter2@127.0.0.1:{port}/hooks/T0KEN-SECRET?token=s3cr3t",
    )
    caplog.set_level(logging.INFO, logger="dagmesh.orchestration.alerts")

    send_alert(Alert("run_failure", "orders_job", "Run 1 of job orders_job failed."))  # no raise

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"http://127.0.0.1:{port}" in warnings[0].getMessage()
    for secret in ("T0KEN-SECRET", "s3cr3t", "hunter2", "alice", "/hooks"):
        assert secret not in caplog.text


def test_webhook_error_status_and_timeout_are_warnings(
    webhook: Webhook, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dagmesh.orchestration.alerts")
    alert = Alert("check_failure", "sales/orders", "Product sales/orders failed rule unique.")

    webhook.status = 500
    send_alert(alert)
    assert len(webhook.posts) == 1
    assert "answered HTTP 500" in caplog.text

    caplog.clear()
    webhook.status, webhook.delay = 200, 1.0
    monkeypatch.setenv("DAGMESH_ALERT_WEBHOOK_TIMEOUT", "0.2")
    started = time.monotonic()
    send_alert(alert)
    assert time.monotonic() - started < 0.9
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "timed out" in warnings[0].getMessage()
    assert "/hook" not in caplog.text


# --------------------------------------------------------------------------- freshness sensor


@dg.asset(key=ORDERS)
def orders() -> int:
    return 1


def test_freshness_sensor_definition() -> None:
    sensor = freshness_alert_sensor("sales", {ORDERS: datetime.timedelta(hours=1)})
    assert sensor.name == "sales_freshness_alerts"
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 60
    assert not sensor.targets
    # Loads in a code location next to the run-failure sensor.
    dg.Definitions.validate_loadable(
        dg.Definitions(assets=[orders], sensors=[sensor, run_failure_alert_sensor("sales")])
    )


def test_freshness_sensor_alerts_once_per_breach(webhook: Webhook) -> None:
    def evaluate(instance: dg.DagsterInstance, lag: datetime.timedelta, cursor: str | None) -> Any:
        sensor = freshness_alert_sensor("sales", {ORDERS: lag})
        data = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor))
        assert not data.run_requests  # it only alerts
        return data

    with dg.instance_for_test() as instance:
        assert dg.materialize([orders], instance=instance).success

        # Within its SLA: no alert.
        fresh = evaluate(instance, datetime.timedelta(days=1), None)
        assert webhook.posts == []
        assert "1/1 products fresh" in fresh.skip_message

        # Older than a zero SLA: exactly one alert naming the product.
        stale = evaluate(instance, datetime.timedelta(0), fresh.cursor)
        assert len(webhook.posts) == 1
        body = webhook.posts[0]["json"]
        assert body["kind"] == "freshness_breach"
        assert body["subject"] == "sales/orders"
        assert "sales/orders" in body["message"]
        assert "last materialized" in body["message"]
        assert "0s" in body["message"]  # the SLA
        assert body["details"]["domain"] == "sales"
        assert body["details"]["max_lag_seconds"] == 0
        assert "sales/orders" in stale.skip_message

        # Still stale with the returned cursor: no second alert.
        again = evaluate(instance, datetime.timedelta(0), stale.cursor)
        assert len(webhook.posts) == 1
        assert "already alerted" in again.skip_message

        # Fresh again, then stale again: alerts again.
        recovered = evaluate(instance, datetime.timedelta(days=1), again.cursor)
        assert len(webhook.posts) == 1
        evaluate(instance, datetime.timedelta(0), recovered.cursor)
        assert len(webhook.posts) == 2


def test_freshness_sensor_never_materialized(webhook: Webhook) -> None:
    sensor = freshness_alert_sensor(
        "sales", {ORDERS: datetime.timedelta(days=1), RETURNS: datetime.timedelta(hours=6)}
    )
    with dg.instance_for_test() as instance:
        assert dg.materialize([orders], instance=instance).success

        first = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
        assert len(webhook.posts) == 1
        body = webhook.posts[0]["json"]
        assert body["subject"] == "sales/returns"
        assert "sales/returns" in body["message"]
        assert "never been materialized" in body["message"]
        assert "6h" in body["message"]
        assert "1/2 products fresh" in first.skip_message

        sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=first.cursor))
        assert len(webhook.posts) == 1


# --------------------------------------------------------------------------- run failure sensor


@dg.op
def load_orders() -> None:
    raise ValueError("orders feed is empty")


@dg.job
def orders_job() -> None:
    load_orders()


def test_run_failure_sensor_alerts_with_job_and_error(webhook: Webhook) -> None:
    sensor = run_failure_alert_sensor("sales")
    assert sensor.name == "sales_run_failure_alerts"
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING

    with dg.instance_for_test() as instance:
        result = orders_job.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        [failure] = [
            record.dagster_event
            for record in instance.all_logs(result.run_id)
            if record.dagster_event is not None
            and record.dagster_event.event_type == dg.DagsterEventType.RUN_FAILURE
        ]
        context = dg.build_run_status_sensor_context(
            sensor_name=sensor.name,
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            dagster_event=failure,
        ).for_run_failure()

        sensor(context)

    assert len(webhook.posts) == 1
    body = webhook.posts[0]["json"]
    assert body["kind"] == "run_failure"
    assert body["subject"] == "orders_job"
    assert result.run_id in body["message"]
    assert "orders_job" in body["message"]
    assert "orders feed is empty" in body["message"]
    assert body["details"] == {"run_id": result.run_id, "job": "orders_job", "domain": "sales"}

"""Alerts: failed runs, failed checks and stale data products, sent to a log and a webhook.

Every alert is logged on the ``dagmesh.orchestration.alerts`` logger. When
``DAGMESH_ALERT_WEBHOOK_URL`` is set it is also POSTed there as JSON (timeout
``DAGMESH_ALERT_WEBHOOK_TIMEOUT`` seconds, default 5). Delivery problems are
logged as warnings and never raised: an alert must not fail the run that sent it.
The webhook URL may carry a token, so only its scheme and host are ever logged;
a URL with a space or control character is refused (:func:`dagmesh.config.alert_webhook_url`).
Error texts copied from failed runs are redacted unless dagmesh wrote them
(:func:`dagmesh.engine.privacy.safe_error_text`): they may quote personal data.

Two sensor factories turn Dagster events into alerts for one domain (code location):
:func:`run_failure_alert_sensor` and :func:`freshness_alert_sensor`.
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import dagster as dg

from dagmesh import config
from dagmesh.engine.privacy import safe_error_text

logger = logging.getLogger("dagmesh.orchestration.alerts")

WEBHOOK_URL_ENV = config.ALERT_WEBHOOK_URL_ENV
WEBHOOK_TIMEOUT_ENV = config.ALERT_WEBHOOK_TIMEOUT_ENV
DEFAULT_WEBHOOK_TIMEOUT = 5.0
# Longest error text copied from a failed run into an alert message.
MAX_ERROR_CHARS = 500

AlertKind = Literal["run_failure", "check_failure", "freshness_breach"]


@dataclass(frozen=True)
class Alert:
    """One alert: what happened (``kind``), to what (``subject``) and a sentence for humans."""

    kind: AlertKind
    subject: str  # a product ref like "sales/orders", or a job/run name
    message: str  # one human sentence naming product/column/rule where relevant
    details: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable extras


def send_alert(alert: Alert) -> None:
    """Log ``alert`` and, if ``DAGMESH_ALERT_WEBHOOK_URL`` is set, POST it there as JSON.

    Never raises on delivery problems (they are logged as warnings). Reads its
    configuration from the environment on every call and keeps no global state,
    so it is safe to call from any process.
    """
    level = logging.WARNING if alert.kind == "freshness_breach" else logging.ERROR
    logger.log(level, "dagmesh alert [%s] %s: %s", alert.kind, alert.subject, alert.message)

    try:
        url = config.alert_webhook_url()
    except config.SettingError as error:  # says what is wrong, never the URL
        logger.warning("dagmesh alert webhook not sent: %s", error)
        return
    if url:
        _post_webhook(url, alert)


def _post_webhook(url: str, alert: Alert) -> None:
    """POST ``alert`` to ``url``; log (never raise) any failure, without the URL's secrets."""
    target = _safe_target(url)
    if not target.startswith(("http://", "https://")):
        logger.warning("dagmesh alert webhook %s not sent: not a valid http(s) URL", target)
        return
    payload = {
        "kind": alert.kind,
        "subject": alert.subject,
        "message": alert.message,
        "details": alert.details,
        "sent_at": datetime.datetime.now(datetime.UTC).isoformat(),
    }
    try:
        # default=str: a non-serialisable extra degrades to its str() rather than losing the alert.
        body = json.dumps(payload, default=str).encode("utf-8")
        request_url, headers = _split_credentials(url)
        headers["Content-Type"] = "application/json"
        request = urllib.request.Request(request_url, data=body, method="POST", headers=headers)
        # No redirects: a 3xx counts as a failure, and the body (and any token) stays put.
        opener = urllib.request.build_opener(_NoRedirect)
        with opener.open(request, timeout=_webhook_timeout()) as response:
            status = response.status
        if not 200 <= status < 300:
            logger.warning("dagmesh alert webhook %s answered HTTP %s", target, status)
    except urllib.error.HTTPError as exc:
        logger.warning("dagmesh alert webhook %s answered HTTP %s", target, exc.code)
    except urllib.error.URLError as exc:
        reason = _redact(str(exc.reason), url, target)
        logger.warning("dagmesh alert webhook %s unreachable: %s", target, reason)
    except Exception as exc:  # timeouts, bad URLs, ...: an alert must never raise
        reason = _redact(str(exc), url, target)
        logger.warning(
            "dagmesh alert webhook %s failed: %s: %s", target, type(exc).__name__, reason
        )


def _redact(text: str, url: str, target: str) -> str:
    """``text`` with the URL, and its path and query (where tokens live), replaced by ``target``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "(details withheld)"
    for secret in (url, parts.netloc, parts.path, parts.query):
        if secret and secret != "/":
            text = text.replace(secret, target)
    return text


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects, so urllib raises ``HTTPError`` for any 3xx answer."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without ``user:password@`` and, if it had one, the Basic auth header for it.

    urllib does not use credentials embedded in a URL (it would try to resolve
    ``user:password@host`` as a host name), so they travel as a header instead.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, {}
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    netloc = parts.netloc.rpartition("@")[2]
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return parts._replace(netloc=netloc).geturl(), {"Authorization": f"Basic {token}"}


def _safe_target(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: no user info, path or query (they may hold tokens)."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable webhook URL>"
    return f"{parts.scheme or '?'}://{host}{port}"


def _webhook_timeout() -> float:
    """Seconds from ``DAGMESH_ALERT_WEBHOOK_TIMEOUT``; the default when unset or invalid."""
    raw = config.alert_webhook_timeout()
    if not raw:
        return DEFAULT_WEBHOOK_TIMEOUT
    try:
        timeout = float(raw)
    except ValueError:
        timeout = -1.0
    if timeout <= 0:
        logger.warning(
            "ignoring %s=%r (want a positive number of seconds); using %ss",
            WEBHOOK_TIMEOUT_ENV,
            raw,
            DEFAULT_WEBHOOK_TIMEOUT,
        )
        return DEFAULT_WEBHOOK_TIMEOUT
    return timeout


# --------------------------------------------------------------------------- run failures


def run_failure_alert_sensor(domain: str) -> dg.SensorDefinition:
    """A run-failure sensor for ``domain`` that alerts once per failed run of its jobs.

    Named ``{domain}_run_failure_alerts`` and running by default. It watches every
    job of the code location it is defined in.
    """

    @dg.run_failure_sensor(
        name=f"{domain}_run_failure_alerts",
        description=f"Sends a dagmesh alert when a run in the {domain} domain fails.",
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def _alert_on_run_failure(context: dg.RunFailureSensorContext) -> None:
        run = context.dagster_run
        summary = context.failure_event.message or "the run failed"
        errors = _run_error_messages(context)
        message = f"Run {run.run_id} of job {run.job_name} failed: {summary}"
        if errors:
            message += f" Error: {'; '.join(errors)}"
        send_alert(
            Alert(
                kind="run_failure",
                subject=run.job_name,
                message=message,
                details={"run_id": run.run_id, "job": run.job_name, "domain": domain},
            )
        )

    return _alert_on_run_failure


def _run_error_messages(context: dg.RunFailureSensorContext) -> list[str]:
    """The root-cause error of each failed step (or of the run itself), shortened."""
    errors = [
        event.event_specific_data.error
        for event in context.get_step_failure_events()
        if getattr(event.event_specific_data, "error", None) is not None
    ]
    if not errors:
        # A run can fail outside any step (resource init, run worker crash, ...).
        run_error = getattr(context.failure_event.event_specific_data, "error", None)
        if run_error is not None:
            errors = [run_error]
    messages: list[str] = []
    for error in errors:
        # Dagster wraps user exceptions (DagsterExecutionStepExecutionError -> cause).
        while error.cause is not None:
            error = error.cause
        text = " ".join(safe_error_text(error.cls_name, error.message).split())
        if len(text) > MAX_ERROR_CHARS:
            text = text[: MAX_ERROR_CHARS - 1] + "…"
        if text not in messages:
            messages.append(text)
    return messages


# --------------------------------------------------------------------------- freshness


def freshness_alert_sensor(
    domain: str, max_lag: Mapping[dg.AssetKey, datetime.timedelta]
) -> dg.SensorDefinition:
    """A sensor for ``domain`` that alerts when a product has not materialized within its SLA.

    ``max_lag`` maps each watched asset key to the longest allowed time since its
    latest materialization. A product never materialized is in breach too. The
    sensor (``{domain}_freshness_alerts``, running by default, every 60 s at most)
    requests no runs; its cursor records the products currently in breach, so each
    breach alerts once, and again only after the product was fresh in between.
    """
    watched = dict(max_lag)

    @dg.sensor(
        name=f"{domain}_freshness_alerts",
        description=f"Sends a dagmesh alert when a {domain} data product misses its freshness SLA.",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def _check_freshness(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        previously_breached = _load_cursor(context.cursor)
        now = time.time()
        breached: set[tuple[str, ...]] = set()
        new_breaches: list[str] = []

        for key, lag in watched.items():
            entry = context.instance.get_latest_materialization_event(key)
            age = None if entry is None else datetime.timedelta(seconds=now - entry.timestamp)
            if age is not None and age <= lag:
                continue  # fresh
            path = tuple(key.path)
            breached.add(path)
            if path in previously_breached:
                continue  # already alerted for this breach
            ref = "/".join(key.path)
            new_breaches.append(ref)
            send_alert(_freshness_alert(domain, ref, lag, age, entry))

        cursor = json.dumps(sorted(list(path) for path in breached))
        # Previously in breach, still watched, fresh now.
        recovered = len((previously_breached - breached) & {tuple(k.path) for k in watched})
        return dg.SensorResult(
            skip_reason=_freshness_summary(len(watched), breached, new_breaches, recovered),
            cursor=cursor,
        )

    return _check_freshness


def _freshness_alert(
    domain: str,
    ref: str,
    lag: datetime.timedelta,
    age: datetime.timedelta | None,
    entry: dg.EventLogEntry | None,
) -> Alert:
    """The alert for product ``ref`` missing its ``lag`` SLA (``age`` None: never materialized)."""
    sla = f"SLA: materialized at least every {_format_duration(lag)}"
    if age is None or entry is None:
        message = f"Data product {ref} has never been materialized ({sla})."
        last_at = None
    else:
        message = (
            f"Data product {ref} is stale: last materialized {_format_duration(age)} ago ({sla})."
        )
        last_at = datetime.datetime.fromtimestamp(entry.timestamp, datetime.UTC).isoformat()
    return Alert(
        kind="freshness_breach",
        subject=ref,
        message=message,
        details={
            "domain": domain,
            "product": ref,
            "max_lag_seconds": lag.total_seconds(),
            "age_seconds": None if age is None else round(age.total_seconds(), 3),
            "last_materialized_at": last_at,
            "last_run_id": None if entry is None else entry.run_id,
        },
    )


def _freshness_summary(
    watched: int, breached: set[tuple[str, ...]], new_breaches: list[str], recovered: int
) -> str:
    """One line for the sensor tick: what it found and what it alerted on."""
    parts = [f"{watched - len(breached)}/{watched} products fresh"]
    if new_breaches:
        parts.append(f"alerted on new breaches: {', '.join(new_breaches)}")
    still = sorted("/".join(p) for p in breached if "/".join(p) not in new_breaches)
    if still:
        parts.append(f"still stale (already alerted): {', '.join(still)}")
    if recovered:
        parts.append(f"{recovered} recovered")
    if not new_breaches:
        parts.append("no new alerts")
    return "; ".join(parts)


def _load_cursor(cursor: str | None) -> set[tuple[str, ...]]:
    """The asset paths in breach at the last evaluation; empty for a missing or bad cursor."""
    if not cursor:
        return set()
    try:
        data = json.loads(cursor)
        return {tuple(str(part) for part in path) for path in data if isinstance(path, list)}
    except (ValueError, TypeError):
        return set()


def _format_duration(delta: datetime.timedelta) -> str:
    """A short human duration: ``0s``, ``45s``, ``12m 5s``, ``3h 20m``, ``2d 4h``."""
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    return f"{secs}s"

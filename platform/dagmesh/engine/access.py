"""Reads of published products through the platform: access control and
the audit trail of cross-domain reads.

The access level a read is judged by is the one the *producer* published
its current version under (recorded in ``version.json``), so a consumer
loaded before the producer restricted a product is still denied at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from dagmesh.declarations.product import allowed, describe_access
from dagmesh.engine import audit_log
from dagmesh.engine.grants import Denial, Grant, GrantDeniedError, denial
from dagmesh.engine.objectstore import (
    ObjectAccessDeniedError,
    denied,
    duckdb_refusal,
    object_target,
)
from dagmesh.engine.storage import MeshStore, OutputPort, PortNotPublishedError, PublishedVersion
from dagmesh.errors import DagmeshError


class AccessDeniedError(DagmeshError, PermissionError):
    """A product was read by a domain its access level does not allow."""


class UpstreamNotPublishedError(DagmeshError, RuntimeError):
    """A consumed product has never been published."""


@dataclass(frozen=True)
class PortRead:
    """A granted read: the version pinned and the file to read."""

    ref: str
    version: PublishedVersion
    file: Path | str  # a local file, or an object URL (ports on object storage)


def read_port(
    home: Path, consumer: str, ref: str, run_id: str, mesh: MeshStore | None = None
) -> PortRead:
    """Open the current version of ``ref`` for ``consumer`` (a product ref or
    a domain name).

    The version read is pinned for this process and ``run_id``: the
    producer's pruning keeps it until :func:`dagmesh.engine.storage.release_pins`
    (the consumer's step ended) or this process is gone, so a consumer
    slower than several publishes still finds its files.

    The owner domain reads raw values, every other domain the masked
    ``data.parquet``. A cross-domain read is recorded in the audit log; a
    read the producer's access level does not allow is recorded as denied
    and raises AccessDeniedError. With ``mesh`` (ports maybe on object
    storage), the port is read with the consumer domain's own identity.
    """
    producer, name = ref.split("/")
    consumer_domain = consumer.split("/")[0]
    try:
        port = (
            mesh.port(producer, name, reader=consumer_domain)
            if mesh is not None
            else OutputPort(home, producer, name)
        )
        version, pin = port.pin_current(consumer, run_id)
    except PortNotPublishedError as error:
        raise UpstreamNotPublishedError(
            f"{consumer} consumes {ref}, which has no published version yet; "
            f"run `dagmesh materialize {consumer} --with-upstream`"
        ) from error
    if consumer_domain == producer:
        return PortRead(ref, version, version.owner_file)
    info = version.info()
    access, consumers = info.get("access", "public"), list(info.get("consumers") or [])
    if not allowed(producer, access, consumers, consumer_domain):
        reason = f"{ref} is {describe_access(producer, access, consumers)}"
        pin.unlink(missing_ok=True)  # nothing is read
        audit_log.record_denied(home, run_id=run_id, consumer=consumer, product=ref, reason=reason)
        raise AccessDeniedError(
            f"access denied: {consumer} may not read {ref}: {reason}. Ask the {producer} "
            "team to make it public or to list your domain among its consumers."
        )
    audit_log.record_read(
        home, run_id=run_id, consumer=consumer, product=ref, version=version.version
    )
    return PortRead(ref, version, version.data_file)


def record_refusal(grant: Grant, found: Denial, step: str | None = None) -> str:
    """Record what DuckDB refused ``step`` (default: the grant's) as a denied
    read in the audit log; returns the message naming the step and the path."""
    step = step or grant.step
    audit_log.record_denied(
        grant.home,
        run_id=grant.run_id,
        consumer=step,
        product=found.target(grant.home),
        reason=found.reason(),
    )
    return found.message(step)


def refused(error: BaseException, grant: Grant | None) -> DagmeshError | None:
    """The GrantDeniedError for a DuckDB error that is a refusal of ``grant``,
    or the ObjectAccessDeniedError for one the object store refused the
    step's identity (both recorded in the audit log); None for any other error."""
    if grant is None or not isinstance(error, duckdb.Error):
        return None
    found = denial(str(error))
    if found is not None:
        return GrantDeniedError(record_refusal(grant, found))
    if (url := duckdb_refusal(str(error))) is not None:
        domain = grant.step.split("/")[0]
        message = f"S3 AccessDenied: {grant.step} (domain {domain}'s identity) may not read {url}"
        denied(grant.home, grant.run_id, grant.step, message, object_target(url))
        return ObjectAccessDeniedError(message)
    return None

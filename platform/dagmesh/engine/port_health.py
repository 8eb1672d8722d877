"""Whether each product's published port is whole and accounted for.

Two things can go wrong with a port outside a run: its ``current`` pointer
leads nowhere (the version folder was deleted, or a file in it), and its
current version has no publish record in the audit log (published by hand,
or by an older dagmesh that swapped first and recorded after). ``dagmesh
lint`` reports both, naming the product and the path; the catalog shows a
broken port as broken, never as fresh.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dagmesh.declarations.spec import ProductSpec
from dagmesh.engine import audit_log, objectstore
from dagmesh.engine.governance import Violation
from dagmesh.engine.storage import OutputPort

OK, UNPUBLISHED, BROKEN = "ok", "unpublished", "broken"


@dataclass(frozen=True)
class PortHealth:
    """The state of one product's port: ``ok``, ``unpublished`` or
    ``broken`` (then ``detail`` says what is missing, with its path)."""

    ref: str
    state: str
    detail: str = ""
    version: str | None = None


def port_health(port: OutputPort) -> PortHealth:
    """The state of ``port``'s current version."""
    current = port.current()
    if current is None:
        kept = port.versions()
        if kept:
            if isinstance(port, objectstore.S3OutputPort):
                pointer, where = port.pointer_url, port.store.url(port.public_key("")) + "/"
            else:
                pointer, where = str(port.current_link), str(port.versions_dir)
            return PortHealth(
                port.ref,
                BROKEN,
                f"{pointer} is missing, though {len(kept)} version(s) are kept in {where}",
            )
        return PortHealth(port.ref, UNPUBLISHED)
    problem = port.problem(current)
    if problem:
        return PortHealth(port.ref, BROKEN, problem, current.version)
    return PortHealth(port.ref, OK, version=current.version)


def port_violations(specs: Iterable[ProductSpec], home: Path) -> list[Violation]:
    """One violation per broken port, and per current version that the
    audit log has no publish record of."""
    recorded = {
        (event.get("product"), event.get("version"))
        for event in audit_log.query(home, event="publish")
    }
    violations = []
    store = objectstore.ports_store(home)
    for spec in specs:
        health = port_health(store.port(spec.domain, spec.name))
        if health.state == BROKEN:
            violations.append(
                Violation(
                    spec.ref,
                    "port_intact",
                    f"the published port is broken: {health.detail}",
                    f"re-materialize {spec.ref} (`dagmesh materialize {spec.ref}`)",
                )
            )
        elif health.state == OK and (spec.ref, health.version) not in recorded:
            violations.append(
                Violation(
                    spec.ref,
                    "publish_audited",
                    f"current version {health.version} has no publish record in the audit "
                    f"log {audit_log.audit_dir(home)}",
                    f"find out who published it; re-materialize {spec.ref} to publish an "
                    "audited version",
                )
            )
    return violations

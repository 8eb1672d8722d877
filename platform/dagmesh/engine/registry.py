"""The mesh registry: what each domain publishes to the others, as data.

A domain's code location imports only its own code. What it needs to know of
other domains (does ``sales/orders`` exist, may I read it, its columns and
contract version, is it deprecated, where is its port) it reads here: one
JSON document per domain, ``<registry>/<domain>.json`` (default
``$DAGMESH_HOME/registry``), written atomically by ``dagmesh register`` (run
by ``dagmesh dev``, by CI and at deploy). Any tool reads it without dagmesh:

.. code-block:: json

    {"format": 1, "domain": "sales", "owner": "sales", "fingerprint": "…",
     "registered_at": "2026-12-04T20:00:00+00:00",
     "products": {"orders": {"key": ["sales", "orders"], "access": "public",
                             "columns": [{"name": "order_id", "type": "VARCHAR"}],
                             "contract": {"version": "1.0.0", "status": "active"},
                             "port": {"current": "domains/sales/ports/orders/current/…"}}}}

This module knows nothing of Dagster: it is read by code locations, by
``dagmesh lint`` and by anything else that wants the mesh's interfaces.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dagmesh.declarations.contract import Contract
from dagmesh.declarations.product import allowed
from dagmesh.declarations.spec import ColumnSpec, ProductSpec
from dagmesh.engine.atomic import write_atomically
from dagmesh.engine.storage import OutputPort
from dagmesh.errors import DagmeshError

FORMAT = 1
"""The registry document's format; a reader refuses a newer one."""


class MeshError(DagmeshError, ValueError):
    """The mesh's declarations are inconsistent (unknown product, unregistered
    domain, unreadable registry...)."""


@dataclass(frozen=True)
class ProductInterface:
    """One product's published interface: everything a consumer in another
    domain may rely on, and nothing of how it is built."""

    domain: str
    name: str
    kind: str
    owner: str
    description: str
    access: str
    consumers: tuple[str, ...] = ()
    columns: tuple[ColumnSpec, ...] = ()  # pii: others read it masked (hashed if joinable)
    primary_key: tuple[str, ...] = ()
    consumes: tuple[str, ...] = ()
    contract_version: str | None = None
    contract_status: str | None = None
    sunset: str | None = None
    replaced_by: str | None = None
    freshness_seconds: float | None = None
    port: dict[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """``domain/name``."""
        return f"{self.domain}/{self.name}"

    @property
    def key(self) -> list[str]:
        """The Dagster asset key path."""
        return [self.domain, self.name]

    @property
    def deprecation(self) -> tuple[str, str | None] | None:
        """(sunset date, replacement) when the contract is deprecated."""
        if self.contract_status != "deprecated":
            return None
        return self.sunset or "no sunset date", self.replaced_by

    def readable_by(self, consumer_domain: str) -> bool:
        """True when ``consumer_domain`` may read this product."""
        return allowed(self.domain, self.access, list(self.consumers), consumer_domain)

    def to_document(self) -> dict[str, Any]:
        """The product's entry in its domain's registry document."""
        document = asdict(self)
        document["key"] = self.key
        document["columns"] = [asdict(c) for c in self.columns]
        document["contract"] = {
            "version": document.pop("contract_version"),
            "status": document.pop("contract_status"),
            "sunset": document.pop("sunset"),
            "replaced_by": document.pop("replaced_by"),
        }
        return document

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> ProductInterface:
        """Read an entry written by :meth:`to_document`."""
        contract = document.get("contract") or {}
        return cls(
            domain=document["domain"],
            name=document["name"],
            kind=document.get("kind", ""),
            owner=document.get("owner", ""),
            description=document.get("description", ""),
            access=document.get("access", "public"),
            consumers=tuple(document.get("consumers") or ()),
            columns=tuple(ColumnSpec(**c) for c in document.get("columns") or ()),
            primary_key=tuple(document.get("primary_key") or ()),
            consumes=tuple(document.get("consumes") or ()),
            contract_version=contract.get("version"),
            contract_status=contract.get("status"),
            sunset=contract.get("sunset"),
            replaced_by=contract.get("replaced_by"),
            freshness_seconds=document.get("freshness_seconds"),
            port=dict(document.get("port") or {}),
        )


def interface_of(spec: ProductSpec, contract: Contract | None) -> ProductInterface:
    """The interface a product publishes, from its declaration and contract."""
    deprecation = contract.deprecation if contract else None
    freshness = contract.freshness if contract else None
    port = OutputPort(Path(), spec.domain, spec.name)
    return ProductInterface(
        domain=spec.domain,
        name=spec.name,
        kind=spec.kind,
        owner=spec.owner,
        description=spec.description or ((contract.description.purpose or "") if contract else ""),
        access=spec.access,
        consumers=tuple(spec.consumers),
        columns=tuple(spec.columns),
        primary_key=tuple(spec.primary_key),
        consumes=tuple(spec.consumes),
        contract_version=contract.version if contract else None,
        contract_status=contract.status if contract else None,
        sunset=deprecation[0] if deprecation else None,
        replaced_by=deprecation[1] if deprecation else None,
        freshness_seconds=freshness.total_seconds() if freshness else None,
        port={
            "format": "parquet",
            "root": port.root.as_posix(),
            "current": (port.current_link / "data.parquet").as_posix(),
        },
    )


@dataclass(frozen=True)
class DomainEntry:
    """A domain's registry document, read back."""

    name: str
    owner: str
    description: str
    products: dict[str, ProductInterface]
    fingerprint: str
    registered_at: str
    path: Path


def fingerprint(products: list[ProductInterface]) -> str:
    """A digest of the interfaces (not of when they were registered)."""
    text = json.dumps([p.to_document() for p in products], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Registry:
    """The registry folder; each domain's document is read once, on first use."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._entries: dict[str, DomainEntry | None] = {}

    def path(self, domain: str) -> Path:
        """Where ``domain``'s document lives."""
        return self.folder / f"{domain}.json"

    def domain(self, name: str) -> DomainEntry | None:
        """``name``'s registered document, or None if it was never registered.
        A document that cannot be read raises MeshError naming the file."""
        if name not in self._entries:
            self._entries[name] = self._read(name)
        return self._entries[name]

    def domains(self) -> list[str]:
        """Every registered domain."""
        if not self.folder.is_dir():
            return []
        return sorted(p.stem for p in self.folder.glob("*.json") if not p.name.startswith("."))

    def product(self, ref: str) -> ProductInterface | None:
        """The registered interface of ``ref`` (``domain/name``), or None."""
        domain, _, name = ref.partition("/")
        entry = self.domain(domain)
        return entry.products.get(name) if entry else None

    def upstream_domains(self, refs: Iterable[str]) -> set[str] | None:
        """The domains of ``refs`` and of every product they read, transitively,
        as registered; None when one of them is not registered or its
        document cannot be read (then the registry cannot tell)."""
        seen: set[str] = set()
        todo = list(refs)
        while todo:
            ref = todo.pop()
            if ref in seen:
                continue
            seen.add(ref)
            try:
                product = self.product(ref)
            except MeshError:
                return None
            if product is None:
                return None
            todo.extend(product.consumes)
        return {ref.split("/")[0] for ref in seen}

    def require(self, ref: str, consumer: str) -> ProductInterface:
        """The interface of ``ref``, which ``consumer`` consumes; a MeshError
        naming both products and the command that registers the producer
        when it is not registered."""
        domain, _, name = ref.partition("/")
        entry = self.domain(domain)
        register = f"run `dagmesh register {domain}`"
        if entry is None:
            raise MeshError(
                f"{consumer} consumes {ref!r}, but domain {domain!r} is not registered in the "
                f"mesh registry ({self.folder}); {register} where its code is (its registered "
                f"domains: {self.domains()})"
            )
        if name not in entry.products:
            raise MeshError(
                f"{consumer} consumes {ref!r}, but domain {domain!r} has no registered product "
                f"{name!r} (its products: {sorted(entry.products)}); if {domain} added it "
                f"since {entry.registered_at}, {register}"
            )
        return entry.products[name]

    def write(
        self, name: str, owner: str, description: str, products: list[ProductInterface]
    ) -> bool:
        """Write ``name``'s document atomically (readers see the old one or
        the new one, never a torn file). Returns False, writing nothing,
        when the interfaces are unchanged."""
        digest = fingerprint(products)
        current = self._read_quietly(name)
        if current is not None and current.fingerprint == digest and current.owner == owner:
            return False
        document = {
            "format": FORMAT,
            "domain": name,
            "owner": owner,
            "description": description,
            "fingerprint": digest,
            "registered_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "products": {p.name: p.to_document() for p in sorted(products, key=lambda p: p.name)},
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path(name), json.dumps(document, indent=1, sort_keys=True))
        self._entries.pop(name, None)
        return True

    def _read_quietly(self, name: str) -> DomainEntry | None:
        try:
            return self._read(name)
        except MeshError:
            return None

    def _read(self, name: str) -> DomainEntry | None:
        path = self.path(name)
        try:
            document = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise MeshError(
                f"registry document {path} cannot be read ({error}); run `dagmesh register {name}`"
            ) from None
        if not isinstance(document, dict) or document.get("format", 0) > FORMAT:
            raise MeshError(
                f"registry document {path} is not a dagmesh registry document of format "
                f"<= {FORMAT}; upgrade dagmesh or run `dagmesh register {name}`"
            )
        try:
            products = {
                n: ProductInterface.from_document(p)
                for n, p in (document.get("products") or {}).items()
            }
        except (KeyError, TypeError) as error:
            raise MeshError(
                f"registry document {path} is malformed ({error!r}); run `dagmesh register {name}`"
            ) from None
        return DomainEntry(
            name=document.get("domain", name),
            owner=document.get("owner", ""),
            description=document.get("description", ""),
            products=products,
            fingerprint=document.get("fingerprint", ""),
            registered_at=document.get("registered_at", "an unknown time"),
            path=path,
        )

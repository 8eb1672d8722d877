"""The data product catalog: what every product is (declarations, contracts)
and how it is doing (the Dagster instance and the published ports).

``dagmesh catalog`` prints it; ``--json`` for machines; ``--html DIR``
writes a static site (index with search, one page per product, a lineage
picture across domains) that needs no server and no network. The site's
pages are the Jinja templates in ``dagmesh/tools/templates``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import jinja2
from rich.markup import escape
from rich.table import Table

from dagmesh.declarations.contract import Contract
from dagmesh.declarations.spec import ColumnSpec, ProductSpec
from dagmesh.engine.contracts.rules import quality_checks
from dagmesh.engine.learning import DRIFT_CHECK
from dagmesh.engine.mesh_view import MeshView
from dagmesh.engine.objectstore import ports_store
from dagmesh.engine.port_health import BROKEN, UNPUBLISHED, PortHealth, port_health
from dagmesh.engine.publish import contract_text
from dagmesh.engine.storage import MeshStore, OutputPort


@dataclass
class Entry:
    """One product in the catalog."""

    ref: str
    domain: str
    kind: str
    owner: str
    description: str
    access: str
    contract_version: str | None
    contract_status: str | None
    freshness_sla: str | None
    freshness: str  # fresh, stale, never materialized, no SLA; broken/missing port
    last_update: str | None
    last_run: str | None  # status of the run of its latest materialization attempt
    checks: dict[str, str]  # check name -> last result (passed, failed, not run)
    consumers: list[str]
    consumes: list[str]
    columns: list[dict[str, Any]]
    versions: list[dict[str, Any]] = field(default_factory=list)
    port: str = "ok"  # ok, unpublished, or "broken: <what is missing, with its path>"
    warning_checks: list[str] = field(default_factory=list)  # never block, never unhealthy

    @property
    def healthy(self) -> bool:
        """Port whole, fresh (or no SLA), every check passing, last run not failed."""
        return (
            not self.port.startswith("broken")
            and self.freshness in ("fresh", "no SLA")
            and all(
                v == "passed" or (name in self.warning_checks and v != "not run")
                for name, v in self.checks.items()
            )
            and self.last_run in (None, "SUCCESS")
        )


# -- reading the state of every product -----------------------------------


@dataclass(frozen=True)
class _AssetState:
    """What the instance knows of one product: last materialization, the
    status of the run of its latest attempt, and its checks' last results."""

    updated: dt.datetime | None = None
    last_run: str | None = None
    checks: dict[str, str] = field(default_factory=dict)


_CHECK_STATUS = {"SUCCEEDED": "passed", "FAILED": "failed"}
# Keys per query: keeps IN (...) lists well under database parameter limits.
_BATCH = 500


def _instance_states(
    instance: dg.DagsterInstance, check_names: dict[dg.AssetKey, list[str]]
) -> dict[dg.AssetKey, _AssetState]:
    """The state of every asset of ``check_names`` in a few batched queries
    (asset records, latest check executions, runs), not several per product:
    2,000 products took 46 s one by one."""
    keys = list(check_names)
    records = {r.asset_entry.asset_key: r.asset_entry for r in instance.get_asset_records(keys)}
    check_keys = [
        dg.AssetCheckKey(key, name) for key, names in check_names.items() for name in names
    ]
    latest: dict[dg.AssetCheckKey, Any] = {}
    for start in range(0, len(check_keys), _BATCH):  # bounded IN (...) lists
        batch = check_keys[start : start + _BATCH]
        latest.update(instance.event_log_storage.get_latest_asset_check_execution_by_key(batch))
    run_ids = sorted({e.last_run_id for e in records.values() if e.last_run_id})
    status: dict[str, str] = {}
    for start in range(0, len(run_ids), _BATCH):
        runs = instance.get_runs(filters=dg.RunsFilter(run_ids=run_ids[start : start + _BATCH]))
        status.update({run.run_id: run.status.value for run in runs})
    states = {}
    for key, names in check_names.items():
        entry = records.get(key)
        event = entry.last_materialization if entry else None
        checks = {}
        for name in names:
            execution = latest.get(dg.AssetCheckKey(key, name))
            value = execution.status.value if execution else None
            checks[name] = _CHECK_STATUS.get(value, value.lower()) if value else "not run"
        states[key] = _AssetState(
            updated=dt.datetime.fromtimestamp(event.timestamp, dt.UTC) if event else None,
            last_run=status.get(entry.last_run_id) if entry and entry.last_run_id else None,
            checks=checks,
        )
    return states


def _consumers(mesh: MeshView) -> dict[str, list[str]]:
    """Product -> the products that read it."""
    consumers: dict[str, list[str]] = defaultdict(list)
    for spec in mesh.specs.values():
        for ref in spec.consumes:
            consumers[ref].append(spec.ref)
    return consumers


def _freshness(
    sla: dt.timedelta | None, updated: dt.datetime | None, now: dt.datetime, port: PortHealth
) -> str:
    # Dagster's last materialization says nothing of files deleted since.
    if port.state == BROKEN:
        return "broken port"
    if port.state == UNPUBLISHED and updated is not None:
        return "missing port"
    if sla is None:
        return "no SLA"
    if updated is None:
        return "never materialized"
    return "fresh" if now - updated <= sla else "stale"


def _check_names(spec: ProductSpec, contract: Contract | None) -> list[str]:
    # The platform's schema check (dbt: when the yml types columns), then
    # the declared blocking checks (dbt: error-severity tests), then the contract's.
    typed = spec.kind != "dbt" or any(c.type for c in spec.columns)
    names = (["schema"] if typed else []) + list(spec.blocking_checks) + _warning_checks(spec)
    return names + [c for c in quality_checks(contract) if c not in names]


def _warning_checks(spec: ProductSpec) -> list[str]:
    """The checks that warn and never block: dbt's warn-severity tests, and
    a scoring product's drift check."""
    return list(spec.warning_checks) + ([DRIFT_CHECK] if spec.kind == "scoring" else [])


def _columns(spec: ProductSpec, port: OutputPort) -> list[dict[str, Any]]:
    """The product's columns as declared, completed by its current published
    version for what the declaration leaves out (a dbt yml without
    ``data_type``, or columns it does not list): what consumers really read."""
    columns = [asdict(c) for c in spec.columns]
    current = port.current()
    try:
        published = (current.info().get("columns") or {}) if current else {}
    except (OSError, ValueError):  # a broken port is reported as such elsewhere
        published = {}
    declared = {c["name"] for c in columns}
    for column in columns:
        if not column["type"] and column["name"] in published:
            column["type"] = published[column["name"]]
    blank = asdict(ColumnSpec("", ""))
    columns += [
        {**blank, "name": name, "type": kind}
        for name, kind in published.items()
        if name not in declared
    ]
    return columns


MODEL_FACTS = ("metrics", "inputs", "holdout", "model", "model_version")
"""What a model's (or a scoring product's) version record adds to its catalog entry."""


def _recent_versions(port: OutputPort) -> list[dict[str, Any]]:
    """The kept published versions, newest first, with rows and publication
    time; a model's with its metrics, holdout and the inputs' versions it was
    trained on, a scoring product's with the model version that scored it."""
    versions = []
    for v in reversed(port.versions()):
        info = v.info()
        summary = {"version": v.version, **{k: info.get(k) for k in ("rows", "published_at")}}
        if "metrics" in info or "model_version" in info:
            summary.update({k: info[k] for k in MODEL_FACTS if k in info})
        versions.append(summary)
    return versions


def _entry(
    spec: ProductSpec,
    contract: Contract | None,
    state: _AssetState,
    store: MeshStore,
    consumers: list[str],
    now: dt.datetime,
) -> Entry:
    updated = state.updated
    sla = contract.freshness if contract else None
    port = store.port(spec.domain, spec.name)  # local disk or object storage (the profile's)
    health = port_health(port)
    return Entry(
        ref=spec.ref,
        domain=spec.domain,
        kind=spec.kind,
        owner=f"team:{spec.owner}",
        description=spec.description or (contract.description.purpose if contract else "") or "",
        access=spec.access,
        contract_version=contract.version if contract else None,
        contract_status=contract.status if contract else None,
        freshness_sla=str(sla) if sla else None,
        freshness=_freshness(sla, updated, now, health),
        last_update=updated.isoformat(timespec="seconds") if updated else None,
        last_run=state.last_run,
        checks=state.checks,
        consumers=sorted(consumers),
        consumes=list(spec.consumes),
        columns=_columns(spec, port),
        versions=_recent_versions(port),
        port=f"broken: {health.detail}" if health.state == BROKEN else health.state,
        warning_checks=_warning_checks(spec),
    )


def catalog_entry(
    spec: ProductSpec,
    contract: Contract | None,
    instance: dg.DagsterInstance,
    home: Path,
    consumers: list[str] | None = None,
) -> Entry:
    """One product's catalog entry (:func:`build_catalog` does every product at once)."""
    key = dg.AssetKey([spec.domain, spec.name])
    state = _instance_states(instance, {key: _check_names(spec, contract)})[key]
    store = ports_store(home)
    return _entry(spec, contract, state, store, consumers or [], dt.datetime.now(dt.UTC))


def build_catalog(mesh: MeshView, instance: dg.DagsterInstance, home: Path) -> list[Entry]:
    """Every product of ``mesh`` with its state in ``instance`` and ``home``."""
    consumers = _consumers(mesh)
    now = dt.datetime.now(dt.UTC)  # one "now" so every product is judged alike
    specs = sorted(mesh.specs.items())
    key_of = {ref: dg.AssetKey([spec.domain, spec.name]) for ref, spec in specs}
    states = _instance_states(
        instance,
        {key_of[ref]: _check_names(spec, mesh.contracts.get(ref)) for ref, spec in specs},
    )
    store = ports_store(home)
    return [
        _entry(
            spec, mesh.contracts.get(ref), states[key_of[ref]], store, consumers.get(ref, []), now
        )
        for ref, spec in specs
    ]


def domain_health(entries: list[Entry]) -> dict[str, dict[str, Any]]:
    """Per domain: products, how many are healthy, and which are not."""
    health: dict[str, dict[str, Any]] = {}
    for entry in entries:
        domain = health.setdefault(entry.domain, {"products": 0, "healthy": 0, "unhealthy": []})
        domain["products"] += 1
        if entry.healthy:
            domain["healthy"] += 1
        else:
            domain["unhealthy"].append(entry.ref)
    return health


# -- the terminal and machines ---------------------------------------------

TABLE_COLUMNS = (
    "product",
    "owner",
    "access",
    "contract",
    "freshness",
    "last update",
    "checks",
    "consumers",
)


def _checks_cell(checks: dict[str, str]) -> str:
    failed = [name for name, result in checks.items() if result != "passed"]
    text = f"{len(checks) - len(failed)}/{len(checks)} passed"
    return f"[red]{text}[/]" if failed else text


def render_table(entries: list[Entry]) -> Table:
    """The catalog as a terminal table; failing checks in red."""
    table = Table(title="Data products")
    for column in TABLE_COLUMNS:
        table.add_column(column)
    for e in entries:
        table.add_row(
            e.ref,
            e.owner,
            e.access,
            e.contract_version or "-",
            e.freshness,
            e.last_update or "never",
            _checks_cell(e.checks),
            ", ".join(e.consumers) or "-",
        )
    return table


def health_lines(entries: list[Entry], broken: Mapping[str, str] | None = None) -> list[str]:
    """One line of rich markup per domain, by name: how many products are
    healthy (green when all are, red otherwise) and which are not; a
    ``broken`` domain (its code or dbt project does not load) in red, with why."""
    lines = []
    for name, error in sorted((broken or {}).items()):
        lines.append(f"[red]{name}: broken, its products are unknown:[/] {escape(error)}")
    for name, health in sorted(domain_health(entries).items()):
        style = "green" if not health["unhealthy"] else "red"
        lines.append(
            f"[{style}]{name}: {health['healthy']}/{health['products']} healthy[/]"
            + (f" (not: {', '.join(health['unhealthy'])})" if health["unhealthy"] else "")
        )
    return lines


def to_json(entries: list[Entry], broken: Mapping[str, str] | None = None) -> str:
    """The catalog for machines; a ``broken`` domain (its code or dbt project
    does not load) is listed with ``broken``: why, and no products."""
    domains: dict[str, dict[str, Any]] = {
        name: {"products": 0, "healthy": 0, "unhealthy": [], "broken": error}
        for name, error in (broken or {}).items()
    }
    domains.update(domain_health(entries))
    return json.dumps(
        {
            "domains": dict(sorted(domains.items())),
            "products": [{**asdict(e), "healthy": e.healthy} for e in entries],
        },
        indent=2,
    )


# -- the static site ------------------------------------------------------


def _file(ref: str) -> str:
    """The product page's file name (refs hold a slash)."""
    return ref.replace("/", "__") + ".html"


def _search_text(entry: Entry) -> str:
    """What the index's search box matches a product against (lower case)."""
    return " ".join([entry.ref, entry.owner, entry.description]).lower()


_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("dagmesh.tools", "templates"),
    # Names and descriptions come from every domain team: never raw markup.
    autoescape=jinja2.select_autoescape(["html", "svg"]),
    undefined=jinja2.StrictUndefined,  # a misspelt field fails, not renders blank
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_TEMPLATES.filters.update(page=_file, search_text=_search_text)

# The lineage picture's geometry, in pixels.
BOX_WIDTH, BOX_HEIGHT, GAP_X, GAP_Y, MARGIN = 210, 34, 60, 16, 20
CROSS_DOMAIN, SAME_DOMAIN = "#b00020", "#888"  # edge colours
HEALTHY, UNHEALTHY = "#e7f5ea", "#fde8ea"  # box fills


@dataclass(frozen=True)
class Box:
    """A product in the lineage picture, top-left corner at (x, y)."""

    ref: str
    x: int
    y: int
    fill: str


@dataclass(frozen=True)
class Edge:
    """A line from an input's box (right side) to its consumer's (left side)."""

    x1: int
    y1: float
    x2: int
    y2: float
    color: str


@dataclass(frozen=True)
class Lineage:
    """Where the lineage picture puts every box and edge, and its size."""

    boxes: list[Box]
    edges: list[Edge]
    width: int
    height: int
    box_width: int = BOX_WIDTH
    box_height: int = BOX_HEIGHT


def _layers(entries: list[Entry]) -> dict[int, list[str]]:
    """Products by dependency depth (0: reads no other product), each layer
    sorted; an input outside ``entries`` does not count."""
    by_ref = {e.ref: e for e in entries}
    depth: dict[str, int] = {}

    def level(ref: str, seen: frozenset[str] = frozenset()) -> int:
        if ref not in depth:
            # ``seen`` stops a consumption cycle from recursing forever.
            parents = [p for p in by_ref[ref].consumes if p in by_ref and p not in seen]
            depth[ref] = 1 + max((level(p, seen | {ref}) for p in parents), default=-1)
        return depth[ref]

    layers: dict[int, list[str]] = defaultdict(list)
    for ref in sorted(by_ref):
        layers[level(ref)].append(ref)
    return layers


def _edges(entries: list[Entry], position: dict[str, tuple[int, int]]) -> list[Edge]:
    """Every input -> consumer line; red when it crosses domains."""
    edges = []
    for entry in entries:
        x2, y2 = position[entry.ref]
        for parent in (p for p in entry.consumes if p in position):
            x1, y1 = position[parent]
            color = CROSS_DOMAIN if parent.split("/")[0] != entry.domain else SAME_DOMAIN
            edges.append(Edge(x1 + BOX_WIDTH, y1 + BOX_HEIGHT / 2, x2, y2 + BOX_HEIGHT / 2, color))
    return edges


def lineage_layout(entries: list[Entry]) -> Lineage:
    """The products as boxes in dependency layers, left to right, coloured
    by health, with an edge from every input to its consumer."""
    layers = _layers(entries)
    position = {
        ref: (MARGIN + col * (BOX_WIDTH + GAP_X), MARGIN + row * (BOX_HEIGHT + GAP_Y))
        for col, refs in layers.items()
        for row, ref in enumerate(refs)
    }
    healthy = {e.ref for e in entries if e.healthy}
    boxes = [
        Box(ref, x, y, HEALTHY if ref in healthy else UNHEALTHY) for ref, (x, y) in position.items()
    ]
    tallest = max((len(refs) for refs in layers.values()), default=0)
    return Lineage(
        boxes=boxes,
        edges=_edges(entries, position),
        width=2 * MARGIN + len(layers) * (BOX_WIDTH + GAP_X),
        height=2 * MARGIN + tallest * (BOX_HEIGHT + GAP_Y),
    )


def render_index(entries: list[Entry]) -> str:
    """The site's index.html: domain health, the searchable product table
    and the lineage picture."""
    return _TEMPLATES.get_template("index.html").render(
        entries=entries,
        health=sorted(domain_health(entries).items()),
        layout=lineage_layout(entries),
    )


def render_product(entry: Entry, contract: Contract | None) -> str:
    """One product's page: its state, columns, checks, recent versions,
    consumers and contract (as published, YAML)."""
    return _TEMPLATES.get_template("product.html").render(
        entry=entry,
        contract_yaml=contract_text(contract) if contract else "no contract",
    )


def write_site(entries: list[Entry], mesh: MeshView, folder: Path) -> Path:
    """Write the static catalog into ``folder``; returns its index.html."""
    (folder / "products").mkdir(parents=True, exist_ok=True)
    index = folder / "index.html"
    index.write_text(render_index(entries))
    for entry in entries:
        page = folder / "products" / _file(entry.ref)
        page.write_text(render_product(entry, mesh.contracts.get(entry.ref)))
    return index

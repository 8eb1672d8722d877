"""The data product catalog: what every product is (declarations, contracts)
and how it is doing (the Dagster instance and the published ports).

``dagmesh catalog`` prints it; ``--json`` for machines; ``--html DIR``
writes a static site (index with search, one page per product, a lineage
picture across domains) that needs no server and no network.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from dagmesh.contracts.checks import quality_checks
from dagmesh.governance import MeshView
from dagmesh.publish import contract_text
from dagmesh.storage import OutputPort


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
    freshness: str  # fresh, stale, never materialized, no SLA
    last_update: str | None
    last_run: str | None  # status of the run of its latest materialization attempt
    checks: dict[str, str]  # check name -> last result (passed, failed, not run)
    consumers: list[str]
    consumes: list[str]
    columns: list[dict[str, Any]]
    versions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """Fresh (or no SLA), every check passing, last run not failed."""
        return (
            self.freshness in ("fresh", "no SLA")
            and all(v == "passed" for v in self.checks.values())
            and self.last_run in (None, "SUCCESS")
        )


def _check_results(
    instance: dg.DagsterInstance, key: dg.AssetKey, names: list[str]
) -> dict[str, str]:
    keys = [dg.AssetCheckKey(key, name) for name in names]
    summaries = instance.event_log_storage.get_asset_check_summary_records(keys)
    results = {}
    for check_key in keys:
        record = summaries.get(check_key)
        execution = record.last_check_execution_record if record else None
        if execution is None:
            results[check_key.name] = "not run"
            continue
        status = execution.status.value
        results[check_key.name] = {"SUCCEEDED": "passed", "FAILED": "failed"}.get(
            status, status.lower()
        )
    return results


def _last_run(instance: dg.DagsterInstance, key: dg.AssetKey) -> str | None:
    info = instance.event_log_storage.get_latest_planned_materialization_info(key)
    run = instance.get_run_by_id(info.run_id) if info else None
    return run.status.value if run else None


def build_catalog(mesh: MeshView, instance: dg.DagsterInstance, home: Path) -> list[Entry]:
    """Every product of ``mesh`` with its state in ``instance`` and ``home``."""
    consumers: dict[str, list[str]] = defaultdict(list)
    for spec in mesh.specs.values():
        for ref in spec.consumes:
            consumers[ref].append(spec.ref)
    now = dt.datetime.now(dt.UTC)
    entries = []
    for ref, spec in sorted(mesh.specs.items()):
        contract = mesh.contracts.get(ref)
        key = dg.AssetKey([spec.domain, spec.name])
        event = instance.get_latest_materialization_event(key)
        updated = dt.datetime.fromtimestamp(event.timestamp, dt.UTC) if event else None
        sla = contract.freshness if contract else None
        if sla is None:
            freshness = "no SLA"
        elif updated is None:
            freshness = "never materialized"
        else:
            freshness = "fresh" if now - updated <= sla else "stale"
        # The platform's schema check (dbt: when the yml types columns), then
        # the declared blocking checks (dbt: error-severity tests), then the contract's.
        typed = spec.kind != "dbt" or any(c.type for c in spec.columns)
        check_names = (["schema"] if typed else []) + list(spec.blocking_checks)
        check_names += [c for c in quality_checks(contract) if c not in check_names]
        port = OutputPort(home, spec.domain, spec.name)
        versions = [
            {"version": v.version, **{k: v.info().get(k) for k in ("rows", "published_at")}}
            for v in reversed(port.versions())
        ]
        entries.append(
            Entry(
                ref=ref,
                domain=spec.domain,
                kind=spec.kind,
                owner=f"team:{spec.owner}",
                description=spec.description
                or (contract.description.purpose if contract else "")
                or "",
                access=spec.access,
                contract_version=contract.version if contract else None,
                contract_status=contract.status if contract else None,
                freshness_sla=str(sla) if sla else None,
                freshness=freshness,
                last_update=updated.isoformat(timespec="seconds") if updated else None,
                last_run=_last_run(instance, key),
                checks=_check_results(instance, key, check_names),
                consumers=sorted(consumers.get(ref, [])),
                consumes=list(spec.consumes),
                columns=[asdict(c) for c in spec.columns],
                versions=versions,
            )
        )
    return entries


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


def to_json(entries: list[Entry]) -> str:
    """The catalog for machines."""
    return json.dumps(
        {
            "domains": domain_health(entries),
            "products": [{**asdict(e), "healthy": e.healthy} for e in entries],
        },
        indent=2,
    )


# -- the static site ------------------------------------------------------

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3rem .5rem;
text-align:left;vertical-align:top}.ok{color:#176f2c}.bad{color:#b00020}
input{font-size:1rem;padding:.3rem;width:20rem}pre{background:#f6f6f6;padding:1rem;overflow:auto}
"""


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


def _file(ref: str) -> str:
    return ref.replace("/", "__") + ".html"


def _search_text(entry: Entry) -> str:
    return " ".join([entry.ref, entry.owner, entry.description]).lower()


def _mark(good: bool, text: str) -> str:
    return f"<span class='{'ok' if good else 'bad'}'>{html.escape(text)}</span>"


def lineage_svg(entries: list[Entry]) -> str:
    """The products as boxes in dependency layers, edges between them
    (cross-domain edges in red), as inline SVG."""
    by_ref = {e.ref: e for e in entries}
    depth: dict[str, int] = {}

    def level(ref: str, seen: frozenset[str] = frozenset()) -> int:
        if ref not in depth:
            parents = [p for p in by_ref[ref].consumes if p in by_ref and p not in seen]
            depth[ref] = 1 + max((level(p, seen | {ref}) for p in parents), default=-1)
        return depth[ref]

    layers: dict[int, list[str]] = defaultdict(list)
    for ref in sorted(by_ref):
        layers[level(ref)].append(ref)
    width, height, gap_x, gap_y = 210, 34, 60, 16
    position = {
        ref: (20 + col * (width + gap_x), 20 + row * (height + gap_y))
        for col, refs in layers.items()
        for row, ref in enumerate(refs)
    }
    parts = []
    for entry in entries:
        x2, y2 = position[entry.ref]
        for parent in entry.consumes:
            if parent not in position:
                continue
            x1, y1 = position[parent]
            color = "#b00020" if parent.split("/")[0] != entry.domain else "#888"
            parts.append(
                f"<line x1='{x1 + width}' y1='{y1 + height / 2}' x2='{x2}' y2='{y2 + height / 2}' "
                f"stroke='{color}' stroke-width='1.5'/>"
            )
    for ref, (x, y) in position.items():
        fill = "#e7f5ea" if by_ref[ref].healthy else "#fde8ea"
        parts.append(
            f"<a href='products/{_file(ref)}'><rect x='{x}' y='{y}' width='{width}' "
            f"height='{height}' rx='6' fill='{fill}' stroke='#555'/>"
            f"<text x='{x + 8}' y='{y + 22}' font-size='13'>{html.escape(ref)}</text></a>"
        )
    total_w = 40 + len(layers) * (width + gap_x)
    total_h = 40 + max(len(r) for r in layers.values()) * (height + gap_y)
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{total_w}' height='{total_h}'>"
        + "".join(parts)
        + "</svg>"
    )


def write_site(entries: list[Entry], mesh: MeshView, folder: Path) -> Path:
    """Write the static catalog into ``folder``; returns its index.html."""
    (folder / "products").mkdir(parents=True, exist_ok=True)
    rows = "".join(
        f"<tr class='product' data-search='{html.escape(_search_text(e))}'>"
        f"<td><a href='products/{_file(e.ref)}'>{html.escape(e.ref)}</a></td>"
        f"<td>{html.escape(e.owner)}</td><td>{e.access}</td>"
        f"<td>{html.escape(e.contract_version or '-')}</td>"
        f"<td>{_mark(e.freshness in ('fresh', 'no SLA'), e.freshness)}</td>"
        f"<td>{_mark(e.healthy, 'healthy' if e.healthy else 'unhealthy')}</td>"
        f"<td>{html.escape(e.description)}</td></tr>"
        for e in entries
    )
    domains = "".join(
        f"<li>{html.escape(name)}: "
        + _mark(not h["unhealthy"], f"{h['healthy']}/{h['products']} healthy")
        + "</li>"
        for name, h in sorted(domain_health(entries).items())
    )
    search = (
        "<input id='q' placeholder='Search products' oninput=\"for(const r of "
        "document.querySelectorAll('tr.product')){r.style.display="
        "r.dataset.search.includes(this.value.toLowerCase())?'':'none'}\">"
    )
    index = folder / "index.html"
    index.write_text(
        _page(
            "dagmesh catalog",
            f"<h1>Data products</h1><ul>{domains}</ul>{search}<table><tr><th>product</th>"
            f"<th>owner</th><th>access</th><th>contract</th><th>freshness</th><th>health</th>"
            f"<th>description</th></tr>{rows}</table><h2>Lineage</h2>{lineage_svg(entries)}",
        )
    )
    for entry in entries:
        contract = mesh.contracts.get(entry.ref)
        columns = "".join(
            f"<tr><td>{html.escape(c['name'])}</td><td>{html.escape(c['type'])}</td>"
            f"<td>{html.escape(c['classification'] or '')}</td><td>{c['required']}</td>"
            f"<td>{html.escape(c['description'])}</td></tr>"
            for c in entry.columns
        )
        checks = "".join(
            f"<li>{html.escape(n)}: {_mark(r == 'passed', r)}</li>" for n, r in entry.checks.items()
        )
        versions = "".join(
            f"<li>{html.escape(v['version'])}: {v.get('rows')} rows, {v.get('published_at')}</li>"
            for v in entry.versions
        )
        links = (
            ", ".join(f"<a href='{_file(r)}'>{html.escape(r)}</a>" for r in entry.consumers)
            or "none"
        )
        body = (
            f"<p><a href='../index.html'>catalog</a></p><h1>{html.escape(entry.ref)}</h1>"
            f"<p>{html.escape(entry.description)}</p><p>owner {html.escape(entry.owner)}; "
            f"access {entry.access}; {entry.kind}; last update {entry.last_update or 'never'}; "
            f"freshness {entry.freshness} (SLA {entry.freshness_sla or 'none'}); last run "
            f"{entry.last_run or '-'}</p><h2>Columns</h2><table><tr><th>name</th><th>type</th>"
            f"<th>classification</th><th>required</th><th>description</th></tr>{columns}</table>"
            f"<h2>Checks</h2><ul>{checks}</ul><h2>Recent versions</h2><ul>{versions or 'none'}"
            f"</ul><h2>Consumers</h2><p>{links}</p><h2>Contract</h2>"
            f"<pre>{html.escape(contract_text(contract)) if contract else 'no contract'}</pre>"
        )
        (folder / "products" / _file(entry.ref)).write_text(_page(entry.ref, body))
    return index

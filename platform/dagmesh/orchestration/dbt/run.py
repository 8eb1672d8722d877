"""Write–audit–publish of a domain's dbt products.

1. pin inputs: every ``ports`` source is a view over the *current published
   version* of that product, in a small read-only DuckDB file attached to
   the profile as ``ports`` (rewritten at the start of each run);
2. write and audit: ``dbt build`` of the selected models into the domain's
   own DuckDB file; each model's tests run right after it, and dbt skips
   what is downstream of a failure;
3. audit and publish: every model that built and passed its blocking
   (``error``) tests is copied to a staging Parquet file, its contract's
   quality rules run on it, and it is published atomically (PII masked for
   other domains) as the product's new version. A failed test or blocking
   rule publishes nothing: consumers keep reading the last good version.

On the ``postgres`` dbt target (:mod:`dagmesh.engine.dbt.postgres`) step 1
also loads the pinned versions into the domain's ports schema in the
warehouse, step 2 builds there, and step 3 reads each model from there.

Runs of one domain's dbt project hold the Dagster pool ``dagmesh-dbt-<domain>``
(limit 1), so no two processes ever open its DuckDB file at once.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject
from dbt import version as dbt_version
from packaging import version

from dagmesh.config import default_memory_limit, quiet_tools
from dagmesh.declarations.contract import Contract
from dagmesh.declarations.dbt_manifest import (
    PORTS_DATABASE,
    DbtGraphError,
    build_phases,
    classification,
    is_ephemeral,
    own_source_producers,
    product_name,
    tested_node,
    upstream_nodes,
)
from dagmesh.declarations.product import Domain
from dagmesh.declarations.spec import ProductSpec, dbt_spec
from dagmesh.engine.access import (
    AccessDeniedError,
    UpstreamNotPublishedError,
    read_port,
    record_refusal,
    refused,
)
from dagmesh.engine.atomic import replaced_atomically
from dagmesh.engine.checks import masked_select
from dagmesh.engine.dbt import postgres
from dagmesh.engine.dbt.project import DomainDbtProject, dbt_executable, dbt_project, on_postgres
from dagmesh.engine.grants import Grant, denial, lock
from dagmesh.engine.objectstore import denied as record_denied
from dagmesh.engine.objectstore import duckdb_refusal, object_target
from dagmesh.engine.privacy import redact, redacted_stdout
from dagmesh.engine.publish import Publication, audit_and_publish
from dagmesh.engine.sql import ident, literal
from dagmesh.engine.storage import DATA_FILE, MeshStore, release_pins
from dagmesh.orchestration.resources import MeshStorage
from dagmesh.orchestration.results import alert_blocked, check_result, publication_metadata

SAMPLE_ROWS = 3


class MeshDbtCli(DbtCliResource):
    """dagster-dbt's dbt CLI resource without two fixed costs per run that
    dagmesh has no use for (measured at 10M orders on 2 cores):

    - ``dbt --version`` as a subprocess (about 1.5 s): the dbt it runs is
      this environment's, whose version the installed dbt-core states;
    - an in-process dbt adapter (about 2.3 s to load the project and
      profile), used only by ``fetch_row_counts``/``fetch_column_metadata``:
      dagmesh reads row counts and columns from the published Parquet file.
    """

    # Private methods, overridden because dagster-dbt 0.29 has no setting for either.
    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(dbt_version.__version__)

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:  # type: ignore[override]
        return None


def pool_name(domain: str) -> str:
    """The Dagster concurrency pool that serializes a domain's dbt runs."""
    return f"dagmesh-dbt-{domain}"


@dataclass
class Problem:
    """Why one product of the run was not published."""

    product: str
    reason: str


def write_ports(
    path: Path,
    files: Mapping[tuple[str, str], Path | str],
    store: MeshStore | None = None,
    domain: str | None = None,
) -> None:
    """A DuckDB file of views ``<domain>.<product>`` over pinned Parquet versions.

    With ports on object storage (``store.objects``) the files are ``s3://``
    URLs, which DuckDB reads while it creates each view: its connection gets
    httpfs and ``domain``'s (the consumer's) identity only. The file keeps no
    secret: every connection that reads the views brings its own."""
    with replaced_atomically(path) as tmp:
        con = duckdb.connect(str(tmp))
        try:
            if store is not None and store.objects is not None and domain:
                store.objects.attach(con, domain)
            for domain, product in sorted(files):
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(domain)}")
                con.execute(
                    f"CREATE VIEW {ident(domain)}.{ident(product)} AS "
                    f"SELECT * FROM read_parquet({literal(files[(domain, product)])})"
                )
        finally:
            con.close()
    path.with_name(path.name + ".wal").unlink(missing_ok=True)


@dataclass
class PinnedInputs:
    """The inputs a dbt run reads: each port source's (ref, version), the
    pinned files, and the ``ports`` database of views over them."""

    versions: dict[str, tuple[str, str]]
    files: list[Path | str]  # local files, or object URLs (ports on object storage)
    ports: Path
    by_product: dict[tuple[str, str], Path | str] = field(default_factory=dict)


def _parents_through_ephemeral(
    manifest: Mapping[str, Any], uid: str, producers: Mapping[str, str] | None = None
) -> set[str]:
    """What a node reads, an ephemeral model (inlined into it) standing for
    what that model reads, and a source the project fills (``producers``)
    for the node that fills it."""
    producers = producers or {}
    parents: set[str] = set()
    pending = list(manifest["nodes"][uid].get("depends_on", {}).get("nodes", []))
    while pending:
        parent = pending.pop()
        if parent in parents:
            continue
        parents.add(parent)
        node = manifest["nodes"].get(parent)
        if node is not None and is_ephemeral(node):
            pending += node.get("depends_on", {}).get("nodes", [])
        if parent in producers:
            pending.append(producers[parent])
    return parents


def pin_inputs(
    project: DomainDbtProject, mesh: MeshStorage, selected: set[str], run_id: str
) -> PinnedInputs:
    """Point the ``ports`` database at the current version of every port
    source the selected models read, through the platform's access control
    (a denied read fails the step and is recorded; granted cross-domain reads
    are recorded); fail naming the product if one was never published.

    The ports are read through the mesh's store: on object storage each
    version is pinned through its ``current.json`` with the domain's own
    identity and the views read its ``s3://`` objects."""
    state = project.state_dir(mesh.home_path, project.domain)
    store = mesh.store()
    manifest = project.manifest
    readers: dict[str, list[str]] = defaultdict(list)
    for uid in sorted(selected):
        for parent in _parents_through_ephemeral(manifest, uid):
            readers[parent].append(f"{project.domain}/{product_name(manifest['nodes'][uid])}")
    files, versions = {}, {}
    for uid, (domain, product) in project.port_sources().items():
        if uid not in readers:
            continue
        try:
            read = read_port(mesh.home_path, readers[uid][0], f"{domain}/{product}", run_id, store)
        except (UpstreamNotPublishedError, AccessDeniedError) as error:
            raise dg.Failure(description=str(error)) from None
        files[(domain, product)] = read.file
        versions[uid] = (read.ref, read.version.version)
    ports = state / "ports.duckdb"
    write_ports(ports, files, store, project.domain)
    return PinnedInputs(versions, sorted(files.values(), key=str), ports, files)


def run_grant(project: DomainDbtProject, home: Path, pinned: PinnedInputs, run_id: str) -> Grant:
    """What ``dbt build`` of ``project`` may touch besides its warehouse: the
    pinned versions, the ``ports`` database, the project's seed files (read)
    and its spill folder."""
    state = project.state_dir(home, project.domain)
    seeds = [
        project.project_dir / node["original_file_path"]
        for node in project.manifest["nodes"].values()
        if node["resource_type"] == "seed" and node.get("package_name") == project.name
    ]
    ports = pinned.ports
    return Grant(
        step=f"{project.domain} (dbt project {project.name})",
        home=home,
        directories=(state / "tmp",),
        files=(*pinned.files, ports, ports.with_name(ports.name + ".wal"), *seeds),
        run_id=run_id,
    )


def _failed_test_message(
    con: duckdb.DuckDBPyConnection, ref: str, test: dict[str, Any], model: dict[str, Any]
) -> str:
    """``<product>: dbt test <name> failed on column <c> (<rule>): N rows, e.g. ...``"""
    rule = (test.get("test_metadata") or {}).get("name") or "singular test"
    column = test.get("column_name") or "(row)"
    personal = {
        name for name, c in model.get("columns", {}).items() if classification(c, model) == "pii"
    }
    sample = ""
    if test.get("compiled_code"):
        try:
            sql = test["compiled_code"]
            if on_postgres():
                sql = postgres.failing_rows_query(sql)
            rel = con.sql(f"SELECT * FROM ({sql}) AS failing LIMIT {SAMPLE_ROWS}")
            rows = rel.select(masked_select(rel.columns, personal)).fetchall()
            sample = "; failing rows (personal data masked): " + "; ".join(
                str(dict(zip(rel.columns, row, strict=True))) for row in rows
            )
        except duckdb.Error as error:
            sample = f"; failing rows could not be read ({error.__class__.__name__})"
    return f"{ref}: dbt test {test['name']} failed on column {column} (rule {rule}){sample}"


@dataclass
class DbtBuild:
    """What one ``dbt build`` did: the models it built (with dagster-dbt's
    metadata), its test results as asset checks, and its artifacts."""

    built: dict[dg.AssetKey, dict[str, Any]]
    checks: dict[dg.AssetKey, list[dg.AssetCheckResult]]
    manifest: dict[str, Any]
    results: list[dict[str, Any]]
    succeeded: bool

    @cached_property
    def producers(self) -> dict[str, str]:
        """Sources the project fills itself → the node filling each."""
        return own_source_producers(self.manifest)

    def failed_blocking_tests(self, unique_id: str) -> list[dict[str, Any]]:
        """Tests of severity ``error`` on ``unique_id`` that failed."""
        failed = {r["unique_id"] for r in self.results if r["status"] in ("fail", "error")}
        return [
            test
            for uid, test in self.manifest["nodes"].items()
            if uid in failed
            and tested_node(test, self.manifest) == unique_id
            and test.get("config", {}).get("severity", "error").lower() == "error"
        ]

    def not_built(self, domain: str, accounted: set[str]) -> list[Problem]:
        """Products that dbt failed to build or skipped (naming what failed
        before them), failed unit tests, and other dbt errors."""
        problems = []
        for result in self.results:
            uid = result["unique_id"]
            node = self.manifest["nodes"].get(uid)
            if uid in self.manifest.get("unit_tests", {}):
                problems += self._unit_test_problem(domain, result)
            if node is None:
                continue
            ref = f"{domain}/{product_name(node)}"
            if node["resource_type"] not in ("model", "seed", "snapshot"):
                if result["status"] == "error":
                    problems.append(Problem(ref, _dbt_message(result)))
            elif ref in accounted:
                continue
            elif result["status"] == "error":
                problems.append(Problem(ref, f"dbt failed to build it: {_dbt_message(result)}"))
            elif result["status"] == "skipped":
                problems.append(Problem(ref, f"skipped: {self._why_skipped(uid)}"))
        return problems

    def _resource(self, uid: str) -> Mapping[str, Any]:
        """A node or unit test of the build's manifest (empty if neither)."""
        return self.manifest["nodes"].get(uid) or self.manifest.get("unit_tests", {}).get(uid) or {}

    def _unit_test_problem(self, domain: str, result: Mapping[str, Any]) -> list[Problem]:
        """A failed dbt unit test, named, against the model it tests."""
        if result["status"] not in ("fail", "error"):
            return []
        unit = self._resource(result["unique_id"])
        tested = [self._resource(uid) for uid in unit.get("depends_on", {}).get("nodes", [])]
        name = product_name(tested[0]) if tested and tested[0] else unit.get("model", "?")
        outcome = "failed" if result["status"] == "fail" else "errored"
        where = unit.get("original_file_path", "?")
        return [
            Problem(
                f"{domain}/{name}",
                f"dbt unit test {unit['name']} ({where}) {outcome}, so dbt did not build it: "
                f"{_dbt_message(result)}",
            )
        ]

    def _why_skipped(self, uid: str) -> str:
        """What failed in this run that ``uid`` needs: its unit tests, the
        nodes it reads (through ephemeral models) and their tests."""
        needed = _parents_through_ephemeral(self.manifest, uid, self.producers) | {uid}
        names = []
        for result in self.results:
            if result["status"] not in ("fail", "error"):
                continue
            failed = self._resource(result["unique_id"])
            reads = set(failed.get("depends_on", {}).get("nodes", []))
            if result["unique_id"] in needed or reads & needed:
                names.append(failed.get("name", result["unique_id"]))
        if not names:
            return "something it needs failed in this run"
        return "it needs what failed in this run: " + ", ".join(sorted(names))


def _dbt_message(result: Mapping[str, Any]) -> str:
    """dbt's message for a failed node, redacted: DuckDB's errors inside it
    quote the values they failed on, and a domain's models read raw data."""
    return redact(result.get("message") or "dbt error", lines=4)


def _value(metadata_value: Any) -> Any:
    return getattr(metadata_value, "value", metadata_value)


def _dbt_build(
    context: dg.AssetExecutionContext,
    project: DomainDbtProject,
    state: Path,
    selected: set[str],
    made_with: tuple[DagsterDbtTranslator, DbtProject],
) -> Iterator[Any]:
    """Run ``dbt build`` of the selection; yields dagster-dbt's other events
    and returns the :class:`DbtBuild` (models are published afterwards).

    When a selected model reads a source that a selected seed, model or
    snapshot of the project fills, one ``dbt build`` has no order for the
    two (dbt links a source to nothing): the selection is built in phases
    (:func:`~dagmesh.declarations.dbt_manifest.build_phases`), each an explicit
    selection of its nodes and their tests, and what needs a node that
    failed in an earlier phase is skipped as dbt skips it in one build."""
    manifest = project.manifest
    build = DbtBuild({}, defaultdict(list), manifest, [], True)
    try:
        phases = build_phases(manifest, selected, build.producers)
    except DbtGraphError as error:
        raise dg.Failure(
            description=f"dbt build of domain {project.domain} ({project.name}): {error}"
        ) from None
    quiet_tools()  # the dbt subprocess inherits it: no version check, no telemetry
    dbt = MeshDbtCli(
        project_dir=str(project.project_dir),
        profiles_dir=str(state),
        dbt_executable=dbt_executable(),
    )
    if len(phases) <= 1:
        invocation = _invoke(dbt, project, state, ["build"], context=context)
        yield from _collect(context, project, invocation, build)
        return build
    translator, dagster_project = made_with
    for index, nodes in enumerate(phases):
        runnable = _runnable(build, nodes)
        # What cannot run leaves the phase (and its tests) before selecting.
        phases[index] = runnable
        if runnable:
            args = ["build", "--indirect-selection", "empty", "--select"]
            args.append(" ".join(_phase_selection(manifest, build.producers, phases, index)))
            context.log.info(
                f"dbt build phase {index + 1}/{len(phases)} (sources the project fills "
                f"itself are built first): {len(runnable)} nodes"
            )
            invocation = _invoke(
                dbt, project, state, args, manifest=manifest, dagster_dbt_translator=translator
            )
            # Without a context dagster-dbt knows no DbtProject, which the
            # translator's code references need to name each node's file.
            invocation.project = dagster_project
            yield from _collect(context, project, invocation, build)
        build.results += [
            {"unique_id": uid, "status": "skipped", "message": None}
            for uid in nodes
            if uid not in runnable
        ]
    return build


def _runnable(build: DbtBuild, nodes: list[str]) -> list[str]:
    """The nodes of a phase that need nothing that failed, errored or was
    skipped in an earlier phase (a failed test failing what it tests)."""
    bad: set[str] = set()
    for result in build.results:
        if result["status"] in ("error", "fail", "skipped"):
            bad.add(result["unique_id"])
            node = build.manifest["nodes"].get(result["unique_id"])
            if node is not None and node["resource_type"] == "test":
                bad.update(node.get("depends_on", {}).get("nodes", []))
    return [
        uid
        for uid in nodes
        if not (upstream_nodes(build.manifest, uid, build.producers) | {uid}) & bad
    ]


def _phase_selection(
    manifest: Mapping[str, Any], producers: Mapping[str, str], phases: list[list[str]], index: int
) -> list[str]:
    """dbt selectors (``fqn:`` and resource type) of phase ``index``'s nodes, their unit
    tests, and each test whose last selected parent is built in this phase
    (as dbt's eager selection runs it once its parents are built)."""
    here = set(phases[index])
    phase_of = {uid: i for i, nodes in enumerate(phases) for uid in nodes}
    chosen = set(here)
    for uid, test in manifest["nodes"].items():
        if test["resource_type"] != "test":
            continue
        parents = {producers.get(p, p) for p in test.get("depends_on", {}).get("nodes", [])}
        levels = [phase_of[p] for p in parents if p in phase_of]
        if levels and max(levels) == index and parents & here:
            chosen.add(uid)
    chosen |= {
        uid
        for uid, unit in manifest.get("unit_tests", {}).items()
        if set(unit.get("depends_on", {}).get("nodes", [])) & here
    }
    resources = {**manifest["nodes"], **manifest.get("unit_tests", {})}
    # fqn: matches by prefix (a folder named like a seed): each selector is
    # intersected with its resource type.
    return sorted(
        f"fqn:{'.'.join(resources[uid]['fqn'])},resource_type:{resources[uid]['resource_type']}"
        for uid in chosen
    )


def _record_unit_tests(context: dg.AssetExecutionContext, domain: str, build: DbtBuild) -> None:
    """Each dbt unit test that ran as the result of its asset check (see
    :func:`dagmesh.orchestration.dbt.assets.unit_test_checks`): dagster-dbt reports none."""
    units = build.manifest.get("unit_tests", {})
    for result in build.results:
        unit = units.get(result["unique_id"])
        models = (unit or {}).get("depends_on", {}).get("nodes", [])
        model = build.manifest["nodes"].get(models[0]) if models else None
        if model is None:
            continue
        key = dg.AssetCheckKey(dg.AssetKey([domain, product_name(model)]), unit["name"])
        if key not in context.selected_asset_check_keys:
            continue
        metadata = {"status": result["status"], "file": unit.get("original_file_path", "")}
        if result["status"] in ("fail", "error"):
            metadata["dbt_message"] = _dbt_message(result)
        build.checks[key.asset_key].append(
            dg.AssetCheckResult(
                asset_key=key.asset_key,
                check_name=key.name,
                passed=result["status"] == "pass",
                metadata=metadata,
            )
        )


def _check_result(evaluation: dg.AssetCheckEvaluation) -> dg.AssetCheckResult:
    """A dbt test's evaluation (from an invocation without context) as the
    step's check result."""
    return dg.AssetCheckResult(
        asset_key=evaluation.asset_key,
        check_name=evaluation.check_name,
        passed=evaluation.passed,
        severity=evaluation.severity,
        metadata=dict(evaluation.metadata),
    )


def _invoke(
    dbt: MeshDbtCli, project: DomainDbtProject, state: Path, args: list[str], **kwargs: Any
) -> Any:
    """Start one dbt invocation writing its artifacts to the run's target folder."""
    target = state / "target"
    target.mkdir(exist_ok=True)
    (target / "run_results.json").unlink(missing_ok=True)
    return dbt.cli(args, target_path=target, raise_on_error=False, **kwargs)


def _collect(
    context: dg.AssetExecutionContext,
    project: DomainDbtProject,
    invocation: Any,
    build: DbtBuild,
) -> Iterator[Any]:
    """Stream one dbt invocation into ``build``: built models, test results
    as the asset checks the step was asked for; other events are yielded.
    An invocation without context (a phase) reports materializations and
    check evaluations, taken here as the step's outputs and check results."""
    selected_checks = context.selected_asset_check_keys
    # dagster-dbt re-prints dbt's log lines, which quote the values a model
    # failed on, into the compute log: they pass through redaction first.
    with redacted_stdout():
        for event in invocation.stream():
            if isinstance(event, dg.Output):
                build.built[context.asset_key_for_output(event.output_name)] = dict(event.metadata)
            elif isinstance(event, dg.AssetMaterialization):
                build.built[event.asset_key] = dict(event.metadata)
            elif isinstance(event, dg.AssetCheckResult):
                build.checks[event.asset_key].append(event)
            elif isinstance(event, dg.AssetCheckEvaluation):
                if event.asset_check_key in selected_checks:
                    build.checks[event.asset_key].append(_check_result(event))
            else:
                yield event
    if not (Path(invocation.target_path) / "run_results.json").exists():
        # dbt stopped before running anything (profile, connection, compilation).
        raise dg.Failure(
            description=f"dbt build of domain {project.domain} ({project.name}) failed before "
            f"running any model; nothing was published.\n"
            f"{redact(str(invocation.get_error() or ''), lines=6)}"
        )
    build.manifest = invocation.get_artifact("manifest.json")
    build.results += invocation.get_artifact("run_results.json")["results"]
    build.succeeded = build.succeeded and invocation.is_successful()


def run_dbt_products(
    context: dg.AssetExecutionContext,
    domain: Domain,
    contracts: Mapping[str, Contract | None],
    mesh: MeshStorage,
    made_with: tuple[DagsterDbtTranslator, DbtProject],
) -> Iterator[Any]:
    """The body of a domain's dbt assets: pin inputs, ``dbt build``, run each
    built model's contract rules, publish what passed, then fail the step
    naming everything that did not. ``made_with`` is the translator and
    dagster-dbt project the assets were built with."""
    project = dbt_project(domain)
    home = mesh.home_path
    memory_limit = mesh.memory_limit or default_memory_limit()
    state = project.write_profile(home, memory_limit=memory_limit, threads=mesh.threads)
    uid_of = {
        dg.AssetKey([project.domain, name]): node["unique_id"]
        for name, node in project.product_nodes().items()
    }
    selected = {uid_of[key] for key in context.selected_asset_keys if key in uid_of}
    pinned = pin_inputs(project, mesh, selected, context.run.run_id)
    grant = run_grant(project, home, pinned, context.run.run_id)
    grant.write(project.grant_path(home, project.domain))
    try:
        if on_postgres():
            _load_into_warehouse(context, project, pinned, mesh)
        else:
            project.database_path(home).parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        build = yield from _dbt_build(context, project, state, selected, made_with)
        context.log.info(f"dbt build of {project.name}: {time.perf_counter() - started:.1f}s")
        _record_unit_tests(context, project.domain, build)

        problems = yield from _publish_built(
            context, domain, build, contracts, mesh, pinned, memory_limit, state
        )
    finally:
        release_pins(home, context.run.run_id)  # the inputs' versions may be pruned now
    for leftover in build.checks.values():
        yield from leftover
    denied = _denied(build, grant, project.domain)
    problems += denied
    accounted = {p.product for p in problems} | {"/".join(k.path) for k in build.built}
    refused_refs = {p.product for p in denied}  # already explained, with the path
    problems += [
        p for p in build.not_built(project.domain, accounted) if p.product not in refused_refs
    ]
    if problems or not build.succeeded:
        _fail(project, problems, context.run.run_id)


def _load_into_warehouse(
    context: dg.AssetExecutionContext,
    project: DomainDbtProject,
    pinned: PinnedInputs,
    mesh: MeshStorage,
) -> None:
    """The ``postgres`` target: load the pinned versions into the domain's
    ports schema, where its dbt run's port sources resolve."""
    started = time.perf_counter()
    try:
        loaded = postgres.load_inputs(project.domain, pinned.by_product, mesh.store())
    except duckdb.Error as error:
        raise dg.Failure(
            description=f"dbt build of domain {project.domain} ({project.name}): the pinned "
            f"inputs could not be loaded into the warehouse; nothing was published.\n"
            f"{redact(str(error), lines=4)}"
        ) from None
    os.environ.update(postgres.dbt_process_env(project.domain))  # the dbt subprocess reads it
    context.log.info(
        f"loaded {len(loaded)} pinned inputs ({sum(i.rows for i in loaded)} rows) into "
        f"{postgres.ports_schema(project.domain)} in {time.perf_counter() - started:.1f}s"
    )


def _denied(build: DbtBuild, grant: Grant, domain: str) -> list[Problem]:
    """Nodes dbt failed because DuckDB refused them something outside the
    run's grant: each recorded as a denied read, named with the path."""
    problems = []
    for result in build.results:
        node = build.manifest["nodes"].get(result["unique_id"])
        text = (result.get("message") or "") if result["status"] == "error" else ""
        found, url = denial(text), duckdb_refusal(text)
        if node is None or (found is None and url is None):
            continue
        ref = f"{domain}/{product_name(node)}"
        if found is not None:
            problems.append(Problem(ref, record_refusal(grant, found, step=ref)))
            continue
        # The object store refused the domain's identity (ports on S3).
        message = f"S3 AccessDenied: {ref} (domain {domain}'s identity) may not read {url}"
        record_denied(grant.home, grant.run_id, ref, message, object_target(url))
        problems.append(Problem(ref, message))
    return problems


def _publish_grant(mesh: MeshStorage, domain: str, pinned: PinnedInputs, state: Path) -> Grant:
    """What publishing a dbt run's models may touch: the domain's staging
    folders and spill folder, and the pinned inputs the ``ports`` views read
    (dbt's failing-test queries and the contracts' SQL rules run here)."""
    store = mesh.store()
    return Grant(
        step=f"{domain} (dbt)",
        home=store.home_path,
        directories=(store.domain_dir(domain) / "staging", state / "tmp"),
        files=tuple(pinned.files),
    )


@dataclass
class _Publishing:
    """What publishing one dbt build's models needs at hand."""

    context: dg.AssetExecutionContext
    domain: Domain
    project: DomainDbtProject
    build: DbtBuild
    contracts: Mapping[str, Contract | None]
    mesh: MeshStorage
    pinned: PinnedInputs
    con: duckdb.DuckDBPyConnection
    grant: Grant


def _publish_built(
    context: dg.AssetExecutionContext,
    domain: Domain,
    build: DbtBuild,
    contracts: Mapping[str, Contract | None],
    mesh: MeshStorage,
    pinned: PinnedInputs,
    memory_limit: str,
    state: Path,
) -> Iterator[Any]:
    """Publish every model the build made whose blocking tests passed, through
    the shared write–audit–publish path; yield their results and return the
    problems of those that were not published."""
    project = dbt_project(domain)
    problems: list[Problem] = []
    config = {"memory_limit": memory_limit, "temp_directory": str(state / "tmp")}
    if on_postgres():
        con = duckdb.connect(config=config)
    else:
        database = str(project.database_path(mesh.home_path))
        con = duckdb.connect(database, read_only=True, config=config)
    grant = replace(_publish_grant(mesh, domain.name, pinned, state), run_id=context.run.run_id)
    objects = mesh.store().objects
    try:
        if on_postgres():
            # As the domain's role; before the lock: it loads an extension.
            postgres.attach(con, domain.name, read_only=True)
        if objects is not None:  # the ports views read s3:// objects: the domain's identity
            objects.attach(con, domain.name)
        con.execute(f"ATTACH {literal(pinned.ports)} AS {PORTS_DATABASE} (READ_ONLY)")
        lock(con, grant)
        run = _Publishing(context, domain, project, build, contracts, mesh, pinned, con, grant)
        for key, dbt_metadata in build.built.items():
            problems += yield from _publish_model(run, key, dbt_metadata)
    finally:
        con.close()
    return problems


def _publish_model(
    run: _Publishing, key: dg.AssetKey, dbt_metadata: Mapping[str, Any]
) -> Iterator[Any]:
    """Publish one built model unless a blocking dbt test failed; yield its
    result and return its problems (none when it was published)."""
    build = run.build
    node = build.manifest["nodes"][_value(dbt_metadata["unique_id"])]
    ref = "/".join(key.path)
    checks = build.checks.pop(key, [])
    failed = build.failed_blocking_tests(node["unique_id"])
    if failed:
        yield from checks
        return [Problem(ref, _failed_test_message(run.con, ref, t, node)) for t in failed]
    parents = _parents_through_ephemeral(build.manifest, node["unique_id"])
    inputs = dict(run.pinned.versions[uid] for uid in parents if uid in run.pinned.versions)
    started = time.perf_counter()
    spec = dbt_spec(run.domain, node, build.manifest, run.project.project_dir)
    contract = run.contracts.get(product_name(node))
    try:
        published = _publish(
            run.con, run.mesh, key, spec, contract, node, run.context.run.run_id, inputs
        )
    except duckdb.Error as error:
        denied = refused(error, replace(run.grant, step=ref))
        if denied is None:
            raise
        yield from checks
        return [Problem(ref, str(denied))]
    checks += [check_result(key, o) for o in published.outcomes]
    if not published.published:
        yield from checks
        return [Problem(ref, message) for message in published.violations]
    kept = ("Execution Duration", "unique_id", "status")
    metadata = {k: v for k, v in dbt_metadata.items() if k in kept}
    metadata.update(publication_metadata(published))
    yield dg.MaterializeResult(asset_key=key, metadata=metadata, check_results=checks)
    run.context.log.info(f"published {ref} in {time.perf_counter() - started:.1f}s")
    return []


def _fail(project: DomainDbtProject, problems: list[Problem], run_id: str) -> None:
    """Fail the step naming every product not published and why, and alert."""
    lines = [
        f"- {p.reason}" if p.reason.startswith(p.product) else f"- {p.product}: {p.reason}"
        for p in problems
    ]
    message = (
        f"dbt build of domain {project.domain} ({project.name}) did not "
        "publish everything; the last good versions stay in place for consumers.\n"
        + "\n".join(lines or ["- dbt failed"])
    )
    for product in sorted({p.product for p in problems}):
        alert_blocked(product, message, run_id)
    raise dg.Failure(description=message)


def _publish(
    con: duckdb.DuckDBPyConnection,
    mesh: MeshStorage,
    key: dg.AssetKey,
    spec: ProductSpec,
    contract: Contract | None,
    node: dict[str, Any],
    run_id: str,
    inputs: dict[str, str],
) -> Publication:
    """Copy a built model into its staging Parquet file, then the write–audit–
    publish path every product shares (the yml's typed columns and the
    contract's rules audited; dbt's tests already ran in the build)."""
    store = mesh.store()
    staging = store.port(*key.path).start_staging(run_id)
    try:
        if on_postgres():
            postgres.copy_relation(con, node, staging / DATA_FILE)
        else:
            con.execute(
                f"COPY (SELECT * FROM {node['relation_name']}) TO {literal(staging / DATA_FILE)} "
                "(FORMAT parquet, COMPRESSION zstd)"
            )
        return audit_and_publish(
            con,
            store,
            Publication(spec, inputs=inputs),
            contract,
            staging,
            run_id,
            extra={"dbt": {"package": node["package_name"], "unique_id": node["unique_id"]}},
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)

"""The ``dagmesh`` command line."""

from __future__ import annotations

import importlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dagmesh import config
from dagmesh.engine.privacy import owner_only
from dagmesh.errors import DagmeshError

if TYPE_CHECKING:  # the commands import what they use when they run: a fast start
    from dagmesh.engine.dbt.adoption import Survey
    from dagmesh.engine.governance import Violation
    from dagmesh.orchestration.runner import Outcome

app = typer.Typer(help="dagmesh: a data mesh on Dagster.", no_args_is_help=True)
console = Console(stderr=True)


@app.callback()
def _platform_process() -> None:
    """dagmesh: a data mesh on Dagster."""
    # Files it (and the processes it starts) creates are owner-only, and a
    # malformed DAGMESH_* setting fails every command at once, in one line.
    owner_only()
    try:
        config.check_settings()
    except config.SettingError as error:
        console.print(f"[red]error:[/] {escape(str(error))}", soft_wrap=True)
        raise typer.Exit(2) from None


def parse_scale(text: str) -> int:
    """``10000``, ``250k``, ``1M`` or ``10M`` → a number of orders."""
    factors = {"k": 1_000, "m": 1_000_000}
    text = text.strip().lower().replace("_", "")
    factor = factors.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in factors else text
    try:
        value = int(float(number) * factor)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a number of orders (e.g. 10000, 1M)") from None
    if value < 100:
        raise typer.BadParameter("the scale is at least 100 orders")
    return value


def _generator():
    target = config.tool_settings().get("generator")
    if not target:
        raise typer.BadParameter("no [tool.dagmesh] generator in pyproject.toml")
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


def _progress(on: Console | None = None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=on or console,
    )


@contextmanager
def _children_output_to(log: Path) -> Iterator[Console]:
    """Point this process's stdout and stderr at ``log`` while code servers
    and run workers start (they inherit them: dbt's output, server logs), and
    yield a console on the terminal for our own progress. The runs' logs are
    in the Dagster UI too."""
    # Owner-only: what runs print may name the mesh's files and products.
    log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    log.parent.chmod(0o700)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(2), "w", buffering=1)
    handle = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.fchmod(handle, 0o600)
        os.dup2(handle, 1)
        os.dup2(handle, 2)
    finally:
        os.close(handle)
    try:
        yield Console(file=terminal)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, original in zip((1, 2), saved, strict=True):
            os.dup2(original, fd)
            os.close(original)
        terminal.close()


@app.command()
def generate(
    scale: Annotated[str, typer.Option(help="Number of orders: 10000, 1M, 10M")] = "10000",
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same files")] = 42,
) -> None:
    """Write the sample business's source files into the landing area."""
    orders = parse_scale(scale)
    landing = config.landing_dir()
    generate_sources = _generator()
    with _progress() as progress:
        task = progress.add_task(f"generating {orders:,} orders", total=100)

        def report(step: str, fraction: float) -> None:
            progress.update(task, completed=round(fraction * 100), description=step)

        truth = generate_sources(landing, scale=orders, seed=seed, progress=report)
        progress.update(task, completed=100, description="sources generated")
    console.print(f"landing: {landing} ({truth.get('orders', orders):,} orders)")


@app.command()
def materialize(
    products: Annotated[list[str] | None, typer.Argument(help="DOMAIN/PRODUCT names")] = None,
    all_products: Annotated[
        bool, typer.Option("--all", help="Every product of every domain")
    ] = False,
    with_upstream: Annotated[
        bool, typer.Option("--with-upstream", help="Also what they need, in other domains too")
    ] = False,
) -> None:
    """Materialize products across domains, in dependency order, as Dagster runs.

    Submits a cross-domain materialization (a run of mesh/materialize_products,
    as the UI's launchpad does) and follows it; it goes on if this command
    ends. Ctrl-C asks whether to cancel it (with no terminal: leaves it running)."""
    from dagmesh.orchestration.runner import MaterializeError
    from dagmesh.tools.materializations import submit_detached

    products = products or []
    if not products and not all_products:
        raise typer.BadParameter("name products (DOMAIN/PRODUCT) or pass --all")
    if products and all_products:
        raise typer.BadParameter("give either --all or product names, not both")
    log = config.mesh_home() / "logs" / f"materialize-{time.strftime('%Y%m%dT%H%M%S')}.log"
    with _children_output_to(log) as terminal:
        # A Ctrl-C while submitting waits for the id (so that it can be
        # reported); a handler, not SIG_IGN, which the helper would inherit.
        interrupted: list[int] = []
        previous = signal.signal(signal.SIGINT, lambda number, _: interrupted.append(number))
        try:
            materialization = submit_detached(products, with_upstream, all_products)
        except (MaterializeError, config.SettingError) as error:
            terminal.print(f"[red]error:[/] {escape(str(error))}")
            raise typer.Exit(2) from None
        finally:
            signal.signal(signal.SIGINT, previous)
        try:
            terminal.print(
                f"submitted materialization {materialization} (a run of "
                "mesh/materialize_products; its runs per domain are tagged "
                f"dagmesh/materialization={materialization} )"
            )
            if interrupted:
                raise KeyboardInterrupt
            outcome = _follow_materialization(materialization, terminal)
        except KeyboardInterrupt:
            _interrupted(materialization, terminal)
    _report_outcome(outcome, log)


def _follow_materialization(materialization: str, terminal: Console) -> Outcome:
    """Follow a submitted materialization with a progress bar."""
    from dagmesh.orchestration.runner import MaterializeError
    from dagmesh.tools.materializations import Snapshot, follow

    reported: set[str] = set()
    with _progress(terminal) as progress:
        task = progress.add_task("waiting for the materialization to start", total=None)

        def report(state: Snapshot) -> None:
            for ref in sorted(state.materialized - reported):
                progress.console.print(f"[green]✓[/] {ref}")
            for ref in sorted(state.failed - reported):
                progress.console.print(f"[red]✗[/] {ref}")
            reported.update(state.materialized, state.failed)
            if state.selected is not None:
                done = len(state.materialized | state.failed)
                progress.update(
                    task, total=len(state.selected), completed=done, description="materializing"
                )

        try:
            return follow(materialization, on_progress=report)
        except MaterializeError as error:
            progress.stop()
            terminal.print(f"[red]error:[/] {escape(str(error))}")
            raise typer.Exit(2) from None


def _interrupted(materialization: str, terminal: Console) -> NoReturn:
    """Ctrl-C while following: cancel, or leave it running (exit 130)."""
    from dagmesh.tools.materializations import cancel

    how = f"`dagmesh cancel {materialization}` or Terminate on its run in the Dagster UI"
    from rich.prompt import Confirm

    if sys.stdin.isatty() and Confirm.ask(
        f"Cancel materialization {materialization} (and its runs)?",
        console=terminal,
        default=False,
    ):
        cancelled = cancel(materialization)
        terminal.print(f"[yellow]cancelled {materialization}[/] ({len(cancelled)} runs)")
        raise typer.Exit(1)
    terminal.print(
        f"[yellow]materialization {materialization} goes on without this command[/]; "
        f"to cancel it: {how}"
    )
    raise typer.Exit(130)


def _report_outcome(outcome: Outcome, log: Path) -> None:
    """Print what a finished materialization did; exit 1 unless it all worked."""
    console.print(
        f"{len(outcome.run_ids)} Dagster runs, tagged "
        f"dagmesh/materialization={outcome.materialization_id} (their logs: the Dagster UI "
        f"and {log})"
    )
    if outcome.success:
        console.print(f"[green]materialized {len(outcome.materialized)} products[/]")
        return
    if outcome.cancelled is not None:
        console.print(f"[yellow]cancelled[/] ({len(outcome.cancelled)} runs cancelled)")
    for location, error in outcome.load_errors.items():
        console.print(f"[red]FAILED to load[/] code location {location}:\n{escape(str(error))}")
    for failure in outcome.failures:
        console.print(
            f"[red]FAILED[/] {failure.product} in run {failure.run_id}:\n{escape(failure.message)}"
        )
    if outcome.not_run:
        console.print(f"[yellow]not run (upstream failed):[/] {', '.join(outcome.not_run)}")
    raise typer.Exit(1)


@app.command()
def cancel(
    materialization: Annotated[str, typer.Argument(help="The materialization's id (its run id)")],
) -> None:
    """Cancel a cross-domain materialization and the runs it launched."""
    from dagmesh.orchestration.runner import MaterializeError
    from dagmesh.tools.materializations import cancel as cancel_materialization

    try:
        cancelled = cancel_materialization(materialization)
    except MaterializeError as error:
        console.print(f"[red]error:[/] {escape(str(error))}")
        raise typer.Exit(2) from None
    if not cancelled:
        console.print(f"materialization {materialization} had already finished")
        return
    console.print(f"cancelled materialization {materialization} ({len(cancelled)} runs)")


new_app = typer.Typer(help="Create domains and products.", no_args_is_help=True)
app.add_typer(new_app, name="new")


@new_app.command("domain")
def new_domain(
    name: Annotated[str, typer.Argument(help="The domain's name (a lower-case identifier)")],
    dbt_project: Annotated[
        Path | None,
        typer.Option(help="Adopt an existing dbt project (e.g. dbt_projects/NAME), unmodified"),
    ] = None,
    owner: Annotated[
        str | None, typer.Option(help="Owner team; default: the dbt group's owner, else NAME")
    ] = None,
    description: Annotated[str | None, typer.Option(help="What the domain is about")] = None,
) -> None:
    """Create a domain: domains/NAME (a first product, its contract and a
    test) and its workspace.yaml entry; with --dbt-project, an existing dbt
    project becomes the domain, and nothing inside it is written."""
    from dagmesh.tools.scaffold import new_dbt_domain, new_python_domain

    try:
        if dbt_project is None:
            created = new_python_domain(name, owner=owner, description=description)
        else:
            created = new_dbt_domain(
                name, dbt_project, owner=owner, description=description, report=_print_survey
            )
    except DagmeshError as error:  # names what is wrong and the fix
        console.print(f"[red]error:[/] {escape(str(error))}")
        raise typer.Exit(2) from None
    _print_written(created.files)
    console.print(
        f"[green]domain {name}[/]: {len(created.products)} products "
        f"({', '.join(created.products)})"
        + (f", {created.tests} dbt tests as checks." if dbt_project else ".")
    )
    _report_policies(name)


@new_app.command("product")
def new_product(
    domain: Annotated[str, typer.Argument(help="The domain that will own it")],
    name: Annotated[str, typer.Argument(help="The product's name (a lower-case identifier)")],
    sql: Annotated[bool, typer.Option("--sql", help="A SQL product (the default)")] = False,
    python: Annotated[bool, typer.Option("--python", help="A Python product")] = False,
    dbt: Annotated[bool, typer.Option("--dbt", help="A model of the domain's dbt project")] = False,
    description: Annotated[str | None, typer.Option(help="What the product is")] = None,
) -> None:
    """Add a product and its contract to a domain (starter query to replace)."""
    from dagmesh.tools.scaffold import new_product as scaffold_product

    if sql + python + dbt > 1:
        console.print("[red]error:[/] choose one of --sql, --python, --dbt")
        raise typer.Exit(2)
    kind = "python" if python else "dbt" if dbt else "sql"
    try:
        written = scaffold_product(domain, name, kind, description)
    except DagmeshError as error:  # names what is wrong and the fix
        console.print(f"[red]error:[/] {escape(str(error))}")
        raise typer.Exit(2) from None
    _print_written(written)
    console.print(f"[green]{domain}/{name}[/]: a {kind} product")
    _report_policies(domain)


def _print_written(files: list[Path]) -> None:
    root = config.project_root()
    for file in files:
        console.print(f"wrote {file.relative_to(root) if file.is_relative_to(root) else file}")


def _print_survey(found: Survey) -> None:
    """What adopting the dbt project makes of each kind it holds (printed
    before anything is written)."""
    console.print(f"dbt project {escape(found.project)} holds:")
    for finding in found.adopted:
        console.print(f"  {escape(str(finding))}")
    if found.not_adopted:
        console.print("[yellow]Not adopted:[/]")
        for finding in found.not_adopted:
            console.print(f"  {escape(str(finding))}")


def _print_advice(advice: list[Violation]) -> None:
    """What the product policies would ask of the domain's internals before
    another domain may read them: advice, one line per product."""
    if not advice:
        return
    by_product: dict[str, list[str]] = {}
    for item in advice:
        by_product.setdefault(item.product, []).append(item.message)
    console.print(
        f"Advice: {len(by_product)} product(s) no other domain may read yet load as they are; "
        "before exposing one (dbt: access: public, or meta.consumers), the mesh's "
        "product policies will ask:"
    )
    for product, messages in sorted(by_product.items()):
        console.print(f"  {escape(product)}: {escape('; '.join(messages))}")


def _report_policies(domain: str) -> None:
    from dagmesh.engine.governance import exposure_advice, policy_violations
    from dagmesh.engine.mesh_view import MeshView
    from dagmesh.engine.registration import register_domains
    from dagmesh.engine.registry import Registry
    from dagmesh.engine.workspace import load_mesh_tolerant

    registry = Registry(config.registry_dir())
    domains, _ = load_mesh_tolerant(only=[domain])
    mesh = MeshView.build(domains, registry)
    violations = policy_violations(mesh, [domain])
    _print_advice(exposure_advice(mesh, [domain]))
    if not violations:
        # Registered at once, so other domains can consume its products.
        register_domains(registry, [domain])
    if violations:
        console.print(
            f"[yellow]Before domain {domain} loads, fix what the mesh's policies ask "
            f"({len(violations)}):[/]"
        )
        for violation in violations:
            console.print(f"  {escape(str(violation))}")
    else:
        console.print("Next: dagmesh materialize --all")


contracts_app = typer.Typer(help="Data contracts (ODCS) of the products.", no_args_is_help=True)
app.add_typer(contracts_app, name="contracts")


@contracts_app.command("sync")
def contracts_sync(
    domains: Annotated[
        list[str] | None, typer.Argument(help="Domains to sync; default: every domain")
    ] = None,
) -> None:
    """Write what each product's declaration (Python or dbt yml) says into its
    contract file, creating missing ones; the owner's facts (version, status,
    quality rules, SLAs) are kept."""
    from dagmesh.engine.contracts.generate import sync
    from dagmesh.engine.workspace import load_mesh

    mesh = load_mesh()
    unknown = set(domains or []) - set(mesh)
    if unknown:
        console.print(f"[red]error:[/] no domain {sorted(unknown)} (domains: {sorted(mesh)})")
        raise typer.Exit(2)
    root = config.project_root()
    changed = [path for name in domains or sorted(mesh) for path in sync(mesh[name])]
    for path in changed:
        console.print(f"wrote {path.relative_to(root) if path.is_relative_to(root) else path}")
    console.print(f"{len(changed)} contract file(s) changed")


@app.command()
def lint(
    published: Annotated[
        bool,
        typer.Option(help="Also compare contracts with those last published in DAGMESH_HOME"),
    ] = True,
) -> None:
    """Check every product against the mesh's governance policies, its
    contract file against its declaration, each contract against the last
    published one (breaking changes), and each published port (whole, and
    its current version recorded in the audit log). One line per violation; exit 1
    if there is any."""
    from dagmesh.engine.governance import (
        MeshView,
        breaking_violations,
        contract_drift,
        deprecation_warnings,
        policy_violations,
    )
    from dagmesh.engine.port_health import port_violations
    from dagmesh.engine.registration import registry_drift
    from dagmesh.engine.registry import Registry
    from dagmesh.engine.workspace import load_mesh_tolerant

    domains, import_errors = load_mesh_tolerant()
    mesh = MeshView.build(domains, Registry(config.registry_dir()))
    violations = policy_violations(mesh) + contract_drift(mesh)
    if published:
        violations += breaking_violations(mesh, config.mesh_home())
        violations += port_violations(mesh.specs.values(), config.mesh_home())
    for warning in [*deprecation_warnings(mesh), *registry_drift(mesh)]:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    broken = {**import_errors, **mesh.unreadable}
    for name, error in sorted(broken.items()):
        print(f"domain {name} not checked: {error}")
    for violation in violations:
        print(violation)
    products = len(mesh.specs)
    if violations or broken:
        console.print(
            f"[red]{len(violations)} violation(s)[/] in {products} products"
            + (f", [red]{len(broken)} domain(s) not loadable[/]" if broken else "")
        )
        raise typer.Exit(1)
    console.print(f"[green]✓[/] {products} products comply with every policy")


@app.command()
def catalog(
    as_json: Annotated[bool, typer.Option("--json", help="Print the catalog as JSON")] = False,
    html_dir: Annotated[
        Path | None, typer.Option("--html", help="Write a static catalog site into this folder")
    ] = None,
) -> None:
    """Every product: domain, owner, description, access, contract version,
    freshness, last update, check results, consumers; health per domain."""
    import dagster as dg

    from dagmesh.engine.mesh_view import MeshView
    from dagmesh.engine.registry import Registry
    from dagmesh.engine.workspace import load_mesh_tolerant
    from dagmesh.orchestration.instance import ensure_dagster_home
    from dagmesh.tools.catalog import build_catalog, health_lines, render_table, to_json, write_site

    ensure_dagster_home()
    domains, import_errors = load_mesh_tolerant()
    # One broken domain is reported, not fatal: the catalog shows the others.
    mesh = MeshView.build(domains, Registry(config.registry_dir()))
    broken = {**import_errors, **mesh.unreadable}
    with dg.DagsterInstance.get() as instance:
        entries = build_catalog(mesh, instance, config.mesh_home())
    if as_json:
        print(to_json(entries, broken))
    if html_dir is not None:
        index = write_site(entries, mesh, html_dir)
        console.print(f"wrote {index} ({len(entries)} product pages)")
    if as_json or html_dir is not None:
        return
    # Piped output is not cut to an 80-column terminal.
    out = Console(width=None if sys.stdout.isatty() else 220)
    out.print(render_table(entries))
    for line in health_lines(entries, broken):
        out.print(line)


@app.command()
def audit(
    product: Annotated[str, typer.Argument(help="A product, DOMAIN/PRODUCT")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines")] = False,
) -> None:
    """The audit trail of a product: its publishes, who read it, denied reads."""
    import json

    from dagmesh.engine import audit_log

    events = audit_log.query(config.mesh_home(), product)
    if as_json:
        for event in events:
            print(json.dumps(event))
        return
    if not events:
        console.print(f"no audit events for {product} in {config.mesh_home()}")
        return
    # Piped output gets the whole table instead of rich's 80-column default.
    Console(width=None if sys.stdout.isatty() else 220).print(audit_log.format_events(events))


@app.command()
def register(
    domains: Annotated[
        list[str] | None, typer.Argument(help="Domains to register; default: every domain")
    ] = None,
) -> None:
    """Publish each domain's product interfaces (key, owner, access, columns,
    contract version and status, port) to the mesh registry, which the code
    locations of consuming domains read instead of the producer's code. A
    domain that does not import or violates a policy is not registered
    (exit 1); the others are."""
    from dagmesh.engine.registration import register_domains
    from dagmesh.engine.registry import Registry

    registry = Registry(config.registry_dir())
    try:
        outcome = register_domains(registry, domains or None)
    except DagmeshError as error:
        console.print(f"[red]error:[/] {escape(str(error))}")
        raise typer.Exit(2) from None
    for name in outcome.written:
        console.print(f"[green]✓[/] {name}: registered ({registry.path(name)})")
    for name in outcome.unchanged:
        console.print(f"[green]✓[/] {name}: unchanged")
    for name, reasons in sorted(outcome.refused.items()):
        console.print(f"[red]✗[/] {name}: not registered:")
        for reason in reasons:
            console.print(f"  {escape(reason)}")
    if outcome.refused:
        raise typer.Exit(1)


@app.command()
def prepare() -> None:
    """Parse every domain's dbt project into the manifest its code location
    loads (run before serving or deploying; ``dagmesh dev`` does it)."""
    from dagmesh.engine.dbt.project import DbtProjectError, dbt_project
    from dagmesh.engine.workspace import load_mesh_tolerant

    domains, import_errors = load_mesh_tolerant()
    for name, error in sorted(import_errors.items()):
        console.print(f"[red]✗[/] {name}: {escape(error)}")
    failed = bool(import_errors)
    for name, domain in domains.items():
        project = dbt_project(domain)
        if project is None:
            continue
        try:
            manifest = project.prepare()
        except (DbtProjectError, config.SettingError) as error:
            console.print(f"[red]✗[/] {name}: {escape(str(error))}")
            failed = True
            continue
        console.print(f"[green]✓[/] {name}: {manifest}")
    if failed:
        raise typer.Exit(1)


warehouse_app = typer.Typer(
    help="The PostgreSQL warehouse of the postgres dbt target.", no_args_is_help=True
)
app.add_typer(warehouse_app, name="warehouse")


@warehouse_app.command("grants")
def warehouse_grants(
    domains: Annotated[
        list[str] | None,
        typer.Argument(help="Domains; default: every domain with a dbt project"),
    ] = None,
    apply: Annotated[
        bool,
        typer.Option(
            "--apply",
            help="Run it as DAGMESH_DBT_PG_ADMIN_USER (else print the SQL to run with psql)",
        ),
    ] = False,
) -> None:
    """One warehouse role per domain, owning only its schemas <domain> and
    <domain>__ports: the roles' names from DAGMESH_DBT_PG_<DOMAIN>_USER;
    nobody else may create in the database or read another domain's schemas."""
    from dagmesh.engine.dbt import postgres
    from dagmesh.engine.workspace import load_mesh

    mesh = load_mesh()
    if unknown := set(domains or []) - set(mesh):
        console.print(f"[red]error:[/] no domain {sorted(unknown)} (domains: {sorted(mesh)})")
        raise typer.Exit(2)
    names = domains or sorted(n for n, d in mesh.items() if d.dbt_project_dir)
    try:
        roles = {name: config.dbt_pg_role(name) for name in names}
        if not apply:
            database = os.environ.get(config.DBT_PG_ENV["dbname"], "").strip() or "<database>"
            print(postgres.grants_script(roles, database), end="")
            return
        done = postgres.apply_grants(roles)
    except config.SettingError as error:
        console.print(f"[red]error:[/] {escape(str(error))}", soft_wrap=True)
        raise typer.Exit(2) from None
    except Exception as error:  # psycopg2's, with PostgreSQL's message
        console.print(f"[red]error:[/] the grants were not applied: {escape(str(error))}")
        raise typer.Exit(1) from None
    for sql in done:
        console.print(f"[green]✓[/] {escape(sql)}")
    console.print(f"applied for {', '.join(f'{d} ({r})' for d, r in sorted(roles.items()))}")


@contextmanager
def _phase(name: str) -> Iterator[None]:
    """Print how long a phase of ``dagmesh dev`` took (what ``make run`` costs)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        console.print(f"[dim]phase {name}: {time.perf_counter() - started:.1f} s[/]")


@contextmanager
def _warn_on_exit(warning: str) -> Iterator[None]:
    """Turn a command's non-zero exit into a warning: ``dev`` goes on."""
    try:
        yield
    except typer.Exit as exit_:
        if exit_.exit_code:
            console.print(f"[yellow]{warning}[/]")


@app.command()
def dev(
    scale: Annotated[
        str, typer.Option(help="Orders to generate when the landing is empty")
    ] = "10000",
    port: Annotated[int, typer.Option(help="Port of the Dagster UI")] = 3000,
    host: Annotated[str, typer.Option(help="Interface of the Dagster UI")] = "127.0.0.1",
) -> None:
    """Generate sources (if missing), materialize the whole mesh, serve the Dagster UI."""
    from dagmesh.config import quiet_tools
    from dagmesh.orchestration.instance import ensure_dagster_home

    if not (config.landing_dir() / "_truth.json").exists():
        with _phase("generate"):
            generate(scale=scale, seed=42)
    with (
        _phase("prepare"),
        _warn_on_exit("a dbt project does not compile; its domain will not load"),
    ):
        prepare()
    with (
        _phase("register"),
        _warn_on_exit("a domain could not be registered; its consumers will not load"),
    ):
        register(domains=None)
    # Serve the UI anyway when something failed: it is where an operator looks.
    with (
        _phase("materialize"),
        _warn_on_exit("the mesh did not fully materialize; the UI shows why"),
    ):
        materialize(products=None, all_products=True, with_upstream=False)
    quiet_tools()
    ensure_dagster_home()
    from dagmesh.engine.workspace import mesh_workspace_file

    workspace = str(config.run_workspace_file())
    command = ["dagster", "dev", "-w", workspace, "-w", str(mesh_workspace_file())]
    command += ["-h", host, "-p", str(port)]
    console.print(f"serving the Dagster UI on http://{host}:{port} ({' '.join(command)})")
    dagster = Path(sys.executable).with_name("dagster")
    # A shell starts background jobs with SIGINT ignored, and an ignored
    # signal stays ignored across exec; `dagster dev` maps SIGTERM to its
    # SIGINT handler, so it would then ignore SIGTERM too and never stop.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.execv(str(dagster), [str(dagster), *command[1:]])


@app.command()
def daemon() -> None:
    """Run the Dagster daemon of the selected profile's instance (it starts
    queued runs, schedules and sensors); one per instance."""
    from dagmesh.engine.workspace import mesh_workspace_file

    _prepare_instance()
    command = ["dagster-daemon", "run", "-w", str(config.run_workspace_file())]
    command += ["-w", str(mesh_workspace_file())]
    console.print(f"running the Dagster daemon ({' '.join(command)})")
    _exec(command)


@app.command("code-server")
def code_server(
    location: Annotated[str, typer.Argument(help="The domain (code location) to serve")],
    host: Annotated[str, typer.Option("-h", "--host", help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("-p", "--port", help="Port to listen on")] = 4000,
) -> None:
    """Serve one domain's code over gRPC (``dagster code-server start``) on the
    selected profile's instance, whose dagster.yaml it writes first."""
    from dagmesh.engine.workspace import workspace_locations

    locations = workspace_locations()
    if location not in locations:
        message = f"{location!r} is not a code location of workspace.yaml: " + (
            ", ".join(sorted(locations)) or "it lists none"
        )
        console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
        raise typer.Exit(2)
    _prepare_instance()
    module = locations[location].module
    command = ["dagster", "code-server", "start", "-m", module, "--location-name", location]
    command += ["-h", host, "-p", str(port), "-d", str(config.project_root())]
    console.print(f"serving {location} ({' '.join(command)})")
    _exec(command)


def _prepare_instance() -> None:
    """Write the profile's dagster.yaml and create the instance's storage
    (once, under a lock) before a long-running Dagster process starts on it."""
    import fcntl

    import dagster as dg

    from dagmesh.config import quiet_tools
    from dagmesh.orchestration.instance import ensure_dagster_home

    quiet_tools()
    try:
        home = ensure_dagster_home()
    except config.SettingError as error:
        console.print(f"[red]error:[/] {escape(str(error))}", soft_wrap=True)
        raise typer.Exit(2) from None
    # The processes of a deployment (code servers, daemon, webserver) start
    # together, and two creating the same storage at once fail ("table
    # alembic_version already exists"): the first creates it, holding a lock.
    with (home / ".storage.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with dg.DagsterInstance.get():
            pass


def _exec(command: list[str]) -> None:
    """Replace this process with the Dagster command next to this Python."""
    executable = Path(sys.executable).with_name(command[0])
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # as in `dev`: SIGTERM must stop it
    os.execv(str(executable), [str(executable), *command[1:]])


@app.command()
def workspace(
    grpc: Annotated[bool, typer.Option("--grpc", help="One grpc_server entry per domain")] = False,
    host: Annotated[
        str, typer.Option(help="Where the code servers listen; {domain} is replaced")
    ] = "127.0.0.1",
    base_port: Annotated[int, typer.Option(help="The first domain's port")] = 4000,
    out: Annotated[Path | None, typer.Option(help="Write it here (else print it)")] = None,
) -> None:
    """Print (or write) the workspace of one gRPC code server per domain, with
    the command that starts each one; point a profile's ``workspace`` at it."""
    from dagmesh.engine.atomic import write_atomically
    from dagmesh.engine.registry import MeshError
    from dagmesh.engine.workspace import grpc_workspace

    if not grpc:
        raise typer.BadParameter("only --grpc is supported: workspace.yaml is the other one")
    try:
        text, _ = grpc_workspace(host, base_port)
    except MeshError as error:
        console.print(f"[red]error:[/] {escape(str(error))}")
        raise typer.Exit(2) from None
    if out is None:
        print(text, end="")
        return
    write_atomically(out, text)
    console.print(f"wrote {out}")


if __name__ == "__main__":
    app()

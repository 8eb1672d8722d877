"""A step reads and writes only what the platform grants it, enforced by
DuckDB: a bad-input corpus of reads and writes by path, configuration
changes, hostile landing paths, links, FIFOs and outbox names.

Each case runs for real (DuckDB, files on disk) against a small mesh where
``customers/profiles`` is private and holds personal data and
``sales/orders`` has a published version; each asserts the clear error
(product and path named), that the attack's target was neither read nor
written, and that the last good versions are still readable."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from dagmesh import Column, Domain, Landing, ProductContext, pii
from dagmesh.engine import audit_log
from dagmesh.engine.build import build_product
from dagmesh.engine.context import OutputNameError
from dagmesh.engine.governance import policy_violations
from dagmesh.engine.grants import GrantDeniedError
from dagmesh.engine.landing import SourceFileError
from dagmesh.engine.mesh_view import MeshView
from dagmesh.engine.storage import MeshStore
from dagmesh.orchestration.assets import product_asset
from dagmesh.orchestration.resources import MeshStorage

SECRET_EMAIL = "ann@secret.example"
ORDERS_ROWS = 3
DAGMESH = str(Path(sys.executable).with_name("dagmesh"))


@dataclass
class Mesh:
    """A small published mesh in a temporary data directory."""

    home: Path
    store: MeshStore

    @property
    def landing(self) -> Path:
        return self.home / "landing"

    @property
    def raw_profiles(self) -> Path:
        return self.home / "domains/customers/ports/profiles/current/raw.parquet"

    @property
    def orders_data(self) -> Path:
        return self.home / "domains/sales/ports/orders/current/data.parquet"

    @property
    def sales_landing(self) -> Path:
        return self.landing / "shop" / "orders"

    def version(self, ref: str) -> str:
        domain, name = ref.split("/")
        return self.store.port(domain, name).require_current().version


def _customers() -> Domain:
    customers = Domain("customers", owner="crm", description="Customers.")
    customers.sql_product(
        "profiles",
        description="Customer profiles (personal data).",
        access="private",
        columns=[Column("id", "VARCHAR", "Id.", nullable=False), pii("email", "VARCHAR", "Email.")],
        primary_key="id",
        sources={"crm": Landing("crm/customers", "csv", ["id", "name", "email"])},
        sql="select id, email from crm",
    )
    return customers


def _sales() -> Domain:
    sales = Domain("sales", owner="shop", description="Orders.")
    sales.sql_product(
        "orders",
        description="Orders.",
        columns=[Column("order_id", "VARCHAR", "Id.", nullable=False)],
        primary_key="order_id",
        sources={"orders": Landing("shop/orders", "csv", ["order_id", "amount"])},
        sql="select order_id from orders",
    )
    return sales


@pytest.fixture
def mesh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Mesh:
    home = tmp_path / "home"
    monkeypatch.setenv("DAGMESH_HOME", str(home))
    crm = home / "landing/crm/customers"
    crm.mkdir(parents=True)
    (crm / "c1.csv").write_text(f"id,name,email\n1,Ann Secret,{SECRET_EMAIL}\n2,Bob,b@x.org\n")
    shop = home / "landing/shop/orders"
    shop.mkdir(parents=True)
    (shop / "o1.csv").write_text("order_id,amount\nA,1\nB,2\nC,3\n")
    m = Mesh(home, MeshStore(home))
    for domain in (_customers(), _sales()):
        for product in domain.products.values():
            assert build_product(product, m.store, "setup").published
    return m


def _snapshot(m: Mesh) -> dict[str, str]:
    """Every file of the landing area and of every port, by content."""
    files = [*m.landing.rglob("*"), *m.home.glob("domains/*/ports/**/*")]
    return {
        str(p.relative_to(m.home)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(files)
        if p.is_file() and not p.is_symlink()
    }


def _no_secret_outside_customers(m: Mesh) -> None:
    """No file any other domain owns holds the personal data (text or Parquet)."""
    con = duckdb.connect()
    for path in m.home.glob("domains/*/**/*"):
        if path.parts[len(m.home.parts) + 1] == "customers" or not path.is_file():
            continue
        assert SECRET_EMAIL.encode() not in path.read_bytes(), path
        if path.suffix == ".parquet":
            text = con.execute(f"SELECT * FROM read_parquet('{path}')").fetchall()
            assert SECRET_EMAIL not in str(text), path


def _last_good_versions_readable(m: Mesh, versions: dict[str, str]) -> None:
    assert {ref: m.version(ref) for ref in versions} == versions
    rows = duckdb.sql(f"SELECT count(*) FROM read_parquet('{m.orders_data}')").fetchall()
    assert rows == [(ORDERS_ROWS,)]
    raw = duckdb.sql(f"SELECT count(*) FROM read_parquet('{m.raw_profiles}')").fetchall()
    assert raw == [(2,)]


# -- the corpus --------------------------------------------------------------

SPY_COLUMNS = [Column("value", "VARCHAR", "Whatever it took.")]


def _sql_spy(sql: Callable[[Mesh], str]) -> Callable[[Mesh], None]:
    def attack(m: Mesh) -> None:
        spies = Domain("sales", owner="shop", description="Orders.")
        spies.sql_product("spy", description="Spy.", columns=SPY_COLUMNS, sql=sql(m))
        build_product(spies.products["spy"], m.store, "attack")

    return attack


def _python_spy(body: Callable[[ProductContext, Mesh], object]) -> Callable[[Mesh], None]:
    def attack(m: Mesh) -> None:
        spies = Domain("sales", owner="shop", description="Orders.")

        @spies.python_product(name="spy", description="Spy.", columns=SPY_COLUMNS)
        def spy(ctx: ProductContext) -> object:
            return body(ctx, m)

        build_product(spy, m.store, "attack")

    return attack


def _outbox(name: Callable[[Mesh], str]) -> Callable[[Mesh], None]:
    def send(ctx: ProductContext, m: Mesh) -> pd.DataFrame:
        ctx.send_to_outbox(ctx.sql("select 'x' as value"), name(m))
        return pd.DataFrame({"value": ["sent"]})

    return _python_spy(send)


def _declare_landing(path: str) -> Callable[[Mesh], None]:
    def attack(m: Mesh) -> None:
        _landing_spy(path)

    return attack


def _landing_spy(path: str, fmt: str = "parquet") -> Domain:
    spies = Domain("sales", owner="shop", description="Orders.")
    spies.sql_product(
        "spy",
        description="Spy.",
        columns=[Column("email", "VARCHAR", "Email.")],
        sources={"loot": Landing(path, fmt, ["id", "email"])},
        sql="select email from loot",
    )
    return spies


def _build_sales_orders(m: Mesh) -> None:
    build_product(_sales().products["orders"], m.store, "attack")


def _escaping_folder(m: Mesh) -> None:
    (m.landing / "loot").symlink_to(m.raw_profiles.parent, target_is_directory=True)


def _escaping_file(m: Mesh) -> None:
    outside = m.home.parent / "outside.csv"
    outside.write_text(f"order_id,amount\n{SECRET_EMAIL},1\n")
    (m.sales_landing / "o2.csv").symlink_to(outside)


def _outbox_link(m: Mesh) -> None:
    outbox = m.home / "domains/sales/outbox"
    outbox.mkdir(parents=True)
    (outbox / "google").symlink_to(m.sales_landing, target_is_directory=True)


@dataclass(frozen=True)
class Case:
    """One attack: what it does, the error it must end with and what that
    error must name (``{home}``, ``{raw}``... filled from the mesh)."""

    attack: Callable[[Mesh], None]
    error: type[Exception]
    names: tuple[str, ...]
    denied: str | None = None  # the product or path the audit log records as refused
    prepare: Callable[[Mesh], None] | None = None


RAW = "{home}/domains/customers/ports/profiles/current/raw.parquet"
CORPUS: dict[str, Case] = {
    # Reads and writes by path, in SQL products.
    "sql reads another domain's private raw file": Case(
        _sql_spy(lambda m: f"select email as value from read_parquet('{m.raw_profiles}')"),
        GrantDeniedError,
        ("sales/spy", RAW),
        denied="customers/profiles",
    ),
    "sql reads a pinned version by its folder": Case(
        _sql_spy(
            lambda m: (
                "select email as value from read_parquet('"
                f"{m.raw_profiles.parent.resolve() / 'data.parquet'}')"
            )
        ),
        GrantDeniedError,
        ("sales/spy", "/data.parquet"),
        denied="customers/profiles",
    ),
    "sql reads /etc/passwd": Case(
        _sql_spy(lambda m: "select column0 as value from read_csv('/etc/passwd', header=false)"),
        GrantDeniedError,
        ("sales/spy", "/etc/passwd"),
        denied="/etc/passwd",
    ),
    "sql reads a landing file it does not declare": Case(
        _sql_spy(
            lambda m: f"select email as value from read_csv('{m.landing}/crm/customers/c1.csv')"
        ),
        GrantDeniedError,
        ("sales/spy", "{home}/landing/crm/customers/c1.csv"),
        denied="{home}/landing/crm/customers/c1.csv",
    ),
    "sql climbs out of its granted tmp folder": Case(
        _sql_spy(
            lambda m: (
                "select email as value from read_parquet('"
                f"{m.home}/domains/sales/tmp/../../customers/ports/profiles/current/raw.parquet')"
            )
        ),
        GrantDeniedError,
        ("sales/spy", "{home}/domains/sales/tmp/../../customers/ports/profiles"),
        denied="customers/profiles",
    ),
    "sql lists another domain's files": Case(
        _sql_spy(lambda m: f"select file as value from glob('{m.home}/domains/customers/**')"),
        GrantDeniedError,
        ("sales/spy", "{home}/domains/customers/**"),
    ),
    "sql attaches another domain's database": Case(
        _sql_spy(lambda m: f"attach '{m.home}/domains/customers/dbt/warehouse.duckdb' as w"),
        GrantDeniedError,
        ("sales/spy", "{home}/domains/customers/dbt/warehouse.duckdb"),
    ),
    "sql writes into sales' landing": Case(
        _sql_spy(lambda m: f"copy (select 'X' as order_id) to '{m.sales_landing}/o9.csv'"),
        GrantDeniedError,
        ("sales/spy", "{home}/landing/shop/orders/o9.csv"),
    ),
    "sql overwrites a published data.parquet": Case(
        _sql_spy(lambda m: f"copy (select 'X' as order_id) to '{m.orders_data}'"),
        GrantDeniedError,
        ("sales/spy", "{home}/domains/sales/ports/orders/current/data.parquet"),
        denied="sales/orders",
    ),
    # Undoing the lock.
    "sql switches external access back on": Case(
        _sql_spy(lambda m: "set enable_external_access = true"),
        GrantDeniedError,
        ("sales/spy", "enable_external_access"),
        denied="duckdb configuration enable_external_access",
    ),
    "sql widens allowed_directories": Case(
        _sql_spy(lambda m: "set allowed_directories = ['/']"),
        GrantDeniedError,
        ("sales/spy", "allowed_directories"),
    ),
    "sql unlocks the configuration": Case(
        _sql_spy(lambda m: "set lock_configuration = false"),
        GrantDeniedError,
        ("sales/spy", "lock_configuration"),
    ),
    "sql loads an extension": Case(
        _sql_spy(lambda m: "load httpfs"),
        GrantDeniedError,
        ("sales/spy", "extensions"),
    ),
    # Python products, through the step's DuckDB.
    "python reads the raw file through ctx.sql": Case(
        _python_spy(
            lambda ctx, m: ctx.sql(f"select email as value from read_parquet('{m.raw_profiles}')")
        ),
        GrantDeniedError,
        ("sales/spy", RAW),
        denied="customers/profiles",
    ),
    "python reads the raw file through ctx.con": Case(
        _python_spy(
            lambda ctx, m: ctx.con.sql(
                f"select email as value from read_parquet('{m.raw_profiles}')"
            )
        ),
        GrantDeniedError,
        ("sales/spy", RAW),
        denied="customers/profiles",
    ),
    # Landing paths, refused when the product is declared.
    "landing path climbs into another domain's port": Case(
        _declare_landing("../domains/customers/ports/profiles/current"),
        ValueError,
        ("sales/spy", "'loot'", "'../domains/customers/ports/profiles/current'", "(..)"),
    ),
    "landing path is absolute": Case(
        _declare_landing("/etc"), ValueError, ("sales/spy", "'loot'", "'/etc'", "absolute")
    ),
    "landing path climbs half way": Case(
        _declare_landing("crm/../../domains/customers"),
        ValueError,
        ("sales/spy", "'loot'", "'crm/../../domains/customers'"),
    ),
    "landing path holds a NUL": Case(
        _declare_landing("crm\x00customers"), ValueError, ("sales/spy", "'loot'", "control")
    ),
    # Landing files at run time.
    "landing folder is a link out of the landing area": Case(
        lambda m: build_product(_landing_spy("loot").products["spy"], m.store, "attack"),
        SourceFileError,
        ("sales/spy", "'loot'", "leads out of the landing area"),
        prepare=_escaping_folder,
    ),
    "landing file is a link out of the landing area": Case(
        _build_sales_orders,
        SourceFileError,
        ("sales/orders", "{home}/landing/shop/orders/o2.csv", "leads out of the landing area"),
        prepare=_escaping_file,
    ),
    "landing file is a FIFO": Case(
        _build_sales_orders,
        SourceFileError,
        ("sales/orders", "{home}/landing/shop/orders/o2.csv", "FIFO"),
        prepare=lambda m: os.mkfifo(m.sales_landing / "o2.csv"),
    ),
    "landing file is a folder": Case(
        _build_sales_orders,
        SourceFileError,
        ("sales/orders", "{home}/landing/shop/orders/o2.csv", "not a regular file"),
        prepare=lambda m: (m.sales_landing / "o2.csv").mkdir(),
    ),
    "landing file is a dangling link": Case(
        _build_sales_orders,
        SourceFileError,
        ("sales/orders", "{home}/landing/shop/orders/o2.csv", "cannot be read"),
        prepare=lambda m: (m.sales_landing / "o2.csv").symlink_to(m.sales_landing / "gone"),
    ),
    # Outbox names.
    "outbox name climbs into sales' landing": Case(
        _outbox(lambda m: "../../../landing/shop/orders/o9.csv"),
        OutputNameError,
        ("sales/spy", "'../../../landing/shop/orders/o9.csv'", "(..)"),
    ),
    "outbox name overwrites a published data.parquet": Case(
        _outbox(lambda m: "../ports/orders/current/data.parquet"),
        OutputNameError,
        ("sales/spy", "'../ports/orders/current/data.parquet'"),
    ),
    "outbox name is absolute": Case(
        _outbox(lambda m: str(m.sales_landing / "o9.csv")),
        OutputNameError,
        ("sales/spy", "{home}/landing/shop/orders/o9.csv", "absolute"),
    ),
    "outbox name holds a NUL": Case(
        _outbox(lambda m: "google/a\x00.csv"), OutputNameError, ("sales/spy", "control")
    ),
    "outbox name climbs after a folder": Case(
        _outbox(lambda m: "google/../../ports/orders/x.csv"),
        OutputNameError,
        ("sales/spy", "'google/../../ports/orders/x.csv'"),
    ),
    "outbox name is hidden": Case(
        _outbox(lambda m: ".partial.csv"), OutputNameError, ("sales/spy", "hidden")
    ),
    "outbox name is empty": Case(_outbox(lambda m: ""), OutputNameError, ("sales/spy", "empty")),
    "outbox folder is a link into sales' landing": Case(
        _outbox(lambda m: "google/o9.csv"),
        OutputNameError,
        ("sales/spy", "'google/o9.csv'", "through a link"),
        prepare=_outbox_link,
    ),
}


@pytest.fixture
def no_hang() -> Iterator[None]:
    """Fail instead of hanging (a FIFO read blocks forever)."""

    def _timeout(signum, frame):
        raise TimeoutError("the step hung")

    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("case", list(CORPUS.values()), ids=list(CORPUS))
def test_bad_input_is_refused_and_nothing_is_lost(mesh: Mesh, case: Case, no_hang):
    if case.prepare:
        case.prepare(mesh)
    versions = {ref: mesh.version(ref) for ref in ("sales/orders", "customers/profiles")}
    before = _snapshot(mesh)

    with pytest.raises(case.error) as raised:
        case.attack(mesh)

    message = str(raised.value)
    for name in case.names:
        assert name.format(home=mesh.home) in message, message
    assert SECRET_EMAIL not in message
    assert _snapshot(mesh) == before
    assert not (mesh.home / "domains/sales/ports/spy").exists()
    assert not list((mesh.home / "domains/sales/staging").glob("*/*"))
    _no_secret_outside_customers(mesh)
    _last_good_versions_readable(mesh, versions)
    if case.error is GrantDeniedError:
        [denied] = audit_log.query(mesh.home, event="read_denied")
        assert denied["consumer"] == "sales/spy"
        assert denied["run_id"] == "attack"
        if case.denied is not None:
            assert denied["product"] == case.denied.format(home=mesh.home)


def test_the_corpus_is_large_enough():
    assert len(CORPUS) >= 30


# -- what the grant allows ------------------------------------------------------


def test_granted_reads_and_writes_still_work(mesh: Mesh):
    """Own-domain raw reads, public products, declared landing files, the
    outbox (nested names), all under the lock."""
    customers = Domain("customers", owner="crm", description="Customers.")

    @customers.python_product(
        name="mailing",
        description="Emails to send.",
        consumes=["profiles"],
        columns=[Column("sent", "BIGINT", "Files sent.")],
    )
    def mailing(ctx: ProductContext) -> pd.DataFrame:
        ctx.send_to_outbox(ctx.sql("select email from profiles"), "mail/list.csv")
        count = ctx.sql(f"select count(*) from read_csv('{ctx.outbox}/mail/list.csv')")
        return pd.DataFrame({"sent": [count.fetchall()[0][0]]})

    assert build_product(mailing, mesh.store, "ok").published
    port = mesh.home / "domains/customers/ports/mailing/current/data.parquet"
    assert duckdb.sql(f"SELECT sent FROM '{port}'").fetchall() == [(2,)]
    assert SECRET_EMAIL in (mesh.home / "domains/customers/outbox/mail/list.csv").read_text()
    assert audit_log.query(mesh.home, event="read_denied") == []


def test_an_in_progress_upload_is_skipped(mesh: Mesh):
    (mesh.sales_landing / ".o2.csv.part").write_text("order_id,amount\nZ,9\n")
    (mesh.sales_landing / ".o3.csv").write_text("order_id,amount\nbroken")
    assert build_product(_sales().products["orders"], mesh.store, "again").published
    rows = duckdb.sql(f"SELECT order_id FROM read_parquet('{mesh.orders_data}') ORDER BY 1")
    assert rows.fetchall() == [("A",), ("B",), ("C",)]


def test_a_python_product_that_swallows_the_refusal_is_still_recorded(mesh: Mesh):
    sales = Domain("sales", owner="shop", description="Orders.")

    @sales.python_product(name="sly", description="Sly.", columns=SPY_COLUMNS)
    def sly(ctx: ProductContext) -> pd.DataFrame:
        with contextlib.suppress(GrantDeniedError):
            ctx.sql(f"select email from read_parquet('{mesh.raw_profiles}')")
        return pd.DataFrame({"value": ["nothing"]})

    assert build_product(sly, mesh.store, "sly").published
    [denied] = audit_log.query(mesh.home, event="read_denied")
    assert (denied["consumer"], denied["product"]) == ("sales/sly", "customers/profiles")
    _no_secret_outside_customers(mesh)


def test_a_denied_read_fails_the_dagster_run_naming_product_and_path(mesh: Mesh):
    spies = Domain("sales", owner="shop", description="Orders.")
    spies.sql_product(
        "spy",
        description="Spy.",
        columns=SPY_COLUMNS,
        sql=f"select email as value from read_parquet('{mesh.raw_profiles}')",
    )
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [product_asset(spies.products["spy"])],
            resources={"mesh": MeshStorage(home=str(mesh.home))},
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.error.message
    assert f"sales/spy: access denied to {mesh.raw_profiles}" in message
    assert SECRET_EMAIL not in message


def test_the_shipped_audience_export_ignores_hostile_platform_names(mesh: Mesh):
    from domains.marketing.products import marketing

    hostile = "../../../landing/shop/orders"
    marketing_src = Domain("marketing", owner="growth", description="Ads.")
    marketing_src.sql_product(
        "ad_audiences",
        description="Audiences.",
        columns=[
            Column("ad_platform", "VARCHAR", "Platform."),
            Column("audience", "VARCHAR", "Audience."),
            Column("email_sha256", "VARCHAR", "Hash."),
        ],
        sql=f"""
            select * from (values
                ('google', 'open_leads', 'h1'),
                ('{hostile}', 'o9', 'h2'),
                ('meta', '../../ports/ad_audiences/current/data', 'h3')
            ) as t(ad_platform, audience, email_sha256)
        """,
    )
    assert build_product(marketing_src.products["ad_audiences"], mesh.store, "src").published
    before = _snapshot(mesh)
    result = build_product(marketing.products["audience_exports"], mesh.store, "export")
    assert result.published
    outbox = mesh.home / "domains/marketing/outbox"
    assert sorted(str(p.relative_to(outbox)) for p in outbox.rglob("*.csv")) == [
        "google/open_leads.csv"
    ]
    exports = mesh.home / "domains/marketing/ports/audience_exports/current/data.parquet"
    assert duckdb.sql(f"SELECT ad_platform, audience FROM '{exports}'").fetchall() == [
        ("google", "open_leads")
    ]
    changed = {
        k for k in set(before) | set(_snapshot(mesh)) if before.get(k) != _snapshot(mesh).get(k)
    }
    assert all(k.startswith("domains/marketing/ports/audience_exports/") for k in changed), changed
    assert sorted(p.name for p in mesh.sales_landing.iterdir()) == ["o1.csv"]


# -- landing paths at load and in lint ----------------------------------------------


def test_a_landing_link_out_of_the_landing_area_is_a_policy_violation(mesh: Mesh):
    _escaping_folder(mesh)
    spies = _landing_spy("loot")
    found = [
        str(v)
        for v in policy_violations(MeshView.build({"sales": spies}))
        if v.policy == "landing_paths"
    ]
    assert len(found) == 1
    assert found[0].startswith("sales/spy: [landing_paths] landing source 'loot' path 'loot' ")
    assert "leads out of the landing area through a link" in found[0]


def test_lint_and_the_code_location_refuse_hostile_landing_paths(tmp_path: Path):
    root = tmp_path / "project"
    home = tmp_path / "home"
    (home / "landing").mkdir(parents=True)
    (home / "landing" / "loot").symlink_to(tmp_path, target_is_directory=True)
    (root / "evil").mkdir(parents=True)
    (root / "workspace.yaml").write_text(
        "load_from:\n  - python_module: evil.climb.definitions\n"
        "  - python_module: evil.link.definitions\n"
    )
    (root / "evil" / "__init__.py").write_text("")
    for name, path in (("climb", "../domains/customers/ports/profiles/current"), ("link", "loot")):
        package = root / "evil" / name
        package.mkdir()
        (package / "__init__.py").write_text("")
        (package / "products.py").write_text(
            "from dagmesh import Column, Domain, Landing\n"
            f"{name} = Domain({name!r}, owner='o', description='d')\n"
            f"{name}.sql_product('spy', description='d', access='private',\n"
            "    columns=[Column('email', 'VARCHAR', 'e')],\n"
            f"    sources={{'loot': Landing({path!r}, 'parquet', ['email'])}},\n"
            "    sql='select email from loot')\n"
        )
        (package / "definitions.py").write_text(
            "from dagmesh.orchestration.definitions import domain_definitions\n"
            f"from evil.{name}.products import {name}\n"
            f"defs = domain_definitions({name})\n"
        )
    env = {
        **os.environ,
        "DAGMESH_PROJECT": str(root),
        "DAGMESH_HOME": str(home),
        "COLUMNS": "300",
    }
    env.pop("DAGSTER_HOME", None)
    lint = subprocess.run(
        [DAGMESH, "lint"], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    out = " ".join((lint.stdout + lint.stderr).split())
    assert lint.returncode == 1, out
    assert (
        "climb/spy: landing source 'loot' path '../domains/customers/ports/profiles/current' "
        "goes up a folder (..)" in out
    )
    assert "link/spy: [landing_paths] landing source 'loot' path 'loot' leads out of" in out
    load = subprocess.run(
        [sys.executable, "-c", "import evil.link.definitions"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert load.returncode != 0
    assert "link/spy: [landing_paths] landing source 'loot' path 'loot'" in load.stderr


# -- dbt ------------------------------------------------------------------------------


def test_a_dbt_model_reading_by_path_fails_and_its_siblings_publish(
    mesh: Mesh, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The dbt run's DuckDB is locked too: a model reading another domain's
    raw file by path fails naming itself and the path (recorded as denied);
    so does one whose hook tries to undo the lock; a seed and a model
    reading a granted port source publish."""
    from dagmesh.orchestration.dbt.assets import dbt_domain_assets

    root = tmp_path / "project"
    project = root / "dbt_projects" / "spies"
    (project / "models").mkdir(parents=True)
    (project / "seeds").mkdir()
    monkeypatch.setenv("DAGMESH_PROJECT", str(root))
    (root / "workspace.yaml").write_text("load_from: []\n")
    (project / "dbt_project.yml").write_text(
        "name: spies\nversion: '1.0.0'\nconfig-version: 2\nprofile: spies\n"
        "models:\n  spies:\n    +materialized: table\n"
    )
    (project / "seeds" / "codes.csv").write_text("code\nA\nB\n")
    (project / "models" / "_sources.yml").write_text(
        "version: 2\nsources:\n  - name: sales\n    database: ports\n    schema: sales\n"
        "    tables:\n      - name: orders\n"
    )
    (project / "models" / "peek.sql").write_text(
        f"select email from read_parquet('{mesh.raw_profiles}')\n"
    )
    (project / "models" / "unlock.sql").write_text(
        "{{ config(pre_hook='set enable_external_access = true') }}\nselect 1 as one\n"
    )
    (project / "models" / "matched.sql").write_text(
        "select orders.order_id from {{ source('sales', 'orders') }} as orders "
        "inner join {{ ref('codes') }} as codes on orders.order_id = codes.code\n"
    )
    spies = Domain("spies", owner="o", description="d", dbt_project=str(project))
    versions = {ref: mesh.version(ref) for ref in ("sales/orders", "customers/profiles")}
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [dbt_domain_assets(spies, {})],
            resources={"mesh": MeshStorage(home=str(mesh.home))},
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.error.message
    assert f"- spies/peek: access denied to {mesh.raw_profiles}" in message
    assert "- spies/unlock: may not change DuckDB's configuration (enable_external_access)" in (
        message
    )
    assert SECRET_EMAIL not in message
    ports = mesh.home / "domains/spies/ports"
    assert sorted(p.parent.name for p in ports.glob("*/current")) == ["codes", "matched"]
    matched = duckdb.sql(f"SELECT order_id FROM '{ports}/matched/current/data.parquet' ORDER BY 1")
    assert matched.fetchall() == [("A",), ("B",)]
    denied = audit_log.query(mesh.home, event="read_denied")
    assert sorted((e["consumer"], e["product"]) for e in denied) == [
        ("spies/peek", "customers/profiles"),
        ("spies/unlock", "duckdb configuration enable_external_access"),
    ]
    _no_secret_outside_customers(mesh)
    _last_good_versions_readable(mesh, versions)

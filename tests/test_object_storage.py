"""Output ports on S3-compatible object storage, on a real SeaweedFS server
(tests/servers.py) with one identity per domain: products are built with
the engine's own path (build_product: locked DuckDB, audits, masking,
publish), versions go under their own prefix, publishing is one PUT of the
pointer, and the store itself refuses a consumer's identity the producer's
raw and quarantined rows."""

from __future__ import annotations

import datetime as dt
import io
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.parquet as pq
import pytest

from dagmesh import Column, Domain, Landing, config, pii
from dagmesh.config import Profile, SettingError
from dagmesh.engine import audit_log, extensions
from dagmesh.engine.access import refused
from dagmesh.engine.build import build_product
from dagmesh.engine.grants import GrantDeniedError
from dagmesh.engine.objectstore import ObjectAccessDeniedError, ObjectStore, S3OutputPort
from dagmesh.engine.publish import AuditRecordError
from dagmesh.engine.specs import domain_specs
from dagmesh.engine.storage import MeshStore
from dagmesh.tools.catalog import catalog_entry
from tests.servers import SeaweedS3, s3_server

SECRET_EMAIL = "ann@secret.example"
DOMAINS = ["customers", "sales", "finance"]


@pytest.fixture(scope="module")
def s3() -> Iterator[SeaweedS3]:
    with s3_server(DOMAINS) as server:
        yield server


@dataclass
class Mesh:
    home: Path
    s3: SeaweedS3

    def store(self) -> MeshStore:
        """A fresh engine store on the profile's object storage (clients new)."""
        profile = Profile("production", ports=self.s3.ports)
        settings = config.s3_settings(profile)
        return MeshStore(self.home, objects=ObjectStore(settings, config.s3_credentials))

    def port(self, ref: str, reader: str | None = None) -> S3OutputPort:
        port = self.store().port(*ref.split("/"), reader=reader)
        assert isinstance(port, S3OutputPort)
        return port

    def objects(self, prefix: str = "") -> list[str]:
        admin = self.s3.client()
        pages = admin.get_paginator("list_objects_v2")
        found = []
        for page in pages.paginate(Bucket=self.s3.bucket, Prefix=f"{self.s3.prefix}/{prefix}"):
            found += [item["Key"] for item in page.get("Contents", [])]
        return found

    def parquet(self, key: str) -> list[dict]:
        body = self.s3.client().get_object(Bucket=self.s3.bucket, Key=key)["Body"].read()
        return pq.read_table(io.BytesIO(body)).to_pylist()


@pytest.fixture
def mesh(s3: SeaweedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Mesh:
    for key in Mesh(tmp_path, s3).objects():  # a clean prefix for every test
        s3.client().delete_object(Bucket=s3.bucket, Key=key)
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "home"
    monkeypatch.setenv("DAGMESH_HOME", str(home))
    crm = home / "landing/crm/customers"
    crm.mkdir(parents=True)
    (crm / "c1.csv").write_text(
        f"id,email\n1,{SECRET_EMAIL}\n2,b@x.org\n3,not-an-email\n", encoding="utf-8"
    )
    shop = home / "landing/shop/orders"
    shop.mkdir(parents=True)
    (shop / "o1.csv").write_text("order_id,customer_id,amount\nA,1,10\nB,2,20\nC,1,5\n")
    return Mesh(home, s3)


def _customers() -> Domain:
    customers = Domain("customers", owner="crm", description="Customers.")
    customers.sql_product(
        "profiles",
        description="Customer profiles (personal data).",
        columns=[Column("id", "VARCHAR", "Id.", nullable=False), pii("email", "VARCHAR", "Email.")],
        primary_key="id",
        sources={
            "crm": Landing(
                "crm/customers",
                "csv",
                ["id", "email"],
                reject_if={"no @ in email": "email NOT LIKE '%@%'"},
            )
        },
        sql="select id, email from crm",
    )
    return customers


def _sales(sql: str = "select order_id, customer_id, amount::BIGINT amount from orders") -> Domain:
    sales = Domain("sales", owner="shop", description="Orders.")
    sales.sql_product(
        "orders",
        description="Orders.",
        columns=[
            Column("order_id", "VARCHAR", "Id.", nullable=False),
            Column("customer_id", "VARCHAR", "Customer."),
            Column("amount", "BIGINT", "Amount."),
        ],
        primary_key="order_id",
        sources={"orders": Landing("shop/orders", "csv", ["order_id", "customer_id", "amount"])},
        sql=sql,
    )
    return sales


def _finance(sql: str = "select count(*) orders, sum(amount) revenue from orders") -> Domain:
    finance = Domain("finance", owner="fin", description="Money.")
    finance.sql_product(
        "revenue",
        description="Revenue.",
        consumes={"orders": "sales/orders", "profiles": "customers/profiles"},
        columns=[Column("orders", "BIGINT", "Orders."), Column("revenue", "HUGEINT", "Sum.")],
        sql=sql,
    )
    return finance


def _build_all(mesh: Mesh, run_id: str = "r1") -> None:
    for domain in (_customers(), _sales(), _finance()):
        for product in domain.products.values():
            assert build_product(product, mesh.store(), run_id).published, product.ref


def test_a_product_published_to_s3_is_read_back_by_a_consumer_with_its_own_identity(mesh: Mesh):
    _build_all(mesh)
    revenue = mesh.port("finance/revenue")
    version = revenue.require_current()
    assert version.info()["inputs"] == {
        "sales/orders": mesh.port("sales/orders").require_current().version,
        "customers/profiles": mesh.port("customers/profiles").require_current().version,
    }
    assert mesh.parquet(version.data_file.removeprefix(f"s3://{mesh.s3.bucket}/")) == [
        {"orders": 3, "revenue": 35}
    ]
    # Nothing of the ports on local disk: versions and pointers are objects.
    assert not list(mesh.home.glob("domains/*/ports/*/versions"))
    profiles = mesh.port("customers/profiles").require_current()
    keys = set(mesh.objects())
    prefix = f"{mesh.s3.prefix}"
    assert f"{prefix}/published/customers/profiles/current.json" in keys
    assert f"{prefix}/private/customers/profiles/versions/{profiles.version}/raw.parquet" in keys
    quarantine = f"{prefix}/private/customers/profiles/versions/{profiles.version}/quarantine/"
    assert any(k.startswith(quarantine) for k in keys)
    assert not any("raw.parquet" in k or "quarantine" in k for k in keys if "/published/" in k)
    # The masked file others read holds no raw email; the owner's raw file does.
    published = mesh.parquet(
        f"{prefix}/published/customers/profiles/versions/{profiles.version}/data.parquet"
    )
    assert SECRET_EMAIL not in str(published) and len(published) == 2
    raw = mesh.parquet(
        f"{prefix}/private/customers/profiles/versions/{profiles.version}/raw.parquet"
    )
    assert SECRET_EMAIL in str(raw)
    # The consumer's reads are in the audit log, with the version it pinned.
    reads = audit_log.query(mesh.home, event="read")
    assert {(r["consumer"], r["product"], r["version"]) for r in reads} == {
        ("finance/revenue", "sales/orders", mesh.port("sales/orders").require_current().version),
        ("finance/revenue", "customers/profiles", profiles.version),
    }


def test_plain_duckdb_reads_a_port_through_its_pointer_with_the_consumers_secret(mesh: Mesh):
    _build_all(mesh)
    con = duckdb.connect()
    mesh.store().objects.attach(con, "finance")
    [(version,)] = con.sql(
        f"SELECT version FROM read_json('{mesh.port('sales/orders').pointer_url}')"
    ).fetchall()
    data = mesh.port("sales/orders", reader="finance").public_url(version, "data.parquet")
    assert con.sql(f"SELECT sum(amount) FROM '{data}'").fetchall() == [(35,)]


def test_the_consumers_identity_is_refused_the_producers_raw_and_quarantine(mesh: Mesh):
    _build_all(mesh)
    profiles = mesh.port("customers/profiles").require_current()
    finance = mesh.store().objects
    private = f"{mesh.s3.prefix}/private/customers/profiles/versions/{profiles.version}"
    quarantine = next(k for k in mesh.objects("private/customers/") if "/quarantine/" in k)

    # The store refuses finance's identity, whatever client asks.
    for key in (f"{private}/raw.parquet", quarantine):
        with pytest.raises(ObjectAccessDeniedError, match="S3 AccessDenied: domain finance"):
            finance.get("finance", key)
        plain = mesh.s3.client("finance")
        with pytest.raises(plain.exceptions.ClientError, match="AccessDenied"):
            plain.get_object(Bucket=mesh.s3.bucket, Key=key)
    with pytest.raises(ObjectAccessDeniedError):
        list(finance.keys("finance", f"{mesh.s3.prefix}/private/customers/"))
    # ... and its writes to another domain's port (the pointer stays).
    with pytest.raises(ObjectAccessDeniedError, match="may not write"):
        finance.put("finance", mesh.port("sales/orders").pointer_key, b'{"version": "x"}')
    assert mesh.port("sales/orders", reader="finance").require_current().version

    # A finance step granted the raw URL by mistake is still refused by the
    # store, and the refusal is in the audit log.
    store = mesh.store()
    raw_url = profiles.owner_file
    assert raw_url.endswith("/raw.parquet")
    grant = store.step_grant("finance/peek", mesh.home / "staging", [raw_url], "peek-run")
    con = store.connect("finance", grant)
    with pytest.raises(duckdb.Error) as raised:
        con.sql(f"SELECT * FROM read_parquet('{raw_url}')").fetchall()
    error = refused(raised.value, grant)
    assert isinstance(error, ObjectAccessDeniedError)
    assert "finance/peek" in str(error) and "raw.parquet" in str(error)
    [denied] = audit_log.query(mesh.home, event="read_denied")
    assert denied["consumer"] == "finance/peek"
    assert denied["product"] == "customers/profiles"
    assert "S3 AccessDenied" in denied["reason"]

    # Through the platform the grant refuses first (the URL is not declared).
    with pytest.raises(GrantDeniedError, match=r"finance/revenue: access denied to s3://"):
        build_product(
            _finance(f"select count(*) orders, 0::HUGEINT revenue from '{raw_url}'").products[
                "revenue"
            ],
            mesh.store(),
            "sneak",
        )


def test_a_failed_publish_leaves_the_last_good_pointer(mesh: Mesh, monkeypatch):
    _build_all(mesh)
    port = mesh.port("sales/orders")
    good = port.require_current().version
    kept = {v.version for v in port.versions()}

    # A blocking audit (duplicate primary key): nothing uploaded, pointer kept.
    shop = mesh.home / "landing/shop/orders"
    (shop / "o2.csv").write_text("order_id,customer_id,amount\nA,2,99\n")
    assert not build_product(_sales().products["orders"], mesh.store(), "dup").published
    (shop / "o2.csv").unlink()
    assert port.require_current().version == good

    # The audit log cannot record the publish: the uploaded version is removed.
    folder = audit_log.audit_dir(mesh.home)
    shutil.rmtree(folder)
    folder.write_text("not a directory")
    with pytest.raises(AuditRecordError, match=f"version {good} stays current"):
        build_product(_sales().products["orders"], mesh.store(), "unrecorded")
    folder.unlink()
    assert port.require_current().version == good
    assert {v.version for v in port.versions()} == kept
    assert not [k for k in mesh.objects("published/sales/") if "unrecor" in k]

    # The domain's identity is wrong: the upload fails, the pointer is kept.
    key_env, secret_env = config.s3_credential_env("sales")
    monkeypatch.setenv(secret_env, "wrong-secret")
    with pytest.raises(Exception, match="S3 write of s3://"):
        build_product(_sales().products["orders"], mesh.store(), "badkey")
    monkeypatch.setenv(secret_env, mesh.s3.identities["sales"][1])
    assert mesh.port("sales/orders", reader="finance").require_current().version == good
    assert {v.version for v in port.versions()} == kept
    # ... and the consumer still reads the last good version.
    assert build_product(_finance().products["revenue"], mesh.store(), "after").published


def test_old_versions_are_pruned_on_s3_but_never_the_current(mesh: Mesh):
    store = mesh.store()
    sales = _sales().products["orders"]
    versions = []
    for run in range(7):
        assert build_product(sales, store, f"run{run}").published
        versions.append(mesh.port("sales/orders").require_current().version)
    kept = [v.version for v in mesh.port("sales/orders").versions()]
    assert kept == versions[-store.keep_versions :]
    assert kept[-1] == mesh.port("sales/orders").require_current().version
    for gone in versions[: -store.keep_versions]:
        assert not [k for k in mesh.objects("") if f"/{gone}/" in k]


def test_secrets_never_appear_in_logs_or_files(mesh: Mesh, caplog, monkeypatch, tmp_path):
    caplog.set_level(logging.DEBUG)
    _build_all(mesh)
    # A failure path too: messages of a refused identity.
    with pytest.raises(ObjectAccessDeniedError) as refused_read:
        mesh.store().objects.get("finance", f"{mesh.s3.prefix}/private/customers/x")
    texts = [caplog.text, str(refused_read.value), repr(mesh.store())]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            texts.append(path.read_bytes().decode("utf-8", "replace"))
    for key in mesh.objects():
        texts.append(
            mesh.s3.client()
            .get_object(Bucket=mesh.s3.bucket, Key=key)["Body"]
            .read()
            .decode("utf-8", "replace")
        )
    con = mesh.store().connect("finance")
    texts.append(str(con.sql("FROM duckdb_secrets()").fetchall()))
    for secret in mesh.s3.secrets():
        assert not any(secret in text for text in texts), "a secret leaked"


def test_the_profile_settings_of_ports_on_s3(monkeypatch):
    from dagmesh.config import _checked_profile

    good = _checked_profile("p", {"ports": "s3://mesh/a/b", "s3": {"endpoint": "h:1"}})
    assert good.ports == "s3://mesh/a/b"
    settings = config.s3_settings(good)
    assert (settings.bucket, settings.prefix, settings.endpoint) == ("mesh", "a/b", "h:1")
    assert settings.use_ssl is True  # unless the profile or DAGMESH_S3_USE_SSL says otherwise
    bad = [
        ({"ports": "/data/ports"}, "give 's3://bucket/prefix'"),
        ({"ports": "s3://UPPER/x"}, "is not a bucket name"),
        ({"ports": "s3://mesh/../x"}, "the prefix may hold only"),
        ({"ports": "s3://mesh/x y"}, "the prefix may hold only"),
        ({"ports": 5}, "give 's3://bucket/prefix'"),
        ({"ports": "s3://mesh", "s3": {"secret": "x"}}, "only from DAGMESH_S3_<DOMAIN>_KEY_ID"),
        ({"ports": "s3://mesh", "s3": {"key_id": "x"}}, "is not a setting"),
        ({"ports": "s3://mesh", "s3": {"use_ssl": "no"}}, "true or false"),
        ({"ports": "s3://mesh", "s3": {"url_style": "x"}}, "'path' or 'vhost'"),
        ({"ports": "s3://mesh", "s3": []}, "s3 must be a table"),
    ]
    for table, message in bad:
        with pytest.raises(SettingError, match="profiles.p") as raised:
            _checked_profile("p", table)
        assert message in str(raised.value), table
    monkeypatch.delenv("DAGMESH_S3_ENDPOINT", raising=False)
    with pytest.raises(SettingError, match="need an endpoint"):
        config.s3_settings(_checked_profile("p", {"ports": "s3://mesh"}))
    monkeypatch.setenv("DAGMESH_S3_FIN_OPS_KEY_ID", "k")
    monkeypatch.delenv("DAGMESH_S3_FIN_OPS_SECRET", raising=False)
    with pytest.raises(SettingError, match="set DAGMESH_S3_FIN_OPS_SECRET in") as raised:
        config.s3_credentials("fin-ops")
    assert "DAGMESH_S3_FIN_OPS_KEY_ID" not in str(raised.value)  # the one that is set
    assert config.s3_settings(Profile("embedded")) is None  # the local disk by default


def test_extensions_load_from_their_wheel_and_a_missing_one_names_its_package():
    folder = extensions.extension_directory("httpfs")
    assert (folder / f"v{duckdb.__version__}").is_dir()
    con = duckdb.connect()
    extensions.load(con, "httpfs")
    assert con.sql(
        "SELECT loaded FROM duckdb_extensions() WHERE extension_name = 'httpfs'"
    ).fetchall() == [(True,)]
    with pytest.raises(
        extensions.ExtensionMissingError, match="install the package duckdb-ext-nope"
    ):
        extensions.load(con, "nope")


def test_the_local_disk_stays_the_default(tmp_path: Path):
    store = MeshStore(tmp_path)
    assert type(store.port("sales", "orders")).__name__ == "OutputPort"
    assert store.port("sales", "orders").port_file().endswith("current/data.parquet")
    assert dt.timedelta  # keep the import honest


def test_a_dagster_run_on_the_profile_publishes_to_s3(mesh: Mesh, monkeypatch, tmp_path):
    """The Dagster resource picks the profile's object storage up: the same
    product assets, materialized by Dagster, publish pointers on S3."""
    import dagster as dg

    from dagmesh.orchestration.assets import product_asset
    from dagmesh.orchestration.resources import MeshStorage

    project = tmp_path / "project"
    project.mkdir()
    (project / "workspace.yaml").write_text("load_from: []\n")
    (project / "pyproject.toml").write_text(
        f'[tool.dagmesh.profiles.objects]\nports = "{mesh.s3.ports}"\n'
    )
    monkeypatch.setenv("DAGMESH_PROJECT", str(project))
    monkeypatch.setenv("DAGMESH_PROFILE", "objects")
    assets = [
        product_asset(p) for d in (_customers(), _sales(), _finance()) for p in d.products.values()
    ]
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            assets, resources={"mesh": MeshStorage(home=str(mesh.home))}, instance=instance
        )
    assert result.success
    pointer = mesh.port("finance/revenue").pointer_url
    ports = [
        m.metadata["dagmesh/port"].value
        for m in result.get_asset_materialization_events()
        for m in [m.materialization]
    ]
    assert pointer in ports
    version = mesh.port("finance/revenue", reader="finance").require_current()
    assert mesh.parquet(version.data_file.removeprefix(f"s3://{mesh.s3.bucket}/")) == [
        {"orders": 3, "revenue": 35}
    ]
    assert not list(mesh.home.glob("domains/*/ports/*/versions"))


@pytest.mark.parametrize(
    ("pointer", "message"),
    [
        (b'{"version": "20990101T000000000000Z-gone"}', "which has no data.parquet"),
        (b"not json", "is not a dagmesh pointer"),
        (b'{"no": "version"}', "is not a dagmesh pointer"),
        (b'["list"]', "is not a dagmesh pointer"),
        (b'{"version": "../../private/customers/profiles/versions/x"}', "not a dagmesh pointer"),
        (b'{"version": 7}', "is not a dagmesh pointer"),
    ],
)
def test_a_broken_pointer_is_named_and_a_consumer_is_not_built(mesh: Mesh, pointer, message):
    from dagmesh.engine.storage import PortBrokenError

    _build_all(mesh)
    good = mesh.port("finance/revenue").require_current().version
    key = mesh.port("sales/orders").pointer_key
    mesh.s3.client().put_object(Bucket=mesh.s3.bucket, Key=key, Body=pointer)
    with pytest.raises(PortBrokenError, match="sales/orders") as raised:
        mesh.port("sales/orders", reader="finance").require_current()
    assert message in str(raised.value)
    with pytest.raises(PortBrokenError):
        build_product(_finance().products["revenue"], mesh.store(), "after-break")
    assert mesh.port("finance/revenue").require_current().version == good


# -- dbt products on object storage ---------------------------------------------------

CONTACT_EMAIL = "zoe@contacts.example"


def _dbt_finance(root: Path, mesh: Mesh) -> Domain:
    """A finance domain built with dbt: a model reading sales/orders from its
    port on S3 (tested not null), and a seed holding personal data."""
    project = root / "dbt_projects" / "finance"
    (project / "models").mkdir(parents=True)
    (project / "seeds").mkdir()
    (project / "dbt_project.yml").write_text(
        "name: ledger\nversion: '1.0.0'\nconfig-version: 2\nprofile: ledger\n"
        "models:\n  ledger:\n    +materialized: table\n"
    )
    (project / "seeds" / "contacts.csv").write_text(
        f"customer_id,email\n1,{CONTACT_EMAIL}\n2,b@x.org\n"
    )
    (project / "seeds" / "_seeds.yml").write_text(
        "version: 2\nseeds:\n  - name: contacts\n    columns:\n      - name: email\n"
        "        meta:\n          classification: pii\n"
    )
    (project / "models" / "_models.yml").write_text(
        "version: 2\nsources:\n  - name: sales\n    database: ports\n    schema: sales\n"
        "    tables:\n      - name: orders\n"
        "models:\n  - name: revenue_by_customer\n    columns:\n      - name: customer_id\n"
        "        data_tests: [not_null]\n"
    )
    (project / "models" / "revenue_by_customer.sql").write_text(
        "select customer_id, count(*)::bigint as orders, sum(amount)::bigint as revenue\n"
        "from {{ source('sales', 'orders') }} group by customer_id\n"
    )
    (root / "workspace.yaml").write_text("load_from: []\n")
    (root / "pyproject.toml").write_text(
        f'[tool.dagmesh.profiles.objects]\nports = "{mesh.s3.ports}"\n'
    )
    return Domain("finance", owner="fin", description="Money, with dbt.", dbt_project=str(project))


def _materialize_dbt(domain: Domain, mesh: Mesh, instance) -> tuple[bool, str, float]:
    """A real Dagster run of ``domain``'s dbt assets: (success, failure message, seconds)."""
    import time

    from dagmesh.orchestration.dbt.assets import dbt_domain_assets
    from dagmesh.orchestration.resources import MeshStorage

    started = time.perf_counter()
    result = dg.materialize(
        [dbt_domain_assets(domain, {})],
        resources={"mesh": MeshStorage(home=str(mesh.home))},
        instance=instance,
        raise_on_error=False,
    )
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failures[0].step_failure_data.error.message if failures else ""
    return result.success, message, time.perf_counter() - started


def _read_current(mesh: Mesh, reader: str, ref: str) -> tuple[str, list[tuple]]:
    """What a plain DuckDB (no dagmesh port code) with ``reader``'s identity
    reads: the pointer ``current.json``, then that version's data.parquet."""
    con = duckdb.connect()
    mesh.store().objects.attach(con, reader)
    root = f"s3://{mesh.s3.bucket}/{mesh.s3.prefix}/published/{ref}"
    [(version,)] = con.sql(f"SELECT version FROM read_json('{root}/current.json')").fetchall()
    rows = con.sql(f"FROM '{root}/versions/{version}/data.parquet' ORDER BY ALL").fetchall()
    return version, rows


def test_a_dbt_domain_reads_s3_ports_and_publishes_its_models_to_s3(
    mesh: Mesh, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """dbt pins its input through the pointer with its own identity, builds,
    and publishes each model through the shared path to S3; a failing dbt
    test keeps the last good version current; another domain's identity is
    refused the dbt domain's private objects."""
    root = tmp_path / "project"
    finance = _dbt_finance(root, mesh)
    monkeypatch.setenv("DAGMESH_PROJECT", str(root))
    monkeypatch.setenv("DAGMESH_PROFILE", "objects")
    for product in _sales().products.values():
        assert build_product(product, mesh.store(), "sales-1").published
    orders = mesh.port("sales/orders").require_current().version

    with dg.instance_for_test() as instance:
        ok, message, seconds = _materialize_dbt(finance, mesh, instance)
        assert ok, message
        print(f"\ndbt run on S3 ports (pin, build, publish 2 products): {seconds:.1f}s")
        revenue = mesh.port("finance/revenue_by_customer", reader="sales").require_current()
        assert revenue.info()["inputs"] == {"sales/orders": orders}
        # A consumer's plain DuckDB reads it through the pointer with its own identity.
        version, rows = _read_current(mesh, "sales", "finance/revenue_by_customer")
        assert version == revenue.version
        assert rows == [("1", 2, 15), ("2", 1, 20)]
        # The read of sales/orders was pinned through S3 and recorded.
        reads = audit_log.query(mesh.home, event="read")
        assert ("finance/revenue_by_customer", "sales/orders", orders) in {
            (r["consumer"], r["product"], r["version"]) for r in reads
        }
        # No port of the dbt domain on local disk: versions and pointers are objects.
        assert not list(mesh.home.glob("domains/*/ports/*/versions"))
        assert not list(mesh.home.glob("domains/*/ports/*/current"))
        # The catalog lists the port on S3: its version, rows, state.
        spec = domain_specs(finance)["revenue_by_customer"]
        entry = catalog_entry(spec, None, instance, mesh.home)
        assert entry.port == "ok" and entry.healthy
        assert [(v["version"], v["rows"]) for v in entry.versions] == [(version, 2)]
        assert {c["name"]: c["type"] for c in entry.columns}["revenue"] == "BIGINT"

        # The seed's personal data: masked for others, raw only under private/finance.
        contacts = mesh.port("finance/contacts").require_current()
        raw = f"{mesh.s3.prefix}/private/finance/contacts/versions/{contacts.version}/raw.parquet"
        assert CONTACT_EMAIL in str(mesh.parquet(raw))
        _, published = _read_current(mesh, "sales", "finance/contacts")
        assert CONTACT_EMAIL not in str(published) and len(published) == 2
        plain = mesh.s3.client("sales")
        with pytest.raises(plain.exceptions.ClientError, match="AccessDenied"):
            plain.get_object(Bucket=mesh.s3.bucket, Key=raw)
        with pytest.raises(ObjectAccessDeniedError, match="S3 AccessDenied: domain sales"):
            list(mesh.store().objects.keys("sales", f"{mesh.s3.prefix}/private/finance/"))
        con = duckdb.connect()
        mesh.store().objects.attach(con, "sales")
        with pytest.raises(duckdb.Error, match="403"):
            con.sql(f"FROM 's3://{mesh.s3.bucket}/{raw}'").fetchall()

        # sales publishes an order without a customer: finance's not_null test
        # fails, revenue_by_customer keeps its last good version on S3.
        (mesh.home / "landing/shop/orders/o2.csv").write_text("order_id,customer_id,amount\nD,,7\n")
        assert build_product(_sales().products["orders"], mesh.store(), "sales-2").published
        ok, message, _ = _materialize_dbt(finance, mesh, instance)
        assert not ok
        assert "finance/revenue_by_customer: dbt test not_null_revenue_by_customer_customer_id" in (
            message
        )
        assert _read_current(mesh, "sales", "finance/revenue_by_customer") == (version, rows)
        assert [v.version for v in mesh.port("finance/revenue_by_customer").versions()] == [version]
        entry = catalog_entry(spec, None, instance, mesh.home)
        assert [(v["version"], v["rows"]) for v in entry.versions] == [(version, 2)]


# -- model products on object storage -------------------------------------------------


def test_a_model_published_to_s3_scores_in_another_domain_with_its_identity(mesh: Mesh):
    """A model product's model and training profile are published on S3 with
    its version; a scoring product of another domain pins that version through
    the pointer and reads the model with its own identity."""
    from tests.test_model_product import declare_late_model

    sales = Domain("sales", owner="shop", description="Orders.")
    declare_late_model(sales)
    finance = Domain("finance", owner="fin", description="Money.")
    finance.scoring_product(
        "late_scores",
        description="Every order scored.",
        model="sales/late_model",
        consumes={"history": "sales/history"},
        columns=[Column("id", "BIGINT", "Row.", nullable=False)],
        primary_key="id",
        sql="SELECT id, lane, size FROM history",
    )
    for product in [*sales.products.values(), *finance.products.values()]:
        assert build_product(product, mesh.store(), "m1").published, product.ref

    model = mesh.port("sales/late_model", reader="finance").require_current()
    assert model.has("model.skops") and model.file("model.skops").startswith("s3://")
    published = mesh.objects(f"published/sales/late_model/versions/{model.version}/")
    assert {k.rsplit("/", 1)[-1] for k in published} >= {
        "model.skops",
        "profile.parquet",
        "data.parquet",
        "version.json",
    }
    assert not mesh.objects("private/sales/late_model/")
    scores = mesh.port("finance/late_scores", reader="sales").require_current()
    assert scores.info()["model_version"] == model.version
    assert scores.info()["inputs"]["sales/late_model"] == model.version
    rows = mesh.parquet(scores.data_file.removeprefix(f"s3://{mesh.s3.bucket}/"))
    assert len(rows) == 2000 and {r["model_version"] for r in rows} == {model.version}
    assert not list(mesh.home.glob("domains/*/ports/*/versions"))

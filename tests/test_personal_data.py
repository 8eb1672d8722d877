"""Personal data never reaches a message, a log, an event, an alert or a file
other domains can read; what the platform creates is owner-only on disk.

A corpus of hostile landing files, each planting a personal value (an e-mail
and a name), runs through a real Dagster instance; the run-failure sensor
posts to a real local webhook; then the event log, the instance's files
(SQLite, compute logs), the captured output and the webhook body are
searched for the planted values. Each case also asserts that the error names
the file, the line where known and the rule, and that the last good version
stays readable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from dagmesh import Column, Domain, Landing, ProductContext, pii
from dagmesh.config import SettingError, alert_webhook_url
from dagmesh.declarations.product import Product
from dagmesh.engine.privacy import redact
from dagmesh.engine.timestamps import define_timestamp_macros
from dagmesh.orchestration.alerts import run_failure_alert_sensor, send_alert
from dagmesh.orchestration.assets import product_asset
from dagmesh.orchestration.resources import MeshStorage
from domains.customers.products import customers
from domains.marketing.products import marketing
from domains.sales.products import sales
from tests.conftest import REPO
from tests.test_alerts import Webhook, webhook  # noqa: F401  (a fixture)

EMAIL = "jane.planted@leak.example"
NAME = "Janet Plantedname"
PLANTED = (EMAIL, NAME, EMAIL.split("@")[0])
DAGMESH = str(Path(sys.executable).parent / "dagmesh")

CUSTOMER_ROW = f"C99999999,{NAME},{EMAIL},+33 1 23,rue Planted 1,Paris,fr,2026-01-01T00:00:00+00:00"
LEAD = json.dumps(
    {
        "lead_id": "L99999999",
        "email": EMAIL,
        "channel": "organic",
        "ad_platform": None,
        "created_at": "2026-01-01T00:00:00+00:00",
        "customer_id": None,
    },
    separators=(",", ":"),
)
ORDER_EVENT = (
    "E9999999999,O999999999,{customer},placed,2026-01-01T00:00:00+01:00,{updated},EUR,{promised}"
)

# A test domain whose steps fail on personal values in DuckDB and in Python.
people = Domain("people", owner="test", description="Hostile personal data.")
PEOPLE_SOURCE = Landing("test/people", "csv", columns=["person_id", "full_name", "email"])
people.sql_product(
    "as_numbers",
    description="Casts a personal column: DuckDB's error quotes the value.",
    sources={"people": PEOPLE_SOURCE},
    columns=[Column("person_id", "VARCHAR", "Id."), Column("n", "INTEGER", "A number.")],
    sql="select person_id, email::integer as n from people",
)


@people.python_product(
    description="Python code failing on a personal value.",
    sources={"people": PEOPLE_SOURCE},
    columns=[Column("person_id", "VARCHAR", "Id."), pii("n", "INTEGER", "A number.")],
)
def python_numbers(ctx: ProductContext) -> pd.DataFrame:
    """Parse every e-mail as a number: int() quotes the value it chokes on."""
    rows = ctx.sql("select person_id, email from people").fetchall()
    return pd.DataFrame([(pid, int(email)) for pid, email in rows], columns=["person_id", "n"])


def _last(folder: Path, pattern: str) -> Path:
    return sorted(folder.glob(pattern))[-1]


def _append(pattern: str, data: bytes) -> Callable[[Path], Path]:
    def mutate(folder: Path) -> Path:
        file = _last(folder, pattern)
        with open(file, "ab") as handle:
            handle.write(data)
        return file

    return mutate


def _replace_header(header: str) -> Callable[[Path], Path]:
    def mutate(folder: Path) -> Path:
        file = _last(folder, "*.csv")
        body = file.read_bytes().split(b"\n", 1)[1]
        file.write_bytes(header.encode() + b"\n" + body)
        return file

    return mutate


def _whole_file(data: bytes) -> Callable[[Path], Path]:
    def mutate(folder: Path) -> Path:
        file = _last(folder, "*.csv")
        file.write_bytes(data)
        return file

    return mutate


def _people_file(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / "people-0001.csv"
    file.write_text("person_id,full_name,email\nP1,Ann Other,1\n")
    return file


@dataclass
class Case:
    """One hostile input: the product it breaks, how, and what the error must say."""

    id: str
    product: Product
    folder: str  # under landing/
    mutate: Callable[[Path], Path]  # returns the file it changed
    says: tuple[str, ...]  # the rule, in the error
    line: bool = True  # the error names a line


CASES = [
    Case(
        "csv_one_value_too_many",
        customers.products["customer_profiles"],
        "crm/customers",
        _append("*.csv", f"{CUSTOMER_ROW},extra\n".encode()),
        ("expected 8 values, found 9",),
    ),
    Case(
        "csv_one_value_missing",
        customers.products["customer_profiles"],
        "crm/customers",
        _append("*.csv", f"{CUSTOMER_ROW.rsplit(',', 1)[0]}\n".encode()),
        ("expected 8 values, found 7",),
    ),
    Case(
        "csv_unclosed_quote_in_a_row",
        customers.products["customer_profiles"],
        "crm/customers",
        _append(
            "*.csv", f'C99999998,"{NAME},{EMAIL},x,y,z,fr,2026-01-01\nC1,a,b,c,d,e,fr,x\n'.encode()
        ),
        ("unterminated quote",),
    ),
    Case(
        "csv_header_with_unclosed_quote",
        customers.products["customer_profiles"],
        "crm/customers",
        _replace_header(
            'customer_id,"full_name,email,phone,street_address,city,country,signup_ts\n'
            + CUSTOMER_ROW
        ),
        ("line 1 (the header) has an unterminated quote",),
        line=False,
    ),
    Case(
        "csv_without_header",
        customers.products["customer_profiles"],
        "crm/customers",
        _replace_header(CUSTOMER_ROW),
        ("none of the expected columns", "header is missing"),
        line=False,
    ),
    Case(
        "csv_header_holding_an_email",
        customers.products["customer_profiles"],
        "crm/customers",
        _replace_header(
            f"customer_id,full_name,{EMAIL},phone,street_address,city,country,signup_ts"
        ),
        ("wrong columns", "missing ['email']", "column 3 (name not shown)"),
        line=False,
    ),
    Case(
        "csv_10mb_line_without_terminator",
        customers.products["customer_profiles"],
        "crm/customers",
        _append("*.csv", (CUSTOMER_ROW + "x" * (10 * 2**20)).encode()),
        ("a line longer than",),
    ),
    Case(
        "csv_whole_file_one_10mb_line",
        customers.products["customer_profiles"],
        "crm/customers",
        _whole_file((CUSTOMER_ROW + "," + NAME * (10 * 2**20 // len(NAME))).encode()),
        ("line 1 (the header) is longer than",),
        line=False,
    ),
    Case(
        "csv_not_utf8",
        customers.products["customer_profiles"],
        "crm/customers",
        _append("*.csv", (CUSTOMER_ROW.replace("Janet", "J\xe4net") + "\n").encode("latin-1")),
        ("not valid UTF-8",),
    ),
    Case(
        "jsonl_truncated_object",
        marketing.products["crm_leads"],
        "crm/leads",
        _append("*.jsonl", LEAD[:-1].encode() + b"\n"),
        ("malformed JSON",),
    ),
    Case(
        "jsonl_20mb_line_without_terminator",
        marketing.products["crm_leads"],
        "crm/leads",
        _append("*.jsonl", LEAD[:-2].encode() + b"x" * (20 * 2**20)),
        ("JSON line longer than",),
        line=False,
    ),
    Case(
        "jsonl_value_of_the_wrong_type",
        sales.products["order_items"],
        "shop/order_items",
        _append(
            "*.jsonl",
            b'{"order_id":"O1","line_no":"%s","sku":"x","quantity":1,"unit_price":1.0}\n'
            % EMAIL.encode(),
        ),
        ("does not have its declared type",),
    ),
    Case(
        "date_0000_00_00",
        sales.products["orders"],
        "shop/orders",
        _append(
            "*.csv",
            ORDER_EVENT.format(
                customer=EMAIL, updated="2026-01-01T00:00:00Z", promised="0000-00-00"
            ).encode()
            + b"\n",
        ),
        ("column promised_delivery_date", "date field value out of range"),
    ),
    Case(
        "utc_offset_plus_99_99",
        sales.products["orders"],
        "shop/orders",
        _append(
            "*.csv",
            ORDER_EVENT.format(
                customer=EMAIL, updated="2026-01-01T00:00:00+99:99", promised="2026-01-06"
            ).encode()
            + b"\n",
        ),
        ("column updated_at", "UTC offset out of range"),
    ),
    Case(
        "duckdb_conversion_of_a_personal_value",
        people.products["as_numbers"],
        "test/people",
        lambda folder: _append("*.csv", f"P9,{NAME},{EMAIL}\n".encode())(folder),
        ("column email", "Could not convert string <value withheld>"),
    ),
    Case(
        "python_code_failing_on_a_personal_value",
        people.products["python_numbers"],
        "test/people",
        lambda folder: _append("*.csv", f"P9,{NAME},{EMAIL}\n".encode())(folder),
        ("people/python_numbers failed", "ValueError", "values in the error are withheld"),
        line=False,
    ),
]


def _run(product: Product, home: Path, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [product_asset(product)],
        resources={"mesh": MeshStorage(home=str(home))},
        instance=instance,
        raise_on_error=False,
    )


def _everything_written(folder: Path) -> bytes:
    """Every byte of every file under ``folder`` (SQLite files, compute logs...)."""
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def _assert_no_personal_data(where: str, data: str | bytes) -> None:
    for value in PLANTED:
        needle = value.encode() if isinstance(data, bytes) else value
        assert needle not in data, f"{value!r} found in {where}"


def _readable_by_other_domains(home: Path) -> bytes:
    """The published data files (what other domains may open) and the logs."""
    files = list((home / "domains").glob("*/ports/*/versions/*/data.parquet"))
    files += list((home / "logs").glob("*")) if (home / "logs").is_dir() else []
    return b"".join(f.read_bytes() for f in files)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_hostile_file_fails_clearly_and_leaks_nothing(
    case: Case,
    mesh_home: Path,
    tmp_path: Path,
    webhook: Webhook,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
):
    caplog.set_level(logging.DEBUG)
    home = tmp_path / "home"
    shutil.copytree(mesh_home / "landing", home / "landing")
    _people_file(home / "landing" / "test" / "people")
    dagster_dir = tmp_path / "dagster"
    dagster_dir.mkdir()
    port = home / "domains" / case.product.domain / "ports" / case.product.name
    with dg.instance_for_test(temp_dir=str(dagster_dir)) as instance:
        if case.product.domain != "people":  # people's products never succeed
            assert _run(case.product, home, instance).success
            good = os.readlink(port / "current")
        file = case.mutate(home / "landing" / case.folder)
        result = _run(case.product, home, instance)
        assert not result.success
        [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        message = failure.step_failure_data.error.message
        run_failure = next(
            r.dagster_event
            for r in instance.all_logs(result.run_id)
            if r.dagster_event and r.dagster_event.event_type == dg.DagsterEventType.RUN_FAILURE
        )
        sensor = run_failure_alert_sensor(case.product.domain)
        sensor(
            dg.build_run_status_sensor_context(
                sensor_name=sensor.name,
                dagster_instance=instance,
                dagster_run=result.dagster_run,
                dagster_event=run_failure,
            ).for_run_failure()
        )
        events = "\n".join(
            json.dumps(dg.serialize_value(r)) for r in instance.all_logs(result.run_id)
        )

    # The error is clear: product, file, line and rule.
    assert case.product.ref in message
    if case.product.kind == "sql":
        assert file.name in message, message
    if case.line:
        assert "line " in message, message
    for words in case.says:
        assert words in message, message
    # ... and the run-failure alert carries it, values withheld.
    [alert] = [p["json"] for p in webhook.posts if p["json"]["kind"] == "run_failure"]
    assert case.product.ref in alert["message"]
    _assert_no_personal_data("the step failure", message)
    _assert_no_personal_data("the Dagster event log", events)
    _assert_no_personal_data("the webhook body", json.dumps(webhook.posts))
    _assert_no_personal_data("the Dagster instance's files", _everything_written(dagster_dir))
    _assert_no_personal_data("the log records", "\n".join(r.getMessage() for r in caplog.records))
    out, err = capfd.readouterr()
    _assert_no_personal_data("stdout and stderr", out + err)
    _assert_no_personal_data("files other domains can open", _readable_by_other_domains(home))
    # The last good version is still the one consumers read.
    if case.product.domain != "people":
        assert os.readlink(port / "current") == good
        rows = duckdb.sql(f"SELECT count(*) FROM '{port / 'current' / 'data.parquet'}'")
        assert rows.fetchall()[0][0] > 0


def test_the_cli_materialization_log_and_run_logs_hold_no_personal_data(
    mesh_home: Path, tmp_path: Path
):
    """`dagmesh materialize` through code servers and a run worker: its log
    file, the run's compute logs and event log name the file, not the row."""
    home = tmp_path / "home"
    shutil.copytree(mesh_home / "landing", home / "landing")
    file = _append("*.csv", f"{CUSTOMER_ROW},extra\n".encode())(home / "landing/crm/customers")
    env = {
        **os.environ,
        "DAGMESH_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "DAGMESH_REGISTRY": str(mesh_home / "registry"),
        "DAGMESH_PROJECT": str(REPO),
    }
    env.pop("DAGMESH_ALERT_WEBHOOK_URL", None)
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagmesh"),
            "materialize",
            "customers/customer_profiles",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    assert file.name in done.stderr and "expected 8 values, found 9" in done.stderr
    [log] = (home / "logs").glob("materialize-*.log")
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "logs").stat().st_mode) == 0o700
    _assert_no_personal_data("the CLI's output", done.stdout + done.stderr)
    _assert_no_personal_data("the materialize log", log.read_bytes())
    _assert_no_personal_data(
        "the Dagster home (events, compute logs)", _everything_written(home / "dagster")
    )
    # What the run worker created is owner-only too.
    created = [p for p in (home / "dagster").rglob("*")] + [
        p for p in (home / "domains").rglob("*")
    ]
    assert created
    loose = [p for p in created if stat.S_IMODE(p.lstat().st_mode) & 0o077 and not p.is_symlink()]
    assert not loose, loose[:5]


def _modes(paths: list[Path]) -> dict[str, int]:
    return {str(p): stat.S_IMODE(p.stat().st_mode) for p in paths}


def test_what_the_platform_creates_is_owner_only(materialized, mesh_home: Path):
    version = (mesh_home / "domains/customers/ports/customer_profiles/current").resolve()
    quarantine = version / "quarantine"
    files = [version / "raw.parquet", version / "data.parquet", *quarantine.glob("*.parquet")]
    files += list((mesh_home / "domains").glob("*/audit/*")) + list(
        (mesh_home / "domains").glob("*/ports/*/versions/*/*.parquet")
    )
    folders = [quarantine, version, *(mesh_home / "domains").glob("*/ports/*/versions/*")]
    assert len(files) > 10 and all(f.is_file() for f in files)
    assert {p: m for p, m in _modes(files).items() if m != 0o600} == {}
    assert {p: m for p, m in _modes(folders).items() if m != 0o700} == {}
    # The owner's own tools still read a public product's published data.
    orders = mesh_home / "domains/sales/ports/orders/current/data.parquet"
    assert duckdb.sql(f"SELECT count(*) FROM '{orders}'").fetchall()[0][0] > 0


def test_hashed_emails_for_ad_platforms_are_private_and_nowhere_public(
    materialized, mesh_home: Path
):
    from dagmesh.engine.access import AccessDeniedError, read_port

    info = json.loads(
        (mesh_home / "domains/marketing/ports/ad_audiences/current/version.json").read_text()
    )
    assert info["access"] == "private"
    with pytest.raises(AccessDeniedError, match="private to marketing"):
        read_port(mesh_home, "sales/x", "marketing/ad_audiences", "test-run")
    # Marketing's own exports still get the plain hashes the platforms need.
    exports = duckdb.sql(
        f"SELECT count(*) FROM "
        f"'{mesh_home / 'domains/marketing/ports/audience_exports/current/data.parquet'}'"
    ).fetchall()[0][0]
    assert exports > 0
    # No product other domains may read holds an unsalted hash of a known e-mail.
    raw = mesh_home / "domains/customers/ports/customer_profiles/current/raw.parquet"
    emails = [
        e for (e,) in duckdb.sql(f"SELECT email FROM '{raw}' WHERE email IS NOT NULL").fetchall()
    ]
    known = {hashlib.sha256(e.encode()).hexdigest() for e in emails}
    assert len(known) > 100
    for current in (mesh_home / "domains").glob("*/ports/*/current"):
        record = json.loads((current / "version.json").read_text())
        if record.get("access") == "private":
            continue
        rel = duckdb.sql(f"SELECT * FROM '{current / 'data.parquet'}'")
        for column, kind in zip(rel.columns, rel.types, strict=True):
            if str(kind) != "VARCHAR":
                continue
            values = {v for (v,) in rel.select(f'"{column}"').fetchall()}
            assert not values & known, (
                f"{current.parent.name}.{column} holds unsalted e-mail hashes"
            )


TOKEN = "s3cr3t-t0ken"


@pytest.mark.parametrize("bad", ["\t", "\n", " ", "\x01", "\x7f", "\r"])
def test_a_webhook_url_with_a_control_character_is_refused_without_showing_it(
    bad: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    url = f"http://127.0.0.1:9/hook{bad}?token={TOKEN}"
    monkeypatch.setenv("DAGMESH_ALERT_WEBHOOK_URL", url)
    with pytest.raises(SettingError) as error:
        alert_webhook_url()
    assert "DAGMESH_ALERT_WEBHOOK_URL" in str(error.value)
    assert TOKEN not in str(error.value) and "127.0.0.1" not in str(error.value)
    caplog.set_level(logging.DEBUG)
    from dagmesh.orchestration.alerts import Alert

    send_alert(Alert("run_failure", "sales/orders", "it failed"))
    assert "not sent" in caplog.text and TOKEN not in caplog.text


def test_a_malformed_webhook_url_stops_the_cli_and_the_code_location(
    monkeypatch: pytest.MonkeyPatch,
):
    url = f"https://hooks.example/x\t?token={TOKEN}"
    env = {**os.environ, "DAGMESH_ALERT_WEBHOOK_URL": url, "DAGMESH_PROJECT": str(REPO)}
    done = subprocess.run(
        [DAGMESH, "lint"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "DAGMESH_ALERT_WEBHOOK_URL" in done.stderr and TOKEN not in done.stderr + done.stdout
    monkeypatch.setenv("DAGMESH_ALERT_WEBHOOK_URL", url)
    from dagmesh.orchestration.definitions import domain_definitions

    with pytest.raises(SettingError) as error:
        domain_definitions(people)
    assert TOKEN not in str(error.value)


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2026-01-01T00:00:00+99:99", None),
        ("2026-01-01T00:00:00+14:01", None),
        ("2026-01-01T00:00:00-12:30", None),
        ("2026-01-01T00:00:00+01:60", None),
        ("2026-01-01T00:00:00+14:00", "2025-12-31 10:00:00"),
        ("2026-01-01T00:00:00-12:00", "2026-01-01 12:00:00"),
        ("2026-01-01T00:00:00+0530", "2025-12-31 18:30:00"),
        ("2026-01-01 00:13:11Z", "2026-01-01 00:13:11"),
        ("not a time", None),
    ],
)
def test_impossible_utc_offsets_are_refused(text: str, utc: str | None):
    con = duckdb.connect()
    define_timestamp_macros(con)
    [(lenient,)] = con.execute("SELECT try_utc_timestamp(?)::VARCHAR", [text]).fetchall()
    assert lenient == utc
    if utc is None:
        with pytest.raises(duckdb.Error):
            con.execute("SELECT utc_timestamp(?)", [text]).fetchall()
    else:
        assert con.execute("SELECT utc_timestamp(?)::VARCHAR", [text]).fetchall() == [(utc,)]


@pytest.mark.parametrize(
    "text",
    [
        "Conversion Error: Could not convert string 'O'Brien@x.example' to INT32",
        f"Invalid Input Error: CSV Error on Line: 3\nOriginal Line: {CUSTOMER_ROW}",
        f"ValueError: bad e-mail {EMAIL} in row 3",
        f'date field value out of range: "{NAME}"',
        f"unterminated 'value {NAME}",
    ],
)
def test_redact_withholds_values(text: str):
    shown = redact(text, lines=3)
    assert "O'Brien" not in shown and "Brien@" not in shown
    _assert_no_personal_data("the redacted text", shown)


def test_dbt_output_in_the_compute_log_withholds_the_values_a_model_failed_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
):
    """dagster-dbt re-prints dbt's log lines into the step's compute log (its
    stdout); dbt quotes the value a model failed on. The platform redacts
    those lines: the failing model is still named, the value is not."""
    from dagmesh.orchestration.dbt.assets import dbt_domain_assets

    root = tmp_path / "project"
    project = root / "dbt_projects" / "leaky"
    (project / "models").mkdir(parents=True)
    monkeypatch.setenv("DAGMESH_PROJECT", str(root))
    (root / "workspace.yaml").write_text("load_from: []\n")
    (project / "dbt_project.yml").write_text(
        "name: leaky\nversion: '1.0.0'\nconfig-version: 2\nprofile: leaky\n"
        "models:\n  leaky:\n    +materialized: table\n"
    )
    (project / "models" / "as_number.sql").write_text(
        f"select cast(email as integer) as n from (select '{EMAIL}' as email)\n"
    )
    (project / "models" / "fine.sql").write_text("select 1 as one\n")
    leaky = Domain("leaky", owner="o", description="d", dbt_project=str(project))
    home = tmp_path / "home"
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [dbt_domain_assets(leaky, {})],
            resources={"mesh": MeshStorage(home=str(home))},
            instance=instance,
            raise_on_error=False,
        )
        events = [str(e) for e in instance.all_logs(result.run_id)]
    printed = capfd.readouterr()
    assert not result.success
    assert "as_number" in printed.out  # dbt's lines about the model are still there
    for text in (printed.out, printed.err, *events):
        assert EMAIL not in text and EMAIL.split("@")[0] not in text
    assert (home / "domains/leaky/ports/fine/current/data.parquet").is_file()

"""Model products: the shipping-delay risk model trained, evaluated by time,
audited by its contract's metric rules, published as skops, scored across
domains, with a drift check; and a small lab domain for what must fail."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from dagmesh import Column, Domain
from dagmesh.config import MESH_JOB
from dagmesh.declarations.contract import Contract, QualityRule, SchemaObject
from dagmesh.declarations.spec import python_spec
from dagmesh.engine.checks import AuditOutcome
from dagmesh.engine.contracts.generate import effective_contract
from dagmesh.engine.contracts.rules import rule_problems, run_quality_rules
from dagmesh.engine.learning import (
    DRIFT_CHECK,
    MODEL_FILE,
    ModelLoadError,
    load_model,
    population_stability,
    training_profile,
)
from dagmesh.engine.storage import OutputPort
from dagmesh.orchestration.assets import product_asset, runs_going
from dagmesh.orchestration.resources import MeshStorage
from domains.shipping.products import shipping
from tests.conftest import REPO, port_file, query

MODEL = "shipping/delay_risk_model"
SCORES = "shipping/open_order_delay_risk"


def _version(home: Path, ref: str):
    return OutputPort(home, *ref.split("/")).require_current()


def _materialize(products, home: Path, instance, contracts=None) -> dg.ExecuteInProcessResult:
    contracts = contracts or {}
    return dg.materialize(
        [product_asset(p, contracts.get(p.name)) for p in products],
        resources={"mesh": MeshStorage(home=str(home))},
        instance=instance,
        raise_on_error=False,
    )


def _failure(result: dg.ExecuteInProcessResult) -> str:
    event = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    return event.step_failure_data.error.message


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


# ------------------------------------------------------------------ the sample model


def test_the_model_trains_passes_its_thresholds_and_publishes(materialized, mesh_home, truth):
    version = _version(mesh_home, MODEL)
    info = version.info()
    metrics = info["metrics"]
    contract = version.contract()
    bounds = {
        r["metric"]: r["mustBeGreaterThan"]
        for r in contract["schema"][0]["quality"]
        if r.get("rule") == "metric" and "mustBeGreaterThan" in r
    }
    assert metrics["roc_auc"] > bounds["roc_auc"] >= 0.65
    # Beats the no-skill baseline (always the training base rate).
    assert metrics["brier_score"] < metrics["baseline_brier_score"]
    assert metrics["brier_skill"] > 0.05
    # The published version holds the model, the feature list with types, the
    # exact inputs it was trained on and its contract.
    assert (version.path / MODEL_FILE).is_file()
    assert info["features"]["carrier"] == "VARCHAR"
    assert info["features"]["customer_prior_delays"] == "INTEGER"
    for ref, pinned in info["inputs"].items():
        assert pinned in {v.version for v in OutputPort(mesh_home, *ref.split("/")).versions()}
    assert set(info["inputs"]) == {"sales/orders", "sales/order_items", "shipping/shipping_delays"}
    assert contract["id"] == "shipping.delay_risk_model"
    card = pd.read_parquet(version.data_file)
    assert list(card["feature"]) == list(info["features"])
    # The importance points at the planted causes, and nothing else comes close.
    ranked = card.sort_values("importance", ascending=False)["feature"].tolist()
    assert set(ranked[:2]) == {"carrier", "destination_country"}
    top = card.set_index("feature")["importance"]
    assert min(top["carrier"], top["destination_country"]) > 3 * max(top.drop(ranked[:2]).max(), 0)
    assert truth["planted_delay_signal"]["slow_carrier"] == "hermes"


def test_the_holdout_is_the_latest_orders_by_time_and_beats_a_one_cause_rule(
    materialized, mesh_home
):
    info = _version(mesh_home, MODEL).info()
    start = pd.Timestamp(info["holdout"]["from"]).date()
    delays = pd.read_parquet(port_file(mesh_home, "shipping/shipping_delays"))
    delivered = delays[delays["cause"] != "in_transit"]
    holdout = delivered[pd.to_datetime(delivered["order_date"]).dt.date >= start]
    assert len(holdout) == info["metrics"]["holdout_rows"]
    assert len(delivered) - len(holdout) == info["metrics"]["training_rows"]
    assert 0.15 < len(holdout) / len(delivered) < 0.3
    # A rule that knows one planted cause (the slow carrier) ranks worse than the model.
    rule = roc_auc_score(holdout["is_delayed"], holdout["carrier"] == "hermes")
    assert info["metrics"]["roc_auc"] > rule + 0.05


def test_the_ui_and_the_catalog_show_the_model(materialized, mesh_home):
    instance = dg.DagsterInstance.get()
    event = instance.get_latest_materialization_event(dg.AssetKey(["shipping", "delay_risk_model"]))
    metadata = event.asset_materialization.metadata
    assert metadata["dagmesh/metric/roc_auc"].value > 0.65
    assert metadata["dagmesh/training_rows"].value > 1000
    assert set(metadata["dagmesh/inputs"].value) >= {"sales/orders", "shipping/shipping_delays"}
    scored = instance.get_latest_materialization_event(
        dg.AssetKey(["shipping", "open_order_delay_risk"])
    ).asset_materialization.metadata
    assert scored["dagmesh/model_version"].value == _version(mesh_home, MODEL).version
    env = {**os.environ, "DAGMESH_HOME": str(mesh_home), "DAGMESH_PROJECT": str(REPO)}
    dagmesh = str(Path(sys.executable).with_name("dagmesh"))
    listed = subprocess.run(
        [dagmesh, "catalog", "--json"], env=env, capture_output=True, text=True, timeout=300
    )
    assert listed.returncode == 0, listed.stderr
    entries = {e["ref"]: e for e in json.loads(listed.stdout)["products"]}
    model = entries[MODEL]
    assert model["kind"] == "model" and model["checks"]["metric_roc_auc"] == "passed"
    assert model["versions"][0]["metrics"]["roc_auc"] > 0.65
    assert model["versions"][0]["inputs"]["sales/orders"]
    assert entries[SCORES]["checks"][DRIFT_CHECK] == "passed"
    assert entries[SCORES]["versions"][0]["model_version"] == _version(mesh_home, MODEL).version


def test_the_scores_reconcile_with_the_open_orders(materialized, mesh_home):
    orders = port_file(mesh_home, "sales/orders")
    scores = port_file(mesh_home, SCORES)
    (open_orders,) = query(
        f"SELECT count(*) FROM '{orders}' WHERE status IN ('placed', 'paid', 'shipped')"
    )[0]
    rows, distinct, low, high, versions = query(
        f"SELECT count(*), count(DISTINCT order_id), min(delay_risk), max(delay_risk), "
        f"list(DISTINCT model_version) FROM '{scores}'"
    )[0]
    assert rows == distinct == open_orders > 0
    assert 0 <= low <= high <= 1
    model_version = _version(mesh_home, MODEL).version
    assert versions == [model_version]
    assert _version(mesh_home, SCORES).info()["model_version"] == model_version
    (missing,) = query(
        f"SELECT count(*) FROM '{orders}' o ANTI JOIN '{scores}' s USING (order_id) "
        "WHERE o.status IN ('placed', 'paid', 'shipped')"
    )[0]
    assert missing == 0
    # The planted causes come out in the scores too.
    slow, other = query(
        f"SELECT avg(delay_risk) FILTER (WHERE carrier = 'hermes' OR destination_country = 'IT'),"
        f" avg(delay_risk) FILTER (WHERE carrier <> 'hermes' AND destination_country <> 'IT')"
        f" FROM '{scores}'"
    )[0]
    assert slow > other + 0.1


def test_customers_read_the_scores_by_name(materialized, mesh_home):
    """customer_360 holds the risk of the scores version it recorded (other
    tests of the session may publish newer scores since)."""
    c360 = port_file(mesh_home, "customers/customer_360")
    pinned = _version(mesh_home, "customers/customer_360").info()["inputs"][SCORES]
    by_version = {v.version: v for v in OutputPort(mesh_home, *SCORES.split("/")).versions()}
    assert pinned in by_version, (pinned, sorted(by_version))
    scores = by_version[pinned].data_file
    mismatched, with_risk = query(
        f"""
        WITH risk AS (SELECT customer_id, max(delay_risk) AS r FROM '{scores}' GROUP BY ALL)
        SELECT count(*) FILTER (WHERE c.open_order_delay_risk IS DISTINCT FROM risk.r),
               count(*) FILTER (WHERE c.open_order_delay_risk IS NOT NULL)
        FROM '{c360}' c LEFT JOIN risk USING (customer_id)
        """
    )[0]
    assert mismatched == 0 and with_risk > 0


def test_the_model_file_loads_in_a_fresh_process_without_dagmesh(materialized, mesh_home, tmp_path):
    version = _version(mesh_home, MODEL)
    script = """
import json, sys
import pandas as pd
import skops.io as sio

model_file, card_file = sys.argv[1:]
untrusted = sio.get_untrusted_types(file=model_file)
assert all(t.startswith(("sklearn.", "numpy.")) for t in untrusted), untrusted
model = sio.load(model_file, trusted=untrusted)
types = dict(pd.read_parquet(card_file)[["feature", "type"]].values)
base = {"promised_days": 5, "order_weekday": "Monday", "basket_lines": 2, "basket_value": 80.0,
        "customer_prior_orders": 1, "customer_prior_delays": 0}
rows = pd.DataFrame([
    {**base, "carrier": "hermes", "destination_country": "IT"},
    {**base, "carrier": "dhl", "destination_country": "DE"},
])[list(types)]
p = model.predict_proba(rows)[:, list(model.classes_).index(True)]
loaded = [m for m in sys.modules if m.split(".")[0] in ("dagmesh", "domains")]
print(json.dumps({"p": p.tolist(), "loaded": loaded}))
"""
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            script,
            str(version.path / MODEL_FILE),
            str(version.data_file),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["loaded"] == []
    slow, fast = out["p"]
    assert slow > fast + 0.2


def test_a_threshold_above_what_the_data_allows_blocks_and_keeps_the_last_model(
    materialized, mesh_home
):
    product = shipping.products["delay_risk_model"]
    strict = effective_contract(shipping, python_spec(product)).model_copy(deep=True)
    rule = next(r for _, r in strict.quality_rules() if r.metric == "roc_auc")
    rule.mustBeGreaterThan = 0.99
    port = OutputPort(mesh_home, "shipping", "delay_risk_model")
    before = port.require_current()
    with dg.instance_for_test() as instance:
        result = _materialize([product], mesh_home, instance, {product.name: strict})
    assert not result.success
    message = _failure(result)
    assert MODEL in message and "metric_roc_auc" in message
    assert "mustBeGreaterThan 0.99" in message and "last good version stays" in message
    checks = _checks(result)
    assert not checks["metric_roc_auc"].passed and checks["metric_brier_skill"].passed
    assert port.require_current() == before
    assert (before.path / MODEL_FILE).is_file()


def _drift_domain(sql: str) -> Domain:
    domain = Domain("shipping", owner="logistics", description="Drift probe.")
    domain.scoring_product(
        "drift_probe",
        description="Open orders scored on purpose with shifted features.",
        model="delay_risk_model",
        consumes=[],
        score_column="delay_risk",
        columns=[Column("order_id", "VARCHAR", "Order.", nullable=False)],
        primary_key="order_id",
        sql=sql,
    )
    return domain


SHIFTED = """
    SELECT 'P' || i AS order_id, 'hermes' AS carrier, 'IT' AS destination_country,
           5 AS promised_days, 'Sunday' AS order_weekday, 9 AS basket_lines,
           5000.0 + i AS basket_value, 0 AS customer_prior_orders, 0 AS customer_prior_delays
    FROM range(300) r(i)
"""


def test_drift_is_reported_without_blocking_when_scoring_data_shifts(materialized, mesh_home):
    product = _drift_domain(SHIFTED).products["drift_probe"]
    port = OutputPort(mesh_home, "shipping", "drift_probe")
    try:
        with dg.instance_for_test() as instance:
            result = _materialize([product], mesh_home, instance)
        assert result.success  # a warning: the scores publish anyway
        drift = _checks(result)[DRIFT_CHECK]
        assert not drift.passed and drift.severity == dg.AssetCheckSeverity.WARN
        text = drift.description
        for feature in ("carrier", "destination_country", "basket_value", "order_weekday"):
            assert feature in text
        assert "promised_days" not in text  # the same 5 days as in training
        psi = port.require_current().info()["drift"]
        assert psi["carrier"] > 0.2 and psi["promised_days"] < 0.01
    finally:
        shutil.rmtree(port.root, ignore_errors=True)
    # The real scoring input does not drift.
    assert max(_version(mesh_home, SCORES).info()["drift"].values()) < 0.2


def test_population_stability_of_numbers_and_categories():
    rng = np.random.default_rng(1)
    train = pd.DataFrame({"n": rng.normal(0, 1, 5000), "c": rng.choice(["a", "b"], 5000)})
    train.loc[:99, "n"] = np.nan
    features = [("n", "DOUBLE"), ("c", "VARCHAR")]
    profile = training_profile(train, features)
    same = pd.DataFrame({"n": rng.normal(0, 1, 4000), "c": rng.choice(["a", "b"], 4000)})
    same.loc[:79, "n"] = np.nan
    stable = population_stability(profile, same)
    assert stable["n"] < 0.05 and stable["c"] < 0.05
    moved = pd.DataFrame({"n": rng.normal(2, 1, 4000), "c": ["z"] * 4000})
    shifted = population_stability(profile, moved)
    assert shifted["n"] > 0.5 and shifted["c"] > 1
    assert population_stability(profile, moved.iloc[:0]) == {}
    # A category never seen in training, for part of the rows, counts.
    partly_new = same.assign(c=["a", "b", "new", "new"] * 1000)
    assert population_stability(profile, partly_new)["c"] > 0.5
    # A feature constant in training still shows a move.
    constant = training_profile(pd.DataFrame({"k": [5.0] * 100}), [("k", "INTEGER")])
    assert population_stability(constant, pd.DataFrame({"k": [5.0] * 50}))["k"] < 0.01
    assert population_stability(constant, pd.DataFrame({"k": [7.0] * 50}))["k"] > 1


# ------------------------------------------------------------------ a lab domain: what must fail

HISTORY = """
    SELECT i AS id, DATE '2026-01-01' + (i % 100)::INTEGER AS day,
           CASE WHEN i % 5 = 0 THEN 'slow' ELSE 'fast' END AS lane,
           (i % 7)::DOUBLE AS size,
           (i % 5 = 0 AND hash(i) % 10 < 7) OR hash(i) % 10 = 0 AS late
    FROM range(2000) r(i)
"""


def _logistic():
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=500)


def declare_late_model(
    domain: Domain,
    history: str = HISTORY,
    training_sql: str = "SELECT * FROM history",
    estimator=_logistic,
    time_column: str = "day",
) -> None:
    """Declare, in ``domain``, synthetic order history and a model of which rows are late."""
    domain.sql_product(
        "history",
        description="Synthetic orders: slow lanes are late.",
        columns=[
            Column("id", "BIGINT", "Row.", nullable=False),
            Column("day", "DATE", "Day."),
            Column("lane", "VARCHAR", "Lane."),
            Column("size", "DOUBLE", "Size."),
            Column("late", "BOOLEAN", "Late."),
        ],
        primary_key="id",
        sql=history,
    )
    domain.model_product(
        "late_model",
        description="Is a row late?",
        consumes=["history"],
        training_sql=training_sql,
        features=[Column("lane", "VARCHAR", "Lane."), Column("size", "DOUBLE", "Size.")],
        target="late",
        time_column=time_column,
        estimator=estimator,
    )


def _lab(
    history: str = HISTORY,
    training_sql: str = "SELECT * FROM history",
    scoring_sql: str = "SELECT id, lane, size FROM history",
    estimator=_logistic,
    time_column: str = "day",
) -> Domain:
    lab = Domain("lab", owner="lab", description="Models on synthetic data.")
    declare_late_model(lab, history, training_sql, estimator, time_column)
    lab.scoring_product(
        "late_scores",
        description="Every row scored.",
        model="late_model",
        consumes=["history"],
        columns=[Column("id", "BIGINT", "Row.", nullable=False)],
        primary_key="id",
        sql=scoring_sql,
    )
    return lab


def _run_lab(lab: Domain, home: Path, names=("history", "late_model", "late_scores")):
    with dg.instance_for_test() as instance:
        return _materialize([lab.products[n] for n in names], home, instance)


@pytest.fixture
def lab_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    assert _run_lab(_lab(), home).success
    return home


def test_any_classifier_works_and_scores_publish(lab_home: Path):
    info = _version(lab_home, "lab/late_model").info()
    assert info["estimator"] == "LogisticRegression" and info["metrics"]["roc_auc"] > 0.7
    scores = pd.read_parquet(_version(lab_home, "lab/late_scores").data_file)
    assert len(scores) == 2000 and scores["score"].between(0, 1).all()
    assert scores["score"][scores["id"] % 5 == 0].mean() > scores["score"].mean()


def _started_run(instance: dg.DagsterInstance, job_name: str) -> None:
    instance.add_run(dg.DagsterRun(job_name=job_name, status=dg.DagsterRunStatus.STARTED))


def test_a_model_step_gets_the_cores_the_runs_going_leave_it(lab_home: Path):
    """Alone, training and scoring use every core; next to another run
    executing steps, their share; the mesh's own run, which only waits for
    its domain runs, takes none. The version records what the step used."""
    cores = os.cpu_count() or 1
    assert _version(lab_home, "lab/late_model").info()["threads"] == cores
    assert _version(lab_home, "lab/late_scores").info()["threads"] == cores
    with dg.instance_for_test() as instance:
        _started_run(instance, MESH_JOB)
        assert runs_going(instance) == 1
        _started_run(instance, "sales_job")
        assert runs_going(instance) == 1  # the other domain's; the training run makes two
        result = _materialize([_lab().products["late_model"]], lab_home, instance)
        assert result.success
    assert _version(lab_home, "lab/late_model").info()["threads"] == max(1, cores // 2)


@pytest.mark.parametrize(
    ("lab", "expected"),
    [
        (lambda: _lab(estimator=_regressor), "must return a scikit-learn classifier"),
        (lambda: _lab(training_sql="SELECT id, day, lane, late FROM history"), "['size']"),
        (lambda: _lab(training_sql="SELECT * REPLACE (false AS late) FROM history"), "both"),
        (
            lambda: _lab(training_sql="SELECT * REPLACE (DATE '2026-01-01' AS day) FROM history"),
            "same time",
        ),
        (lambda: _lab(estimator=_untrusted_pipeline), "copy.copy"),
    ],
    ids=["regressor", "missing_feature", "one_class", "one_time", "untrusted_type"],
)
def test_a_model_that_cannot_be_trained_publishes_nothing(lab_home: Path, lab, expected):
    model_port = OutputPort(lab_home, "lab", "late_model")
    before = model_port.require_current()
    result = _run_lab(lab(), lab_home, names=("late_model",))
    assert not result.success
    message = _failure(result)
    assert "lab/late_model" in message and expected in message
    assert model_port.require_current() == before


def test_scoring_rows_without_a_feature_fail_naming_it(lab_home: Path):
    port = OutputPort(lab_home, "lab", "late_scores")
    before = port.require_current()
    lab = _lab(scoring_sql="SELECT id, lane FROM history")
    result = _run_lab(lab, lab_home, names=("late_scores",))
    assert not result.success
    message = _failure(result)
    model_version = _version(lab_home, "lab/late_model").version
    assert "lab/late_scores" in message and "['size']" in message and model_version in message
    assert port.require_current() == before


def _regressor():
    from sklearn.linear_model import LinearRegression

    return LinearRegression()


def _untrusted_pipeline():
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    # copy.copy is harmless, but the platform trusts no function from outside
    # scikit-learn and NumPy: a saved model could name any function.
    return make_pipeline(FunctionTransformer(func=copy.copy), _logistic())


def test_load_model_refuses_foreign_and_corrupt_files():
    import skops.io
    from sklearn.preprocessing import FunctionTransformer

    blob = skops.io.dumps(FunctionTransformer(func=eval))
    with pytest.raises(ModelLoadError, match="builtins.eval"):
        load_model(blob, "lab/late_model")
    # Functions of trusted libraries are not trusted either: a transformer
    # naming one would call it on the data.
    from sklearn.datasets import clear_data_home

    for func, name in (
        (np.ctypeslib.load_library, "numpy.ctypeslib.load_library"),
        (clear_data_home, "sklearn.datasets._base.clear_data_home"),
    ):
        with pytest.raises(ModelLoadError, match=re.escape(name)):
            load_model(skops.io.dumps(FunctionTransformer(func=func)), "lab/late_model")
    with pytest.raises(ModelLoadError, match="not a skops file"):
        load_model(b"PK\x03\x04 not really a zip", "lab/late_model")


def test_model_declarations_are_checked():
    lab = Domain("lab", owner="lab", description="Declarations.")
    common = dict(description="d", consumes=["x"], training_sql="SELECT 1", estimator=_logistic)
    feature = [Column("a", "DOUBLE", "A.")]
    with pytest.raises(ValueError, match="target 'a' may not also be a feature"):
        lab.model_product("m1", features=feature, target="a", time_column="t", **common)
    with pytest.raises(ValueError, match="holdout"):
        lab.model_product(
            "m2", features=feature, target="y", time_column="t", holdout=0.9, **common
        )
    with pytest.raises(ValueError, match="at least one feature"):
        lab.model_product("m3", features=[], target="y", time_column="t", **common)
    with pytest.raises(ValueError, match="the model's alias"):
        lab.scoring_product(
            "s",
            description="d",
            model="m",
            consumes={"m": "other/thing"},
            sql="SELECT 1",
            columns=[Column("k", "INTEGER", "K.")],
        )


def test_metric_rules_are_checked_and_belong_to_models():
    good = QualityRule(rule="metric", metric="roc_auc", mustBeGreaterThan=0.7)
    assert rule_problems(None, good) == []
    unknown = QualityRule(rule="metric", metric="auc", mustBeGreaterThan=0.7)
    assert rule_problems(None, unknown) == [
        "metric 'auc' is not a model metric (known: "
        "['roc_auc', 'average_precision', 'brier_score', 'baseline_brier_score', "
        "'brier_skill', 'log_loss', 'accuracy', 'training_rows', 'holdout_rows'])"
    ]
    assert "table rule" in rule_problems("carrier", good)[0]
    unbounded = QualityRule(rule="metric", metric="roc_auc")
    assert "needs a bound" in rule_problems(None, unbounded)[0]
    contract = Contract(
        id="lab.table",
        domain="lab",
        dataProduct="table",
        schema=[SchemaObject(name="table", quality=[good])],
    )
    import duckdb

    con = duckdb.connect()
    data = "(SELECT 1 AS x)"
    (outcome,) = run_quality_rules(con, "lab/table", contract, data, 1, ["x"], set())
    assert isinstance(outcome, AuditOutcome) and not outcome.passed and outcome.blocking
    assert "trains no model" in outcome.violations[0] and "metric_roc_auc" in outcome.violations[0]
    (passed,) = run_quality_rules(con, "lab/m", contract, data, 1, ["x"], set(), {"roc_auc": 0.8})
    assert passed.passed and passed.metadata["measured"] == 0.8


def test_scoring_reads_only_the_pinned_model_version(lab_home: Path):
    """The model file is read through the step's DuckDB: the pinned version's
    files are granted, an older version of the same model is not."""
    old = _version(lab_home, "lab/late_model")
    assert _run_lab(_lab(), lab_home, names=("late_model",)).success
    new = _version(lab_home, "lab/late_model")
    assert new != old and (old.path / MODEL_FILE).is_file()
    spy = f"SELECT h.id, h.lane, h.size FROM history h, read_blob('{old.path / MODEL_FILE}')"
    result = _run_lab(_lab(scoring_sql=spy), lab_home, names=("late_scores",))
    assert not result.success
    message = _failure(result)
    assert "lab/late_scores: access denied to" in message and old.version in message
    # The pinned version itself is granted: the same read of it works.
    fair = f"SELECT h.id, h.lane, h.size FROM history h, read_blob('{new.path / MODEL_FILE}')"
    assert _run_lab(_lab(scoring_sql=fair), lab_home, names=("late_scores",)).success
    scores = pd.read_parquet(_version(lab_home, "lab/late_scores").data_file)
    assert set(scores["model_version"]) == {new.version}


def test_scoring_with_a_product_that_is_not_a_model_fails_clearly(lab_home: Path):
    lab = Domain("lab", owner="lab", description="Models on synthetic data.")
    lab.scoring_product(
        "bad_scores",
        description="Scores with a table.",
        model="history",
        consumes=[],
        columns=[Column("id", "BIGINT", "Row.")],
        sql="SELECT id, lane, size FROM history",
    )
    with dg.instance_for_test() as instance:
        result = _materialize([lab.products["bad_scores"]], lab_home, instance)
    assert not result.success
    assert "lab/history is not a model product" in _failure(result)

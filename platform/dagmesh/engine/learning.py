"""Model products: train, evaluate and stage a scikit-learn model; score
rows with a published one. No Dagster here.

A model product is staged like any product (``staging/data.parquet``, here
one row per feature) plus ``model.skops`` and ``profile.parquet`` (the
training data's distribution of every feature, for drift checks); the one
write–audit–publish path (:func:`dagmesh.engine.publish.audit_and_publish`) then
audits it, the contract's ``metric`` rules bounding the holdout evaluation.

The model is saved with skops, which loads a file without running code from
it: only types the loader trusts are rebuilt. The platform trusts
scikit-learn's classes and NumPy's and SciPy's data types
(:data:`TRUSTED_TYPE`); a model holding anything else (a function, another
library's class) is refused before it is published and when it is read.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from dagmesh import config
from dagmesh.declarations.product import MODEL_VERSION_COLUMN, Column, Product, is_categorical
from dagmesh.engine.access import PortRead
from dagmesh.engine.checks import AuditOutcome
from dagmesh.engine.context import ProductContext
from dagmesh.engine.sql import ident, literal
from dagmesh.engine.storage import DATA_FILE, MODEL_FILE, PROFILE_FILE
from dagmesh.errors import DagmeshError

MISSING = "(missing)"
MAX_CATEGORIES = 64  # one-hot columns per feature; rarer values share one "infrequent" column
IMPORTANCE_ROWS = 20_000  # holdout rows the permutation importance shuffles
IMPORTANCE_REPEATS = 3
NUMERIC_BINS = 10
EPSILON = 1e-4  # share given to an empty bin, so the stability index stays finite
# Types a saved model may hold: scikit-learn's classes (not its functions:
# a FunctionTransformer naming any function would run it), NumPy's array,
# scalar and random-state types, SciPy's sparse matrices.
TRUSTED_TYPE = re.compile(
    r"^(sklearn\.[\w.]*\._?[A-Z]\w*"
    r"|numpy\.(dtype|ndarray|(float|int|uint)(8|16|32|64)|bool_|str_|object_)"
    r"|numpy\.random\.[\w.]*\._?[A-Z]\w*"
    r"|scipy\.sparse\._\w+\.(csr|csc|coo|bsr|dia|dok|lil)_(matrix|array))$"
)
DRIFT_CHECK = "feature_drift"


class ModelTrainingError(DagmeshError, ValueError):
    """A model product could not be trained or evaluated (its input, its
    estimator or its holdout is unusable)."""


class ModelLoadError(DagmeshError, ValueError):
    """A published model file cannot be loaded safely."""


class ScoringInputError(DagmeshError, ValueError):
    """A scoring product's rows lack what its model needs."""


@dataclass
class StagedModel:
    """What training staged: the holdout metrics and the version record."""

    metrics: dict[str, float]
    record: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- features


def feature_select(features: list[tuple[str, str]], relation: str, extra: str = "") -> str:
    """SQL selecting ``features`` (name, DuckDB type) from ``relation`` as the
    model sees them: categories as text (NULL as ``(missing)``), numbers as
    DOUBLE (NULL stays missing); ``extra`` columns follow."""
    parts = [extra] if extra else []
    for name, type_name in features:
        col = ident(name)
        if is_categorical(type_name):
            parts.append(f"coalesce(CAST({col} AS VARCHAR), {literal(MISSING)}) AS {col}")
        else:
            parts.append(f"CAST({col} AS DOUBLE) AS {col}")
    return f"SELECT {', '.join(parts[1:] + parts[:1] if extra else parts)} FROM {relation}"


def _pipeline(features: list[tuple[str, str]], estimator: Any) -> Any:
    """One-hot encode the categorical features, impute the numeric ones, then
    ``estimator``: the whole pipeline is what gets saved."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    categorical = [n for n, t in features if is_categorical(t)]
    numeric = [n for n, t in features if not is_categorical(t)]
    steps = []
    if categorical:
        encoder = OneHotEncoder(
            handle_unknown="infrequent_if_exist", max_categories=MAX_CATEGORIES, sparse_output=False
        )
        steps.append(("categorical", encoder, categorical))
    if numeric:
        imputer = SimpleImputer(strategy="median", keep_empty_features=True)
        steps.append(("numeric", imputer, numeric))
    prepare = ColumnTransformer(steps, remainder="drop")
    return Pipeline([("prepare", prepare), ("estimator", estimator)])


# ----------------------------------------------------------------------------- training


def _training_frame(ctx: ProductContext) -> pd.DataFrame:
    """The training query's rows with a target and a time, as the model sees them."""
    product = ctx.product
    training = product.training
    relation = ctx.sql(product.sql)
    needed = [f.name for f in training.features] + [training.target, training.time_column]
    if missing := [n for n in needed if n not in relation.columns]:
        raise ModelTrainingError(
            f"{product.ref}: the training query does not yield {missing} (a model product's "
            f"query yields its features, target {training.target!r} and time column "
            f"{training.time_column!r}); it yields {relation.columns}"
        )
    relation.create_view("__training_input", replace=True)
    target, when = ident(training.target), ident(training.time_column)
    base = (
        f"(SELECT *, CAST({target} AS BOOLEAN) AS __target, "
        f"epoch_us(CAST({when} AS TIMESTAMP)) AS __time FROM __training_input "
        f"WHERE {target} IS NOT NULL AND {when} IS NOT NULL)"
    )
    features = [(f.name, f.type) for f in training.features]
    return ctx.con.sql(feature_select(features, base, "__target, __time")).df()


def _split_by_time(ref: str, frame: pd.DataFrame, holdout: float) -> tuple[Any, Any, int]:
    """Masks of the training rows (earlier) and the holdout (the latest
    ``holdout`` share by time), and the first time of the holdout."""
    times = frame["__time"].to_numpy()
    if len(times) == 0:
        raise ModelTrainingError(f"{ref}: the training query yields no row with a target and time")
    cutoff = int(np.quantile(times, 1 - holdout, method="higher"))
    test = times >= cutoff
    train = ~test
    if not train.any():
        raise ModelTrainingError(
            f"{ref}: every row has the same time; a holdout by time needs rows of several times"
        )
    for what, mask in (("training rows", train), ("holdout", test)):
        classes = set(frame.loc[mask, "__target"].unique())
        if classes != {True, False}:
            raise ModelTrainingError(
                f"{ref}: the {what} hold only target {sorted(classes)}; a classifier is trained "
                "and evaluated on rows of both classes"
            )
    return train, test, cutoff


def _estimator(ref: str, factory: Callable[[], Any]) -> Any:
    from sklearn.base import is_classifier

    estimator = factory()
    if not is_classifier(estimator) or not hasattr(estimator, "predict_proba"):
        raise ModelTrainingError(
            f"{ref}: estimator= must return a scikit-learn classifier with predict_proba, "
            f"got {type(estimator).__name__}"
        )
    return estimator


def _metrics(y: np.ndarray, p: np.ndarray, base_rate: float, rows: int) -> dict[str, float]:
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        brier_score_loss,
        log_loss,
        roc_auc_score,
    )

    brier = float(brier_score_loss(y, p))
    baseline = float(np.mean((y - base_rate) ** 2))
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "average_precision": float(average_precision_score(y, p)),
        "brier_score": brier,
        "baseline_brier_score": baseline,
        "brier_skill": 1 - brier / baseline if baseline > 0 else 0.0,
        "log_loss": float(log_loss(y, p, labels=[False, True])),
        "accuracy": float(accuracy_score(y, p >= 0.5)),
        "training_rows": float(rows),
        "holdout_rows": float(len(y)),
    }


def _importance(model: Any, x: pd.DataFrame, y: np.ndarray) -> dict[str, float]:
    """Drop of holdout ROC AUC when each feature is shuffled (permutation
    importance, on at most IMPORTANCE_ROWS rows)."""
    from sklearn.inspection import permutation_importance

    if len(x) > IMPORTANCE_ROWS:
        keep = np.random.default_rng(0).choice(len(x), IMPORTANCE_ROWS, replace=False)
        x, y = x.iloc[keep], y[keep]
    found = permutation_importance(
        model, x, y, scoring="roc_auc", n_repeats=IMPORTANCE_REPEATS, random_state=0
    )
    return {name: float(v) for name, v in zip(x.columns, found.importances_mean, strict=True)}


def model_threads(runs_going: int | None = None) -> int:
    """Threads of scikit-learn's OpenMP and BLAS pools in a step: the cores
    shared among ``runs_going``, the runs executing steps now (the
    orchestration counts them in the Dagster instance, this one included),
    so a model trained while nothing else runs gets every core; without the
    count, shared among the runs that may go at once
    (:func:`dagmesh.config.max_runs`, default one per core, so one thread).
    Their own default, a thread per core in every step whatever else runs,
    spins when other runs hold the cores: on 2 busy cores, 3 fits of a
    5,000-row HistGradientBoostingClassifier took 31-41 s against 1-2 s with
    one thread."""
    return max(1, (os.cpu_count() or 1) // (runs_going or config.max_runs()))


@contextmanager
def _thread_limit(threads: int) -> Iterator[None]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        yield


def stage_model(ctx: ProductContext, staging: Any, threads: int | None = None) -> StagedModel:
    """Train ``ctx.product``'s model on the rows before the holdout, evaluate
    it on the holdout, and stage ``model.skops``, the feature card
    (``data.parquet``) and the training profile (``profile.parquet``), with
    ``threads`` for scikit-learn (default :func:`model_threads`)."""
    threads = threads or model_threads()
    import skops.io

    product = ctx.product
    training = product.training
    clock = _Clock()
    frame = _training_frame(ctx)
    train, test, cutoff = _split_by_time(product.ref, frame, training.holdout)
    features = [(f.name, f.type) for f in training.features]
    x, y = frame[[n for n, _ in features]], frame["__target"].to_numpy(dtype=bool)
    model = _pipeline(features, _estimator(product.ref, training.estimator))
    clock.lap("query")
    with _thread_limit(threads):
        model.fit(x[train], y[train])
        clock.lap("fit")
        positive = list(model.classes_).index(True)
        probabilities = model.predict_proba(x[test])[:, positive]
        metrics = _metrics(y[test], probabilities, float(y[train].mean()), int(train.sum()))
        clock.lap("evaluate")
        importance = _importance(model, x[test], y[test])
        clock.lap("importance")
    skops.io.dump(model, staging / MODEL_FILE)
    trusted = check_trusted((staging / MODEL_FILE).read_bytes(), product.ref)
    _write(ctx.con, _card(training.features, importance), staging / DATA_FILE)
    _write(ctx.con, training_profile(x[train], features), staging / PROFILE_FILE)
    clock.lap("save")
    ctx.log.info(
        "%s: trained on %d rows, holdout %d rows from %s: roc_auc %.3f; seconds %s",
        product.ref,
        int(train.sum()),
        int(test.sum()),
        _iso(cutoff),
        metrics["roc_auc"],
        clock.laps,
    )
    record = {
        "metrics": metrics,
        "features": dict(features),
        "target": training.target,
        "holdout": {"by": training.time_column, "from": _iso(cutoff), "share": training.holdout},
        "estimator": type(model.named_steps["estimator"]).__name__,
        "model_file": MODEL_FILE,
        "trusted_types": trusted,
        "seconds": clock.laps,
        "threads": threads,
    }
    return StagedModel(metrics, record)


class _Clock:
    """Seconds spent in each phase of a step (recorded with the version)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._last, 2)
        self._last = now


def _iso(epoch_us: int) -> str:
    return pd.Timestamp(epoch_us, unit="us").isoformat()


def _card(features: tuple[Column, ...], importance: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "feature": [f.name for f in features],
            "type": [f.type for f in features],
            "encoding": ["categorical" if is_categorical(f.type) else "numeric" for f in features],
            "importance": [importance[f.name] for f in features],
            "description": [f.description for f in features],
        }
    )


def _write(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame, path: Any) -> None:
    """Write a small frame as Parquet through the step's (granted) DuckDB."""
    con.register("__frame", frame)
    try:
        con.sql("SELECT * FROM __frame").write_parquet(str(path), compression="zstd")
    finally:
        con.unregister("__frame")


# ----------------------------------------------------------------------------- drift profile


def training_profile(x: pd.DataFrame, features: list[tuple[str, str]]) -> pd.DataFrame:
    """Each feature's distribution in the training rows, as bins with their
    share: categories (the most frequent ones, the rest as ``(other)``), or
    deciles of a number (plus ``(missing)``)."""
    rows = []
    for name, type_name in features:
        values = x[name]
        if is_categorical(type_name):
            shares = values.value_counts(normalize=True)
            top = shares.iloc[:MAX_CATEGORIES]
            rows += [(name, str(k), None, None, float(v)) for k, v in top.items()]
            # Always there: values never seen in training land in it.
            rest = float(shares.iloc[MAX_CATEGORIES:].sum())
            rows.append((name, "(other)", None, None, rest))
            continue
        present = values.dropna().to_numpy(dtype=float)
        edges = (
            np.unique(np.quantile(present, np.linspace(0, 1, NUMERIC_BINS + 1)))
            if len(present)
            else np.array([])
        )
        if len(edges) > 1:
            bounds = [-math.inf, *edges[1:-1], math.inf]
        elif len(edges) == 1:  # a constant: below, equal to, above it
            bounds = [-math.inf, edges[0], float(np.nextafter(edges[0], math.inf)), math.inf]
        else:
            bounds = [-math.inf, math.inf]
        counts = _bin_counts(present, bounds)
        for low, high, count in zip(bounds[:-1], bounds[1:], counts, strict=True):
            rows.append((name, f"[{low}, {high})", low, high, count / max(len(values), 1)))
        rows.append((name, MISSING, None, None, float(values.isna().mean())))
    return pd.DataFrame(rows, columns=["feature", "bin", "lower", "upper", "share"])


def _bin_counts(values: np.ndarray, bounds: list[float]) -> list[int]:
    index = np.searchsorted(np.asarray(bounds[1:-1]), values, side="right")
    return np.bincount(index, minlength=len(bounds) - 1).tolist()


def population_stability(profile: pd.DataFrame, x: pd.DataFrame) -> dict[str, float]:
    """The population stability index of every profiled feature of ``x``
    against the training distribution: sum of (actual - expected) × ln(actual
    / expected) over the bins; above 0.2 is commonly read as a shift."""
    found = {}
    for name, bins in profile.groupby("feature", sort=False):
        if name not in x.columns or len(x) == 0:
            continue
        expected = bins["share"].to_numpy(dtype=float)
        labels = bins["bin"].tolist()
        values = x[name]
        if bins["lower"].isna().all():
            shares = values.astype(str).value_counts(normalize=True)
            known = [label for label in labels if label != "(other)"]
            actual = [float(shares.get(label, 0.0)) for label in known]
            if "(other)" in labels:
                actual.insert(labels.index("(other)"), float(1 - sum(actual)))
        else:
            numeric = bins[bins["bin"] != MISSING]
            bounds = [*numeric["lower"].tolist(), numeric["upper"].iloc[-1]]
            present = values.dropna().to_numpy(dtype=float)
            actual = [c / len(values) for c in _bin_counts(present, bounds)]
            actual.append(float(values.isna().mean()))
        a = np.maximum(np.asarray(actual, dtype=float), EPSILON)
        e = np.maximum(expected, EPSILON)
        found[str(name)] = float(np.sum((a - e) * np.log(a / e)))
    return found


# ----------------------------------------------------------------------------- loading


def trusted_types(untrusted: list[str]) -> tuple[list[str], list[str]]:
    """Split the types a skops file would rebuild into those the platform
    trusts (:data:`TRUSTED_TYPE`) and the rest."""
    ok = [t for t in untrusted if TRUSTED_TYPE.match(t)]
    return ok, [t for t in untrusted if t not in ok]


def check_trusted(data: bytes, ref: str) -> list[str]:
    """The types of a skops file, all trusted; ModelLoadError naming ``ref``
    and the types otherwise."""
    import skops.io

    try:
        ok, refused = trusted_types(skops.io.get_untrusted_types(data=data))
    except Exception as error:  # a corrupt or foreign file
        raise ModelLoadError(f"{ref}: the model file is not a skops file ({error})") from None
    if refused:
        raise ModelLoadError(
            f"{ref}: the model holds types the platform does not trust to load: {refused} "
            "(only scikit-learn classes and NumPy and SciPy data types are loaded)"
        )
    return ok


def load_model(data: bytes, ref: str) -> Any:
    """The model in a skops file's bytes, loaded without running its code."""
    import skops.io

    return skops.io.loads(data, trusted=check_trusted(data, ref))


def model_files(read: PortRead) -> list[Any]:
    """The files of a published model version a scoring step is granted."""
    return [read.version.file(MODEL_FILE), read.version.file(PROFILE_FILE)]


# ----------------------------------------------------------------------------- scoring


def stage_scores(
    ctx: ProductContext, read: PortRead, staging: Any, threads: int | None = None
) -> tuple[duckdb.DuckDBPyRelation, AuditOutcome, dict[str, Any]]:
    """Score the rows of ``ctx.product``'s query with the model version
    ``read`` pinned (``threads`` for scikit-learn, default
    :func:`model_threads`); returns the scored relation (declared columns,
    score, model version), the drift check's outcome and the version record."""
    threads = threads or model_threads()
    product, scoring = ctx.product, ctx.product.scoring
    version = read.version.version
    if not read.version.has(MODEL_FILE):
        raise ScoringInputError(
            f"{product.ref}: {scoring.model} is not a model product (its version {version} "
            f"holds no {MODEL_FILE}); scoring_product(model=...) names a model_product"
        )
    # Through the step's DuckDB, so the grant decides what may be read.
    blob = ctx.sql(f"SELECT content FROM read_blob({literal(read.version.file(MODEL_FILE))})")
    clock = _Clock()
    model = load_model(blob.fetchall()[0][0], f"{scoring.model} version {version}")
    clock.lap("load_model")
    features = ctx.sql(f"SELECT feature, type FROM {ident(scoring.alias)}").fetchall()
    relation = ctx.sql(product.sql)
    added = (scoring.score_column, MODEL_VERSION_COLUMN)
    passed_through = [c.name for c in product.columns if c.name not in added]
    if missing := [n for n in [*passed_through, *dict(features)] if n not in relation.columns]:
        raise ScoringInputError(
            f"{product.ref}: the scoring query does not yield {missing}, which the declared "
            f"columns or the features of {scoring.model} version {version} need; it yields "
            f"{relation.columns}"
        )
    relation.create_view("__scoring_input", replace=True)
    ctx.con.execute(
        "CREATE OR REPLACE TEMP TABLE __rows AS "
        "SELECT row_number() OVER () AS __row, * FROM __scoring_input"
    )
    x = ctx.con.sql(feature_select(features, "__rows ORDER BY __row")).df()
    clock.lap("query")
    positive = list(model.classes_).index(True)
    with _thread_limit(threads):
        scores = model.predict_proba(x)[:, positive] if len(x) else np.array([], dtype=float)
    ctx.con.register("__scores", pd.DataFrame({"__row": np.arange(1, len(x) + 1), "s": scores}))
    columns = ", ".join(f"r.{ident(c)}" for c in passed_through)
    scored = ctx.con.sql(
        f"SELECT {columns}, s.s::DOUBLE AS {ident(scoring.score_column)}, "
        f"{literal(version)} AS {MODEL_VERSION_COLUMN} "
        "FROM __rows r JOIN __scores s USING (__row) ORDER BY r.__row"
    )
    profile = ctx.sql(
        f"SELECT * FROM read_parquet({literal(read.version.file(PROFILE_FILE))})"
    ).df()
    drift = drift_outcome(product, population_stability(profile, x), version)
    clock.lap("predict_and_drift")
    record = {
        "model": scoring.model,
        "model_version": version,
        "drift": drift.metadata.get("psi", {}),
        "seconds": clock.laps,
        "threads": threads,
    }
    return scored, drift, record


def drift_outcome(product: Product, psi: dict[str, float], version: str) -> AuditOutcome:
    """The (non-blocking) drift check: every feature's stability index
    against the model's training data, failed when one exceeds the threshold."""
    scoring = product.scoring
    drifted = {k: round(v, 4) for k, v in psi.items() if v > scoring.drift_threshold}
    violations = []
    if drifted:
        listed = ", ".join(f"{k} {v}" for k, v in sorted(drifted.items(), key=lambda kv: -kv[1]))
        violations.append(
            f"{product.ref}: scoring input drifted from the training data of {scoring.model} "
            f"version {version} (population stability index > {scoring.drift_threshold}): "
            f"{listed}"
        )
    return AuditOutcome(
        DRIFT_CHECK,
        not drifted,
        f"population stability of each feature vs {scoring.model}'s training data "
        f"(warns above {scoring.drift_threshold})",
        violations,
        {"psi": {k: round(v, 4) for k, v in psi.items()}, "severity": "warning"},
        blocking=False,
    )

"""How a domain describes its data products.

A domain engineer writes what a product *is* (its name, owner, description,
the columns it publishes, where its data comes from and how it is computed);
:mod:`dagmesh.orchestration.assets` turns that description into a Dagster asset.
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

MAX_NAME_LENGTH = 63
"""The longest domain, product, column or input name: PostgreSQL's identifier
limit (NAMEDATALEN - 1), so every name is also a valid dbt model, schema and
Postgres identifier, and every file and folder built from it
(``<name>.odcs.yaml``, ``test_domain_<name>.py``) stays far below the 255
bytes a file name may have."""
IDENTIFIER = re.compile(rf"^[a-z][a-z0-9_]{{0,{MAX_NAME_LENGTH - 1}}}\Z")  # \Z: no trailing newline

Format = Literal["csv", "json", "parquet"]

GLOBAL_POLICY_NAMES = frozenset(
    {
        "owner",
        "description",
        "contract",
        "columns_documented",
        "public_sla",
        "public_blocking_check",
        "known_products",
        "access",
        "domain_cycles",
        "safe_names",
        "landing_paths",
    }
)
"""The mesh's global policies (:mod:`dagmesh.engine.governance`): a domain policy
may not take one of these names, so it cannot replace or switch one off."""
Access = Literal["public", "internal", "private"]


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 50 else f"{text[:40]}…' ({len(str(value))} characters)"


def check_identifier(value: str, what: str) -> str:
    """Return ``value`` if it is a safe lower-case identifier of at most
    :data:`MAX_NAME_LENGTH` characters, else raise ValueError."""
    if isinstance(value, str) and len(value) > MAX_NAME_LENGTH:
        raise ValueError(
            f"{what} {_shown(value)} is too long: a name has at most {MAX_NAME_LENGTH} "
            "characters (the PostgreSQL and dbt identifier limit)"
        )
    if not isinstance(value, str) or not IDENTIFIER.match(value):
        raise ValueError(
            f"{what} {_shown(value)} is not a valid name: use lower-case letters, digits and "
            "underscores, starting with a letter"
        )
    return value


def check_type(type_name: str, what: str) -> str:
    """Return ``type_name`` if DuckDB parses it as one type, else raise ValueError
    (a type is spliced into SQL casts, so it must be a type and nothing more)."""
    import duckdb

    try:
        duckdb.sqltype(type_name)
    except (duckdb.Error, TypeError, ValueError) as error:
        raise ValueError(
            f"{what}: {type_name!r} is not a DuckDB type ({str(error).splitlines()[0]})"
        ) from None
    if not re.fullmatch(r"[A-Za-z0-9_(), \[\]]+", type_name):
        raise ValueError(f"{what}: {type_name!r} is not a plain DuckDB type name")
    return type_name


def allowed(producer: str, access: str, consumers: list[str], consumer_domain: str) -> bool:
    """May ``consumer_domain`` read a product of ``producer`` with this access level?"""
    if consumer_domain == producer or access == "public":
        return True
    return access == "internal" and consumer_domain in consumers


def describe_access(producer: str, access: str, consumers: list[str]) -> str:
    """Who may read a product, in words."""
    if access == "public":
        return "public (every domain)"
    if access == "internal":
        return f"internal to {producer} and {consumers or 'no other domain'}"
    return f"private to {producer}"


@dataclass(frozen=True)
class Column:
    """A column a product publishes: its name, DuckDB type and meaning.

    ``classification`` says how sensitive the values are (``pii`` for personal
    data); ``nullable=False`` makes NULLs a blocking audit failure.
    """

    name: str
    type: str
    description: str
    nullable: bool = True
    classification: str | None = None
    joinable: bool = False

    def __post_init__(self) -> None:
        check_identifier(self.name, "column")
        check_type(self.type, f"column {self.name!r}")

    @property
    def is_pii(self) -> bool:
        """True when the column holds personal data."""
        return self.classification == "pii"


def pii(
    name: str, type: str, description: str, nullable: bool = True, joinable: bool = False
) -> Column:
    """A column of personal data (name, email, phone, address...).

    Other domains read it masked: redacted, or hashed with the mesh's key
    when ``joinable`` (equal values, equal hashes, so it still joins).
    """
    return Column(
        name, type, description, nullable=nullable, classification="pii", joinable=joinable
    )


def landing_path_problem(path: object) -> str | None:
    """Why ``path`` cannot name a folder inside the landing area, or None:
    it must be relative, without ``..``, NUL or backslash."""
    if not isinstance(path, str) or not path.strip():
        return "is empty or not text"
    if any(ord(c) < 32 for c in path):
        return "contains a control character (NUL, newline...)"
    if "\\" in path:
        return "contains a backslash"
    if PurePosixPath(path).is_absolute() or path.startswith("~"):
        return "is absolute: name a folder relative to the landing area"
    if ".." in path.split("/"):
        return "goes up a folder (..) out of the landing area"
    return None


def landing_escape(landing_root: Path, path: str) -> str | None:
    """Why the folder ``path`` names resolves (through a symbolic link)
    outside ``landing_root``, or None when it stays inside."""
    root = Path(landing_root).resolve()
    target = (root / path).resolve()
    if target == root or target.is_relative_to(root):
        return None
    return f"leads out of the landing area through a link (to {target})"


@dataclass(frozen=True)
class Landing:
    """Raw files a source system drops under ``$DAGMESH_HOME/landing/<path>``.

    ``columns`` are the columns every file must have (a list means all
    VARCHAR, as raw CSV is read). ``reject_if`` maps a quarantine reason to a
    SQL predicate over the raw row: matching rows are set aside with that
    reason instead of being used, and counted.
    """

    path: str
    format: Format
    columns: Mapping[str, str] | Sequence[str]
    reject_if: Mapping[str, str] = field(default_factory=dict)

    @property
    def column_types(self) -> dict[str, str]:
        """Expected column name → DuckDB type."""
        if isinstance(self.columns, Mapping):
            return dict(self.columns)
        return {name: "VARCHAR" for name in self.columns}

    @property
    def suffix(self) -> str:
        """The file ending of this format."""
        return {"csv": ".csv", "json": ".jsonl", "parquet": ".parquet"}[self.format]


CATEGORICAL_TYPES = ("VARCHAR", "BOOLEAN")
"""Feature types a model one-hot encodes; every other feature type is numeric."""


def is_categorical(type_name: str) -> bool:
    """True when a feature of this DuckDB type is a category, not a number."""
    return type_name.upper().split("(")[0] in CATEGORICAL_TYPES


@dataclass(frozen=True)
class Training:
    """How a model product learns (``Domain.model_product``).

    ``features`` are the columns its training query yields as model inputs
    (name, DuckDB type, meaning), ``target`` the boolean column it learns to
    predict, ``time_column`` the column the evaluation splits on: the latest
    ``holdout`` share of the rows by time is held out (never a random split),
    so the metrics say how the model does on orders it has not seen yet.
    ``estimator`` is a function returning an unfitted scikit-learn classifier.
    """

    features: tuple[Column, ...]
    target: str
    time_column: str
    estimator: Callable[[], Any]
    holdout: float = 0.2

    def check(self, ref: str) -> None:
        """Raise ValueError naming ``ref`` when the training cannot work."""
        names = [f.name for f in self.features]
        if not names:
            raise ValueError(f"{ref}: a model needs at least one feature")
        if len(set(names)) != len(names):
            raise ValueError(f"{ref}: a feature is declared twice in {names}")
        for what, name in (("target", self.target), ("time_column", self.time_column)):
            check_identifier(name, f"{ref}: {what}")
            if name in names:
                raise ValueError(f"{ref}: the {what} {name!r} may not also be a feature")
        if self.target == self.time_column:
            raise ValueError(f"{ref}: target and time_column are the same column")
        if not callable(self.estimator):
            raise ValueError(f"{ref}: estimator= must be a function returning a classifier")
        if not isinstance(self.holdout, int | float) or not 0.05 <= self.holdout <= 0.5:
            raise ValueError(f"{ref}: holdout must be a share between 0.05 and 0.5")


@dataclass(frozen=True)
class Scoring:
    """How a scoring product uses a published model: ``model`` is the model
    product (``domain/name``) read through its port (alias ``alias``),
    ``score_column`` the probability it publishes, ``drift_threshold`` the
    population stability index above which a feature is reported as drifted
    (a warning: scores publish anyway)."""

    model: str
    alias: str
    score_column: str = "score"
    drift_threshold: float = 0.2


MODEL_CARD_COLUMNS = (
    Column("feature", "VARCHAR", "A model input, as the scoring query must yield it.", False),
    Column("type", "VARCHAR", "Its DuckDB type.", nullable=False),
    Column("encoding", "VARCHAR", "categorical (one-hot) or numeric.", nullable=False),
    Column("importance", "DOUBLE", "Drop in holdout ROC AUC when the feature is shuffled."),
    Column("description", "VARCHAR", "What the feature means."),
)
"""What a model product publishes as its table (``data.parquet``): one row
per feature; the model itself is ``model.skops`` beside it."""

MODEL_VERSION_COLUMN = "model_version"


@dataclass
class Product:
    """A data product: one Dagster asset with key ``[domain, name]`` and a
    published, versioned output port.

    Exactly one of ``sql`` (a query run inside DuckDB, where every name in
    ``consumes`` and ``sources`` is a table) or ``compute`` (a Python function
    taking a :class:`dagmesh.engine.context.ProductContext`) says how it is built.
    """

    domain: str
    name: str
    description: str
    columns: list[Column]
    owner: str
    sql: str | None = None
    compute: Callable[..., Any] | None = None
    consumes: dict[str, str] = field(default_factory=dict)
    sources: dict[str, Landing] = field(default_factory=dict)
    primary_key: list[str] = field(default_factory=list)
    access: Access = "public"
    consumers: list[str] = field(default_factory=list)
    classification: str | None = None
    automation: Any = None
    tags: dict[str, str] = field(default_factory=dict)
    defined_at: tuple[str, int] | None = None
    training: Training | None = None
    scoring: Scoring | None = None

    def __post_init__(self) -> None:
        check_identifier(self.domain, "domain")
        check_identifier(self.name, "product")
        if self.training is not None:  # a model product checks its training too
            self.training.check(self.ref)
        self._check_declaration()

    def _check_declaration(self) -> None:
        """What every kind of product must declare consistently."""
        if (self.sql is None) == (self.compute is None):
            raise ValueError(f"{self.ref}: give exactly one of sql= or compute=")
        if not self.columns:
            raise ValueError(f"{self.ref}: declare the columns it publishes")
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.ref}: a column is declared twice in {names}")
        for key in self.primary_key:
            if key not in names:
                raise ValueError(f"{self.ref}: primary key column {key!r} is not declared")
        for alias in [*self.consumes, *self.sources]:
            check_identifier(alias, f"{self.ref}: input")
        self._check_sources()
        if overlap := set(self.consumes) & set(self.sources):
            raise ValueError(f"{self.ref}: {sorted(overlap)} named both as product and source")
        for ref in self.consumes.values():
            for part in ref.split("/"):
                check_identifier(part, f"{self.ref}: consumed product {ref!r}:")
        for consumer in self.consumers:
            check_identifier(consumer, f"{self.ref}: consumer domain")
        if self.consumers and self.access != "internal":
            raise ValueError(
                f"{self.ref}: consumers= names the domains allowed to read an internal "
                f"product, but its access is {self.access!r}"
            )

    def _check_sources(self) -> None:
        """Every source is a Landing naming a folder inside the landing area."""
        for alias, source in self.sources.items():
            if not isinstance(source, Landing):
                raise ValueError(f"{self.ref}: source {alias!r} is not a Landing(...)")
            if problem := landing_path_problem(source.path):
                raise ValueError(
                    f"{self.ref}: landing source {alias!r} path {source.path!r} {problem}"
                )

    def column_classification(self, column: Column) -> str | None:
        """The column's own classification, else the product's default."""
        return column.classification or self.classification

    @property
    def ref(self) -> str:
        """The product's name in the mesh: ``domain/name``."""
        return f"{self.domain}/{self.name}"

    @property
    def key_path(self) -> list[str]:
        """The Dagster asset key path."""
        return [self.domain, self.name]

    @property
    def kind(self) -> str:
        """``sql``, ``python``, ``model`` (trains a model) or ``scoring``
        (scores rows with a published model)."""
        if self.training is not None:
            return "model"
        if self.scoring is not None:
            return "scoring"
        return "sql" if self.sql is not None else "python"


def _caller_location(depth: int = 2) -> tuple[str, int]:
    frame = sys._getframe(depth)
    return frame.f_code.co_filename, frame.f_lineno


class Domain:
    """A business domain: owns products, an owner team and a storage area.

    Its products become one Dagster code location through
    :func:`dagmesh.orchestration.definitions.domain_definitions`.
    Inputs are named ``"domain/product"``; a bare ``"product"`` means one of
    this domain's own products. ``dbt_project`` (a folder, relative to the
    project root) makes every model, seed and snapshot of that dbt project a
    product of the domain too.
    """

    def __init__(
        self, name: str, owner: str, description: str, dbt_project: str | None = None
    ) -> None:
        self.name = check_identifier(name, "domain")
        self.owner = owner
        self.description = description
        self.products: dict[str, Product] = {}
        self.dbt_project_dir = dbt_project
        # The folder of the module declaring the domain: its contracts live beside it.
        self.home_dir = Path(_caller_location()[0]).resolve().parent
        self.policies: dict[str, Any] = {}

    @property
    def contracts_dir(self) -> Path:
        """Where the domain's data contracts live: ``<domain folder>/contracts``."""
        return self.home_dir / "contracts"

    def policy(self, description: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: a governance policy of this domain (federated), checked
        with the global ones on each of its products.

        The function takes a :class:`dagmesh.declarations.spec.ProductSpec` and
        returns (or yields) violation messages. A domain adds policies; it
        cannot replace or switch off a global one.
        """

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            name = fn.__name__
            if name in GLOBAL_POLICY_NAMES:
                raise ValueError(
                    f"domain {self.name}: policy {name!r} is a global policy; a domain may add "
                    "policies but cannot replace or switch off a global one"
                )
            self.policies[name] = (description, fn)
            return fn

        return register

    def __repr__(self) -> str:
        return f"Domain({self.name!r}, products={list(self.products)})"

    def _add(self, product: Product) -> Product:
        if product.name in self.products:
            raise ValueError(f"{product.ref} is declared twice")
        self.products[product.name] = product
        return product

    def _qualify(self, consumes: Mapping[str, str] | Sequence[str] | None) -> dict[str, str]:
        if consumes is None:
            return {}
        pairs = (
            consumes.items()
            if isinstance(consumes, Mapping)
            else ((ref.rsplit("/", 1)[-1], ref) for ref in consumes)
        )
        return {alias: ref if "/" in ref else f"{self.name}/{ref}" for alias, ref in pairs}

    def _declare(
        self,
        name: str,
        *,
        columns: Sequence[Column],
        consumes: Mapping[str, str] | Sequence[str] | None,
        sources: Mapping[str, Landing] | None,
        primary_key: str | Sequence[str],
        owner: str | None,
        consumers: Sequence[str],
        refresh: Any,
        tags: Mapping[str, str] | None,
        **fields: Any,
    ) -> Product:
        """Add the product the keyword arguments of a declaration describe."""
        return self._add(
            Product(
                domain=self.name,
                name=name,
                columns=list(columns),
                owner=owner or self.owner,
                consumes=self._qualify(consumes),
                sources=dict(sources or {}),
                primary_key=[primary_key] if isinstance(primary_key, str) else list(primary_key),
                consumers=list(consumers),
                automation=refresh,
                tags=dict(tags or {}),
                **fields,
            )
        )

    def sql_product(
        self,
        name: str,
        *,
        description: str,
        columns: Sequence[Column],
        sql: str,
        consumes: Mapping[str, str] | Sequence[str] | None = None,
        sources: Mapping[str, Landing] | None = None,
        primary_key: str | Sequence[str] = (),
        owner: str | None = None,
        access: Access = "public",
        consumers: Sequence[str] = (),
        classification: str | None = None,
        refresh: Any = None,
        tags: Mapping[str, str] | None = None,
    ) -> Product:
        """Declare a product computed by one SQL query inside DuckDB.

        ``access`` is who may read it: ``public`` (every domain), ``internal``
        (this domain and the ``consumers`` domains) or ``private`` (this
        domain only). ``classification`` classifies every column that does
        not say otherwise (``pii()`` columns are ``pii``). ``refresh`` says
        how it stays up to date: :func:`dagmesh.orchestration.automation.when_upstream_changes`,
        :func:`~dagmesh.orchestration.automation.on_cron` or on demand (None).
        """
        return self._declare(
            name,
            sql=sql,
            defined_at=_caller_location(),
            description=description,
            columns=columns,
            consumes=consumes,
            sources=sources,
            primary_key=primary_key,
            owner=owner,
            access=access,
            consumers=consumers,
            classification=classification,
            refresh=refresh,
            tags=tags,
        )

    def python_product(
        self,
        name: str | None = None,
        *,
        description: str,
        columns: Sequence[Column],
        consumes: Mapping[str, str] | Sequence[str] | None = None,
        sources: Mapping[str, Landing] | None = None,
        primary_key: str | Sequence[str] = (),
        owner: str | None = None,
        access: Access = "public",
        consumers: Sequence[str] = (),
        classification: str | None = None,
        refresh: Any = None,
        tags: Mapping[str, str] | None = None,
    ) -> Callable[[Callable[..., Any]], Product]:
        """Decorator: declare a product computed by a Python function.

        The function takes a :class:`~dagmesh.engine.context.ProductContext` and
        returns a DuckDB relation, a pandas DataFrame or a pyarrow Table.
        """

        def register(fn: Callable[..., Any]) -> Product:
            return self._declare(
                name or fn.__name__,
                compute=fn,
                defined_at=(inspect.getsourcefile(fn) or "", fn.__code__.co_firstlineno),
                description=description,
                columns=columns,
                consumes=consumes,
                sources=sources,
                primary_key=primary_key,
                owner=owner,
                access=access,
                consumers=consumers,
                classification=classification,
                refresh=refresh,
                tags=tags,
            )

        return register

    def model_product(
        self,
        name: str,
        *,
        description: str,
        consumes: Mapping[str, str] | Sequence[str],
        training_sql: str,
        features: Sequence[Column],
        target: str,
        time_column: str,
        estimator: Callable[[], Any],
        holdout: float = 0.2,
        owner: str | None = None,
        access: Access = "public",
        consumers: Sequence[str] = (),
        classification: str | None = None,
        refresh: Any = None,
        tags: Mapping[str, str] | None = None,
    ) -> Product:
        """Declare a model product: a scikit-learn classifier trained on
        published products.

        ``training_sql`` runs in DuckDB over ``consumes`` (tables named by
        alias) and yields the ``features``, the boolean ``target`` and the
        ``time_column``. The latest ``holdout`` share of rows by time is the
        evaluation set; the contract's ``metric`` quality rules (``roc_auc``,
        ``average_precision``, ``brier_score``...) are its blocking audit. The
        published version holds ``model.skops`` (loads without running
        arbitrary code), its metrics, the inputs' versions, the features with
        their types (``data.parquet``) and the contract.
        """
        return self._declare(
            name,
            sql=training_sql,
            training=Training(tuple(features), target, time_column, estimator, holdout),
            defined_at=_caller_location(),
            description=description,
            columns=MODEL_CARD_COLUMNS,
            consumes=consumes,
            sources=None,
            primary_key="feature",
            owner=owner,
            access=access,
            consumers=consumers,
            classification=classification,
            refresh=refresh,
            tags=tags,
        )

    def scoring_product(
        self,
        name: str,
        *,
        description: str,
        model: str,
        consumes: Mapping[str, str] | Sequence[str],
        sql: str,
        columns: Sequence[Column],
        primary_key: str | Sequence[str] = (),
        score_column: str = "score",
        drift_threshold: float = 0.2,
        owner: str | None = None,
        access: Access = "public",
        consumers: Sequence[str] = (),
        classification: str | None = None,
        refresh: Any = None,
        tags: Mapping[str, str] | None = None,
    ) -> Product:
        """Declare a product that scores rows with a published model.

        ``sql`` yields the rows to score: the declared ``columns`` (published
        as they are) and every feature of ``model`` (a model product,
        ``domain/name`` or this domain's). The product publishes ``columns``,
        ``score_column`` (the model's probability of the positive class) and
        ``model_version`` (the model version that scored the batch); a
        population-stability drift check of the features against the model's
        training data warns without blocking.
        """
        ref = model if "/" in model else f"{self.name}/{model}"
        alias = ref.rsplit("/", 1)[-1]
        qualified = self._qualify(consumes)
        if alias in qualified:
            raise ValueError(f"{self.name}/{name}: input {alias!r} is the model's alias")
        check_identifier(score_column, f"{self.name}/{name}: score_column")
        published = [
            *columns,
            Column(score_column, "DOUBLE", f"Probability predicted by {ref} (0 to 1)."),
            Column(MODEL_VERSION_COLUMN, "VARCHAR", f"The {ref} version that scored it.", False),
        ]
        return self._declare(
            name,
            sql=sql,
            scoring=Scoring(ref, alias, score_column, drift_threshold),
            defined_at=_caller_location(),
            description=description,
            columns=published,
            consumes={**qualified, alias: ref},
            sources=None,
            primary_key=primary_key,
            owner=owner,
            access=access,
            consumers=consumers,
            classification=classification,
            refresh=refresh,
            tags=tags,
        )

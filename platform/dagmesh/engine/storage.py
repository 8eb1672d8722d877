"""Output ports: each product's published, immutable, versioned Parquet data.

Layout under ``$DAGMESH_HOME/domains/<domain>/`` (only that domain writes it)::

    ports/<product>/versions/<version>/data.parquet     the published rows (PII masked)
    ports/<product>/versions/<version>/raw.parquet      raw rows, owner only (PII products)
    ports/<product>/versions/<version>/contract.yaml    the contract it was published under
    ports/<product>/versions/<version>/quarantine/*.parquet   rows set aside
    ports/<product>/versions/<version>/version.json     what the version is
    ports/<product>/current -> versions/<version>       the output port
    staging/<product>/<run>-<pid>/                      work in progress

and, shared by the mesh, ``$DAGMESH_HOME/pins/<domain>/<product>/<version>/<pid>-<id>.json``:
a version a running consumer read, which pruning keeps until that consumer
releases it or its process is gone.

Publishing is one ``rename`` of a finished staging folder into ``versions/``
and one atomic replace of the ``current`` symlink, so a reader sees either
the previous version or the new one, never a partial write; a killed run
leaves only a staging folder, swept by the next run. A version becomes
current only after its publish is recorded (the ``record`` callback of
:meth:`OutputPort.publish`, the audit log): if recording fails, the new
version is removed and the last good one stays current. Readers open a version
folder, never a database file another process holds, so no read ever waits
on a DuckDB lock. Plain DuckDB reads a port with no dagmesh code::

    SELECT * FROM '$DAGMESH_HOME/domains/sales/ports/orders/current/data.parquet'
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb

from dagmesh.config import default_memory_limit
from dagmesh.engine.atomic import write_atomically
from dagmesh.engine.grants import Grant, lock
from dagmesh.errors import DagmeshError

DATA_FILE = "data.parquet"
RAW_FILE = "raw.parquet"
CONTRACT_FILE = "contract.yaml"
VERSION_FILE = "version.json"
# A model product's version also holds its model and training profile, which
# the consumers that score with it read.
MODEL_FILE = "model.skops"
PROFILE_FILE = "profile.parquet"
PINS_DIR = "pins"


class PortNotPublishedError(DagmeshError, RuntimeError):
    """A product was read before any version of it was published."""


class PortBrokenError(DagmeshError, RuntimeError):
    """A product's ``current`` pointer leads to a version that is gone or incomplete."""


@dataclass(frozen=True)
class PublishedVersion:
    """One immutable published version of a product."""

    version: str
    path: Path

    @property
    def data_file(self) -> Path:
        """The Parquet file other domains read (personal data masked)."""
        return self.path / DATA_FILE

    @property
    def owner_file(self) -> Path:
        """The file the owner domain reads: raw values when the product
        masks personal data for others, else the same ``data.parquet``."""
        raw = self.path / RAW_FILE
        return raw if raw.is_file() else self.data_file

    def file(self, name: str) -> Path | str:
        """A published file of this version (``model.skops``...): a local
        path, or an object URL on object storage."""
        return self.path / name

    def has(self, name: str) -> bool:
        """Whether this version holds the published file ``name``."""
        return (self.path / name).is_file()

    def contract(self) -> dict[str, Any] | None:
        """The contract this version was published under, if any."""
        import yaml

        path = self.path / CONTRACT_FILE
        return yaml.safe_load(path.read_text()) if path.is_file() else None

    def info(self) -> dict[str, Any]:
        """The version's record (run, row count, columns, inputs, time)."""
        return json.loads((self.path / VERSION_FILE).read_text())


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (one owned by
    another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def new_version_id(run_id: str) -> str:
    """A sortable, unique version id: UTC time to the microsecond + run id."""
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now % 1 * 1e6):06d}Z"
    return f"{stamp}-{run_id[:8]}"


class OutputPort:
    """The storage of one product: staging, published versions, the current pointer."""

    def __init__(self, home: Path, domain: str, product: str) -> None:
        self.domain = domain
        self.product = product
        self.home = Path(home)
        self.pins_dir = self.home / PINS_DIR / domain / product
        self.domain_dir = Path(home) / "domains" / domain
        self.root = self.domain_dir / "ports" / product
        self.versions_dir = self.root / "versions"
        self.current_link = self.root / "current"
        self.staging_root = self.domain_dir / "staging" / product

    @property
    def ref(self) -> str:
        """``domain/product``."""
        return f"{self.domain}/{self.product}"

    def port_file(self) -> str:
        """Where consumers find the port's current data (the ``current`` link's file)."""
        return str(self.current_link / DATA_FILE)

    def current(self) -> PublishedVersion | None:
        """The version consumers read now, or None before the first publish."""
        try:
            target = os.readlink(self.current_link)
        except FileNotFoundError:
            return None
        path = (self.root / target).resolve()
        return PublishedVersion(path.name, path)

    def require_current(self) -> PublishedVersion:
        """The current version; raises PortNotPublishedError when there is
        none, PortBrokenError when ``current`` leads to a missing or
        incomplete version folder."""
        version = self.current()
        if version is None:
            raise PortNotPublishedError(f"{self.ref} has no published version yet")
        if problem := self.problem(version):
            raise PortBrokenError(
                f"{self.ref}: {problem}; re-materialize {self.ref} to publish a new version"
            )
        return version

    def problem(self, version: PublishedVersion | None = None) -> str | None:
        """What is wrong with the current version's files (a dangling
        ``current``, a deleted version folder, a missing file), or None."""
        version = version or self.current()
        if version is None:
            return None
        if not version.path.is_dir():
            target = os.readlink(self.current_link)
            return f"{self.current_link} -> {target}, a version folder that does not exist"
        for name in (DATA_FILE, VERSION_FILE):
            if not (version.path / name).is_file():
                return f"version {version.version} has no {name} ({version.path / name})"
        return None

    # -- pins: versions running consumers read --------------------------------

    @contextmanager
    def _pins_locked(self) -> Iterator[None]:
        """Serialise pinning against pruning: a version is pinned only while
        it is current, and pruned only if no live pin holds it."""
        self.pins_dir.mkdir(parents=True, exist_ok=True)
        with open(self.pins_dir / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def pin_current(self, holder: str, run_id: str) -> tuple[PublishedVersion, Path]:
        """The current version, pinned for ``holder`` (a consumer) in run
        ``run_id`` by this process: pruning keeps it until :func:`release_pins`
        or this process ends. Returns the version and the pin file."""
        with self._pins_locked():
            version = self.require_current()
            folder = self.pins_dir / version.version
            folder.mkdir(exist_ok=True)
            pin = folder / f"{os.getpid()}-{uuid.uuid4().hex[:12]}.json"
            entry = {"pid": os.getpid(), "run_id": run_id, "holder": holder, "at": time.time()}
            write_atomically(pin, json.dumps(entry), durable=False)
        return version, pin

    def pinned(self) -> set[str]:
        """Versions held by a live pin; pins of dead processes are removed."""
        with self._pins_locked():
            return self._live_pins()

    def _live_pins(self) -> set[str]:
        if not self.pins_dir.is_dir():
            return set()
        held = set()
        for folder in self.pins_dir.iterdir():
            if not folder.is_dir():
                continue
            for pin in folder.glob("*.json"):
                pid = pin.name.split("-", 1)[0]
                if pid.isdigit() and pid_alive(int(pid)):
                    held.add(folder.name)
                else:
                    pin.unlink(missing_ok=True)
            if folder.name not in held:
                shutil.rmtree(folder, ignore_errors=True)
        return held

    def versions(self) -> list[PublishedVersion]:
        """Every kept published version, oldest first."""
        if not self.versions_dir.is_dir():
            return []
        return [
            PublishedVersion(p.name, p)
            for p in sorted(self.versions_dir.iterdir())
            if (p / VERSION_FILE).is_file()
        ]

    def start_staging(self, run_id: str) -> Path:
        """A fresh staging folder for this process; sweeps folders left by dead runs."""
        self.staging_root.mkdir(parents=True, exist_ok=True)
        for leftover in self.staging_root.iterdir():
            pid = leftover.name.rsplit("-", 1)[-1]
            if not pid.isdigit() or not pid_alive(int(pid)):
                shutil.rmtree(leftover, ignore_errors=True)
        staging = self.staging_root / f"{run_id}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        return staging

    def publish(
        self,
        staging: Path,
        run_id: str,
        record: dict[str, Any],
        keep: int,
        max_age: timedelta | None = None,
        record_publish: Callable[[str], None] | None = None,
    ) -> str:
        """Atomically make ``staging`` (holding data.parquet) the current version.

        Writes the version record, renames the folder into ``versions/``,
        calls ``record_publish(version)`` (the audit log), then swaps the
        ``current`` symlink and keeps the newest ``keep`` versions (those
        younger than ``max_age``, the retention SLA, when given) plus any a
        running consumer pinned. If ``record_publish`` raises, the new
        version is deleted and the error re-raised: the previous version
        stays current, so no current version is ever unrecorded.
        Returns the new version id.
        """
        if not (staging / DATA_FILE).is_file():
            raise FileNotFoundError(f"{self.ref}: staging {staging} holds no {DATA_FILE}")
        version = new_version_id(run_id)
        record = {"product": self.ref, "version": version, "run_id": run_id, **record}
        write_atomically(staging / VERSION_FILE, json.dumps(record, indent=2, default=str))
        _fsync_dir(staging)
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        final = self.versions_dir / version
        os.rename(staging, final)
        _fsync_dir(self.versions_dir)
        if record_publish is not None:
            try:
                record_publish(version)
            except BaseException:
                shutil.rmtree(final, ignore_errors=True)
                raise
        tmp_link = self.root / f".current-{os.getpid()}"
        if tmp_link.is_symlink():
            tmp_link.unlink()
        os.symlink(Path("versions") / version, tmp_link)
        os.replace(tmp_link, self.current_link)
        _fsync_dir(self.root)
        self.prune(keep, max_age)
        return version

    def prune(self, keep: int, max_age: timedelta | None = None) -> list[str]:
        """Delete all but the newest ``keep`` versions, and those published
        longer than ``max_age`` ago; never the current one, nor one a live
        consumer pinned (it goes at a later prune, once released)."""
        keep = max(keep, 1)
        with self._pins_locked():
            current = self.current()
            versions = self.versions()
            expired = versions[:-keep]
            if max_age is not None:
                oldest = time.time() - max_age.total_seconds()
                expired += [
                    v for v in versions[-keep:] if (v.path / VERSION_FILE).stat().st_mtime < oldest
                ]
            held = self._live_pins()
            removed = []
            for old in expired:
                if (current and old.path == current.path) or old.version in held:
                    continue
                shutil.rmtree(old.path, ignore_errors=True)
                removed.append(old.version)
        return removed


def release_pins(home: Path, run_id: str) -> int:
    """Release every pin this process holds for ``run_id`` (a consumer's step
    ended); returns how many. Pins of a process that died are swept by the
    next prune instead."""
    released = 0
    for pin in (Path(home) / PINS_DIR).glob(f"*/*/*/{os.getpid()}-*.json"):
        try:
            if json.loads(pin.read_text()).get("run_id") == run_id:
                pin.unlink(missing_ok=True)
                released += 1
        except (OSError, ValueError):
            continue
    return released


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class MeshStore:
    """The mesh's storage as the engine uses it: output ports under the data
    directory, and an in-memory DuckDB per step (no Dagster here: the
    Dagster resource :class:`dagmesh.orchestration.resources.MeshStorage` hands one out).

    Every step opens its own in-memory DuckDB (spilling to the domain's
    ``tmp/`` folder) and reads its inputs from published Parquet versions, so
    parallel steps and concurrent runs never contend for a database file.
    """

    home_path: Path
    keep_versions: int = 5
    memory_limit: str | None = None
    threads: int | None = None
    # scikit-learn's threads in a model or scoring step (None: learning.model_threads()).
    model_threads: int | None = None
    pii_key: str | None = field(default=None, repr=False)
    # Ports on object storage (a dagmesh.engine.objectstore.ObjectStore, duck-typed:
    # that module builds on this one); None keeps them on the local disk.
    objects: Any = None

    def masking_key(self) -> bytes | None:
        """The keyed-hash secret of joinable PII columns, or None."""
        return self.pii_key.encode() if self.pii_key else None

    @property
    def landing_path(self) -> Path:
        """Where source systems drop raw files."""
        return self.home_path / "landing"

    def port(self, domain: str, product: str, reader: str | None = None) -> OutputPort:
        """The output port of ``domain/product``; on object storage read
        with ``reader``'s identity (default: the owner's)."""
        if self.objects is not None:
            return self.objects.port(self.home_path, domain, product, reader)
        return OutputPort(self.home_path, domain, product)

    def domain_dir(self, domain: str) -> Path:
        """The storage area that only ``domain`` writes."""
        return self.home_path / "domains" / domain

    def connect(self, domain: str, grant: Grant | None = None) -> duckdb.DuckDBPyConnection:
        """A fresh in-memory DuckDB for one step of ``domain``, spilling to
        the domain's ``tmp/``; with ``grant``, locked to what it grants
        (:func:`dagmesh.engine.grants.lock`) before any product code runs."""
        spill = self.tmp_dir(domain)
        spill.mkdir(parents=True, exist_ok=True)
        settings: dict[str, str | int | bool] = {
            "temp_directory": str(spill),
            "memory_limit": self.memory_limit or default_memory_limit(),
        }
        if self.threads:
            settings["threads"] = self.threads
        con = duckdb.connect(":memory:", config=settings)
        if self.objects is not None or grant is not None:
            try:
                if self.objects is not None:  # httpfs and this domain's identity only
                    self.objects.attach(con, domain)
                if grant is not None:
                    lock(con, grant)
            except BaseException:
                con.close()
                raise
        return con

    def tmp_dir(self, domain: str) -> Path:
        """Where ``domain``'s steps spill to disk."""
        return self.domain_dir(domain) / "tmp"

    def outbox_dir(self, domain: str) -> Path:
        """Where ``domain`` leaves files for external systems (reverse ETL)."""
        return self.domain_dir(domain) / "outbox"

    def step_grant(self, product_ref: str, staging: Path, files: list[Path], run_id: str) -> Grant:
        """What a step of ``product_ref`` may touch: its ``staging`` folder,
        its domain's tmp and outbox folders (read and write), and ``files``
        (read: the landing files and pinned versions it was granted)."""
        domain = product_ref.split("/")[0]
        return Grant(
            step=product_ref,
            home=self.home_path,
            directories=(staging, self.tmp_dir(domain), self.outbox_dir(domain)),
            files=tuple(files),
            run_id=run_id,
        )

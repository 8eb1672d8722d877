"""Output ports on S3-compatible object storage, with one identity per domain.

Layout under ``s3://<bucket>/<prefix>/`` (a profile's ``ports`` setting)::

    published/<domain>/<product>/versions/<version>/data.parquet   masked rows
    published/<domain>/<product>/versions/<version>/contract.yaml
    published/<domain>/<product>/versions/<version>/version.json   written last
    published/<domain>/<product>/current.json                       the pointer
    private/<domain>/<product>/versions/<version>/raw.parquet       owner only
    private/<domain>/<product>/versions/<version>/quarantine/...    owner only

The store enforces who reads what, not a convention: each domain's identity
may write ``published/<domain>/`` and ``private/<domain>/`` and read
``private/<domain>/`` and every domain's ``published/`` (the bucket policy or
``s3.json`` identities; :func:`identity_actions` gives them), so another
domain asking for a raw file or a quarantine gets an S3 AccessDenied, which
the platform records in the audit log (:func:`denied`).

A version is uploaded under its own prefix, which nothing rewrites;
publishing is then one PUT of the small ``current.json`` pointer (atomic on
S3: a reader gets the old object or the new one). Readers resolve the
pointer once and pin that version, as on local disk. DuckDB reads (and the
owner's steps write) through its httpfs extension, loaded from the
``duckdb-ext-httpfs`` wheel, with a secret holding only the step's domain's
credentials, scoped to the ports' prefix. Credentials come only from the
environment (:func:`dagmesh.config.s3_credentials`) and are never written to
a file, a log or an error.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

import duckdb

from dagmesh.config import S3Settings
from dagmesh.engine import audit_log, extensions
from dagmesh.engine.sql import ident, literal
from dagmesh.engine.storage import (
    CONTRACT_FILE,
    DATA_FILE,
    MODEL_FILE,
    PROFILE_FILE,
    RAW_FILE,
    VERSION_FILE,
    MeshStore,
    OutputPort,
    PortBrokenError,
    PublishedVersion,
    new_version_id,
)
from dagmesh.errors import DagmeshError

POINTER_FILE = "current.json"
# A version id as new_version_id makes it: no '/' or '..' can reach a key.
_VERSION_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,99}")
PUBLISHED = "published"
PRIVATE = "private"
# Files of a version every allowed consumer reads (a model product's model
# and training profile too: scoring products of other domains load them);
# everything else (raw rows, quarantines) goes to the owner-only private prefix.
PUBLIC_FILES = frozenset({DATA_FILE, CONTRACT_FILE, VERSION_FILE, MODEL_FILE, PROFILE_FILE})


class ObjectAccessDeniedError(DagmeshError, PermissionError):
    """The object store refused a domain's identity (S3 AccessDenied)."""


class ObjectStoreError(DagmeshError, RuntimeError):
    """The object store failed a request (not a refusal)."""


@dataclass(frozen=True)
class Credentials:
    """One domain's S3 identity; the secret never shows in a repr."""

    key_id: str
    secret: str = field(repr=False)


@dataclass(frozen=True)
class ObjectStore:
    """The ports' object storage, and how each domain authenticates to it
    (``credentials(domain)``, e.g. :func:`dagmesh.config.s3_credentials`)."""

    settings: S3Settings
    credentials: Callable[[str], tuple[str, str]] = field(repr=False, compare=False)
    _clients: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def port(
        self, home: Path, domain: str, product: str, reader: str | None = None
    ) -> S3OutputPort:
        """The port of ``domain/product`` here, read with ``reader``'s identity."""
        return S3OutputPort(home, domain, product, self, reader)

    # -- keys and URLs ----------------------------------------------------------

    def key(self, *parts: str) -> str:
        """The object key of ``parts`` under the ports' prefix."""
        return "/".join(p.strip("/") for p in (self.settings.prefix, *parts) if p.strip("/"))

    def url(self, key: str) -> str:
        """``s3://bucket/key``: how DuckDB names the object."""
        return f"s3://{self.settings.bucket}/{key}"

    @property
    def root_url(self) -> str:
        """The URL every port lives under (a secret's scope), with a trailing ``/``."""
        return self.url(self.key()).rstrip("/") + "/"

    def endpoint_url(self) -> str:
        """The endpoint as an HTTP(S) URL (the S3 client's form)."""
        scheme = "https" if self.settings.use_ssl else "http"
        return f"{scheme}://{self.settings.endpoint}"

    # -- clients ----------------------------------------------------------------

    def client(self, domain: str) -> Any:
        """An S3 client authenticated as ``domain`` (one per domain and store)."""
        if domain not in self._clients:
            import boto3
            from botocore.config import Config

            key_id, secret = self.credentials(domain)
            self._clients[domain] = boto3.client(
                "s3",
                endpoint_url=self.endpoint_url(),
                aws_access_key_id=key_id,
                aws_secret_access_key=secret,
                region_name=self.settings.region,
                config=Config(
                    s3={
                        "addressing_style": "virtual"
                        if self.settings.url_style == "vhost"
                        else "path"
                    },
                    retries={"max_attempts": 3, "mode": "standard"},
                    connect_timeout=5,
                    read_timeout=60,
                ),
            )
        return self._clients[domain]

    def attach(self, con: duckdb.DuckDBPyConnection, domain: str) -> None:
        """Give ``con`` httpfs and ``domain``'s identity, scoped to the ports'
        prefix (before :func:`dagmesh.engine.grants.lock`: loading and secrets are
        configuration)."""
        extensions.load(con, "httpfs")
        key_id, secret = self.credentials(domain)
        name = ident("dagmesh_" + re.sub(r"\W", "_", domain))
        options = {
            "TYPE": "s3",
            "KEY_ID": literal(key_id),
            "SECRET": literal(secret),
            "REGION": literal(self.settings.region),
            "ENDPOINT": literal(self.settings.endpoint),
            "URL_STYLE": literal(self.settings.url_style),
            "USE_SSL": "true" if self.settings.use_ssl else "false",
            "SCOPE": literal(self.root_url),
        }
        body = ", ".join(f"{k} {v}" for k, v in options.items())
        try:
            con.execute(f"CREATE OR REPLACE TEMPORARY SECRET {name} ({body})")
        except duckdb.Error as error:
            # DuckDB's message could quote the statement: never show it.
            raise ObjectStoreError(
                f"could not give domain {domain}'s S3 identity to DuckDB ({type(error).__name__})"
            ) from None

    # -- requests ---------------------------------------------------------------

    def get(self, domain: str, key: str) -> bytes | None:
        """The object at ``key`` read as ``domain``, None when it does not exist."""
        try:
            return (
                self.client(domain).get_object(Bucket=self.settings.bucket, Key=key)["Body"].read()
            )
        except Exception as error:
            if _code(error) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise self._failed(domain, "read", key, error) from error

    def put(self, domain: str, key: str, body: bytes) -> None:
        """One PUT of ``body`` at ``key`` as ``domain``."""
        try:
            self.client(domain).put_object(Bucket=self.settings.bucket, Key=key, Body=body)
        except Exception as error:
            raise self._failed(domain, "write", key, error) from error

    def upload(self, domain: str, key: str, file: Path) -> None:
        """Upload a local file to ``key`` as ``domain``."""
        try:
            self.client(domain).upload_file(str(file), self.settings.bucket, key)
        except Exception as error:
            raise self._failed(domain, "write", key, error) from error

    def keys(self, domain: str, prefix: str) -> Iterator[str]:
        """Every key under ``prefix``, listed as ``domain``."""
        try:
            pages = self.client(domain).get_paginator("list_objects_v2")
            for page in pages.paginate(Bucket=self.settings.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield item["Key"]
        except Exception as error:
            raise self._failed(domain, "list", prefix, error) from error

    def delete(self, domain: str, keys: list[str]) -> None:
        """Delete ``keys`` as ``domain`` (1000 a request, S3's limit)."""
        client = self.client(domain)
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            try:
                client.delete_objects(Bucket=self.settings.bucket, Delete={"Objects": batch})
            except Exception as error:
                raise self._failed(domain, "delete", batch[0]["Key"], error) from error

    def _failed(self, domain: str, verb: str, key: str, error: Exception) -> DagmeshError:
        where = self.url(key)
        if _code(error) in ("AccessDenied", "403", "Forbidden"):
            return ObjectAccessDeniedError(
                f"S3 AccessDenied: domain {domain}'s identity may not {verb} {where}"
            )
        return ObjectStoreError(f"S3 {verb} of {where} as domain {domain} failed: {_reason(error)}")


def _code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _reason(error: Exception) -> str:
    # botocore messages name the operation and the code, never the credentials.
    return f"{type(error).__name__}: {str(error)[:300]}"


def identity_actions(bucket: str, prefix: str, domain: str) -> list[str]:
    """The SeaweedFS ``s3.json`` actions of ``domain``'s identity: write and
    read its own published and private prefixes, read every domain's
    published prefix, and nothing else (no other domain's private objects)."""
    base = f"{bucket}/{prefix.strip('/')}/" if prefix.strip("/") else f"{bucket}/"
    own = [f"{base}{PUBLISHED}/{domain}/*", f"{base}{PRIVATE}/{domain}/*"]
    readable = [f"{base}{PUBLISHED}/*", own[1]]
    return (
        [f"Write:{p}" for p in own]
        + [f"Read:{p}" for p in readable]
        + [f"List:{p}" for p in readable]
    )


def denied(
    home: Path, run_id: str, consumer: str, error: ObjectAccessDeniedError | str, target: str
) -> None:
    """Record an S3 refusal of ``consumer`` reading ``target`` in the audit log."""
    audit_log.record_denied(
        home, run_id=run_id, consumer=consumer, product=target, reason=str(error)
    )


_HTTP_403 = re.compile(r"HTTP (?:GET|HEAD|PUT|POST) error on '([^'\n]+)' \(HTTP 403\)")


_OBJECT_PRODUCT = re.compile(rf"/(?:{PUBLISHED}|{PRIVATE})/([^/]+)/([^/]+)/")


def object_target(url: str) -> str:
    """The product (``domain/product``) an object URL belongs to, else the URL."""
    match = _OBJECT_PRODUCT.search(url)
    return f"{match.group(1)}/{match.group(2)}" if match else url


def from_profile() -> ObjectStore | None:
    """The selected profile's object storage for ports, or None (local disk).
    Each domain's credentials are read from the environment when first used."""
    from dagmesh import config

    settings = config.s3_settings()
    return ObjectStore(settings, config.s3_credentials) if settings else None


def ports_store(home: Path) -> MeshStore:
    """The ports where the selected profile keeps them: the local disk, or
    object storage (``ports = "s3://..."``), each port read with its owner's
    identity (what the catalog, lint and governance list). Build it once per
    listing: each store opens its own S3 clients."""
    return MeshStore(home, objects=from_profile())


def duckdb_refusal(text: str) -> str | None:
    """The object URL a DuckDB error says S3 refused (HTTP 403), or None."""
    match = _HTTP_403.search(text)
    return match.group(1) if match else None


@dataclass(frozen=True)
class S3PublishedVersion(PublishedVersion):
    """One published version on object storage; ``path`` is its key (not a
    local path), its files are ``s3://`` URLs."""

    port: S3OutputPort | None = field(default=None, repr=False, compare=False)

    @property
    def data_file(self) -> str:  # type: ignore[override]
        """The masked Parquet object other domains read."""
        assert self.port is not None
        return self.port.public_url(self.version, DATA_FILE)

    @property
    def owner_file(self) -> str:  # type: ignore[override]
        """The raw object (owner only) when the product masks, else ``data_file``."""
        assert self.port is not None
        if RAW_FILE in self.info().get("private_files", []):
            return self.port.private_url(self.version, RAW_FILE)
        return self.data_file

    def file(self, name: str) -> str:  # type: ignore[override]
        """The ``s3://`` URL of a published file of this version."""
        assert self.port is not None
        return self.port.public_url(self.version, name)

    def has(self, name: str) -> bool:
        """Whether this version holds the published file ``name`` (one LIST)."""
        assert self.port is not None
        prefix = self.port.public_key(self.version) + "/"
        return prefix + name in set(self.port.store.keys(self.port.reader, prefix))

    def contract(self) -> dict[str, Any] | None:
        """The contract this version was published under, if any."""
        import yaml

        assert self.port is not None
        text = self.port.read(self.port.public_key(self.version, CONTRACT_FILE))
        return yaml.safe_load(text) if text is not None else None

    def info(self) -> dict[str, Any]:
        """The version's record (``version.json``), read once."""
        return self._info

    @cached_property
    def _info(self) -> dict[str, Any]:
        assert self.port is not None
        text = self.port.read(self.port.public_key(self.version, VERSION_FILE))
        if text is None:
            raise PortBrokenError(f"{self.port.ref}: version {self.version} has no {VERSION_FILE}")
        return json.loads(text)


class S3OutputPort(OutputPort):
    """An output port on object storage, behind :class:`OutputPort`'s
    interface: staging and pins stay local (a step's work folder and the
    versions running consumers hold), versions and the pointer live on S3.
    ``reader`` is the domain whose identity reads (the owner by default);
    only the owner writes."""

    def __init__(
        self, home: Path, domain: str, product: str, store: ObjectStore, reader: str | None = None
    ) -> None:
        super().__init__(home, domain, product)
        self.store = store
        self.reader = reader or domain

    # -- keys ---------------------------------------------------------------------

    def public_key(self, version: str, name: str = "") -> str:
        """The key of ``name`` in ``version``'s published prefix."""
        return self.store.key(PUBLISHED, self.domain, self.product, "versions", version, name)

    def private_key(self, version: str, name: str = "") -> str:
        """The key of ``name`` in ``version``'s owner-only prefix."""
        return self.store.key(PRIVATE, self.domain, self.product, "versions", version, name)

    def public_url(self, version: str, name: str) -> str:
        """``s3://`` URL of a published file of ``version``."""
        return self.store.url(self.public_key(version, name))

    def private_url(self, version: str, name: str) -> str:
        """``s3://`` URL of an owner-only file of ``version``."""
        return self.store.url(self.private_key(version, name))

    @property
    def pointer_key(self) -> str:
        """The key of the port's ``current.json`` pointer."""
        return self.store.key(PUBLISHED, self.domain, self.product, POINTER_FILE)

    @property
    def pointer_url(self) -> str:
        """The pointer's URL (what the registry and the catalog name)."""
        return self.store.url(self.pointer_key)

    def port_file(self) -> str:
        """The pointer's URL: consumers resolve it to the current version's data."""
        return self.pointer_url

    def read(self, key: str) -> bytes | None:
        """An object read with the reader's identity; None when absent."""
        return self.store.get(self.reader, key)

    # -- the OutputPort interface ---------------------------------------------------

    def current(self) -> S3PublishedVersion | None:
        """The version the pointer names now (one GET), or None before the first publish."""
        text = self.read(self.pointer_key)
        if text is None:
            return None
        try:
            version = json.loads(text)["version"]
            if not isinstance(version, str) or not _VERSION_ID.fullmatch(version):
                raise ValueError(version)
        except (ValueError, KeyError, TypeError):
            raise PortBrokenError(
                f"{self.ref}: the pointer {self.pointer_url} is not a dagmesh pointer"
            ) from None
        return self._version(version)

    def _version(self, version: str) -> S3PublishedVersion:
        return S3PublishedVersion(version, PurePosixPath(self.public_key(version)), port=self)  # type: ignore[arg-type]

    def problem(self, version: PublishedVersion | None = None) -> str | None:
        """What is wrong with the current version's objects, or None."""
        version = version or self.current()
        if version is None:
            return None
        prefix = self.public_key(version.version) + "/"
        present = {k.rsplit("/", 1)[-1] for k in self.store.keys(self.reader, prefix)}
        for name in (DATA_FILE, VERSION_FILE):
            if name not in present:
                return (
                    f"the pointer names version {version.version}, which has no {name} "
                    f"({self.public_url(version.version, name)})"
                )
        return None

    def versions(self) -> list[PublishedVersion]:
        """Every kept version (with its ``version.json``), oldest first."""
        prefix = self.store.key(PUBLISHED, self.domain, self.product, "versions") + "/"
        complete = {
            key[len(prefix) :].split("/", 1)[0]
            for key in self.store.keys(self.domain, prefix)
            if key.endswith("/" + VERSION_FILE)
        }
        return [self._version(v) for v in sorted(complete)]

    def publish(
        self,
        staging: Path,
        run_id: str,
        record: dict[str, Any],
        keep: int,
        max_age: timedelta | None = None,
        record_publish: Callable[[str], None] | None = None,
    ) -> str:
        """Upload ``staging`` as a new version, record it, then PUT the pointer.

        The version's objects go under their own prefix (``version.json``
        last, so a listed version is complete); ``record_publish(version)``
        (the audit log) runs before the pointer moves. Any failure up to the
        pointer's PUT deletes what was uploaded and re-raises: the last good
        version stays current. Returns the new version id.
        """
        if not (staging / DATA_FILE).is_file():
            raise FileNotFoundError(f"{self.ref}: staging {staging} holds no {DATA_FILE}")
        version = new_version_id(run_id)
        placed = self._placement(staging, version)
        private = sorted(
            f.relative_to(staging).as_posix()
            for f, k in placed
            if k.startswith(self.private_key(version) + "/")
        )
        record = {
            "product": self.ref,
            "version": version,
            "run_id": run_id,
            **record,
            "private_files": private,
        }
        uploaded: list[str] = []
        try:
            for file, key in placed:
                self.store.upload(self.domain, key, file)
                uploaded.append(key)
            info_key = self.public_key(version, VERSION_FILE)
            info = json.dumps(record, indent=2, default=str).encode()
            self.store.put(self.domain, info_key, info)
            uploaded.append(info_key)
            if record_publish is not None:
                record_publish(version)
        except BaseException:
            self._remove(uploaded)
            raise
        pointer = {"version": version, "product": self.ref, "at": time.time()}
        try:
            self.store.put(self.domain, self.pointer_key, json.dumps(pointer).encode())
        except BaseException:
            self._remove(uploaded)  # the pointer did not move: the old version stays
            raise
        shutil.rmtree(staging, ignore_errors=True)  # uploaded: the local copy is done
        self.prune(keep, max_age)
        return version

    def _placement(self, staging: Path, version: str) -> list[tuple[Path, str]]:
        """Each staged file and the object key it goes to. Regular files
        only: a link planted in staging is not followed out of it."""
        files = sorted(
            p
            for p in staging.rglob("*")
            if p.is_file() and not p.is_symlink() and p.name != VERSION_FILE
        )
        return [(f, self._key_of(version, f.relative_to(staging))) for f in files]

    def _key_of(self, version: str, relative: Path) -> str:
        name = relative.as_posix()
        if name in PUBLIC_FILES:
            return self.public_key(version, name)
        return self.private_key(version, name)

    def _remove(self, keys: list[str]) -> None:
        # Unreferenced objects of a version no pointer names are harmless.
        with contextlib.suppress(DagmeshError):
            self.store.delete(self.domain, keys)

    def prune(self, keep: int, max_age: timedelta | None = None) -> list[str]:
        """Delete all but the newest ``keep`` versions (and those older than
        ``max_age``); never the current one nor one a live consumer pinned."""
        keep = max(keep, 1)
        with self._pins_locked():
            current = self.current()
            versions = self.versions()
            expired = versions[:-keep]
            if max_age is not None:
                oldest = time.time() - max_age.total_seconds()
                expired += [v for v in versions[-keep:] if _published_at(v) < oldest]
            held = self._live_pins()
            removed = []
            for old in expired:
                if (current and old.version == current.version) or old.version in held:
                    continue
                keys = list(self.store.keys(self.domain, self.public_key(old.version) + "/"))
                keys += list(self.store.keys(self.domain, self.private_key(old.version) + "/"))
                # version.json last: a half-deleted version is never listed as kept.
                keys.sort(key=lambda k: k.endswith("/" + VERSION_FILE))
                self.store.delete(self.domain, keys)
                removed.append(old.version)
        return removed


def _published_at(version: PublishedVersion) -> float:
    stamp = version.version.split("-", 1)[0]
    try:
        return calendar.timegm(time.strptime(stamp[:15], "%Y%m%dT%H%M%S"))
    except ValueError:
        return time.time()

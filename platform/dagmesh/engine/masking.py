"""Masking of personal data in the ports other domains read.

A product with PII columns publishes two files per version:

- ``data.parquet``: what every other domain (and any outside tool) reads;
  each PII column is either *hashed* (HMAC-SHA256, hex, with the key from
  the ``DAGMESH_PII_KEY`` environment variable: equal values give equal
  hashes, so the column stays joinable across products) or *redacted*
  (NULL);
- ``raw.parquet``: the raw values, read only by the owner domain's own
  products through the platform.

The hash runs inside DuckDB (HMAC built from its ``sha256``), so masking a
large product never leaves the engine; the key reaches DuckDB as a bound
variable, never as SQL text.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import duckdb

from dagmesh.config import PII_KEY_ENV
from dagmesh.engine.sql import ident, literal

Method = Literal["hash", "redact"]
_BLOCK = 64  # SHA-256 block size, for HMAC's key padding

log = logging.getLogger("dagmesh")


def effective_methods(methods: Mapping[str, Method], key: bytes | None) -> dict[str, Method]:
    """``methods`` with ``hash`` turned into ``redact`` when there is no key:
    without a secret a hash of an email is reversible by guessing, so the
    value is withheld instead."""
    if key is None and "hash" in methods.values():
        log.warning(
            "%s is not set: PII columns meant to stay joinable (%s) are redacted instead of hashed",
            PII_KEY_ENV,
            ", ".join(c for c, m in methods.items() if m == "hash"),
        )
        return {c: "redact" for c in methods}
    return dict(methods)


def _hmac_pads(key: bytes) -> tuple[bytes, bytes]:
    import hashlib

    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def masked_expression(column: str, type_name: str, method: Method) -> str:
    """The SQL that masks one column (the HMAC pads are session variables)."""
    col = ident(column)
    if method == "hash":
        inner = f"unhex(sha256(getvariable('dagmesh_ipad') || encode({col}::VARCHAR)))"
        return f"sha256(getvariable('dagmesh_opad') || {inner}) AS {col}"
    return f"NULL::{type_name} AS {col}"


def write_masked(
    con: duckdb.DuckDBPyConnection,
    source: Path,
    target: Path,
    columns: Sequence[tuple[str, str]],
    methods: Mapping[str, Method],
    key: bytes | None,
) -> dict[str, Method]:
    """Write ``source`` to ``target`` with the PII columns masked; returns the
    method applied to each column. ``columns`` are (name, type) in order."""
    applied = effective_methods(methods, key)
    if key is not None:
        ipad, opad = _hmac_pads(key)
        con.execute("SET VARIABLE dagmesh_ipad = ?", [ipad])
        con.execute("SET VARIABLE dagmesh_opad = ?", [opad])
    select = ", ".join(
        masked_expression(name, type_name, applied[name]) if name in applied else ident(name)
        for name, type_name in columns
    )
    try:
        con.execute(
            f"COPY (SELECT {select} FROM read_parquet({literal(source)})) "
            f"TO {literal(target)} (FORMAT parquet, COMPRESSION zstd)"
        )
    finally:
        if key is not None:
            con.execute("RESET VARIABLE dagmesh_ipad")
            con.execute("RESET VARIABLE dagmesh_opad")
    return applied

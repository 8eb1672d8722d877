"""Keeping personal data where it belongs: out of messages, logs, events and
alerts, and out of other users' reach on disk.

- :func:`owner_only` makes every file and folder the platform's processes
  create owner-only (umask 077: files 0600, folders 0700). The CLI, each
  code location (so its code server and run workers) and every step call it.
- :func:`redact` turns the text of an error raised by DuckDB, pandas or a
  product's own code into text fit for a log line: its first line, with
  quoted values and anything shaped like an e-mail address withheld. Engine
  errors raised on purpose (:class:`dagmesh.errors.DagmeshError`) are built
  from names, paths, line numbers and rules only, never row contents.
- :func:`failure_message` is what a step reports when something other than
  a DagmeshError stopped it.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

OWNER_ONLY_UMASK = 0o077
WITHHELD = "<value withheld>"
# Longest redacted error text: a message names what failed, not the data.
MAX_CHARS = 400

_QUOTED = [re.compile(rf"{q}.*{q}") for q in ('"', "'", "`")]
_EMAIL = re.compile(r"[^\s@<>()\[\]{},;:\"']+@[^\s@<>()\[\]{},;:\"']+")
# Lines that start quoting the input: nothing from them on is kept.
_ECHOES = ("Original Line", "LINE ", "Possible ")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def owner_only() -> None:
    """Restrict this process's umask so what it creates is owner-only
    (never loosens a stricter one). Idempotent; child processes inherit it."""
    previous = os.umask(OWNER_ONLY_UMASK)
    os.umask(previous | OWNER_ONLY_UMASK)


def redact(text: str, limit: int = MAX_CHARS, lines: int = 1) -> str:
    """``text`` fit for a message: its first ``lines`` non-empty lines (joined
    with " / "), each with quoted spans and e-mail-like words replaced by
    ``<value withheld>``, a lone quote cutting the rest of its line, control
    characters dropped; at most ``limit`` characters."""
    kept: list[str] = []
    for raw in str(text).splitlines():
        if raw.strip().startswith(_ECHOES):
            break  # DuckDB echoes the row (or the query) from here on
        if raw.strip() and len(kept) < lines:
            kept.append(raw.strip())
    joined = " / ".join(_redact_line(line) for line in kept)
    return joined if len(joined) <= limit else joined[: limit - 1] + "…"


def _redact_line(line: str) -> str:
    for quoted in _QUOTED:
        line = quoted.sub(WITHHELD, line)
    # An unmatched quote opens a value that runs to the end of the line.
    cut = min((i for i in (line.find(q) for q in "\"'`") if i >= 0), default=-1)
    if cut >= 0:
        line = line[:cut].rstrip() + " " + WITHHELD
    return _CONTROL.sub(" ", _EMAIL.sub(WITHHELD, line))


def failure_message(product_ref: str, error: BaseException) -> str:
    """The message of a step stopped by an unexpected error: the product, the
    kind of error and its redacted text (values withheld, as they may be
    personal data)."""
    text = redact(str(error))
    kind = type(error).__name__
    detail = f"{kind}: {text}" if text else kind
    frames = traceback.extract_tb(error.__traceback__)
    # Where it was raised helps debugging, and names code, not data.
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return (
        f"{product_ref} failed{where}: {detail} (values in the error are withheld from "
        "messages and logs, as they may be personal data; the last good version stays in place)"
    )


# Errors dagmesh raises itself (dg.Failure from a step, its own errors) are
# written from names, paths and rules; any other error's text may quote data.
TRUSTED_ERRORS = frozenset({"Failure", "DagsterFailure"})


def safe_error_text(cls_name: str | None, message: str) -> str:
    """An error's text fit for an alert or a log: dagmesh's own step failures
    as written (e-mail-like words still withheld), any other error redacted."""
    if cls_name in TRUSTED_ERRORS:
        return _EMAIL.sub(WITHHELD, message).strip()
    text = redact(message)
    return f"{cls_name}: {text}" if cls_name and not text.startswith(cls_name) else text


class RedactedLines(io.TextIOBase):
    """A text stream that passes each line to ``target`` redacted
    (:func:`redact`): for tools that echo data in their output, such as dbt
    re-emitted by dagster-dbt into the step's compute log."""

    def __init__(self, target: TextIO) -> None:
        self._target = target
        self._pending = ""

    def writable(self) -> bool:
        """Always: it is an output stream."""
        return True

    def write(self, text: str) -> int:
        """Buffer ``text`` and pass on every complete line, redacted."""
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._target.write(redact(line, limit=2000) + "\n")
        return len(text)

    def flush(self) -> None:
        """Pass on what is buffered (redacted) and flush the target."""
        if self._pending:
            self._target.write(redact(self._pending, limit=2000))
            self._pending = ""
        self._target.flush()


@contextlib.contextmanager
def redacted_stdout() -> Iterator[None]:
    """Within the block, what is printed to ``sys.stdout`` is redacted line by line."""
    original = sys.stdout
    sys.stdout = RedactedLines(original)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stdout = original

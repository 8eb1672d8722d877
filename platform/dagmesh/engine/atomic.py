"""Writing a file so that readers see the old one or the new one, never a
torn one: write beside it, then one ``rename`` over it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replaced_atomically(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; when the block ends
    without an error it replaces ``path`` in one step, else it is removed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomically(path: Path, text: str, durable: bool = True) -> None:
    """Replace ``path`` with ``text`` atomically; ``durable`` flushes it to
    disk first, so a crash right after leaves the new content, not an empty file."""
    with replaced_atomically(path) as tmp, open(tmp, "w") as handle:
        handle.write(text)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())

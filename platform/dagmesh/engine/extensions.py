"""DuckDB extensions from their wheels, never downloaded at run time.

DuckDB's ``INSTALL`` fetches an extension from the network; dagmesh instead
depends on the extension's wheel (``duckdb-ext-httpfs`` ...), built for the
pinned DuckDB release, and loads it from where that wheel installed it. The
folder is found from the installed package's file list, so it works in any
virtualenv, site-packages or container layout.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import duckdb

from dagmesh.engine.sql import literal
from dagmesh.errors import DagmeshError


class ExtensionMissingError(DagmeshError, RuntimeError):
    """A DuckDB extension dagmesh needs is not installed (or not for this DuckDB)."""


# Extensions whose file is named otherwise than the extension (DuckDB knows
# ``postgres`` as an alias of ``postgres_scanner``).
FILE_NAMES = {"postgres": "postgres_scanner"}


def file_name(extension: str) -> str:
    """The extension's file name without ``.duckdb_extension``."""
    return FILE_NAMES.get(extension, extension)


def package_name(extension: str) -> str:
    """The wheel that ships ``extension`` (``httpfs`` -> ``duckdb-ext-httpfs``)."""
    return f"duckdb-ext-{extension}"


def extension_directory(extension: str) -> Path:
    """The folder to give DuckDB's ``extension_directory`` for ``extension``:
    the one holding ``v<duckdb version>/<platform>/<extension>.duckdb_extension``
    inside the installed wheel. ExtensionMissingError naming the package when
    it is not installed, or was built for another DuckDB release."""
    package = package_name(extension)
    try:
        files = metadata.files(package) or []
    except metadata.PackageNotFoundError as error:
        raise ExtensionMissingError(
            f"DuckDB extension {extension!r} is not installed: install the package "
            f"{package} (pinned with duckdb=={duckdb.__version__}); dagmesh never downloads "
            "extensions at run time"
        ) from error
    wanted = f"{file_name(extension)}.duckdb_extension"
    release = f"v{duckdb.__version__}"
    found = [f for f in files if f.name == wanted]
    for entry in found:
        path = Path(str(entry.locate()))
        # .../extensions/v1.4.4/linux_amd64/httpfs.duckdb_extension
        if path.parent.parent.name == release and path.is_file():
            return path.parent.parent.parent
    built = sorted({Path(str(f)).parent.parent.name for f in found}) or ["no extension file"]
    raise ExtensionMissingError(
        f"package {package} holds {', '.join(built)}, not an extension for DuckDB "
        f"{release}: install the {package} release built for duckdb=={duckdb.__version__}"
    )


def load(con: duckdb.DuckDBPyConnection, extension: str) -> None:
    """Load ``extension`` into ``con`` from its wheel's folder (before the
    connection is locked: :func:`dagmesh.engine.grants.lock` forbids loading)."""
    folder = extension_directory(extension)
    con.execute(f"SET extension_directory = {literal(str(folder))}")
    # Autoloading would try the network for anything else; switch it off.
    con.execute("SET autoinstall_known_extensions = false")
    con.execute(f"LOAD {file_name(extension)}")

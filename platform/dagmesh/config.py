"""Where dagmesh keeps things: the repository root, the workspace and DAGMESH_HOME.

All state lives under one data directory, ``DAGMESH_HOME``. Its default is
``.dagmesh/`` at the root of the project (the folder holding workspace.yaml),
which .gitignore excludes.
"""

from __future__ import annotations

import os
from pathlib import Path

WORKSPACE_FILE = "workspace.yaml"


def project_root() -> Path:
    """The folder holding ``workspace.yaml``: ``DAGMESH_PROJECT``, else the
    nearest one above the working directory, else the checkout this package
    was installed from (editable installs)."""
    if env := os.environ.get("DAGMESH_PROJECT"):
        return Path(env).resolve()
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / WORKSPACE_FILE).is_file():
            return folder
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / WORKSPACE_FILE).is_file():
        return checkout
    raise FileNotFoundError(
        f"no {WORKSPACE_FILE} found above {Path.cwd()}; run dagmesh from the project "
        "folder or set DAGMESH_PROJECT"
    )


def workspace_file() -> Path:
    """The workspace.yaml listing one code location per domain."""
    return project_root() / WORKSPACE_FILE


def mesh_home() -> Path:
    """The data directory: ``DAGMESH_HOME`` or ``<project>/.dagmesh``."""
    if env := os.environ.get("DAGMESH_HOME"):
        return Path(env).resolve()
    return project_root() / ".dagmesh"


def landing_dir() -> Path:
    """Where the source systems drop their files: ``$DAGMESH_HOME/landing``."""
    return mesh_home() / "landing"


def dagster_home() -> Path:
    """``DAGSTER_HOME`` if set, else ``$DAGMESH_HOME/dagster`` (created with a
    dagster.yaml on first use by :func:`dagmesh.instance.ensure_dagster_home`)."""
    if env := os.environ.get("DAGSTER_HOME"):
        return Path(env).resolve()
    return mesh_home() / "dagster"


def registry_dir() -> Path:
    """The mesh registry (each domain's published interfaces):
    ``DAGMESH_REGISTRY``, else ``$DAGMESH_HOME/registry``."""
    if env := os.environ.get("DAGMESH_REGISTRY"):
        return Path(env).resolve()
    return mesh_home() / "registry"

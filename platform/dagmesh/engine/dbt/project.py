"""A domain's dbt project: where it lives, the profile the platform writes for
it, and its manifest, prepared before the code location loads.

Nothing is written inside the dbt project: the prepared manifest goes to
``<project>/build/dbt/<domain>/`` (a build artifact, like a wheel), the
profile and everything a run produces to ``$DAGMESH_HOME/domains/<domain>/dbt/``
(runtime state, written only by that domain).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from dagmesh import config
from dagmesh.config import QUIET_ENV, default_memory_limit
from dagmesh.declarations.dbt_manifest import PORTS_DATABASE, is_ephemeral, product_name
from dagmesh.declarations.product import Domain
from dagmesh.engine.atomic import write_atomically
from dagmesh.engine.dbt import postgres
from dagmesh.errors import DagmeshError

DEFAULT_TARGET = config.DEFAULT_DBT_TARGET
PRODUCT_TYPES = ("model", "seed", "snapshot")
IGNORED_DIRS = {"target", "logs", "dbt_packages", "dbt_modules"}
GRANT_PLUGIN = "dagmesh.engine.dbt.grant_plugin"


class DbtProjectError(DagmeshError, RuntimeError):
    """A domain's dbt project cannot be used (missing, or does not compile)."""


def dbt_executable() -> str:
    """dbt's command line next to this Python; for the ``postgres`` target
    dagmesh's wrapper of it (:func:`dagmesh.engine.dbt.postgres.main`)."""
    if on_postgres():
        return postgres.dbt_executable()
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


def on_postgres() -> bool:
    """True when runs build on the PostgreSQL warehouse (``postgres`` target)."""
    return selected_target() == postgres.TARGET


def dbt_env(**extra: str) -> dict[str, str]:
    """The environment of a dbt process dagmesh starts: no network, no telemetry."""
    return {**os.environ, **QUIET_ENV, **extra}


class DomainDbtProject:
    """The dbt project of one domain, as the platform runs it."""

    def __init__(self, domain: str, project_dir: str | Path) -> None:
        path = Path(project_dir)
        self.domain = domain
        self.project_dir = path if path.is_absolute() else config.project_root() / path
        if not (self.project_dir / "dbt_project.yml").is_file():
            raise DbtProjectError(
                f"domain {domain}: no dbt project at {self.project_dir} (no dbt_project.yml)"
            )
        settings = yaml.safe_load((self.project_dir / "dbt_project.yml").read_text()) or {}
        self.name: str = settings["name"]
        self.profile_name: str = settings.get("profile") or self.name
        # By manifest path: the checkout and the target (DuckDB or postgres)
        # decide which prepared manifest applies.
        self._manifests: dict[Path, dict[str, Any]] = {}

    def __repr__(self) -> str:
        return f"DomainDbtProject({self.domain!r}, {str(self.project_dir)!r})"

    # -- where things go -------------------------------------------------

    @property
    def build_dir(self) -> Path:
        """Prepared artifacts (manifest, partial parse) of this checkout; the
        ``postgres`` target's apart (dbt-postgres names relations otherwise)."""
        folder = "dbt-postgres" if on_postgres() else "dbt"
        return config.project_root() / "build" / folder / self.domain

    @property
    def target_path(self) -> Path:
        """dbt's target folder for the prepared manifest."""
        return self.build_dir / "target"

    @property
    def manifest_path(self) -> Path:
        """The prepared ``manifest.json`` the code location loads."""
        return self.target_path / "manifest.json"

    @staticmethod
    def state_dir(home: Path, domain: str) -> Path:
        """Runtime state of a domain's dbt runs under the data directory."""
        return home / "domains" / domain / "dbt"

    @classmethod
    def grant_path(cls, home: Path, domain: str) -> Path:
        """The grant (:class:`dagmesh.engine.grants.Grant`) the next dbt run of
        ``domain`` is locked to, written by :mod:`dagmesh.orchestration.dbt.run`."""
        return cls.state_dir(home, domain) / "grant.json"

    # -- the profile (the platform's job) --------------------------------

    def _target_paths(self, home: Path) -> dict[str, dict[str, Any]]:
        """Each target's settings with its DuckDB path resolved: ``embedded``
        (a file per domain under the data directory) and those an operator
        declares in pyproject.toml under ``[tool.dagmesh.dbt_targets.<name>]``."""
        state = self.state_dir(home, self.domain)
        outputs = {DEFAULT_TARGET: {"path": str(state / "warehouse.duckdb")}, **_declared_targets()}
        return {
            name: {**settings, "path": str(settings["path"]).format(home=home, domain=self.domain)}
            for name, settings in outputs.items()
        }

    def targets(self, home: Path, memory_limit: str, threads: int) -> dict[str, dict[str, Any]]:
        """Every target of the generated profile (see :meth:`_target_paths`),
        with the ``ports`` attachment, memory limit, threads and the plugin
        locking DuckDB to the run's grant (:mod:`dagmesh.engine.dbt.grant_plugin`)."""
        state = self.state_dir(home, self.domain)
        warehouse = (
            {postgres.TARGET: postgres.profile_target(self.domain, threads)}
            if on_postgres()
            else {}
        )
        return warehouse | {
            name: {
                "type": "duckdb",
                "path": settings["path"],
                "threads": int(settings.get("threads", threads)),
                "attach": [
                    {
                        "path": str(state / "ports.duckdb"),
                        "alias": PORTS_DATABASE,
                        "read_only": True,
                    }
                ],
                # At connect, not as `settings`: dbt-duckdb SETs those on every
                # cursor, which the locked configuration refuses.
                "config_options": {
                    "memory_limit": settings.get("memory_limit", memory_limit),
                    "temp_directory": str(state / "tmp"),
                },
                # Locks DuckDB to the run's grant before any model runs.
                "plugins": [
                    {
                        "module": GRANT_PLUGIN,
                        "config": {
                            "grant_file": str(self.grant_path(home, self.domain)),
                            "domain": self.domain,  # its S3 identity, on object storage
                        },
                    }
                ],
            }
            for name, settings in self._target_paths(home).items()
        }

    def write_profile(
        self, home: Path, memory_limit: str | None = None, threads: int | None = None
    ) -> Path:
        """Write ``profiles.yml`` for this project under the data directory and
        return its folder. Rewritten only when it changes, so dbt's partial
        parsing stays valid between runs."""
        state = self.state_dir(home, self.domain)
        (state / "tmp").mkdir(parents=True, exist_ok=True)
        config.check_dbt_target_env(self.domain)  # and this domain's own warehouse role
        profile = {
            self.profile_name: {
                "target": selected_target(),
                "outputs": self.targets(
                    home, memory_limit or default_memory_limit(), threads or os.cpu_count() or 1
                ),
            }
        }
        text = "# Written by dagmesh; edits are overwritten.\n" + yaml.safe_dump(profile)
        path = state / "profiles.yml"
        if not path.exists() or path.read_text() != text:
            # Atomically: a dbt process of an earlier run may be reading it.
            write_atomically(path, text, durable=False)
        return state

    def database_path(self, home: Path) -> Path:
        """The DuckDB file the selected target (``DAGMESH_DBT_TARGET``) builds
        into (not for ``postgres``: its models are in the warehouse)."""
        paths = self._target_paths(home)
        target = selected_target()
        if target not in paths:
            raise DbtProjectError(
                f"DAGMESH_DBT_TARGET={target!r} is not a dbt target; targets: "
                f"{sorted([*paths, postgres.TARGET])}"
            )
        return Path(paths[target]["path"])

    # -- the manifest ----------------------------------------------------

    def prepare(self, home: Path | None = None) -> Path:
        """Parse the project into ``manifest.json`` (``dbt parse``). Raises
        DbtProjectError with dbt's message, which names the file, when the
        project does not compile, and removes the previous manifest so a
        broken project never loads its previous version.

        dbt parses into a folder of its own (keeping its partial-parse state
        there) and the finished manifest replaces the one code locations read
        in one rename: a code server loading meanwhile reads the old manifest
        or the new one, never a missing or half-written file."""
        home = home or config.mesh_home()
        profiles_dir = self.write_profile(home)
        self.target_path.mkdir(parents=True, exist_ok=True)
        parsed = self.build_dir / "parse"
        with _locked(self.build_dir / ".prepare.lock"):
            (parsed / "manifest.json").unlink(missing_ok=True)
            command = [
                dbt_executable(),
                "parse",
                "--project-dir",
                str(self.project_dir),
                "--profiles-dir",
                str(profiles_dir),
                "--target-path",
                str(parsed),
                "--log-path",
                str(self.build_dir / "logs"),
            ]
            extra = postgres.dbt_process_env(self.domain) if on_postgres() else {}
            done = subprocess.run(
                command,
                env=dbt_env(DBT_LOG_FORMAT="text", DBT_USE_COLORS="false", **extra),
                capture_output=True,
                text=True,
                cwd=self.project_dir,
            )
            if done.returncode != 0 or not (parsed / "manifest.json").exists():
                self.manifest_path.unlink(missing_ok=True)
                raise DbtProjectError(
                    f"dbt project {self._shown_path()} of domain {self.domain} does not "
                    f"compile:\n{_dbt_error(done.stdout + done.stderr)}"
                )
            os.replace(parsed / "manifest.json", self.manifest_path)
        self._manifests.pop(self.manifest_path, None)
        return self.manifest_path

    def _shown_path(self) -> str:
        try:
            return str(self.project_dir.relative_to(config.project_root()))
        except ValueError:
            return str(self.project_dir)

    def is_stale(self) -> bool:
        """True when there is no manifest or a file of the project is newer."""
        if not self.manifest_path.exists():
            return True
        prepared = self.manifest_path.stat().st_mtime
        for folder, dirs, files in os.walk(self.project_dir):
            dirs[:] = [d for d in dirs if d not in IGNORED_DIRS and not d.startswith(".")]
            for name in files:
                if os.stat(os.path.join(folder, name)).st_mtime > prepared:
                    return True
        return False

    def ensure_prepared(self) -> Path:
        """The prepared manifest; parsed again only if missing or older than
        a file of the project (an edit during development)."""
        if self.is_stale():
            self.prepare()
        return self.manifest_path

    @property
    def manifest(self) -> dict[str, Any]:
        """The prepared manifest of the selected target (prepared on first use
        if missing or stale), read once per target."""
        path = self.manifest_path
        if path not in self._manifests:
            self._manifests[path] = json.loads(self.ensure_prepared().read_text())
        return self._manifests[path]

    def product_nodes(self) -> dict[str, dict[str, Any]]:
        """Models, seeds and snapshots (not ephemeral) by product name
        (:func:`~dagmesh.declarations.dbt_manifest.product_name`): the domain's dbt products."""
        return {
            product_name(node): node
            for node in self.manifest["nodes"].values()
            if node["resource_type"] in PRODUCT_TYPES
            and node.get("package_name") == self.name
            and not is_ephemeral(node)
        }

    def port_sources(self) -> dict[str, tuple[str, str]]:
        """Sources read from published ports: source unique_id → (domain, product)."""
        return {
            uid: (source["source_name"], source["name"])
            for uid, source in self.manifest["sources"].items()
            if source.get("database") == PORTS_DATABASE
        }


_PROJECTS: weakref.WeakKeyDictionary[Domain, dict[Path, DomainDbtProject]] = (
    weakref.WeakKeyDictionary()
)


def dbt_project(domain: Domain) -> DomainDbtProject | None:
    """``domain``'s dbt project, or None when it has none (one object per
    domain and project root, so its manifest is read once; a process that
    changes ``DAGMESH_PROJECT`` gets the other checkout's project)."""
    if not domain.dbt_project_dir:
        return None
    by_root = _PROJECTS.setdefault(domain, {})
    root = config.project_root()
    if root not in by_root:
        by_root[root] = DomainDbtProject(domain.name, domain.dbt_project_dir)
    return by_root[root]


def selected_target() -> str:
    """The dbt target runs use: ``DAGMESH_DBT_TARGET``, else ``embedded``."""
    return config.dbt_target()


def _declared_targets() -> dict[str, dict[str, Any]]:
    targets = config.tool_settings().get("dbt_targets", {})
    for name, target in targets.items():
        if "path" not in target:
            raise DbtProjectError(f"[tool.dagmesh.dbt_targets.{name}] needs a path")
    return targets


def _dbt_error(output: str) -> str:
    """The part of dbt's output that says what is wrong (and in which file)."""
    lines = [line.rstrip() for line in output.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if "Error" in line and not line.lstrip().startswith("Running with dbt"):
            return "\n".join(lines[index : index + 40])
    return "\n".join(lines[-12:])


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock file: two processes never parse one project at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

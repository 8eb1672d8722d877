"""A workspace whose code servers start together instead of one by one.

Dagster's ``WorkspaceProcessContext`` loads the locations of a workspace
file one after the other: for each ``python_module``/``python_file`` entry
its ``GrpcServerRegistry`` starts a code server and waits until that server
has imported the location's code (dagster, pandas, dagster-dbt: 1–3 s each)
before it starts the next. :func:`loaded_workspace` starts them all at once
and hands the registry, already holding them, to the workspace: on 2 cores
the five sample domains load in 10.0 s instead of 13.0 s (medians,
bench/bench_workspace_load.py; the imports are CPU-bound, so not 5× faster).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from dagster import DagsterInstance

# Private, no public equivalent: the registry and settings
# WorkspaceProcessContext builds for itself when given none.
from dagster._core.remote_representation.grpc_server_registry import GrpcServerRegistry
from dagster._core.workspace.context import (
    INCREASE_TIMEOUT_DAGSTER_YAML_MSG,
    WEBSERVER_GRPC_SERVER_HEARTBEAT_TTL,
    WorkspaceProcessContext,
)
from dagster._core.workspace.load_target import WorkspaceLoadTarget
from dagster._grpc.server import GrpcServerCommand


@contextmanager
def loaded_workspace(
    instance: DagsterInstance, target: WorkspaceLoadTarget
) -> Iterator[WorkspaceProcessContext]:
    """``WorkspaceProcessContext(instance, target)`` with every code server
    it manages started at the same time; they stop when the context ends.
    A server that fails to start is recorded as the registry records it, so
    the workspace reports that location's load error as it always does."""
    with GrpcServerRegistry(
        instance_ref=instance.get_ref(),
        server_command=GrpcServerCommand.API_GRPC,
        heartbeat_ttl=WEBSERVER_GRPC_SERVER_HEARTBEAT_TTL,
        startup_timeout=instance.code_server_process_startup_timeout,
        wait_for_processes_on_shutdown=instance.wait_for_local_code_server_processes_on_shutdown,
        additional_timeout_msg=INCREASE_TIMEOUT_DAGSTER_YAML_MSG,
    ) as registry:
        _start_together(registry, target)
        with WorkspaceProcessContext(instance, target, grpc_server_registry=registry) as context:
            yield context


def _start_together(registry: GrpcServerRegistry, target: WorkspaceLoadTarget) -> None:
    """Start the code server of each of ``target``'s managed locations, each
    in its own thread. The registry's public entry point holds its lock for
    the whole start of one server; holding that lock here instead keeps its
    clean-up thread out while the threads start distinct entries (each
    server listens on its own socket file; on Windows, a port taken by a
    sibling is retried by Dagster). Without the private method (another
    Dagster), the workspace starts them itself."""
    origins = [o for o in target.create_origins() if registry.supports_origin(o)]
    start = getattr(registry, "_get_grpc_server_entry", None)
    if start is None or len(origins) < 2:
        return
    with registry._lock, ThreadPoolExecutor(len(origins)) as pool:
        list(pool.map(start, origins))

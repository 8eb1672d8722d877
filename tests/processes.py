"""Processes a test or a benchmark starts and talks to: wait until one is
ready, stop them, ask a Dagster webserver's GraphQL."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_until_ready(
    ready: Callable[[], T], seconds: float, what: str, log: Path | None = None
) -> T:
    """Call ``ready()`` every half second until it answers something true and
    return that; meanwhile an exception (a server not listening yet) counts
    as not ready. On timeout: AssertionError naming ``what``, with the tail
    of ``log`` when given."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if answer := ready():
                return answer
        except Exception:
            pass
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise AssertionError(f"timed out waiting for {what}:\n{tail}")
        time.sleep(0.5)


def stop(*processes: subprocess.Popen, timeout: float = 60) -> None:
    """Terminate the processes, then kill any still running after ``timeout``."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def graphql(url: str, query: str, variables: dict | None = None, timeout: float = 60) -> dict:
    """The answer (``data`` and ``errors``) of the Dagster webserver at ``url``
    to one GraphQL request; OSError when it does not answer."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"{url}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())

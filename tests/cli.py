"""Running the `dagmesh` command the way a user does, from the tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def dagmesh(env: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``dagmesh ARGS`` in ``env``'s project (``DAGMESH_PROJECT``), output captured."""
    return subprocess.run(
        [str(BIN / "dagmesh"), *args],
        cwd=env["DAGMESH_PROJECT"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """Assert the command succeeded (its output is the failure message)."""
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def flat(result: subprocess.CompletedProcess) -> str:
    """The command's stdout and stderr on one line, whitespace collapsed
    (rich wraps messages at the terminal's width)."""
    return " ".join((result.stdout + result.stderr).split())

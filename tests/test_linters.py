"""The linters are part of the suite: ruff over all the Python, mypy (strict on the library) over release/ and tasks/.

As in mkosi's tests/test_linters.py, a linter's findings fail the test with the tool's own output, so CI (which
runs the suite) fails on them.  The tools come from requirements-test.txt, pinned: a new release of either must
not change the verdict on unchanged code.  Their settings live in ruff.toml and mypy.ini at the top level, where
editors and a plain `ruff check` or `mypy` find them too.  mypy's cache goes to a temporary directory so that the
suite leaves nothing in the checkout.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from tests.conftest import PROJECT, unavailable

RUFF_PATHS = ("release", "tasks", "tests", "bench", "dodo.py")


def run_linter(module: str, *args: str) -> None:
    """Run `python -m <module> <args>` in the checkout; its output is the failure message."""
    if importlib.util.find_spec(module) is None:
        unavailable(f"{module} not installed (pip install -r requirements-test.txt)")
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=PROJECT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"{module} {' '.join(args)}:\n{proc.stdout}{proc.stderr}"


def test_ruff() -> None:
    run_linter("ruff", "check", "--no-cache", *RUFF_PATHS)


def test_mypy_strict_release(tmp_path: Path) -> None:
    run_linter("mypy", "--strict", "--cache-dir", str(tmp_path), "release")


def test_mypy_tasks(tmp_path: Path) -> None:
    run_linter("mypy", "--cache-dir", str(tmp_path), "tasks")

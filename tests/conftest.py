"""Shared test fixtures.

Two rules from the project's guide are enforced here:
- tests that read ../shared (design samples, schemas) skip with a reason on a
  developer's fresh clone, but fail in CI (CI=true), where ../shared is present;
- a missing external tool (umoci, skopeo, libdb1 ...) fails in CI and skips with
  the package to install elsewhere.  The test command installs them all.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
SHARED = PROJECT.parent / "shared"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str):
    """Fail in CI, skip elsewhere: the one place tests give up on a missing input."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: missing inputs are failures)")
    pytest.skip(reason)


def need_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} not installed (apt-get install {package})")
    return path


def need_file(path: str | os.PathLike, package: str) -> Path:
    path = Path(path)
    if not path.exists():
        unavailable(f"{path} not present (apt-get install {package})")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only ../shared inputs (FreeBSD src samples, schemas)."""
    if not SHARED.is_dir():
        unavailable("../shared is not present next to this checkout")
    return SHARED


@pytest.fixture(scope="session")
def src_samples(shared_dir: Path) -> Path:
    return shared_dir / "freebsd-src-samples"

"""Shared test fixtures.

The suite carries the data it reads in tests/data/ (tests/data/README.md says
where each file came from and under which licence), so a fresh clone runs it all.
Two rules from the project's guide are enforced here:
- tests that need the real pkg binary, which cannot live in the project and is
  found in ../shared/tools/pkg, skip with that reason on a developer's fresh
  clone without ../shared, and fail when ../shared is there but the binary is
  not, or does not run, and always in CI (CI=true): the only skip there is;
- a missing external tool (umoci, skopeo, libdb1 ...) or any other missing
  input fails, in CI and everywhere else, naming the package to install.  The
  test command installs them all.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
DATA = PROJECT / "tests" / "data"
SHARED = PROJECT.parent / "shared"

# The support modules whose fixtures (demo_build, repo_server, validate ...) any test names as a parameter;
# a module comes after those it imports, so that pytest can rewrite the asserts of each.
pytest_plugins = ["tests.httpserver", "tests.pipeline_support", "tests.build_support", "tests.emulation_support",
                  "tests.oci_support", "tests.openpgp_support", "tests.registry_support"]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str):
    """A missing tool or input: a failure, never a skip (the test command installs what the suite needs)."""
    pytest.fail(f"{reason} (missing inputs are failures; sh tools/test.sh installs them)")


def need_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} not installed (apt-get install {package})")
    return path


def count_calls(monkeypatch: pytest.MonkeyPatch, module, name: str) -> list:
    """Replace *module*.*name* by a wrapper that records each call's arguments and calls the original."""
    real, calls = getattr(module, name), []

    def wrapper(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)
    monkeypatch.setattr(module, name, wrapper)
    return calls


def need_file(path: str | os.PathLike, package: str) -> Path:
    path = Path(path)
    if not path.exists():
        unavailable(f"{path} not present (apt-get install {package})")
    return path


def need_shared(path: Path, what: str) -> Path:
    """*path* inside ../shared (only the real pkg binary is read from there).

    The one skip the guide allows: outside CI, when ../shared itself is absent (a fresh clone).
    A ../shared that is there but lacks *path* is a failure everywhere, as is anything missing in CI.
    """
    if not SHARED.is_dir():
        if in_ci():
            pytest.fail(f"{what} from ../shared/tools/pkg is absent (CI=true: missing inputs are failures)")
        pytest.skip(f"{what} from ../shared/tools/pkg is absent")
    if not path.exists():
        pytest.fail(f"{path}: missing from ../shared ({what})")
    return path


@pytest.fixture(scope="session")
def test_data() -> Path:
    """The third-party inputs the suite carries: schemas and FreeBSD's files (tests/data/README.md)."""
    return DATA


@pytest.fixture(scope="session")
def src_samples(test_data: Path) -> Path:
    """FreeBSD source files at their freebsd-src paths (those the demo carries are links to its copy)."""
    return test_data / "freebsd-src"

"""Driving the real pipeline in tests: generated demo inputs, served over loopback, built by doit.

- `demo_tree` (session): the demo src repository and pkgbase repositories,
  generated once by the project's own generator;
- `served_demo`: a private copy of that tree behind a real HTTP server on
  127.0.0.1, so a test may tamper with it;
- `write_config()`: a config.toml for one release served from there, based on
  the project's own config.toml (same flavours and steps);
- `doit()`: the real `doit` command on a temporary work directory.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import toml

from release.demo.generate import generate_demo
from release.demo.matrix import matrix_config
from tests.conftest import PROJECT
from tests.httpserver import RepoServer, port_is_closed

REPO = "base_release_2"


@pytest.fixture(scope="session")
def demo_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo-source")
    generate_demo(root, arches=("amd64", "aarch64"), abi_major=14, repos={REPO: "14.2"})
    return root


@pytest.fixture
def served_demo(demo_tree: Path, tmp_path: Path) -> Iterator[tuple[RepoServer, Path]]:
    root = tmp_path / "served"
    shutil.copytree(demo_tree, root, symlinks=True)
    with RepoServer(root) as server:
        yield server, root
    assert port_is_closed(server.port)


def repo_path(arch: str, repo: str = REPO) -> str:
    """URL path of a demo repository on the test server."""
    return f"/pkgbase/FreeBSD:14:{arch}/{repo}"


def write_config(path: Path, *, mirror: str, src_url: str, releases: dict | None = None,
                 flavours: dict | None = None, **release_overrides) -> Path:
    """A config.toml with the project's pipeline, arches and flavours and one served release."""
    base = toml.loads((PROJECT / "config.toml").read_text())
    release = {"version": "14.2-RELEASE", "branch": "releng/14.2", "repo": REPO, "abi_major": 14,
               "arches": ["amd64", "aarch64"], "flavours": ["static", "dynamic", "minimal"],
               "mirror": mirror, "src_url": src_url, "source": "https://git.freebsd.org/src.git"}
    release.update(release_overrides)
    base["releases"] = releases if releases is not None else {"test": release}
    if flavours:
        for name, values in flavours.items():
            base.setdefault("flavours", {}).setdefault(name, {}).update(values)
    path.write_text(toml.dumps(base))
    return path


def served_config(tmp_path: Path, server: RepoServer, root: Path, **overrides) -> Path:
    return write_config(tmp_path / "config.toml", mirror=server.url + "/pkgbase/${ABI}/${REPO}",
                        src_url=(root / "src.git").as_uri(), **overrides)


def doit(config: Path, workdir: Path, *tasks: str, check: bool = True,
         env: dict | None = None, timeout: float = 600, pass_fds: tuple[int, ...] = ()) -> subprocess.CompletedProcess:
    """Run the project's doit on *workdir*; the output is returned as text.

    *pass_fds* hands doit descriptors of the test (a leak a sandbox must not pass on).
    """
    argv = [sys.executable, "-m", "doit", "-f", str(PROJECT / "dodo.py"), f"config={config}",
            f"workdir={workdir}", *tasks]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, pass_fds=pass_fds)
    if check and proc.returncode != 0:
        raise AssertionError(f"doit {' '.join(tasks)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


def partial_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.name.startswith(".partial-"))


def ran(proc: subprocess.CompletedProcess) -> list[str]:
    """Tasks doit executed (not the up-to-date ones)."""
    return [line[3:] for line in proc.stdout.splitlines() if line.startswith(".  ")]



def demo_matrix_config(path: Path, **kwargs) -> Path:
    """config.toml's release matrix served from the embedded demo (release/demo/matrix.py)."""
    return matrix_config(PROJECT / "config.toml", path, **kwargs)

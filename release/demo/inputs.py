"""The demo releases of a configuration, mapped onto the demo generator.

Every release marked `demo = true` is served from one generated tree under
<work>/demo: one src repository holding all their branches, and one pkgbase
repository per ABI, architecture and repository name.
"""
from __future__ import annotations

from pathlib import Path

from ..config import Config, Release
from ..fsutil import pretty_json, write_if_changed
from ..workspace import Workspace
from . import generate

STAMP = "demo.json"


def stamp_path(root: Path) -> Path:
    return root / STAMP


def package_version(release: Release) -> str:
    """pkgbase package version for a demo release: "14.2-DEMO" -> "14.2"."""
    return release.version.split("-", 1)[0]


def parameters(cfg: Config, release: Release) -> dict:
    return {"release": release.name, "abi_major": release.abi_major, "arches": list(release.arches),
            "repo": release.repo, "version": package_version(release), "branch": release.branch}


def generator_files() -> list[str]:
    """The generator's code and data: editing any of them regenerates the demo."""
    here = Path(__file__).resolve().parent
    files = [here / "content.py", here / "generate.py", here / "srcrepo.py", Path(__file__).resolve()]
    files += sorted(p for p in (here / "data").rglob("*") if p.is_file())
    return [str(p) for p in files]


def generate_for(cfg: Config) -> dict:
    """Generate (or leave up to date) everything the configuration's demo releases fetch."""
    root = Workspace.of(cfg).demo()
    demo = [r for r in cfg.releases.values() if r.demo]
    written = generate_tree(root, demo)
    write_if_changed(stamp_path(root), pretty_json([parameters(cfg, r) for r in demo]))
    return {"written": written}


def generate_tree(root: Path, demo: list[Release], *, scale: float = 1) -> list[str]:
    """One src repository with every branch and one pkgbase repository per ABI, arch and repository."""
    branches = sorted({r.branch for r in demo})
    by_abi: dict[int, list[Release]] = {}
    for r in demo:
        by_abi.setdefault(r.abi_major, []).append(r)
    written: list[str] = []
    for abi_major, releases in sorted(by_abi.items()):
        info = generate.generate_demo(
            root, arches=sorted({a for r in releases for a in r.arches}), abi_major=abi_major,
            repos={r.repo: package_version(r) for r in releases}, branches=branches, scale=scale,
            pkg_level=generate.PKG_LEVEL if scale == 1 else 3)
        written += [str(p) for p in info.written]
    return written

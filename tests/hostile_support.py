"""Hostile inputs made by the tests themselves: small signed repositories holding what an attacker ships.

A hostile release is the smallest family the pipeline builds (flavour `base`
with the accounts step and one package, flavour `top` over it with the
attacker's package), for amd64 only, from a pkgbase repository written with
the project's own package and catalogue writers and signed with the demo key,
which the src tree trusts: the attacker is a mirror whose key leaked.  The
config is the project's config.toml with only flavours and releases replaced.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import toml

from release.demo.generate import src_files
from release.demo.srcrepo import make_src_repo
from release.demo.pkgtar import Member
from tests.conftest import PROJECT
from tests.emulation_support import TIME, manifest, write_package_repo

RELEASE = "h"
ARCH = "amd64"
BASE_MEMBERS = [Member("/etc", "dir", 0o755, mtime=TIME), Member("/usr/share/base/README", "file", 0o644,
                                                                  data=b"base\n", mtime=TIME)]


@dataclass(frozen=True)
class Hostile:
    """Where a hostile release landed: its config, a work directory and its repository."""

    config: Path
    work: Path
    pkgbase: Path

    def out(self) -> Path:
        return self.work / "out" / RELEASE / ARCH


def flavours(*, top_packages: tuple[str, ...] = ("FreeBSD-evil",), **top) -> dict:
    return {
        "base": {"description": "accounts and the base package", "packages": ["FreeBSD-base"], "cmd": ["/bin/sh"],
                 "steps": [{"kind": "accounts"}]},
        "top": {"description": "the attacker's package", "parent": "base", "packages": list(top_packages),
                "cmd": ["/bin/sh"], **top},
    }


def hostile_release(root: Path, packages: dict[str, list[Member]], *, base: list[Member] | None = None,
                    top: dict | None = None, release: dict | None = None, mirror: str | None = None,
                    scripts: dict[str, dict] | None = None, paths: dict[str, str] | None = None) -> Hostile:
    """A signed repository with FreeBSD-base and *packages*, a src tree and a config building them.

    *scripts* maps a package name to its manifest scripts; *top* adds keys to
    the top flavour; *release* to the release; *mirror* replaces the file://
    URL of the repository (a server in front of it); *paths* gives
    packages a catalogue path the repository writer would refuse.
    """
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "src.git").exists():
        make_src_repo(root / "src.git", {"releng/14.2": src_files()}, time=TIME)
    pkgbase = root / "pkgbase" / f"FreeBSD:14:{ARCH}" / "base_release_2"
    scripts = scripts or {}
    written = [(manifest("FreeBSD-base", ARCH), base if base is not None else BASE_MEMBERS)]
    written += [(manifest(name, ARCH, **({"scripts": scripts[name]} if name in scripts else {})), members)
                for name, members in packages.items()]
    write_package_repo(pkgbase, ARCH, written, hostile_paths=paths)
    config = toml.loads((PROJECT / "config.toml").read_text())
    config["flavours"] = flavours(top_packages=tuple(packages) or ("FreeBSD-base",), **(top or {}))
    config["releases"] = {RELEASE: {
        "version": "14.2-HOSTILE", "branch": "releng/14.2", "repo": "base_release_2", "abi_major": 14,
        "arches": [ARCH], "flavours": ["base", "top"],
        "mirror": mirror or (root / "pkgbase").as_uri() + "/${ABI}/${REPO}",
        "src_url": (root / "src.git").as_uri(), "source": "https://git.freebsd.org/src.git", **(release or {})}}
    path = root / "config.toml"
    path.write_text(toml.dumps(config))
    return Hostile(path, root / "work", pkgbase)


def outside_files(root: Path, before: set[Path]) -> list[Path]:
    """Files under *root* that were not there before (what an attack managed to write)."""
    return sorted(p for p in root.rglob("*") if p not in before)

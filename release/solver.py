"""Package closures per flavour, and the lock files that pin them.

pkg(8) installs a flavour's packages together with everything they depend on:
declared ``deps``, the providers of ``shlibs_required`` and of ``requires``.
FreeBSD's image recipes rely on that (the minimal flavour lists FreeBSD-runtime
and gets FreeBSD-libcasper through its shared-library requirements), so the
solver reproduces it.  Each flavour's lock holds only what its parent chain does
not already have: that is exactly the content of the flavour's layer.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import SolverError
from .records import Lock

# Catalogue fields kept in the lock: enough to download, verify and describe a
# package (SBOM, pkg database) without the catalogue.
LOCKED_FIELDS = ("name", "origin", "version", "comment", "abi", "arch", "prefix", "sum", "path",
                 "pkgsize", "flatsize", "licenselogic", "licenses", "maintainer", "www")


@dataclass(frozen=True)
class Resolved:
    """One package chosen for a flavour and why (the first reason found)."""
    name: str
    reason: str


class Universe:
    """Index of a catalogue for the solver: packages by name, providers of shlibs and provides."""

    def __init__(self, packages: Mapping[str, dict[str, Any]], repository: str) -> None:
        self.packages = packages
        self.repository = repository
        # a single provider is kept as its name, several as a list: most libraries have one, and a
        # catalogue of every port has hundreds of thousands of them (see release.jsonstream)
        self.shlib_providers: dict[str, str | list[str]] = {}
        self.providers: dict[str, str | list[str]] = {}
        for name in sorted(packages):
            pkg = packages[name]
            for lib in pkg.get("shlibs_provided", []) or []:
                _add_provider(self.shlib_providers, lib, name)
            for cap in pkg.get("provides", []) or []:
                _add_provider(self.providers, cap, name)

    def providers_of(self, kind: str, what: str) -> list[str]:
        """The packages providing shared library (kind "shlib") or capability *what*, by name."""
        found = (self.shlib_providers if kind == "shlib" else self.providers).get(what, [])
        return [found] if isinstance(found, str) else found

    def requirements(self, name: str) -> Iterable[tuple[str, str, str]]:
        """(kind, what, reason) for each thing package *name* needs."""
        pkg = self.packages[name]
        for dep in sorted(pkg.get("deps", {}) or {}):
            yield "dep", dep, f"dependency of {name}"
        for lib in sorted(pkg.get("shlibs_required", []) or []):
            yield "shlib", lib, f"{lib} for {name}"
        for cap in sorted(pkg.get("requires", []) or []):
            yield "require", cap, f"{cap} for {name}"


def _add_provider(table: dict[str, str | list[str]], what: str, name: str) -> None:
    have = table.get(what)
    if have is None:
        table[what] = name
    elif isinstance(have, str):
        table[what] = [have, name]
    else:
        have.append(name)


def _pick(candidates: list[str], have: set[str]) -> str:
    """Prefer a provider already installed, then the first by name (deterministic)."""
    for c in candidates:
        if c in have:
            return c
    return candidates[0]


def closure(universe: Universe, flavour: str, requested: Iterable[str], installed: set[str]
            ) -> tuple[list[Resolved], list[str]]:
    """Packages to add for *flavour* on top of *installed*, and unresolved shared libraries.

    A requested package or a declared dependency missing from the catalogue is an
    error naming flavour, package and repository.  A shared library nobody in the
    repository provides is recorded, not fatal: pkg(8) also installs without it.
    """
    out: list[Resolved] = []
    have = set(installed)
    unresolved: set[str] = set()
    queue: list[tuple[str, str]] = []
    wanted = set(requested)
    for name in requested:
        if name not in universe.packages:
            raise SolverError(f"flavour {flavour}: package {name} is not in repository {universe.repository}")
        queue.append((name, "requested"))
    while queue:
        name, reason = queue.pop(0)
        if name in have:
            continue
        have.add(name)
        out.append(Resolved(name, reason))
        for kind, what, why in universe.requirements(name):
            if kind == "dep":
                if what not in universe.packages:
                    raise SolverError(f"flavour {flavour}: {name} depends on {what}, which is not in "
                                      f"repository {universe.repository}")
                queue.append((what, why))
            else:
                candidates = universe.providers_of(kind, what)
                if not candidates:
                    unresolved.add(f"{what} (required by {name})")
                    continue
                if not (have | wanted).intersection(candidates):
                    queue.append((_pick(candidates, have), why))
    out.sort(key=lambda r: r.name)
    return out, sorted(unresolved)


def solve(universe: Universe, flavours: list[tuple[str, str | None, tuple[str, ...]]]) -> dict[str, dict[str, Any]]:
    """Resolve every flavour, parents first.  *flavours*: (name, parent, requested packages)."""
    installed_by: dict[str, set[str]] = {}
    result: dict[str, dict[str, Any]] = {}
    for name, parent, requested in flavours:
        base = set(installed_by.get(parent, set())) if parent else set()
        added, unresolved = closure(universe, name, requested, base)
        installed_by[name] = base | {r.name for r in added}
        packages = []
        for r in added:
            entry = {k: universe.packages[r.name][k] for k in LOCKED_FIELDS if k in universe.packages[r.name]}
            entry["path"] = universe.packages[r.name].get("path") or universe.packages[r.name].get("repopath")
            entry["reason"] = r.reason
            packages.append(entry)
        result[name] = {"parent": parent, "requested": list(requested), "packages": packages,
                        "unresolved_shlibs": unresolved}
    return result


def make_lock(*, release: str, arch: str, abi: str, repository: str, catalogue: dict[str, Any], src: dict[str, Any],
              flavours: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "lock_version": Lock.VERSION,
        "release": release,
        "arch": arch,
        "abi": abi,
        "repository": {"url": repository, **catalogue},
        "src": src,
        "flavours": flavours,
    }

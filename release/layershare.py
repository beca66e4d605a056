"""Layers that come out the same for several architectures, built once.

A layer's identity (release.layer) is what its task read: the plan's settings
and the content of the records it names, each package by its sum.  Packages
of two architectures are different files (their manifests name the ABI), so
their identities differ even where the layer cannot: FreeBSD-zoneinfo installs
the same files on every architecture, and the static flavour is zoneinfo plus
steps that read src only.  What decides a layer's bytes is narrower:

- the *share key*: the identity's plan settings without the release and the
  architecture (they say where the records live, not what they hold; what the
  architecture changes in the bytes, its byte order, is a setting of its
  own), the records' content, and the packages by name only;
- each package's *payload*: what installing it puts in the tree and how, i.e.
  every entry's path, kind, mode, owner, group, mtime, link target, flags and
  the sha256 of its content, plus the manifest's install scripts and
  dependencies (install order).  Two packages with equal payloads are the
  same input to a layer, whatever their ABI or manifest generation.

A built layer registers under ``layers/shared/<share key>/<identity>.json``
with its packages' payloads.  A layer about to be built looks there first;
only when a candidate exists does it compute its own packages' payloads (the
layer stage records them as a by-product of installing, in cache/meta, so
this is usually a lookup, else one streaming read per package, stopping at the
first one that differs), and on a full match it takes the built layer instead
of building it again.  Layers whose bytes name the ABI (a pkg database lists
the manifests) or that run target code (under the architecture's executor)
have no share key and are never shared.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .fsutil import canonical_json, identity, write_if_changed
from .pkgfile import PackageReader, PkgEntry, open_package
from .pkgmeta import cached_package
from .plans import LayerPlan
from .records import BuiltLayer, LockedPackage
from .workspace import Workspace

if TYPE_CHECKING:
    from .layer import LayerInputs

ADDRESS_FIELDS = ("release", "arch")        # plan fields that only locate records


class Payload:
    """The payload digest of one package, fed entry by entry as it is read."""

    def __init__(self, scripts: dict[str, str], deps: Iterable[str]) -> None:
        self._h = hashlib.sha256(canonical_json({"scripts": scripts, "deps": sorted(deps)}))

    def add(self, entry: PkgEntry, sha256: str) -> None:
        # NUL-separated: no field of a tar member (path, names, link target) can hold a NUL
        fields = (entry.path, entry.kind, entry.mode, entry.uname, entry.gname, entry.mtime, entry.target,
                  entry.fflags, entry.config, sha256)
        self._h.update("\0".join(map(str, fields)).encode("utf-8", "surrogateescape") + b"\n")

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def for_reader(reader: PackageReader) -> Payload:
    return Payload(reader.scripts, (reader.manifest.get("deps") or {}).keys())


def share_key(plan: LayerPlan, inputs: LayerInputs) -> str | None:
    """The layer's identity with the packages by name and the release/arch left out; None: never shared."""
    if plan.pkgdb is not None or plan.executor is not None:
        return None
    settings = {k: v for k, v in plan.settings().items() if k not in ADDRESS_FIELDS}
    named = {k: v for k, v in inputs.identity_json().items() if k != "packages"}
    return identity({"plan": settings, "inputs": named, "packages": [p.name for p in inputs.packages]})


def _payload_file(ws: Workspace, pkg: LockedPackage) -> Path:
    return ws.package_payload(cached_package(ws, pkg).stem)


def remember_payload(ws: Workspace, pkg: LockedPackage, digest: str) -> None:
    write_if_changed(_payload_file(ws, pkg), digest.encode() + b"\n")


def known_payload(ws: Workspace, pkg: LockedPackage) -> str | None:
    try:
        text = _payload_file(ws, pkg).read_text().strip()
    except OSError:
        return None
    return text if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else None


def payload_of(ws: Workspace, pkg: LockedPackage) -> str:
    """The package's payload digest: remembered by its sum, else read once and remembered."""
    known = known_payload(ws, pkg)
    if known is not None:
        return known
    with open_package(cached_package(ws, pkg), pkg.label) as reader:
        payload = for_reader(reader)
        for entry, stream in reader.entries():
            h = hashlib.sha256()
            if stream is not None:
                while chunk := stream.read(1 << 20):
                    h.update(chunk)
            payload.add(entry, h.hexdigest() if entry.kind == "file" else "")
    digest = payload.hexdigest()
    remember_payload(ws, pkg, digest)
    return digest


def _entries(ws: Workspace, key: str) -> list[Path]:
    directory = ws.shared_layers(key)
    return sorted(directory.glob("*.json")) if directory.is_dir() else []


def find_shared(ws: Workspace, key: str | None, packages: tuple[LockedPackage, ...]) -> BuiltLayer | None:
    """A layer built from the same share key and package payloads, if one was built here."""
    if key is None:
        return None
    ours: dict[str, str] = {}
    by_name = {p.name: p for p in packages}
    for path in _entries(ws, key):
        try:
            theirs = json.loads(path.read_bytes())["payloads"]
            built = BuiltLayer.load(ws.built_layer(path.stem))
        except Exception:       # a damaged or half-pruned entry is not trusted
            continue
        if sorted(theirs) != sorted(by_name) or not ws.blob(built.layer.digest).is_file():
            continue
        for name in sorted(theirs):
            if name not in ours:
                ours[name] = payload_of(ws, by_name[name])
            if ours[name] != theirs[name]:
                break
        else:
            return built
    return None


def register(ws: Workspace, key: str | None, ident: str, packages: tuple[LockedPackage, ...]) -> None:
    """Offer a layer just built (its packages' payloads recorded while installing) to the same share key."""
    payloads = {p.name: known_payload(ws, p) for p in packages}
    if key is None or None in payloads.values():
        return
    path = ws.shared_layers(key) / f"{ident}.json"
    write_if_changed(path, canonical_json({"payloads": dict(sorted(payloads.items()))}))

"""The download tree's signature store: what podman and skopeo need to verify the pushed images.

Published under ``<tree>/signatures/``::

    SIGNING-KEY.asc                          the ASCII-armoured OpenPGP public key
    registries.d/<registry>.yaml             lookaside: <lookaside_url>/<registry>, per namespace
    policy.json                              transports.docker.<registry>/<namespace>: signedBy that key
    <registry>/<namespace>/freebsd-<flavour>@sha256=<hex>/signature-<n>
    builds/<kind>-<version>-<build>.json     which signatures each published build brought

``[signing] lookaside_url`` is where the mirrors serve ``signatures/`` (for
example https://download.freebsd.org/signatures); without it the files name
the tree's own ``file://`` path.

A directory of signatures holds the union of what the published builds
brought.  Releases keep theirs for good (a digest once published as
14.2-RELEASE stays verifiable); a snapshot's leave with it: when no
architecture still has the snapshot's BUILDINFO (publish prunes old dates),
its record goes and signatures no other build claims are dropped.  Each
directory changes in one step: new signatures are appended as the next
``signature-<n>`` (renamed into place), and a directory losing one is rebuilt
beside the old and swapped in with renameat2(RENAME_EXCHANGE), so a reader
always sees a complete, contiguous set.  Republishing the same build changes
no file.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import urllib.parse
from pathlib import Path
from typing import Any

from .config import RegistrySettings
from .errors import InputError
from .fsutil import TMP_PREFIX, atomic_directory, pretty_json, read_json, remove_partials, write_if_changed
from .openpgp import Signer
from .sigstore import (Entry, SIGNATURE_PREFIX, StoreError, layout, lookaside_dirs, read_signature_record,
                       signature_name)
from .plans import PublishPlan
from .records import SrcHead
from .workspace import Workspace

STORE = "signatures"
PUBLIC_KEY_NAME = "SIGNING-KEY.asc"
REGISTRIES_D = "registries.d"
POLICY = "policy.json"
BUILDS = "builds"
RESERVED = {PUBLIC_KEY_NAME, REGISTRIES_D, POLICY, BUILDS}


def store_dir(root: Path) -> Path:
    return root / STORE


def registry_host(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc


def scopes(registries: tuple[RegistrySettings, ...]) -> dict[str, list[str]]:
    """Registry host -> the policy scopes (``host/namespace`` or ``host``) of the configured registries."""
    out: dict[str, list[str]] = {}
    for reg in registries:
        host = registry_host(reg.url)
        out.setdefault(host, []).append(f"{host}/{reg.namespace}" if reg.namespace else host)
    return {h: sorted(set(s)) for h, s in sorted(out.items())}


def lookaside_url(configured: str, root: Path) -> str:
    return (configured or store_dir(root).resolve().as_uri()).rstrip("/")


def registries_d_name(host: str) -> str:
    return host.replace(":", "_") + ".yaml"


def registries_d(host: str, scopes_of_host: list[str], base: str) -> bytes:
    """containers-registries.d(5) for one registry (JSON is YAML, and what the Go parser reads)."""
    doc = {"docker": {scope: {"lookaside": f"{base}/{host}"} for scope in scopes_of_host}}
    return ("# containers-registries.d(5): where podman and skopeo find the signatures of FreeBSD's images\n"
            + json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def policy_snippet(all_scopes: dict[str, list[str]], public_key: bytes) -> bytes:
    """A containers-policy.json(5) requiring the release key's signature for the release repositories."""
    requirement = [{"type": "signedBy", "keyType": "GPGKeys",
                    "keyData": base64.b64encode(public_key).decode("ascii")}]
    doc = {"default": [{"type": "insecureAcceptAnything"}],
           "transports": {"docker": {scope: requirement for scoped in all_scopes.values() for scope in scoped}}}
    return pretty_json(doc)


# --------------------------------------------------------------------------- owners

def _owner_name(plan: PublishPlan, entries: list[Entry]) -> tuple[str, dict[str, Any]]:
    if plan.kind == "snapshot":
        suffix = SrcHead.load(plan.workspace.src_json(plan.release)).suffix
        return (f"snapshot-{plan.version}-{suffix}.json",
                {"kind": "snapshot", "version": plan.version, "suffix": suffix})
    build = hashlib.sha256("".join(sorted(e.sha256 for e in entries)).encode()).hexdigest()[:16]
    return f"release-{plan.version}-{build}.json", {"kind": "release", "version": plan.version}


def _alive(root: Path, owner: dict[str, Any]) -> bool:
    """A release's signatures stay; a snapshot's while some architecture still publishes its build."""
    if owner.get("kind") != "snapshot":
        return True
    base = root / "snapshots" / "OCI-IMAGES" / str(owner.get("version"))
    name = f"BUILDINFO-{owner.get('suffix')}.json"
    try:
        arches = [a for a in base.iterdir() if a.is_dir() and not a.is_symlink()]
    except FileNotFoundError:
        return False
    return any((day / name).is_file() for arch in arches for day in arch.iterdir()
               if day.is_dir() and not day.is_symlink())


def _owners(builds: Path) -> dict[Path, tuple[dict[str, Any], list[Entry]]]:
    out = {}
    for path in sorted(builds.glob("*.json")) if builds.is_dir() else []:
        try:
            doc = read_json(path)
        except ValueError as e:
            raise StoreError(f"{path}: damaged ({e})") from None
        out[path] = (doc, [Entry.load(e, str(path)) for e in doc.get("signatures", [])])
    return out


# --------------------------------------------------------------------------- directories of signatures

def _current(directory: Path) -> list[tuple[str, bytes]]:
    """(sha256, bytes) of signature-1, -2, ... up to the first missing one."""
    out = []
    index = 1
    while (directory / signature_name(index)).is_file():
        data = (directory / signature_name(index)).read_bytes()
        out.append((hashlib.sha256(data).hexdigest(), data))
        index += 1
    return out


def _sync_directory(directory: Path, wanted: list[str], sources: dict[str, bytes]) -> bool:
    """Make *directory* hold the signatures *wanted* (sha256s), keeping the order of those it has."""
    current = _current(directory) if directory.is_dir() else []
    have = [sha for sha, _ in current]
    data = {**sources, **dict(current)}
    target = [sha for sha in have if sha in wanted] + [sha for sha in wanted if sha not in have and sha in data]
    extra = [p.name for p in directory.iterdir()] if directory.is_dir() else []
    if target == have and len(extra) == len(have):
        return False
    if not target:
        if directory.is_dir():
            gone = directory.with_name(f"{TMP_PREFIX}{directory.name}.{os.getpid()}")
            os.replace(directory, gone)
            shutil.rmtree(gone, ignore_errors=True)
        return True
    if target[:len(have)] == have and len(extra) == len(have):
        for index in range(len(have) + 1, len(target) + 1):     # append: each file renamed into place
            write_if_changed(directory / signature_name(index), data[target[index - 1]])
        return True
    with atomic_directory(directory) as stage:                  # anything else: rebuilt and swapped in
        for index, sha in enumerate(target, 1):
            (stage / signature_name(index)).write_bytes(data[sha])
    return True


def _remove_empty_parents(path: Path, stop: Path) -> None:
    while path != stop and path.is_dir() and not any(path.iterdir()):
        path.rmdir()
        path = path.parent



def store_registries(store: Path) -> list[str]:
    """The registries a published store holds signatures for (its directories but the reserved ones)."""
    if not store.is_dir():
        return []
    return sorted(p.name for p in store.iterdir()
                  if p.is_dir() and not p.is_symlink() and p.name not in RESERVED and not p.name.startswith("."))


def _sync(store: Path, entries: list[Entry], sources: dict[str, bytes]) -> int:
    wanted = {d: [e.sha256 for e in es] for d, es in layout(entries).items()}
    present = {d.relative_to(store).as_posix() for host in store_registries(store)
               for d in lookaside_dirs(store, host)}
    changed = 0
    for rel in sorted(present | set(wanted)):
        directory = store / rel
        directory.parent.mkdir(parents=True, exist_ok=True)
        remove_partials(directory.parent)
        changed += _sync_directory(directory, wanted.get(rel, []), sources)
        _remove_empty_parents(directory.parent, store)
    return changed


# --------------------------------------------------------------------------- publish

def _release_sources(ws: Workspace, release: str, entries: list[Entry]) -> dict[str, bytes]:
    """sha256 -> bytes of the release's signature files in the work directory."""
    root = ws.signatures_dir(release)
    out = {}
    for directory in {e.directory for e in entries}:
        for path in sorted((root / directory).glob(SIGNATURE_PREFIX + "*")):
            data = path.read_bytes()
            out[hashlib.sha256(data).hexdigest()] = data
    missing = [e for e in entries if e.sha256 not in out]
    if missing:
        raise StoreError(f"{root / missing[0].directory}: the signature of {missing[0].identity} is missing; "
                         "push again")
    return out


def publish_signatures(plan: PublishPlan, root: Path, signer: Signer | None) -> dict[str, Any]:
    """Bring the release's image signatures into the tree's store, drop those of pruned snapshots."""
    ws, release = plan.workspace, plan.release
    store = store_dir(root)
    fingerprint, entries = read_signature_record(ws.signatures_record(release))
    if signer is None:
        entries = []                    # no OpenPGP key configured: nothing to add, pruning still happens
    elif entries and fingerprint != signer.fingerprint:
        raise InputError(f"{ws.signatures_record(release)}: the images were signed with OpenPGP key "
                         f"{fingerprint}, but the configured key is {signer.fingerprint}: push again with "
                         "the key that publishes")
    if not entries and signer is None and not store.is_dir():
        return {"signatures": 0, "directories_changed": 0}
    owner = _owner_name(plan, entries) if entries else None
    changed = update_store(root, owner, entries, _release_sources(ws, release, entries))
    if signer is not None:
        _write_configuration(plan, root, store, signer)
    return {"signatures": len(entries), "directories_changed": changed}


def update_store(root: Path, owner: tuple[str, dict[str, Any]] | None, entries: list[Entry],
                 sources: dict[str, bytes]) -> int:
    """Record *owner*'s *entries* (if any), then make the store hold what the live builds claim.

    Returns the number of signature directories changed.  *sources* holds the
    bytes of the owner's signatures (sha256 -> bytes).
    """
    store = store_dir(root)
    builds = store / BUILDS
    store.mkdir(parents=True, exist_ok=True)
    name = ""
    if owner is not None:
        name, doc = owner
        write_if_changed(builds / name, pretty_json({**doc, "signatures": [
            {k: getattr(e, k) for k in ("registry", "repository", "digest", "identity", "sha256")}
            for e in sorted(entries, key=lambda e: (e.directory, e.identity))]}))
    owners = _owners(builds)
    alive = {p: es for p, (doc, es) in owners.items() if p.name == name or _alive(root, doc)}
    changed = _sync(store, [e for es in alive.values() for e in es], sources)
    for path in set(owners) - set(alive):
        path.unlink()
    return changed


def _write_configuration(plan: PublishPlan, root: Path, store: Path, signer: Signer) -> None:
    public_key = signer.public_key()
    write_if_changed(store / PUBLIC_KEY_NAME, public_key)
    all_scopes = scopes(plan.registries)
    base = lookaside_url(plan.signing.lookaside_url, root)
    for host, host_scopes in all_scopes.items():
        write_if_changed(store / REGISTRIES_D / registries_d_name(host), registries_d(host, host_scopes, base))
    if all_scopes:
        write_if_changed(store / POLICY, policy_snippet(all_scopes, public_key))

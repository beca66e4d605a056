"""containers' OpenPGP "simple signing": signatures of the pushed images, in a lookaside store.

podman and skopeo (containers/image) verify an image pulled from a registry
against a policy (``signedBy`` a GPG key) with signatures they fetch from a
"lookaside" web site or directory, configured per registry namespace in
registries.d (docker/registries_d.go, containers/image 5.23)::

    <lookaside>/<repository path>@sha256=<hex>/signature-1, signature-2, ...

read in order until the first one that is missing.  Each file is an OpenPGP
signed message (release/openpgp.py) whose literal data is the JSON payload of
signature/simple.go, spelled as Go's encoding/json writes it::

    {"critical":{"identity":{"docker-reference":"<registry>/<repository>:<tag>"},
                 "image":{"docker-manifest-digest":"sha256:<hex>"},
                 "type":"atomic container signature"},
     "optional":{"creator":"<user agent>","timestamp":<unix seconds>}}

The identity carries the tag: with the default ``matchRepoDigestOrExact``
(signature/policy_reference_match.go) a pull by tag accepts only a signature
for exactly that tag, and a pull by digest one for the same repository.  A copy
from a multi-arch index checks the per-arch manifest it copies (copy/copy.go,
copyOneImage) under the reference that was asked for, so every per-arch
manifest and every index is signed once per pushed tag.

Two stores: ``push`` writes the release's signatures under
``out/<release>/signatures/`` (itself a lookaside tree, usable as file://) with
a record of what each file signs; ``publish`` merges them into the download
tree's ``signatures/`` (:mod:`release.sigpublish`).  A signature that is
already there for the same identity, digest and key is kept, never re-made:
re-pushing and republishing change nothing.
"""
from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .cosign import parse_simple_signing, simple_signing_payload, SimpleSigning
from .errors import InputError, SignatureError
from .fsutil import TMP_PREFIX, pretty_json, read_json, write_if_changed
from .openpgp import Signer, Verifier, open_signer
from .plans import KeySettings
from .workspace import Workspace

ATOMIC_TYPE = "atomic container signature"
SIGNATURE_PREFIX = "signature-"


class StoreError(InputError):
    """A signature store or its record is not what this pipeline wrote."""


def configured_signer(keys: KeySettings) -> AbstractContextManager[Signer | None]:
    """The OpenPGP signer of [signing] (a context manager yielding None when none is configured)."""
    return open_signer(keys.openpgp_key, keys.gnupg_home)


def lookaside_dir(repository: str, digest: str) -> str:
    """``freebsd/freebsd-static@sha256=<hex>``: docker/registries_d.go's lookasideStorageURL, less the index."""
    algorithm, _, hexdigest = digest.partition(":")
    return f"{repository}@{algorithm}={hexdigest}"


def signature_name(index: int) -> str:
    """The n-th signature file (1-based), as containers/image asks for it."""
    return f"{SIGNATURE_PREFIX}{index}"


def atomic_payload(identity: str, digest: str, creator: str, timestamp: int) -> bytes:
    """The simple-signing payload for *identity* (registry/repository:tag) at *digest*."""
    return simple_signing_payload(identity, digest, {"creator": creator, "timestamp": timestamp},
                                  signature_type=ATOMIC_TYPE)


def parse_atomic(payload: bytes) -> SimpleSigning:
    return parse_simple_signing(payload, ATOMIC_TYPE)


@dataclass(frozen=True)
class Entry:
    """One signature file: who it names (identity), what it signs (digest), where it lives."""
    registry: str               # host[:port], as the identity spells it
    repository: str             # path in the registry: <namespace>/freebsd-<flavour>
    digest: str
    identity: str               # <registry>/<repository>:<tag>
    sha256: str                 # of the signature file's bytes

    @property
    def directory(self) -> str:
        """The entry's lookaside directory, relative to a store's root."""
        return f"{self.registry}/{lookaside_dir(self.repository, self.digest)}"

    @classmethod
    def load(cls, doc: dict[str, Any], where: str) -> Entry:
        try:
            entry = cls(**{k: str(doc[k]) for k in ("registry", "repository", "digest", "identity", "sha256")})
        except (KeyError, TypeError):
            raise StoreError(f"{where}: not a signature entry: {doc!r}"[:300]) from None
        if ".." in entry.directory.split("/") or entry.directory.startswith("/"):
            raise StoreError(f"{where}: unsafe signature path {entry.directory!r}")
        return entry


def layout(entries: Iterable[Entry]) -> dict[str, list[Entry]]:
    """Directory -> its entries, ordered by identity then bytes: signature-1 is the first."""
    out: dict[str, list[Entry]] = {}
    for entry in sorted(set(entries), key=lambda e: (e.directory, e.identity, e.sha256)):
        out.setdefault(entry.directory, []).append(entry)
    return out


def read_signature_record(path: Path) -> tuple[str, list[Entry]]:
    """(key fingerprint, entries) of a push's record; ("", []) when there is none."""
    try:
        doc = read_json(path)
    except FileNotFoundError:
        return "", []
    except ValueError as e:
        raise StoreError(f"{path}: damaged ({e}); push again") from None
    return str(doc.get("fingerprint", "")), [Entry.load(e, str(path)) for e in doc.get("signatures", [])]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- push: the release's own store

class PushSignatures:
    """The OpenPGP signatures of one release's pushed references, kept in the work directory.

    ``sign()`` for every (registry, repository, tags, digests) pushed, then
    ``save()``: the lookaside tree is rewritten to exactly those signatures
    (unchanged files untouched) and the record lists them.  A signature the
    record already holds for the same identity, digest and key is reused.
    """

    def __init__(self, ws: Workspace, release: str, signer: Signer, creator: str) -> None:
        self.root = ws.signatures_dir(release)
        self.record = ws.signatures_record(release)
        self.signer = signer
        self.creator = creator
        self.signed = 0
        self._entries: dict[tuple[str, str], Entry] = {}
        self._data: dict[str, bytes] = {}
        fingerprint, old = read_signature_record(self.record)
        self._old = {(e.identity, e.digest): e for e in old} if fingerprint == signer.fingerprint else {}
        self._old_files = {e.sha256: self.root / e.directory for e in old}

    def _reuse(self, entry: Entry | None) -> bytes | None:
        if entry is None:
            return None
        directory = self._old_files.get(entry.sha256)
        for path in sorted(directory.glob(SIGNATURE_PREFIX + "*")) if directory and directory.is_dir() else []:
            data = path.read_bytes()
            if _sha256(data) == entry.sha256:
                return data
        return None

    def sign(self, registry: str, repository: str, tags: Iterable[str], digests: Iterable[str]) -> None:
        for digest in digests:
            for tag in tags:
                identity = f"{registry}/{repository}:{tag}"
                data = self._reuse(self._old.get((identity, digest)))
                if data is None:
                    data = self.signer.sign(atomic_payload(identity, digest, self.creator, int(time.time())))
                    self.signed += 1
                entry = Entry(registry, repository, digest, identity, _sha256(data))
                self._entries[(identity, digest)] = entry
                self._data[entry.sha256] = data

    @property
    def count(self) -> int:
        return len(self._entries)

    def save(self) -> int:
        """Write the store and the record; returns how many signatures were made in this push."""
        wanted: set[Path] = set()
        for directory, entries in layout(self._entries.values()).items():
            for index, entry in enumerate(entries, 1):
                path = self.root / directory / signature_name(index)
                write_if_changed(path, self._data[entry.sha256])
                wanted.add(path)
        _remove_unlisted(self.root, wanted)
        write_if_changed(self.record, pretty_json({
            "fingerprint": self.signer.fingerprint,
            "signatures": [asdict(e) for e in sorted(self._entries.values(),
                                                      key=lambda e: (e.directory, e.identity))]}))
        return self.signed


def _remove_unlisted(root: Path, wanted: set[Path]) -> None:
    """Delete the files under *root* that are not *wanted*, then the directories left empty."""
    if not root.is_dir():
        return
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        here = Path(dirpath)
        for name in filenames:
            if here / name not in wanted:
                (here / name).unlink()
        if here != root and not any(here.iterdir()):
            here.rmdir()


# --------------------------------------------------------------------------- checking a store

def lookaside_dirs(store: Path, registry: str) -> list[Path]:
    """The ``<repository>@<algorithm>=<hex>`` directories under *store*/<registry>."""
    found = []
    top = store / registry
    for dirpath, dirnames, _ in os.walk(top):
        for name in list(dirnames):
            if "@" in name and "=" in name.rpartition("@")[2]:
                found.append(Path(dirpath) / name)
                dirnames.remove(name)
            elif name.startswith(TMP_PREFIX):
                dirnames.remove(name)
    return sorted(found)


def check_signature(verifier: Verifier, data: bytes, registry: str, repository: str, digest: str,
                    where: str) -> SimpleSigning:
    """A store file's signature: by a trusted key, for *digest*, naming *registry*/*repository*."""
    payload = verifier.open(data, where)
    try:
        signed = parse_atomic(payload)
    except SignatureError as e:
        raise SignatureError(f"{where}: {e}") from None
    if signed.manifest_digest != digest:
        raise SignatureError(f"{where}: signs {signed.manifest_digest}, not {digest}")
    name, _, tag = signed.docker_reference.rpartition(":")
    if "/" in tag or name != f"{registry}/{repository}":
        raise SignatureError(f"{where}: names {signed.docker_reference!r}, not a tag of {registry}/{repository}")
    return signed


def verify_store(store: Path, registries: Iterable[str], verifier: Verifier) -> list[str]:
    """Problems of a lookaside store: every signature-<n> verifies and names its own directory."""
    problems = []
    for registry in registries:
        for directory in lookaside_dirs(store, registry):
            rel = directory.relative_to(store / registry).as_posix()
            repository, _, tail = rel.rpartition("@")
            algorithm, _, hexdigest = tail.partition("=")
            names = sorted(p.name for p in directory.iterdir())
            count = len([n for n in names if n.startswith(SIGNATURE_PREFIX)])
            expected = [signature_name(i) for i in range(1, count + 1)]
            if sorted(expected) != [n for n in names if n.startswith(SIGNATURE_PREFIX)] or not count:
                problems.append(f"{registry}/{rel}: signature files {names} are not signature-1..{count}")
            for name in expected:
                path = directory / name
                where = f"{registry}/{rel}/{name}"
                try:
                    check_signature(verifier, path.read_bytes(), registry, repository,
                                    f"{algorithm}:{hexdigest}", where)
                except (SignatureError, OSError) as e:
                    problems.append(str(e) if isinstance(e, SignatureError) else f"{where}: {e.strerror}")
    return problems

"""pkg repository catalogues: meta.conf, signed catalogue archives, entries.

A pkgbase repository root holds ``meta.conf`` and one or two catalogue
archives: ``data.pkg`` (pkg >= 2: one JSON object holding every package) and
``packagesite.pkg`` (one compact manifest per line).  Each archive is a tar,
compressed as meta.conf's ``packing_format`` says, holding the payload and its
signature.  This module reads them the way pkg(8) does, but refuses to hand
out a single entry before the signature has been checked against the trust
store, and validates every entry up front so that later steps (solver, cache,
lock, SBOM) can rely on them.  Entries are read one at a time and kept on
disk (release.jsonstream): a catalogue of every port fits in bounded memory.
"""
from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import lzma
import tarfile
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any

import zstandard

from . import ucl
from .errors import IntegrityError, RepositoryError, SignatureError
from .jsonstream import NotAnObject, RowSpool, StreamError, read_document
from .pkgsig import check_fingerprints, check_pubkey
from .sums import sum_kind

PACKING_FORMATS = ("tzst", "txz", "tbz", "tgz", "tar")
SIGNATURE_TYPES = ("fingerprints", "pubkey", "none")
_META_NAMES = ("manifests", "data", "manifests_archive", "filesite", "filesite_archive")
_META_STRINGS = ("maintainer", "source", "source_identifier", "packing_format") + _META_NAMES
_SMALL_MEMBER = 1 << 20  # signatures and keys: anything larger is not one
MAX_PAYLOAD = 8 << 30     # a decompressed payload larger than this is a bomb, not a catalogue


@dataclass(frozen=True)
class RepoMeta:
    """A repository's meta.conf, with pkg's defaults for every absent key.

    ``data_archive`` is always "data": pkg's meta parser never reads that key.
    """

    version: int = 2
    packing_format: str = "tzst"
    manifests: str = "packagesite.yaml"
    data: str = "data"
    manifests_archive: str = "packagesite"
    data_archive: str = "data"
    filesite: str = "filesite.yaml"
    filesite_archive: str = "filesite"
    maintainer: str | None = None
    source: str | None = None
    source_identifier: str | None = None
    revision: int | None = None
    eol: int | None = None


@dataclass(frozen=True)
class CatalogueEntry:
    """One package as the catalogue announces it (before it is fetched)."""

    name: str
    origin: str
    version: str
    comment: str
    abi: str
    arch: str
    prefix: str
    sum: str
    flatsize: int
    pkgsize: int
    path: str
    licenselogic: str
    licenses: tuple[str, ...]
    deps: Mapping[str, tuple[str, str]] = field(hash=False)
    annotations: Mapping[str, str] = field(hash=False)
    raw: Mapping[str, Any] = field(hash=False, compare=False, repr=False)


@dataclass(frozen=True)
class VerifiedCatalogue:
    """A catalogue whose signature checked out; entries are validated too.

    *rows* holds every entry's manifest as the catalogue gave it, on disk;
    *entries* reads them back as CatalogueEntry, in name order.  close() (or
    a with block) drops the rows.
    """

    source: str
    payload_kind: str  # "data" or "packagesite"
    payload_sha256: str
    fingerprint: str | None  # sha256 of the key that signed it; None if unsigned
    rows: RowSpool = field(hash=False, repr=False, compare=False)

    @property
    def entries(self) -> Mapping[str, CatalogueEntry]:
        return _Entries(self.rows, self.source)

    def packages(self) -> dict[str, CatalogueEntry]:
        """Entries by package name (a fresh dict the caller may modify: small catalogues only)."""
        return dict(self.entries)

    def close(self) -> None:
        self.rows.close()

    def __enter__(self) -> VerifiedCatalogue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Entries(Mapping[str, CatalogueEntry]):
    """The spooled rows as CatalogueEntry values, parsed when asked for."""

    def __init__(self, rows: RowSpool, source: str) -> None:
        self._rows, self._source = rows, source

    def __getitem__(self, name: str) -> CatalogueEntry:
        return entry_from_manifest(self._rows[name], self._source, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


# -- meta.conf --------------------------------------------------------------
def parse_meta(text: bytes, source: str) -> RepoMeta:
    """Read meta.conf (or ``meta``) the way pkg_repo_meta_load does.

    Keys are case-insensitive (pkg lowercases them); version 1 and 2 are
    accepted; ``packing_format`` must be one pkg knows; catalogue names must
    be plain file names.
    """
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RepositoryError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    lines: dict[str, int] = {}
    parsed = ucl.loads(decoded, source, key_lines=lines)
    top: dict[str, Any] = {}
    where: dict[str, int] = {}
    for key, value in parsed.items():
        low = key.lower()
        if low in top:
            raise RepositoryError(f"{source}: line {lines[key]}: duplicate key {low!r}")
        top[low], where[low] = value, lines[key]

    def bad(key: str, message: str) -> RepositoryError:
        return RepositoryError(f"{source}: line {where[key]}: {key}: {message}")

    if "version" not in top:
        raise RepositoryError(f"{source}: line 1: no 'version' key, not a pkg repository meta file")
    values: dict[str, Any] = {}
    for key in ("version", "revision", "eol"):
        if key in top:
            if type(top[key]) is not int:
                raise bad(key, f"expected an integer, found {top[key]!r}")
            values[key] = top[key]
    if values["version"] not in (1, 2):
        raise bad("version", f"unsupported repository meta version {values['version']}")
    for key in _META_STRINGS:
        if key in top:
            if not isinstance(top[key], str):
                raise bad(key, f"expected a string, found {top[key]!r}")
            values[key] = top[key]
    if values.get("packing_format", "tzst") not in PACKING_FORMATS:
        raise bad("packing_format", f"unknown packing format {values['packing_format']!r} "
                                    f"(expected one of {', '.join(PACKING_FORMATS)})")
    for key in _META_NAMES:  # they become URLs and local file names
        name = values.get(key, "x")
        if name in ("", ".", "..") or any(c in name for c in "/\\\0") or name.strip() != name:
            raise bad(key, f"{name!r} is not a plain file name")
    return RepoMeta(**values)


def catalogue_candidates(meta: RepoMeta) -> list[str]:
    """Catalogue archive names, in the order pkg tries them.

    pkg (>= 2.0, "use data.pkg instead of packagesite.pkg if available") first
    fetches the data catalogue and falls back to packagesite only when that
    fails; for each it asks for ``<archive>.pkg`` and then
    ``<archive>.<packing_format>``.  No other extension is tried: official
    mirrors keep stale ``.txz`` copies next to fresh ``.pkg`` files.
    """
    names: list[str] = []
    for archive in (meta.data_archive, meta.manifests_archive):
        for ext in ("pkg", meta.packing_format):
            if f"{archive}.{ext}" not in names:
                names.append(f"{archive}.{ext}")
    return names


# -- archives ----------------------------------------------------------------
def _decompressed(raw: IO[bytes]) -> (IO[bytes] | zstandard.ZstdDecompressionReader | lzma.LZMAFile | gzip.GzipFile
                                      | bz2.BZ2File):
    """A stream of tar bytes, choosing the decompressor by magic, not by name."""
    magic = raw.read(6)
    raw.seek(0)
    if magic.startswith(b"\x28\xb5\x2f\xfd"):
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(raw, "rb")
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(raw, "rb")
    if magic.startswith(b"BZh"):
        return bz2.open(raw, "rb")
    return raw


@dataclass
class _Members:
    payload_name: str | None = None
    payload: IO[bytes] | None = None
    payload_sha256: str = ""
    small: dict[str, bytes] = field(default_factory=dict)


def _read_archive(archive: Path, source: str, payload_names: tuple[str, ...]) -> _Members:
    """Stream the tar once: signature members into memory, the payload into an
    anonymous temporary file while hashing it (memory stays bounded)."""
    found = _Members()
    seen: set[str] = set()
    try:
        with open(archive, "rb") as raw, _decompressed(raw) as stream, \
                tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                name = member.name
                if name in seen:
                    raise RepositoryError(f"{source}: member {name!r} appears twice")
                seen.add(name)
                if not (name in payload_names or name == "signature" or name.endswith((".sig", ".pub"))):
                    continue
                if not member.isfile():
                    raise RepositoryError(f"{source}: member {name!r} is not a regular file")
                if name in payload_names:
                    if found.payload_name is not None:
                        raise RepositoryError(f"{source}: holds both {found.payload_name!r} and {name!r}")
                    if member.size > MAX_PAYLOAD:
                        raise RepositoryError(f"{source}: member {name!r} of {member.size} bytes is larger than "
                                              f"any catalogue ({MAX_PAYLOAD})")
                    found.payload_name = name
                    payload = tar.extractfile(member)
                    assert payload is not None  # a regular file (checked above)
                    found.payload, found.payload_sha256 = _spool(payload)
                elif member.size > _SMALL_MEMBER:
                    raise RepositoryError(f"{source}: member {name!r} is too large for a signature or key")
                else:
                    small = tar.extractfile(member)
                    assert small is not None    # a regular file (checked above)
                    found.small[name] = small.read()
    except BaseException as exc:
        if found.payload is not None:
            found.payload.close()
        if isinstance(exc, (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zstandard.ZstdError)):
            raise RepositoryError(f"{source}: not a readable catalogue archive ({exc})") from None
        raise
    return found


def _spool(member: IO[bytes]) -> tuple[IO[bytes], str]:
    digest = hashlib.sha256()
    spool = tempfile.TemporaryFile()  # noqa: SIM115 (returned: the catalogue reads and closes it)
    while chunk := member.read(1 << 20):
        digest.update(chunk)
        spool.write(chunk)
    spool.seek(0)
    return spool, digest.hexdigest()


def open_catalogue(archive: Path, source: str, *, signature_type: str,
                   fingerprints: Path | None = None, pubkey: bytes | None = None,
                   meta: RepoMeta | None = None) -> VerifiedCatalogue:
    """Open a downloaded catalogue archive, verify it, and parse its entries.

    *source* is the archive's URL and names the culprit in every error;
    *signature_type* is the repository configuration's: "fingerprints" (trust
    directory holding ``trusted/`` and ``revoked/``), "pubkey" (PEM key bytes)
    or "none", which accepts unsigned catalogues only: a signed catalogue under
    "none" means the configuration forgot to check it.
    """
    if signature_type not in SIGNATURE_TYPES:
        raise RepositoryError(f"{source}: unknown signature_type {signature_type!r}")
    meta = meta or RepoMeta()
    kinds = {meta.data: "data", meta.manifests: "packagesite"}
    found = _read_archive(Path(archive), source, tuple(kinds))
    if found.payload is None or found.payload_name is None:      # set together by _read_archive
        raise RepositoryError(f"{source}: holds neither {meta.data!r} nor {meta.manifests!r}")
    with found.payload:
        if signature_type == "fingerprints":
            used = check_fingerprints(source, found.small, found.payload_sha256, fingerprints)
        elif signature_type == "pubkey":
            used = check_pubkey(source, found.small.get("signature"), found.payload_sha256, pubkey)
        else:
            if found.small:
                raise SignatureError(f"{source}: signed ({', '.join(sorted(found.small))}) but "
                                     "signature_type is none; configure fingerprints or pubkey")
            used = None
        kind = kinds[found.payload_name]
        context = f"{source}: {found.payload_name}"
        spool = RowSpool()
        try:
            if kind == "data":
                _data_rows(found.payload, context, spool)
            else:
                _collect(_packagesite_rows(found.payload, context), context, spool)
        except BaseException:
            spool.close()
            raise
    return VerifiedCatalogue(source=source, payload_kind=kind, payload_sha256=found.payload_sha256,
                             fingerprint=used, rows=spool)


# -- payloads ------------------------------------------------------------------
def _data_rows(payload: IO[bytes], context: str, spool: RowSpool) -> None:
    """The ``data`` payload: {"groups":[],"expired_packages":[],"packages":[...]}, one package at a time."""
    def add(index: int, row: Any) -> None:
        _add(spool, row, context, f"package #{index + 1}")
    try:
        _, kind = read_document(payload, "packages", add)
    except UnicodeDecodeError as exc:
        raise RepositoryError(f"{context}: not UTF-8 ({exc.reason})") from None
    except NotAnObject:
        kind = None
    except StreamError as exc:
        raise RepositoryError(f"{context}: line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}") from None
    if kind != "array":
        raise RepositoryError(f"{context}: expected a JSON object with a \"packages\" array")


def _packagesite_rows(payload: IO[bytes], context: str) -> Iterator[tuple[str, Any]]:
    """``packagesite.yaml``: despite the name, one compact JSON manifest per line."""
    for number, line in enumerate(payload, 1):
        text = line.rstrip(b"\n")
        if not text.strip():
            raise RepositoryError(f"{context}: line {number}: empty line")
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RepositoryError(f"{context}: line {number}: invalid JSON: {exc.msg}") from None
        except UnicodeDecodeError as exc:
            raise RepositoryError(f"{context}: line {number}: not UTF-8 ({exc.reason})") from None
        yield f"line {number}", row


def _collect(rows: Iterator[tuple[str, Any]], context: str, spool: RowSpool) -> None:
    for label, row in rows:
        _add(spool, row, context, label)


def _add(spool: RowSpool, row: Any, context: str, label: str) -> None:
    """Validate one row and keep it (on disk) under its package name."""
    entry = entry_from_manifest(row, context, label)
    if entry.name in spool:
        raise RepositoryError(f"{context}: {label}: duplicate package {entry.name}")
    spool.add(entry.name, row)


# -- entries ---------------------------------------------------------------------
def entry_from_manifest(row: Any, context: str, label: str) -> CatalogueEntry:
    """Validate one compact manifest plus repository fields (sum, path, pkgsize).

    Errors say ``<context>: <label>: ...`` until the name is known and
    ``<context>: package <name>: ...`` after, because the package name is what
    a release engineer searches for.
    """
    if not isinstance(row, dict):
        raise RepositoryError(f"{context}: {label}: expected a JSON object")
    name = row.get("name")
    if not isinstance(name, str) or not name:
        raise RepositoryError(f"{context}: {label}: missing or empty field 'name'")
    if "/" in name or any(c.isspace() for c in name):
        raise RepositoryError(f"{context}: {label}: bad package name {name!r}")
    here = f"{context}: package {name}"

    def text(key: str, default: str | None = None) -> str:
        value = row.get(key, default)
        if value is None:
            raise RepositoryError(f"{here}: missing field {key!r}")
        if not isinstance(value, str):
            raise RepositoryError(f"{here}: field {key!r} must be a string, not {value!r}")
        return value

    def count(key: str, default: int | None = None) -> int:
        value = row.get(key, default)
        if value is None:
            raise RepositoryError(f"{here}: missing field {key!r}")
        if type(value) is not int or value < 0:
            raise RepositoryError(f"{here}: field {key!r} must be a non-negative integer, not {value!r}")
        return value

    abi, arch = text("abi", ""), text("arch", "")
    if not abi and not arch:
        raise RepositoryError(f"{here}: missing field 'abi'")
    pkg_sum = text("sum")
    try:
        sum_kind(pkg_sum)
    except IntegrityError:
        raise RepositoryError(f"{here}: unrecognised sum {pkg_sum!r}") from None
    return CatalogueEntry(
        name=name, origin=text("origin"), version=text("version"), comment=text("comment", ""),
        abi=abi, arch=arch, prefix=text("prefix", ""), sum=pkg_sum,
        flatsize=count("flatsize", 0), pkgsize=count("pkgsize"), path=_repo_path(row, here),
        licenselogic=text("licenselogic", "single"), licenses=_licenses(row, here),
        deps=MappingProxyType(_deps(row, here)), annotations=MappingProxyType(_annotations(row, here)),
        raw=row)


def _repo_path(row: dict[str, Any], here: str) -> str:
    """``repopath`` (or its manifest spelling ``path``): relative, inside the repo."""
    paths = {row[k] for k in ("repopath", "path") if k in row}
    if len(paths) != 1:
        raise RepositoryError(f"{here}: " + ("missing field 'path'" if not paths
                                             else "'path' and 'repopath' disagree"))
    path = paths.pop()
    if not isinstance(path, str) or not path:
        raise RepositoryError(f"{here}: field 'path' must be a non-empty string")
    # The path becomes a URL, and a file:// URL is percent-decoded before it is opened:
    # "All/%2e%2e/%2e%2e/x" is checked as what it opens, "All/../../x".
    for spelling in (path, urllib.parse.unquote(path, errors="surrogateescape")):
        parts = spelling.split("/")
        if spelling.startswith("/") or ".." in parts or "." in parts or "" in parts \
                or any(c in spelling for c in "\\\0\n"):
            raise RepositoryError(f"{here}: unsafe path {path!r} (must stay inside the repository)")
    return path


def _licenses(row: dict[str, Any], here: str) -> tuple[str, ...]:
    value = row.get("licenses", [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RepositoryError(f"{here}: field 'licenses' must be a list of strings")
    return tuple(value)


def _deps(row: dict[str, Any], here: str) -> dict[str, tuple[str, str]]:
    value = row.get("deps", {})
    if not isinstance(value, dict):
        raise RepositoryError(f"{here}: field 'deps' must be an object")
    deps: dict[str, tuple[str, str]] = {}
    for dep, info in value.items():
        if not isinstance(info, dict) or not isinstance(info.get("origin"), str) \
                or not isinstance(info.get("version"), str):
            raise RepositoryError(f"{here}: dependency {dep!r} needs string 'origin' and 'version'")
        deps[dep] = (info["origin"], info["version"])
    return deps


def _annotations(row: dict[str, Any], here: str) -> dict[str, str]:
    value = row.get("annotations", {})
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise RepositoryError(f"{here}: field 'annotations' must map strings to strings")
    return dict(value)

"""Write a pkg repository's catalogues the way ``pkg repo`` does, byte-stably.

Used by the demo repository generator and by tests: given catalogue entries
(compact manifests plus sum/path/pkgsize, built by the caller from written
.pkg files) it writes ``meta.conf`` and ``meta``, ``data.pkg`` and/or
``packagesite.pkg``, signed like pkg signs them:

- fingerprints (what FreeBSD uses, via a signing command): members
  ``<payload>.sig`` (raw RSA signature) and ``<payload>.pub`` (PEM public key)
  before the payload;
- pubkey (``pkg repo <dir> <key>``): a ``signature`` member holding the RSA
  signature plus the trailing NUL pkg's signer leaves on it.

Either way the signature is RSA PKCS#1 v1.5 with SHA-256 over the ASCII hex
sha256 of the payload.  PKCS#1 v1.5 is deterministic, and so is everything
else here: sorted packages, fixed tar headers (root:wheel 0644, a fixed mtime),
single-threaded compressors at fixed levels, no size or name in frame headers.
"""
from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import zstandard
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.serialization import (Encoding, PublicFormat,
                                                          load_pem_private_key)

from .. import ucl
from ..catalogue import PACKING_FORMATS, SIGNATURE_TYPES, RepoMeta, entry_from_manifest
from ..pkgsig import signed_message
from ..errors import ConfigError, RepositoryError
from ..fsutil import atomic_write

ZSTD_LEVEL = 3  # zstd's default, which libarchive applies when pkg passes no level
XZ_PRESET = 6
CATALOGUE_FORMATS = frozenset({"data", "packagesite"})


def public_key_pem(signing_key: bytes) -> bytes:
    """The PEM public key (SubjectPublicKeyInfo) that goes into ``.pub`` members
    and whose sha256 is the key's trust-store fingerprint."""
    return _private_key(signing_key).public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def fingerprint_file(pub_pem: bytes) -> bytes:
    """A trust-store file for *pub_pem*, laid out like FreeBSD's share/keys/pkg."""
    return f'function: "sha256"\nfingerprint: "{hashlib.sha256(pub_pem).hexdigest()}"\n'.encode()


def meta_text(meta: RepoMeta) -> bytes:
    """meta.conf as pkg_repo_meta_to_ucl + the UCL config emitter write it."""
    fields: dict[str, Any] = {"version": meta.version}
    for key in ("maintainer", "source"):
        if getattr(meta, key) is not None:
            fields[key] = getattr(meta, key)
    fields["packing_format"] = meta.packing_format
    if meta.version == 1:
        fields.update(digest_format="sha256_base32", digests="digests", digests_archive="digests")
    fields.update(manifests=meta.manifests, data=meta.data, filesite=meta.filesite,
                  manifests_archive=meta.manifests_archive, filesite_archive=meta.filesite_archive)
    for key in ("source_identifier", "revision", "eol"):
        if getattr(meta, key) is not None:
            fields[key] = getattr(meta, key)
    return ucl.dumps(fields).encode()


def write_repository(root: Path, entries: list[dict[str, Any]], *, signing_key: bytes | None,
                     signature_type: str, packing_format: str = "tzst",
                     formats: Iterable[str] = CATALOGUE_FORMATS, meta_version: int = 2,
                     legacy_copies: bool = False, mtime: int = 0) -> None:
    """Write meta.conf, meta and the catalogue archives into *root*.

    *formats* picks the catalogues ("data", "packagesite"); *legacy_copies*
    also writes ``<archive>.<packing_format>`` next to ``<archive>.pkg`` (the
    same bytes, as official mirrors serve them); *mtime* stamps every tar
    member.  Entries are validated with the reader's rules first, so this never
    writes a catalogue that open_catalogue would refuse.
    """
    formats = set(formats)
    problems = _check_arguments(signing_key, signature_type, packing_format, formats, meta_version)
    if problems:
        raise ConfigError(problems)
    meta = RepoMeta(version=meta_version, packing_format=packing_format)
    rows = _sorted_entries(entries)
    key = _private_key(signing_key) if signing_key is not None else None
    payloads = {"data": (meta.data_archive, meta.data, _data_payload(rows)),
                "packagesite": (meta.manifests_archive, meta.manifests, _packagesite_payload(rows))}
    for kind in sorted(formats):
        archive, member, payload = payloads[kind]
        tar = _catalogue_tar(member, payload, key, signature_type, mtime)
        packed = compress(tar, packing_format)
        atomic_write(Path(root) / f"{archive}.pkg", packed)
        if legacy_copies:
            atomic_write(Path(root) / f"{archive}.{packing_format}", packed)
    text = meta_text(meta)
    atomic_write(Path(root) / "meta", text)
    atomic_write(Path(root) / "meta.conf", text)


def _check_arguments(signing_key: bytes | None, signature_type: str, packing_format: str,
                     formats: set[str], meta_version: int) -> list[str]:
    problems = []
    if signature_type not in SIGNATURE_TYPES:
        problems.append(f"signature_type: unknown {signature_type!r} (expected one of "
                        f"{', '.join(SIGNATURE_TYPES)})")
    elif (signature_type == "none") != (signing_key is None):
        problems.append(f"signature_type {signature_type}: "
                        + ("a signing key makes no sense" if signing_key else "needs a signing key"))
    if packing_format not in PACKING_FORMATS:
        problems.append(f"packing_format: unknown {packing_format!r}")
    if not formats or not formats <= CATALOGUE_FORMATS:
        problems.append(f"formats: expected a non-empty subset of data, packagesite, not {sorted(formats)}")
    if meta_version not in (1, 2):
        problems.append(f"meta_version: unsupported {meta_version}")
    return problems


def _private_key(pem: bytes) -> rsa.RSAPrivateKey:
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError([f"signing key: cannot read it ({exc})"]) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(["signing key: not an RSA private key"])
    return key


def _sorted_entries(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validated entries in name order; one entry per package name."""
    seen: dict[str, int] = {}
    for index, row in enumerate(entries):
        entry = entry_from_manifest(row, "catalogue entries", f"entry #{index + 1}")
        if entry.name in seen:
            raise RepositoryError(f"catalogue entries: duplicate package {entry.name} "
                                  f"(entries #{seen[entry.name] + 1} and #{index + 1})")
        seen[entry.name] = index
    return [entries[seen[name]] for name in sorted(seen)]


def _compact(row: dict[str, Any]) -> str:
    """pkg's UCL_EMIT_JSON_COMPACT: no spaces, UTF-8 kept, the caller's key order."""
    return json.dumps(row, separators=(",", ":"), ensure_ascii=False)


def _data_payload(rows: list[dict[str, Any]]) -> bytes:
    """One JSON object on one line, as the streamline emitter writes it."""
    packages = ",".join(_compact(row) for row in rows)
    return f'{{"groups":[],"expired_packages":[],"packages":[{packages}]}}'.encode()


def _packagesite_payload(rows: list[dict[str, Any]]) -> bytes:
    return "".join(_compact(row) + "\n" for row in rows).encode()


def _catalogue_tar(member: str, payload: bytes, key: rsa.RSAPrivateKey | None,
                   signature_type: str, mtime: int) -> bytes:
    """Signature members first, then the payload, all root:wheel 0644."""
    members: list[tuple[str, bytes]] = []
    if key is not None:
        digest = hashlib.sha256(payload).hexdigest()
        signature = key.sign(signed_message(digest), padding.PKCS1v15(), SHA256())
        if signature_type == "fingerprints":
            pub = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
            members += [(f"{member}.sig", signature), (f"{member}.pub", pub)]
        else:
            members.append(("signature", signature + b"\0"))
    members.append((member, payload))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, mtime
            info.uid = info.gid = 0
            info.uname, info.gname = "root", "wheel"
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def compress(data: bytes, packing_format: str) -> bytes:
    """*data* compressed as pkg's packing format says, reproducibly."""
    if packing_format == "tzst":
        out = io.BytesIO()
        compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=0, write_checksum=False,
                                              write_content_size=False)
        with compressor.stream_writer(out, closefd=False) as writer:
            writer.write(data)
        return out.getvalue()
    if packing_format == "txz":
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=XZ_PRESET)
    if packing_format == "tgz":
        return gzip.compress(data, compresslevel=9, mtime=0)
    if packing_format == "tbz":
        return bz2.compress(data, compresslevel=9)
    if packing_format == "tar":
        return data
    raise ConfigError([f"packing_format: unknown {packing_format!r}"])

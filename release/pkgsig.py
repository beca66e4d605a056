"""pkg's catalogue signatures: the fingerprints trust store and the pubkey mode.

What pkg signs is the ASCII hex sha256 of the catalogue's payload, with RSA
PKCS#1 v1.5 (libpkg/pkgsign_ossl.c, pkg 2.x; libpkg/pkg_repo.c calls
pkgsign_verify_cert for the fingerprints mode, pkgsign_verify for pubkey).  release.catalogue checks an
archive's signature with these before it reads a single entry; the repository
writer signs with the same message.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from . import ucl
from .errors import RepositoryError, SignatureError

# RSA_verify(NID_sha1, <64-byte hex>, ...) of pubkey-mode repositories signed by
# pkg before OpenSSL 3: a SHA-1 DigestInfo whose "digest" is the hex text itself.
_LEGACY_DIGESTINFO = bytes.fromhex("304d300906052b0e03021a05000440")


def signed_message(payload_sha256: str) -> bytes:
    """What pkg signs: the ASCII hex sha256 of the payload (not the payload)."""
    return payload_sha256.encode("ascii")


def read_fingerprint(text: bytes, source: str) -> str:
    """The sha256 hex in one trust-store file (``function: "sha256"`` UCL)."""
    try:
        doc = ucl.loads(text.decode("utf-8"), source)
    except UnicodeDecodeError:
        raise RepositoryError(f"{source}: not UTF-8 text") from None
    fields = {key.lower(): value for key, value in doc.items()}
    function, fingerprint = fields.get("function"), fields.get("fingerprint")
    if not isinstance(function, str) or not isinstance(fingerprint, str):
        raise RepositoryError(f"{source}: needs string keys 'function' and 'fingerprint'")
    if function.lower() != "sha256":
        raise RepositoryError(f"{source}: unsupported hashing function {function!r}")
    if not re.fullmatch(r"[0-9a-fA-F]{64}", fingerprint):
        raise RepositoryError(f"{source}: fingerprint is not 64 hex digits")
    return fingerprint.lower()


def load_fingerprints(directory: Path) -> frozenset[str]:
    """Every fingerprint in a ``trusted/`` or ``revoked/`` directory.

    A missing directory is empty (pkg tolerates a missing ``revoked/``);
    dot files are skipped; any other unreadable file is an error rather than
    pkg's silent skip, because a broken trust store should stop a release.
    """
    if not directory.is_dir():
        return frozenset()
    found = set()
    for path in sorted(directory.iterdir()):
        if not path.name.startswith(".") and path.is_file():
            found.add(read_fingerprint(path.read_bytes(), str(path)))
    return frozenset(found)


def _rsa_key(pem: bytes, source: str, what: str) -> rsa.RSAPublicKey:
    try:
        key = load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SignatureError(f"{source}: cannot read {what} ({exc})") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureError(f"{source}: {what} is not an RSA key")
    return key


def _verifies(key: rsa.RSAPublicKey, signature: bytes, payload_sha256: str, legacy: bool) -> bool:
    try:
        key.verify(signature, signed_message(payload_sha256), padding.PKCS1v15(), SHA256())
        return True
    except InvalidSignature:
        pass
    if legacy:
        try:
            recovered = key.recover_data_from_signature(signature, padding.PKCS1v15(), None)
        except InvalidSignature:
            return False
        return recovered == _LEGACY_DIGESTINFO + signed_message(payload_sha256)
    return False


def check_fingerprints(source: str, members: dict[str, bytes], payload_sha256: str,
                        fingerprints: Path | None) -> str:
    """pkg_repo_check_fingerprint + rsa_verify_cert: revoked wins, one trusted
    key whose signature verifies suffices.  Returns that key's fingerprint."""
    if fingerprints is None:
        raise SignatureError(f"{source}: signature_type fingerprints needs a fingerprints directory")
    signers: dict[str, dict[str, bytes]] = {}
    for name, data in members.items():
        if name.endswith((".sig", ".pub")):
            signers.setdefault(name[:-4], {})[name[-3:]] = data
    if not any("sig" in parts for parts in signers.values()):
        raise SignatureError(f"{source}: no signature in the archive (no <payload>.sig member)")
    trusted = load_fingerprints(Path(fingerprints) / "trusted")
    if not trusted:
        raise SignatureError(f"{source}: no trusted fingerprints in {Path(fingerprints) / 'trusted'}")
    revoked = load_fingerprints(Path(fingerprints) / "revoked")
    candidates: list[tuple[str, bytes, bytes]] = []
    for name in sorted(signers):
        parts = signers[name]
        if "sig" not in parts or "pub" not in parts:
            have, want = ("sig", "pub") if "sig" in parts else ("pub", "sig")
            raise SignatureError(f"{source}: {name}.{have} has no matching {name}.{want}")
        fingerprint = hashlib.sha256(parts["pub"]).hexdigest()
        if fingerprint in revoked:
            raise SignatureError(f"{source}: key {fingerprint} is revoked")
        if fingerprint in trusted:
            candidates.append((fingerprint, parts["sig"], parts["pub"]))
    if not candidates:
        keys = ", ".join(hashlib.sha256(p["pub"]).hexdigest() for _, p in sorted(signers.items()))
        raise SignatureError(f"{source}: signed by an untrusted key (sha256 {keys})")
    for fingerprint, signature, pub in candidates:
        if _verifies(_rsa_key(pub, source, f"key {fingerprint}"), signature, payload_sha256, legacy=False):
            return fingerprint
    raise SignatureError(f"{source}: signature does not verify (key sha256 {candidates[0][0]})")


def check_pubkey(source: str, signature: bytes | None, payload_sha256: str, pubkey: bytes | None) -> str:
    """The ``signature`` member against the configured key; pkg drops the
    trailing NUL that its signer appends.  Returns the key's fingerprint."""
    if pubkey is None:
        raise SignatureError(f"{source}: signature_type pubkey needs a public key")
    if signature is None:
        raise SignatureError(f"{source}: no signature in the archive (no 'signature' member)")
    key = _rsa_key(pubkey, source, "the configured public key")
    if len(signature) == (key.key_size + 7) // 8 + 1 and signature.endswith(b"\0"):
        signature = signature[:-1]
    if not _verifies(key, signature, payload_sha256, legacy=True):
        raise SignatureError(f"{source}: signature does not verify against the configured public key")
    return hashlib.sha256(pubkey).hexdigest()

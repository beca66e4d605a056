"""The release signing key (ECDSA P-256) and detached signatures of the CHECKSUM files.

Where the key comes from (first that is set wins):

- a path given by the caller, else the file named by ``RELEASE_SIGNING_KEY_FILE``;
- the PEM text itself in ``RELEASE_SIGNING_KEY`` (what a CI secret holds);
- either may be an encrypted PKCS#8 PEM (``openssl pkcs8 -topk8 -v2 aes-256-cbc``);
  its password comes from ``RELEASE_SIGNING_KEY_PASSWORD``.

cosign accepts such a key with ``cosign import-key-pair --key``; cosign's own
encrypted key format is not readable here.  Neither the key nor the password
ever reaches a log line, an exception message, a traceback or a repr, and a
SigningKey refuses to be pickled, so it cannot leak into doit's state files or
worker processes.

Signatures are deterministic (RFC 6979), so signing the same bytes again gives
the same signature file and reruns leave the tree untouched.  In the download
tree each CHECKSUM file gets ``<name>.sig``: the base64 of the DER ECDSA-SHA256
signature, one line, which stock tools verify::

    base64 -d CHECKSUM.SHA256.sig > sig.der
    openssl dgst -sha256 -verify SIGNING-KEY.pub -signature sig.der CHECKSUM.SHA256
    cosign verify-blob --key SIGNING-KEY.pub --signature CHECKSUM.SHA256.sig CHECKSUM.SHA256

``SIGNING-KEY.pub`` (PEM) is published next to them for convenience; trust
comes from the key a user obtained elsewhere (release announcement, src tree).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .checksum import ALGORITHMS, checksum_file_name, verify_checksums
from .errors import InputError
from .fsutil import write_if_changed

log = logging.getLogger("release.signing")

KEY_FILE_ENV = "RELEASE_SIGNING_KEY_FILE"
KEY_ENV = "RELEASE_SIGNING_KEY"
PASSWORD_ENV = "RELEASE_SIGNING_KEY_PASSWORD"
PUBLIC_KEY_NAME = "SIGNING-KEY.pub"
SIGNATURE_SUFFIX = ".sig"


class SigningKeyError(InputError):
    """The signing key is missing, unreadable, wrongly protected or not ECDSA P-256."""


def _ecdsa() -> ec.ECDSA:
    return ec.ECDSA(hashes.SHA256(), deterministic_signing=True)


def public_key_pem(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM: what openssl, cosign and containers/image policies read."""
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_fingerprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """sha256 hex of the DER public key: a safe way to name a key in logs and messages."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


class SigningKey:
    """An ECDSA P-256 private key that signs but never shows itself."""

    __slots__ = ("_key", "source")

    def __init__(self, private_key: ec.EllipticCurvePrivateKey, source: str) -> None:
        self._key = private_key
        self.source = source

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()

    def public_pem(self) -> bytes:
        return public_key_pem(self.public_key)

    def sign(self, data: bytes) -> bytes:
        """DER-encoded ECDSA-SHA256 signature of *data* (deterministic, RFC 6979)."""
        return self._key.sign(data, _ecdsa())

    def __repr__(self) -> str:
        return f"<SigningKey P-256 from {self.source} sha256:{key_fingerprint(self.public_key)[:16]}>"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("a SigningKey cannot be pickled (it would write the private key out)")


def _parse_private_key(pem: bytes, password: bytes | None, source: str) -> SigningKey:
    """Load *pem*; every failure becomes a one-line SigningKeyError raised with no chained context."""
    if b"SIGSTORE PRIVATE KEY" in pem or b"COSIGN PRIVATE KEY" in pem:
        raise SigningKeyError(f"{source}: cosign's encrypted key format is not supported; use a PKCS#8 "
                              "PEM key (cosign import-key-pair turns one into a cosign key)")
    problem = ""
    key = None
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except TypeError:  # password given for a clear key, or missing for an encrypted one
        problem = (f"encrypted, set {PASSWORD_ENV}" if password is None
                   else f"not encrypted, but {PASSWORD_ENV} is set: refusing an unprotected key")
    except (ValueError, UnsupportedAlgorithm):
        problem = (f"cannot decrypt it: wrong {PASSWORD_ENV} or a damaged key" if password is not None
                   else "not a PEM private key")
    if problem:  # raised here, outside the except block, so no traceback carries the original error
        raise SigningKeyError(f"{source}: {problem}")
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SigningKeyError(f"{source}: not an ECDSA P-256 (prime256v1) private key")
    signing_key = SigningKey(key, source)
    log.debug("signing key loaded: %r", signing_key)
    return signing_key


def load_signing_key(path: str | os.PathLike[str] | None = None, *,
                     environ: Mapping[str, str] | None = None) -> SigningKey:
    """The release signing key from *path*, $RELEASE_SIGNING_KEY_FILE or $RELEASE_SIGNING_KEY."""
    env = os.environ if environ is None else environ
    password = env.get(PASSWORD_ENV)
    secret = password.encode() if password else None
    if path is None and env.get(KEY_FILE_ENV):
        path = env[KEY_FILE_ENV]
    if path is not None:
        source = str(path)
        try:
            pem = Path(path).read_bytes()
        except OSError as e:
            raise SigningKeyError(f"{source}: cannot read the signing key ({e.strerror})") from None
    elif env.get(KEY_ENV):
        source = f"${KEY_ENV}"
        pem = env[KEY_ENV].encode()
    else:
        raise SigningKeyError(f"no signing key: set {KEY_FILE_ENV} (a PEM file) or {KEY_ENV} (the PEM text)")
    return _parse_private_key(pem, secret, source)


def load_public_key(source: bytes | str | os.PathLike[str]) -> ec.EllipticCurvePublicKey:
    """An ECDSA P-256 public key from PEM bytes or a PEM file path."""
    if isinstance(source, bytes):
        pem, where = source, "public key"
    else:
        where = str(source)
        try:
            pem = Path(source).read_bytes()
        except OSError as e:
            raise SigningKeyError(f"{where}: cannot read the public key ({e.strerror})") from None
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SigningKeyError(f"{where}: not an ECDSA P-256 public key in PEM")
    return key


def verify(public_key: ec.EllipticCurvePublicKey, data: bytes, signature: bytes) -> bool:
    """True when *signature* (DER ECDSA-SHA256) is *public_key*'s signature of *data*."""
    try:
        public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


# --- detached signatures in the download tree ------------------------------------

def signature_file_name(name: str) -> str:
    return name + SIGNATURE_SUFFIX


def encode_signature(signature: bytes) -> bytes:
    """A .sig file's bytes: base64 of the DER signature and a newline."""
    return base64.b64encode(signature) + b"\n"


def decode_signature(text: bytes) -> bytes:
    """The DER signature in a .sig file (surrounding white space allowed); ValueError otherwise."""
    try:
        return base64.b64decode(b"".join(text.split()), validate=True)
    except binascii.Error:
        raise ValueError("not base64") from None


def _checksum_names(directory: Path, suffix: str) -> list[str]:
    return [checksum_file_name(a, suffix) for a in ALGORITHMS
            if (directory / checksum_file_name(a, suffix)).is_file()]


def sign_checksums(directory: str | os.PathLike[str], key: SigningKey, suffix: str = "") -> list[str]:
    """Write ``CHECKSUM.*.sig`` for the CHECKSUM files in *directory* and SIGNING-KEY.pub.

    Returns the names of the files this step owns (written or already right).
    A signature that already verifies with *key* is left alone.
    """
    directory = Path(directory)
    names = _checksum_names(directory, suffix)
    if len(names) != len(ALGORITHMS):
        missing = sorted(set(checksum_file_name(a, suffix) for a in ALGORITHMS) - set(names))
        raise InputError(f"{directory}: {', '.join(missing)} missing, nothing to sign")
    outputs = []
    for name in names:
        data = (directory / name).read_bytes()
        sig_path = directory / signature_file_name(name)
        if not signature_ok(sig_path, key.public_key, data):
            write_if_changed(sig_path, encode_signature(key.sign(data)))
        outputs.append(sig_path.name)
    write_if_changed(directory / PUBLIC_KEY_NAME, key.public_pem())
    outputs.append(PUBLIC_KEY_NAME)
    return outputs


def signature_ok(sig_path: Path, public_key: ec.EllipticCurvePublicKey, data: bytes) -> bool:
    """The detached signature file *sig_path* exists and verifies *data* with *public_key*."""
    try:
        return verify(public_key, data, decode_signature(sig_path.read_bytes()))
    except (OSError, ValueError):
        return False


def verify_tree(directory: str | os.PathLike[str], public_key: ec.EllipticCurvePublicKey,
                suffix: str = "") -> list[str]:
    """Problems with a download directory's signatures and checksums; empty when all is well.

    First each CHECKSUM file's detached signature (missing, not base64, does not
    verify with *public_key*) and a published SIGNING-KEY.pub that is not
    *public_key*; then release.checksum.verify_checksums over the archives.
    """
    directory = Path(directory)
    problems: list[str] = []
    for name in _checksum_names(directory, suffix):
        sig_name = signature_file_name(name)
        try:
            signature = decode_signature((directory / sig_name).read_bytes())
        except FileNotFoundError:
            problems.append(f"{sig_name}: missing")
            continue
        except ValueError:
            problems.append(f"{sig_name}: not a base64 signature")
            continue
        if not verify(public_key, (directory / name).read_bytes(), signature):
            problems.append(f"{sig_name}: does not verify {name} with key "
                            f"sha256:{key_fingerprint(public_key)[:16]}")
    published = directory / PUBLIC_KEY_NAME
    if published.is_file():
        try:
            same = key_fingerprint(load_public_key(published)) == key_fingerprint(public_key)
        except SigningKeyError:
            same = False
        if not same:
            problems.append(f"{PUBLIC_KEY_NAME}: is not the trusted key sha256:{key_fingerprint(public_key)[:16]}")
    problems.extend(verify_checksums(directory, suffix))
    return problems

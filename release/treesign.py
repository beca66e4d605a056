"""Who signs a published directory's CHECKSUM files, and checking that they did.

FreeBSD publishes its release checksums signed.  A published directory (a
release's ``Latest/``, a snapshot's date directory) gets, per CHECKSUM file:

- with the ECDSA key (release/signing.py): ``CHECKSUM.SHA256.sig`` and ``SIGNING-KEY.pub``;
- with the OpenPGP key (release/openpgp.py): ``CHECKSUM.SHA256.asc``, an
  ASCII-armoured detached signature by the primary key, and ``SIGNING-KEY.asc``::

      gpg --import SIGNING-KEY.asc      # after checking its fingerprint out of band
      gpg --verify CHECKSUM.SHA256.asc CHECKSUM.SHA256

Snapshot directories name them after the suffixed CHECKSUM file
(``CHECKSUM.SHA256-<suffix>.asc``); Latest links to them under the plain names.
A signature that already verifies with the configured key is left alone, so
republishing rewrites nothing.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .attest import signing_key
from .checksum import ALGORITHMS, checksum_file_name
from .errors import SignatureError
from .fsutil import write_if_changed
from .openpgp import Signer, Verifier, open_verifier
from .plans import KeySettings
from .signing import PUBLIC_KEY_NAME as ECDSA_KEY_NAME, SIGNATURE_SUFFIX, SigningKey, sign_checksums, signature_ok
from .sigstore import configured_signer

ASC_SUFFIX = ".asc"
OPENPGP_KEY_NAME = "SIGNING-KEY.asc"


def _checksums(suffix: str) -> list[str]:
    return [checksum_file_name(a, suffix) for a in ALGORITHMS]


def openpgp_problems(directory: Path, verifier: Verifier, suffix: str = "",
                     published_key: bytes | None = None) -> list[str]:
    """What is wrong with the directory's ``.asc`` signatures (and SIGNING-KEY.asc), one line each."""
    problems = []
    for name in _checksums(suffix):
        sig = directory / (name + ASC_SUFFIX)
        try:
            verifier.check_detached(sig.read_bytes(), directory / name, sig.name)
        except FileNotFoundError:
            problems.append(f"{sig.name}: missing")
        except SignatureError as e:
            problems.append(str(e))
    key = directory / OPENPGP_KEY_NAME
    if published_key is not None:                  # publishing: exactly the key it exports
        if not key.is_file() or key.read_bytes() != published_key:
            problems.append(f"{OPENPGP_KEY_NAME}: missing or not the signing key")
    elif key.is_file() and verifier.fingerprints_in(key.read_bytes()) != verifier.trusted:
        problems.append(f"{OPENPGP_KEY_NAME}: is not the trusted key {verifier.describe()}")
    return problems


@dataclass(frozen=True)
class _OpenPGPKey:
    """The OpenPGP signer, a verifier trusting its key, and the key as SIGNING-KEY.asc publishes it."""

    signer: Signer
    verifier: Verifier
    public: bytes


class TreeSigners:
    """The configured keys, as publish uses them on one directory at a time."""

    def __init__(self, ecdsa: SigningKey | None, openpgp: tuple[Signer, Verifier] | None) -> None:
        self.ecdsa = ecdsa
        self._pgp = _OpenPGPKey(openpgp[0], openpgp[1], openpgp[0].public_key()) if openpgp is not None else None

    @property
    def openpgp(self) -> Signer | None:
        return self._pgp.signer if self._pgp is not None else None

    def names(self, suffix: str = "") -> dict[str, str]:
        """Signature and key files of a directory: name there -> plain name (what Latest calls it)."""
        out = {}
        for plain, name in zip(_checksums(""), _checksums(suffix), strict=True):
            if self.ecdsa is not None:
                out[name + SIGNATURE_SUFFIX] = plain + SIGNATURE_SUFFIX
            if self._pgp is not None:
                out[name + ASC_SUFFIX] = plain + ASC_SUFFIX
        if self.ecdsa is not None:
            out[ECDSA_KEY_NAME] = ECDSA_KEY_NAME
        if self._pgp is not None:
            out[OPENPGP_KEY_NAME] = OPENPGP_KEY_NAME
        return out

    def sign(self, directory: Path, suffix: str = "") -> None:
        if self.ecdsa is not None:
            sign_checksums(directory, self.ecdsa, suffix)
        if self._pgp is not None:
            for name in _checksums(suffix):
                sig = directory / (name + ASC_SUFFIX)
                if not self._asc_ok(self._pgp.verifier, sig, directory / name):
                    write_if_changed(sig, self._pgp.signer.detach_sign((directory / name).read_bytes()))
            write_if_changed(directory / OPENPGP_KEY_NAME, self._pgp.public)

    @staticmethod
    def _asc_ok(verifier: Verifier, sig: Path, data: Path) -> bool:
        try:
            verifier.check_detached(sig.read_bytes(), data, sig.name)
        except (OSError, SignatureError):
            return False
        return True

    def problems(self, directory: Path, suffix: str = "") -> list[str]:
        """Signatures a publish would have to (re)make: empty when every one verifies."""
        problems = []
        if self.ecdsa is not None:
            for name in _checksums(suffix):
                path = directory / name
                sig = path.with_name(path.name + SIGNATURE_SUFFIX)
                data = path.read_bytes() if path.is_file() else None
                if data is None or not signature_ok(sig, self.ecdsa.public_key, data):
                    problems.append(sig.name)
        if self._pgp is not None:
            problems += openpgp_problems(directory, self._pgp.verifier, suffix, self._pgp.public)
        return problems


@contextlib.contextmanager
def tree_signers(keys: KeySettings) -> Iterator[TreeSigners]:
    """The keys configured for the download tree (either, both or none), for a with block."""
    ecdsa = signing_key(keys)
    with configured_signer(keys) as openpgp:
        if openpgp is None:
            yield TreeSigners(ecdsa, None)
            return
        with open_verifier(openpgp.public_key(), openpgp.source) as verifier:
            yield TreeSigners(ecdsa, (openpgp, verifier))

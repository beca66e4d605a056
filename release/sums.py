"""Package sums as pkg(8) writes them.

pkg <= 2.7 records a package's (and a file's) sum as sha256 hex; pkg >= 2.8
writes ``2$`` followed by the z-base32 spelling of a BLAKE2b-512 digest; old
manifests mark file sums ``1$<sha256 hex>``.  The package cache and the layer
writer accept every spelling and compute them while streaming.
"""
from __future__ import annotations

import hashlib
import re

from .errors import IntegrityError

ZBASE32 = "ybndrfg8ejkmcpqxot1uwisza345h769"
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_ZB32 = re.compile(r"^[%s]+$" % ZBASE32)


def zbase32(data: bytes) -> str:
    """pkg's z-base32: 5 bits at a time, least significant bits first."""
    out = []
    acc = 0
    bits = 0
    for byte in data:
        acc |= byte << bits
        bits += 8
        while bits >= 5:
            out.append(ZBASE32[acc & 31])
            acc >>= 5
            bits -= 5
    if bits:
        out.append(ZBASE32[acc & 31])
    return "".join(out)


def sum_kind(sum_text: str) -> str:
    """'sha256' or 'blake2b' for a catalogue/manifest sum, else IntegrityError."""
    if _SHA256_HEX.match(sum_text):
        return "sha256"
    if sum_text.startswith("1$") and _SHA256_HEX.match(sum_text[2:]):
        return "sha256"
    if sum_text.startswith("2$") and _ZB32.match(sum_text[2:]):
        return "blake2b"
    raise IntegrityError(f"unrecognised package sum {sum_text!r}")


class Summer:
    """Computes sha256 and BLAKE2b-512 of a stream at once."""

    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()
        self.blake2b = hashlib.blake2b(digest_size=64)
        self.size = 0

    def update(self, chunk: bytes | memoryview) -> None:
        self.sha256.update(chunk)
        self.blake2b.update(chunk)
        self.size += len(chunk)

    @property
    def sha256_hex(self) -> str:
        return self.sha256.hexdigest()

    @property
    def pkg2(self) -> str:
        return "2$" + zbase32(self.blake2b.digest())

    def spelling(self, kind: str) -> str:
        """The sum in the same spelling as the catalogue's (for comparing)."""
        return self.pkg2 if kind == "blake2b" else self.sha256_hex

    def matches(self, expected: str) -> bool:
        kind = sum_kind(expected)
        if kind == "blake2b":
            return self.pkg2 == expected
        return self.sha256_hex == expected.removeprefix("1$")


def sha256_sum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pkg2_sum(data: bytes) -> str:
    """``2$`` BLAKE2b sum of *data* (file contents, or a symlink's target)."""
    return "2$" + zbase32(hashlib.blake2b(data, digest_size=64).digest())

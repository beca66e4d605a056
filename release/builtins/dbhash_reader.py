"""Reading db(3) hash files: an independent check of what dbhash.HashWriter writes.

Written from the on-disk layout (header, bucket pages, overflow chains, big
pairs), not from the writer's insertion code, so a writer bug cannot hide itself.
"""
from __future__ import annotations

import struct
from collections.abc import Iterator

from .dbhash_pages import (BIG_ENDIAN, HashFileError, LITTLE_ENDIAN, _FULL_KEY_DATA, _HDRSIZE, _HEADER,
                           _H_CHARKEY, _MAGIC, _MIN_BSIZE, _OVFLPAGE, _PARTIAL_KEY, _REAL_KEY, _SPLITMASK,
                           _SPLITSHIFT, _log2)

class _Reader:
    """The on-disk layout seen from outside: header, bucket chains, big pairs."""

    def __init__(self, data: bytes) -> None:
        if len(data) < _HDRSIZE:
            raise HashFileError(f"hash file: {len(data)} bytes, shorter than its header")
        hdr = _HEADER.unpack_from(data)
        magic, version, lorder, bsize, bshift = hdr[:5]
        self.lorder: int = lorder
        self.bsize: int = bsize
        if magic != _MAGIC or version not in (1, 2):
            raise HashFileError(f"hash file: bad magic {magic:#x} or version {version}")
        if hdr[16] != _H_CHARKEY:
            raise HashFileError("hash file: h_charkey does not match the default hash")
        if self.lorder not in (LITTLE_ENDIAN, BIG_ENDIAN) or not (
                _MIN_BSIZE <= self.bsize <= 65536 and self.bsize == 1 << bshift):
            raise HashFileError(f"hash file: bad lorder {self.lorder} or bsize {self.bsize}")
        self.max_bucket: int = hdr[10]
        self.hdrpages: int = hdr[15]
        self.spares: tuple[int, ...] = hdr[17:49]
        self.data = data
        self._u16 = struct.Struct(">H" if self.lorder == BIG_ENDIAN else "<H")
        self.pages = len(data) // self.bsize + 2
        self.budget = 0

    def page(self, addr: int, is_bucket: bool) -> tuple[bytes, list[int]]:
        """The page's bytes and its live slots S[0]..S[S[0]+2] (all empty past EOF)."""
        self.budget -= 1
        if self.budget < 0:
            raise HashFileError("hash file: overflow chains loop")
        if is_bucket:
            pno = self.page_of_bucket(addr)
        else:
            pno = self.page_of_bucket((1 << (addr >> _SPLITSHIFT)) - 1) + (addr & _SPLITMASK)
        off = pno * self.bsize
        raw = self.data[off:off + self.bsize]
        if not raw:
            return b"", [0]
        if len(raw) != self.bsize:
            raise HashFileError(f"hash file: page {pno} is cut short by the end of the file")
        n = self._u16.unpack_from(raw, 0)[0]
        if n == 0:
            return raw, [0]
        if n + 3 > self.bsize // 2:
            raise HashFileError(f"hash file: page {pno} claims {n} slots")
        return raw, [self._u16.unpack_from(raw, 2 * i)[0] for i in range(n + 3)]

    def page_of_bucket(self, b: int) -> int:
        return b + self.hdrpages + (self.spares[_log2(b + 1) - 1] if b else 0)

    def chain(self, bucket: int) -> Iterator[tuple[bytes, bytes]]:
        """Yield (key, data) of one bucket in the order seq() returns them."""
        self.budget = 2 * self.pages  # a big pair's pages are walked twice
        raw, s = self.page(bucket, True)
        while s[0]:
            n, i, off, nxt = s[0], 1, self.bsize, 0
            while i < n:
                if s[i + 1] >= _REAL_KEY:
                    yield raw[s[i]:off], raw[s[i + 1]:s[i]]
                    off, i = s[i + 1], i + 2
                    continue
                if s[i + 1] == _OVFLPAGE:
                    nxt = s[i]
                else:
                    key, value, nxt = self.big_pair(raw, s)
                    yield key, value
                break
            if not nxt:
                return
            raw, s = self.page(nxt, False)

    def big_pair(self, raw: bytes, s: list[int]) -> tuple[bytes, bytes, int]:
        """A big pair starting on this page: key, data and the chain's next page."""
        first_raw, first_s = raw, s
        key = []
        while s[2] == _PARTIAL_KEY:
            key.append(raw[s[1]:])
            raw, s = self.page(s[s[0] - 1], False)
        key.append(raw[s[1]:])
        if s[2] == _FULL_KEY_DATA and s[s[0] + 1]:
            value = [raw[s[s[0]]:s[1]]]
        else:
            value = [raw[s[s[0]]:s[1]]] if s[2] == _FULL_KEY_DATA else []
            raw, s = self.page(s[s[0] - 1], False)
            value.append(raw[s[1]:])
            while s[2] != _FULL_KEY_DATA:
                raw, s = self.page(s[s[0] - 1], False)
                value.append(raw[s[1]:])
        raw, s = first_raw, first_s
        while not (s[2] == _FULL_KEY_DATA and (s[0] == 2 or s[s[0]] == _OVFLPAGE or s[s[0] + 1])):
            raw, s = self.page(s[s[0] - 1], False)
        return b"".join(key), b"".join(value), (s[3] if s[0] > 2 else 0)


def read_hash(data: bytes) -> dict[bytes, bytes]:
    """Every pair of a db(3) hash file, in seq() order (the first of duplicate keys)."""
    reader = _Reader(bytes(data))
    pairs: dict[bytes, bytes] = {}
    for bucket in range(reader.max_bucket + 1):
        for key, value in reader.chain(bucket):
            pairs.setdefault(bytes(key), bytes(value))
    return pairs

"""db(3) hash pages: layout constants, page slot helpers and the buffer pool.

The parts of lib/libc/db/hash that the writer (dbhash.HashWriter) and the
reader (dbhash_reader) share: hash.h/page.h constants, hash4, the slot
accessors of page.h, and hash_buf.c's LRU buffer pool with its evictions,
whose order decides which pages end up where in the file.
"""
from __future__ import annotations

import struct

from ..errors import StepError

LITTLE_ENDIAN = 1234
BIG_ENDIAN = 4321

_MAGIC, _VERSION, _HDRSIZE, _MINHDRSIZE = 0x061561, 2, 260, 512
_CHARKEY = b"%$sniglet^&\0"
_NCACHED, _SPLITSHIFT, _SPLITMASK = 32, 11, 0x7FF
_OVFLPAGE, _PARTIAL_KEY, _FULL_KEY, _FULL_KEY_DATA, _REAL_KEY = 0, 1, 2, 3, 4
_OVFLSIZE, _BIGOVERHEAD = 4, 8
_DEF_FFACTOR, _MIN_FFACTOR, _MIN_BUFFERS, _DEF_BUFSIZE = 65536, 4, 6, 65536
_MIN_BSIZE, _MAX_BSIZE, _SGSIZE, _SSHIFT, _DEF_DIRSIZE = 256, 32768, 256, 8, 256
_ALL_SET = 0xFFFFFFFF
_BUF_MOD, _BUF_BUCKET, _BUF_PIN = 0x1, 0x4, 0x8
_HEADER = struct.Struct(">iiIiiiiiiiIIIIiii32i32H")  # HASHHDR, always big-endian on disk
_U16 = struct.Struct("<H")


class HashFileError(StepError):
    """A db(3) hash file cannot be written or read back."""


def hash4(key: bytes) -> int:
    """FreeBSD's default hash (hash_func.c hash4): h = 33h + c, modulo 2^32."""
    h = 0
    for c in key:
        h = (h * 33 + c) & 0xFFFFFFFF
    return h


_H_CHARKEY = hash4(_CHARKEY) - (1 << 32)  # stored as int32: dbopen's "same hash function?" check


def _log2(num: int) -> int:
    """hash_log2.c: the smallest i with 2^i >= num."""
    i, limit = 0, 1
    while limit < num:
        limit <<= 1
        i += 1
    return i


def _g(p: bytearray, i: int) -> int:
    slot: int = _U16.unpack_from(p, i << 1)[0]
    return slot


def _s(p: bytearray, i: int, v: int) -> None:
    _U16.pack_into(p, i << 1, v & 0xFFFF)


def _free(p: bytearray) -> int:
    return _g(p, _g(p, 0) + 1)


def _offset(p: bytearray) -> int:
    return _g(p, _g(p, 0) + 2)


def _pairfits(p: bytearray, key: bytes, val: bytes) -> bool:
    return _g(p, 2) >= _REAL_KEY and 4 + len(key) + len(val) + _OVFLSIZE <= _free(p)


def _putpair(p: bytearray, key: bytes, val: bytes) -> None:
    n = _g(p, 0)
    off = _offset(p) - len(key)
    p[off:off + len(key)] = key
    _s(p, n + 1, off)
    off -= len(val)
    p[off:off + len(val)] = val
    n += 2
    _s(p, n, off)
    _s(p, 0, n)
    _s(p, n + 1, off - 2 * (n + 3))
    _s(p, n + 2, off)


def _big_chunk(p: bytearray, chunk: bytes, flag: int) -> None:
    """One piece of a big pair at the top of the free space, slots (offset, flag)."""
    off = _offset(p) - len(chunk)
    p[off:off + len(chunk)] = chunk
    n = _g(p, 0) + 2
    _s(p, n - 1, off)
    _s(p, 0, n)
    _s(p, n + 1, off - 2 * (n + 3))
    _s(p, n + 2, off)
    _s(p, n, flag)


class _Buf:
    """hash_buf.c BUFHEAD: one cached page on the LRU list."""

    __slots__ = ("prev", "next", "ovfl", "addr", "flags", "page")

    def __init__(self, page: bytearray) -> None:
        self.prev = self.next = self
        self.ovfl: _Buf | None = None
        self.addr = 0
        self.flags = 0
        self.page = page


class _BufferPool:
    """hash_buf.c: page buffers, LRU list, evictions, and page I/O with byte swapping."""

    # HASHHDR fields and pool state, set up by the writer (dbhash.HashWriter.__init__)
    bsize: int
    bshift: int
    lorder: int
    hdrpages: int
    max_bucket: int
    high_mask: int
    low_mask: int
    spares: list[int]
    _nbufs: int                                 # buffers that may still be allocated before evicting
    _head: _Buf                                 # the LRU list's sentinel (MRU after it, LRU before it)
    _dir: dict[int, tuple[_Buf | None, bool]]   # bucket -> (its cached buffer, whether it is on "disk")
    _disk: bytearray                            # the file as written so far

    def _call_hash(self, key: bytes) -> int:
        bucket = hash4(key) & self.high_mask
        return bucket & self.low_mask if bucket > self.max_bucket else bucket

    def _bucket_to_page(self, b: int) -> int:
        return b + self.hdrpages + (self.spares[_log2(b + 1) - 1] if b else 0)

    def _oaddr_to_page(self, a: int) -> int:
        return self._bucket_to_page((1 << (a >> _SPLITSHIFT)) - 1) + (a & _SPLITMASK)

    # -- buffer pool and "disk" (hash_buf.c, hash_page.c) ------------------------------

    def _unlink(self, b: _Buf) -> None:
        b.prev.next, b.next.prev = b.next, b.prev

    def _insert_after(self, b: _Buf, where: _Buf) -> None:
        b.next, b.prev = where.next, where
        where.next = b
        b.next.prev = b

    def _get_buf(self, addr: int, prev: _Buf | None, newpage: bool = False) -> _Buf:
        """__get_buf: overflow pages are found only through their predecessor's buffer."""
        disk_mask = False
        if prev is not None:
            bp = prev.ovfl if prev.ovfl is not None and prev.ovfl.addr == addr else None
            is_disk = not newpage
        else:
            bp, disk_mask = self._dir.get(addr, (None, False))
            is_disk = disk_mask
        if bp is None:
            bp = self._newbuf(addr, prev)
            self._get_page(bp.page, addr, prev is None, is_disk)
            if prev is None:
                self._dir[addr] = (bp, disk_mask)
        else:
            self._unlink(bp)
            self._insert_after(bp, self._head)
        return bp

    def _newbuf(self, addr: int, prev: _Buf | None) -> _Buf:
        """newbuf: a fresh buffer while the cache allows, else evict the LRU one."""
        bp = self._head.prev
        if self._nbufs or bp.flags & _BUF_PIN:
            bp = _Buf(bytearray(self.bsize))
            if self._nbufs:
                self._nbufs -= 1
        else:
            self._unlink(bp)
            if bp.addr or bp.flags & _BUF_BUCKET:
                self._evict(bp)
        bp.addr, bp.ovfl = addr, None
        if prev is not None:
            prev.ovfl, bp.flags = bp, 0
        else:
            bp.flags = _BUF_BUCKET
        self._insert_after(bp, self._head)
        return bp

    def _evict(self, bp: _Buf) -> None:
        """Write back a victim bucket page and the overflow pages cached behind it."""
        n = _g(bp.page, 0)
        oaddr = _g(bp.page, n - 1) if n else 0
        if bp.flags & _BUF_MOD:
            self._put_page(bp.page, bp.addr, bool(bp.flags & _BUF_BUCKET))
        if bp.flags & _BUF_BUCKET:
            on_disk = bool(bp.flags & _BUF_MOD) or self._dir.get(bp.addr, (None, False))[1]
            self._dir[bp.addr] = (None, on_disk)
        xbp = bp
        while xbp.ovfl is not None:
            nxt, xbp.ovfl = xbp.ovfl, None
            xbp = nxt
            if xbp.flags & _BUF_BUCKET or oaddr != xbp.addr:
                break
            n = _g(xbp.page, 0)
            if n:
                oaddr = _g(xbp.page, n - 1)
            if xbp.flags & _BUF_MOD:
                self._put_page(xbp.page, xbp.addr, False)
            xbp.addr = xbp.flags = 0
            self._unlink(xbp)
            self._insert_after(xbp, self._head.prev)

    def _reclaim_buf(self, bp: _Buf) -> None:
        bp.ovfl, bp.addr, bp.flags = None, 0, 0
        self._unlink(bp)
        self._insert_after(bp, self._head.prev)

    def _page_init(self, p: bytearray) -> None:
        _s(p, 0, 0)
        _s(p, 1, self.bsize - 6)
        _s(p, 2, self.bsize)

    def _swap_slots(self, p: bytearray, start: int, stop: int) -> None:
        """Byte-swap u16 slots start..stop-1: only the live ones are in lorder on disk."""
        for i in range(start, min(stop, self.bsize >> 1)):
            p[2 * i], p[2 * i + 1] = p[2 * i + 1], p[2 * i]

    def _get_page(self, p: bytearray, addr: int, is_bucket: bool, is_disk: bool) -> None:
        if is_disk:
            page = self._bucket_to_page(addr) if is_bucket else self._oaddr_to_page(addr)
            off = page << self.bshift
            if off >= len(self._disk):
                _s(p, 0, 0)
            else:
                p[:] = self._disk[off:off + self.bsize]
        if not is_disk or not _g(p, 0):
            self._page_init(p)
        elif self.lorder != LITTLE_ENDIAN:
            self._swap_slots(p, 0, 1)  # S[0] first: it counts the slots that follow
            self._swap_slots(p, 1, _g(p, 0) + 3)

    def _put_page(self, p: bytearray, addr: int, is_bucket: bool) -> None:
        """__put_page swaps the live slots in place: the buffer keeps them swapped."""
        if self.lorder != LITTLE_ENDIAN:
            self._swap_slots(p, 0, _g(p, 0) + 3)
        page = self._bucket_to_page(addr) if is_bucket else self._oaddr_to_page(addr)
        self._write(page, p)

    def _write(self, page: int, data: bytes | bytearray) -> None:
        off = page << self.bshift
        if len(self._disk) < off:
            self._disk.extend(bytes(off - len(self._disk)))
        self._disk[off:off + len(data)] = data

    # -- public interface -----------------------------------------------------------------

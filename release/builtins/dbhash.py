"""Berkeley DB 1.85 hash files (FreeBSD libc db(3)), written and read in pure Python.

pwd.db, spwd.db, services.db and login.conf.db are db(3) hash files.  Readers
only need the layout, but reproducing the bytes FreeBSD's tools write needs
their insertion algorithm: the file is the trace of every split, overflow page
and buffer eviction since dbopen().  HashWriter therefore replays
lib/libc/db/hash (hash.c, hash_page.c, hash_bigkey.c, hash_buf.c) step by step,
buffer pool and LRU evictions included, as it runs on a little-endian host
(amd64/aarch64 builders): page buffers start zero-filled like FreeBSD's
calloc'd ones, and the holes FreeBSD leaves in the file are written as zeros
so images never carry sparse files.  Two deliberate departures from db 1.85:
FreeBSD's __big_insert fix (data never exactly fills a big key's last page) is
applied, and the two big-pair shapes db(3) writes but can never find again (an
empty key; no data after a key that fills its last page) are refused.

dbhash_pages holds the shared layout and buffer pool; read_hash() (from
dbhash_reader, an independent reader of the on-disk layout used to verify what
the writer produced) is re-exported here.
"""
from __future__ import annotations

import struct

from .dbhash_pages import (BIG_ENDIAN, HashFileError, LITTLE_ENDIAN, _ALL_SET, _BIGOVERHEAD, _BUF_BUCKET,
                           _BUF_MOD, _BUF_PIN, _Buf, _BufferPool, _DEF_BUFSIZE, _DEF_DIRSIZE, _DEF_FFACTOR,
                           _FULL_KEY, _FULL_KEY_DATA, _HDRSIZE, _HEADER, _H_CHARKEY, _MAGIC, _MAX_BSIZE,
                           _MINHDRSIZE, _MIN_BSIZE, _MIN_BUFFERS, _MIN_FFACTOR, _NCACHED, _OVFLPAGE,
                           _OVFLSIZE, _PARTIAL_KEY, _REAL_KEY, _SGSIZE, _SPLITMASK, _SPLITSHIFT, _SSHIFT,
                           _VERSION, _big_chunk, _free, _g, _log2, _offset, _pairfits, _putpair, _s, hash4)
from .dbhash_reader import read_hash

__all__ = ["BIG_ENDIAN", "LITTLE_ENDIAN", "HashFileError", "HashWriter", "hash4", "read_hash"]


class HashWriter(_BufferPool):
    """Replays dbopen(DB_HASH, HASHINFO), put(R_NOOVERWRITE)... and close().

    The arguments are the HASHINFO fields; 0 means db(3)'s default, as in
    C, except that bsize and lorder must be given (FreeBSD would take them from
    the file system and the host, which would make the bytes host-dependent).
    """

    def __init__(self, bsize: int, ffactor: int, nelem: int, cachesize: int, lorder: int) -> None:
        if lorder not in (LITTLE_ENDIAN, BIG_ENDIAN):
            raise ValueError(f"lorder must be 1234 or 4321, not {lorder}")
        self.bshift = _log2(bsize)
        self.bsize = 1 << self.bshift
        if not _MIN_BSIZE <= self.bsize <= _MAX_BSIZE:
            raise ValueError(f"bsize {bsize} outside {_MIN_BSIZE}..{_MAX_BSIZE}")
        self.lorder = lorder
        self.ffactor = ffactor or _DEF_FFACTOR
        self.dsize, self.nkeys = _DEF_DIRSIZE, 0
        self.spares = [0] * _NCACHED
        self.bitmaps = [0] * _NCACHED
        self.mapp: list[list[int] | None] = [None] * _NCACHED
        self._nbufs = max((cachesize or _DEF_BUFSIZE) + self.bsize - 1 >> self.bshift, _MIN_BUFFERS)
        self._head = _Buf(bytearray())            # the sentinel holds no page
        self._dir = {}
        self._disk = bytearray()
        self._result: bytes | None = None
        self._init_htab(max(nelem, 1))

    # -- table set-up and addressing (hash.c) ------------------------------------------

    def _init_htab(self, nelem: int) -> None:
        nelem = (nelem - 1) // self.ffactor + 1
        l2 = _log2(max(nelem, 2))
        nbuckets = 1 << l2
        self.spares[l2] = self.spares[l2 + 1] = l2 + 1
        self.ovfl_point, self.last_freed = l2, 2
        self._ibitmap((l2 << _SPLITSHIFT) + 1, l2 + 1, 0)
        self.max_bucket = self.low_mask = nbuckets - 1
        self.high_mask = (nbuckets << 1) - 1
        self.hdrpages = ((max(_HDRSIZE, _MINHDRSIZE) - 1) >> self.bshift) + 1
        self.nsegs = 1 << _log2((nbuckets - 1) // _SGSIZE + 1)
        self.dsize = max(self.dsize, self.nsegs)

    def _ibitmap(self, pnum: int, nbits: int, ndx: int) -> None:
        """hash_page.c __ibitmap: bits past the frontier start set (in use)."""
        clearints = ((nbits - 1) >> 5) + 1
        words = [0] * clearints + [_ALL_SET] * ((self.bsize >> 2) - clearints)
        words[clearints - 1] = (_ALL_SET << (nbits & 31)) & _ALL_SET
        words[0] |= 1
        self.bitmaps[ndx], self.mapp[ndx] = pnum, words

    def put(self, key: bytes, data: bytes) -> bool:
        """put(R_NOOVERWRITE): False (and nothing changes) when the key exists."""
        if self._result is not None:
            raise ValueError("put() after getvalue(): the hash file is closed")
        key, data = bytes(key), bytes(data)
        chunk = self.bsize - 14  # key bytes a big pair's page holds
        if len(key) + len(data) + 14 > self.bsize and (not key or (
                not data and len(key) % chunk == 0)):
            raise HashFileError(f"hash table: a {len(key)}-byte key with {len(data)} bytes of "
                                "data would be stored unreadably by db(3) (big-pair bug)")
        save = self._get_buf(self._call_hash(key), None)
        save.flags |= _BUF_PIN
        try:
            rbufp = self._find(save, key)
            if rbufp is None:
                return False
            self._addel(rbufp, key, data)
            return True
        finally:
            save.flags &= ~_BUF_PIN

    def getvalue(self) -> bytes:
        """close(): flush every modified buffer, the header and the bitmaps."""
        if self._result is None:
            bp = self._head.prev
            while bp is not self._head:
                if (bp.addr or bp.flags & _BUF_BUCKET) and bp.flags & _BUF_MOD:
                    self._put_page(bp.page, bp.addr, bool(bp.flags & _BUF_BUCKET))
                self._unlink(bp)
                bp = self._head.prev
            order = ">" if self.lorder == BIG_ENDIAN else "<"
            for i, words in enumerate(self.mapp):
                if words is not None:
                    raw = struct.pack(f"{order}{len(words)}I", *words)
                    self._write(self._oaddr_to_page(self.bitmaps[i]), raw)
            header = _HEADER.pack(
                _MAGIC, _VERSION, self.lorder, self.bsize, self.bshift, self.dsize, _SGSIZE,
                _SSHIFT, self.ovfl_point, self.last_freed, self.max_bucket, self.high_mask,
                self.low_mask, self.ffactor, self.nkeys, self.hdrpages,
                _H_CHARKEY, *self.spares, *self.bitmaps)
            if len(self._disk) < len(header):
                self._disk.extend(bytes(len(header) - len(self._disk)))
            self._disk[0:len(header)] = header
            self._result = bytes(self._disk)
            self._disk = bytearray()
        return self._result

    # -- lookup and insertion (hash.c hash_access, hash_page.c __addel) -------------------

    def _find(self, rbufp: _Buf, key: bytes) -> _Buf | None:
        """Walk the bucket chain; None if key is present, else the page to add to."""
        p, off, ndx = rbufp.page, self.bsize, 1
        n = _g(p, 0)
        while ndx < n:
            kslot, vslot = _g(p, ndx), _g(p, ndx + 1)
            if vslot >= _REAL_KEY:
                if len(key) == off - kslot and p[kslot:off] == key:
                    return None
                off, ndx = vslot, ndx + 2
                continue
            if vslot == _OVFLPAGE:
                rbufp = self._get_buf(kslot, rbufp)
            else:
                if self._find_bigpair(rbufp, ndx, key):
                    return None
                last, pageno = self._find_last_page(rbufp)
                if not pageno:
                    return last
                rbufp = self._get_buf(pageno, last)
            p, off, ndx = rbufp.page, self.bsize, 1
            n = _g(p, 0)
        return rbufp

    def _find_bigpair(self, bufp: _Buf, ndx: int, key: bytes) -> bool:
        p, pos, size = bufp.page, 0, len(key)
        nbytes = self.bsize - _g(p, ndx)
        while nbytes <= size and _g(p, ndx + 1) == _PARTIAL_KEY:
            if p[_g(p, ndx):self.bsize] != key[pos:pos + nbytes]:
                return False
            pos += nbytes
            bufp = self._get_buf(_g(p, ndx + 2), bufp)
            p, ndx = bufp.page, 1
            nbytes = self.bsize - _g(p, ndx)
        return nbytes == size - pos and p[_g(p, ndx):_g(p, ndx) + nbytes] == key[pos:]

    def _find_last_page(self, bufp: _Buf) -> tuple[_Buf, int]:
        """__find_last_page: the big pair's last page and the chain page after it."""
        p = bufp.page
        while True:
            n = _g(p, 0)
            if n < 2:
                raise HashFileError(f"hash table: big pair broken at overflow page {bufp.addr}")
            if _g(p, 2) == _FULL_KEY_DATA and (n == 2 or _g(p, n) == _OVFLPAGE or _free(p)):
                break
            bufp = self._get_buf(_g(p, n - 1), bufp)
            p = bufp.page
        return bufp, (_g(p, 3) if _g(p, 0) > 2 else 0)

    def _addel(self, bufp: _Buf, key: bytes, val: bytes) -> None:
        """__addel: onto this page if it fits, else a new overflow page (and a split)."""
        p, do_expand = bufp.page, False
        while _g(p, 0) and (_g(p, 2) < _REAL_KEY or _g(p, _g(p, 0)) < _REAL_KEY):
            n = _g(p, 0)
            if _g(p, 2) == _FULL_KEY_DATA and n == 2:
                break
            if _g(p, 2) < _REAL_KEY and _g(p, n) != _OVFLPAGE:
                bufp = self._get_buf(_g(p, n - 1), bufp)
            elif _g(p, n) != _OVFLPAGE:
                break
            elif _g(p, 2) >= _REAL_KEY and _free(p) >= 4 + len(key) + len(val):
                self._squeeze_key(p, key, val)
                return self._added(bufp, False)
            else:
                bufp = self._get_buf(_g(p, n - 1), bufp)
            p = bufp.page
        if _pairfits(p, key, val):
            _putpair(p, key, val)
        else:
            do_expand = True
            bufp = self._add_ovflpage(bufp)
            if _pairfits(bufp.page, key, val):
                _putpair(bufp.page, key, val)
            else:
                self._big_insert(bufp, key, val)
        self._added(bufp, do_expand)

    def _added(self, bufp: _Buf, do_expand: bool) -> None:
        bufp.flags |= _BUF_MOD
        self.nkeys += 1
        if do_expand or self.nkeys // (self.max_bucket + 1) > self.ffactor:
            self._expand_table()

    def _squeeze_key(self, p: bytearray, key: bytes, val: bytes) -> None:
        """squeeze_key: a pair slipped in before the page's overflow link.

        Kept for fidelity only: hash_access hands __addel the chain's last page,
        so with puts alone this branch is never taken.
        """
        n, free, off = _g(p, 0), _free(p), _offset(p)
        pageno = _g(p, n - 1)
        off -= len(key)
        _s(p, n - 1, off)
        p[off:off + len(key)] = key
        off -= len(val)
        _s(p, n, off)
        p[off:off + len(val)] = val
        _s(p, 0, n + 2)
        _s(p, n + 1, pageno)
        _s(p, n + 2, _OVFLPAGE)
        _s(p, n + 3, free - (4 + len(key) + len(val)))
        _s(p, n + 4, off)

    # -- overflow pages (hash_page.c) ------------------------------------------------------

    def _add_ovflpage(self, bufp: _Buf) -> _Buf:
        sp = bufp.page
        if self.ffactor == _DEF_FFACTOR:
            self.ffactor = max(_g(sp, 0) >> 1, _MIN_FFACTOR)
        bufp.flags |= _BUF_MOD
        ovfl_num = self._overflow_page()
        bufp.ovfl = self._get_buf(ovfl_num, bufp, newpage=True)
        bufp.ovfl.flags |= _BUF_MOD
        ndx = _g(sp, 0)
        _s(sp, ndx + 4, _offset(sp))
        _s(sp, ndx + 3, _free(sp) - _OVFLSIZE)
        _s(sp, ndx + 1, ovfl_num)
        _s(sp, ndx + 2, _OVFLPAGE)
        _s(sp, 0, ndx + 2)
        return bufp.ovfl

    def _overflow_page(self) -> int:
        """overflow_page: reuse the first free bit at or after last_freed, else grow."""
        bits = self.bsize << 3
        splitnum = self.ovfl_point
        max_free = self.spares[splitnum]
        free_page = (max_free - 1) >> (self.bshift + 3)
        free_bit = (max_free - 1) & (bits - 1)
        first_page = self.last_freed >> (self.bshift + 3)
        for i in range(first_page, free_page + 1):
            freep = self._bitmap(i)
            in_use = free_bit if i == free_page else bits - 1
            if i == first_page:
                bit = self.last_freed & (bits - 1)
                j, bit = bit // 32, bit & ~31
            else:
                bit = j = 0
            while bit <= in_use:
                if freep[j] != _ALL_SET:
                    return self._take_free_bit(freep, i, j, bit, splitnum)
                j, bit = j + 1, bit + 32
        self.last_freed = self.spares[splitnum]
        self.spares[splitnum] += 1
        offset = self.spares[splitnum] - (self.spares[splitnum - 1] if splitnum else 0)
        if offset > _SPLITMASK:
            splitnum, offset = self._next_split_point(splitnum), 1
        if free_bit == bits - 1:
            free_page += 1
            if free_page >= _NCACHED:
                raise HashFileError("hash table: out of overflow pages, increase the page size")
            self._ibitmap((splitnum << _SPLITSHIFT) + offset, 1, free_page)
            self.spares[splitnum] += 1
            offset += 1
            if offset > _SPLITMASK:
                splitnum, offset = self._next_split_point(splitnum), 0
        else:
            freep = self._bitmap(free_page)
            free_bit += 1
            freep[free_bit // 32] |= 1 << (free_bit % 32)
        return (splitnum << _SPLITSHIFT) + offset

    def _bitmap(self, i: int) -> list[int]:
        """The overflow page bitmap *i* (hash_page.c's hashp->mapp[i])."""
        freep = self.mapp[i]
        if freep is None:
            raise HashFileError(f"hash table: overflow bitmap {i} is missing")
        return freep

    def _next_split_point(self, splitnum: int) -> int:
        splitnum += 1
        if splitnum >= _NCACHED:
            raise HashFileError("hash table: out of overflow pages, increase the page size")
        self.ovfl_point = splitnum
        self.spares[splitnum] = self.spares[splitnum - 1]
        self.spares[splitnum - 1] -= 1
        return splitnum

    def _take_free_bit(self, freep: list[int], i: int, j: int, bit: int, splitnum: int) -> int:
        word = freep[j]
        bit += next(k for k in range(33) if k == 32 or not word >> k & 1)
        freep[bit // 32] |= 1 << (bit % 32)
        bit = 1 + bit + i * (self.bsize << 3)
        if bit >= self.last_freed:
            self.last_freed = bit - 1
        i = 0
        while i < splitnum and bit > self.spares[i]:
            i += 1
        offset = bit - self.spares[i - 1] if i else bit
        if offset >= _SPLITMASK:
            raise HashFileError("hash table: out of overflow pages, increase the page size")
        return (i << _SPLITSHIFT) + offset

    def _free_ovflpage(self, bufp: _Buf) -> None:
        addr = bufp.addr
        ndx = addr >> _SPLITSHIFT
        bit_address = (self.spares[ndx - 1] if ndx else 0) + (addr & _SPLITMASK) - 1
        if bit_address < self.last_freed:
            self.last_freed = bit_address
        freep = self._bitmap(bit_address >> (self.bshift + 3))
        free_bit = bit_address & ((self.bsize << 3) - 1)
        freep[free_bit // 32] &= ~(1 << (free_bit % 32)) & _ALL_SET
        self._reclaim_buf(bufp)

    # -- big pairs (hash_bigkey.c) ---------------------------------------------------------

    def _big_insert(self, bufp: _Buf, key: bytes, val: bytes) -> None:
        """__big_insert with FreeBSD's fix: data never exactly fills the key's last page."""
        p, kpos, vpos = bufp.page, 0, 0
        while kpos < len(key):
            move = min(_free(p) - _BIGOVERHEAD, len(key) - kpos)
            _big_chunk(p, key[kpos:kpos + move], _PARTIAL_KEY)
            kpos += move
            bufp = self._add_ovflpage(bufp)
            n = _g(p, 0)
            if kpos == len(key):
                space = _free(p)
                if space and space != len(val):
                    move = min(space, len(val))
                    off = _offset(p) - move
                    p[off:off + move] = val[:move]
                    vpos = move
                    _s(p, n, off)
                    _s(p, n - 2, _FULL_KEY_DATA)
                    _s(p, n + 1, _free(p) - move)
                    _s(p, n + 2, off)
                else:
                    _s(p, n - 2, _FULL_KEY)
            p = bufp.page
            bufp.flags |= _BUF_MOD
        while vpos < len(val):
            space = _free(p) - _BIGOVERHEAD
            move = min(space, len(val) - vpos) - (vpos == 0 and space == len(val))
            more = vpos + move < len(val)
            _big_chunk(p, val[vpos:vpos + move], _FULL_KEY if more else _FULL_KEY_DATA)
            vpos += move
            if more:
                bufp = self._add_ovflpage(bufp)
                p = bufp.page
            bufp.flags |= _BUF_MOD

    def _big_key(self, bufp: _Buf) -> bytes:
        """__big_keydata: the page visits of collect_key/__big_return, in their order.

        Each visit can evict a buffer, so the pages are checked afterwards the way
        the C code does ("out of buffers") before the key is assembled.
        """
        seen = [(bufp, bufp.addr)]

        def follow(b: _Buf) -> _Buf:
            if _g(b.page, 0) < 2:
                raise HashFileError(f"hash table: big pair broken at overflow page {b.addr}")
            b = self._get_buf(_g(b.page, _g(b.page, 0) - 1), b)
            seen.append((b, b.addr))
            return b

        key_pages = [bufp]
        while _g(bufp.page, 2) not in (_FULL_KEY, _FULL_KEY_DATA):
            bufp = follow(bufp)
            key_pages.append(bufp)
        if _g(bufp.page, 2) == _FULL_KEY or not _free(bufp.page):
            bufp = follow(bufp)
            while _g(bufp.page, 2) != _FULL_KEY_DATA:
                bufp = follow(bufp)
        if any(b.addr != addr for b, addr in seen):
            raise HashFileError("hash table: out of buffers reading a big pair, raise cachesize")
        return b"".join(bytes(b.page[_g(b.page, 1):self.bsize]) for b in key_pages)

    def _big_split(self, op: _Buf, np_: _Buf, big: _Buf, obucket: int
                   ) -> tuple[_Buf, _Buf, _Buf | None]:
        """__big_split: relink a whole big pair onto the old or the new bucket's tail."""
        first, addr = big, big.addr
        change = self._call_hash(self._big_key(big)) != obucket
        big, next_addr = self._find_last_page(big)
        nextp = self._get_buf(next_addr, big) if next_addr else None
        tmpp = np_ if change else op
        tmpp.flags |= _BUF_MOD
        tmpp.ovfl = first
        tp = tmpp.page
        n, off, free = _g(tp, 0), _offset(tp), _free(tp)
        _s(tp, n + 1, addr)
        _s(tp, n + 2, _OVFLPAGE)
        _s(tp, 0, n + 2)
        _s(tp, n + 4, off)
        _s(tp, n + 3, free - _OVFLSIZE)
        tp = big.page
        big.flags |= _BUF_MOD
        if _g(tp, 0) > 2:
            saved, free, off = _g(tp, 4), _free(tp), _offset(tp)
            _s(tp, 0, _g(tp, 0) - 2)
            _s(tp, _g(tp, 0) + 1, free + _OVFLSIZE)
            _s(tp, _g(tp, 0) + 2, off)
            tmpp = self._add_ovflpage(big)
            _s(tp, 4, saved)
        else:
            tmpp = big
        return (op, tmpp, nextp) if change else (tmpp, np_, nextp)

    # -- splitting (hash.c __expand_table, hash_page.c __split_page/ugly_split) -----------

    def _expand_table(self) -> None:
        self.max_bucket += 1
        new_bucket = self.max_bucket
        old_bucket = new_bucket & self.low_mask
        if new_bucket >> _SSHIFT >= self.nsegs:
            if new_bucket >> _SSHIFT >= self.dsize:
                self.dsize *= 16  # hash.c doubles the directory's size in bytes (LP64)
            self.nsegs += 1
        spare_ndx = _log2(self.max_bucket + 1)
        if spare_ndx > self.ovfl_point:
            self.spares[spare_ndx] = self.spares[self.ovfl_point]
            self.ovfl_point = spare_ndx
        if new_bucket > self.high_mask:
            self.low_mask = self.high_mask
            self.high_mask = new_bucket | self.low_mask
        self._split_page(old_bucket, new_bucket)

    def _split_page(self, obucket: int, nbucket: int) -> None:
        copyto = off = self.bsize
        old = self._get_buf(obucket, None)
        new = self._get_buf(nbucket, None)
        old.flags |= _BUF_MOD | _BUF_PIN
        new.flags |= _BUF_MOD | _BUF_PIN
        op, moved, n, ndx = old.page, 0, 1, 1
        try:
            while n < _g(op, 0):
                if _g(op, n + 1) < _REAL_KEY:
                    return self._ugly_split(obucket, old, new, copyto, moved)
                kslot, vslot = _g(op, n), _g(op, n + 1)
                key = bytes(op[kslot:off])
                if self._call_hash(key) == obucket:
                    diff = (copyto - off) & 0xFFFF
                    if diff:
                        copyto = (vslot + diff) & 0xFFFF
                        op[copyto:copyto + off - vslot] = op[vslot:off]
                        _s(op, ndx, copyto + kslot - vslot)
                        _s(op, ndx + 1, copyto)
                    else:
                        copyto = vslot
                    ndx += 2
                else:
                    _putpair(new.page, key, bytes(op[vslot:kslot]))
                    moved += 2
                off = _g(op, n + 1)
                n += 2
            _s(op, 0, _g(op, 0) - moved)
            _s(op, _g(op, 0) + 1, copyto - 2 * (_g(op, 0) + 3))
            _s(op, _g(op, 0) + 2, copyto)
        finally:
            old.flags &= ~_BUF_PIN
            new.flags &= ~_BUF_PIN

    def _ugly_split(self, obucket: int, old: _Buf, new: _Buf, copyto: int, moved: int) -> None:
        """ugly_split: rehash a chain with overflow pages, freeing the old ones behind."""
        bufp = old
        last: _Buf | None = None
        ino = old.page
        n = _g(ino, 0) - 1
        while n < _g(ino, 0):
            if _REAL_KEY > _g(ino, 2) != _OVFLPAGE:
                old, new, after = self._big_split(old, new, bufp, obucket)
                if after is None:
                    return
                bufp = after
                ino, last = bufp.page, bufp
            elif _g(ino, n + 1) == _OVFLPAGE:
                ov_addr = _g(ino, n)
                _s(ino, 0, _g(ino, 0) - (moved + 2))
                _s(ino, _g(ino, 0) + 1, copyto - 2 * (_g(ino, 0) + 3))
                _s(ino, _g(ino, 0) + 2, copyto)
                bufp = self._get_buf(ov_addr, bufp)
                ino, copyto, moved = bufp.page, self.bsize, 0
                if last is not None:
                    self._free_ovflpage(last)
                last = bufp
            off, n = self.bsize, 1
            while n < _g(ino, 0) and _g(ino, n + 1) >= _REAL_KEY:
                kslot, vslot = _g(ino, n), _g(ino, n + 1)
                key, val = bytes(ino[kslot:off]), bytes(ino[vslot:kslot])
                off = vslot
                if self._call_hash(key) == obucket:
                    old = self._put_on_tail(old, key, val)
                else:
                    new = self._put_on_tail(new, key, val)
                n += 2
        if last is not None:
            self._free_ovflpage(last)

    def _put_on_tail(self, tail: _Buf, key: bytes, val: bytes) -> _Buf:
        if not _pairfits(tail.page, key, val):
            tail = self._add_ovflpage(tail)
        _putpair(tail.page, key, val)
        tail.flags |= _BUF_MOD
        return tail

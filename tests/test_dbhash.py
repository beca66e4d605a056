"""HashWriter and read_hash against the real BSD db 1.85 code (libdb1-compat).

Every synthetic file below is compared byte for byte with the file libdb1
writes for the same puts and HASHINFO, read back through libdb1's get() and
seq(), and listed by read_hash() in seq() order.  The configurations are
chosen to exercise what the format is made of: bucket splits, overflow chains
and the "ugly" splits that rehash them, big pairs (long keys, long data, both)
and their relinking during splits, freed and reused overflow pages, a cache so
small that pages are evicted and read back, and both byte orders.
"""
from __future__ import annotations

import random
import struct
from itertools import pairwise

import pytest

from release.builtins.dbhash import BIG_ENDIAN, LITTLE_ENDIAN, HashFileError, HashWriter, hash4, read_hash
from release.errors import StepError
from tests.libdb1_support import libdb1_read, libdb1_write


def exact_fill(bsize: int, key_len: int, data_len: int) -> bool:
    """Would this big pair's data exactly fill the free space on its key's last page?

    db 1.85 mishandles that case (FreeBSD fixed it, libdb1 did not), so pairs
    compared byte for byte with libdb1 must avoid it.
    """
    if key_len == 0 or key_len + data_len + 14 <= bsize:  # not a big pair
        return False
    chunk = bsize - 14  # key bytes per overflow page
    free = bsize - (key_len % chunk or chunk) - 14
    return free == data_len > 0


def unreadable(bsize: int, key_len: int, data_len: int) -> bool:
    """The big pairs db(3) writes but cannot find again (HashWriter refuses them)."""
    big = key_len + data_len + 14 > bsize
    return big and (key_len == 0 or (data_len == 0 and key_len % (bsize - 14) == 0))


def build(pairs: list[tuple[bytes, bytes]], info: tuple[int, int, int, int, int]
          ) -> tuple[bytes, dict[bytes, bytes]]:
    writer = HashWriter(*info)
    expected: dict[bytes, bytes] = {}
    for key, data in pairs:
        assert writer.put(key, data) == (key not in expected)
        expected.setdefault(key, data)
    return writer.getvalue(), expected


def check_against_libdb1(tmp_path, pairs, info) -> bytes:
    """Same bytes as libdb1; libdb1 get/seq and read_hash all see exactly the pairs."""
    ours, expected = build(pairs, info)
    bsize, ffactor, nelem, cachesize, lorder = info
    theirs = libdb1_write(tmp_path / "libdb1.db", pairs, bsize=bsize, ffactor=ffactor,
                          nelem=nelem, cachesize=cachesize, lorder=lorder)
    assert len(ours) == len(theirs)
    assert ours == theirs
    db = tmp_path / "ours.db"
    db.write_bytes(ours)
    missing = b"\x00no such key\x00"
    seq, got = libdb1_read(db, [*expected, missing])
    assert dict(seq) == expected and len(seq) == len(expected)
    assert got == {**expected, missing: None}
    assert list(read_hash(ours).items()) == seq
    return ours


def random_pairs(seed: int, count: int, bsize: int, big: float) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    pairs = []
    for i in range(count):
        key_len = rng.choice((1, 6, 12, 40)) if rng.random() > big else rng.randint(bsize // 2, 3 * bsize)
        data_len = rng.choice((0, 3, 20, 60)) if rng.random() > big else rng.randint(bsize // 2, 4 * bsize)
        key = (b"%d:" % rng.randrange(count * 2)).ljust(key_len, bytes([65 + i % 26]))
        if not exact_fill(bsize, len(key), data_len) and not unreadable(bsize, len(key), data_len):
            pairs.append((key, bytes([i % 251]) * data_len))
    return pairs


def test_hash4_matches_the_header_check_value() -> None:
    assert hash4(b"%$sniglet^&\0") == 0x956E7DE3
    assert hash4(b"") == 0 and hash4(b"a") == 97 and hash4(b"ab") == 97 * 33 + 98


@pytest.mark.parametrize("lorder", [LITTLE_ENDIAN, BIG_ENDIAN])
def test_splits_of_small_pairs(tmp_path, lorder) -> None:
    pairs = [(b"key%05d" % i, b"value %d" % (i * 7)) for i in range(3000)]
    ours = check_against_libdb1(tmp_path, pairs, (256, 4, 1, 1 << 22, lorder))
    assert struct.unpack_from(">I", ours, 8)[0] == lorder


@pytest.mark.parametrize("lorder", [LITTLE_ENDIAN, BIG_ENDIAN])
def test_overflow_chains_and_ugly_splits(tmp_path, lorder) -> None:
    """A high fill factor keeps long overflow chains that later splits rehash and free."""
    pairs = [(b"k%d" % i, b"v" * (i % 37)) for i in range(2500)]
    check_against_libdb1(tmp_path, pairs, (512, 64, 1, 1 << 22, lorder))


@pytest.mark.parametrize("lorder", [LITTLE_ENDIAN, BIG_ENDIAN])
def test_big_pairs_and_their_splits(tmp_path, lorder) -> None:
    pairs = random_pairs(7, 400, 512, big=0.15)
    pairs += [(b"long key " * 300, b"short"), (b"short key", b"long data " * 500),
              (b"both " * 400, b"both " * 900), (b"empty data " * 100, b"")]
    assert not any(exact_fill(512, len(k), len(v)) for k, v in pairs)
    check_against_libdb1(tmp_path, pairs, (512, 8, 1, 1 << 22, lorder))


@pytest.mark.parametrize("seed", range(12))
def test_random_configurations(tmp_path, seed) -> None:
    rng = random.Random(seed)
    bsize = rng.choice((256, 512, 1024, 4096))
    info = (bsize, rng.choice((0, 1, 4, 16, 32)), rng.choice((0, 1, 100, 1000)),
            rng.choice((0, 1024, 1 << 22)), rng.choice((LITTLE_ENDIAN, BIG_ENDIAN)))
    check_against_libdb1(tmp_path, random_pairs(seed, rng.randint(50, 600), bsize, 0.1), info)


@pytest.mark.parametrize("lorder", [LITTLE_ENDIAN, BIG_ENDIAN])
def test_tiny_cache_evicts_and_rereads_pages(tmp_path, lorder) -> None:
    """cachesize 1024 leaves the minimum of 6 buffers: pages go to disk and come back."""
    pairs = random_pairs(11, 700, 256, big=0.05)
    check_against_libdb1(tmp_path, pairs, (256, 4, 1, 1024, lorder))


def test_duplicates_keep_the_first_writer(tmp_path) -> None:
    pairs = [(b"root", b"first"), (b"toor", b"x"), (b"root", b"second")]
    writer = HashWriter(256, 4, 1, 0, LITTLE_ENDIAN)
    assert [writer.put(k, v) for k, v in pairs] == [True, True, False]
    assert read_hash(writer.getvalue()) == {b"root": b"first", b"toor": b"x"}
    check_against_libdb1(tmp_path, pairs, (256, 4, 1, 0, LITTLE_ENDIAN))


def test_data_exactly_filling_the_key_page_is_readable(tmp_path) -> None:
    """FreeBSD's __big_insert fix: the data moves to the next page; libdb1 reads it."""
    key = b"K" * 600  # 498 bytes on the first page, 102 on the second
    data = b"D" * (512 - 102 - 14)
    assert exact_fill(512, len(key), len(data))
    writer = HashWriter(512, 8, 1, 0, BIG_ENDIAN)
    expected = {key: data, b"small": b"pair"}
    for k, v in expected.items():
        writer.put(k, v)
    raw = writer.getvalue()
    assert read_hash(raw) == expected
    (tmp_path / "fix.db").write_bytes(raw)
    seq, got = libdb1_read(tmp_path / "fix.db", list(expected))
    assert dict(seq) == expected and got == expected


def test_holes_are_written_as_zeros() -> None:
    writer = HashWriter(256, 4, 32768, 1024, LITTLE_ENDIAN)
    writer.put(b"only", b"pair")
    raw = writer.getvalue()
    # 2 header pages, 8192 buckets, then the bitmap page right after the last bucket
    assert len(raw) == (2 + 8192 + 1) * 256
    assert raw[8194 * 256:8194 * 256 + 4] == bytes.fromhex("01c0ffff")
    assert writer.getvalue() is raw
    with pytest.raises(ValueError):
        writer.put(b"late", b"pair")


def test_reader_refuses_what_dbopen_refuses() -> None:
    raw = bytearray(HashWriter(256, 4, 1, 0, LITTLE_ENDIAN).getvalue())
    for offset, value in ((0, b"\x00\x06\x15\x62"), (4, b"\x00\x00\x00\x03"),
                          (64, b"\x00\x00\x00\x00")):
        bad = bytearray(raw)
        bad[offset:offset + 4] = value
        with pytest.raises(HashFileError):
            read_hash(bytes(bad))
    with pytest.raises(StepError):
        read_hash(bytes(raw[:100]))
    writer = HashWriter(256, 4, 1, 0, LITTLE_ENDIAN)
    for i in range(4):
        writer.put(b"k%d" % i, b"v")
    full = writer.getvalue()
    assert len(read_hash(full)) == 4
    with pytest.raises(HashFileError, match="cut short"):
        read_hash(full[:3 * 256 + 100])  # bucket 1 lives on page 3


def test_refuses_big_pairs_db_cannot_read_back() -> None:
    """A key filling its last page exactly with no data leaves no FULL_KEY_DATA page."""
    writer = HashWriter(512, 8, 1, 0, LITTLE_ENDIAN)
    with pytest.raises(HashFileError, match="996-byte key"):
        writer.put(b"x" * 2 * (512 - 14), b"")
    with pytest.raises(HashFileError):
        writer.put(b"", b"d" * 600)
    assert writer.put(b"x" * 2 * (512 - 14), b"d") and writer.put(b"x" * 995, b"")
    assert len(read_hash(writer.getvalue())) == 2


def test_thousands_of_overflow_pages(tmp_path) -> None:
    """Past 2047 overflow pages per split point and past one bitmap page (2048 bits)."""
    pairs = [(b"key%06d" % i, bytes([i % 256]) * (300 + i % 7)) for i in range(3000)]
    raw = check_against_libdb1(tmp_path, pairs, (256, 64, 1, 1 << 24, BIG_ENDIAN))
    spares = struct.unpack_from(">32i", raw, 68)
    bitmaps = struct.unpack_from(">32H", raw, 196)
    assert sum(1 for b in bitmaps if b) > 1
    assert any(later - earlier == 2047 for earlier, later in pairwise(spares))

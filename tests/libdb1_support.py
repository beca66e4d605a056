"""BSD db 1.85 (Debian's libdb1-compat) as an independent reference for hash files.

Both directions run in a child process: a malformed file can crash libdb1, and
that must fail one test, not kill pytest.  Writing also needs malloc to hand
out zeroed memory, like FreeBSD's calloc'd page buffers, or the unused parts
of pages would hold garbage; glibc's perturb tunable does that (tcache off so
every allocation goes through it).

Run as a script, this file is the child: `libdb1_support.py write|read LIB DB`
with the pairs or keys on stdin, records on stdout.
"""
from __future__ import annotations

import ctypes
import os
import struct
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

LIBDB1_CANDIDATES = ("/lib/x86_64-linux-gnu/libdb.so.2", "/usr/lib/x86_64-linux-gnu/libdb.so.2",
                     "/lib/aarch64-linux-gnu/libdb.so.2", "/lib/libdb.so.2")
ZEROED_MALLOC = "glibc.malloc.tcache_count=0:glibc.malloc.perturb=255"

DB_HASH, R_FIRST, R_NEXT, R_NOOVERWRITE = 1, 3, 7, 8


def libdb1_path() -> Path:
    """Where libdb1-compat put libdb.so.2 (skip, or fail in CI, when absent)."""
    from tests.conftest import need_file

    for candidate in LIBDB1_CANDIDATES:
        if os.path.exists(candidate):
            return Path(candidate)
    return need_file(LIBDB1_CANDIDATES[-1], "libdb1-compat")


# -- pwd.db records ----------------------------------------------------------------------------

def u32be(value: int) -> bytes:
    return struct.pack(">I", value)


def pwd_record(record: bytes) -> dict:
    """include/pwd.h's version-4 layout, parsed the way getpwent.c's pwdb_parse_entry_v4 does."""
    name, passwd, rest = record.split(b"\0", 2)
    uid, gid, change = struct.unpack_from(">III", rest)
    pw_class, gecos, home, shell, tail = rest[12:].split(b"\0", 4)
    expire, fields = struct.unpack(">II", tail)
    return dict(name=name, passwd=passwd, uid=uid, gid=gid, change=change, pw_class=pw_class,
                gecos=gecos, dir=home, shell=shell, expire=expire, fields=fields)


# -- records exchanged with the child: u32be length + bytes ---------------------------------

def _pack(items: Iterable[bytes | None]) -> bytes:
    out = bytearray()
    for item in items:
        if item is None:
            out += b"\xff\xff\xff\xff"
        else:
            out += struct.pack(">I", len(item)) + item
    return bytes(out)


def _unpack(data: bytes) -> Iterator[bytes | None]:
    pos = 0
    while pos < len(data):
        (size,) = struct.unpack_from(">I", data, pos)
        pos += 4
        if size == 0xFFFFFFFF:
            yield None
            continue
        yield data[pos:pos + size]
        pos += size


def _child(*args: str, stdin: bytes) -> bytes:
    env = dict(os.environ, GLIBC_TUNABLES=ZEROED_MALLOC)
    proc = subprocess.run([sys.executable, __file__, *args], input=stdin, env=env,
                          capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise AssertionError(f"libdb1 child {args[0]} ended with status {proc.returncode}: "
                             f"{proc.stderr.decode(errors='replace').strip()[-500:]}")
    return proc.stdout


def libdb1_write(db: Path, pairs: Iterable[tuple[bytes, bytes]], *, bsize: int, ffactor: int,
                 nelem: int, cachesize: int, lorder: int) -> bytes:
    """Let libdb1 write *pairs* (put R_NOOVERWRITE, in order) and return the file's bytes."""
    info = f"{bsize},{ffactor},{nelem},{cachesize},{lorder}"
    flat = [item for pair in pairs for item in pair]
    _child("write", str(libdb1_path()), str(db), info, stdin=_pack(flat))
    return Path(db).read_bytes()


def libdb1_read(db: Path, keys: Iterable[bytes]) -> tuple[list[tuple[bytes, bytes]],
                                                         dict[bytes, bytes | None]]:
    """(every pair seq() yields, in order; get() of each key, None when not found)."""
    keys = list(keys)
    out = list(_unpack(_child("read", str(libdb1_path()), str(db), stdin=_pack(keys))))
    nseq = struct.unpack(">I", out[0])[0]
    seq = [(out[1 + 2 * i], out[2 + 2 * i]) for i in range(nseq)]
    got = dict(zip(keys, out[1 + 2 * nseq:], strict=True))
    return seq, got


# -- the child: ctypes binding of dbopen(3) --------------------------------------------------

class DBT(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("size", ctypes.c_size_t)]


class HASHINFO(ctypes.Structure):
    _fields_ = [("bsize", ctypes.c_uint), ("ffactor", ctypes.c_uint), ("nelem", ctypes.c_uint),
                ("cachesize", ctypes.c_uint), ("hash", ctypes.c_void_p), ("lorder", ctypes.c_int)]


class DB(ctypes.Structure):
    pass


_DBP, _DBTP = ctypes.POINTER(DB), ctypes.POINTER(DBT)
DB._fields_ = [
    ("type", ctypes.c_int),
    ("close", ctypes.CFUNCTYPE(ctypes.c_int, _DBP)),
    ("dele", ctypes.CFUNCTYPE(ctypes.c_int, _DBP, _DBTP, ctypes.c_uint)),
    ("get", ctypes.CFUNCTYPE(ctypes.c_int, _DBP, _DBTP, _DBTP, ctypes.c_uint)),
    ("put", ctypes.CFUNCTYPE(ctypes.c_int, _DBP, _DBTP, _DBTP, ctypes.c_uint)),
    ("seq", ctypes.CFUNCTYPE(ctypes.c_int, _DBP, _DBTP, _DBTP, ctypes.c_uint)),
    ("sync", ctypes.CFUNCTYPE(ctypes.c_int, _DBP, ctypes.c_uint)),
    ("internal", ctypes.c_void_p),
    ("fd", ctypes.CFUNCTYPE(ctypes.c_int, _DBP)),
]


def _dbopen(lib: str, db: str, flags: int, info: HASHINFO | None):
    libdb = ctypes.CDLL(lib, use_errno=True)
    libdb.dbopen.restype = _DBP
    libdb.dbopen.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                             ctypes.c_void_p]
    handle = libdb.dbopen(db.encode(), flags, 0o644, DB_HASH,
                          ctypes.byref(info) if info is not None else None)
    if not handle:
        raise OSError(ctypes.get_errno(), f"dbopen {db}")
    return handle


def _dbt(data: bytes) -> tuple[DBT, ctypes.Array]:
    buf = ctypes.create_string_buffer(data, len(data) or 1)
    return DBT(ctypes.cast(buf, ctypes.c_void_p), len(data)), buf


def _child_write(lib: str, db: str, info: str, stdin: bytes) -> None:
    bsize, ffactor, nelem, cachesize, lorder = (int(x) for x in info.split(","))
    handle = _dbopen(lib, db, os.O_RDWR | os.O_CREAT | os.O_TRUNC,
                     HASHINFO(bsize, ffactor, nelem, cachesize, None, lorder))
    items = list(_unpack(stdin))
    for key, value in zip(items[0::2], items[1::2], strict=True):
        (k, _k_buf), (v, _v_buf) = _dbt(key), _dbt(value)   # the buffers live while the DBTs point into them
        if handle.contents.put(handle, ctypes.byref(k), ctypes.byref(v), R_NOOVERWRITE) < 0:
            raise OSError(ctypes.get_errno(), f"put {key!r}")
    if handle.contents.close(handle) != 0:
        raise OSError(ctypes.get_errno(), "close")


def _child_read(lib: str, db: str, stdin: bytes) -> bytes:
    # a generous cache: with dbopen's default one, seq() over many-page big pairs
    # runs out of buffers (EINVAL) whoever wrote the file
    handle = _dbopen(lib, db, os.O_RDONLY, HASHINFO(0, 0, 0, 1 << 24, None, 0))
    k, v = DBT(), DBT()
    seq: list[bytes] = []
    flag = R_FIRST
    while True:
        status = handle.contents.seq(handle, ctypes.byref(k), ctypes.byref(v), flag)
        if status != 0:
            if status < 0:
                raise OSError(ctypes.get_errno(), "seq")
            break
        seq += [ctypes.string_at(k.data, k.size), ctypes.string_at(v.data, v.size)]
        flag = R_NEXT
    got: list[bytes | None] = []
    for key in _unpack(stdin):
        (kd, _kd_buf), v = _dbt(key), DBT()
        status = handle.contents.get(handle, ctypes.byref(kd), ctypes.byref(v), 0)
        if status < 0:
            raise OSError(ctypes.get_errno(), f"get {key!r}")
        got.append(ctypes.string_at(v.data, v.size) if status == 0 else None)
    handle.contents.close(handle)
    return _pack([struct.pack(">I", len(seq) // 2), *seq, *got])


if __name__ == "__main__":
    command, lib_path, db_path, *rest = sys.argv[1:]
    data_in = sys.stdin.buffer.read()
    if command == "write":
        _child_write(lib_path, db_path, rest[0], data_in)
    else:
        sys.stdout.buffer.write(_child_read(lib_path, db_path, data_in))

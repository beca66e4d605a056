"""Deterministic tar streams for image layers.

A layer's diff_id is the sha256 of its uncompressed tar, so the tar bytes
themselves must be a pure function of the entries: no clock, no host user
database, no file-system walk order, no sub-second or access/change times.
The writer is a small, explicit POSIX ustar encoder rather than Python's
tarfile, whose output has changed between Python releases (pax header
choices, name encoding) and whose pax headers would carry mtime records.

Format decisions, each visible in the bytes:

- ustar headers, numeric fields spelled like GNU tar's ``--format=posix``
  (zero-padded octal, NUL-terminated; checksum ``%06o\\0 ``), so a simple
  entry is byte-identical to what GNU tar writes for it.  devmajor/devminor
  hold zero digits for non-devices, as GNU tar (``0000000\\0``) and bsdtar
  (``000000 \\0``) both write them: no device nodes ever go into a layer.
- A pax extended header (``x``) appears only when a field cannot be spelled
  in ustar: a path that cannot be split into prefix/name, a link target over
  100 bytes, non-ASCII names or owners, a size or id too big for octal.  It
  never carries atime/ctime/mtime records: mtime is always the integer in
  the ustar header.
- Directory names are written with a trailing ``/`` (``usr/lib/``) as GNU
  tar, bsdtar and Docker/Go layers do; callers pass them without it.
- No leading ``/`` or ``./``: OCI layer paths are relative to the root.
- Hard links point at another member's name (no slash); whiteouts are plain
  empty files the caller names ``.wh.<name>``.
- The archive ends with two zero blocks and no record padding (what Go's
  archive/tar, which most OCI tooling uses, writes).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .errors import LayerError
from .fsutil import Readable

BLOCK = 512
CHUNK = 1 << 20
END_OF_ARCHIVE = bytes(2 * BLOCK)
KINDS = {"file": b"0", "hardlink": b"1", "symlink": b"2", "dir": b"5"}
PAX_NAME = b"././@PaxHeader"

_MAX_OCTAL_7 = 0o7777777          # 8-byte fields: mode, uid, gid
_MAX_OCTAL_11 = 0o77777777777     # 12-byte fields: size, mtime


class Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...


@dataclass(frozen=True)
class TarEntry:
    """One member of a layer, already decided by the layer writer.

    *name* is relative ("usr/bin/env"), without a trailing slash even for a
    directory; owners are numeric ids plus the names the image's own
    passwd/group give them (never the build host's).
    """

    name: str
    kind: str
    mode: int
    uid: int
    gid: int
    uname: str
    gname: str
    mtime: int
    size: int = 0
    linkname: str = ""


def padding(size: int) -> bytes:
    """Zero bytes that round a member's data up to a whole block."""
    return bytes(-size % BLOCK)


def _check(entry: TarEntry) -> None:
    """Refuse entries that would make an unsafe or ambiguous layer."""
    what = f"tar entry {entry.name!r}"
    if entry.kind not in KINDS:
        raise LayerError(f"{what}: unknown kind {entry.kind!r}")
    if not entry.name or entry.name.startswith("/") or entry.name.endswith("/"):
        raise LayerError(f"{what}: name must be relative, without leading or trailing '/'")
    if "\0" in entry.name or "\0" in entry.linkname:
        raise LayerError(f"{what}: NUL byte in name or link target")
    if any(part in ("", ".", "..") for part in entry.name.split("/")):
        raise LayerError(f"{what}: empty, '.' or '..' path component")
    if not 0 <= entry.mode <= 0o7777:
        raise LayerError(f"{what}: mode {entry.mode:#o} outside 0..07777")
    if entry.uid < 0 or entry.gid < 0:
        raise LayerError(f"{what}: negative owner id")
    if not 0 <= entry.mtime <= _MAX_OCTAL_11:
        raise LayerError(f"{what}: mtime {entry.mtime} does not fit a ustar header")
    if entry.size < 0 or (entry.kind != "file" and entry.size):
        raise LayerError(f"{what}: size {entry.size} invalid for a {entry.kind}")
    if entry.kind in ("symlink", "hardlink") and not entry.linkname:
        raise LayerError(f"{what}: {entry.kind} without a target")
    if entry.kind in ("file", "dir") and entry.linkname:
        raise LayerError(f"{what}: a {entry.kind} cannot have a link target")


def _octal(value: int, width: int) -> bytes:
    """GNU spelling: width-1 zero-padded octal digits and a NUL."""
    return b"%0*o\0" % (width - 1, value)


def _ascii(text: str, limit: int) -> bytes | None:
    """*text* as ASCII if it fits *limit* bytes, else None (needs pax)."""
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        return None
    return raw if len(raw) <= limit else None


def _split_path(path: bytes) -> tuple[bytes, bytes] | None:
    """(prefix, name) per ustar: name <= 100 bytes, prefix <= 155, split at '/'."""
    if len(path) <= 100:
        return b"", path
    # the last '/' that leaves at most 155 bytes of prefix and a non-empty name
    for cut in range(min(len(path) - 2, 155), 0, -1):
        if path[cut:cut + 1] == b"/":
            return (path[:cut], path[cut + 1:]) if len(path) - cut - 1 <= 100 else None
    return None


def _fallback(text: str, limit: int) -> bytes:
    """An ASCII stand-in for a field whose real value lives in the pax header."""
    raw = text.encode("ascii", "replace")
    if len(raw) <= limit:
        return raw
    if raw.endswith(b"/"):
        return raw[:limit - 1] + b"/"
    return raw[:limit]


def _pax_record(key: str, value: str) -> bytes:
    """'<len> key=value\\n' where <len> counts the whole record, itself included."""
    body = b" %s=%s\n" % (key.encode(), value.encode("utf-8"))
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode() + body


def _ustar_block(*, name: bytes, prefix: bytes, mode: int, uid: int, gid: int, size: int,
                 mtime: int, typeflag: bytes, linkname: bytes, uname: bytes,
                 gname: bytes) -> bytes:
    block = bytearray(BLOCK)

    def put(offset: int, data: bytes) -> None:
        block[offset:offset + len(data)] = data

    put(0, name)
    put(100, _octal(mode, 8))
    put(108, _octal(uid, 8))
    put(116, _octal(gid, 8))
    put(124, _octal(size, 12))
    put(136, _octal(mtime, 12))
    put(148, b" " * 8)
    put(156, typeflag)
    put(157, linkname)
    put(257, b"ustar\x0000")
    put(265, uname)
    put(297, gname)
    put(329, _octal(0, 8))
    put(337, _octal(0, 8))
    put(345, prefix)
    put(148, b"%06o\0 " % sum(block))
    return bytes(block)


def encode_header(entry: TarEntry) -> bytes:
    """The header block(s) of *entry*: an optional pax header, then ustar.

    Public because the archive writer caches per-member xz streams keyed by
    these exact bytes.
    """
    _check(entry)
    path = entry.name + ("/" if entry.kind == "dir" else "")
    pax: dict[str, str] = {}

    raw_path = _ascii(path, 256)
    split = _split_path(raw_path) if raw_path is not None else None
    if split is None:
        pax["path"] = path
        split = (b"", _fallback(path, 100))
    prefix, name = split

    linkname = _ascii(entry.linkname, 100)
    if linkname is None:
        pax["linkpath"] = entry.linkname
        linkname = _fallback(entry.linkname, 100)
    uname = _ascii(entry.uname, 32)
    if uname is None:
        pax["uname"] = entry.uname
        uname = _fallback(entry.uname, 32)
    gname = _ascii(entry.gname, 32)
    if gname is None:
        pax["gname"] = entry.gname
        gname = _fallback(entry.gname, 32)
    numbers = {}
    for key, value, limit in (("uid", entry.uid, _MAX_OCTAL_7), ("gid", entry.gid, _MAX_OCTAL_7),
                              ("size", entry.size, _MAX_OCTAL_11)):
        if value > limit:
            pax[key] = str(value)
            value = 0
        numbers[key] = value

    ustar = _ustar_block(name=name, prefix=prefix, mode=entry.mode, uid=numbers["uid"],
                         gid=numbers["gid"], size=numbers["size"], mtime=entry.mtime,
                         typeflag=KINDS[entry.kind], linkname=linkname, uname=uname, gname=gname)
    if not pax:
        return ustar
    records = b"".join(_pax_record(k, pax[k]) for k in sorted(pax))
    pax_header = _ustar_block(name=PAX_NAME, prefix=b"", mode=0o644, uid=0, gid=0,
                              size=len(records), mtime=entry.mtime, typeflag=b"x",
                              linkname=b"", uname=b"", gname=b"")
    return pax_header + records + padding(len(records)) + ustar


class TarStream:
    """Writes members to *fileobj* (anything with write()), one at a time.

    Memory stays bounded: file data is copied in 1 MiB chunks.  After a
    LayerError the stream is incomplete and must be discarded (the blob
    writer's abort()).
    """

    def __init__(self, fileobj: Sink) -> None:
        self._out = fileobj
        self._closed = False
        self.members = 0

    def add(self, entry: TarEntry, data: bytes | Readable | None = None) -> None:
        """Append *entry*; a file's *data* must deliver exactly entry.size bytes."""
        if self._closed:
            raise LayerError(f"tar entry {entry.name!r}: stream already closed")
        header = encode_header(entry)
        if entry.kind != "file" and data not in (None, b""):
            raise LayerError(f"tar entry {entry.name!r}: a {entry.kind} carries no data")
        if entry.kind == "file" and entry.size and data is None:
            raise LayerError(f"tar entry {entry.name!r}: {entry.size} bytes announced, no data given")
        self._out.write(header)
        if entry.kind == "file":
            self._copy(entry, data)
        self.members += 1

    def _copy(self, entry: TarEntry, data: bytes | Readable | None) -> None:
        if isinstance(data, (bytes, bytearray, memoryview)):
            if len(data) != entry.size:
                raise LayerError(f"tar entry {entry.name!r}: {len(data)} bytes given, "
                                 f"{entry.size} announced")
            for offset in range(0, len(data), CHUNK):
                self._out.write(bytes(data[offset:offset + CHUNK]))
        elif data is not None:
            remaining = entry.size
            while remaining:
                chunk = data.read(min(CHUNK, remaining))
                if not chunk:
                    raise LayerError(f"tar entry {entry.name!r}: data ended "
                                     f"{remaining} bytes short of {entry.size}")
                self._out.write(chunk)
                remaining -= len(chunk)
            if data.read(1):
                raise LayerError(f"tar entry {entry.name!r}: data longer than {entry.size} bytes")
        self._out.write(padding(entry.size))

    def close(self) -> None:
        """Write the end-of-archive blocks (idempotent); the sink stays open."""
        if not self._closed:
            self._out.write(END_OF_ARCHIVE)
            self._closed = True

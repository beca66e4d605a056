"""The released ``FreeBSD-<version>-<arch>-container-image-<flavour>.txz`` files.

Each is an xz-compressed tar of an OCI image layout (oci-layout, index.json,
blobs/sha256/...), which ``podman load -i`` and ``skopeo ... oci-archive:``
accept.  A family (static -> dynamic -> minimal) shares its lower layers, and
xz at preset 6 runs at a few MB/s, so compressing every archive from scratch
would spend most of a release build re-compressing the same blobs.

xz readers (liblzma and xz(1), Go's ulikunitz/xz used by containers/image,
Python's lzma, libarchive) accept concatenated xz streams as one file, so an
archive is assembled from segments, each a complete xz stream:

1. head: oci-layout, index.json, the blobs/ directories and every small blob
   (configs, manifests, indexes, tiny layers), compressed per archive;
2. one stream per large blob holding [tar header + blob + padding]; cached
   in cache_dir under the blob digest, the preset and a hash of the exact
   header bytes, and reused by every archive of the family carrying the blob;
3. tail: the end-of-archive blocks.

Blobs that are already gzip or zstd compressed (layers as pushed to
registries) gain almost nothing from LZMA but cost its full CPU time, so they
go into "store" streams (see xz_store_stream), built at memory speed and not
cached.  The result is deterministic: member order, modes (0644/0755),
owners (0/0) and mtime are fixed, and each segment depends only on its
member's bytes and the preset.  Cached segments are only as stable as the
liblzma that made them: after a liblzma upgrade, clear cache_dir to get the
bytes a fresh build would.
"""
from __future__ import annotations

import contextlib
import hashlib
import lzma
import shutil
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from .checksum import Digests
from .compress import crc32
from .errors import LayerError
from .fsutil import Writeback, atomic_output
from .oci import LAYOUT_VERSION, blob_path, document_bytes, reachable_blobs
from .tarstream import CHUNK, END_OF_ARCHIVE, TarEntry, encode_header, padding

SMALL_BLOB = 256 << 10       # below this a blob rides in the per-archive head stream
STORE_PIECE = 1 << 16        # largest LZMA2 uncompressed chunk
_XZ_MAGIC = b"\xfd7zXZ\x00"
_XZ_FOOTER_MAGIC = b"YZ"
_CHECK_CRC32 = 0x01
_LZMA2_FILTER = 0x21
_LZMA2_DICT_64K = 8          # dictionary size property: 2 << (8 // 2 + 11) = 64 KiB
_COMPRESSED_MAGICS = (b"\x1f\x8b", b"\x28\xb5\x2f\xfd")  # gzip, zstd


def _varint(value: int) -> bytes:
    """xz's multibyte integer: 7 bits per byte, least significant first."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _with_crc(data: bytes) -> bytes:
    return data + struct.pack("<I", crc32(data, 0))


def _pad4(size: int) -> bytes:
    return bytes(-size % 4)


def _store_pieces(chunks: Iterable[bytes]) -> Iterator[bytes | memoryview]:
    """Re-cut *chunks* into 64 KiB pieces so the output ignores the caller's chunking (views, not copies)."""
    pending = b""
    for chunk in chunks:
        data = pending + chunk if pending else chunk
        view = memoryview(data)
        offset = 0
        while len(data) - offset >= STORE_PIECE:
            yield view[offset:offset + STORE_PIECE]
            offset += STORE_PIECE
        pending = data[offset:]
    if pending:
        yield pending


# block header: size byte (12 / 4 - 1), flags (one filter, no sizes given),
# LZMA2 filter id, one property byte, the property, padding; then its CRC32
_STORE_BLOCK_HEADER = _with_crc(bytes([2, 0, _LZMA2_FILTER, 1, _LZMA2_DICT_64K, 0, 0, 0]))


def _xz_index_and_footer(records: list[tuple[int, int]], flags: bytes) -> bytes:
    """Index (unpadded size, uncompressed size per block) and stream footer."""
    index = b"\x00" + _varint(len(records))
    for unpadded, uncompressed in records:
        index += _varint(unpadded) + _varint(uncompressed)
    index = _with_crc(index + _pad4(len(index)))
    backward = struct.pack("<I", len(index) // 4 - 1)
    footer_crc = struct.pack("<I", crc32(backward + flags, 0))
    return index + footer_crc + backward + flags + _XZ_FOOTER_MAGIC


def xz_store_stream(data_iter: Iterable[bytes]) -> Iterator[bytes | memoryview]:
    """A complete xz stream that stores *data_iter*'s bytes without compressing.

    One block whose LZMA2 data is a run of uncompressed chunks (control byte
    1 for the first, with dictionary reset, 2 after; at most 64 KiB each),
    CRC32 check.  Any xz decoder reads it; the encoder is a copy plus a CRC,
    so already-compressed layers enter an archive at memory speed.  Empty
    input gives a stream without blocks, as xz(1) writes for an empty file.
    """
    flags = bytes([0, _CHECK_CRC32])
    yield _XZ_MAGIC + _with_crc(flags)
    crc = 0
    total = 0
    packed = 0  # LZMA2 bytes: chunk headers + data
    for piece in _store_pieces(data_iter):
        if not total:
            yield _STORE_BLOCK_HEADER
        control = b"\x01" if not total else b"\x02"
        yield control + struct.pack(">H", len(piece) - 1)
        yield piece
        crc = crc32(piece, crc)
        total += len(piece)
        packed += 3 + len(piece)
    records = []
    if total:
        packed += 1  # LZMA2 end marker
        yield b"\x00" + _pad4(len(_STORE_BLOCK_HEADER) + packed) + struct.pack("<I", crc)
        records.append((len(_STORE_BLOCK_HEADER) + packed + 4, total))
    yield _xz_index_and_footer(records, flags)


def _read_chunks(f: BinaryIO) -> Iterator[bytes]:
    while chunk := f.read(CHUNK):
        yield chunk


def _file_member(name: str, size: int, mtime: int) -> bytes:
    return encode_header(TarEntry(name, "file", 0o644, 0, 0, "", "", mtime, size))


def _looks_compressed(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4).startswith(_COMPRESSED_MAGICS)


class _Output:
    """The archive file plus one lazily opened LZMA stream for small members."""

    def __init__(self, f: IO[bytes], preset: int) -> None:
        self.f = f
        self.preset = preset
        self._xz: lzma.LZMACompressor | None = None

    def compressed(self, data: bytes) -> None:
        if self._xz is None:
            self._xz = lzma.LZMACompressor(format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64,
                                           preset=self.preset)
        for offset in range(0, len(data), CHUNK):
            self.f.write(self._xz.compress(data[offset:offset + CHUNK]))

    def end_stream(self) -> None:
        if self._xz is not None:
            self.f.write(self._xz.flush())
            self._xz = None


def _cached_segment(cache_dir: Path, path: Path, hexdigest: str, header: bytes,
                    size: int, preset: int) -> Path:
    """The cached xz stream of [header + blob + padding], built on first use."""
    key = hashlib.sha256(b"%d\0" % preset + header).hexdigest()[:16]
    cached = Path(cache_dir) / f"{hexdigest}.xz{preset}.{key}.xz"
    if cached.is_file() and _is_whole_xz(cached):
        return cached
    with atomic_output(cached) as out, open(path, "rb") as blob:
        xz = lzma.LZMACompressor(format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=preset)
        out.write(xz.compress(header))
        copied = 0
        for chunk in _read_chunks(blob):
            copied += len(chunk)
            out.write(xz.compress(chunk))
        if copied != size:
            raise LayerError(f"{path}: {copied} bytes, descriptor says {size}")
        out.write(xz.compress(padding(size)))
        out.write(xz.flush())
    return cached


def _is_whole_xz(path: Path) -> bool:
    """Cheap sanity check of a cache entry: xz magic at both ends."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12:
            return False
        f.seek(-2, 2)
        return head.startswith(_XZ_MAGIC) and f.read(2) == _XZ_FOOTER_MAGIC


class _Hashed:
    """The archive file, hashed for CHECKSUM.SHA256/512 on the way out (checksum.Digests).

    Writes are gathered into blocks of Digests.BLOCK (the store streams come
    in 64 KiB pieces and 3-byte chunk headers), each joined once, hashed and
    written with one call; flush() writes the rest.
    """

    def __init__(self, f: IO[bytes], digests: Digests) -> None:
        self._f, self._digests = f, digests
        self.writeback = Writeback(f)
        self._parts: list[bytes | memoryview] = []
        self._size = 0

    def write(self, data: bytes | memoryview) -> int:
        self._parts.append(data)            # pieces are views of bytes objects nobody changes
        self._size += len(data)
        if self._size >= Digests.BLOCK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._parts:
            block = b"".join(self._parts)
            self._parts.clear()
            self._size = 0
            self._digests.update(block)
            self._f.write(block)
            self.writeback.wrote(len(block))


def write_archive(dest: Path, blobs_dir: Path, index: dict[str, Any], *, xz_preset: int,
                  cache_dir: Path, mtime: int = 0, store_compressed: bool = True) -> tuple[int, dict[str, str]]:
    """Write *dest* (.txz): the layout of *index* as concatenated xz streams.

    Returns its size and its CHECKSUM digests ({"SHA256": hex, "SHA512": hex}), computed from the
    bytes as they were written.
    """
    if not 0 <= xz_preset <= 9:
        raise LayerError(f"{dest}: xz preset {xz_preset} outside 0..9")
    blobs = reachable_blobs(blobs_dir, index)
    small = [(d, s) for d, s in blobs if s < SMALL_BLOB]
    large = [(d, s) for d, s in blobs if s >= SMALL_BLOB]
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    with atomic_output(dest, 0o644) as raw, Digests() as digests:
        hashed = _Hashed(raw, digests)
        try:
            _write_members(cast(IO[bytes], hashed), blobs_dir, index, small, large, xz_preset=xz_preset,
                           cache_dir=cache_dir, mtime=mtime, store_compressed=store_compressed)
        except BaseException:
            with contextlib.suppress(OSError):
                hashed.writeback.finish()   # before atomic_output closes the descriptor it syncs
            raise
        hashed.writeback.finish()
        return digests.size, digests.hexdigests()


def _write_members(f: IO[bytes], blobs_dir: Path, index: dict[str, Any], small: list[tuple[str, int]],
                   large: list[tuple[str, int]], *, xz_preset: int, cache_dir: Path, mtime: int,
                   store_compressed: bool) -> None:
    out = _Output(f, xz_preset)
    for name, data in (("oci-layout", document_bytes(LAYOUT_VERSION)),
                       ("index.json", document_bytes(index))):
        out.compressed(_file_member(name, len(data), mtime) + data + padding(len(data)))
    for name in ("blobs", "blobs/sha256"):
        out.compressed(encode_header(TarEntry(name, "dir", 0o755, 0, 0, "", "", mtime)))
    for digest, size in small:
        data = blob_path(blobs_dir, digest).read_bytes()
        if len(data) != size:
            raise LayerError(f"{digest}: {len(data)} bytes, descriptor says {size}")
        out.compressed(_file_member("blobs/sha256/" + digest[7:], size, mtime)
                       + data + padding(size))
    out.end_stream()
    for digest, size in large:
        _write_large(f, blobs_dir, cache_dir, digest, size, mtime, xz_preset, store_compressed)
    out.compressed(END_OF_ARCHIVE)
    out.end_stream()
    f.flush()


def _write_large(f: IO[bytes], blobs_dir: Path, cache_dir: Path, digest: str, size: int,
                 mtime: int, preset: int, store_compressed: bool) -> None:
    path = blob_path(blobs_dir, digest)
    header = _file_member("blobs/sha256/" + digest[7:], size, mtime)
    if store_compressed and _looks_compressed(path):
        copied = 0
        with open(path, "rb") as blob:
            def member() -> Iterator[bytes]:
                nonlocal copied
                yield header
                for chunk in _read_chunks(blob):
                    copied += len(chunk)
                    yield chunk
                yield padding(size)
            for piece in xz_store_stream(member()):
                f.write(piece)
        if copied != size:
            raise LayerError(f"{path}: {copied} bytes, descriptor says {size}")
        return
    segment = _cached_segment(cache_dir, path, digest[7:], header, size, preset)
    with open(segment, "rb") as cached:
        shutil.copyfileobj(cached, f, CHUNK)

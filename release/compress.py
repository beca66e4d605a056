"""Layer compressors that hash while they write.

A layer is written once, as a stream: tar bytes go into a BlobWriter, which
hashes them (the diff_id), compresses them, hashes the compressed bytes (the
blob digest) and writes those to a temporary file in the blobs directory.
finish() renames the file to its digest; a blob that already exists is
kept, since equal names mean equal bytes (content addressing).

Determinism rules (same tar in, same blob out, on any host):

- Compressor input is re-cut into fixed blocks (1 MiB, or gzip_block_size
  for gzip in blocks), so the output does not depend on how callers happen
  to split their writes.
- gzip: raw deflate with a pinned level, window (15) and memLevel (8); the
  header is written here: no file name, MTIME 0, XFL from the level by
  zlib's own rule, OS byte 255 ("unknown").  255 is what Go's compress/gzip
  (behind containers/image, buildah and moby) and Python's GzipFile write;
  3 ("Unix", zlib's and GNU gzip's choice) would describe the build host,
  and a FreeBSD image built on Linux or macOS must be the same bytes.
- gzip in blocks (gzip_block_size > 0, the default; the scheme of pigz's
  compress_thread(), with a layout fixed by the input alone): the tar is cut at multiples of the block size, whatever
  the thread count; each block is deflated on its own, primed with the
  last 32 KiB of the block before it as preset dictionary (so matches
  still reach back across the cut, as in one stream), and ends with a
  sync flush (an empty stored block: byte-aligned, not final) except the
  last, which finishes the stream.  The pieces join into ONE gzip member
  whose deflate stream any inflater reads straight through (no
  multi-member gzip, which some readers stop after); CRC-32 and ISIZE
  are computed over the whole tar in order.  Each block's bytes depend
  only on its input, its dictionary and the level, so blocks are
  compressed on every core (compress_threads) and the blob is identical
  for 1 thread or 64, on any CPU zlib runs on.  The cost: 5 bytes per
  block and a restart of the Huffman tables (measured: +0.01% on 1 MiB
  blocks of ELF files).  gzip_block_size = 0 keeps the single serial
  stream, the bytes of builds made before blocks existed.
- zstd: single-threaded (worker threads can change the frame layout), a
  pinned level, no content-size field (the size is unknown when streaming),
  no checksum, no dictionary id.
- "tar": bytes pass through; digest == diff_id.

gzip engines:

- "zlib" (the default; "auto" means zlib): stock zlib is portable C without
  CPU-dependent code paths, so its output depends only on its version, which
  compressor_identity() reports so a zlib upgrade is a visible input change.
  Caveat: a Python linked against zlib-ng (e.g. Fedora 40+) writes different
  deflate bytes; its version string carries ".zlib-ng" and so does the
  identity.
- "isal" (opt-in, much faster): ISA-L picks base C, SSE4.2, AVX, AVX2 or
  AVX-512 routines at run time (igzip_multibinary.asm), and they are not the
  same algorithm: level 3 runs icf_body_hash1_fillgreedy_lazy below AVX2 but
  icf_body_lazyhash1_fillgreedy_greedy from AVX2 up, with a different hash;
  levels 0-2 hash with the crc32 instruction only when SSE4.2 exists.
  Measured with isal 1.9.1 on one 3 MB input under qemu-user CPU models:
  levels 0-2 differ between Conroe (no SSE4.2) and Nehalem..AVX-512, and
  level 3 gives three different streams (Conroe..SandyBridge, Haswell, an
  AVX-512 host), while zlib gave identical bytes on all of them.  intel/isa-l
  issue #140 (deterministic compression) only covers repeated runs of one
  build, and nothing is promised across ISA-L versions (aarch64 has its own
  routines).  So isal is for builds where one machine makes every published
  blob.  Its four levels are mapped from gzip_level by ISAL_LEVELS.

compressor_identity() includes a probe: the digest of a fixed sample
compressed by the configured engine on this machine.  Two builders whose
compressors disagree (another CPU path, zlib-ng, an upgrade) then
have different identities, and the task layer rebuilds instead of mixing
blobs made by both.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import struct
import tempfile
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .errors import ConfigError, LayerError
from .fsutil import TMP_PREFIX, Writeback, disk_errors

CHUNK = 1 << 20
MEDIA_TYPES = {
    "tar": "application/vnd.oci.image.layer.v1.tar",
    "tar+gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "tar+zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
GZIP_ENGINES = ("auto", "zlib", "isal")
# zlib level -> ISA-L level.  Even ISA-L's best (3) compresses only about as
# well as zlib -1 (bench/compression.py: ratio 0.447 vs 0.440 on ELF files,
# zlib -6: 0.405), so the default level 6 and above map to 3, 2-5 to 2, and
# 0/1 to 0/1 (ISA-L level 0 still compresses; there is no stored mode).
ISAL_LEVELS = {0: 0, 1: 1, 2: 2, 3: 2, 4: 2, 5: 2, 6: 3, 7: 3, 8: 3, 9: 3}
GZIP_OS_UNKNOWN = 255
DEFAULT_GZIP_BLOCK = 1 << 20        # gzip_block_size's default
GZIP_BLOCK_RANGE = (64 << 10, 64 << 20)
DEFLATE_WINDOW = 32 << 10           # what a block's dictionary holds of the block before it
Buffer = bytes | memoryview         # a written piece, or a view of one (never copied into blocks)
Parts = tuple[Buffer, ...]          # one block of input: its pieces in order


@dataclass(frozen=True)
class Blob:
    """A finished blob: digest of the stored bytes, diff_id of the tar inside."""

    digest: str
    diff_id: str
    size: int
    media_type: str

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


class _Codec(Protocol):
    """Input cut into blocks of block_size (the last may be shorter, even empty), in order.

    block() is called on the writing thread, in input order, and returns the
    job that compresses that block; jobs of an *independent* codec may run
    concurrently, the others run one after another on one worker.
    """

    block_size: int
    independent: bool

    def header(self) -> bytes: ...
    def block(self, parts: Parts, last: bool) -> Callable[[], bytes]: ...
    def trailer(self) -> bytes: ...


class _Passthrough:
    block_size = CHUNK
    independent = True

    def header(self) -> bytes:
        return b""

    def block(self, parts: Parts, last: bool) -> Callable[[], bytes]:
        return lambda: b"".join(parts)

    def trailer(self) -> bytes:
        return b""


def _deflater(level: int, engine: str, zdict: bytes = b"") -> Any:
    """A raw deflate compressor of *engine* at the configured (zlib) level, primed with *zdict*."""
    if engine == "isal":
        from isal import isal_zlib
        if zdict:
            return isal_zlib.compressobj(ISAL_LEVELS[level], isal_zlib.DEFLATED, -15, zdict=zdict)
        return isal_zlib.compressobj(ISAL_LEVELS[level], isal_zlib.DEFLATED, -15)
    if zdict:
        return zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, zdict=zdict)
    return zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY)


def _crc32_function() -> Callable[[bytes | memoryview, int], int]:
    """CRC-32 is one function whoever computes it: ISA-L's (carry-less multiply, about 5x zlib's speed
    on the layer's input) when present, zlib's otherwise; gzip trailers and xz checks are the same bytes."""
    try:
        from isal import isal_zlib
    except ImportError:
        return zlib.crc32
    return isal_zlib.crc32


crc32 = _crc32_function()


class _GzipMember:
    """RFC 1952 framing: the fixed header, CRC-32 and ISIZE of the input seen by count()."""

    def __init__(self, level: int) -> None:
        # zlib's gzip wrapper: XFL 2 = best, 4 = fastest; derived from the
        # configured level so every engine and layout writes the same header
        xfl = 2 if level == 9 else 4 if level < 2 else 0
        self._header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + bytes([xfl, GZIP_OS_UNKNOWN])
        self._crc = 0
        self._length = 0

    def header(self) -> bytes:
        return self._header

    def count(self, parts: Parts) -> None:
        for part in parts:
            self._crc = crc32(part, self._crc)
            self._length += len(part)

    def trailer(self) -> bytes:
        return struct.pack("<II", self._crc, self._length & 0xFFFFFFFF)


class _Gzip(_GzipMember):
    """One deflate stream from zlib or ISA-L, compressed in order on one thread."""

    block_size = CHUNK
    independent = False

    def __init__(self, level: int, engine: str) -> None:
        super().__init__(level)
        self._engine = engine
        self._deflate = _deflater(level, engine)

    def block(self, parts: Parts, last: bool) -> Callable[[], bytes]:
        def run() -> bytes:
            self.count(parts)
            out = [self._deflate.compress(part) for part in _fed(self._engine, parts)]
            return b"".join(out + [self._deflate.flush()] if last else out)
        return run


class _BlockGzip(_GzipMember):
    """Fixed-size blocks deflated independently, primed with the previous block's tail (see above)."""

    independent = True

    def __init__(self, level: int, engine: str, block_size: int) -> None:
        super().__init__(level)
        self.block_size, self._level, self._engine = block_size, level, engine
        self._tail = b""

    def block(self, parts: Parts, last: bool) -> Callable[[], bytes]:
        self.count(parts)
        zdict, self._tail = self._tail, _suffix(parts, DEFLATE_WINDOW)
        return functools.partial(_deflate_block, self._level, self._engine, zdict, parts, last)


def _suffix(parts: Parts, size: int) -> bytes:
    """The last *size* bytes of the concatenated *parts* (all of them when shorter)."""
    out: list[Buffer] = []
    for part in reversed(parts):
        if size <= 0:
            break
        out.append(part[-size:] if len(part) > size else part)
        size -= len(part)
    return b"".join(reversed(out))


def _fed(engine: str, parts: Parts) -> Parts:
    """*parts* as the engine takes them: zlib's output does not depend on how its input is split,
    ISA-L's does (so it gets one piece, as the block always was)."""
    return (b"".join(parts),) if engine == "isal" and len(parts) > 1 else parts


def _deflate_block(level: int, engine: str, zdict: bytes, parts: Parts, last: bool) -> bytes:
    """One block, fed part by part (see _fed)."""
    d = _deflater(level, engine, zdict)
    out = [d.compress(part) for part in _fed(engine, parts)]
    out.append(d.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH))
    return b"".join(out)


class _Zstd:
    block_size = CHUNK
    independent = False

    def __init__(self, level: int) -> None:
        import zstandard
        cctx = zstandard.ZstdCompressor(level=level, threads=0, write_checksum=False,
                                        write_content_size=False, write_dict_id=False)
        self._obj = cctx.compressobj()

    def header(self) -> bytes:
        return b""

    def block(self, parts: Parts, last: bool) -> Callable[[], bytes]:
        def run() -> bytes:
            out = [self._obj.compress(part) for part in parts]
            return b"".join(out + [self._obj.flush()] if last else out)
        return run

    def trailer(self) -> bytes:
        return b""


def _resolve_engine(gzip_engine: str) -> str:
    if gzip_engine not in GZIP_ENGINES:
        raise ConfigError([f"gzip_engine: unknown engine {gzip_engine!r} "
                           f"(choose one of {', '.join(GZIP_ENGINES)})"])
    return "zlib" if gzip_engine == "auto" else gzip_engine


def _check_levels(media: str, gzip_level: int, zstd_level: int, gzip_block_size: int = 0) -> None:
    if media not in MEDIA_TYPES:
        raise ConfigError([f"layer media {media!r} unknown (choose one of {', '.join(MEDIA_TYPES)})"])
    if media == "tar+gzip" and not 0 <= gzip_level <= 9:
        raise ConfigError([f"gzip_level: {gzip_level} outside 0..9"])
    if media == "tar+gzip" and gzip_block_size and \
            not GZIP_BLOCK_RANGE[0] <= gzip_block_size <= GZIP_BLOCK_RANGE[1]:
        raise ConfigError([f"gzip_block_size: {gzip_block_size} is neither 0 nor between "
                           f"{GZIP_BLOCK_RANGE[0]} and {GZIP_BLOCK_RANGE[1]}"])
    if media == "tar+zstd" and not 1 <= zstd_level <= 22:
        raise ConfigError([f"zstd_level: {zstd_level} outside 1..22"])


def _probe_sample() -> bytes:
    """256 KiB of repetitive pseudo-text: enough matches to exercise the match finder."""
    words = [b"%x" % (i * 2654435761 % 65521) for i in range(400)]
    out = bytearray()
    state = 1
    while len(out) < 1 << 18:
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        out += words[state % len(words)] + b" "
    return bytes(out)


def _make_codec(media: str, gzip_level: int, zstd_level: int, engine: str, gzip_block_size: int) -> _Codec:
    if media == "tar+gzip":
        return _BlockGzip(gzip_level, engine, gzip_block_size) if gzip_block_size else _Gzip(gzip_level, engine)
    if media == "tar+zstd":
        return _Zstd(zstd_level)
    return _Passthrough()


def _run_codec(codec: _Codec, data: bytes) -> bytes:
    """*data* through *codec* on this thread (the blocks cut as BlobWriter cuts them)."""
    size = codec.block_size
    cuts = list(range(0, max(len(data) - 1, 0) // size * size, size)) if data else []
    out = [codec.header()] + [codec.block((data[i:i + size],), False)() for i in cuts]
    tail = len(cuts) * size
    return b"".join(out + [codec.block((data[tail:],), True)(), codec.trailer()])


@functools.cache
def _identity(media: str, gzip_level: int, zstd_level: int, gzip_engine: str, gzip_block_size: int) -> str:
    return json.dumps(_compressor_identity(media, gzip_level=gzip_level, zstd_level=zstd_level,
                                           gzip_engine=gzip_engine, gzip_block_size=gzip_block_size))


def compressor_identity(media: str, *, gzip_level: int, zstd_level: int, gzip_engine: str = "auto",
                        gzip_block_size: int = DEFAULT_GZIP_BLOCK) -> dict[str, Any]:
    """Everything that decides the compressed bytes (computed once per process)."""
    ident: dict[str, Any] = json.loads(_identity(media, gzip_level, zstd_level, gzip_engine, gzip_block_size))
    return ident


def _compressor_identity(media: str, *, gzip_level: int, zstd_level: int, gzip_engine: str,
                         gzip_block_size: int) -> dict[str, Any]:
    """Everything that decides the compressed bytes, for task identities.

    Compressor versions and the probe digest make a compressor change (which
    may change blob digests) a visible input change instead of a surprise.
    The thread count is not here: it never changes the bytes.
    """
    _check_levels(media, gzip_level, zstd_level, gzip_block_size)
    if media == "tar":
        return {"media": media}
    engine = _resolve_engine(gzip_engine)
    if media == "tar+zstd":
        import zstandard
        ident = {"media": media, "level": zstd_level, "threads": 0,
                 "zstd": ".".join(map(str, zstandard.ZSTD_VERSION))}
    else:
        ident = {"media": media, "engine": engine, "level": gzip_level, "os": GZIP_OS_UNKNOWN}
        if gzip_block_size:
            ident["blocks"] = gzip_block_size
        if engine == "isal":
            import isal
            ident.update(isal=isal.__version__, isal_level=ISAL_LEVELS[gzip_level])
        else:
            ident.update(zlib=zlib.ZLIB_RUNTIME_VERSION)
    # blocks of 64 KiB in the probe, so the dictionary and sync-flush paths run on the sample too
    probe_blocks = min(gzip_block_size, GZIP_BLOCK_RANGE[0]) if media == "tar+gzip" else 0
    probe = _run_codec(_make_codec(media, gzip_level, zstd_level, engine, probe_blocks), _probe_sample())
    ident["probe"] = hashlib.sha256(probe).hexdigest()[:16]
    return ident


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class BlobWriter:
    """A write()-able sink that becomes a content-addressed blob on finish().

    Use as a context manager: leaving the block by an exception aborts (the
    temporary file is removed); otherwise call finish() inside the block.

    Compression runs on worker threads (zlib, ISA-L, zstd and hashlib release
    the GIL), so tar assembly and diff_id hashing overlap with it: one worker
    for codecs that are one stream, *threads* for independent blocks.  Results
    are written in input order from a window of at most two jobs per worker,
    so memory stays at a few blocks and the bytes never depend on timing.
    """

    def __init__(self, blobs_dir: Path, media: str, codec: _Codec, threads: int = 1) -> None:
        self.blobs_dir = Path(blobs_dir)
        self.media = media
        self._codec = codec
        self._diff = hashlib.sha256()
        self._digest = hashlib.sha256()
        self._parts: deque[Buffer] = deque()    # input not yet cut into blocks
        self._pending = 0                       # its length
        self._size = 0
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + "blob.", dir=self.blobs_dir)
        self._tmp = Path(tmp)
        self._file = os.fdopen(fd, "wb")
        self._writeback = Writeback(self._file)
        self.result: Blob | None = None
        workers = max(1, threads) if codec.independent else 1
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="blob-compressor")
        self._inflight: deque[Future[bytes]] = deque()
        self._window = 2 * workers
        self._emit(codec.header())

    def _submit(self, data: Parts, last: bool) -> None:
        self._inflight.append(self._pool.submit(self._codec.block(data, last)))
        while len(self._inflight) > self._window:
            self._emit(self._inflight.popleft().result())

    def write(self, data: bytes) -> int:
        if self._file.closed:
            raise LayerError(f"{self._tmp}: blob writer already finished")
        with disk_errors(f"{self.blobs_dir} (a blob being written)"):
            return self._write(data)

    def _write(self, data: bytes) -> int:
        if not isinstance(data, bytes):
            data = bytes(data)          # a caller may reuse its buffer; bytes are kept as they are
        self._diff.update(data)
        self._parts.append(data)
        self._pending += len(data)
        size = self._codec.block_size
        while self._pending > size:     # whole blocks, keeping at least one byte back for finish()
            self._submit(self._take(size), False)
        return len(data)

    def _take(self, size: int) -> Parts:
        """The next *size* bytes of input as one block: the written pieces (or views of them), not a copy."""
        out: list[Buffer] = []
        need = size
        while need:
            part = self._parts[0]
            if len(part) <= need:
                out.append(self._parts.popleft())
                need -= len(part)
            else:
                view = memoryview(part)
                out.append(view[:need])
                self._parts[0] = view[need:]
                need = 0
        self._pending -= size
        return tuple(out)

    def _emit(self, data: bytes) -> None:
        if data:
            self._digest.update(data)
            self._file.write(data)
            self._writeback.wrote(len(data))
            self._size += len(data)

    def finish(self) -> Blob:
        """Flush, fsync, and rename to blobs_dir/<hex> (keeping an existing blob)."""
        if self.result is not None:
            return self.result
        try:
            with disk_errors(f"{self.blobs_dir} (a blob being written)"):
                hexdigest = self._finish()
        except BaseException:
            self.abort()
            raise
        self.result = Blob(digest="sha256:" + hexdigest, diff_id="sha256:" + self._diff.hexdigest(),
                           size=self._size, media_type=MEDIA_TYPES[self.media])
        return self.result

    def _finish(self) -> str:
        self._submit(self._take(self._pending), True)
        while self._inflight:
            self._emit(self._inflight.popleft().result())
        self._emit(self._codec.trailer())
        self._pool.shutdown()
        self._writeback.finish()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        hexdigest = self._digest.hexdigest()
        final = self.blobs_dir / hexdigest
        if final.exists():
            self._tmp.unlink()
        else:
            os.chmod(self._tmp, 0o644)
            os.replace(self._tmp, final)
        return hexdigest

    def abort(self) -> None:
        """Drop the partial blob (safe to call more than once)."""
        for job in self._inflight:
            job.cancel()
        self._inflight.clear()
        self._pool.shutdown(wait=True)
        with contextlib.suppress(OSError):
            self._writeback.finish()        # before the descriptor it syncs is closed
        if not self._file.closed:
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is not None or self.result is None:
            self.abort()


def open_blob_writer(blobs_dir: Path, media: str, *, gzip_level: int, zstd_level: int,
                     gzip_engine: str = "auto", gzip_block_size: int = DEFAULT_GZIP_BLOCK,
                     threads: int = 0) -> BlobWriter:
    """A BlobWriter for *media* ("tar", "tar+gzip" or "tar+zstd") in *blobs_dir*.

    *threads* compress gzip blocks (0: every CPU this process may use); it
    never changes the bytes.
    """
    _check_levels(media, gzip_level, zstd_level, gzip_block_size)
    codec = _make_codec(media, gzip_level, zstd_level, _resolve_engine(gzip_engine), gzip_block_size)
    return BlobWriter(blobs_dir, media, codec, threads or available_cpus())

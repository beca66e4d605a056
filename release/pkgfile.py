"""pkg(8) package files (.pkg): a verifying streaming reader.

A .pkg is a tar compressed with zstd (older: xz) holding ``+COMPACT_MANIFEST``,
``+MANIFEST``, then the files at absolute paths, then the directories.  pkg
writes it with libarchive's "restricted pax" format: plain ustar headers, plus
a pax extended header only when ustar cannot say something (long or non-ASCII
names, file flags such as ``schg``).  The reader checks every member against the
manifest while the bytes stream past, so a layer built from a package never
contains unverified data.  The writer (the demo repository's and the tests' packages,
byte for byte as pkg-create makes them) is release/demo/pkgwriter.py.
"""
from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import io
import lzma
import os
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

import zstandard

from .errors import PackageError
from .fsutil import Readable
from .pkgmanifest import (Expected, Kind, TarHeader, check_path, index_manifest, parse_manifest,
                          resolve_metadata, symlink_sum_input)
from .sums import Summer, sum_kind, zbase32

_CHUNK = 1 << 20
MAX_METADATA = 256 << 20            # a +MANIFEST bigger than this is not a pkgbase package


@dataclass(frozen=True)
class PkgEntry:
    """One archive member as pkg would install it (owner and mode already resolved).

    *target* is a symlink's target or, for a hardlink, the earlier file whose
    contents it shares (a hardlink carries no data of its own: size 0).
    """

    path: str
    kind: Kind
    mode: int
    uname: str
    gname: str
    mtime: int
    size: int
    target: str
    fflags: str
    config: bool


# --- reading ---------------------------------------------------------------

_ARCHIVE_ERRORS = (tarfile.TarError, zstandard.ZstdError, lzma.LZMAError, EOFError, OSError, zlib.error)


@contextlib.contextmanager
def _as_package_error(name: str) -> Iterator[None]:
    """Turn decompressor and tar failures into one-line PackageErrors naming the package."""
    try:
        yield
    except _ARCHIVE_ERRORS as exc:
        raise PackageError(f"{name}: corrupt or truncated archive ({exc or type(exc).__name__})") from None


class _Prepend:
    """A read()-only stream with sniffed magic bytes pushed back in front."""

    def __init__(self, head: bytes, raw: Readable) -> None:
        self.head, self.raw = head, raw

    def seekable(self) -> bool:
        return False

    def seek(self, offset: int, /) -> int:
        raise io.UnsupportedOperation("seek")

    def read(self, size: int = -1) -> bytes:
        if self.head:
            data, self.head = (self.head, b"") if size < 0 or size >= len(self.head) else \
                (self.head[:size], self.head[size:])
            return data
        return self.raw.read(size)


class _ZstdFrames:
    """Follows the zstd frame layout of the compressed bytes passing through read().

    python-zstandard's stream reader reports a truncated frame as a clean end
    of data; walking block headers (cheap, no decompression) tells a complete
    stream from a cut one.
    """

    def __init__(self, raw: Readable) -> None:
        self.raw, self.frames = raw, 0
        self._state, self._need, self._buf, self._skip, self._checksum = "magic", 4, b"", 0, False

    @property
    def complete(self) -> bool:
        return self.frames > 0 and self._state == "magic" and not self._buf and not self._skip

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        pos = 0
        while pos < len(data):
            if self._skip:
                step = min(self._skip, len(data) - pos)
                self._skip -= step
                pos += step
                continue
            take = min(self._need - len(self._buf), len(data) - pos)
            self._buf += data[pos:pos + take]
            pos += take
            if len(self._buf) == self._need:
                self._advance(int.from_bytes(self._buf, "little"))
                self._buf = b""
        return data

    def _advance(self, value: int) -> None:
        if self._state == "magic":
            if value == 0xFD2FB528:
                self._state, self._need = "descriptor", 1
            elif 0x184D2A50 <= value <= 0x184D2A5F:
                self._state, self._need = "skippable", 4
            else:
                raise zstandard.ZstdError("data after the zstd frame")
        elif self._state == "skippable":
            self._state, self._need, self._skip = "magic", 4, value
        elif self._state == "descriptor":
            single = value >> 5 & 1
            self._checksum = bool(value & 4)
            self._skip = (1 - single) + (0, 1, 2, 4)[value & 3] + (single, 2, 4, 8)[value >> 6]
            self._state, self._need = "block", 3
        else:
            last, kind, size = value & 1, value >> 1 & 3, value >> 3
            if kind == 3:
                raise zstandard.ZstdError("reserved zstd block type")
            self._skip = 1 if kind == 1 else size
            if last:
                self._skip += 4 if self._checksum else 0
                self.frames += 1
                self._state, self._need = "magic", 4


def _decompressing(raw: BinaryIO) -> tuple[Readable, _ZstdFrames | None]:
    """(decompressed stream, zstd frame walker or None) for a .pkg of any compression pkg wrote."""
    head = raw.read(6)
    src = _Prepend(head, raw)
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        frames = _ZstdFrames(src)
        return zstandard.ZstdDecompressor().stream_reader(
            frames,  # type: ignore[arg-type]  # zstandard's stub asks for IO[bytes]; it calls read()
            read_size=1 << 16, closefd=False), frames
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(cast(IO[bytes], src)), None   # typeshed asks for IO[bytes]; LZMAFile only reads
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=src), None
    if head.startswith(b"BZh"):
        return bz2.BZ2File(src), None
    return src, None


class _VerifiedStream:
    """A member's contents; the manifest sum is checked as soon as the last byte is read."""

    def __init__(self, src: IO[bytes], size: int, expected: str, at: str, name: str) -> None:
        self._src, self._left, self._expected, self._at, self._name = src, size, expected, at, name
        self._kind = sum_kind(expected)
        self._hash = hashlib.sha256() if self._kind == "sha256" else hashlib.blake2b(digest_size=64)
        self.actual: str | None = None
        self._check_at_end()

    @property
    def kind(self) -> str:
        """The manifest sum's algorithm: "sha256" or "blake2b"."""
        return self._kind

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(_CHUNK), b""))
        with _as_package_error(self._name):
            data = self._src.read(min(size, self._left))
        if size and self._left and not data:
            raise PackageError(f"{self._at}: corrupt or truncated archive (it ends inside the file)")
        self._hash.update(data)
        self._left -= len(data)
        self._check_at_end()
        return data

    def _check_at_end(self) -> None:
        if self._left or self.actual is not None:
            return
        digest = self._hash.digest()
        self.actual = digest.hex() if self._kind == "sha256" else "2$" + zbase32(digest)
        if self.actual != self._expected.removeprefix("1$"):
            raise PackageError(f"{self._at}: contents do not match the manifest sum")

    def finish(self) -> str:
        """Read (and so verify) whatever the consumer left unread; the contents' sum."""
        while self._left:
            self.read(_CHUNK)
        assert self.actual is not None          # set by the read that took the last byte
        return self.actual


_KINDS: dict[bytes, Kind] = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.CONTTYPE: "file",
                             tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink", tarfile.DIRTYPE: "dir"}


def _kind(ti: tarfile.TarInfo) -> tuple[Kind | None, str]:
    """(kind, "") for what a package may hold, else (None, why not)."""
    if ti.issparse() or ti.type == tarfile.GNUTYPE_SPARSE or \
            any(k.startswith("GNU.sparse.") for k in ti.pax_headers):
        return None, "sparse file"
    kind = _KINDS.get(ti.type)
    if kind:
        return kind, ""
    return None, {tarfile.CHRTYPE: "character device", tarfile.BLKTYPE: "block device",
                  tarfile.FIFOTYPE: "fifo"}.get(ti.type, f"member type {ti.type!r}")


class _Forward:
    """The decompressed package as tarfile's file object in random-access mode ("r:"), read forwards only.

    tarfile reads members in order either way: it seeks to a member's data,
    past its padding, or to the byte before the next header, never behind
    what was read (TarFile.next()), and a seek backwards raises as it does in
    stream mode ("r|").  Stream mode, though, reads through tarfile._Stream,
    which takes the decompressor's output 10 KiB at a time and copies its
    whole buffer on every read; here a file's contents come from the
    decompressor in the pieces the reader asks for (1 MiB), and headers from
    a 256 KiB buffer.
    """

    PIECE = 1 << 18

    def __init__(self, src: Readable) -> None:
        self._src = src
        self._buf = b""
        self._at = 0            # read position in _buf
        self._pos = 0           # stream offset of _buf[_at]

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence != 0 or pos < self._pos:
            raise tarfile.StreamError("seeking backwards is not allowed")
        while pos > self._pos and self.read(min(pos - self._pos, _CHUNK)):
            pass
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(_CHUNK), b""))
        have = len(self._buf) - self._at
        if size <= have:
            data = self._buf[self._at:self._at + size]
            self._at += size
        else:
            parts = [self._buf[self._at:]] if have else []
            self._buf, self._at = b"", 0
            need = size - have
            while need:
                if need >= self.PIECE:              # a file's contents: straight from the decompressor
                    chunk = self._src.read(need)
                    taken = len(chunk)
                else:                               # a header, a small file: through the buffer
                    chunk = self._src.read(self.PIECE)
                    taken = min(need, len(chunk))
                    if taken < len(chunk):
                        self._buf, self._at = chunk, taken
                        chunk = chunk[:taken]
                if not taken:
                    break
                parts.append(chunk)
                need -= taken
            data = parts[0] if len(parts) == 1 else b"".join(parts)
        self._pos += len(data)
        return data


def _forward_tar(stream: _Forward) -> tarfile.TarFile:
    """A tar read in one forward pass (_Forward); typeshed's fileobj lists write() too."""
    return tarfile.open(fileobj=cast(IO[bytes], stream), mode="r:", encoding="utf-8", errors="surrogateescape")


class PackageReader:
    """One pass over a .pkg: manifests up front, then entries() streams and verifies the members."""

    def __init__(self, raw: BinaryIO, name: str, owns: bool) -> None:
        self.name, self._raw, self._owns, self._started = name, raw, owns, False
        try:
            with _as_package_error(name):
                self._stream, self._frames = _decompressing(raw)
                self._forward = _Forward(self._stream)
                self._tar = _forward_tar(self._forward)
                self._pending = self._read_metadata()
            self._index = index_manifest(self.manifest, name)
        except BaseException:
            self.close()
            raise
        self.generation: str = self._index.generation
        self.scripts: dict[str, str] = self._index.scripts
        self.config_files: set[str] = set(self._index.config_files)

    def __enter__(self) -> PackageReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns:
            self._raw.close()

    def _next(self) -> tarfile.TarInfo | None:
        ti = self._tar.next()
        self._tar.members.clear()  # type: ignore[attr-defined]  # one pass needs no index; keep memory flat
        return ti

    def _read_metadata(self) -> tarfile.TarInfo | None:
        """Read the leading '+' members; return the first member after them."""
        found: dict[str, dict[str, Any]] = {}
        ti = self._next()
        while ti is not None and ti.name.startswith("+"):
            if ti.name not in ("+MANIFEST", "+COMPACT_MANIFEST") or ti.name in found or not ti.isreg():
                raise PackageError(f"{self.name}: {ti.name}: unexpected metadata member")
            if ti.size > MAX_METADATA:
                raise PackageError(f"{self.name}: {ti.name}: {ti.size} bytes is too large")
            member = self._tar.extractfile(ti)
            assert member is not None           # a regular file (checked above)
            data = member.read()
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as e:    # the records and the pkg database built from it are UTF-8
                raise PackageError(f"{self.name}: {ti.name}: not UTF-8 (byte {e.start})") from None
            found[ti.name] = parse_manifest(data, f"{self.name}: {ti.name}")
            ti = self._next()
        if "+MANIFEST" not in found:
            if ti is None:
                self._drain()
            raise PackageError(f"{self.name}: no +MANIFEST before the first file")
        self.manifest: dict[str, Any] = found["+MANIFEST"]
        self.compact: dict[str, Any] | None = found.get("+COMPACT_MANIFEST")
        return ti

    def _drain(self) -> None:
        """Read to the end of the compressed data so truncation and bad checksums surface."""
        with _as_package_error(self.name):
            while self._stream.read(_CHUNK):
                pass
            if self._frames is not None:
                while self._frames.read(_CHUNK):
                    pass
                if not self._frames.complete:
                    raise PackageError(f"{self.name}: corrupt or truncated archive (zstd frame cut short)")

    def entries(self) -> Iterator[tuple[PkgEntry, _VerifiedStream | None]]:
        """Yield (entry, stream) in archive order; stream is None except for regular files.

        Read a stream before asking for the next entry: unread bytes are read
        and verified then, and a sum mismatch raises PackageError there.  Only
        an iteration run to its end has also checked that nothing listed in the
        manifest is missing and that the compressed data is complete.
        """
        if self._started:
            raise PackageError(f"{self.name}: entries() can stream the archive only once")
        self._started = True
        seen: set[str] = set()
        file_sums: dict[str, str] = {}
        ti = self._pending
        while ti is not None:
            entry, stream = self._entry(ti, seen, file_sums)
            yield entry, stream
            if stream is not None:
                file_sums[entry.path] = stream.finish()
            with _as_package_error(self.name):
                ti = self._next()
        self._drain()
        missing = [p for p in self._index.entries if p not in seen]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise PackageError(f"{self.name}: {missing[0]}: listed in the manifest but missing "
                               f"from the archive{more}")

    def _entry(self, ti: tarfile.TarInfo, seen: set[str],
               file_sums: dict[str, str]) -> tuple[PkgEntry, _VerifiedStream | None]:
        kind, why_not = _kind(ti)
        path = "/" if kind == "dir" and ti.name == "" else ti.name
        at = f"{self.name}: {printable(path)}"
        for what, text in (("file name", path), ("link target", ti.linkname), ("owner", ti.uname),
                           ("group", ti.gname)):
            if printable(text) != text:
                # pkg installs such names byte for byte; the image's records, views and pkg
                # database are UTF-8, so the package is refused by name instead
                raise PackageError(f"{at}: {what} is not UTF-8" if text is path else
                                   f"{at}: {what} \"{printable(text)}\" is not UTF-8")
        if kind is None:
            raise PackageError(f"{at}: {why_not} cannot be installed from a package")
        reason = check_path(path, kind == "dir")
        if reason:
            raise PackageError(f"{at}: {reason}")
        expected = self._index.entries.get(path)
        if expected is None:
            raise PackageError(f"{at}: not listed in the manifest")
        if path in seen:
            raise PackageError(f"{at}: appears twice in the archive")
        if expected.is_dir != (kind == "dir"):
            listed = "directory" if expected.is_dir else "file"
            raise PackageError(f"{at}: a {kind} in the archive but a {listed} in the manifest")
        seen.add(path)
        stream = self._check_content(ti, kind, expected, at, file_sums)
        return self._resolve(ti, kind, path, expected, at), stream

    def _check_content(self, ti: tarfile.TarInfo, kind: Kind, expected: Expected, at: str,
                       file_sums: dict[str, str]) -> _VerifiedStream | None:
        if expected.symlink_target is not None and (kind != "symlink" or ti.linkname != expected.symlink_target):
            raise PackageError(f"{at}: symlink target differs from the manifest")
        if kind == "dir":
            return None
        digest = expected.sum
        assert digest is not None               # every non-directory of a manifest has a sum (_expected)
        if kind == "symlink":
            if not _sum_matches(symlink_sum_input(ti.linkname), digest):
                raise PackageError(f"{at}: symlink target does not match the manifest sum")
        elif kind == "hardlink":
            source = file_sums.get(ti.linkname)
            if source is None:
                raise PackageError(f"{at}: hardlink to {ti.linkname!r}, which is not an earlier file")
            if source != digest.removeprefix("1$"):
                raise PackageError(f"{at}: hardlink contents do not match the manifest sum")
        elif kind == "file":
            with _as_package_error(self.name):
                self._forward.seek(ti.offset_data)     # where next() left it: the member's first byte
            return _VerifiedStream(cast(IO[bytes], self._forward), ti.size, digest, at, self.name)
        return None

    def _resolve(self, ti: tarfile.TarInfo, kind: Kind, path: str, expected: Expected, at: str) -> PkgEntry:
        header = TarHeader(uname=ti.uname, gname=ti.gname, mode=ti.mode, mtime=ti.mtime,
                           fflags=ti.pax_headers.get("SCHILY.fflags", ""))
        return PkgEntry(path=path, kind=kind, size=ti.size if kind == "file" else 0,
                        target=ti.linkname if kind in ("symlink", "hardlink") else "",
                        config=path in self.config_files, **resolve_metadata(expected, header, at))


def printable(text: str) -> str:
    """*text* (tar names are decoded with surrogateescape) with undecodable bytes shown as \\xNN."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _sum_matches(data: bytes, expected: str) -> bool:
    summer = Summer()
    summer.update(data)
    return summer.matches(expected)


def open_package(path_or_fileobj: str | os.PathLike[str] | BinaryIO, name_for_errors: str) -> PackageReader:
    """Open a .pkg for one streaming pass; the manifests are read and checked here."""
    if isinstance(path_or_fileobj, (str, os.PathLike)):
        try:
            raw = open(path_or_fileobj, "rb")  # noqa: SIM115 (the reader owns it and closes it)
        except OSError as exc:
            raise PackageError(f"{name_for_errors}: cannot open ({exc.strerror})") from None
        return PackageReader(raw, name_for_errors, owns=True)
    return PackageReader(path_or_fileobj, name_for_errors, owns=False)


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed +MANIFEST, reading only the leading metadata members (catalogue builds)."""
    with open_package(path, Path(path).name) as reader:
        return reader.manifest

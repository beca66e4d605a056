"""Write pkg(8) package files the way pkg-create(8) does, byte for byte.

The pipeline itself only reads packages (release/pkgfile.py); this writer makes
the demo release's packages and the tests' fixtures.  The manifests come out
as libucl's compact JSON in ``pkg_emit_object`` order (libpkg/pkg_manifest.c),
the tar as libarchive's restricted pax (release/demo/pkgtar.py), compressed
with zstd or xz at pkg's levels.
"""
from __future__ import annotations

import dataclasses
import lzma
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import zstandard

from ..errors import InputError, PackageError
from ..fsutil import atomic_output
from ..pkgmanifest import (COMPUTED_KEYS, FULL_ONLY_KEYS, MANIFEST_KEY_ORDER, SCRIPT_PHASES, SORTED_LISTS,
                           check_path, fflags_bits, fflags_text, parse_manifest, perm_text, symlink_sum_input,
                           urlencode)
from ..sums import Summer, pkg2_sum, sha256_sum
from .pkgtar import BLOCK, Member, _padding, _ustar_header, tar_header

KINDS = ("file", "dir", "symlink", "hardlink")
_USTAR_SIZE_LIMIT = 8 ** 11         # 11 octal digits
# libarchive adds a pax mtime record from 2**31-1 (3.6) or 8**11-1 (3.7.5+): stay below both.
_MTIME_LIMIT = 0x7FFFFFFF
_CHUNK = 1 << 20


# --- manifests -------------------------------------------------------------

def _content_sum(m: Member, files: dict[str, Member], generation: str) -> str:
    if m.kind == "symlink":
        data = symlink_sum_input(m.target)
    else:
        data = files[m.target].data if m.kind == "hardlink" else m.data
    return "1$" + sha256_sum(data) if generation == "old" else pkg2_sum(data)


def file_tables(files: list[Member], dirs: list[Member],
                generation: str) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Manifest "files" and "directories" tables plus flatsize, as pkg-create computes them.

    *files*/*dirs* are pkgtar.Member objects in archive order with
    canonical fflags text.  flatsize counts a hardlinked file once and a
    symlink as the length of its target (what lstat reports).
    """
    by_path = {m.path: m for m in files}
    ftable: dict[str, Any] = {}
    dtable: dict[str, Any] = {}
    flatsize = 0
    for m in files:
        digest = _content_sum(m, by_path, generation)
        if m.kind != "hardlink":
            flatsize += len(m.data) if m.kind == "file" else len(m.target.encode("utf-8", "surrogateescape"))
        if generation == "old":
            ftable[urlencode(m.path)] = digest
            continue
        attrs: dict[str, str | int] = {"sum": digest, "uname": m.uname, "gname": m.gname, "perm": perm_text(m.mode),
                 "fflags": fflags_bits(m.fflags)}
        if m.kind == "symlink":
            attrs["symlink_target"] = m.target
        attrs["mtime"] = m.mtime
        ftable[urlencode(m.path)] = attrs
    for m in dirs:
        dtable[urlencode(m.path)] = "y" if generation == "old" else {
            "uname": m.uname, "gname": m.gname, "perm": perm_text(m.mode),
            "fflags": fflags_bits(m.fflags)}
    return ftable, dtable, flatsize


_UCL_ESCAPES = {"\0": "\\u0000", "\n": "\\n", "\r": "\\r", "\b": "\\b", "\t": "\\t",
                "\f": "\\f", "\v": "\\u000B", "\\": "\\\\", '"': '\\"'}
_UCL_UNSAFE = re.compile(r'[\x00-\x1f"\\]')


def _ucl_string(text: str, where: str) -> str:
    def escape(match: re.Match[str]) -> str:
        char = match.group()
        if char not in _UCL_ESCAPES:
            # libucl would replace it with U+FFFD and lose it: refuse instead.
            raise PackageError(f"{where}: control character {char!r} cannot be stored in a manifest")
        return _UCL_ESCAPES[char]
    return '"' + _UCL_UNSAFE.sub(escape, text) + '"'


def ucl_compact_json(value: Any, where: str = "manifest") -> str:
    """libucl's UCL_EMIT_JSON_COMPACT spelling: no spaces, UTF-8 kept, keys in given order."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _ucl_string(value, where)
    if isinstance(value, dict):
        return "{" + ",".join(_ucl_string(str(k), where) + ":" + ucl_compact_json(v, f"{where}.{k}")
                              for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(ucl_compact_json(v, where) for v in value) + "]"
    raise PackageError(f"{where}: {type(value).__name__} values cannot be stored in a manifest")


def _trimmed(text: str) -> str:
    # UCL_STRING_TRIM: scripts and desc lose leading/trailing white space.
    return text.strip(" \t\n\r\f\v")


def _encoded_value(key: str, value: Any, where: str) -> Any:
    if key in SORTED_LISTS:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise PackageError(f"{where}: {key} must be a list of strings")
        return sorted(value)
    if key == "desc":
        return urlencode(_trimmed(str(value)))
    if key == "config":
        if not isinstance(value, (list, tuple)) or not all(isinstance(p, str) for p in value):
            raise PackageError(f"{where}: config must be a list of paths")
        return [urlencode(p) for p in value]
    if key == "scripts":
        unknown = sorted(set(value) - set(SCRIPT_PHASES))
        if unknown:
            raise PackageError(f"{where}: unknown script phase {unknown[0]!r}")
        return {phase: urlencode(_trimmed(value[phase])) for phase in SCRIPT_PHASES if phase in value}
    return value


def build_manifests(manifest: dict[str, Any], files: dict[str, Any], directories: dict[str, Any], flatsize: int,
                    where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(compact, full) manifest objects in pkg's key order.

    *manifest* holds the package's own fields with plain-text scripts, desc
    and config paths; *files*/*directories* are the already encoded tables.
    """
    for key in manifest:
        if key in COMPUTED_KEYS:
            raise PackageError(f"{where}: manifest key {key!r} is computed from the members")
        if key not in MANIFEST_KEY_ORDER:
            raise PackageError(f"{where}: manifest key {key!r} is not one pkg writes")
    for key in ("name", "version"):
        if not isinstance(manifest.get(key), str) or not manifest[key]:
            raise PackageError(f"{where}: manifest needs a {key!r} string")
    values = {k: _encoded_value(k, v, where) for k, v in manifest.items() if v is not None}
    values["flatsize"] = flatsize
    if files:
        values["files"] = files
    if directories:
        values["directories"] = directories
    if values.get("vital") is False:
        del values["vital"]  # pkg only writes "vital": true
    full = {k: values[k] for k in MANIFEST_KEY_ORDER if k in values}
    compact = {k: v for k, v in full.items() if k not in FULL_ONLY_KEYS}
    return compact, full


def encode_manifest(obj: dict[str, Any], where: str) -> bytes:
    return ucl_compact_json(obj, where).encode("utf-8", "surrogateescape")


# --- the package ---------------------------------------------------------

@dataclass(frozen=True)
class PackageInfo:
    """What a catalogue needs about a written package: both sums, size and the manifests."""

    sha256: str
    pkg2: str
    size: int
    manifest: dict[str, Any]
    compact: dict[str, Any]



class _HashingSink:
    """File-like sink that hashes the compressed bytes on their way to disk."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out, self.summer = out, Summer()

    def write(self, data: bytes | memoryview) -> int:
        self.summer.update(data)
        self.out.write(data)
        return len(data)

    def flush(self) -> None:
        self.out.flush()


def _check_member(m: Member, where: str, earlier_files: dict[str, Member]) -> str:
    """Validate one Member; returns its canonical flags text."""
    at = f"{where}: {m.path}"
    if m.kind not in KINDS:
        raise PackageError(f"{at}: unknown member kind {m.kind!r}")
    reason = check_path(m.path, m.kind == "dir")
    if reason:
        raise PackageError(f"{at}: {reason}")
    if not 0 <= m.mode <= 0o7777:
        raise PackageError(f"{at}: mode {m.mode:#o} is not a permission mode")
    if not m.uname or not m.gname:
        raise PackageError(f"{at}: owner and group names are required")
    if not 0 <= m.mtime < _MTIME_LIMIT:
        raise PackageError(f"{at}: mtime {m.mtime} out of range (0 .. 2**31-2)")
    if m.data and m.kind != "file":
        raise PackageError(f"{at}: only regular files carry data")
    if len(m.data) >= _USTAR_SIZE_LIMIT:
        raise PackageError(f"{at}: file too large for a ustar header")
    if m.kind == "symlink" and (not m.target or "\0" in m.target):
        raise PackageError(f"{at}: symlink needs a target")
    source = earlier_files.get(m.target) if m.kind == "hardlink" else None
    if m.kind == "hardlink" and (source is None or source.kind != "file"):
        raise PackageError(f"{at}: hardlink to {m.target!r}, which is not an earlier file")
    try:
        return fflags_text(fflags_bits(m.fflags))
    except ValueError as exc:
        raise PackageError(f"{at}: {exc}") from None


Write = Callable[[bytes | memoryview], object]


def _compressor(sink: _HashingSink, compression: str, level: int) -> tuple[Write, Callable[[], object]]:
    """(write, finish) callables feeding *sink* through the chosen compressor, single-threaded."""
    if compression == "zstd":
        writer = zstandard.ZstdCompressor(level=level, threads=0, write_checksum=True,
                                          write_content_size=False).stream_writer(
            sink, closefd=False)  # type: ignore[arg-type]  # zstandard's stub asks for IO[bytes]; it calls write()

        def finish() -> None:
            writer.flush(zstandard.FLUSH_FRAME)
            writer.close()  # type: ignore[no-untyped-call]  # zstandard's stub leaves close() unannotated
        return writer.write, finish
    # xz: pkg's libarchive default preset is 6; the zstd-scale default 19 means "default".
    comp = lzma.LZMACompressor(format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64,
                               preset=level if 0 <= level <= 9 else 6)
    return (lambda data: sink.write(comp.compress(data))), (lambda: sink.write(comp.flush()))


def write_package(dest: Path, manifest: dict[str, Any], members: list[Member], *, generation: str,
                  compression: str = "zstd", level: int = 19) -> PackageInfo:
    """Write a .pkg the way pkg-create(8) lays it out; same inputs give the same bytes.

    *manifest* holds the package fields (name, origin, version, ..., plain-text
    scripts, config paths); files, directories and flatsize are computed from
    *members*.  Numeric owners are 0 and nothing comes from the host clock.
    *level* is the zstd level (pkg's default is 19); for xz a level outside
    0-9 means xz's default preset 6, which is what pkg gets from libarchive.
    """
    dest = Path(dest)
    where = dest.name
    if generation not in ("old", "new"):
        raise InputError(f"{where}: unknown manifest generation {generation!r}")
    if compression not in ("zstd", "xz"):
        raise InputError(f"{where}: unknown package compression {compression!r}")
    files: list[Member] = []
    dirs: list[Member] = []
    seen: dict[str, Member] = {}
    for m in members:
        m = dataclasses.replace(m, fflags=_check_member(m, where, seen))
        if m.path in seen:
            raise PackageError(f"{where}: {m.path}: listed twice")
        seen[m.path] = m
        (dirs if m.kind == "dir" else files).append(m)
    for path in manifest.get("config") or []:
        if getattr(seen.get(path), "kind", None) != "file":
            raise PackageError(f"{where}: config file {path!r} is not a regular file member")
    ftable, dtable, flatsize = file_tables(files, dirs, generation)
    compact, full = build_manifests(manifest, ftable, dtable, flatsize, where)
    with atomic_output(dest) as out:
        sink = _HashingSink(out)
        write, finish = _compressor(sink, compression, level)
        for name, obj in (("+COMPACT_MANIFEST", compact), ("+MANIFEST", full)):
            data = encode_manifest(obj, where)
            write(_ustar_header(name.encode(), b"0", 0o644, len(data), 0, b"root", b"wheel"))
            write(data + _padding(len(data)))
        for m in files + dirs:
            write(tar_header(m))
            view = memoryview(m.data)
            for start in range(0, len(view), _CHUNK):
                write(view[start:start + _CHUNK])
            write(_padding(len(m.data)))
        write(b"\0" * (2 * BLOCK))
        finish()
    summer = sink.summer
    return PackageInfo(summer.sha256_hex, summer.pkg2, summer.size,
                       parse_manifest(encode_manifest(full, where), where),
                       parse_manifest(encode_manifest(compact, where), where))

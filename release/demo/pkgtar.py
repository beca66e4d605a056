"""Tar headers exactly as pkg(8) writes them: libarchive's "restricted pax" format.

Plain ustar headers, plus a pax extended header only when ustar cannot carry a
field (long or non-ASCII names and link targets, long owner names, large sizes,
file flags such as ``schg``), with libarchive's spelling of the stand-in names,
so a package written here is byte-identical to one pkg would write.
"""
from __future__ import annotations

from dataclasses import dataclass
from ..errors import PackageError
from ..pkgmanifest import Kind

BLOCK = 512
_TYPEFLAG = {"file": b"0", "hardlink": b"1", "symlink": b"2", "dir": b"5"}


@dataclass(frozen=True)
class Member:
    """One path to put in a package; *target* is a symlink's target or a hardlink's source path."""

    path: str
    kind: Kind
    mode: int
    uname: str = "root"
    gname: str = "wheel"
    data: bytes = b""
    target: str = ""
    mtime: int = 0
    fflags: str = ""


# --- tar headers as libarchive's restricted pax writer makes them ------------

def _ustar_split(name: bytes) -> tuple[bytes, bytes] | None:
    """(prefix, name) for a ustar header, split at a '/' the way libarchive does."""
    if len(name) <= 100:
        return b"", name
    cut = name.find(b"/", len(name) - 101)
    if cut == 0:
        cut = name.find(b"/", 1)
    if cut < 0 or cut == len(name) - 1 or cut > 155:
        return None
    return name[:cut], name[cut + 1:]


def _ustar_stand_in(src: bytes, insert: bytes | None) -> bytes:
    """libarchive's build_ustar_entry_name() (3.6+ limits): a ustar-sized name keeping leading dirs."""
    if len(src) < 100 and insert is None:
        return src
    suffix_length = 98 - (0 if insert is None else len(insert) + 2)
    end, need_slash = len(src), False
    while True:
        if end > 0 and src[end - 1] == 0x2F:
            end, need_slash = end - 1, True
        elif end > 1 and src[end - 1] == 0x2E and src[end - 2] == 0x2F:
            end, need_slash = end - 2, True
        else:
            break
    if need_slash:
        suffix_length -= 1
    filename = max(end - 1, 0)
    while filename > 0 and src[filename] != 0x2F:
        filename -= 1
    if src[filename:filename + 1] == b"/" and filename < end - 1:
        filename += 1
    filename_end = min(end, filename + suffix_length)
    suffix_length -= filename_end - filename
    prefix_end = min(154, filename)
    while prefix_end > 0 and src[prefix_end] != 0x2F:
        prefix_end -= 1
    if prefix_end < filename and src[prefix_end] == 0x2F:
        prefix_end += 1
    suffix_end = max(min(prefix_end + suffix_length, filename), prefix_end)
    while suffix_end > prefix_end and src[suffix_end] != 0x2F:
        suffix_end -= 1
    if suffix_end < filename and src[suffix_end] == 0x2F:
        suffix_end += 1
    return (src[:prefix_end] + src[prefix_end:suffix_end] + (insert + b"/" if insert else b"")
            + src[filename:filename_end] + (b"/" if need_slash else b""))


def _pax_header_name(src: bytes) -> bytes:
    """libarchive's build_pax_attribute_name(): "dir/PaxHeader/file"."""
    if not src:
        return b"PaxHeader/blank"
    end = len(src)
    while True:
        if (end > 0 and src[end - 1] == 0x2F) or (end > 1 and src[end - 1] == 0x2E and src[end - 2] == 0x2F):
            end -= 1
        else:
            break
    if end == 0:
        return b"/PaxHeader/rootdir"
    if src[:1] == b"." and end == 1:
        return b"PaxHeader/currentdir"
    return _ustar_stand_in(src[:end], b"PaxHeader")


def _pax_record(key: str, value: bytes) -> bytes:
    body = b" " + key.encode() + b"=" + value + b"\n"
    digits = len(str(len(body)))
    if len(body) + digits >= 10 ** digits:
        digits += 1
    return str(len(body) + digits).encode() + body


def _ustar_header(name: bytes, typeflag: bytes, mode: int, size: int, mtime: int,
                  uname: bytes, gname: bytes, linkname: bytes = b"") -> bytes:
    split = _ustar_split(name)
    if split is None:
        raise PackageError(f"{name.decode(errors='replace')}: name does not fit a ustar header")
    prefix, base = split
    h = bytearray(BLOCK)
    h[0:len(base)] = base
    h[100:108] = b"%06o \0" % (mode & 0o7777)
    h[108:124] = b"000000 \x00000000 \x00"            # uid, gid: what a root build writes
    h[124:136] = b"%011o " % size
    h[136:148] = b"%011o " % mtime
    h[148:156] = b" " * 8
    h[156:157] = typeflag
    h[157:157 + len(linkname)] = linkname
    h[257:265] = b"ustar\x0000"
    h[265:265 + min(len(uname), 32)] = uname[:32]
    h[297:297 + min(len(gname), 32)] = gname[:32]
    h[329:345] = b"000000 \x00000000 \x00"            # devmajor, devminor
    h[345:345 + len(prefix)] = prefix
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def tar_header(m: Member) -> bytes:
    """The header block(s) pkg's libarchive writes for *m*: an optional 'x' block, then ustar."""
    enc = "surrogateescape"
    path = m.path.encode("utf-8", enc)
    if m.kind == "dir" and not path.endswith(b"/"):
        path += b"/"
    uname, gname = m.uname.encode("utf-8", enc), m.gname.encode("utf-8", enc)
    link = m.target.encode("utf-8", enc) if m.kind in ("symlink", "hardlink") else b""
    records, name = [], path
    if not path.isascii() or _ustar_split(path) is None:
        records.append(_pax_record("path", path))
        name = _ustar_stand_in(path, None)
    if link and (len(link) > 100 or not link.isascii()):
        records.append(_pax_record("linkpath", link))
        if len(link) > 100:
            link = b"././@LongHardLink" if m.kind == "hardlink" else b"././@LongSymLink"
    for key, value in (("gname", gname), ("uname", uname)):
        if len(value) > 31 or not value.isascii():
            records.append(_pax_record(key, value))
    if m.fflags:
        records.append(_pax_record("SCHILY.fflags", m.fflags.encode()))
    main = _ustar_header(name, _TYPEFLAG[m.kind], m.mode, len(m.data), m.mtime, uname, gname, link)
    if not records:
        return main
    pax = b"".join(records)
    x = _ustar_header(_pax_header_name(name), b"x", m.mode & 0o777, len(pax), m.mtime, uname, gname)
    return x + pax + _padding(len(pax)) + main


def _padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)

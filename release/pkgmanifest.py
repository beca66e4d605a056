"""The +MANIFEST and +COMPACT_MANIFEST of a .pkg file, as pkg(8) writes and reads them.

pkg emits both manifests with libucl's compact JSON emitter, keys in the
order of ``pkg_emit_object`` (libpkg/pkg_manifest.c), paths, config entries,
scripts and the description url-encoded (only ``%`` and non-ASCII bytes are
escaped).  Two generations of file tables exist:

- old (pkg < 2.4, which built 14.2): ``"files": {"/bin/sh": "1$<sha256>"}``
  and ``"directories": {"/dev": "y"}``; owner, group, mode and file flags
  live only in the tar headers;
- new (pkg >= 2.4): ``"files": {"/p": {"sum": "2$...", "uname", "gname",
  "perm": "0755", "fflags": <int>, ["symlink_target"], "mtime"}}`` and
  directories ``{"uname", "gname", "perm", "fflags"}``.

This module turns a parsed manifest into one uniform table of expected entries,
so pkgfile.py deals with tar and compression only; the writer side, which only
the demo repository and the tests need, is release/demo/pkgwriter.py.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from .errors import IntegrityError, PackageError
from .sums import sum_kind

# Top-level keys in pkg_emit_object order.  The compact manifest is the same
# object without the keys in FULL_ONLY_KEYS ("messages" appears in both).
MANIFEST_KEY_ORDER = (
    "name", "origin", "version", "comment", "maintainer", "www", "abi", "arch",
    "prefix", "sum", "flatsize", "dep_formula", "path", "repopath",
    "licenselogic", "licenses", "pkgsize", "vital", "desc", "deps",
    "categories", "users", "groups", "shlibs_required", "shlibs_provided",
    "conflicts", "provides", "requires", "options", "annotations",
    "files", "config", "directories", "scripts", "lua_scripts", "messages",
)
FULL_ONLY_KEYS = frozenset({"files", "config", "directories", "scripts", "lua_scripts"})
COMPUTED_KEYS = frozenset({"files", "directories", "flatsize"})
# String lists pkg_lists_sort() sorts before emitting (deps, options and
# annotations keep their insertion order: pkg's comparators never reorder them).
SORTED_LISTS = frozenset({"categories", "licenses", "users", "groups", "shlibs_required",
                          "shlibs_provided", "provides", "requires"})
Kind = Literal["file", "dir", "symlink", "hardlink"]
SCRIPT_PHASES = ("pre-install", "install", "post-install", "pre-deinstall", "deinstall",
                 "post-deinstall", "pre-upgrade", "upgrade", "post-upgrade")

# FreeBSD file flags (sys/stat.h), in the order libarchive spells them in
# SCHILY.fflags; extra spellings strtofflags(3) also accepts come after.
FFLAG_BITS = {
    "sappnd": 0x00040000, "arch": 0x00010000, "schg": 0x00020000, "sunlnk": 0x00100000,
    "snapshot": 0x00200000, "uappnd": 0x00000004, "uchg": 0x00000002, "nodump": 0x00000001,
    "opaque": 0x00000008, "uunlnk": 0x00000010, "system": 0x00000080, "sparse": 0x00000100,
    "offline": 0x00000200, "reparse": 0x00000400, "uarch": 0x00000800, "urdonly": 0x00001000,
    "hidden": 0x00008000,
}
_FFLAG_ALIASES = {
    "sappend": "sappnd", "archived": "arch", "schange": "schg", "simmutable": "schg",
    "sunlink": "sunlnk", "uappend": "uappnd", "uchange": "uchg", "uimmutable": "uchg",
    "uunlink": "uunlnk", "usystem": "system", "usparse": "sparse", "uoffline": "offline",
    "ureparse": "reparse", "archive": "uarch", "rdonly": "urdonly", "readonly": "urdonly",
    "uhidden": "hidden",
}


def fflags_bits(text: str) -> int:
    """FreeBSD flag bits of a comma-separated flags text ("schg,nodump"); ValueError if unknown."""
    bits = 0
    for word in filter(None, (w.strip() for w in text.split(","))):
        name = _FFLAG_ALIASES.get(word, word)
        if name not in FFLAG_BITS:
            raise ValueError(f"unknown file flag {word!r}")
        bits |= FFLAG_BITS[name]
    return bits


def fflags_text(bits: int) -> str:
    """Canonical flags text for *bits*, as libarchive writes it in SCHILY.fflags."""
    names = [name for name, bit in FFLAG_BITS.items() if bits & bit]
    leftover = bits & ~sum(FFLAG_BITS.values())
    if leftover:
        raise ValueError(f"unknown file flag bits {leftover:#x}")
    return ",".join(names)


def urlencode(text: str) -> str:
    """pkg's urlencode(): escape '%' and every non-ASCII byte of the UTF-8 spelling."""
    out = []
    for byte in text.encode("utf-8", "surrogateescape"):
        out.append("%%%02x" % byte if byte >= 0x80 or byte == 0x25 else chr(byte))
    return "".join(out)


def urldecode(text: str) -> str:
    """pkg's urldecode(): '%xx' back to bytes; malformed escapes are kept as they are."""
    if "%" not in text:
        return text
    raw = text.encode("utf-8", "surrogateescape")
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == 0x25 and re.fullmatch(rb"[0-9a-fA-F]{2}", raw[i + 1:i + 3]):
            out.append(int(raw[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", "surrogateescape")


def perm_text(perm: int) -> str:
    """printf("%#4.4o"): at least four digits, always a leading zero ("0755", "04755")."""
    text = "%04o" % perm
    return text if text.startswith("0") else "0" + text


def symlink_sum_input(target: str) -> bytes:
    """The bytes pkg hashes for a symlink (pkg_checksum_symlink_readlink).

    pkg strips one leading '/' but still passes the original length, so an
    absolute target is hashed together with its terminating NUL byte.
    """
    raw = target.encode("utf-8", "surrogateescape")
    return raw[1:] + b"\0" if raw.startswith(b"/") else raw


def check_path(path: str, is_dir: bool) -> str | None:
    """Why *path* may not be installed from a package, or None when it is safe."""
    if "\0" in path:
        return "path contains a NUL byte"
    if path == "/":
        return None if is_dir else "path is the root directory"
    if not path.startswith("/"):
        return "path is not absolute"
    parts = path[1:].split("/")
    if "" in parts:
        return "path has an empty component"
    if "." in parts or ".." in parts:
        return "path contains '.' or '..'"
    return None


# --- reading ---------------------------------------------------------------

@dataclass(frozen=True)
class Expected:
    """What the manifest promises about one path (None: the tar header decides)."""

    path: str
    is_dir: bool
    sum: str | None = None
    uname: str | None = None
    gname: str | None = None
    perm: int | None = None
    fflags: int | None = None
    mtime: int | None = None
    symlink_target: str | None = None


@dataclass(frozen=True)
class ManifestIndex:
    generation: str
    entries: dict[str, Expected]        # path -> Expected
    scripts: dict[str, str]             # phase -> decoded shell text
    config_files: frozenset[str]


def parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    """A +MANIFEST / +COMPACT_MANIFEST object, or PackageError naming *where*."""
    try:
        obj = json.loads(data.decode("utf-8", "surrogateescape"))
    except (ValueError, UnicodeError) as exc:
        raise PackageError(f"{where}: malformed manifest ({exc})") from None
    if not isinstance(obj, dict):
        raise PackageError(f"{where}: manifest is not a JSON object")
    for key in ("name", "version"):
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise PackageError(f"{where}: manifest has no {key!r}")
    for key in ("files", "directories", "scripts"):
        if not isinstance(obj.get(key, {}), dict):
            raise PackageError(f"{where}: manifest {key!r} is not an object")
    if not isinstance(obj.get("config", []), list):
        raise PackageError(f"{where}: manifest 'config' is not a list")
    return obj


def manifest_generation(obj: dict[str, Any], where: str) -> str:
    """"new" when file/directory values are objects, "old" when they are strings."""
    kinds = {isinstance(v, dict) for table in ("files", "directories")
             for v in obj.get(table, {}).values()}
    if len(kinds) > 1:
        raise PackageError(f"{where}: manifest mixes old and new style entries")
    return "new" if kinds == {True} else "old"


def check_sum(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise PackageError(f"{where}: no sum in the manifest")
    try:
        sum_kind(value)
    except IntegrityError:
        raise PackageError(f"{where}: unrecognised sum {value!r}") from None
    return value


def _int_field(attrs: dict[str, Any], key: str, where: str, octal: bool = False) -> int | None:
    value = attrs.get(key)
    if value is None:
        return None
    try:
        if isinstance(value, str):
            return int(value, 8 if octal else 10)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    except ValueError:
        pass
    raise PackageError(f"{where}: bad {key} {value!r} in the manifest")


def _str_field(attrs: dict[str, Any], key: str, where: str) -> str | None:
    value = attrs.get(key)
    if value is not None and not isinstance(value, str):
        raise PackageError(f"{where}: bad {key} {value!r} in the manifest")
    return value or None


def _expected(path: str, value: Any, is_dir: bool, where: str) -> Expected:
    if not isinstance(value, dict):
        if is_dir:
            return Expected(path, True)
        return Expected(path, False, sum=check_sum(value, where))
    uname, gname = _str_field(value, "uname", where), _str_field(value, "gname", where)
    perm, fflags = _int_field(value, "perm", where, octal=True), _int_field(value, "fflags", where)
    if is_dir:
        return Expected(path, True, mtime=_int_field(value, "mtime", where), uname=uname, gname=gname,
                        perm=perm, fflags=fflags)
    return Expected(path, False, sum=check_sum(value.get("sum"), where),
                    mtime=_int_field(value, "mtime", where),
                    symlink_target=_str_field(value, "symlink_target", where), uname=uname, gname=gname,
                    perm=perm, fflags=fflags)


def index_manifest(obj: dict[str, Any], where: str) -> ManifestIndex:
    """Decode paths, sums and attributes into one table the archive is checked against."""
    generation = manifest_generation(obj, where)
    entries: dict[str, Expected] = {}
    for table, is_dir in (("files", False), ("directories", True)):
        for key, value in obj.get(table, {}).items():
            path = urldecode(key)
            at = f"{where}: {path}"
            reason = check_path(path, is_dir)
            if reason:
                raise PackageError(f"{at}: {reason} (in the manifest)")
            if path in entries:
                raise PackageError(f"{at}: listed twice in the manifest")
            entries[path] = _expected(path, value, is_dir, at)
    scripts = {}
    for phase, text in obj.get("scripts", {}).items():
        if not isinstance(text, str):
            raise PackageError(f"{where}: script {phase!r} is not a string")
        scripts[phase] = urldecode(text)
    config = set()
    for item in obj.get("config", []):
        config_path = urldecode(item) if isinstance(item, str) else None
        if config_path is None or config_path not in entries or entries[config_path].is_dir:
            raise PackageError(f"{where}: config file {item!r} is not a file of the package")
        config.add(config_path)
    return ManifestIndex(generation, entries, scripts, frozenset(config))


class TarHeader(TypedDict):
    """What a member's tar header says about ownership, mode, time and flags."""

    uname: str
    gname: str
    mode: int
    mtime: float
    fflags: str


class Metadata(TypedDict):
    """Owner, group, flags text, mode and mtime as pkg installs a member (PkgEntry's fields)."""

    uname: str
    gname: str
    fflags: str
    mode: int
    mtime: int


def resolve_metadata(expected: Expected, header: TarHeader, where: str) -> Metadata:
    """Owner, mode, mtime and flags as pkg applies them: the new manifest wins over the tar header.

    *header* holds the tar header's uname, gname, mode, mtime and fflags
    text; numeric ids are never used (they are the build host's).
    """
    uname = expected.uname or header["uname"]
    gname = expected.gname or header["gname"]
    if not uname or not gname:
        raise PackageError(f"{where}: no owner or group name")
    try:
        flags = fflags_text(expected.fflags if expected.fflags is not None
                            else fflags_bits(header["fflags"]))
    except ValueError as exc:
        raise PackageError(f"{where}: {exc}") from None
    return Metadata(uname=uname, gname=gname, fflags=flags,
                    mode=expected.perm if expected.perm is not None else header["mode"] & 0o7777,
                    mtime=expected.mtime if expected.mtime is not None else int(header["mtime"]))

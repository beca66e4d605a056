"""What pkg(8) records in local.sqlite for one installed package, per generation.

pkg registers a package from the ``struct pkg`` it built while opening the
package file (pkg_open2() parsing +MANIFEST) and while pkg_add_common() got it
ready, *before* any file is extracted.  This module rebuilds those values from
a parsed manifest, following freebsd/pkg at the two commits pkgdb_schema
names (libpkg/pkg_manifest.c, pkg.c, pkg_add.c, pkg_checksum.c, pkgdb.c):

- Lists: pkg 2.x keeps every list of a package sorted (pkg_*v_insert_sorted,
  charv_insert_sorted, pkg_kv_insert_sorted: strcmp order, first occurrence
  wins), so files, directories, config files, deps, options, annotations,
  categories, licenses, users, groups, shlibs, conflicts, provides and
  requires are registered in byte order; pkg 1.21 appends them in manifest
  order (DL_APPEND / tll_push_back).
- Paths go through pkg_absolutepath() ("//", "." and ".." folded, no trailing
  "/"); "/" itself is never a directory of a package.  Paths, ``desc`` and
  shell scripts are URL-decoded, Lua scripts are not.
- pkg 1.21 keeps only provided shlibs whose names start with "lib", and
  takes a per-file object's "sum" only when it is 64 characters of bare
  SHA-256 hex (a "2$..." sum of a pkg >= 2.4 package is recorded as NULL).
- Files (schema 42): sum, uname, gname, perm, fflags, symlink_target and mtime
  as the manifest gives them, NULL/0 where it gives none (a pkg < 2.4
  manifest lists bare sums; pkg never fills these columns from the archive,
  because registration happens before extraction).  A sum shorter than two
  characters is NULL.  The sum is stored as the manifest spells it ("1$<hex>"
  from pkg 1.x-made packages, "2$<z-base32>" from pkg >= 2.4).
- Config files: registered with NULL content, then pkgdb_update_config_file_content()
  stores the file's text from the archive (up to its first NUL byte), which
  pkg's three-way merge needs on upgrade.
- Annotations: the manifest's own (e.g. ``FreeBSD_version``, which pkg create
  adds when it derives the ABI), then ``repository`` (the repository's name in
  the pkg configuration) and ``repo_type`` (``binary``) that pkg_add_common()
  adds for a package installed from a repository.
- ``automatic`` is the job's: 0 for a package asked for by name, 1 for one
  pulled in as a dependency; ``vital`` comes from the manifest.
- ``manifestdigest`` is the remote package's digest: pkg_checksum_calculate()
  over the catalogue entry during ``pkg update`` (no repository yet, so
  BLAKE2b on a 64-bit machine, BLAKE2s on a 32-bit one): "2$2$"/"2$5$" and the
  z-base32 of the hash over the sorted (key, value) pairs name, origin,
  version, arch (the legacy arch string), vital (2.x only), options, shlibs,
  users, groups, depends (name~origin), provides and requires.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote

from ..errors import StepError
from ..sums import zbase32

# pkg.h pkg_script: the scripts table's type numbers; lua scripts number 0..3.
SCRIPT_TYPES = {
    "pre-install": 0, "post-install": 1, "pre-deinstall": 2, "post-deinstall": 3,
    "pre-upgrade": 4, "post-upgrade": 5, "install": 6, "deinstall": 7, "upgrade": 8,
}
LUA_SCRIPT_TYPES = {"pre-install": 0, "post-install": 1, "pre-deinstall": 2, "post-deinstall": 3}
# pkg_manifest.c STRING_FLAG_LICENSE: LICENSE_SINGLE = 1, LICENSE_AND = '&', LICENSE_OR = '|'.
LICENSE_LOGIC = {"single": 1, "and": 38, "multi": 38, "or": 124, "dual": 124}
# sys/stat.h st_flags bits under their chflags(1) names (and aliases), as strtofflags(3) reads them.
FILE_FLAGS = {
    "nodump": 0x1, "uchg": 0x2, "uchange": 0x2, "uimmutable": 0x2,
    "uappnd": 0x4, "uappend": 0x4, "opaque": 0x8, "uunlnk": 0x10, "uunlink": 0x10,
    "system": 0x80, "usystem": 0x80, "sparse": 0x100, "usparse": 0x100,
    "offline": 0x200, "uoffline": 0x200, "reparse": 0x400, "ureparse": 0x400,
    "uarch": 0x800, "uarchive": 0x800, "urdonly": 0x1000, "rdonly": 0x1000,
    "readonly": 0x1000, "hidden": 0x8000, "uhidden": 0x8000,
    "arch": 0x10000, "archived": 0x10000, "schg": 0x20000, "schange": 0x20000,
    "simmutable": 0x20000, "sappnd": 0x40000, "sappend": 0x40000,
    "sunlnk": 0x100000, "sunlink": 0x100000, "snapshot": 0x200000,
}
REPO_TYPE = "binary"       # pkg_repo_ops.type of pkg's only repository kind
# pkg_checksum_type_t: PKG_HASH_TYPE_BLAKE2_BASE32 = 2, PKG_HASH_TYPE_BLAKE2S_BASE32 = 5
_DIGEST: dict[int, tuple[int, Callable[[], hashlib.blake2b | hashlib.blake2s]]] = {
    64: (2, lambda: hashlib.blake2b(digest_size=64)), 32: (5, lambda: hashlib.blake2s(digest_size=32))}
_NONEMPTY = ("origin", "version", "prefix", "maintainer")      # NOT NULL columns pkg never leaves empty

Row = tuple[str | int | None, ...]      # the values of one SQL row, in the column order of pkgdb_schema's statements
T = TypeVar("T")


@dataclass
class Registration:
    """One package's values in pkgdb_register_pkg() order (the time column aside)."""

    package: Row
    deps: list[tuple[str, str, str]] = field(default_factory=list)
    files: list[Row] = field(default_factory=list)
    config: list[tuple[str, str | None]] = field(default_factory=list)
    dirs: list[Row] = field(default_factory=list)
    named: dict[str, list[str]] = field(default_factory=dict)      # categories ... groups
    scripts: list[tuple[int, str]] = field(default_factory=list)
    lua: list[tuple[int, str]] = field(default_factory=list)
    options: list[tuple[str, str]] = field(default_factory=list)
    shlibs: dict[str, list[str]] = field(default_factory=dict)     # pkg_shlibs_* table -> names
    annotations: list[tuple[str, str]] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    provides: list[str] = field(default_factory=list)
    requires: list[str] = field(default_factory=list)


def registration(pkg: dict[str, Any], *, schema: int, repository: str | None, automatic: bool,
                 config_content: dict[str, bytes | str] | None = None) -> Registration:
    """The rows pkg *schema*'s generation writes for manifest *pkg* installed from *repository*."""
    name = text(pkg, "name", "?")
    order = _sorted_unique if schema >= 42 else _first_unique
    annotations = [(str(k), _string(v, name, f"annotation {k}")) for k, v in mapping(pkg, "annotations", name).items()]
    if repository is not None:
        annotations += [("repository", repository), ("repo_type", REPO_TYPE)]
    reg = Registration(package=_package_row(pkg, name, automatic, schema))
    reg.deps = [(d.get("origin", ""), n, d.get("version", "") or "")
                for n, d in order(_deps(pkg, name), key=lambda kv: kv[0])]
    reg.files = [_file_row(path, entry, name, schema) for path, entry in order(
        ((_abspath(decode(p, name)), e) for p, e in mapping(pkg, "files", name).items()), key=lambda kv: kv[0])]
    contents = {_abspath(p): c for p, c in (config_content or {}).items()}
    reg.config = [(path, _config_text(contents.get(path), name, path)) for path in order(
        (_abspath(_string(p, name, "config")) for p in listing(pkg, "config", name)), key=None)]
    reg.dirs = [_dir_row(path, entry, name, schema) for path, entry in order(_dirs(pkg, name), key=lambda kv: kv[0])
                if path != "/"]
    for kind in ("categories", "licenses", "users", "groups"):
        reg.named[kind] = order((_string(v, name, kind) for v in listing(pkg, kind, name)), key=None)
    scripts = mapping(pkg, "scripts", name)
    reg.scripts = [(number, decode(scripts[key], name)) for key, number in SCRIPT_TYPES.items() if key in scripts]
    reg.scripts.sort()
    lua = mapping(pkg, "lua_scripts", name)
    reg.lua = [(number, _string(body, name, "lua_scripts")) for key, number in sorted(
        LUA_SCRIPT_TYPES.items(), key=lambda kv: kv[1]) if key in lua for body in _bodies(lua[key])]
    reg.options = order(((str(k), _option(v)) for k, v in mapping(pkg, "options", name).items()),
                        key=lambda kv: kv[0])
    required = listing(pkg, "shlibs_required", name) + listing(pkg, "shlibs", name)
    reg.shlibs = {"pkg_shlibs_required": order(required, key=None),
                  "pkg_shlibs_provided": order(provided_shlibs(pkg, schema), key=None)}
    if schema >= 42:
        reg.shlibs["pkg_shlibs_required_ignore"] = order(listing(pkg, "shlibs_required_ignore", name), key=None)
        reg.shlibs["pkg_shlibs_provided_ignore"] = order(listing(pkg, "shlibs_provided_ignore", name), key=None)
    reg.annotations = order(annotations, key=lambda kv: kv[0])
    reg.conflicts = order(listing(pkg, "conflicts", name), key=None)
    reg.provides = order(listing(pkg, "provides", name), key=None)
    reg.requires = order(listing(pkg, "requires", name), key=None)
    return reg


def _package_row(pkg: dict[str, Any], name: str, automatic: bool, schema: int) -> Row:
    for key in _NONEMPTY:
        text(pkg, key, name)
    comment = text(pkg, "comment", name, allow_empty=True)
    desc = decode(text(pkg, "desc", name, allow_empty=True), name)
    arch = pkg.get("abi") or pkg.get("arch")
    if not arch:
        raise StepError(f"{name}: manifest field 'abi' missing (and no 'arch')")
    logic = str(pkg.get("licenselogic", "single")).lower()
    if logic not in LICENSE_LOGIC:
        raise StepError(f"{name}: manifest field 'licenselogic' has unknown value {logic!r}")
    flatsize = pkg.get("flatsize", 0)
    if not isinstance(flatsize, int) or isinstance(flatsize, bool):
        raise StepError(f"{name}: manifest field 'flatsize' is not an integer")
    return (pkg["origin"], name, pkg["version"], comment, desc, _message(pkg, name), arch,
            pkg["maintainer"], pkg.get("www"), pkg["prefix"], flatsize, int(bool(automatic)),
            LICENSE_LOGIC[logic], manifest_digest(pkg, schema), pkg.get("dep_formula"),
            int(bool(pkg.get("vital", False))))


def _file_row(path: str, entry: Any, name: str, schema: int) -> Row:
    if isinstance(entry, dict):
        file_sum = entry.get("sum")
        meta = entry
        if schema == 36 and not (isinstance(file_sum, str) and len(file_sum) == 64):
            file_sum = None     # pkg 1.21 takes an object's sum only as bare SHA-256 hex
    else:
        file_sum, meta = entry, {}
    if file_sum is not None and (not isinstance(file_sum, str) or len(file_sum) < 2):
        file_sum = None
    if schema == 36:
        return path, file_sum
    mtime = meta.get("mtime")
    try:
        mtime = max(int(mtime), 0) if mtime is not None else 0
    except (TypeError, ValueError):
        raise StepError(f"{name}: {path}: manifest field 'mtime' is not a number") from None
    return (path, file_sum, meta.get("uname"), meta.get("gname"), _perm(meta.get("perm"), name, path),
            _fflags(meta.get("fflags"), name, path), meta.get("symlink_target"), mtime)


def _dirs(pkg: dict[str, Any], name: str) -> list[tuple[str, Any]]:
    out = [(_abspath(decode(p, name)), e) for p, e in mapping(pkg, "directories", name).items()]
    out += [(_abspath(_string(p, name, "dirs")), None) for p in listing(pkg, "dirs", name)]
    return out


def _dir_row(path: str, entry: Any, name: str, schema: int) -> Row:
    if schema == 36:
        return (path,)
    meta = entry if isinstance(entry, dict) else {}
    return (path, meta.get("uname"), meta.get("gname"), _perm(meta.get("perm"), name, path),
            _fflags(meta.get("fflags"), name, path))


def _deps(pkg: dict[str, Any], name: str) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for dep_name, dep in mapping(pkg, "deps", name).items():
        if not isinstance(dep, dict) or not isinstance(dep.get("origin", ""), str):
            raise StepError(f"{name}: manifest field 'deps' entry {dep_name!r} is not an object with an origin")
        out.append((str(dep_name), dep))
    return out


def _config_text(content: bytes | str | None, name: str, path: str) -> str | None:
    """The C string pkg reads from the archive: up to the first NUL, as UTF-8 text."""
    if content is None or isinstance(content, str):
        return content
    try:
        return content.split(b"\0", 1)[0].decode("utf-8")
    except UnicodeDecodeError:
        raise StepError(f"{name}: config file {path} is not UTF-8 text") from None


# --- values as pkg derives them --------------------------------------------

def manifest_digest(pkg: dict[str, Any], schema: int = 42) -> str:
    """pkg_checksum_generate() over the package's catalogue entry (see the module docstring)."""
    entries = [("name", pkg["name"]), ("origin", pkg["origin"]), ("version", pkg["version"]),
               ("arch", pkg.get("arch") or pkg.get("abi") or "")]
    if schema >= 42:
        entries.append(("vital", "1" if pkg.get("vital") else "0"))
    one = _first_unique
    entries += one(((str(k), _option(v)) for k, v in (pkg.get("options") or {}).items()), key=lambda kv: kv[0])
    for key, values in (("required_shlib", [*(pkg.get("shlibs_required") or ()), *(pkg.get("shlibs") or ())]),
                        ("provided_shlib", provided_shlibs(pkg, schema)), ("user", pkg.get("users")),
                        ("group", pkg.get("groups")),
                        ("depend", [f"{n}~{d.get('origin', '')}" for n, d in (pkg.get("deps") or {}).items()]),
                        ("provide", pkg.get("provides")), ("require", pkg.get("requires"))):
        entries += [(key, v) for v in one(values or (), key=None)]
    number, new = _DIGEST[pointer_bits(pkg)]
    h = new()
    for key, value in sorted(entries, key=lambda kv: (kv[0].encode(), kv[1].encode())):
        h.update(key.encode())
        h.update(value.encode())
    return f"2${number}$" + zbase32(h.digest())


def provided_shlibs(pkg: dict[str, Any], schema: int) -> list[str]:
    """The manifest's shlibs_provided; pkg 1.21 keeps only names starting with "lib"."""
    names = listing(pkg, "shlibs_provided", text(pkg, "name", "?"))
    return names if schema >= 42 else [n for n in names if n.startswith("lib")]


def pointer_bits(pkg: dict[str, Any]) -> int:
    """32 or 64: the word size of the machine whose pkg computes remote digests (the target's).

    Read from the legacy arch string pkg writes next to the ABI
    ("freebsd:14:x86:32", "freebsd:14:armv7:32:el:eabi:hardfp").
    """
    fields = str(pkg.get("arch") or "").split(":")
    return 32 if "32" in fields[2:] else 64


def _message(pkg: dict[str, Any], name: str) -> str | None:
    """pkg_message_to_str(): the messages as compact JSON in pkg's key order, or NULL."""
    messages = pkg.get("messages", pkg.get("message"))
    if messages is None or messages == []:
        return None
    if isinstance(messages, str):
        messages = [{"message": messages}]
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise StepError(f"{name}: manifest field 'messages' is not a list of objects")
    out: list[dict[str, str]] = []
    for m in messages:
        item = {"message": str(m.get("message", "")).strip()}
        for key in ("type", "maximum_version", "minimum_version"):
            if m.get(key):
                item[key] = str(m[key])
        out.append(item)
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def _perm(value: Any, name: str, path: str) -> int:
    """getmode(setmode(str)) of an octal mode; pkg reads an integer's decimal digits the same way."""
    if value is None:
        return 0
    digits = str(value)
    if not digits or any(c not in "01234567" for c in digits):
        raise StepError(f"{name}: {path}: manifest field 'perm' is not an octal mode: {value!r}")
    return int(digits, 8) & 0o7777


def _fflags(value: Any, name: str, path: str) -> int:
    """A number, or chflags(1) names ("schg,uarch") as strtofflags(3) reads them."""
    if value in (None, ""):
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    bits = 0
    for word in str(value).replace(" ", "").split(","):
        if word not in FILE_FLAGS:
            raise StepError(f"{name}: {path}: manifest field 'fflags' has unknown flag {word!r}")
        bits |= FILE_FLAGS[word]
    return bits


def _option(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _bodies(value: Any) -> list[object]:
    return [value] if isinstance(value, str) else list(value or [])


def _abspath(path: str) -> str:
    """pkg_absolutepath(path, fromroot=false) for the absolute paths manifests use."""
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def _first_unique(values: Iterable[T], key: Callable[[T], str] | None) -> list[T]:
    """pkg 1.21: manifest order, a repeated key ignored (no key: the values are the strings compared)."""
    seen: set[object] = set()
    out = []
    for v in values:
        k = key(v) if key else v
        if k not in seen:
            seen.add(k)
            out.append(v)
    return out


def _sorted_unique(values: Iterable[T], key: Callable[[T], str] | None) -> list[T]:
    """pkg 2.x: strcmp order, the first of a repeated key kept (no key: the values are the strings compared)."""
    firsts = _first_unique(values, key)
    return sorted(firsts, key=lambda v: (key(v) if key else str(v)).encode())


def decode(value: Any, name: str) -> str:
    """pkg's url_decode(): %XX sequences to bytes; the result must be UTF-8 text here."""
    if not isinstance(value, str):
        raise StepError(f"{name}: expected text in manifest, got {value!r}")
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise StepError(f"{name}: {value!r} does not decode to UTF-8") from None


def _string(value: Any, name: str, what: str) -> str:
    if not isinstance(value, str):
        raise StepError(f"{name}: manifest field {what!r} has a non-text entry {value!r}")
    return value


def text(pkg: dict[str, Any], key: str, name: str, *, allow_empty: bool = False) -> str:
    value = pkg.get(key)
    if not isinstance(value, str) or not (value or allow_empty):
        raise StepError(f"{name}: manifest field {key!r} missing or not text")
    return value


def mapping(pkg: dict[str, Any], key: str, name: str) -> dict[str, Any]:
    value = pkg.get(key) or {}
    if not isinstance(value, dict):
        raise StepError(f"{name}: manifest field {key!r} is not an object")
    return value


def listing(pkg: dict[str, Any], key: str, name: str) -> list[str]:
    value = pkg.get(key) or []
    if not isinstance(value, list):
        raise StepError(f"{name}: manifest field {key!r} is not a list")
    return [_string(v, name, key) for v in value]

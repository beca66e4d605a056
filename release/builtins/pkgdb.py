"""/var/db/pkg/local.sqlite, registered as pkg(8) would, but byte-reproducible.

An image must carry pkg's database of installed packages, or pkg in the image
believes nothing is installed.  Running pkg on the build host would stamp the
host's clock, the host's SQLite and the transaction history into the file, so
this module replays libpkg's pkgdb_register_pkg() with Python's sqlite3: the
same CREATE statements (see pkgdb_schema), the same INSERTs in the same order,
one package after another in install order (libpkg/pkgdb.c of freebsd/pkg at
commit ea2a04600fd2a340d3f7be15a50c343d42fb29ed; schema 42 is reconstructed).

What is fixed on purpose, compared with a database pkg writes:

- ``time`` is the caller's SOURCE_DATE_EPOCH for every package (pkg's NOW(),
  overridable by PKG_INSTALL_EPOCH, would be the wall clock); ``automatic`` is 0
  because every package of a flavour is requested by name.
- Annotations: pkg_add_common() adds ``repository`` (the repository's name in
  pkg.conf) and ``repo_type`` (``binary``) to every package it installs from a
  repository, and ``pkg info``/``pkg upgrade -r`` read them back.  An image built
  from FreeBSD's pkgbase repository therefore carries ``repository = base`` and
  ``repo_type = binary``, which is exactly what the image's own
  /usr/local/etc/pkg/repos/base.conf names.  Both come from configuration, never
  from the build host; pass ``repository=None`` to record none (a package added
  from a file carries none either).
- ``manifestdigest`` is what pkg computes from a catalogue entry during
  ``pkg update`` and copies onto the installed package (pkg_checksum_generate
  with scripts excluded and the version included): "2$2$" and the z-base32 of a
  BLAKE2b-512 over the sorted (key, value) pairs name, origin, version, arch,
  options, required_shlib, provided_shlib, user, group, depend (name~origin),
  provide and require.  pkg only compares digests to skip a deeper comparison,
  so a differing spelling costs time in ``pkg upgrade``, not a reinstall.
- File mtimes (schema 42) are clamped to ``time``, like the layer's tar headers.

SQLite itself: the file is built in a temporary file next to *dest* with
journal_mode=DELETE (no -wal/-shm), in one transaction, then VACUUMed, which
rewrites every page in schema order so the layout no longer depends on how the
rows were inserted or how many transactions were used.  Three header fields
would still differ between runs or hosts and are normalised afterwards: the
file change counter (offset 24) and version-valid-for (offset 92) are both set
to 1 (equal, so the in-header page count stays trusted), and the writer's
SQLITE_VERSION_NUMBER (offset 96, informational only) is pinned to
HEADER_SQLITE_VERSION.  The schema cookie (offset 40) counts CREATE statements,
a fixed list here.  Page size (4096), encoding (UTF-8), auto_vacuum (off)
and secure_delete are set explicitly instead of taken from compile-time
defaults.  What remains host-dependent is the B-tree layout VACUUM produces and
the record encoding of the SQLite in use: identical for a given SQLite
release, and in practice stable across releases, but not promised by SQLite.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator
from urllib.parse import unquote

from ..errors import StepError
from ..fsutil import TMP_PREFIX, atomic_output
from ..sums import zbase32
from . import pkgdb_schema as sql

SUPPORTED_SCHEMAS = tuple(sorted(sql.SCHEMAS))
HEADER_SQLITE_VERSION = 3_040_001
PAGE_SIZE = 4096
DB_MODE = 0o644

# pkgdb.c: scripts.type 0..8; lua scripts use their own 0..3 numbering.
SCRIPT_TYPES = {
    "pre-install": 0, "post-install": 1, "pre-deinstall": 2, "post-deinstall": 3,
    "pre-upgrade": 4, "post-upgrade": 5, "install": 6, "deinstall": 7, "upgrade": 8,
}
LUA_SCRIPT_TYPES = {"pre-install": 0, "post-install": 1, "pre-deinstall": 2,
                    "post-deinstall": 3}
# pkg.h lic_t: LICENSE_SINGLE = 1, LICENSE_AND = '&', LICENSE_OR = '|'.
LICENSE_LOGIC = {"single": 1, "and": 38, "multi": 38, "or": 124, "dual": 124}
# sys/stat.h st_flags bits under their chflags(1) names (and aliases).
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
# Text columns pkg declares NOT NULL; the first four must not be empty either.
_NONEMPTY = ("origin", "version", "prefix", "maintainer")
_TEXT = ("comment", "desc")


def write_pkgdb(dest: Path, packages: list[dict], *, time: int, schema: int,
                repository: str | None = "base") -> None:
    """Write local.sqlite for *packages* (parsed +MANIFESTs, install order) at *dest*.

    *schema* is the PRAGMA user_version of the pkg the image ships (36 or 42).
    Old-style manifests need ``_tar_meta`` for schema 42; a package may carry
    ``_config_content`` ({path: text}) for pkg's three-way merge of @config files.
    """
    if schema not in sql.SCHEMAS:
        raise StepError(f"local.sqlite: unsupported pkg database schema {schema!r} "
                        f"(supported: {', '.join(map(str, SUPPORTED_SCHEMAS))})")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=TMP_PREFIX + dest.name + ".", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        _build(tmp, packages, time=time, schema=schema, repository=repository)
        _normalise_header(tmp)
        with open(tmp, "rb") as src, atomic_output(dest, DB_MODE) as out:
            shutil.copyfileobj(src, out, 1 << 20)
    finally:
        for leftover in (tmp, Path(name + "-journal")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


@contextlib.contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def _build(path: Path, packages: list[dict], *, time: int, schema: int,
           repository: str | None) -> None:
    """Create the schema, register every package in one transaction, VACUUM."""
    with _connect(path) as conn:
        for pragma in (f"page_size = {PAGE_SIZE}", "encoding = 'UTF-8'",
                       "auto_vacuum = NONE", "journal_mode = DELETE",
                       "secure_delete = ON", "foreign_keys = ON"):
            conn.execute("PRAGMA " + pragma)
        conn.execute("BEGIN")
        for statement in sql.SCHEMAS[schema]:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {schema}")
        for pkg in packages:
            _register(conn, pkg, time=time, schema=schema, repository=repository)
        conn.execute("COMMIT")
        conn.execute("VACUUM")


def _normalise_header(path: Path) -> None:
    """Fix the header fields that count transactions or name the writing SQLite."""
    with open(path, "r+b") as f:
        header = bytearray(f.read(100))
        if header[:16] != b"SQLite format 3\x00":
            raise StepError(f"{path}: not an SQLite database after VACUUM")
        header[24:28] = (1).to_bytes(4, "big")
        header[92:96] = (1).to_bytes(4, "big")
        header[96:100] = HEADER_SQLITE_VERSION.to_bytes(4, "big")
        f.seek(0)
        f.write(header)


# --- registration, one package (pkgdb_register_pkg order) -------------------

def _register(conn: sqlite3.Connection, pkg: dict, *, time: int, schema: int,
              repository: str | None) -> None:
    name = _text(pkg, "name", "?")
    try:
        package_id = _insert_package(conn, pkg, name, time)
        conn.execute(sql.UPDATE_DEPS, (pkg["origin"], pkg["version"], name))
        for dep_name, dep in _mapping(pkg, "deps", name).items():
            conn.execute(sql.INSERT_DEP, (dep.get("origin", ""), dep_name,
                                          dep.get("version", ""), package_id))
        _insert_files(conn, pkg, name, package_id, time=time, schema=schema)
        _insert_config(conn, pkg, name, package_id)
        _insert_dirs(conn, pkg, name, package_id, schema=schema)
        for kind in ("categories", "licenses", "users", "groups"):
            _insert_named(conn, kind, _list(pkg, kind, name), package_id)
        _insert_scripts(conn, pkg, name, package_id)
        for key, value in _mapping(pkg, "options", name).items():
            conn.execute(sql.INSERT_OPTION, (key,))
            conn.execute(sql.INSERT_PKG_OPTION, (package_id, key, str(value)))
        for kind in ("shlibs_required", "shlibs_provided"):
            _insert_named(conn, kind, _list(pkg, kind, name), package_id)
        _insert_annotations(conn, pkg, name, package_id, repository)
        for kind in ("provides", "requires"):
            _insert_named(conn, kind, _list(pkg, kind, name), package_id)
    except sqlite3.IntegrityError as exc:
        raise StepError(f"{name}: cannot register in local.sqlite: {exc}") from None


def _insert_package(conn: sqlite3.Connection, pkg: dict, name: str, time: int) -> int:
    for key in _NONEMPTY:
        _text(pkg, key, name)
    for key in _TEXT:
        _text(pkg, key, name, allow_empty=True)
    arch = pkg.get("abi") or pkg.get("arch")
    if not arch:
        raise StepError(f"{name}: manifest has neither abi nor arch")
    logic = str(pkg.get("licenselogic", "single")).lower()
    if logic not in LICENSE_LOGIC:
        raise StepError(f"{name}: unknown licenselogic {logic!r}")
    row = (pkg["origin"], name, pkg["version"], pkg["comment"], pkg["desc"],
           _message(pkg, name), arch, pkg["maintainer"], pkg.get("www"),
           pkg["prefix"], int(pkg.get("flatsize", 0)), 0, LICENSE_LOGIC[logic],
           int(time), manifest_digest(pkg), pkg.get("dep_formula"),
           int(bool(pkg.get("vital", False))))
    cur = conn.execute(sql.INSERT_PACKAGE, row)
    return int(cur.lastrowid)


def _insert_files(conn: sqlite3.Connection, pkg: dict, name: str, package_id: int,
                  *, time: int, schema: int) -> None:
    tar_meta = pkg.get("_tar_meta") or {}
    for raw_path, entry in _mapping(pkg, "files", name).items():
        path = _decode(raw_path, name)
        if isinstance(entry, dict):
            file_sum, meta = entry.get("sum"), entry
        else:
            file_sum, meta = entry, tar_meta.get(raw_path, tar_meta.get(path))
        if schema == 36:
            conn.execute(sql.INSERT_FILE[36], (path, file_sum, package_id))
            continue
        if meta is None:
            raise StepError(f"{name}: {path}: no owner/mode for schema {schema} "
                            "(old manifest without _tar_meta)")
        mtime = meta.get("mtime")
        mtime = None if mtime is None else min(int(mtime), int(time))
        conn.execute(sql.INSERT_FILE[42], (
            path, file_sum, meta.get("uname"), meta.get("gname"),
            _perm(meta.get("perm"), name, path), _fflags(meta.get("fflags"), name, path),
            mtime, meta.get("symlink_target") or None, package_id))


def _insert_config(conn: sqlite3.Connection, pkg: dict, name: str,
                   package_id: int) -> None:
    contents = pkg.get("_config_content") or {}
    for raw_path in _list(pkg, "config", name):
        path = _decode(raw_path, name)
        content = contents.get(path)
        if isinstance(content, bytes):
            try:
                content = content.decode("utf-8")
            except UnicodeDecodeError:
                raise StepError(f"{name}: config file {path} is not UTF-8") from None
        conn.execute(sql.INSERT_CONFIG, (path, content, package_id))


def _insert_dirs(conn: sqlite3.Connection, pkg: dict, name: str, package_id: int,
                 *, schema: int) -> None:
    tar_meta = pkg.get("_tar_meta") or {}
    for raw_path, entry in _mapping(pkg, "directories", name).items():
        path = _decode(raw_path, name)
        if schema == 36:
            conn.execute(sql.INSERT_DIR[36], (path,))
        else:
            meta = entry if isinstance(entry, dict) else tar_meta.get(raw_path,
                                                                      tar_meta.get(path))
            if meta is None:
                raise StepError(f"{name}: {path}: no owner/mode for schema {schema} "
                                "(old manifest without _tar_meta)")
            conn.execute(sql.INSERT_DIR[42], (
                path, meta.get("uname"), meta.get("gname"),
                _perm(meta.get("perm"), name, path),
                _fflags(meta.get("fflags"), name, path)))
        conn.execute(sql.INSERT_PKG_DIR, (package_id, path, 1))


def _insert_named(conn: sqlite3.Connection, kind: str, values: Iterable[str],
                  package_id: int) -> None:
    first, link = sql.NAMED[kind]
    for value in values:
        conn.execute(first, (value,))
        conn.execute(link, (package_id, value))


def _insert_scripts(conn: sqlite3.Connection, pkg: dict, name: str,
                    package_id: int) -> None:
    """Shell scripts by type number (pkgdb_insert_scripts loops 0..8), then lua."""
    scripts = _mapping(pkg, "scripts", name)
    for key in scripts:
        if key not in SCRIPT_TYPES:
            raise StepError(f"{name}: unknown script type {key!r}")
    for key, number in sorted(SCRIPT_TYPES.items(), key=lambda kv: kv[1]):
        if key in scripts:
            body = _decode(scripts[key], name)
            conn.execute(sql.INSERT_SCRIPT, (body,))
            conn.execute(sql.INSERT_PKG_SCRIPT, (body, package_id, number))
    lua = _mapping(pkg, "lua_scripts", name)
    for key in lua:
        if key not in LUA_SCRIPT_TYPES:
            raise StepError(f"{name}: unknown lua script type {key!r}")
    for key, number in sorted(LUA_SCRIPT_TYPES.items(), key=lambda kv: kv[1]):
        bodies = lua.get(key, [])
        for body in [bodies] if isinstance(bodies, str) else bodies:
            body = _decode(body, name)
            conn.execute(sql.INSERT_LUA, (body,))
            conn.execute(sql.INSERT_PKG_LUA, (body, package_id, number))


def _insert_annotations(conn: sqlite3.Connection, pkg: dict, name: str,
                        package_id: int, repository: str | None) -> None:
    """Manifest annotations, then the two pkg_add records (first tag wins)."""
    pairs = [(str(k), str(v)) for k, v in _mapping(pkg, "annotations", name).items()]
    if repository is not None:
        pairs += [("repository", repository), ("repo_type", "binary")]
    seen: set[str] = set()
    for tag, value in pairs:
        if tag in seen:
            continue
        seen.add(tag)
        conn.execute(sql.INSERT_ANNOTATION, (tag,))
        conn.execute(sql.INSERT_ANNOTATION, (value,))
        conn.execute(sql.INSERT_PKG_ANNOTATION, (package_id, tag, value))


# --- values as pkg derives them --------------------------------------------

def manifest_digest(pkg: dict) -> str:
    """pkg_checksum_generate() over a catalogue-style entry: "2$2$<z-base32>".

    The arch entry is the legacy arch string when the manifest has one (pkg's
    pkg->arch/altabi), else the ABI.
    """
    entries = [("name", pkg["name"]), ("origin", pkg["origin"]),
               ("version", pkg["version"]),
               ("arch", pkg.get("arch") or pkg.get("abi") or "")]
    entries += [(str(k), str(v)) for k, v in (pkg.get("options") or {}).items()]
    entries += [("required_shlib", s) for s in pkg.get("shlibs_required") or ()]
    entries += [("provided_shlib", s) for s in pkg.get("shlibs_provided") or ()]
    entries += [("user", u) for u in pkg.get("users") or ()]
    entries += [("group", g) for g in pkg.get("groups") or ()]
    entries += [("depend", f"{n}~{d.get('origin', '')}")
                for n, d in (pkg.get("deps") or {}).items()]
    entries += [("provide", p) for p in pkg.get("provides") or ()]
    entries += [("require", r) for r in pkg.get("requires") or ()]
    h = hashlib.blake2b(digest_size=64)
    for key, value in sorted(entries, key=lambda kv: (kv[0].encode(), kv[1].encode())):
        h.update(key.encode())
        h.update(value.encode())
    return "2$2$" + zbase32(h.digest())


def _message(pkg: dict, name: str) -> str | None:
    """pkg_message_to_str(): the messages as compact JSON, or NULL when none."""
    messages = pkg.get("messages")
    if messages is None and isinstance(pkg.get("message"), str):
        messages = [{"message": pkg["message"]}]
    if not messages:
        return None
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise StepError(f"{name}: manifest messages is not a list of objects")
    return json.dumps(messages, ensure_ascii=False, separators=(",", ":"))


def _perm(value: Any, name: str, path: str) -> int | None:
    """Manifest "0755" (octal text) or a tar header's int mode -> permission bits."""
    if value is None:
        return None
    if isinstance(value, int):
        return value & 0o7777
    try:
        return int(str(value), 8)
    except ValueError:
        raise StepError(f"{name}: {path}: bad perm {value!r}") from None


def _fflags(value: Any, name: str, path: str) -> int:
    """A number, or chflags(1) names ("schg,uarch") as FreeBSD's strtofflags reads them."""
    if value in (None, ""):
        return 0
    if isinstance(value, int):
        return value
    text = str(value)
    with contextlib.suppress(ValueError):
        return int(text, 0)
    bits = 0
    for word in text.replace(" ", "").split(","):
        if word not in FILE_FLAGS:
            raise StepError(f"{name}: {path}: unknown file flag {word!r}")
        bits |= FILE_FLAGS[word]
    return bits


def _decode(text: Any, name: str) -> str:
    """pkg url-encodes scripts and paths in manifests; it stores them decoded."""
    if not isinstance(text, str):
        raise StepError(f"{name}: expected text in manifest, got {text!r}")
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise StepError(f"{name}: {text!r} does not decode to UTF-8") from None


def _text(pkg: dict, key: str, name: str, *, allow_empty: bool = False) -> str:
    value = pkg.get(key)
    if not isinstance(value, str) or not (value or allow_empty):
        raise StepError(f"{name}: manifest field {key!r} missing or not text")
    return value


def _mapping(pkg: dict, key: str, name: str) -> dict:
    value = pkg.get(key) or {}
    if not isinstance(value, dict):
        raise StepError(f"{name}: manifest field {key!r} is not an object")
    return value


def _list(pkg: dict, key: str, name: str) -> list:
    value = pkg.get(key) or []
    if not isinstance(value, list):
        raise StepError(f"{name}: manifest field {key!r} is not a list")
    return value


# --- reading back -----------------------------------------------------------

def read_pkgdb(path: Path) -> list[dict]:
    """Installed packages of a local.sqlite, in registration order.

    Each dict has the packages row's columns plus deps, files, directories,
    config_files, categories, licenses, users, groups, options, scripts,
    lua_scripts, shlibs_required, shlibs_provided, provides, requires and
    annotations.  Opened read-only and immutable: reading never writes a
    journal next to the file (the SBOM step reads image trees).
    """
    path = Path(path)
    if not path.is_file():
        raise StepError(f"{path}: no such pkg database")
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro&immutable=1", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [_read_package(conn, dict(row))
                for row in conn.execute("SELECT * FROM packages ORDER BY id")]
    except sqlite3.DatabaseError as exc:
        raise StepError(f"{path}: not a pkg database: {exc}") from None
    finally:
        conn.close()


def _read_package(conn: sqlite3.Connection, pkg: dict) -> dict:
    pid = pkg["id"]

    def rows(query: str) -> list[sqlite3.Row]:
        return conn.execute(query, (pid,)).fetchall()

    def names(link: str, column: str, table: str, value: str = "name") -> list[str]:
        return [r[0] for r in rows(f"SELECT t.{value} FROM {link} l JOIN {table} t "
                                   f"ON t.id = l.{column} WHERE l.package_id = ? "
                                   "ORDER BY l.rowid")]

    files = [dict(r) for r in rows("SELECT * FROM files WHERE package_id = ? ORDER BY rowid")]
    for f in files:
        f["sum"] = f.pop("sha256")
        del f["package_id"]
    pkg["files"] = files
    pkg["directories"] = [dict(r) for r in rows(
        "SELECT d.* FROM pkg_directories pd JOIN directories d ON d.id = pd.directory_id "
        "WHERE pd.package_id = ? ORDER BY pd.rowid")]
    for d in pkg["directories"]:
        del d["id"]
    pkg["deps"] = [dict(r) for r in rows(
        "SELECT name, origin, version FROM deps WHERE package_id = ? ORDER BY rowid")]
    pkg["config_files"] = [dict(r) for r in rows(
        "SELECT path, content FROM config_files WHERE package_id = ? ORDER BY rowid")]
    for kind, link, column in (("categories", "pkg_categories", "category_id"),
                               ("licenses", "pkg_licenses", "license_id"),
                               ("users", "pkg_users", "user_id"),
                               ("groups", "pkg_groups", "group_id"),
                               ("shlibs_required", "pkg_shlibs_required", "shlib_id"),
                               ("shlibs_provided", "pkg_shlibs_provided", "shlib_id")):
        pkg[kind] = names(link, column, kind if not kind.startswith("shlibs") else "shlibs")
    pkg["provides"] = names("pkg_provides", "provide_id", "provides", "provide")
    pkg["requires"] = names("pkg_requires", "require_id", "requires", "require")
    pkg["options"] = {r[0]: r[1] for r in rows(
        "SELECT o.option, po.value FROM pkg_option po JOIN option o "
        "USING (option_id) WHERE po.package_id = ? ORDER BY po.rowid")}
    by_number = {v: k for k, v in SCRIPT_TYPES.items()}
    pkg["scripts"] = {by_number.get(r[0], str(r[0])): r[1] for r in rows(
        "SELECT ps.type, s.script FROM pkg_script ps JOIN script s USING (script_id) "
        "WHERE ps.package_id = ? ORDER BY ps.type")}
    lua_by_number = {v: k for k, v in LUA_SCRIPT_TYPES.items()}
    lua: dict[str, list[str]] = {}
    for r in rows("SELECT pl.type, l.lua_script FROM pkg_lua_script pl JOIN lua_script l "
                  "USING (lua_script_id) WHERE pl.package_id = ? ORDER BY pl.rowid"):
        lua.setdefault(lua_by_number.get(r[0], str(r[0])), []).append(r[1])
    pkg["lua_scripts"] = lua
    pkg["annotations"] = {r[0]: r[1] for r in rows(
        "SELECT t.annotation, v.annotation FROM pkg_annotation pa "
        "JOIN annotation t ON t.annotation_id = pa.tag_id "
        "JOIN annotation v ON v.annotation_id = pa.value_id "
        "WHERE pa.package_id = ? ORDER BY pa.rowid")}
    return pkg

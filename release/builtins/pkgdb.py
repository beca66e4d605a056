"""/var/db/pkg/local.sqlite as the image's pkg(8) would have written it, but byte-reproducible.

An image must carry pkg's database of installed packages, or pkg in the image
believes nothing is installed.  Running pkg on the build host would stamp the
host's clock, the host's SQLite and the transaction history into the file, so
this module replays what libpkg does: pkgdb_init()'s statements for the
targeted generation (pkgdb_schema: 36 for pkg 1.21.x-2.3.x, 42 for pkg >= 2.8),
then pkgdb_register_pkg() for every package in install order, with the rows
pkgdb_rows derives from each manifest exactly as that generation does.

Columns pkg fills with install-time values, and what the image gets instead:
``packages.time`` is pkg's NOW() (the wall clock; pkg 2.x honours
PKG_INSTALL_EPOCH) and here the build's SOURCE_DATE_EPOCH.  Everything else
is a function of the packages, the repository name and the install reason.

SQLite itself: the file is built in a temporary file next to *dest*, with the
same statements in the same order every time, in one transaction (no VACUUM:
it would reorder sqlite_master, whose rows stay in pkgdb_init()'s order as in
a database pkg created).  Generation 42 is then switched to WAL, as pkg 2.x
leaves it (file header bytes 18-19 = 2; the -wal/-shm files are gone once the
connection closes); 36 stays a rollback-journal database.  Three header
fields would still differ between runs or hosts and are normalised: the file
change counter (offset 24) and version-valid-for (offset 92) are both 1
(equal, so the in-header page count stays trusted), and the writer's
SQLITE_VERSION_NUMBER (offset 96, informational only) is pinned to
HEADER_SQLITE_VERSION.  Page size (4096), encoding (UTF-8), auto_vacuum (off)
and secure_delete are set explicitly instead of taken from compile-time
defaults.  What remains host-dependent is the B-tree layout SQLite produces
and the record encoding of the SQLite in use: identical for a given SQLite
release, and in practice stable across releases, but not promised by SQLite.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import StepError
from ..fsutil import TMP_PREFIX, atomic_output
from . import pkgdb_schema as sql
from .pkgdb_rows import LUA_SCRIPT_TYPES, SCRIPT_TYPES, Registration, registration

SUPPORTED_SCHEMAS = tuple(sorted(sql.SCHEMAS))
HEADER_SQLITE_VERSION = 3_040_001
PAGE_SIZE = 4096
DB_MODE = 0o644


def write_pkgdb(dest: Path, packages: list[dict[str, Any]], *, time: int, schema: int,
                repository: str | None = None) -> None:
    """Write local.sqlite for *packages* (parsed +MANIFESTs, install order) at *dest*.

    *schema* is the PRAGMA user_version of the pkg the image ships (36 or 42);
    *repository* the name the image's pkg configuration gives the repository
    the packages came from (None: no repository annotations, as after
    ``pkg add FILE``).  A package dict may carry ``_automatic`` (installed as
    a dependency, not by name) and ``_config_content`` ({path: bytes} of its
    @config files, from the package archive).
    """
    if schema not in sql.SCHEMAS:
        raise StepError(f"local.sqlite: unsupported pkg database schema {schema!r} "
                        f"(supported: {', '.join(map(str, SUPPORTED_SCHEMAS))})")
    rows = [registration(p, schema=schema, repository=repository, automatic=bool(p.get("_automatic")),
                         config_content=p.get("_config_content")) for p in packages]
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=TMP_PREFIX + dest.name + ".", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        _build(tmp, rows, time=time, schema=schema)
        _normalise_header(tmp)
        with open(tmp, "rb") as src, atomic_output(dest, DB_MODE) as out:
            shutil.copyfileobj(src, out, 1 << 20)
    finally:
        for suffix in ("", "-journal", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(name + suffix).unlink()


@contextlib.contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def _build(path: Path, rows: list[Registration], *, time: int, schema: int) -> None:
    """Create the schema and register every package in one transaction, then set the journal mode."""
    with _connect(path) as conn:
        for pragma in (f"page_size = {PAGE_SIZE}", "encoding = 'UTF-8'",
                       "auto_vacuum = NONE", "journal_mode = DELETE",
                       "secure_delete = ON", "foreign_keys = ON"):
            conn.execute("PRAGMA " + pragma)
        conn.execute("BEGIN")
        for statement in sql.SCHEMAS[schema]:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {schema}")
        for row in rows:
            _register(conn, row, time=time, schema=schema)
        conn.execute("COMMIT")
        if sql.JOURNAL_MODES[schema] == "wal":
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StepError(f"{path}: SQLite refused WAL mode ({mode})")


def _normalise_header(path: Path) -> None:
    """Fix the header fields that count transactions or name the writing SQLite."""
    with open(path, "r+b") as f:
        header = bytearray(f.read(100))
        if header[:16] != b"SQLite format 3\x00":
            raise StepError(f"{path}: not an SQLite database")
        header[24:28] = (1).to_bytes(4, "big")
        header[92:96] = (1).to_bytes(4, "big")
        header[96:100] = HEADER_SQLITE_VERSION.to_bytes(4, "big")
        f.seek(0)
        f.write(header)


# --- registration, one package (pkgdb_register_pkg order) -------------------

def _register(conn: sqlite3.Connection, row: Registration, *, time: int, schema: int) -> None:
    name = row.package[1]
    stmts = sql.REGISTRATION[schema]
    try:
        origin, _, version = row.package[:3]
        package_id = conn.execute(sql.INSERT_PACKAGE, (*row.package[:13], int(time), *row.package[13:])).lastrowid
        assert package_id is not None           # set by every INSERT
        # pkg 2.x binds (origin, version, version, name) to a three-parameter
        # statement, so its WHERE compares names with the version: a no-op.
        conn.execute(sql.UPDATE_DEPS, (origin, version, version if schema >= 42 else name))
        for dep in row.deps:
            conn.execute(sql.INSERT_DEP, (*dep, package_id))
        for f in row.files:
            conn.execute(stmts.files, (*f, package_id))
        for path, _ in row.config:
            conn.execute(sql.INSERT_CONFIG, (path, None, package_id))
        for d in row.dirs:
            conn.execute(stmts.dirs, d)
            conn.execute(sql.INSERT_PKG_DIR, (package_id, d[0], 1))
        for kind in ("categories", "licenses", "users", "groups"):
            _insert_named(conn, kind, row.named[kind], package_id)
        for number, body in row.scripts:
            conn.execute(sql.INSERT_SCRIPT, (body,))
            conn.execute(sql.INSERT_PKG_SCRIPT, (body, package_id, number))
        for number, body in row.lua:
            conn.execute(sql.INSERT_LUA, (body,))
            conn.execute(sql.INSERT_PKG_LUA, (body, package_id, number))
        for key, value in row.options:
            conn.execute(sql.INSERT_OPTION, (key,))
            conn.execute(sql.INSERT_PKG_OPTION, (package_id, key, value))
        for table in stmts.shlib_links:
            _insert_named(conn, table, row.shlibs[table], package_id)
        for tag, value in row.annotations:
            conn.execute(sql.INSERT_ANNOTATION, (tag,))
            conn.execute(sql.INSERT_ANNOTATION, (value,))
            conn.execute(sql.INSERT_PKG_ANNOTATION, (package_id, tag, value))
        for conflict in row.conflicts:
            conn.execute(sql.INSERT_CONFLICT, (package_id, conflict))
        _insert_named(conn, "provides", row.provides, package_id)
        _insert_named(conn, "requires", row.requires, package_id)
        for path, content in row.config:         # pkgdb_update_config_file_content(), after extraction
            if content is not None:
                conn.execute(sql.UPDATE_CONFIG, (content, path))
    except sqlite3.IntegrityError as exc:
        raise StepError(f"{name}: cannot register in local.sqlite: {exc}") from None


def _insert_named(conn: sqlite3.Connection, kind: str, values: list[str], package_id: int) -> None:
    first, link = sql.named(kind)
    for value in values:
        conn.execute(first, (value,))
        conn.execute(link, (package_id, value))


# --- reading back -----------------------------------------------------------

def read_pkgdb(path: Path) -> list[dict[str, Any]]:
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


def _read_package(conn: sqlite3.Connection, pkg: dict[str, Any]) -> dict[str, Any]:
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

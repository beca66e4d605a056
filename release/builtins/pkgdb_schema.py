"""The SQL pkg(8) runs to create /var/db/pkg/local.sqlite and to register a package.

SQLite keeps the text of every CREATE statement in sqlite_master, so the text
below is spelled exactly as libpkg's pkgdb_init() concatenates its C string
literals (odd spaces included): a database written here has the same
sqlite_master rows as one the targeted pkg created itself.  Two generations,
each taken from freebsd/pkg's libpkg/pkgdb.c (pkgdb_init() and
sql_prepared_statements[]):

- 36: pkg 1.21.3, commit 657bd5ff684be84d56a7a0e16203f1bb948a3183
  (DB_SCHEMA_MINOR 36, written by pkg 1.21 up to 2.3).  Created with
  ``PRAGMA journal_mode = TRUNCATE`` (a rollback journal: nothing persists
  in the file).
- 42: pkg main, commit 13f9f986736ca80563f006a55ae075553feb57a1
  (DB_SCHEMA_MINOR 42, pkg 2.8 and later).  Created with
  ``PRAGMA journal_mode = WAL``, which persists in the file header.

pkgdb_init() also runs ``PRAGMA user_version = <DBVERSION>`` (DB_SCHEMA_MAJOR
0, so 36 or 42).  A freshly created database never runs the db_upgrades[]
steps, so none of the views and triggers older generations left behind exist;
42 has exactly one view, ``flavors``.
"""
from __future__ import annotations

from dataclasses import dataclass


def _cascade(target: str = "packages(id)") -> str:
    return target + " ON DELETE CASCADE ON UPDATE CASCADE,"


def _link_table(table: str, column: str, target: str, unique: str) -> str:
    """pkg_<x>(package_id, <x>_id) join tables of the categories/licenses/users/groups kind."""
    return ("CREATE TABLE " + table + " ("
            "package_id INTEGER REFERENCES packages(id) ON DELETE CASCADE"
            " ON UPDATE CASCADE,"
            + column + " INTEGER REFERENCES " + target + "(id) ON DELETE RESTRICT"
            " ON UPDATE RESTRICT,"
            + unique + ")")


def _name_table(table: str) -> str:
    return "CREATE TABLE " + table + " (id INTEGER PRIMARY KEY,name TEXT NOT NULL UNIQUE)"


def _shlib_table(table: str) -> str:
    return ("CREATE TABLE " + table + " ("
            "package_id INTEGER NOT NULL REFERENCES packages(id)"
            " ON DELETE CASCADE ON UPDATE CASCADE,"
            "shlib_id INTEGER NOT NULL REFERENCES shlibs(id)"
            " ON DELETE RESTRICT ON UPDATE RESTRICT,"
            "UNIQUE (package_id, shlib_id))")


def _option_link(table: str, last: str) -> str:
    return ("CREATE TABLE " + table + " ("
            "package_id INTEGER NOT NULL REFERENCES packages(id) "
            "ON DELETE CASCADE ON UPDATE CASCADE,"
            "option_id INTEGER NOT NULL REFERENCES option(option_id) "
            "ON DELETE RESTRICT ON UPDATE CASCADE," + last + "PRIMARY KEY(package_id, option_id))")


_PACKAGES = (
    "CREATE TABLE packages ("
    "id INTEGER PRIMARY KEY,origin TEXT NOT NULL,name TEXT NOT NULL,version TEXT NOT NULL,"
    "comment TEXT NOT NULL,desc TEXT NOT NULL,mtree_id INTEGER, message TEXT,arch TEXT NOT NULL,"
    "maintainer TEXT NOT NULL, www TEXT,prefix TEXT NOT NULL,flatsize INTEGER NOT NULL,"
    "automatic INTEGER NOT NULL,locked INTEGER NOT NULL DEFAULT 0,licenselogic INTEGER NOT NULL,"
    "time INTEGER, manifestdigest TEXT NULL, pkg_format_version INTEGER,dep_formula TEXT NULL"
    ",vital INTEGER NOT NULL DEFAULT 0)",
    "CREATE UNIQUE INDEX packages_unique ON packages(name)",
    "CREATE TABLE pkg_script ("
    "package_id INTEGER REFERENCES packages(id) ON DELETE CASCADE ON UPDATE CASCADE,"
    "type INTEGER,"
    "script_id INTEGER REFERENCES script(script_id) ON DELETE RESTRICT ON UPDATE CASCADE,"
    "PRIMARY KEY (package_id, type))",
    "CREATE TABLE script (script_id INTEGER PRIMARY KEY,script TEXT NOT NULL UNIQUE)",
    "CREATE TABLE option (option_id INTEGER PRIMARY KEY,option TEXT NOT NULL UNIQUE)",
)
_OPTION_DESC = "CREATE TABLE option_desc (option_desc_id INTEGER PRIMARY KEY,option_desc TEXT NOT NULL UNIQUE)"
_PKG_OPTION = _option_link("pkg_option", "value TEXT NOT NULL,")
_PKG_OPTION_DESC_DEFAULT = (
    _option_link("pkg_option_desc", "option_desc_id INTEGER NOT NULL "
                 "REFERENCES option_desc(option_desc_id) ON DELETE RESTRICT ON UPDATE CASCADE,"),
    _option_link("pkg_option_default", "default_value TEXT NOT NULL,"),
)
_DEPS = (
    "CREATE TABLE deps (origin TEXT NOT NULL,name TEXT NOT NULL,version TEXT NOT NULL,"
    "package_id INTEGER REFERENCES packages(id) ON DELETE CASCADE ON UPDATE CASCADE)",
    "CREATE UNIQUE INDEX deps_unique ON deps(name, version, package_id)",
)
_FILES_TAIL = "package_id INTEGER REFERENCES packages(id) ON DELETE CASCADE ON UPDATE CASCADE)"
_FILES = {
    36: ("CREATE TABLE files (path TEXT PRIMARY KEY,sha256 TEXT," + _FILES_TAIL,
         "CREATE TABLE directories (id INTEGER PRIMARY KEY,path TEXT NOT NULL UNIQUE)"),
    42: ("CREATE TABLE files (path TEXT PRIMARY KEY,sha256 TEXT,uname TEXT,gname TEXT,perm INTEGER,"
         "fflags INTEGER,mtime INTEGER,symlink_target TEXT," + _FILES_TAIL,
         "CREATE TABLE directories (id INTEGER PRIMARY KEY,path TEXT NOT NULL UNIQUE,uname TEXT,"
         "gname TEXT,perm INTEGER,fflags INTEGER)"),
}
_NAMED_TABLES = (
    _link_table("pkg_directories", "directory_id", "directories",
                "try INTEGER,PRIMARY KEY (package_id, directory_id)"),
    _name_table("categories"),
    _link_table("pkg_categories", "category_id", "categories", "PRIMARY KEY (package_id, category_id)"),
    _name_table("licenses"),
    _link_table("pkg_licenses", "license_id", "licenses", "PRIMARY KEY (package_id, license_id)"),
    _name_table("users"),
    _link_table("pkg_users", "user_id", "users", "UNIQUE(package_id, user_id)"),
    _name_table("groups"),
    _link_table("pkg_groups", "group_id", "groups", "UNIQUE(package_id, group_id)"),
    _name_table("shlibs"),
)
_ANNOTATIONS_TO_CONFIG = (
    "CREATE TABLE annotation (annotation_id INTEGER PRIMARY KEY,annotation TEXT NOT NULL UNIQUE)",
    "CREATE TABLE pkg_annotation ("
    "package_id INTEGER REFERENCES packages(id) ON DELETE CASCADE ON UPDATE RESTRICT,"
    "tag_id INTEGER NOT NULL REFERENCES annotation(annotation_id) ON DELETE CASCADE ON UPDATE RESTRICT,"
    "value_id INTEGER NOT NULL REFERENCES annotation(annotation_id) ON DELETE CASCADE ON UPDATE RESTRICT,"
    "UNIQUE (package_id, tag_id))",
    "CREATE TABLE pkg_conflicts ("
    "package_id INTEGER NOT NULL REFERENCES packages(id)  ON DELETE CASCADE ON UPDATE CASCADE,"
    "conflict_id INTEGER NOT NULL,UNIQUE(package_id, conflict_id))",
    "CREATE TABLE pkg_lock (exclusive INTEGER(1),advisory INTEGER(1),read INTEGER(8))",
    "CREATE TABLE pkg_lock_pid (pid INTEGER PRIMARY KEY)",
    "INSERT INTO pkg_lock VALUES(0,0,0)",
    "CREATE TABLE provides(    id INTEGER PRIMARY KEY,    provide TEXT NOT NULL)",
    "CREATE TABLE pkg_provides ("
    "package_id INTEGER NOT NULL REFERENCES packages(id)  ON DELETE CASCADE ON UPDATE CASCADE,"
    "provide_id INTEGER NOT NULL REFERENCES provides(id)  ON DELETE RESTRICT ON UPDATE RESTRICT,"
    "UNIQUE(package_id, provide_id))",
    "CREATE TABLE config_files (path TEXT NOT NULL UNIQUE, content TEXT, "
    "package_id INTEGER REFERENCES packages(id) ON DELETE CASCADE ON UPDATE CASCADE)",
)
_INDEXES = {
    36: ("CREATE INDEX deporigini on deps(origin)",
         "CREATE INDEX pkg_script_package_id ON pkg_script(package_id)",
         "CREATE INDEX deps_package_id ON deps (package_id)",
         "CREATE INDEX files_package_id ON files (package_id)",
         "CREATE INDEX pkg_directories_package_id ON pkg_directories (package_id)",
         "CREATE INDEX pkg_categories_package_id ON pkg_categories (package_id)",
         "CREATE INDEX pkg_licenses_package_id ON pkg_licenses (package_id)",
         "CREATE INDEX pkg_users_package_id ON pkg_users (package_id)",
         "CREATE INDEX pkg_groups_package_id ON pkg_groups (package_id)",
         "CREATE INDEX pkg_shlibs_required_package_id ON pkg_shlibs_required (package_id)",
         "CREATE INDEX pkg_shlibs_provided_package_id ON pkg_shlibs_provided (package_id)",
         "CREATE INDEX pkg_directories_directory_id ON pkg_directories (directory_id)",
         "CREATE INDEX pkg_annotation_package_id ON pkg_annotation(package_id)",
         "CREATE INDEX pkg_digest_id ON packages(origin, manifestdigest)",
         "CREATE INDEX pkg_conflicts_pid ON pkg_conflicts(package_id)",
         "CREATE INDEX pkg_conflicts_cid ON pkg_conflicts(conflict_id)",
         "CREATE INDEX pkg_provides_id ON pkg_provides(package_id)",
         "CREATE INDEX packages_origin ON packages(origin COLLATE NOCASE)",
         "CREATE INDEX packages_name ON packages(name COLLATE NOCASE)"),
    42: ("CREATE INDEX deporigini on deps(origin)",
         "CREATE INDEX deps_package_id ON deps (package_id)",
         "CREATE INDEX files_package_id ON files (package_id)",
         "CREATE INDEX pkg_directories_directory_id ON pkg_directories (directory_id)",
         "CREATE INDEX pkg_digest_id ON packages(origin, manifestdigest)",
         "CREATE INDEX pkg_conflicts_cid ON pkg_conflicts(conflict_id)",
         "CREATE INDEX provides_provide ON provides(provide)",
         "CREATE INDEX pkg_provides_provide_id ON pkg_provides(provide_id)",
         "CREATE INDEX packages_origin ON packages(origin COLLATE NOCASE)",
         "CREATE INDEX packages_name ON packages(name COLLATE NOCASE)",
         "CREATE INDEX pkg_shlibs_required_shlib_id ON pkg_shlibs_required(shlib_id)",
         "CREATE INDEX pkg_shlibs_required_ignore_shlib_id ON pkg_shlibs_required_ignore(shlib_id)",
         "CREATE INDEX pkg_shlibs_provided_shlib_id ON pkg_shlibs_provided(shlib_id)",
         "CREATE INDEX pkg_shlibs_provided_ignore_shlib_id ON pkg_shlibs_provided_ignore(shlib_id)",
         "CREATE VIEW IF NOT EXISTS flavors AS "
         "SELECT package_id, value.annotation AS flavor FROM pkg_annotation "
         "LEFT JOIN annotation tag ON pkg_annotation.tag_id = tag.annotation_id "
         "LEFT JOIN annotation value ON pkg_annotation.value_id = value.annotation_id "
         "WHERE tag.annotation = 'flavor'"),
}
_REQUIRES = (
    "CREATE TABLE requires(    id INTEGER PRIMARY KEY,    require TEXT NOT NULL)",
    "CREATE TABLE pkg_requires ("
    "package_id INTEGER NOT NULL REFERENCES packages(id)  ON DELETE CASCADE ON UPDATE CASCADE,"
    "require_id INTEGER NOT NULL REFERENCES requires(id)  ON DELETE RESTRICT ON UPDATE RESTRICT,"
    "UNIQUE(package_id, require_id))",
)
_REQUIRES_INDEXES_42 = (
    "CREATE INDEX requires_require ON requires(require)",
    "CREATE INDEX pkg_requires_require_id ON pkg_requires(require_id)",
    "CREATE INDEX pkg_requires_package_id ON pkg_requires(package_id)",
    "CREATE INDEX config_files_package_id ON config_files(package_id)",
)
_LUA = (
    "CREATE TABLE lua_script(    lua_script_id INTEGER PRIMARY KEY,    lua_script TEXT NOT NULL UNIQUE)",
    "CREATE TABLE pkg_lua_script ("
    "package_id INTEGER NOT NULL REFERENCES packages(id)  ON DELETE CASCADE ON UPDATE CASCADE,"
    "lua_script_id INTEGER NOT NULL REFERENCES lua_script(lua_script_id)  ON DELETE RESTRICT ON UPDATE RESTRICT,"
    "type INTEGER,UNIQUE(package_id, lua_script_id))",
)


def _shlib_tables(schema: int) -> tuple[str, ...]:
    if schema == 36:
        return _shlib_table("pkg_shlibs_required"), _shlib_table("pkg_shlibs_provided")
    return (_shlib_table("pkg_shlibs_required"), _shlib_table("pkg_shlibs_required_ignore"),
            _shlib_table("pkg_shlibs_provided"), _shlib_table("pkg_shlibs_provided_ignore"))


def _statements(schema: int) -> tuple[str, ...]:
    """pkgdb_init()'s statements between BEGIN and PRAGMA user_version, in order."""
    old = schema == 36
    return (_PACKAGES + ((_OPTION_DESC,) if old else ()) + (_PKG_OPTION,)
            + (_PKG_OPTION_DESC_DEFAULT if old else ()) + _DEPS + _FILES[schema] + _NAMED_TABLES
            + _shlib_tables(schema) + _ANNOTATIONS_TO_CONFIG + _INDEXES[schema] + _REQUIRES
            + (() if old else _REQUIRES_INDEXES_42) + _LUA
            + (() if old else ("CREATE INDEX pkg_lua_script_package_id ON pkg_lua_script(package_id)",)))


# Statements, in the order pkgdb_init() runs them, per PRAGMA user_version.
SCHEMAS: dict[int, tuple[str, ...]] = {36: _statements(36), 42: _statements(42)}
# What pkgdb_init() sets before BEGIN: the 36 generation's TRUNCATE leaves the
# file header in rollback mode (1, 1), WAL sets bytes 18-19 to (2, 2).
JOURNAL_MODES = {36: "truncate", 42: "wal"}


@dataclass(frozen=True)
class Registration:
    """The prepared statements of pkgdb_register_pkg() that differ between generations."""

    files: str
    dirs: str
    shlib_links: tuple[str, ...]      # pkg_shlibs_* tables filled, in pkgdb_register_pkg() order


# sql_prepared_statements[] shared by both generations
INSERT_PACKAGE = (
    "INSERT OR REPLACE INTO packages( "
    "origin, name, version, comment, desc, message, arch, "
    "maintainer, www, prefix, flatsize, automatic, "
    "licenselogic, time, manifestdigest, dep_formula, vital)"
    "VALUES( ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, "
    "?13, ?14, ?15, ?16, ?17 )"
)   # pkg binds NOW() for ?14 (time); the writer binds SOURCE_DATE_EPOCH
UPDATE_DEPS = "UPDATE deps SET origin=?1, version=?2 WHERE name=?3;"
INSERT_DEP = "INSERT INTO deps (origin, name, version, package_id) VALUES (?1, ?2, ?3, ?4)"
INSERT_PKG_DIR = ("INSERT INTO pkg_directories(package_id, directory_id, try) "
                  "VALUES (?1, (SELECT id FROM directories WHERE path = ?2), ?3)")
INSERT_CONFIG = "INSERT INTO config_files(path, content, package_id) VALUES (?1, ?2, ?3);"
UPDATE_CONFIG = "UPDATE config_files SET content=?1 WHERE path=?2;"
INSERT_CONFLICT = ("INSERT INTO pkg_conflicts(package_id, conflict_id) "
                   "VALUES (?1, (SELECT id FROM packages WHERE name = ?2))")

REGISTRATION = {
    36: Registration(
        files="INSERT INTO files (path, sha256, package_id) VALUES (?1, ?2, ?3)",
        dirs="INSERT OR IGNORE INTO directories(path) VALUES(?1)",
        shlib_links=("pkg_shlibs_required", "pkg_shlibs_provided")),
    42: Registration(
        files=("INSERT INTO files (path, sha256, uname, gname, perm, fflags, symlink_target, mtime, "
               "package_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
        dirs="INSERT OR IGNORE INTO directories(path, uname, gname, perm, fflags) VALUES(?1,?2,?3,?4,?5)",
        shlib_links=("pkg_shlibs_required", "pkg_shlibs_required_ignore", "pkg_shlibs_provided",
                     "pkg_shlibs_provided_ignore")),
}


def named(kind: str) -> tuple[str, str]:
    """(name table insert, link insert) of a "named list" kind (categories, users, shlibs ...)."""
    if kind.startswith("pkg_shlibs_"):
        return ("INSERT OR IGNORE INTO shlibs(name) VALUES(?1)",
                f"INSERT OR IGNORE INTO {kind}(package_id, shlib_id) "
                "VALUES (?1, (SELECT id FROM shlibs WHERE name = ?2))")
    if kind in ("provides", "requires"):
        column = kind[:-1]
        return (f"INSERT OR IGNORE INTO {kind}({column}) VALUES(?1)",
                f"INSERT INTO pkg_{kind}(package_id, {column}_id) "
                f"VALUES (?1, (SELECT id FROM {kind} WHERE {column} = ?2))")
    singular = {"categories": "category", "licenses": "license", "users": "user", "groups": "group"}[kind]
    return (f"INSERT OR IGNORE INTO {kind}(name) VALUES(?1)",
            f"INSERT INTO pkg_{kind}(package_id, {singular}_id) "
            f"VALUES (?1, (SELECT id FROM {kind} WHERE name = ?2))")


INSERT_SCRIPT = "INSERT OR IGNORE INTO script(script) VALUES (?1)"
INSERT_PKG_SCRIPT = ("INSERT INTO pkg_script(script_id, package_id, type) "
                     "VALUES ((SELECT script_id FROM script WHERE script = ?1), ?2, ?3)")
INSERT_LUA = "INSERT OR IGNORE INTO lua_script(lua_script) VALUES (?1)"
INSERT_PKG_LUA = ("INSERT INTO pkg_lua_script(lua_script_id, package_id, type) "
                  "VALUES ((SELECT lua_script_id FROM lua_script WHERE lua_script = ?1), ?2, ?3)")
INSERT_OPTION = "INSERT OR IGNORE INTO option (option) VALUES (?1)"
INSERT_PKG_OPTION = ("INSERT INTO pkg_option(package_id, option_id, value) "
                     "VALUES (?1, (SELECT option_id FROM option WHERE option = ?2),?3)")
INSERT_ANNOTATION = "INSERT OR IGNORE INTO annotation(annotation) VALUES (?1)"
INSERT_PKG_ANNOTATION = (
    "INSERT OR ROLLBACK INTO pkg_annotation(package_id, tag_id, value_id) "
    "VALUES (?1,"
    " (SELECT annotation_id FROM annotation WHERE annotation = ?2),"
    " (SELECT annotation_id FROM annotation WHERE annotation = ?3))"
)

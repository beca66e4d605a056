"""The CREATE statements pkg(8) runs when it makes a new /var/db/pkg/local.sqlite.

SQLite keeps the text of every CREATE statement in sqlite_master, so the text
below is spelled exactly as libpkg's pkgdb_init() concatenates its C string
literals (odd spaces included): a database written here then has the same
sqlite_master rows as one pkg created itself.

Schema 36 was compared statement by statement with freebsd/pkg
libpkg/pkgdb.c at commit ea2a04600fd2a340d3f7be15a50c343d42fb29ed
(DB_SCHEMA_MINOR 36, the pkg 1.21 to 2.0 generation).  That pkgdb_init() has no
views and no triggers (the older compatibility views were dropped long before),
and a freshly created database never runs the db_upgrades[] steps.

Schema 42 is a reconstruction, not a copy: no pkgdb.c of that generation could
be consulted.  It is schema 36 with the per-file metadata current pkg records
(uname, gname, perm, fflags, mtime, symlink_target) added to files, between
sha256 and package_id, and the per-directory owner, mode and flags added to
directories.  Check it against a real pkg >= 2.4 database before relying on it.
"""
from __future__ import annotations

# The parts shared by both generations, in pkgdb_init() order.
_PACKAGES = (
    "CREATE TABLE packages ("
    "id INTEGER PRIMARY KEY,"
    "origin TEXT NOT NULL,"
    "name TEXT NOT NULL,"
    "version TEXT NOT NULL,"
    "comment TEXT NOT NULL,"
    "desc TEXT NOT NULL,"
    "mtree_id INTEGER, "
    "message TEXT,"
    "arch TEXT NOT NULL,"
    "maintainer TEXT NOT NULL, "
    "www TEXT,"
    "prefix TEXT NOT NULL,"
    "flatsize INTEGER NOT NULL,"
    "automatic INTEGER NOT NULL,"
    "locked INTEGER NOT NULL DEFAULT 0,"
    "licenselogic INTEGER NOT NULL,"
    "time INTEGER, "
    "manifestdigest TEXT NULL, "
    "pkg_format_version INTEGER,"
    "dep_formula TEXT NULL"
    ",vital INTEGER NOT NULL DEFAULT 0"
    ")",
    "CREATE UNIQUE INDEX packages_unique ON packages(name)",
    "CREATE TABLE pkg_script ("
    "package_id INTEGER REFERENCES packages(id) ON DELETE CASCADE"
    " ON UPDATE CASCADE,"
    "type INTEGER,"
    "script_id INTEGER REFERENCES script(script_id)"
    " ON DELETE RESTRICT ON UPDATE CASCADE,"
    "PRIMARY KEY (package_id, type)"
    ")",
    "CREATE TABLE script ("
    "script_id INTEGER PRIMARY KEY,"
    "script TEXT NOT NULL UNIQUE"
    ")",
    "CREATE TABLE option ("
    "option_id INTEGER PRIMARY KEY,"
    "option TEXT NOT NULL UNIQUE"
    ")",
    "CREATE TABLE option_desc ("
    "option_desc_id INTEGER PRIMARY KEY,"
    "option_desc TEXT NOT NULL UNIQUE"
    ")",
    "CREATE TABLE pkg_option ("
    "package_id INTEGER NOT NULL REFERENCES packages(id) "
    "ON DELETE CASCADE ON UPDATE CASCADE,"
    "option_id INTEGER NOT NULL REFERENCES option(option_id) "
    "ON DELETE RESTRICT ON UPDATE CASCADE,"
    "value TEXT NOT NULL,"
    "PRIMARY KEY(package_id, option_id)"
    ")",
    "CREATE TABLE pkg_option_desc ("
    "package_id INTEGER NOT NULL REFERENCES packages(id) "
    "ON DELETE CASCADE ON UPDATE CASCADE,"
    "option_id INTEGER NOT NULL REFERENCES option(option_id) "
    "ON DELETE RESTRICT ON UPDATE CASCADE,"
    "option_desc_id INTEGER NOT NULL "
    "REFERENCES option_desc(option_desc_id) "
    "ON DELETE RESTRICT ON UPDATE CASCADE,"
    "PRIMARY KEY(package_id, option_id)"
    ")",
    "CREATE TABLE pkg_option_default ("
    "package_id INTEGER NOT NULL REFERENCES packages(id) "
    "ON DELETE CASCADE ON UPDATE CASCADE,"
    "option_id INTEGER NOT NULL REFERENCES option(option_id) "
    "ON DELETE RESTRICT ON UPDATE CASCADE,"
    "default_value TEXT NOT NULL,"
    "PRIMARY KEY(package_id, option_id)"
    ")",
    "CREATE TABLE deps ("
    "origin TEXT NOT NULL,"
    "name TEXT NOT NULL,"
    "version TEXT NOT NULL,"
    "package_id INTEGER REFERENCES packages(id) ON DELETE CASCADE"
    " ON UPDATE CASCADE"
    ")",
    "CREATE UNIQUE INDEX deps_unique ON deps(name, version, package_id)",
)

_FILES_36 = (
    "CREATE TABLE files ("
    "path TEXT PRIMARY KEY,"
    "sha256 TEXT,"
    "package_id INTEGER REFERENCES packages(id) ON DELETE CASCADE"
    " ON UPDATE CASCADE"
    ")",
    "CREATE TABLE directories ("
    "id INTEGER PRIMARY KEY,"
    "path TEXT NOT NULL UNIQUE"
    ")",
)

_FILES_42 = (
    "CREATE TABLE files ("
    "path TEXT PRIMARY KEY,"
    "sha256 TEXT,"
    "uname TEXT,"
    "gname TEXT,"
    "perm INTEGER,"
    "fflags INTEGER,"
    "mtime INTEGER,"
    "symlink_target TEXT,"
    "package_id INTEGER REFERENCES packages(id) ON DELETE CASCADE"
    " ON UPDATE CASCADE"
    ")",
    "CREATE TABLE directories ("
    "id INTEGER PRIMARY KEY,"
    "path TEXT NOT NULL UNIQUE,"
    "uname TEXT,"
    "gname TEXT,"
    "perm INTEGER,"
    "fflags INTEGER"
    ")",
)


def _link_table(table: str, column: str, target: str, unique: str) -> str:
    """pkg_<x>(package_id, <x>_id) join tables, all spelled the same way."""
    return ("CREATE TABLE " + table + " ("
            "package_id INTEGER REFERENCES packages(id) ON DELETE CASCADE"
            " ON UPDATE CASCADE,"
            + column + " INTEGER REFERENCES " + target + "(id) ON DELETE RESTRICT"
            " ON UPDATE RESTRICT,"
            + unique + ")")


def _name_table(table: str) -> str:
    return ("CREATE TABLE " + table + " ("
            "id INTEGER PRIMARY KEY,"
            "name TEXT NOT NULL UNIQUE"
            ")")


_REST = (
    _link_table("pkg_directories", "directory_id", "directories",
                "try INTEGER,PRIMARY KEY (package_id, directory_id)"),
    _name_table("categories"),
    _link_table("pkg_categories", "category_id", "categories",
                "PRIMARY KEY (package_id, category_id)"),
    _name_table("licenses"),
    _link_table("pkg_licenses", "license_id", "licenses",
                "PRIMARY KEY (package_id, license_id)"),
    _name_table("users"),
    _link_table("pkg_users", "user_id", "users", "UNIQUE(package_id, user_id)"),
    _name_table("groups"),
    _link_table("pkg_groups", "group_id", "groups", "UNIQUE(package_id, group_id)"),
    _name_table("shlibs"),
    "CREATE TABLE pkg_shlibs_required ("
    "package_id INTEGER NOT NULL REFERENCES packages(id)"
    " ON DELETE CASCADE ON UPDATE CASCADE,"
    "shlib_id INTEGER NOT NULL REFERENCES shlibs(id)"
    " ON DELETE RESTRICT ON UPDATE RESTRICT,"
    "UNIQUE (package_id, shlib_id)"
    ")",
    "CREATE TABLE pkg_shlibs_provided ("
    "package_id INTEGER NOT NULL REFERENCES packages(id)"
    " ON DELETE CASCADE ON UPDATE CASCADE,"
    "shlib_id INTEGER NOT NULL REFERENCES shlibs(id)"
    " ON DELETE RESTRICT ON UPDATE RESTRICT,"
    "UNIQUE (package_id, shlib_id)"
    ")",
    "CREATE TABLE annotation ("
    "annotation_id INTEGER PRIMARY KEY,"
    "annotation TEXT NOT NULL UNIQUE"
    ")",
    "CREATE TABLE pkg_annotation ("
    "package_id INTEGER REFERENCES packages(id)"
    " ON DELETE CASCADE ON UPDATE RESTRICT,"
    "tag_id INTEGER NOT NULL REFERENCES annotation(annotation_id)"
    " ON DELETE CASCADE ON UPDATE RESTRICT,"
    "value_id INTEGER NOT NULL REFERENCES annotation(annotation_id)"
    " ON DELETE CASCADE ON UPDATE RESTRICT,"
    "UNIQUE (package_id, tag_id)"
    ")",
    "CREATE TABLE pkg_conflicts ("
    "package_id INTEGER NOT NULL REFERENCES packages(id)"
    "  ON DELETE CASCADE ON UPDATE CASCADE,"
    "conflict_id INTEGER NOT NULL,"
    "UNIQUE(package_id, conflict_id)"
    ")",
    "CREATE TABLE pkg_lock ("
    "exclusive INTEGER(1),"
    "advisory INTEGER(1),"
    "read INTEGER(8)"
    ")",
    "CREATE TABLE pkg_lock_pid ("
    "pid INTEGER PRIMARY KEY"
    ")",
    "INSERT INTO pkg_lock VALUES(0,0,0)",
    "CREATE TABLE provides("
    "    id INTEGER PRIMARY KEY,"
    "    provide TEXT NOT NULL"
    ")",
    "CREATE TABLE pkg_provides ("
    "package_id INTEGER NOT NULL REFERENCES packages(id)"
    "  ON DELETE CASCADE ON UPDATE CASCADE,"
    "provide_id INTEGER NOT NULL REFERENCES provides(id)"
    "  ON DELETE RESTRICT ON UPDATE RESTRICT,"
    "UNIQUE(package_id, provide_id)"
    ")",
    "CREATE TABLE config_files ("
    "path TEXT NOT NULL UNIQUE, "
    "content TEXT, "
    "package_id INTEGER REFERENCES packages(id) ON DELETE CASCADE"
    " ON UPDATE CASCADE"
    ")",
    "CREATE INDEX deporigini on deps(origin)",
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
    "CREATE INDEX packages_name ON packages(name COLLATE NOCASE)",
    "CREATE TABLE requires("
    "    id INTEGER PRIMARY KEY,"
    "    require TEXT NOT NULL"
    ")",
    "CREATE TABLE pkg_requires ("
    "package_id INTEGER NOT NULL REFERENCES packages(id)"
    "  ON DELETE CASCADE ON UPDATE CASCADE,"
    "require_id INTEGER NOT NULL REFERENCES requires(id)"
    "  ON DELETE RESTRICT ON UPDATE RESTRICT,"
    "UNIQUE(package_id, require_id)"
    ")",
    "CREATE TABLE lua_script("
    "    lua_script_id INTEGER PRIMARY KEY,"
    "    lua_script TEXT NOT NULL UNIQUE"
    ")",
    "CREATE TABLE pkg_lua_script ("
    "package_id INTEGER NOT NULL REFERENCES packages(id)"
    "  ON DELETE CASCADE ON UPDATE CASCADE,"
    "lua_script_id INTEGER NOT NULL REFERENCES lua_script(lua_script_id)"
    "  ON DELETE RESTRICT ON UPDATE RESTRICT,"
    "type INTEGER,"
    "UNIQUE(package_id, lua_script_id)"
    ")",
)

# Statements, in the order pkgdb_init() runs them, per PRAGMA user_version.
SCHEMAS: dict[int, tuple[str, ...]] = {
    36: _PACKAGES + _FILES_36 + _REST,
    42: _PACKAGES + _FILES_42 + _REST,
}

# Prepared statements of pkgdb_register_pkg() (sql_prepared_statements[]),
# with FILES and DIRS1 widened for schema 42.
INSERT_PACKAGE = (
    "INSERT OR REPLACE INTO packages( "
    "origin, name, version, comment, desc, message, arch, "
    "maintainer, www, prefix, flatsize, automatic, "
    "licenselogic, time, manifestdigest, dep_formula, vital)"
    "VALUES( ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, "
    "?13, ?14, ?15, ?16, ?17 )"
)
UPDATE_DEPS = "UPDATE deps SET origin=?1, version=?2 WHERE name=?3;"
INSERT_DEP = ("INSERT INTO deps (origin, name, version, package_id) "
              "VALUES (?1, ?2, ?3, ?4)")
INSERT_FILE = {
    36: "INSERT INTO files (path, sha256, package_id) VALUES (?1, ?2, ?3)",
    42: ("INSERT INTO files (path, sha256, uname, gname, perm, fflags, mtime, "
         "symlink_target, package_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
}
INSERT_DIR = {
    36: "INSERT OR IGNORE INTO directories(path) VALUES(?1)",
    42: ("INSERT OR IGNORE INTO directories(path, uname, gname, perm, fflags) "
         "VALUES(?1, ?2, ?3, ?4, ?5)"),
}
INSERT_PKG_DIR = ("INSERT INTO pkg_directories(package_id, directory_id, try) "
                  "VALUES (?1, (SELECT id FROM directories WHERE path = ?2), ?3)")
INSERT_CONFIG = ("INSERT INTO config_files(path, content, package_id) "
                 "VALUES (?1, ?2, ?3);")

# (name table insert, link insert) for the "named list" kinds, in
# pkgdb_register_pkg() order where it matters.
NAMED = {
    "categories": ("INSERT OR IGNORE INTO categories(name) VALUES(?1)",
                   "INSERT INTO pkg_categories(package_id, category_id) "
                   "VALUES (?1, (SELECT id FROM categories WHERE name = ?2))"),
    "licenses": ("INSERT OR IGNORE INTO licenses(name) VALUES(?1)",
                 "INSERT INTO pkg_licenses(package_id, license_id) "
                 "VALUES (?1, (SELECT id FROM licenses WHERE name = ?2))"),
    "users": ("INSERT OR IGNORE INTO users(name) VALUES(?1)",
              "INSERT INTO pkg_users(package_id, user_id) "
              "VALUES (?1, (SELECT id FROM users WHERE name = ?2))"),
    "groups": ("INSERT OR IGNORE INTO groups(name) VALUES(?1)",
               "INSERT INTO pkg_groups(package_id, group_id) "
               "VALUES (?1, (SELECT id FROM groups WHERE name = ?2))"),
    "shlibs_required": ("INSERT OR IGNORE INTO shlibs(name) VALUES(?1)",
                        "INSERT OR IGNORE INTO pkg_shlibs_required(package_id, shlib_id) "
                        "VALUES (?1, (SELECT id FROM shlibs WHERE name = ?2))"),
    "shlibs_provided": ("INSERT OR IGNORE INTO shlibs(name) VALUES(?1)",
                        "INSERT OR IGNORE INTO pkg_shlibs_provided(package_id, shlib_id) "
                        "VALUES (?1, (SELECT id FROM shlibs WHERE name = ?2))"),
    "provides": ("INSERT OR IGNORE INTO provides(provide) VALUES(?1)",
                 "INSERT INTO pkg_provides(package_id, provide_id) "
                 "VALUES (?1, (SELECT id FROM provides WHERE provide = ?2))"),
    "requires": ("INSERT OR IGNORE INTO requires(require) VALUES(?1)",
                 "INSERT INTO pkg_requires(package_id, require_id) "
                 "VALUES (?1, (SELECT id FROM requires WHERE require = ?2))"),
}
INSERT_SCRIPT = "INSERT OR IGNORE INTO script(script) VALUES (?1)"
INSERT_PKG_SCRIPT = ("INSERT INTO pkg_script(script_id, package_id, type) "
                     "VALUES ((SELECT script_id FROM script WHERE script = ?1), ?2, ?3)")
INSERT_LUA = "INSERT OR IGNORE INTO lua_script(lua_script) VALUES (?1)"
INSERT_PKG_LUA = ("INSERT INTO pkg_lua_script(lua_script_id, package_id, type) "
                  "VALUES ((SELECT lua_script_id FROM lua_script WHERE "
                  "lua_script = ?1), ?2, ?3)")
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

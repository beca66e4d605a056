"""local.sqlite written as pkg(8) registers packages, reproducibly (release.builtins.pkgdb)."""
from __future__ import annotations

import copy
import hashlib
import sqlite3
from pathlib import Path

import pytest

from release.builtins import pkgdb, pkgdb_schema
from release.errors import StepError
from release.sums import ZBASE32, pkg2_sum, zbase32

EPOCH = 1_733_000_000
SH_HEX = hashlib.sha256(b"#!/bin/sh\n").hexdigest()


def _old_clibs() -> dict:
    """pkg < 2.4 manifest: sums only, owners/modes come from tar headers."""
    return {
        "name": "FreeBSD-clibs", "origin": "base/FreeBSD-clibs", "version": "14.2",
        "comment": "FreeBSD Base System", "maintainer": "re@FreeBSD.org",
        "www": "https://www.FreeBSD.org", "abi": "FreeBSD:14:amd64",
        "arch": "freebsd:14:x86:64", "prefix": "/", "flatsize": 2048,
        "licenselogic": "single", "licenses": ["BSD2CLAUSE"],
        "desc": "C libraries", "categories": ["base"],
        "shlibs_provided": ["libc.so.7", "libthr.so.3"],
        "annotations": {"FreeBSD_version": "1402000"},
        "files": {"/lib/libc.so.7": "1$" + "a" * 64,
                  "/usr/lib/libc.so": "1$" + "b" * 64},
        "directories": {"/usr/lib/": "y"},
        "lua_scripts": {"post-install": ["pkg.print_msg(%22clibs%22)"]},
        "_tar_meta": {
            "/lib/libc.so.7": {"uname": "root", "gname": "wheel", "perm": 0o444,
                               "mtime": EPOCH - 100, "symlink_target": ""},
            "/usr/lib/libc.so": {"uname": "root", "gname": "wheel", "perm": 0o644,
                                 "mtime": EPOCH + 999, "symlink_target": ""},
            "/usr/lib/": {"uname": "root", "gname": "wheel", "perm": 0o755},
        },
    }


def _old_runtime() -> dict:
    return {
        "name": "FreeBSD-runtime", "origin": "base/FreeBSD-runtime", "version": "14.2",
        "comment": "FreeBSD Base System", "maintainer": "re@FreeBSD.org",
        "www": "https://www.FreeBSD.org", "abi": "FreeBSD:14:amd64",
        "arch": "freebsd:14:x86:64", "prefix": "/", "flatsize": 4096,
        "licenselogic": "or", "licenses": ["BSD2CLAUSE", "BSD3CLAUSE"],
        "desc": "Runtime", "categories": ["base"],
        "deps": {"FreeBSD-clibs": {"origin": "base/FreeBSD-clibs", "version": "14.2"}},
        "shlibs_required": ["libc.so.7"],
        "options": {"DEBUG": "off", "ZFS": "on"},
        "users": ["root"], "groups": ["wheel", "operator"],
        "annotations": {"FreeBSD_version": "1402000", "set": "minimal"},
        "files": {"/bin/sh": "1$" + SH_HEX, "/bin/%5B": "1$" + "c" * 64,
                  "/etc/master.passwd": "1$" + "d" * 64},
        "directories": {"/var/empty": "y"},
        "config": ["/etc/master.passwd"],
        "_config_content": {"/etc/master.passwd": b"root:*:0:0::0:0:Charlie &:/root:/bin/sh\n"},
        "scripts": {"post-install": "pwd_mkdb%20-i%20-p%20-d%20%20%24%7BPKG_ROOTDIR%7D%2Fetc%0A",
                    "pre-deinstall": "true"},
        "_tar_meta": {
            "/bin/sh": {"uname": "root", "gname": "wheel", "perm": 0o555, "mtime": EPOCH - 5,
                        "symlink_target": ""},
            "/bin/[": {"uname": "root", "gname": "wheel", "perm": 0o555, "mtime": EPOCH - 5,
                       "symlink_target": "test"},
            "/etc/master.passwd": {"uname": "root", "gname": "wheel", "perm": 0o600,
                                   "mtime": EPOCH - 5, "symlink_target": ""},
            "/var/empty": {"uname": "root", "gname": "wheel", "perm": 0o555},
        },
    }


def _to_new(old: dict) -> dict:
    """The same package as pkg >= 2.4 writes it: per-file metadata in the manifest."""
    new = copy.deepcopy(old)
    meta = new.pop("_tar_meta")
    files = {}
    for path, old_sum in old["files"].items():
        m = meta[pkgdb._decode(path, "t")]
        entry = {"sum": pkg2_sum(old_sum.encode()), "uname": m["uname"], "gname": m["gname"],
                 "perm": format(m["perm"], "04o"), "fflags": 0, "mtime": m["mtime"]}
        if m["symlink_target"]:
            entry["symlink_target"] = m["symlink_target"]
            entry["sum"] = pkg2_sum(m["symlink_target"].encode())
        files[path] = entry
    new["files"] = files
    new["directories"] = {d: {"uname": "root", "gname": "wheel", "perm": "0555",
                              "fflags": "schg,uarch"} for d in old["directories"]}
    return new


def _packages(generation: str) -> list[dict]:
    old = [_old_clibs(), _old_runtime()]
    return old if generation == "old" else [_to_new(p) for p in old]


def _write(tmp_path: Path, sub: str, packages: list[dict], schema: int, **kw) -> Path:
    dest = tmp_path / sub / "var" / "db" / "pkg" / "local.sqlite"
    pkgdb.write_pkgdb(dest, packages, time=kw.pop("time", EPOCH), schema=schema, **kw)
    return dest


CASES = [("old", 36), ("new", 36), ("old", 42), ("new", 42)]


@pytest.mark.parametrize("generation,schema", CASES)
def test_same_inputs_give_same_bytes_in_any_directory(tmp_path, generation, schema):
    a = _write(tmp_path, "one", _packages(generation), schema)
    b = _write(tmp_path, "elsewhere/two", _packages(generation), schema)
    assert a.read_bytes() == b.read_bytes()
    for dest in (a, b):
        assert sorted(p.name for p in dest.parent.iterdir()) == ["local.sqlite"]
        assert dest.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("generation,schema", CASES)
def test_database_is_valid_and_versioned(tmp_path, generation, schema):
    dest = _write(tmp_path, "r", _packages(generation), schema)
    conn = sqlite3.connect(dest)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 4096
        assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
        assert conn.execute("SELECT * FROM pkg_lock").fetchall() == [(0, 0, 0)]
    finally:
        conn.close()
    header = dest.read_bytes()[:100]
    assert header[18:20] == b"\x01\x01"  # rollback journal, not WAL
    assert int.from_bytes(header[24:28], "big") == 1
    assert int.from_bytes(header[92:96], "big") == 1
    assert int.from_bytes(header[96:100], "big") == pkgdb.HEADER_SQLITE_VERSION


@pytest.mark.parametrize("generation,schema", CASES)
def test_every_row_reads_back(tmp_path, generation, schema):
    dest = _write(tmp_path, "r", _packages(generation), schema)
    clibs, runtime = pkgdb.read_pkgdb(dest)
    assert [clibs["id"], runtime["id"]] == [1, 2]
    for pkg in (clibs, runtime):
        assert pkg["time"] == EPOCH
        assert pkg["automatic"] == 0 and pkg["locked"] == 0
        assert pkg["arch"] == "FreeBSD:14:amd64"
        assert pkg["annotations"]["repository"] == "base"
        assert pkg["annotations"]["repo_type"] == "binary"
        assert pkg["manifestdigest"].startswith("2$2$")
    assert (runtime["name"], runtime["origin"], runtime["version"]) == \
        ("FreeBSD-runtime", "base/FreeBSD-runtime", "14.2")
    assert runtime["licenselogic"] == ord("|") and clibs["licenselogic"] == 1
    assert runtime["deps"] == [{"name": "FreeBSD-clibs", "origin": "base/FreeBSD-clibs",
                                "version": "14.2"}]
    assert [f["path"] for f in runtime["files"]] == ["/bin/sh", "/bin/[", "/etc/master.passwd"]
    expected_sh = "1$" + SH_HEX if generation == "old" else pkg2_sum(("1$" + SH_HEX).encode())
    assert runtime["files"][0]["sum"] == expected_sh
    assert [d["path"] for d in runtime["directories"]] == ["/var/empty"]
    assert [d["path"] for d in clibs["directories"]] == ["/usr/lib/"]
    assert runtime["config_files"] == [{"path": "/etc/master.passwd",
                                        "content": "root:*:0:0::0:0:Charlie &:/root:/bin/sh\n"}]
    assert runtime["scripts"] == {
        "post-install": "pwd_mkdb -i -p -d  ${PKG_ROOTDIR}/etc\n", "pre-deinstall": "true"}
    assert clibs["lua_scripts"] == {"post-install": ['pkg.print_msg("clibs")']}
    assert runtime["categories"] == ["base"]
    assert runtime["licenses"] == ["BSD2CLAUSE", "BSD3CLAUSE"]
    assert runtime["users"] == ["root"] and runtime["groups"] == ["wheel", "operator"]
    assert runtime["options"] == {"DEBUG": "off", "ZFS": "on"}
    assert runtime["shlibs_required"] == ["libc.so.7"]
    assert clibs["shlibs_provided"] == ["libc.so.7", "libthr.so.3"]
    assert runtime["annotations"]["set"] == "minimal"


def test_schema_42_records_owner_mode_and_target(tmp_path):
    for generation in ("old", "new"):
        dest = _write(tmp_path, generation, _packages(generation), 42)
        clibs, runtime = pkgdb.read_pkgdb(dest)
        sh, bracket, passwd = runtime["files"]
        assert (sh["uname"], sh["gname"], sh["perm"], sh["fflags"]) == ("root", "wheel", 0o555, 0)
        assert sh["symlink_target"] is None and bracket["symlink_target"] == "test"
        assert passwd["perm"] == 0o600 and sh["mtime"] == EPOCH - 5
        # mtimes after SOURCE_DATE_EPOCH are clamped, like the layer's tar headers
        assert clibs["files"][1]["mtime"] == EPOCH
        empty = runtime["directories"][0]
        assert (empty["uname"], empty["gname"], empty["perm"]) == ("root", "wheel", 0o555)
    new_dirs = pkgdb.read_pkgdb(tmp_path / "new/var/db/pkg/local.sqlite")[1]["directories"]
    assert new_dirs[0]["fflags"] == 0x20000 | 0x800  # schg,uarch


def _columns(dest: Path, table: str) -> list[str]:
    conn = sqlite3.connect(dest)
    try:
        return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
    finally:
        conn.close()


def _master(dest: Path) -> dict[str, tuple[str, str]]:
    conn = sqlite3.connect(dest)
    try:
        return {name: (kind, sql) for kind, name, sql in
                conn.execute("SELECT type, name, sql FROM sqlite_master")}
    finally:
        conn.close()


def test_schema_generations_have_their_shape(tmp_path):
    old = _write(tmp_path, "36", _packages("new"), 36)
    new = _write(tmp_path, "42", _packages("new"), 42)
    assert _columns(old, "files") == ["path", "sha256", "package_id"]
    assert _columns(old, "directories") == ["id", "path"]
    assert _columns(new, "files") == ["path", "sha256", "uname", "gname", "perm", "fflags",
                                      "mtime", "symlink_target", "package_id"]
    assert _columns(new, "directories") == ["id", "path", "uname", "gname", "perm", "fflags"]
    assert _columns(old, "packages") == [
        "id", "origin", "name", "version", "comment", "desc", "mtree_id", "message", "arch",
        "maintainer", "www", "prefix", "flatsize", "automatic", "locked", "licenselogic",
        "time", "manifestdigest", "pkg_format_version", "dep_formula", "vital"]
    master = _master(old)
    tables = {n for n, (k, _) in master.items() if k == "table"}
    assert tables == {
        "packages", "pkg_script", "script", "option", "option_desc", "pkg_option",
        "pkg_option_desc", "pkg_option_default", "deps", "files", "directories",
        "pkg_directories", "categories", "pkg_categories", "licenses", "pkg_licenses",
        "users", "pkg_users", "groups", "pkg_groups", "shlibs", "pkg_shlibs_required",
        "pkg_shlibs_provided", "annotation", "pkg_annotation", "pkg_conflicts", "pkg_lock",
        "pkg_lock_pid", "provides", "pkg_provides", "config_files", "requires",
        "pkg_requires", "lua_script", "pkg_lua_script"}
    assert not {k for k, _ in master.values()} - {"table", "index"}  # no views, no triggers
    explicit = {n for n, (k, s) in master.items() if k == "index" and s}
    assert {"packages_unique", "deps_unique", "deporigini", "files_package_id",
            "pkg_digest_id", "packages_origin", "packages_name"} <= explicit
    assert len(explicit) == 21
    # SQLite keeps the statement text: pkg's own spelling, spaces included
    assert master["packages"][1].startswith(
        "CREATE TABLE packages (id INTEGER PRIMARY KEY,origin TEXT NOT NULL,")
    assert "mtree_id INTEGER, message TEXT," in master["packages"][1]
    assert master["packages"][1].endswith("dep_formula TEXT NULL,vital INTEGER NOT NULL DEFAULT 0)")
    assert master["provides"][1] == ("CREATE TABLE provides(    id INTEGER PRIMARY KEY,"
                                     "    provide TEXT NOT NULL)")


def _build_one_transaction_per_package(path, packages, *, time, schema, repository):
    """How pkg itself works: autocommitted DDL, then BEGIN/COMMIT per package."""
    with pkgdb._connect(path) as conn:
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("PRAGMA foreign_keys = ON")
        for statement in pkgdb_schema.SCHEMAS[schema]:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {schema}")
        for pkg in packages:
            conn.execute("BEGIN")
            pkgdb._register(conn, pkg, time=time, schema=schema, repository=repository)
            conn.execute("COMMIT")
        conn.execute("VACUUM")


@pytest.mark.parametrize("schema", [36, 42])
def test_bytes_do_not_depend_on_transaction_history(tmp_path, monkeypatch, schema):
    one = _write(tmp_path, "one", _packages("new"), schema)
    monkeypatch.setattr(pkgdb, "_build", _build_one_transaction_per_package)
    many = _write(tmp_path, "many", _packages("new"), schema)
    assert one.read_bytes() == many.read_bytes()


def test_time_argument_is_every_packages_time(tmp_path):
    dest = _write(tmp_path, "t", _packages("old"), 36, time=1_600_000_000)
    assert {p["time"] for p in pkgdb.read_pkgdb(dest)} == {1_600_000_000}
    other = _write(tmp_path, "u", _packages("old"), 36)
    assert dest.read_bytes() != other.read_bytes()


def test_repository_annotations_can_be_left_out(tmp_path):
    dest = _write(tmp_path, "n", _packages("old"), 36, repository=None)
    for pkg in pkgdb.read_pkgdb(dest):
        assert "repository" not in pkg["annotations"] and "repo_type" not in pkg["annotations"]


def test_unknown_schema_is_refused_and_writes_nothing(tmp_path):
    dest = tmp_path / "db" / "local.sqlite"
    with pytest.raises(StepError, match="schema 41"):
        pkgdb.write_pkgdb(dest, _packages("old"), time=EPOCH, schema=41)
    assert not dest.exists()


def test_bad_input_names_the_package_and_keeps_the_old_file(tmp_path):
    dest = _write(tmp_path, "k", _packages("old"), 36)
    before = dest.read_bytes()
    clash = _packages("old")
    clash[1]["files"]["/lib/libc.so.7"] = "1$" + "e" * 64
    with pytest.raises(StepError, match="FreeBSD-runtime"):
        pkgdb.write_pkgdb(dest, clash, time=EPOCH, schema=36)
    no_meta = _packages("old")
    del no_meta[0]["_tar_meta"]
    with pytest.raises(StepError, match="FreeBSD-clibs: /lib/libc.so.7"):
        pkgdb.write_pkgdb(dest, no_meta, time=EPOCH, schema=42)
    bad_script = _packages("new")
    bad_script[1]["scripts"]["post-frobnicate"] = "true"
    with pytest.raises(StepError, match="post-frobnicate"):
        pkgdb.write_pkgdb(dest, bad_script, time=EPOCH, schema=42)
    no_origin = _packages("new")
    del no_origin[0]["origin"]
    with pytest.raises(StepError, match="FreeBSD-clibs: manifest field 'origin'"):
        pkgdb.write_pkgdb(dest, no_origin, time=EPOCH, schema=36)
    assert dest.read_bytes() == before
    assert sorted(p.name for p in dest.parent.iterdir()) == ["local.sqlite"]


def test_manifest_digest_is_pkgs_blake2_checksum():
    pkg = {"name": "a", "origin": "o/a", "version": "1", "arch": "x", "abi": "FreeBSD:14:amd64",
           "options": {"B": "on"}, "deps": {"d": {"origin": "o/d", "version": "2"}},
           "shlibs_required": ["libc.so.7"], "files": {"/ignored": "1$00"},
           "scripts": {"post-install": "ignored"}}
    # sorted by key, then value; each key's bytes then its value's bytes
    blob = b"Bon" b"archx" b"dependd~o/d" b"namea" b"origino/a" \
           b"required_shliblibc.so.7" b"version1"
    expected = "2$2$" + zbase32(hashlib.blake2b(blob, digest_size=64).digest())
    assert pkgdb.manifest_digest(pkg) == expected
    assert len(expected) == 4 + 103 and set(expected[4:]) <= set(ZBASE32)
    assert pkgdb.manifest_digest(dict(pkg, version="2")) != expected


def test_read_pkgdb_refuses_what_is_not_a_pkg_database(tmp_path):
    with pytest.raises(StepError, match="no such pkg database"):
        pkgdb.read_pkgdb(tmp_path / "missing.sqlite")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(StepError, match="not a pkg database"):
        pkgdb.read_pkgdb(junk)

"""local.sqlite written as pkg(8) registers packages, reproducibly (release.builtins.pkgdb).

These check the writer's own promises (bytes, rows per generation, bad
input).  That the rows are the ones the real pkg writes is proven against the
real pkg binaries in test_pkgdb_realpkg.py.
"""
from __future__ import annotations

import copy
import hashlib
import sqlite3
from pathlib import Path

import pytest
import toml

from release.builtins import pkgdb, pkgdb_rows, pkgdb_schema
from release.errors import StepError
from release.sums import ZBASE32, pkg2_sum, zbase32
from tests.conftest import PROJECT
from tests.pipeline_support import doit, error_lines

EPOCH = 1_733_000_000
SH_HEX = hashlib.sha256(b"#!/bin/sh\n").hexdigest()
PASSWD = b"root:*:0:0::0:0:Charlie &:/root:/bin/sh\n"


def _old_clibs() -> dict:
    """pkg < 2.4 manifest: bare sums, owners and modes only in the tar headers."""
    return {
        "name": "FreeBSD-clibs", "origin": "base/FreeBSD-clibs", "version": "14.2",
        "comment": "FreeBSD Base System", "maintainer": "re@FreeBSD.org",
        "www": "https://www.FreeBSD.org", "abi": "FreeBSD:14:amd64",
        "arch": "freebsd:14:x86:64", "prefix": "/", "flatsize": 2048,
        "licenselogic": "single", "licenses": ["BSD2CLAUSE"],
        "desc": "C%20libraries", "categories": ["base"],
        "shlibs_provided": ["libthr.so.3", "libc.so.7", "pam_unix.so.6"],
        "annotations": {"FreeBSD_version": "1402000"},
        "files": {"/usr/lib/libc.so": "1$" + "b" * 64, "/lib/libc.so.7": "1$" + "a" * 64},
        "directories": {"/usr/lib/": "y"},
        "lua_scripts": {"post-install": ["pkg.print_msg(%22clibs%22)"]},
    }


def _old_runtime() -> dict:
    return {
        "name": "FreeBSD-runtime", "origin": "base/FreeBSD-runtime", "version": "14.2",
        "comment": "FreeBSD Base System", "maintainer": "re@FreeBSD.org",
        "www": "https://www.FreeBSD.org", "abi": "FreeBSD:14:amd64",
        "arch": "freebsd:14:x86:64", "prefix": "/", "flatsize": 4096, "vital": True,
        "licenselogic": "or", "licenses": ["BSD3CLAUSE", "BSD2CLAUSE"],
        "desc": "Runtime", "categories": ["base"],
        "deps": {"FreeBSD-clibs": {"origin": "base/FreeBSD-clibs", "version": "14.2"}},
        "shlibs_required": ["libc.so.7"],
        "options": {"ZFS": "on", "DEBUG": False},
        "users": ["root"], "groups": ["wheel", "operator"],
        "annotations": {"set": "minimal", "FreeBSD_version": "1402000"},
        "files": {"/bin/sh": "1$" + SH_HEX, "/bin/%5B": "1$" + "c" * 64,
                  "/etc/master.passwd": "1$" + "d" * 64},
        "directories": {"/var/empty": "y"},
        "config": ["/etc/master.passwd"],
        "_config_content": {"/etc/master.passwd": PASSWD},
        "scripts": {"post-install": "pwd_mkdb%20-i%20-p%20-d%20%20%24%7BPKG_ROOTDIR%7D%2Fetc%0A",
                    "pre-deinstall": "true"},
    }


def _to_new(old: dict) -> dict:
    """The same package as pkg >= 2.4 makes it: per-file metadata in the manifest."""
    new = copy.deepcopy(old)
    files = {}
    for path, old_sum in old["files"].items():
        entry = {"sum": pkg2_sum(old_sum.encode()), "uname": "root", "gname": "wheel",
                 "perm": "0555", "fflags": 0, "mtime": EPOCH - 5}
        if path == "/bin/%5B":
            entry["symlink_target"] = "test"
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
    kw.setdefault("repository", "FreeBSD-base")
    pkgdb.write_pkgdb(dest, packages, time=kw.pop("time", EPOCH), schema=schema, **kw)
    return dest


CASES = [("old", 36), ("new", 36), ("old", 42), ("new", 42)]


@pytest.mark.parametrize("generation,schema", CASES)
def test_same_inputs_give_same_bytes_in_any_directory(tmp_path, generation, schema):
    a = _write(tmp_path, "one", _packages(generation), schema)
    b = _write(tmp_path, "elsewhere/two", _packages(generation), schema)
    assert a.read_bytes() == b.read_bytes()
    for dest in (a, b):
        assert sorted(p.name for p in dest.parent.iterdir()) == ["local.sqlite"]   # no -wal, -shm, -journal
        assert dest.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("generation,schema", CASES)
def test_database_is_valid_versioned_and_in_pkgs_journal_mode(tmp_path, generation, schema):
    dest = _write(tmp_path, "r", _packages(generation), schema)
    header = dest.read_bytes()[:100]
    assert header[18:20] == (b"\x02\x02" if schema == 42 else b"\x01\x01")  # WAL for 2.x, rollback for 1.21
    assert int.from_bytes(header[24:28], "big") == 1
    assert int.from_bytes(header[92:96], "big") == 1
    assert int.from_bytes(header[96:100], "big") == pkgdb.HEADER_SQLITE_VERSION
    copy_ = tmp_path / "copy.sqlite"            # opening a WAL database writes -shm: use a copy
    copy_.write_bytes(dest.read_bytes())
    conn = sqlite3.connect(copy_)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == ("wal" if schema == 42 else "delete")
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 4096
        assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
        assert conn.execute("SELECT * FROM pkg_lock").fetchall() == [(0, 0, 0)]
    finally:
        conn.close()


def _master(dest: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(dest.resolve().as_uri() + "?mode=ro&immutable=1", uri=True)
    try:
        return conn.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
                            "ORDER BY rowid").fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("schema", [36, 42])
def test_sqlite_master_is_pkgdb_init_in_its_order(tmp_path, schema):
    dest = _write(tmp_path, "m", _packages("new"), schema)
    created = [s for s in pkgdb_schema.SCHEMAS[schema] if s.startswith("CREATE")]
    stored = [sql for _, _, sql in _master(dest)]
    # SQLite stores "CREATE VIEW IF NOT EXISTS x" as "CREATE VIEW x"
    assert stored == [s.replace(" IF NOT EXISTS", "") for s in created]
    kinds = {}
    for kind, name, _ in _master(dest):
        kinds.setdefault(kind, set()).add(name)
    if schema == 42:
        assert kinds["view"] == {"flavors"}
        assert {"pkg_shlibs_required_ignore", "pkg_shlibs_provided_ignore"} <= kinds["table"]
        assert not {"option_desc", "pkg_option_desc", "pkg_option_default"} & kinds["table"]
        assert len(kinds["index"]) == 21
    else:
        assert "view" not in kinds and "pkg_shlibs_required_ignore" not in kinds["table"]
        assert {"option_desc", "pkg_option_desc", "pkg_option_default"} <= kinds["table"]
        assert len(kinds["index"]) == 21
    assert "trigger" not in kinds


def test_rows_follow_the_generation(tmp_path):
    """pkg 2.x registers every list sorted; pkg 1.21 in manifest order (and filters provided shlibs)."""
    new = pkgdb.read_pkgdb(_write(tmp_path, "42", _packages("old"), 42))
    old = pkgdb.read_pkgdb(_write(tmp_path, "36", _packages("old"), 36))
    assert [f["path"] for f in new[0]["files"]] == ["/lib/libc.so.7", "/usr/lib/libc.so"]
    assert [f["path"] for f in old[0]["files"]] == ["/usr/lib/libc.so", "/lib/libc.so.7"]
    assert new[0]["shlibs_provided"] == ["libc.so.7", "libthr.so.3", "pam_unix.so.6"]
    assert old[0]["shlibs_provided"] == ["libthr.so.3", "libc.so.7"]
    assert new[1]["licenses"] == ["BSD2CLAUSE", "BSD3CLAUSE"]
    assert old[1]["licenses"] == ["BSD3CLAUSE", "BSD2CLAUSE"]
    assert list(new[1]["annotations"]) == ["FreeBSD_version", "repo_type", "repository", "set"]
    assert list(old[1]["annotations"]) == ["set", "FreeBSD_version", "repository", "repo_type"]
    assert new[1]["options"] == {"DEBUG": "off", "ZFS": "on"}
    assert list(old[1]["options"]) == ["ZFS", "DEBUG"]


@pytest.mark.parametrize("generation,schema", CASES)
def test_every_row_reads_back(tmp_path, generation, schema):
    dest = _write(tmp_path, "r", _packages(generation), schema)
    clibs, runtime = pkgdb.read_pkgdb(dest)
    assert [clibs["id"], runtime["id"]] == [1, 2]
    for pkg in (clibs, runtime):
        assert pkg["time"] == EPOCH
        assert pkg["automatic"] == 0 and pkg["locked"] == 0
        assert pkg["arch"] == "FreeBSD:14:amd64"
        assert pkg["annotations"]["repository"] == "FreeBSD-base"
        assert pkg["annotations"]["repo_type"] == "binary"
        assert pkg["annotations"]["FreeBSD_version"] == "1402000"
        assert pkg["manifestdigest"].startswith("2$2$")
    assert (runtime["vital"], clibs["vital"]) == (1, 0)
    assert clibs["desc"] == "C libraries"                       # url-decoded, like pkg
    assert runtime["licenselogic"] == ord("|") and clibs["licenselogic"] == 1
    assert runtime["deps"] == [{"name": "FreeBSD-clibs", "origin": "base/FreeBSD-clibs", "version": "14.2"}]
    sums = {f["path"]: f["sum"] for f in runtime["files"]}
    if generation == "old":
        assert sums["/bin/sh"] == "1$" + SH_HEX
    elif schema == 42:
        assert sums["/bin/sh"] == pkg2_sum(("1$" + SH_HEX).encode())
    else:
        assert set(sums.values()) == {None}      # pkg 1.21 keeps only bare hex from a file object
    assert "/bin/[" in sums
    assert [d["path"] for d in clibs["directories"]] == ["/usr/lib"]   # pkg_absolutepath drops the "/"
    assert runtime["config_files"] == [{"path": "/etc/master.passwd", "content": PASSWD.decode()}]
    assert runtime["scripts"] == {"post-install": "pwd_mkdb -i -p -d  ${PKG_ROOTDIR}/etc\n",
                                  "pre-deinstall": "true"}
    assert clibs["lua_scripts"] == {"post-install": ["pkg.print_msg(%22clibs%22)"]}   # not decoded
    assert runtime["users"] == ["root"] and set(runtime["groups"]) == {"wheel", "operator"}
    assert runtime["shlibs_required"] == ["libc.so.7"]


def test_schema_42_files_record_what_the_manifest_says(tmp_path):
    """Registration comes before extraction: old manifests leave owner, mode and mtime empty."""
    _, old = pkgdb.read_pkgdb(_write(tmp_path, "old", _packages("old"), 42))
    assert {(f["uname"], f["gname"], f["perm"], f["fflags"], f["mtime"], f["symlink_target"])
            for f in old["files"]} == {(None, None, 0, 0, 0, None)}
    assert old["directories"][0] == {"path": "/var/empty", "uname": None, "gname": None, "perm": 0, "fflags": 0}
    _, new = pkgdb.read_pkgdb(_write(tmp_path, "new", _packages("new"), 42))
    by_path = {f["path"]: f for f in new["files"]}
    sh = by_path["/bin/sh"]
    assert (sh["uname"], sh["gname"], sh["perm"], sh["fflags"], sh["mtime"]) == ("root", "wheel", 0o555, 0,
                                                                                 EPOCH - 5)
    assert sh["symlink_target"] is None and by_path["/bin/["]["symlink_target"] == "test"
    assert new["directories"][0]["fflags"] == 0x20000 | 0x800      # schg,uarch


def test_automatic_and_repository_come_from_the_caller(tmp_path):
    packages = _packages("new")
    packages[0]["_automatic"] = True
    clibs, runtime = pkgdb.read_pkgdb(_write(tmp_path, "a", packages, 42, repository=None))
    assert (clibs["automatic"], runtime["automatic"]) == (1, 0)
    for pkg in (clibs, runtime):
        assert "repository" not in pkg["annotations"] and "repo_type" not in pkg["annotations"]


def test_time_argument_is_every_packages_time(tmp_path):
    dest = _write(tmp_path, "t", _packages("old"), 36, time=1_600_000_000)
    assert {p["time"] for p in pkgdb.read_pkgdb(dest)} == {1_600_000_000}
    other = _write(tmp_path, "u", _packages("old"), 36)
    assert dest.read_bytes() != other.read_bytes()


def test_unknown_schema_is_refused_and_writes_nothing(tmp_path):
    dest = tmp_path / "db" / "local.sqlite"
    with pytest.raises(StepError, match="schema 41 .*supported: 36, 42"):
        pkgdb.write_pkgdb(dest, _packages("old"), time=EPOCH, schema=41)
    assert not dest.exists()


def test_bad_input_names_the_package_and_field_and_keeps_the_old_file(tmp_path):
    dest = _write(tmp_path, "k", _packages("old"), 36)
    before = dest.read_bytes()
    clash = _packages("old")
    clash[1]["files"]["/lib/libc.so.7"] = "1$" + "e" * 64
    with pytest.raises(StepError, match="FreeBSD-runtime: cannot register"):
        pkgdb.write_pkgdb(dest, clash, time=EPOCH, schema=36)
    for key, match in (("origin", "FreeBSD-clibs: manifest field 'origin'"),
                       ("abi", "FreeBSD-clibs: manifest field 'abi'"),
                       ("version", "FreeBSD-clibs: manifest field 'version'")):
        broken = _packages("new")
        del broken[0][key]
        broken[0].pop("arch", None)
        with pytest.raises(StepError, match=match):
            pkgdb.write_pkgdb(dest, broken, time=EPOCH, schema=42)
    bad_perm = _packages("new")
    bad_perm[1]["files"]["/bin/sh"]["perm"] = "rwxr-xr-x"
    with pytest.raises(StepError, match=r"FreeBSD-runtime: /bin/sh: manifest field 'perm'"):
        pkgdb.write_pkgdb(dest, bad_perm, time=EPOCH, schema=42)
    not_text = _packages("new")
    not_text[1]["_config_content"] = {"/etc/master.passwd": b"\xff\xfe"}
    with pytest.raises(StepError, match="FreeBSD-runtime: config file /etc/master.passwd is not UTF-8"):
        pkgdb.write_pkgdb(dest, not_text, time=EPOCH, schema=42)
    assert dest.read_bytes() == before
    assert sorted(p.name for p in dest.parent.iterdir()) == ["local.sqlite"]


def test_unknown_script_types_are_skipped_as_pkg_does(tmp_path):
    packages = _packages("new")
    packages[1]["scripts"]["post-frobnicate"] = "true"
    _, runtime = pkgdb.read_pkgdb(_write(tmp_path, "s", packages, 42))
    assert set(runtime["scripts"]) == {"post-install", "pre-deinstall"}


def test_config_content_stops_at_the_first_nul_as_pkgs_c_string():
    reg = pkgdb_rows.registration(dict(_old_runtime(), _config_content=None), schema=42,
                                  repository=None, automatic=False,
                                  config_content={"/etc/master.passwd": b"abc\0def"})
    assert reg.config == [("/etc/master.passwd", "abc")]


def test_manifest_digest_is_pkgs_checksum_of_the_catalogue_entry():
    pkg = {"name": "a", "origin": "o/a", "version": "1", "arch": "freebsd:14:x86:64", "abi": "FreeBSD:14:amd64",
           "options": {"B": "on"}, "deps": {"d": {"origin": "o/d", "version": "2"}},
           "shlibs_required": ["libc.so.7"], "files": {"/ignored": "1$00"},
           "scripts": {"post-install": "ignored"}}
    # sorted by key, then value; each key's bytes then its value's bytes; pkg 2.x adds vital
    blob = b"Bon" b"archfreebsd:14:x86:64" b"dependd~o/d" b"namea" b"origino/a" \
           b"required_shliblibc.so.7" b"version1"
    old = "2$2$" + zbase32(hashlib.blake2b(blob, digest_size=64).digest())
    new = "2$2$" + zbase32(hashlib.blake2b(blob.replace(b"version1", b"version1vital0"),
                                           digest_size=64).digest())
    assert pkgdb_rows.manifest_digest(pkg, 36) == old
    assert pkgdb_rows.manifest_digest(pkg, 42) == new
    assert len(new) == 4 + 103 and set(new[4:]) <= set(ZBASE32)
    assert pkgdb_rows.manifest_digest(dict(pkg, version="2"), 42) != new
    # a 32-bit target's pkg hashes with BLAKE2s (PKG_HASH_TYPE_BLAKE2S_BASE32 = 5)
    i386 = dict(pkg, arch="freebsd:14:x86:32")
    blob32 = blob.replace(b"x86:64", b"x86:32").replace(b"version1", b"version1vital0")
    assert pkgdb_rows.manifest_digest(i386, 42) == "2$5$" + zbase32(
        hashlib.blake2s(blob32, digest_size=32).digest())


def test_read_pkgdb_refuses_what_is_not_a_pkg_database(tmp_path):
    with pytest.raises(StepError, match="no such pkg database"):
        pkgdb.read_pkgdb(tmp_path / "missing.sqlite")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(StepError, match="not a pkg database"):
        pkgdb.read_pkgdb(junk)


def test_an_unknown_generation_is_a_config_error_listing_the_supported_ones(tmp_path):
    data = toml.loads((PROJECT / "config.toml").read_text())
    data["pkgbase"]["pkgdb_schema"] = 41
    data["releases"]["demo"]["pkgdb_schema"] = 37
    path = tmp_path / "config.toml"
    path.write_text(toml.dumps(data))
    proc = doit(path, tmp_path / "work", "build:demo", check=False)
    assert proc.returncode == 2
    lines = error_lines(proc)
    assert "config.toml: pkgbase.pkgdb_schema: unknown pkg database generation 41 (supported: 36, 42)" in lines
    assert "config.toml: releases.demo.pkgdb_schema: unknown pkg database generation 37 (supported: 36, 42)" \
        in lines
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").rglob("*.sqlite"))

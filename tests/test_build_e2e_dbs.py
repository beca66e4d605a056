"""`doit build:demo` end to end: the databases in the images, read back by independent readers.

pwd.db, spwd.db and services.db are read with BSD db 1.85 (libdb1 through
ctypes, the same code libc's getpwnam/getservbyname use on FreeBSD); the
OpenSSL hash directory is compared with what `openssl rehash` makes of the
same certificates; /var/db/pkg/local.sqlite is opened with Python's sqlite3.
"""
from __future__ import annotations

import re
import shutil
import sqlite3
import ssl
import stat
import subprocess
from pathlib import Path

import pytest

from tests.build_support import ARCHES, DEMO_DATA, FLAVOURS, master_passwd_entries, passwd_record, u32be
from tests.conftest import need_tool
from tests.libdb1_support import libdb1_read

VERSION_KEY = b"\xffVERSION"
CAROOT = DEMO_DATA / "src" / "secure" / "caroot"
HASH_NAME = re.compile(r"[0-9a-f]{8}\.\d+")

arches = pytest.mark.parametrize("arch", list(ARCHES))


# --------------------------------------------------------------------------- pwd.db / spwd.db

@arches
@pytest.mark.parametrize("flavour", ["static", "minimal"])
def test_pwd_db_and_spwd_db_answer_every_account(rootfs, tmp_path, arch, flavour):
    root = rootfs[arch, flavour]
    entries = master_passwd_entries((root / "etc/master.passwd").read_bytes())
    n = len(entries)
    first_by_uid: dict[int, list[str]] = {}
    for f in entries:
        first_by_uid.setdefault(int(f[2]), f)
    keys = [VERSION_KEY, *(b"A" + f[0].encode() for f in entries), *(b"C" + u32be(uid) for uid in first_by_uid),
            *(b"B" + u32be(k) for k in range(1, n + 2))]
    for name, secure in (("pwd.db", False), ("spwd.db", True)):
        db = tmp_path / name
        shutil.copyfile(root / "etc" / name, db)        # libdb1 gets a private copy
        seq, got = libdb1_read(db, keys)
        assert got[VERSION_KEY] == b"\x04", name
        for f in entries:
            rec = passwd_record(got[b"A" + f[0].encode()])
            want = dict(name=f[0], passwd=f[1] if secure else "*", uid=int(f[2]), gid=int(f[3]), pw_class=f[4],
                        change=int(f[5]), expire=int(f[6]), gecos=f[7], dir=f[8], shell=f[9])
            assert {k: rec[k] for k in want} == want, f"{name}: {f[0]}"
        for uid, f in first_by_uid.items():
            assert passwd_record(got[b"C" + u32be(uid)])["name"] == f[0], f"{name}: uid {uid}"
        # getpwent's "compat" walk: 'B' keys 1, 2, ... up to the first gap
        walk = [passwd_record(got[b"B" + u32be(k)])["name"] for k in range(1, n + 1)]
        assert walk == [f[0] for f in entries], name
        assert got[b"B" + u32be(n + 1)] is None, name
        expected_keys = {VERSION_KEY, *(k for k in keys[1:] if got[k] is not None)}
        assert {k for k, _ in seq} == expected_keys and len(seq) == len(expected_keys), \
            f"{name}: seq() lists other keys than the accounts'"


# --------------------------------------------------------------------------- services.db

def services_lines(text: str) -> list[tuple[str, str, list[str]]]:
    """(name, port/proto, aliases) of every /etc/services entry, as services_mkdb reads them."""
    out = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2:
            out.append((words[0], words[1], words[2:]))
    return out


@arches
def test_services_db_two_step_lookups_give_the_services_lines(rootfs, tmp_path, arch):
    root = rootfs[arch, "minimal"]
    db = tmp_path / "services.db"
    shutil.copyfile(root / "var/db/services.db", db)
    entries = services_lines((root / "etc/services").read_text())
    assert len(entries) > 100
    names = {f"{name}/{pp.split('/')[1]}" for name, pp, aliases in entries for name in [name, *aliases]}
    first = [b"\xfe" + n.encode() + b"\0" for n in sorted(names)]
    first += [b"\xfessh\0", b"\xff22/tcp\0", b"\xff22\0", b"\xfewww/tcp\0"]
    _, index = libdb1_read(db, first)
    missing = [k for k in first if index[k] is None]
    assert not missing, f"services.db lacks {missing[:10]}"
    _, lines = libdb1_read(db, sorted(set(index.values())))
    line = {k: lines[v] for k, v in index.items()}
    assert line[b"\xfessh/tcp\0"] == b"ssh 22/tcp \0"
    assert line[b"\xfessh\0"] == line[b"\xff22/tcp\0"] == line[b"\xff22\0"] == b"ssh 22/tcp \0"
    assert line[b"\xfehttp/tcp\0"] == line[b"\xfewww/tcp\0"] == b"http 80/tcp www www-http \0"
    for name, pp, aliases in entries:
        for n in (name, *aliases):
            words = line[b"\xfe" + f"{n}/{pp.split('/')[1]}".encode() + b"\0"].rstrip(b"\0").split()
            assert n.encode() in words and words[1].split(b"/")[1] == pp.split("/")[1].encode(), (n, pp)


# --------------------------------------------------------------------------- /etc/ssl

def subject_hash(pem: Path) -> str:
    openssl = need_tool("openssl", "openssl")
    return subprocess.run([openssl, "x509", "-noout", "-subject_hash", "-in", str(pem)], check=True,
                          capture_output=True, text=True).stdout.strip()


def pem_ders(text: str) -> list[bytes]:
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S)
    return [ssl.PEM_cert_to_DER_cert(b) for b in blocks]


@pytest.fixture(scope="module")
def openssl_rehash(tmp_path_factory) -> Path:
    """`openssl rehash` over the trusted certificates the static recipe reads."""
    openssl = need_tool("openssl", "openssl")
    certs = tmp_path_factory.mktemp("rehash")
    for pem in sorted((CAROOT / "trusted").glob("*.pem")):
        shutil.copyfile(pem, certs / pem.name)
    subprocess.run([openssl, "rehash", str(certs)], check=True, capture_output=True)
    return certs


@arches
def test_ssl_certs_are_named_as_openssl_rehash_names_them(rootfs, openssl_rehash, arch):
    """The demo is a 14.x release: the static recipe's `certctl -c rehash` is 14.x's certctl.sh.

    Each certificate file is copied whole under its hash name (no bundle: that
    is the 15.x C certctl's).
    """
    root = rootfs[arch, "static"]
    theirs = {n for n in (p.name for p in openssl_rehash.iterdir()) if HASH_NAME.fullmatch(n)}
    ours = {p.name for p in (root / "etc/ssl/certs").iterdir()}
    assert len(theirs) == len(list((CAROOT / "trusted").glob("*.pem")))
    assert ours == theirs
    for name in ours:
        path = root / "etc/ssl/certs" / name
        assert stat.S_ISREG(path.lstat().st_mode), f"{name}: a copy, as certctl -c makes"
        assert path.read_bytes() == (openssl_rehash / name).read_bytes(), name
        assert stat.S_IMODE(path.lstat().st_mode) == 0o444, name
    untrusted = [subject_hash(p) for p in sorted((CAROOT / "untrusted").glob("*.pem"))]
    assert untrusted and not any(name.split(".")[0] in untrusted for name in ours)
    assert {p.name for p in (root / "etc/ssl/untrusted").iterdir()} == {f"{h}.0" for h in untrusted}
    assert not (root / "etc/ssl/cert.pem").exists()


@arches
def test_minimal_rehash_is_14x_certctl_sh(rootfs, arch):
    """FreeBSD-certctl's post-install `certctl rehash` (14.x certctl.sh) deletes every hash file
    and links /usr/share/certs again: the demo's minimal flavour installs no FreeBSD-caroot, so
    the hash directories end up empty, with no leftover name and no second name for anything."""
    root = rootfs[arch, "minimal"]
    for sub in ("certs", "untrusted"):
        assert (root / "etc/ssl" / sub).is_dir() and not list((root / "etc/ssl" / sub).iterdir()), sub
    assert not (root / "etc/ssl/cert.pem").exists()


# --------------------------------------------------------------------------- local.sqlite

@arches
def test_local_sqlite_lists_exactly_the_images_packages(demo_build, rootfs, tmp_path, arch):
    root = rootfs[arch, "minimal"]
    for suffix in ("-journal", "-wal", "-shm"):
        assert not (root / f"var/db/pkg/local.sqlite{suffix}").exists()
    assert (root / "var/db/pkg/local.sqlite").read_bytes()[18:20] == b"\x02\x02"      # WAL, as pkg 2.x leaves it
    db = tmp_path / "local.sqlite"
    shutil.copyfile(root / "var/db/pkg/local.sqlite", db)
    lock = demo_build.lock(arch)
    expected = sorted((p["name"], p["version"]) for f in FLAVOURS for p in lock["flavours"][f]["packages"])
    sde = demo_build.source_date_epoch()
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 42
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = con.execute("SELECT name, version, time, arch FROM packages ORDER BY name").fetchall()
        files = con.execute("SELECT path, perm FROM files").fetchall()
    finally:
        con.close()
    assert [(name, version) for name, version, _, _ in rows] == expected
    assert {t for _, _, t, _ in rows} == {sde}
    assert {a for _, _, _, a in rows} == {f"FreeBSD:14:{arch}"}
    assert files, "no files recorded"
    # pkg records a file's mode from the manifest; old-generation manifests (aarch64's) have none
    assert {perm for _, perm in files} == {0} if arch != "amd64" else 0 not in {perm for _, perm in files}
    for path, perm in files:
        st = (root / path.lstrip("/")).lstat()
        assert not perm or stat.S_ISLNK(st.st_mode) or stat.S_IMODE(st.st_mode) == perm, f"{path}: {perm:o}"

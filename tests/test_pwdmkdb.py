"""pwd_mkdb: records, put order and bytes, checked through libdb1 like libc reads them."""
from __future__ import annotations

import pytest

from release.builtins.dbhash import read_hash
from release.builtins.pwdmkdb import (
    MASTER_PASSWD_MODE, PASSWD_MODE, PWD_DB_MODE, PWD_HASHINFO, SPWD_DB_MODE, pwd_mkdb, pwd_puts,
    read_master_passwd,
)
from release.errors import StepError
from tests.libdb1_support import libdb1_read, libdb1_write, pwd_record, u32be

SMALL_MASTER_PASSWD = b"""\
# $FreeBSD$
#
root:$6$salt$hash:0:0::0:0:Charlie &:/root:/bin/csh
toor:*:0:0::0:0:Bourne-again Superuser:/root:
  # an indented comment
daemon:*:1:1::0:0:Owner of many system processes:/root:/usr/sbin/nologin
www:*:80:80:staff:1700000000:4294967297:World Wide Web Owner:/nonexistent:/usr/sbin/nologin

nobody:*:65534:65534::0:0:Unprivileged user:/nonexistent:/usr/sbin/nologin
+@netgroup:::::::::
-baduser:::::::::
"""


def compat_walk(got: dict[bytes, bytes | None]) -> list[bytes]:
    """getpwent's default "compat" source: 'B' keys 1, 2, ... up to the first gap."""
    names, n = [], 1
    while got.get(b"B" + u32be(n)) is not None:
        names.append(pwd_record(got[b"B" + u32be(n)])["name"])
        n += 1
    return names


def check_both_files(tmp_path, master: bytes) -> dict[str, dict[bytes, bytes | None]]:
    """pwd.db/spwd.db byte-identical to libdb1's for the same puts; all keys readable."""
    result = pwd_mkdb(master)
    entries = read_master_passwd(master)
    bsize, ffactor, nelem, cachesize, lorder = PWD_HASHINFO
    seen = {}
    for label, raw, secure in (("pwd", result.pwd_db, False), ("spwd", result.spwd_db, True)):
        puts = pwd_puts(entries, secure)
        theirs = libdb1_write(tmp_path / f"{label}.libdb1", puts, bsize=bsize, ffactor=ffactor,
                              nelem=nelem, cachesize=cachesize, lorder=lorder)
        assert raw == theirs, f"{label}.db differs from libdb1's"
        (tmp_path / f"{label}.db").write_bytes(raw)
        expected: dict[bytes, bytes] = {}
        for key, data in puts:
            expected.setdefault(key, data)
        yp = sum(entry.name[:1] in (b"+", b"-") for entry in entries)
        probes = [*expected, b"B" + u32be(len(entries) + 1), b"E" + u32be(yp + 1)]
        seq, got = libdb1_read(tmp_path / f"{label}.db", probes)
        assert dict(seq) == expected == read_hash(raw)
        seen[label] = got
    return seen


def test_small_master_passwd(tmp_path) -> None:
    got = check_both_files(tmp_path, SMALL_MASTER_PASSWD)
    pwd, spwd = got["pwd"], got["spwd"]
    assert pwd[b"\xffVERSION"] == b"\x04" == spwd[b"\xffVERSION"]
    assert compat_walk(pwd) == [b"root", b"toor", b"daemon", b"www", b"nobody",
                                b"+@netgroup", b"-baduser"]
    root = pwd_record(spwd[b"Aroot"])
    assert root["passwd"] == b"$6$salt$hash" and pwd_record(pwd[b"Aroot"])["passwd"] == b"*"
    assert root["fields"] == 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x40 | 0x80 | 0x100 | 0x200
    assert pwd_record(pwd[b"C" + u32be(0)])["name"] == b"root"  # toor loses uid 0
    www = pwd_record(pwd[b"Awww"])
    assert (www["pw_class"], www["change"], www["expire"]) == (b"staff", 1700000000, 1)
    plus, minus = pwd_record(pwd[b"E" + u32be(1)]), pwd_record(pwd[b"E" + u32be(2)])
    assert plus["name"] == b"+@netgroup" and plus["fields"] == 0  # "+name" is not a name
    assert minus["name"] == b"-baduser" and minus["fields"] == 0x1
    assert pwd[b"D"] == b"\x03" and pwd[b"E" + u32be(3)] is None


def test_small_master_passwd_v7_file() -> None:
    passwd = pwd_mkdb(SMALL_MASTER_PASSWD).passwd
    assert passwd.splitlines() == [
        b"root:*:0:0:Charlie &:/root:/bin/csh",
        b"toor:*:0:0:Bourne-again Superuser:/root:",
        b"daemon:*:1:1:Owner of many system processes:/root:/usr/sbin/nologin",
        b"www:*:80:80:World Wide Web Owner:/nonexistent:/usr/sbin/nologin",
        b"nobody:*:65534:65534:Unprivileged user:/nonexistent:/usr/sbin/nologin",
        b"+@netgroup:*:::::",
        b"-baduser:*:::::",
    ]
    assert PASSWD_MODE == PWD_DB_MODE == 0o644 and SPWD_DB_MODE == MASTER_PASSWD_MODE == 0o600


def test_without_plus_minus_entries_there_is_no_yp_key(tmp_path) -> None:
    got = check_both_files(tmp_path, b"root::0:0::0:0::/root:\nuser:x:1001:1001::0:0::/home/u:/bin/sh")
    assert compat_walk(got["spwd"]) == [b"root", b"user"]
    raw = read_hash(pwd_mkdb(b"root::0:0::0:0::/root:\n").pwd_db)
    assert b"D" not in raw and not any(key.startswith(b"E") for key in raw)


def test_shared_sample_master_passwd(tmp_path, src_samples) -> None:
    master = (src_samples / "etc/master.passwd").read_bytes()
    result = pwd_mkdb(master)
    # 27 entries: 82 puts, 8 buckets, no overflow page, pages 1-9 written, 40960 bytes
    assert len(result.pwd_db) == len(result.spwd_db) == 40960
    got = check_both_files(tmp_path, master)
    names = [line.split(b":", 1)[0] for line in master.splitlines()
             if line.strip() and not line.lstrip().startswith(b"#")]
    assert len(names) == 27
    assert compat_walk(got["pwd"]) == names == compat_walk(got["spwd"])
    assert pwd_record(got["spwd"][b"Aroot"])["passwd"] == b""
    assert len(read_hash(result.pwd_db)) == 81
    assert result.passwd.count(b"\n") == 27 and b"#" not in result.passwd


@pytest.mark.parametrize("text, line, message", [
    (b"root::0:0::0:0::/root:\nbad:*:1:1::0:0:/:/bin/sh\n", 2, "fields"),
    (b"#\nok:*:1:1::0:0::/:\ntoo:*:1:1::0:0::/:x:y\n", 3, "fields"),
    (b"user:*:12x:1::0:0::/:\n", 1, "uid is incorrect"),
    (b"user:*:1:-1::0:0::/:\n", 1, "max gid"),
    (b"user:*:4294967296:1::0:0::/:\n", 1, "max uid"),
    (b"\n\nuser:*::1::0:0::/:\n", 3, "no uid for user user"),
    (b"root:*:5:0::0:0::/:\n", 1, "root uid should be 0"),
    (b"user:*:1:1::0:0:" + b"g" * 2100 + b":/:\n", 1, "too long"),
])
def test_malformed_lines_name_the_line(text, line, message) -> None:
    with pytest.raises(StepError, match=rf"^master\.passwd: line {line}: .*{message}"):
        pwd_mkdb(text)


def test_line_length_limit_is_pwd_mkdbs() -> None:
    head, tail = b"u:*:1:1::0:0:", b":/:sh"
    ok = head + b"g" * (2046 - len(head) - len(tail)) + tail
    assert len(ok) == 2046
    assert read_master_passwd(ok + b"\n")[0].name == b"u"
    with pytest.raises(StepError, match="line 1: too long"):
        read_master_passwd(ok + b"h\n")

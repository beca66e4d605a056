"""cap_mkdb for login.conf: resolved records, name references, libdb1's bytes."""
from __future__ import annotations

import pytest

from release.builtins.capmkdb import CAP_HASHINFO, cap_mkdb, capability_puts, logical_lines
from release.builtins.dbhash import read_hash
from release.builtins.servicesmkdb import BYTE_ORDERS
from release.errors import StepError
from tests.libdb1_support import libdb1_read, libdb1_write

SMALL_LOGIN_CONF = b"""\
# comment
default:\\
\t:path=/sbin /bin:\\
\t:umask=022:

standard:\\
\t:tc=default:
russian|Russian Users Accounts:\\
\t:charset=KOI8-R:\\
\t:tc=default:
broken:\\
\t:tc=nowhere:\\
\t:umask=077:
chained:\\
\t:lang=C:tc=russian:
default:\\
\t:umask=000:
"""


def libdb1_check(tmp_path, login_conf: bytes, byte_order: str) -> dict[bytes, bytes | None]:
    ours = cap_mkdb(login_conf, byte_order)
    puts = capability_puts(login_conf)
    bsize, ffactor, nelem, cachesize = CAP_HASHINFO
    theirs = libdb1_write(tmp_path / "libdb1.db", puts, bsize=bsize, ffactor=ffactor,
                          nelem=nelem, cachesize=cachesize, lorder=BYTE_ORDERS[byte_order])
    assert ours == theirs
    expected: dict[bytes, bytes] = {}
    for key, data in puts:
        expected.setdefault(key, data)
    (tmp_path / "login.conf.db").write_bytes(ours)
    seq, got = libdb1_read(tmp_path / "login.conf.db", list(expected))
    assert dict(seq) == expected == read_hash(ours)
    return got


def cgetent(got: dict[bytes, bytes | None], name: bytes) -> tuple[bytes, bytes]:
    """getcap.c cdbget: follow type-2 references to the record; (type, record)."""
    data = got[name]
    while data[:1] == b"\x02":
        data = got[data[1:]]
    return data[:1], data[1:]


@pytest.mark.parametrize("byte_order", ["little", "big"])
def test_small_login_conf(tmp_path, byte_order) -> None:
    got = libdb1_check(tmp_path, SMALL_LOGIN_CONF, byte_order)
    assert cgetent(got, b"default") == (b"\x00", b"default:\t:path=/sbin /bin:\t:umask=022:\0")
    assert cgetent(got, b"standard") == (b"\x00", b"standard:\t:\t:path=/sbin /bin:\t:umask=022:\0")
    russian = b"russian|Russian Users Accounts:\t:charset=KOI8-R:\t:\t:path=/sbin /bin:\t:umask=022:\0"
    assert cgetent(got, b"russian") == (b"\x00", russian)
    assert cgetent(got, b"Russian Users Accounts") == (b"\x00", russian)
    assert got[b"russian"] == b"\x02russian|Russian Users Accounts"
    # an unresolvable tc= stays in the record, marked with type 1
    assert cgetent(got, b"broken") == (b"\x01", b"broken:\t:tc=nowhere:\t:umask=077:\0")
    assert cgetent(got, b"chained")[1] == (
        b"chained:\t:lang=C:\t:charset=KOI8-R:\t:\t:path=/sbin /bin:\t:umask=022:\0")
    # the second "default" is an ignored duplicate
    assert [key for key, _ in capability_puts(SMALL_LOGIN_CONF)].count(b"default") == 2


def test_shared_sample_login_conf(tmp_path, src_samples) -> None:
    login_conf = (src_samples / "etc/login.conf").read_bytes()
    got = libdb1_check(tmp_path, login_conf, "little")
    kind, default = cgetent(got, b"default")
    assert kind == b"\x00" and default.startswith(b"default:\t:passwd_format=md5:\t:copyright=")
    assert b":umask=022:" in default and b"\n" not in default
    # standard:\ :tc=default: becomes default's capabilities under standard's name
    assert cgetent(got, b"standard") == (b"\x00", b"standard:\t:" + default[len(b"default:"):])
    kind, russian = cgetent(got, b"Russian Users Accounts")
    assert kind == b"\x00" and russian.startswith(b"russian|Russian Users Accounts:")
    assert b":lang=ru_RU.KOI8-R:" in russian and b":umask=022:" in russian
    assert len(read_hash(cap_mkdb(login_conf, "big"))) == len(got)


def test_logical_lines_follow_getent() -> None:
    # one backslash is eaten per newline; a last line without newline is lost
    assert logical_lines(b"a:\\\n\t:b:\n\nc\\\\\n:d\nlast") == [b"a:\t:b:", b"", b"c\\:d"]


@pytest.mark.parametrize("text, message", [
    (b"loop:\\\n\t:tc=loop:\n", "reference loop"),
    (b"a:tc=b:\nb:tc=a:\n", "reference loop"),
    (b"fine:\\\n\t:umask=022:\nlast:umask=000:", "stop here"),
    (b"never|ending\\\n", "never ends"),
])
def test_what_cap_mkdb_cannot_build_is_refused(text, message) -> None:
    with pytest.raises(StepError, match=rf"^login\.conf: .*{message}"):
        cap_mkdb(text, "little")

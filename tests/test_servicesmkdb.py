"""services_mkdb: the lookups getservent.c makes, and libdb1's bytes with the real 6-buffer cache."""
from __future__ import annotations

import pytest

from release.builtins.dbhash import read_hash
from release.builtins.servicesmkdb import parse_services, services_hashinfo, services_mkdb, services_puts
from release.errors import StepError
from tests.libdb1_support import libdb1_read, libdb1_write

SMALL_SERVICES = b"""\
# Network services, Internet style
#
echo\t  7/tcp
echo\t  7/udp
ssh\t 22/tcp    secure-shell  # SSH Remote Login Protocol
ssh\t 22/udp
domain\t 53/tcp\t nameserver dns\t\t#Domain Name Server
nameserver 53/tcp  named
http 0x50/tcp www www-http
   # indented comment
kerberos 0130/udp kerberos-sec   # octal port 88
ntp 123/udp
rtmp 1/ddp
"""


def libdb1_check(tmp_path, services: bytes, byte_order: str) -> tuple[bytes, dict]:
    """Byte-identical to libdb1 with services_mkdb's own HASHINFO; every key readable."""
    ours = services_mkdb(services, byte_order)
    puts = services_puts(services)
    bsize, ffactor, nelem, cachesize, lorder = services_hashinfo(byte_order)
    theirs = libdb1_write(tmp_path / "libdb1.db", puts, bsize=bsize, ffactor=ffactor,
                          nelem=nelem, cachesize=cachesize, lorder=lorder)
    assert ours == theirs
    expected: dict[bytes, bytes] = {}
    for key, data in puts:
        expected.setdefault(key, data)
    (tmp_path / "services.db").write_bytes(ours)
    missing = b"%d\0" % sum(key[:1].isdigit() for key in expected)
    seq, got = libdb1_read(tmp_path / "services.db", [*expected, missing])
    assert dict(seq) == expected == read_hash(ours)
    assert got[missing] is None
    return ours, got


def lookup(got: dict, key: bytes) -> bytes:
    """getservent.c db_servent: the key gives an index, the index gives the line."""
    return got[got[key]].rstrip(b"\0")


@pytest.mark.parametrize("byte_order", ["little", "big"])
def test_small_services(tmp_path, byte_order) -> None:
    raw, got = libdb1_check(tmp_path, SMALL_SERVICES, byte_order)
    assert lookup(got, b"\xfessh/tcp\0") == b"ssh 22/tcp secure-shell "
    assert lookup(got, b"\xfesecure-shell\0") == b"ssh 22/tcp secure-shell "
    assert lookup(got, b"\xff22/udp\0") == b"ssh 22/udp "
    # a second line for 53/tcp only adds its names as aliases of the first
    assert lookup(got, b"\xfenamed/tcp\0") == b"domain 53/tcp nameserver dns named "
    assert lookup(got, b"\xff80\0") == b"http 80/tcp www www-http "
    assert lookup(got, b"\xfekerberos-sec/udp\0") == b"kerberos 88/udp kerberos-sec "
    # getservent walks "0", "1", ... in port order, protocols by first appearance
    walk = [got[b"%d\0" % i].split(b" ")[1] for i in range(9)]
    assert walk == [b"1/ddp", b"7/tcp", b"7/udp", b"22/tcp", b"22/udp", b"53/tcp", b"80/tcp",
                    b"88/udp", b"123/udp"]
    assert raw[8:12] == (b"\x00\x00\x04\xd2" if byte_order == "little" else b"\x00\x00\x10\xe1")


def test_shared_sample_services(tmp_path, src_samples) -> None:
    services = (src_samples / "etc/services").read_bytes()
    raw, got = libdb1_check(tmp_path, services, "little")
    assert len(raw) == 2_097_920  # 2 header pages, 8192 buckets, the bitmap: holes as zeros
    assert len(read_hash(raw)) == 6474
    assert lookup(got, b"\xfessh/tcp\0").startswith(b"ssh 22/tcp ")
    assert lookup(got, b"\xff25/tcp\0").startswith(b"smtp 25/tcp ")
    protocols, table = parse_services(services)
    first_listing: dict[bytes, bytes] = {}  # R_NOOVERWRITE: a name's first port wins
    for (port, index), names in sorted(table.items()):
        proto = protocols[index]
        line = b"%s %d/%s %s" % (names[0], port, proto, b"".join(n + b" " for n in names[1:]))
        assert lookup(got, b"\xff%d/%s\0" % (port, proto)) == line
        for name in names:
            first_listing.setdefault(b"%s/%s" % (name, proto), line)
    for name_proto, line in first_listing.items():
        assert lookup(got, b"\xfe%s\0" % name_proto) == line


def test_shared_sample_services_big_endian(tmp_path, src_samples) -> None:
    libdb1_check(tmp_path, (src_samples / "etc/services").read_bytes(), "big")


@pytest.mark.parametrize("text, line, message", [
    (b"ok 1/tcp\nbroken 22\n", 2, "no protocol"),
    (b"# c\n\nbroken 22/\n", 3, "no protocol"),
    (b"lonely\n", 1, "no port"),
    (b"x 2x/tcp\n", 1, "invalid port"),
    (b"x /tcp\n", 1, "invalid port"),
    (b"x 65536/tcp\n", 1, "port too big"),
    (b"x -1/tcp\n", 1, "port too big"),
    (b"a 1/p1\nb 1/p2\nc 1/p3\nd 1/p4\ne 1/p5\nf 1/p6\n", 6, "more than 5 protocols"),
])
def test_malformed_lines_name_the_line(text, line, message) -> None:
    with pytest.raises(StepError, match=rf"^services: line {line}: {message}"):
        services_mkdb(text)


def test_byte_order_must_be_named() -> None:
    with pytest.raises(ValueError):
        services_mkdb(SMALL_SERVICES, "host")

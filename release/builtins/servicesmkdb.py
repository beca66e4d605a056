"""services_mkdb(8) in pure Python: /var/db/services.db from /etc/services.

Replays usr.sbin/services_mkdb/services_mkdb.c: the same parsing, the same
HASHINFO (256-byte pages, ffactor 4, nelem 32768, the minimal 6-buffer cache)
and the same put order, with the byte order chosen the way the pkgbase
post-install script chooses it (-l on little-endian targets, -b on big-endian).

One deliberate difference: where FreeBSD's tool prints a warning and silently
leaves a malformed line out of the database ("no protocol found", "invalid
port", ...), services_mkdb() raises StepError naming the line, because a
database quietly missing a service is worse than a build that stops.
"""
from __future__ import annotations

from ..errors import StepError
from .dbhash import BIG_ENDIAN, LITTLE_ENDIAN, HashWriter
from .pwdmkdb import c_strtoul

SERVICES_DB_MODE = 0o644
BYTE_ORDERS = {"little": LITTLE_ENDIAN, "big": BIG_ENDIAN}
PMASK = 0xFFFF
PROTOMAX = 5
BUFSIZ = 1024  # services_mkdb.c formats every key and record in a BUFSIZ buffer

_SPACE = b" \t\n\v\f\r"


def services_hashinfo(byte_order: str) -> tuple[int, int, int, int, int]:
    """(bsize, ffactor, nelem, cachesize, lorder) of services_mkdb -l / -b."""
    if byte_order not in BYTE_ORDERS:
        raise ValueError(f"byte_order must be 'little' or 'big', not {byte_order!r}")
    return 256, 4, 32768, 1024, BYTE_ORDERS[byte_order]


def _fail(lineno: int, why: str) -> StepError:
    return StepError(f"services: line {lineno}: {why}")


def _tokens(text: bytes) -> list[bytes]:
    return [token for token in text.replace(b"\t", b" ").split(b" ") if token]


def _getstring(rest: bytes | None) -> tuple[bytes | None, bytes | None]:
    """getstring(): the next non-empty word, strsep(3)-style on space and tab."""
    while rest is not None:
        cut = min((i for i in (rest.find(b" "), rest.find(b"\t")) if i >= 0), default=-1)
        word, rest = (rest, None) if cut < 0 else (rest[:cut], rest[cut + 1:])
        if word:
            return word, rest
    return None, None


def parse_services(services: bytes) -> tuple[list[bytes], dict[tuple[int, int], list[bytes]]]:
    """parseservices(): protocols by first appearance, and names per (port, protocol)."""
    protocols: list[bytes] = []
    table: dict[tuple[int, int], list[bytes]] = {}
    for lineno, line in enumerate(services.split(b"\n"), 1):
        line = line.split(b"\0", 1)[0]
        body = line.lstrip(_SPACE)
        if not body or body.startswith(b"#"):
            continue
        name, rest = _getstring(body)
        port, rest = _getstring(rest)
        if name is None or port is None:             # no name means no port either
            raise _fail(lineno, "no port found")
        aliases = _tokens(rest.split(b"#", 1)[0]) if rest is not None else []
        text, slash, proto = port.partition(b"/")
        if not slash or not proto:
            raise _fail(lineno, f"no protocol found in {port.decode(errors='replace')!r}")
        number, end, overflow = c_strtoul(text, 0)
        if not text or end != len(text):
            raise _fail(lineno, f"invalid port {text.decode(errors='replace')!r}")
        if overflow or number > PMASK:
            raise _fail(lineno, f"port too big {text.decode(errors='replace')!r}")
        if proto not in protocols:
            if len(protocols) == PROTOMAX:
                raise _fail(lineno, f"more than {PROTOMAX} protocols, "
                                    f"{proto.decode(errors='replace')!r} is one too many")
            protocols.append(proto)
        names = table.setdefault((number, protocols.index(proto)), [])
        for word in (name, *aliases):
            if word not in names:
                names.append(word)
    return protocols, table


def _killproto(key: bytes) -> bytes:
    """Cut a key at its first '/' (and keep the NUL), as services_mkdb's killproto()."""
    return key[:key.index(b"/")] + b"\0"


def services_puts(services: bytes) -> list[tuple[bytes, bytes]]:
    """Every put services_mkdb makes, in order (all R_NOOVERWRITE)."""
    protocols, table = parse_services(services)
    puts: list[tuple[bytes, bytes]] = []
    for count, ((port, index), names) in enumerate(sorted(table.items())):
        proto = protocols[index]
        data = b"%d\0" % count
        record = b"%s %d/%s %s\0" % (names[0], port, proto, b"".join(a + b" " for a in names[1:]))
        by_port = b"\xff%d/%s\0" % (port, proto)
        by_name = [b"\xfe%s/%s\0" % (name, proto) for name in names]
        for key in (record, by_port, *by_name):
            if len(key) > BUFSIZ:
                raise StepError(f"services: {names[0].decode(errors='replace')} {port}/"
                                f"{proto.decode(errors='replace')}: entry longer than {BUFSIZ - 1} bytes")
        puts += [(data, record), (by_port, data), (_killproto(by_port), data)]
        for key in by_name:
            puts += [(key, data), (_killproto(key), data)]
    return puts


def services_mkdb(services: bytes, byte_order: str = "little") -> bytes:
    """services.db for /etc/services, as `services_mkdb -l|-b -q` writes it."""
    db = HashWriter(*services_hashinfo(byte_order))
    for key, data in services_puts(services):
        db.put(key, data)
    return db.getvalue()

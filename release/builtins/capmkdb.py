"""cap_mkdb(1) in pure Python: login.conf.db from login.conf.

login(1) and friends read login classes through getcap(3), which prefers
FILE.db when it exists.  cap_mkdb stores every record *resolved*: cgetnext()
joins continuation lines and interpolates tc= references, and the stored data
is a type byte (0 resolved, 1 a tc= could not be found) followed by the record
and a NUL, under the record's whole name field.  A record with several names
("russian|Russian Users Accounts") also gets one reference per name: type 2
and the whole name field, which getcap follows.

This module replays usr.bin/cap_mkdb/cap_mkdb.c over lib/libc/gen/getcap.c
(cgetnext, getent, cgetmatch, cgetcap) for one input file, quirks included,
with the HASHINFO cap_mkdb passes (4096-byte pages, everything else default).
Where cap_mkdb would exit with an error, or stop early without one, StepError
names login.conf; its warnings (ignored duplicates, unresolved tc=) are
followed silently because they define what the database holds.
"""
from __future__ import annotations

from collections.abc import Iterator

from ..errors import StepError
from .dbhash import HashWriter
from .servicesmkdb import BYTE_ORDERS

LOGIN_CONF_DB_MODE = 0o644
RECOK, TCERR, SHADOW = b"\x00", b"\x01", b"\x02"
MAX_RECURSION = 32
CAP_HASHINFO = (4096, 0, 0, 0)  # bsize, ffactor, nelem, cachesize: all but bsize default
NAME_MAX = 1023  # cgetnext copies the name field into a 1024-byte buffer
_SPACE = b" \t\n\v\f\r"


class _LoopDetected(Exception):
    pass


def _at(buf: bytes | bytearray, i: int) -> int:
    return buf[i] if i < len(buf) else 0


def cgetmatch(record: bytes, name: bytes) -> bool:
    """Is *name* one of the '|'-separated names before the record's first ':'?"""
    bp = 0
    while True:
        np = 0
        while True:
            if np == len(name):
                if _at(record, bp) in b"|:\0":
                    return True
                break
            c = _at(record, bp)
            bp, np = bp + 1, np + 1
            if c != name[np - 1]:
                break
        bp -= 1
        while True:
            c = _at(record, bp)
            if c in b"\0:":
                return False
            bp += 1
            if c == ord("|"):
                break


def _cgetcap_tc(record: bytearray, bp: int) -> int | None:
    """cgetcap(record + bp, "tc", '='): where the value of the next tc= starts."""
    while True:
        while True:
            c = record[bp]
            if c == 0:
                return None
            bp += 1
            if c == ord(":"):
                break
        cp = 0
        while cp < 2 and record[bp] == b"tc"[cp]:
            cp, bp = cp + 1, bp + 1
        if cp < 2:
            continue
        if record[bp] == ord("@"):
            return None
        if record[bp] != ord("="):
            continue
        bp += 1
        return None if record[bp] == ord("@") else bp


def logical_lines(text: bytes) -> list[bytes]:
    """getent's view of the file: lines joined at backslash-newline.

    A last line without its newline is dropped, as getent drops it at EOF.
    """
    records, current = [], b""
    for piece in text.split(b"\n")[:-1]:
        current += piece
        if current.endswith(b"\\"):
            current = current[:-1]  # the newline is swallowed, the line goes on
            continue
        records.append(current.split(b"\0", 1)[0])
        current = b""
    return records


class _Getcap:
    """getent() over one capability file, with tc= expansion."""

    def __init__(self, text: bytes) -> None:
        self.records = [r for r in logical_lines(text) if r and not r.startswith(b"#")]

    def getent(self, name: bytes, depth: int = 0) -> tuple[int, bytes]:
        """(0 found, 1 found with an unresolved tc=, -1 not found), record."""
        if depth > MAX_RECURSION:
            raise _LoopDetected(name)
        found = next((r for r in self.records if cgetmatch(r, name)), None)
        if found is None:
            return -1, b""
        record = bytearray(found + b"\0")
        scan, unresolved = 0, False
        while (tc := _cgetcap_tc(record, scan)) is not None:
            s = tc
            while record[s]:
                s += 1
                if record[s - 1] == ord(":"):
                    record[s - 1] = 0
                    break
            tcname = bytes(record[tc:record.index(0, tc)])
            status, icap = self.getent(tcname, depth + 1)
            if status == 1:
                unresolved = True
            if status == -1:
                record[s - 1] = ord(":")
                scan, unresolved = s - 1, True
                continue
            colon = icap.find(b":")
            interpolated = icap[colon + 1:] if colon >= 0 else b""
            if icap[-1:] != b":":
                interpolated += b":"
            record[tc - 3:s] = interpolated
            scan = tc - 3 + len(interpolated) - 1
        return (1 if unresolved else 0), bytes(record[:-1]).split(b"\0", 1)[0]


def cgetnext(text: bytes) -> Iterator[tuple[int, bytes]]:
    """Yield (status, record) for each record start, as cgetnext(3) walks the file."""
    pieces = text.split(b"\n")  # fgetln(3): lines end at newline only
    lines = [piece + b"\n" for piece in pieces[:-1]] + [piece for piece in pieces[-1:] if piece]
    getcap = _Getcap(text)
    slash, i = False, 0
    while i < len(lines):
        raw = lines[i]
        i += 1
        line = raw[:-1].split(b"\0", 1)[0]  # cgetnext NULs the line's last byte
        if len(raw) == 1:
            slash = False
            continue
        starts = line[:1]
        continued = slash
        slash = raw[-2:-1] == b"\\"
        if not starts or starts in _SPACE or starts in b":#" or continued:
            continue
        field = bytearray()
        while True:
            head = line.split(b"\\", 1)[0]
            if b":" in head:
                field += head[:head.index(b":") + 1]
                break
            field += head
            if i >= len(lines):
                raise StepError(f"login.conf: name field {bytes(field)[:40]!r} never ends")
            line, i = lines[i][:-1].split(b"\0", 1)[0], i + 1
        if len(field) > NAME_MAX:
            raise StepError(f"login.conf: name field {bytes(field)[:40]!r}... is too long")
        name = bytes(field).replace(b"|", b":").split(b":", 1)[0]
        try:
            status, record = getcap.getent(name)
        except _LoopDetected:
            raise StepError(f"login.conf: record {name!r}: potential reference loop "
                            f"detected (tc= nested deeper than {MAX_RECURSION})") from None
        if status == -1:
            raise StepError(f"login.conf: record {name!r}: cap_mkdb would stop here "
                            "(does the file end without a newline?)")
        yield status + 1, record


def _references(record: bytes) -> list[bytes]:
    """Each non-empty name of the name field, split at '|' the way cap_mkdb walks it."""
    names, t = [], 0
    for p, c in enumerate(record):
        if p > t and c in b":|":
            names.append(record[t:p])
            t = p + 1
        if c == ord(":"):
            break
    return names


def capability_puts(login_conf: bytes) -> list[tuple[bytes, bytes]]:
    """Every put cap_mkdb makes, in order (R_NOOVERWRITE: the first of a key wins)."""
    puts: list[tuple[bytes, bytes]] = []
    stored: set[bytes] = set()
    for status, record in cgetnext(login_conf):
        colon = record.find(b":")
        if colon < 0:
            raise StepError(f"login.conf: no name field: {record[:20]!r}")
        names = record[:colon]
        puts.append((names, (RECOK if status == 1 else TCERR) + record + b"\0"))
        if names in stored:
            continue  # cap_mkdb: "ignored duplicate", and no references either
        stored.add(names)
        if b"|" in names:
            puts.extend((name, SHADOW + names) for name in _references(record))
    return puts


def cap_mkdb(login_conf: bytes, byte_order: str) -> bytes:
    """login.conf.db as `cap_mkdb -l|-b login.conf` writes it."""
    if byte_order not in BYTE_ORDERS:
        raise ValueError(f"byte_order must be 'little' or 'big', not {byte_order!r}")
    db = HashWriter(*CAP_HASHINFO[:4], BYTE_ORDERS[byte_order])
    for key, data in capability_puts(login_conf):
        db.put(key, data)
    return db.getvalue()

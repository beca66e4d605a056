"""pwd_mkdb(8) in pure Python: /etc/passwd, pwd.db and spwd.db from master.passwd.

Replays FreeBSD 14.x/15's `pwd_mkdb -p -d ROOT/etc ROOT/etc/master.passwd`
(usr.sbin/pwd_mkdb/pwd_mkdb.c with lib/libc/gen/pw_scan.c): version-4 records
only, big-endian pages whatever the target, the same HASHINFO and put order,
through dbhash's replay of libc's db(3).  The files are therefore the same for
amd64 and aarch64, and byte for byte what that code writes.

/etc/passwd and comments: two v4-only sources of usr.sbin/pwd_mkdb/pwd_mkdb.c
differ.  The newer one (main, 15.x) skips comment and blank lines when it
writes the V7 passwd file, "since this could reveal encrypted passwords if
entries have been simply commented out"; the older one (14.x) copies them
(`if (is_comment && makeold)`, a blank line counting as a comment).  The
caller picks the generation of the release being built (copy_comments).

Where FreeBSD's tool exits with "line #N too long", "corrupted entry" and the
like, pwd_mkdb() raises StepError naming master.passwd and the line number.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import StepError
from .dbhash import BIG_ENDIAN, HashWriter

PASSWD_MODE = 0o644
PWD_DB_MODE = 0o644
SPWD_DB_MODE = 0o600
MASTER_PASSWD_MODE = 0o600

# pwd_mkdb.c openinfo: bsize, ffactor, nelem, cachesize (2 MiB), lorder
PWD_HASHINFO = (4096, 32, 256, 2048 * 1024, BIG_ENDIAN)

VERSION_KEY = b"\xffVERSION"
CURRENT_VERSION = 4
LINE_MAX = 2048
UID_MAX = GID_MAX = 0xFFFFFFFF
ULONG_MAX = (1 << 64) - 1
LONG_MAX = (1 << 63) - 1

# include/pwd.h tags, _PW_VERSIONED(x, 4), and pw_fields bits
KEY_BYNAME, KEY_BYNUM, KEY_BYUID, KEY_YPENABLED, KEY_YPBYNUM = b"A", b"B", b"C", b"D", b"E"
PWF_NAME, PWF_PASSWD, PWF_UID, PWF_GID, PWF_CHANGE = 0x1, 0x2, 0x4, 0x8, 0x10
PWF_CLASS, PWF_GECOS, PWF_DIR, PWF_SHELL, PWF_EXPIRE = 0x20, 0x40, 0x80, 0x100, 0x200

_SPACE = b" \t\n\v\f\r"


def _u32(value: int) -> bytes:
    """pwd_mkdb's SCALAR(): htonl of the value cast to 32 bits (time_t is truncated)."""
    return struct.pack(">I", value & 0xFFFFFFFF)


@dataclass(frozen=True)
class PwdDatabases:
    """What pwd_mkdb -p leaves in ROOT/etc (besides master.passwd itself)."""

    passwd: bytes
    pwd_db: bytes
    spwd_db: bytes


@dataclass(frozen=True)
class PasswdEntry:
    """One master.passwd line as __pw_scan(_PWSCAN_MASTER) understands it."""

    name: bytes
    passwd: bytes
    uid: int
    gid: int
    pw_class: bytes
    change: int
    expire: int
    gecos: bytes
    dir: bytes
    shell: bytes
    fields: int

    def record(self, passwd: bytes) -> bytes:
        """The version-4 record: strings NUL-terminated, numbers u32 big-endian."""
        return b"".join((
            self.name, b"\0", passwd, b"\0", _u32(self.uid), _u32(self.gid), _u32(self.change),
            self.pw_class, b"\0", self.gecos, b"\0", self.dir, b"\0", self.shell, b"\0",
            _u32(self.expire), _u32(self.fields)))

    def v7_line(self) -> bytes:
        """The /etc/passwd line pwd_mkdb -p writes: no password, no class or dates."""
        uid = b"%d" % self.uid if self.fields & PWF_UID else b""
        gid = b"%d" % self.gid if self.fields & PWF_GID else b""
        return b":".join((self.name, b"*", uid, gid, self.gecos, self.dir, self.shell)) + b"\n"


def c_strtoul(text: bytes, base: int) -> tuple[int, int, bool]:
    """C strtoul(3): (value, index where parsing stopped, overflowed).

    Kept bug-for-bug: leading white space and a sign are accepted, a negative
    number wraps around, and no digits at all means 0 with the end at index 0.
    """
    i = 0
    while i < len(text) and text[i] in _SPACE:
        i += 1
    negative = i < len(text) and text[i] == ord("-")
    if i < len(text) and text[i] in b"+-":
        i += 1
    hex_prefix = text[i:i + 2] in (b"0x", b"0X") and text[i + 2:i + 3] != b"" and (
        text[i + 2] in b"0123456789abcdefABCDEF")
    if base in (0, 16) and hex_prefix:
        base, i = 16, i + 2
    elif base == 0:
        base = 8 if text[i:i + 1] == b"0" else 10
    start, value = i, 0
    while i < len(text):
        char = chr(text[i])
        digit = int(char, 36) if char.isascii() and char.isalnum() else 99
        if digit >= base:
            break
        value = value * base + digit
        i += 1
    if i == start:
        return 0, 0, False
    if value > ULONG_MAX:
        return ULONG_MAX, i, True
    return ((-value) & ULONG_MAX if negative else value), i, False


def c_atol(text: bytes) -> int:
    """C atol(3) on an LP64 host: strtol base 10, clamped to the long range."""
    i = 0
    while i < len(text) and text[i] in _SPACE:
        i += 1
    sign = -1 if text[i:i + 1] == b"-" else 1
    if text[i:i + 1] in (b"+", b"-"):
        i += 1
    j = i
    while j < len(text) and 48 <= text[j] <= 57:
        j += 1
    value = sign * int(text[i:j] or b"0")
    return max(-LONG_MAX - 1, min(LONG_MAX, value))


def _scan_id(text: bytes, name: bytes, what: str, maximum: int) -> tuple[int, bool]:
    """pw_scan's uid/gid checks: (value, present); raises ValueError with its message."""
    if not text and name[:1] not in (b"+", b"-"):
        raise ValueError(f"no {what} for user {name.decode(errors='backslashreplace')}")
    value, end, overflow = c_strtoul(text, 10)
    shown = text.decode(errors="backslashreplace")
    if overflow or value > maximum:
        raise ValueError(f"{shown} > max {what} value ({maximum})")
    if end != len(text):
        raise ValueError(f"{shown} {what} is incorrect")
    return value, bool(text)


def scan_entry(line: bytes) -> PasswdEntry:
    """__pw_scan(line, _PWSCAN_MASTER): exactly ten colon-separated fields."""
    parts = line.split(b":")
    if len(parts) != 10:
        raise ValueError(f"corrupted entry: {len(parts)} colon-separated fields, expected 10")
    name, passwd, uid_s, gid_s, pw_class, change_s, expire_s, gecos, home, shell = parts
    fields = PWF_NAME if name and (name[:1] != b"+" or name == b"+") else 0
    fields |= PWF_PASSWD if passwd else 0
    uid, has_uid = _scan_id(uid_s, name, "uid", UID_MAX)
    if name == b"root" and uid:
        raise ValueError("root uid should be 0")
    gid, has_gid = _scan_id(gid_s, name, "gid", GID_MAX)
    fields |= (PWF_UID if has_uid else 0) | (PWF_GID if has_gid else 0)
    for value, bit in ((pw_class, PWF_CLASS), (change_s, PWF_CHANGE), (expire_s, PWF_EXPIRE),
                       (gecos, PWF_GECOS), (home, PWF_DIR), (shell, PWF_SHELL)):
        fields |= bit if value else 0
    return PasswdEntry(name, passwd, uid, gid, pw_class, c_atol(change_s), c_atol(expire_s),
                       gecos, home, shell, fields)


def read_master_passwd(master_passwd: bytes) -> list[PasswdEntry]:
    """pwd_mkdb's scan(): every entry in file order; comments and blank lines dropped."""
    return [line for line in scan_lines(master_passwd) if isinstance(line, PasswdEntry)]


def scan_lines(master_passwd: bytes) -> list[PasswdEntry | bytes]:
    """Every line as scan() sees it: an entry, or a comment/blank line (its text, up to a NUL)."""
    entries: list[PasswdEntry | bytes] = []
    lines = master_passwd.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for lineno, line in enumerate(lines, 1):
        if len(line) >= LINE_MAX - 1:
            raise StepError(f"master.passwd: line {lineno}: too long ({len(line)} bytes, "
                            f"at most {LINE_MAX - 2})")
        line = line.split(b"\0", 1)[0]  # C reads the line as a string
        stripped = line.lstrip(b" \t")
        if not stripped or stripped.startswith(b"#"):
            entries.append(line)
            continue
        try:
            entries.append(scan_entry(line))
        except ValueError as exc:
            raise StepError(f"master.passwd: line {lineno}: {exc}") from None
    return entries


def pwd_puts(entries: list[PasswdEntry], secure: bool) -> list[tuple[bytes, bytes]]:
    """Every put pwd_mkdb makes into spwd.db (secure) or pwd.db, in order.

    The records differ only in the password ("*" in pwd.db); pwd_mkdb issues the
    same keys in the same order to both files, all R_NOOVERWRITE but VERSION
    (a plain put, the same thing on a new file): a duplicate name or uid keeps
    the first entry, which is how toor loses uid 0 to root.
    """
    puts = [(VERSION_KEY, bytes([CURRENT_VERSION]))]
    yp_count = 0
    for count, entry in enumerate(entries, 1):
        record = entry.record(entry.passwd if secure else b"*")
        puts += [(KEY_BYNAME + entry.name, record),
                 (KEY_BYNUM + _u32(count), record),
                 (KEY_BYUID + _u32(entry.uid), record)]
        if entry.name[:1] in (b"+", b"-"):
            yp_count += 1
            puts.append((KEY_YPBYNUM + _u32(yp_count), record))
    if yp_count:
        puts.append((KEY_YPENABLED, b"\x03"))
    return puts


def pwd_mkdb(master_passwd: bytes, *, copy_comments: bool = False) -> PwdDatabases:
    """Build /etc/passwd, pwd.db (passwords starred) and spwd.db from master.passwd.

    *copy_comments*: the 14.x pwd_mkdb.c copies comment and blank lines into
    /etc/passwd (`if (is_comment && makeold)`); the 15.x one does not.
    """
    lines = scan_lines(master_passwd)
    entries = [line for line in lines if isinstance(line, PasswdEntry)]
    files = []
    for secure in (False, True):
        db = HashWriter(*PWD_HASHINFO)
        for key, data in pwd_puts(entries, secure):
            db.put(key, data)
        files.append(db.getvalue())
    passwd = b"".join(line.v7_line() if isinstance(line, PasswdEntry) else line + b"\n"
                      for line in lines if isinstance(line, PasswdEntry) or copy_comments)
    return PwdDatabases(passwd=passwd, pwd_db=files[0], spwd_db=files[1])

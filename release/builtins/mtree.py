"""Directory skeletons from FreeBSD's mtree specifications (etc/mtree/BSD.*.dist).

FreeBSD creates an image's directory tree with `mtree -deU -f SPEC -p ROOT/MOUNT`:
only the directories of the spec (-d), missing ones created (-U) with the
owner, group and mode the spec gives, extra files on disk ignored (-e).  This
module reads the same specs and describes those directories as Entry values,
so the skeleton is identical whichever host builds the layer.

The spec grammar follows mtree(5) as FreeBSD's (NetBSD-derived) mtree reads it:
`#` comments, backslash line continuations, `/set` and `/unset` defaults, one
entry per line with keyword=value pairs, and `..` to climb back out of a
directory.  Anything this module does not understand is a StepError naming the
spec and line: a skeleton that silently loses directories or modes would only
show up as a broken jail much later.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from ..errors import StepError
from .entries import Entry, image_path, merge

# Where each spec is mounted: FreeBSD's etc/Makefile `distrib-dirs` table (MTREES),
# Makefile.inc1 for the lib32 compat tree, and release/tools/oci-image-static.conf
# (which applies root, var, usr, include and debug in that order).  BSD.debug.dist
# starts with a `debug` directory, hence /usr/lib and not /usr/lib/debug; likewise
# BSD.lib32.dist starts with `lib32`.
MTREE_PREFIXES: dict[str, str] = {
    "BSD.root.dist": "/",
    "BSD.var.dist": "/var",
    "BSD.usr.dist": "/usr",
    "BSD.include.dist": "/usr/include",
    "BSD.debug.dist": "/usr/lib",
    "BSD.lib32.dist": "/usr",
    "BSD.tests.dist": "/usr/tests",
    "BSD.sendmail.dist": "/",
}

# The specs the static flavour applies, in FreeBSD's order (oci-image-static.conf).
STATIC_SPECS: tuple[str, ...] = (
    "BSD.root.dist", "BSD.var.dist", "BSD.usr.dist", "BSD.include.dist", "BSD.debug.dist",
)

# mtree(5) keywords.  Only type, uname/uid, gname/gid, mode and optional change
# what `mtree -deU` creates; the rest describe files or only matter when
# verifying an existing tree, so they are accepted and ignored.
_VALUED = frozenset({
    "cksum", "device", "flags", "gid", "gname", "inode", "link", "md5", "md5digest",
    "mode", "nlink", "resdevice", "ripemd160digest", "rmd160", "rmd160digest", "sha1",
    "sha1digest", "sha256", "sha256digest", "sha384", "sha384digest", "sha512",
    "sha512digest", "size", "tags", "time", "type", "uid", "uname", "contents",
})
_BARE = frozenset({"ignore", "nochange", "optional"})
_TYPES = frozenset({"block", "char", "dir", "fifo", "file", "link", "socket"})
# Directories mtree creates without a mode= get mkdir(2)'s 0777 less umask 022.
_DEFAULT_DIR_MODE = 0o755
_C_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "a": "\a", "v": "\v",
              "f": "\f", "s": " ", "E": "\033", "\\": "\\", "#": "#", " ": " "}
_OCTAL = re.compile(r"[0-7]{1,3}")


@dataclass
class _Dir:
    path: str
    skipped: bool   # an `optional` directory mtree -U does not create, nor its subtree


def mtree_dirs(spec: bytes, prefix: str, spec_name: str) -> list[Entry]:
    """The directories *spec* describes, mounted at *prefix*, in spec order.

    The spec's root `.` is included as the entry for *prefix* itself, since
    `mtree -U` also sets its owner and mode.  Entries of other types are
    skipped, as `mtree -d` does.
    """
    try:
        text = spec.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StepError(f"{spec_name}: not UTF-8 text (byte {exc.start})") from None
    prefix = image_path(prefix)
    defaults: dict[str, str | None] = {}
    stack: list[_Dir] = []
    seen_root = False
    out: list[Entry] = []
    for lineno, words in _logical_lines(text, spec_name):
        where = f"{spec_name}: line {lineno}"
        first = words[0]
        if first in ("/set", "/unset"):
            _apply_set(defaults, first, words[1:], where)
            continue
        if first.startswith("/"):
            raise StepError(f"{where}: unknown special command {first!r}")
        if first == "..":
            if len(words) > 1:
                raise StepError(f"{where}: '..' takes no keywords")
            if not stack:
                raise StepError(f"{where}: '..' climbs above the spec's root")
            stack.pop()
            continue
        keys = dict(defaults)
        keys.update(_keywords(words[1:], where))
        name = _unvis(first, where)
        if not seen_root:
            if name != ".":
                raise StepError(f"{where}: the first entry must be '.', not {first!r}")
            seen_root = True
            path, parent_skipped = prefix, False
        else:
            if not stack:
                raise StepError(f"{where}: entry {first!r} lies outside the spec's root")
            if name in (".", "..", "") or "/" in name:
                raise StepError(f"{where}: bad file name {first!r}")
            path, parent_skipped = _join(stack[-1].path, name), stack[-1].skipped
        kind = keys.get("type")
        if kind is None:
            raise StepError(f"{where}: {first!r} has no type= keyword")
        if kind not in _TYPES:
            raise StepError(f"{where}: {first!r} has unknown type {kind!r}")
        if kind != "dir":
            continue
        skipped = parent_skipped or "optional" in keys
        stack.append(_Dir(path, skipped))
        if not skipped:
            out.append(_dir_entry(path, keys, first, where))
    if not seen_root:
        raise StepError(f"{spec_name}: no entries")
    return out


def skeleton(specs: Mapping[str, bytes], names: tuple[str, ...] = STATIC_SPECS) -> list[Entry]:
    """Apply the specs *names* from *specs* (name -> bytes) in order, at their MTREE_PREFIXES.

    Mount points described by two specs (/usr by BSD.root.dist and BSD.usr.dist)
    appear once, with the later spec's attributes, as successive `mtree -U` runs
    leave them.
    """
    groups = []
    for name in names:
        if name not in specs:
            raise StepError(f"{name}: mtree spec not provided")
        if name not in MTREE_PREFIXES:
            raise StepError(f"{name}: no known mount point for this mtree spec")
        groups.append(mtree_dirs(specs[name], MTREE_PREFIXES[name], name))
    return merge(*groups)


def _logical_lines(text: str, spec_name: str) -> Iterator[tuple[int, list[str]]]:
    """(first line number, words) of each non-empty line, comments and continuations resolved."""
    pending: list[str] = []
    start = 0
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for lineno, raw in enumerate(lines, 1):
        line = _strip_comment(raw.rstrip("\r"))
        if not pending:
            start = lineno
        if _continues(line):
            pending.append(line[:-1])
            continue
        pending.append(line)
        words = " ".join(pending).split()
        pending = []
        if words:
            yield start, words
    if pending:
        raise StepError(f"{spec_name}: line {start}: continuation at end of file")


def _strip_comment(line: str) -> str:
    """*line* up to an unescaped '#' (escaped ones stay, for _unvis to decode)."""
    i = 0
    while i < len(line):
        if line[i] == "\\":
            i += 2
            continue
        if line[i] == "#":
            return line[:i]
        i += 1
    return line


def _continues(line: str) -> bool:
    """True when *line* ends in an unescaped backslash."""
    trailing = len(line) - len(line.rstrip("\\"))
    return trailing % 2 == 1


def _keywords(words: list[str], where: str) -> dict[str, str | None]:
    keys: dict[str, str | None] = {}
    for word in words:
        key, eq, value = word.partition("=")
        if key in _BARE and not eq:
            keys[key] = None
        elif key in _VALUED and eq:
            if value == "":
                raise StepError(f"{where}: keyword {key!r} has an empty value")
            keys[key] = value
        elif key in _VALUED or key in _BARE:
            raise StepError(f"{where}: malformed keyword {word!r}")
        else:
            raise StepError(f"{where}: unknown keyword {key!r}")
    return keys


def _apply_set(defaults: dict[str, str | None], command: str, words: list[str], where: str) -> None:
    if command == "/set":
        defaults.update(_keywords(words, where))
        return
    for word in words:
        if word == "all":
            defaults.clear()
        elif word in _VALUED or word in _BARE:
            defaults.pop(word, None)
        else:
            raise StepError(f"{where}: /unset of unknown keyword {word!r}")


def _dir_entry(path: str, keys: dict[str, str | None], name: str, where: str) -> Entry:
    uname = keys.get("uname") or _numeric_owner(keys.get("uid"), "root", "uid", name, where)
    gname = keys.get("gname") or _numeric_owner(keys.get("gid"), "wheel", "gid", name, where)
    mode = _DEFAULT_DIR_MODE
    if (octal := keys.get("mode")) is not None:
        if not re.fullmatch(r"[0-7]+", octal):
            raise StepError(f"{where}: {name!r} has a mode that is not octal: {octal!r}")
        mode = int(octal, 8)
        if mode > 0o7777:
            raise StepError(f"{where}: {name!r} has an out-of-range mode {octal!r}")
    return Entry(path, "dir", mode, uname, gname)


def _numeric_owner(value: str | None, zero_name: str, key: str, name: str, where: str) -> str:
    """A name for a numeric uid/gid: only 0 can be named without the image's passwd/group."""
    if value is None:
        raise StepError(f"{where}: {name!r} has no {'uname' if key == 'uid' else 'gname'}= or {key}=")
    if value.strip() == "0":
        return zero_name
    raise StepError(f"{where}: {name!r} has numeric {key}={value}; give a name instead")


def _unvis(word: str, where: str) -> str:
    """Decode vis(3) escapes (\\040, \\s, \\t, ...) as mtree writes them in file names."""
    if "\\" not in word:
        return word
    out: list[str] = []
    i = 0
    while i < len(word):
        ch = word[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        m = _OCTAL.match(word, i + 1)
        if m:
            out.append(chr(int(m.group(), 8)))
            i = m.end()
        elif i + 1 < len(word) and word[i + 1] in _C_ESCAPES:
            out.append(_C_ESCAPES[word[i + 1]])
            i += 2
        else:
            raise StepError(f"{where}: bad escape in file name {word!r}")
    return "".join(out)


def _join(parent: str, name: str) -> str:
    return parent.rstrip("/") + "/" + name

"""Descriptions of image entries, shared by the built-in steps and the layer writer.

A built-in step (mtree skeleton, certctl rehash, repository config) does not
touch the build host: it returns the paths it would have created on a FreeBSD
builder as Entry values, and the layer writer turns them into tar members.
Keeping them as plain values makes each step a pure function of its inputs,
which is what lets two builders produce the same layer bytes.
"""
from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass

KINDS = ("file", "dir", "symlink", "hardlink")


@dataclass(frozen=True)
class Entry:
    """One path in an image layer."""

    path: str           # absolute, normalised: "/etc/ssl/certs/abcd1234.0"
    kind: str           # "file" | "dir" | "symlink" | "hardlink"
    mode: int           # permission bits incl. setuid/sticky (0o1777), no type bits
    uname: str = "root"
    gname: str = "wheel"
    data: bytes = b""   # file contents (small generated files only)
    target: str = ""    # symlink target or hardlink source path
    mtime: int | None = None   # None: the layer writer uses SOURCE_DATE_EPOCH

    def __post_init__(self) -> None:
        # Catch programming errors where they are made, not in the tar writer.
        if self.kind not in KINDS:
            raise ValueError(f"{self.path}: unknown entry kind {self.kind!r}")
        if self.path != image_path(self.path):
            raise ValueError(f"{self.path}: entry path is not absolute and normalised")
        if not 0 <= self.mode <= 0o7777:
            raise ValueError(f"{self.path}: mode {self.mode:#o} has type bits or is negative")
        if self.kind in ("symlink", "hardlink") and not self.target:
            raise ValueError(f"{self.path}: {self.kind} without a target")


def image_path(path: str) -> str:
    """*path* as an absolute, normalised path inside the image ("" and "." mean "/")."""
    norm = posixpath.normpath("/" + path.lstrip("/"))
    # normpath keeps a leading "//" (POSIX allows it to be special); the image does not.
    return "/" + norm.lstrip("/")


def implied_dirs(entries: Iterable[Entry], *, mode: int = 0o755) -> list[Entry]:
    """Parent directories that *entries* need but do not describe, as `mkdir -p` makes them.

    FreeBSD's recipes create parents with `mkdir -p` (root:wheel, 0755 under the
    default umask); a tar without them would leave the parents' owner and mode to
    whoever extracts the layer.  Returned parents-first, sorted, without "/".
    """
    entries = list(entries)
    known = {e.path for e in entries}
    missing: set[str] = set()
    for e in entries:
        parent = posixpath.dirname(e.path)
        while parent != "/" and parent not in known and parent not in missing:
            missing.add(parent)
            parent = posixpath.dirname(parent)
    return [Entry(p, "dir", mode) for p in sorted(missing)]


def merge(*groups: Iterable[Entry]) -> list[Entry]:
    """Entries of all *groups*; a later entry for the same path replaces an earlier one.

    This is how successive steps act on one tree (`mtree -U` run for BSD.root.dist
    and then for BSD.usr.dist both set /usr).  Each path keeps the position of its
    first appearance, so parents still precede their children.
    """
    merged: dict[str, Entry] = {}
    for group in groups:
        for entry in group:
            merged[entry.path] = entry
    return list(merged.values())

"""The content of one layer while it is assembled, without a host directory.

A LayerTree records, per image path, what the layer will contain: metadata, and
for files where the bytes are (inline for small generated files, or a range of a
spool file the package contents were streamed into once).  Nothing is extracted:
owners, modes and symlinks are just values, so no host permission, user
database or symlink can influence — or be attacked through — the result.

The tree also knows what the layers below it contain, as far as a layer needs:
the ParentView is the cumulative record of directories, symlinks, every other
non-directory's path and owner, and the content of a few "watched" files
(accounts, services, certificates) that install steps read.  Children depend on
that record, not on their parents' whole content, so a new package version in a
parent does not force a rebuild of its children's layers.

One invariant makes a layer safe to extract anywhere (umoci, podman, Python's
tarfile): in the merged view of the layer over the layers below, no entry lies
beneath a non-directory.  A symlink with entries under it would make an
extractor write through the link (``/a -> /etc`` then ``/a/master.passwd``);
a file with entries under it cannot be extracted at all.  check_structure()
verifies it on the finished tree, so it holds whatever the order of members,
packages and layers; the refusal names both culprits.
"""
from __future__ import annotations

import base64
import hashlib
import io
import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

from .builtins.entries import Entry
from .errors import LayerError
from .fsutil import Readable, pretty_json, write_if_changed

# Files whose content children may need (install steps read them).
WATCHED_FILES = ("/etc/master.passwd", "/etc/group", "/etc/services", "/etc/login.conf")
WATCHED_TREES = ("/usr/share/certs/", "/etc/ssl/")
CHUNK = 1 << 20
VIEW_FORMAT = 2             # 2: views record every non-directory below (the layer invariant); part of layer identities


def watched(path: str) -> bool:
    return path in WATCHED_FILES or path.startswith(WATCHED_TREES)


@dataclass
class Item:
    """One path of the layer: an Entry (data empty for spooled files) plus provenance."""
    entry: Entry
    owner: str                      # package name, or the step that made it
    package: bool                   # owned by a package (conflict rules apply)
    spool: tuple[int, int] | None = None    # (offset, size) in the spool file
    # the content's digest (files; links: sha256 of the target), for conflict checks and the package
    # index: sha256 hex, or in a tree with package_sums the package's own verified "2$..." BLAKE2b sum
    digest: str = ""

    @property
    def size(self) -> int:
        return self.spool[1] if self.spool else len(self.entry.data)


@dataclass
class ParentView:
    """What the layers below contain, as far as this layer needs to know."""
    dirs: dict[str, list[int | str | None]] = field(default_factory=dict)   # path -> [mode, uname, gname, mtime]
    symlinks: dict[str, str] = field(default_factory=dict)                  # path -> target
    files: dict[str, bytes] = field(default_factory=dict)                   # watched files -> content
    nondirs: dict[str, list[str]] = field(default_factory=dict)             # every non-directory -> [kind, owner]

    @classmethod
    def from_json(cls, doc: dict[str, Any] | None) -> ParentView:
        if not doc:
            return cls()
        return cls(dirs=dict(doc["dirs"]), symlinks=dict(doc["symlinks"]),
                   files={p: base64.b64decode(v) for p, v in doc["files"].items()},
                   nondirs=dict(doc.get("nondirs", {})))

    def to_json(self) -> dict[str, Any]:
        return {"dirs": dict(sorted(self.dirs.items())), "symlinks": dict(sorted(self.symlinks.items())),
                "files": {p: base64.b64encode(v).decode() for p, v in sorted(self.files.items())},
                "nondirs": dict(sorted(self.nondirs.items()))}

    def dir_entry(self, path: str) -> Entry:
        """The directory *path* of the layers below, as recorded ([mode, uname, gname, mtime])."""
        mode, uname, gname, mtime = self.dirs[path]
        assert isinstance(mode, int) and isinstance(uname, str) and isinstance(gname, str) \
            and not isinstance(mtime, str), f"view record of {path}: {self.dirs[path]!r}"
        return Entry(path, "dir", mode, uname, gname, mtime=mtime)

    def exists(self, path: str) -> bool:
        return path in self.dirs or path in self.symlinks or path in self.files or path in self.nondirs

    def entries(self) -> dict[str, tuple[str, str, str]]:
        """Every path recorded below: path -> (kind, owner, symlink target)."""
        out = {p: ("dir", "", "") for p in self.dirs}
        out.update({p: (kind, owner, self.symlinks.get(p, "")) for p, (kind, owner) in self.nondirs.items()})
        out.update({p: ("symlink", out.get(p, ("", "", ""))[1], t) for p, t in self.symlinks.items()})
        out.update({p: ("file", "", "") for p in self.files if p not in out})
        return out

    @classmethod
    def load(cls, path: Path) -> ParentView:
        """view.json, the record a layer stage leaves for the layers above it."""
        from .records import load_json
        return cls.from_json(load_json(path, "the layer stage"))

    def save(self, path: Path) -> bool:
        return write_if_changed(path, pretty_json(self.to_json()))


class LayerTree:
    """Paths of one layer under construction, over a ParentView."""

    def __init__(self, parent: ParentView, spool: BinaryIO, *, package_sums: bool = False) -> None:
        """*package_sums*: a package file keeps the sum its package verified it with as its digest,
        instead of being hashed a second time with SHA-256 (see add_stream)."""
        self.parent = parent
        self.package_sums = package_sums
        self.items: dict[str, Item] = {}
        self.removed: set[str] = set()          # whiteouts: paths hidden from the layers below
        self._spool = spool

    # -- adding -------------------------------------------------------------
    def add_stream(self, entry: Entry, owner: str, stream: BinaryIO,
                   digest: Callable[[], str] | None = None) -> None:
        """A package file: its bytes go to the spool once, hashed on the way.

        *digest*, when the stream computes the file's digest itself (a package
        verifying a sha256 sum; with package_sums, any sum it verifies), gives
        it once the stream is read.  Digests are compared between packages of
        one architecture's repository, which share one sum algorithm; two
        packages with one path differ to pkg whatever the content
        (pkg_jobs_conflicts.c: any common path is a conflict), so digests of
        different algorithms never hide a conflict pkg would accept.  A layer
        that may be shared across architectures keeps SHA-256 throughout
        (release.layershare compares content across repositories).
        """
        offset = self._spool.seek(0, io.SEEK_END)
        h = hashlib.sha256() if digest is None else None
        size = 0
        while chunk := stream.read(CHUNK):
            if h is not None:
                h.update(chunk)
            self._spool.write(chunk)
            size += len(chunk)
        sum_ = h.hexdigest() if h is not None else digest()     # type: ignore[misc]
        self._claim(Item(entry, owner, True, spool=(offset, size), digest=sum_))

    def add_package_entry(self, entry: Entry, owner: str) -> None:
        """A package directory, symlink or hardlink."""
        self._claim(Item(entry, owner, True, digest=_link_sum(entry)))

    def put(self, entry: Entry, owner: str) -> None:
        """A generated entry: replaces whatever this layer had at the path (steps run in order)."""
        sha = hashlib.sha256(entry.data).hexdigest() if entry.kind == "file" else _link_sum(entry)
        self._check_parents(entry.path, owner)
        self.items[entry.path] = Item(entry, owner, False, digest=sha)
        self.removed.discard(entry.path)

    def remove(self, path: str, owner: str) -> None:
        """rm -rf *path*: gone from this layer, and hidden (whiteout) if a lower layer has it."""
        for p in [p for p in self.items if p == path or p.startswith(path + "/")]:
            del self.items[p]
        self.removed.add(path)

    def chmod(self, path: str, mode: int, owner: str) -> None:
        item = self.items.get(path)
        if item is not None:
            item.entry = replace(item.entry, mode=mode)
            return
        if path in self.parent.dirs:
            self.put(replace(self.parent.dir_entry(path), mode=mode), owner)
            return
        raise LayerError(f"{owner}: chmod {mode:o} {path}: no such file or directory in the image")

    def _claim(self, item: Item) -> None:
        """Package entries: two packages may share a path only if they agree on it exactly."""
        path = item.entry.path
        self._check_parents(path, item.owner)
        have = self.items.get(path)
        if have is not None and have.package and _describe(have) != _describe(item):
            raise LayerError(f"{path}: claimed differently by {have.owner} ({_summary(have)}) "
                             f"and {item.owner} ({_summary(item)})")
        if item.entry.kind != "dir" and path in self.parent.dirs:
            raise LayerError(f"{item.owner}: {path}: is a directory in the layers below, not a {item.entry.kind}")
        if have is None or not have.package or item.entry.kind != "dir":
            self.items[path] = item
        self.removed.discard(path)

    def _check_parents(self, path: str, owner: str) -> None:
        """No ancestor of *path* may be a non-directory: tar would write through a symlink, out of place.

        The early, incremental half of the invariant (check_structure is the whole of it).
        """
        parent = posixpath.dirname(path)
        while parent != "/":
            item = self.items.get(parent)
            if item is not None and item.entry.kind != "dir":
                raise _beneath(owner, path, parent, item.entry.kind, item.owner, item.entry.target)
            if item is None and (parent in self.parent.symlinks or parent in self.parent.nondirs) and \
                    parent not in self.parent.dirs and not self._hidden(parent):
                raise _beneath(owner, path, parent, *self.parent.entries()[parent], lower=True)
            parent = posixpath.dirname(parent)

    def _hidden(self, path: str) -> bool:
        """Removed by this layer: *path* or one of its ancestors has a whiteout."""
        while path != "/":
            if path in self.removed:
                return True
            path = posixpath.dirname(path)
        return False

    def check_structure(self) -> None:
        """The layer's invariant: nothing beneath a non-directory in the merged view.

        Checked over the finished tree (this layer's entries over what the
        layers below still show), so no order of members, packages, steps or
        layers can slip past it; the error names the entry and the
        non-directory above it, with their owners.
        """
        merged = {p: (*e, True) for p, e in self.parent.entries().items() if not self._hidden(p)}
        merged.update({p: (i.entry.kind, i.owner, i.entry.target, False) for p, i in self.items.items()})
        for path in entries_sorted(merged):
            parent = posixpath.dirname(path)
            while parent != "/":
                above = merged.get(parent)
                if above is not None and above[0] != "dir":
                    _, owner, _, lower = merged[path]
                    raise _beneath(owner or "a lower layer", path, parent, *above[:3], lower=above[3],
                                   child_lower=lower)
                parent = posixpath.dirname(parent)

    # -- reading --------------------------------------------------------------
    def read(self, path: str) -> bytes | None:
        """Current content of an image file: this layer first, then the watched files below."""
        item = self.items.get(path)
        if item is not None:
            if item.entry.kind == "hardlink":
                return self.read(item.entry.target)
            if item.entry.kind != "file":
                return None
            return self.data(item)
        if path in self.removed or any(path.startswith(r + "/") for r in self.removed):
            return None
        return self.parent.files.get(path)

    def data(self, item: Item) -> bytes:
        if item.spool is None:
            return item.entry.data
        offset, size = item.spool
        self._spool.seek(offset)
        return self._spool.read(size)

    def open(self, item: Item) -> Readable:
        """A stream of an item's bytes (spooled content is not loaded into memory)."""
        if item.spool is None:
            return io.BytesIO(item.entry.data)
        return _Window(self._spool, *item.spool)

    def listdir(self, directory: str) -> dict[str, bytes]:
        """Regular files directly in *directory* (this layer over the watched files below)."""
        prefix = directory.rstrip("/") + "/"
        names: dict[str, bytes] = {}
        for path, content in self.parent.files.items():
            if path.startswith(prefix) and "/" not in path[len(prefix):]:
                names[path[len(prefix):]] = content
        for path, item in self.items.items():
            if path.startswith(prefix) and "/" not in path[len(prefix):] and item.entry.kind == "file":
                names[path[len(prefix):]] = self.data(item)
        for path in self.removed:
            if path.startswith(prefix):
                names.pop(path[len(prefix):], None)
        return dict(sorted(names.items()))

    def lower_paths_under(self, directory: str) -> list[str]:
        prefix = directory.rstrip("/") + "/"
        return sorted(p for p in (*self.parent.symlinks, *self.parent.files, *self.parent.dirs)
                      if p.startswith(prefix))

    # -- results --------------------------------------------------------------
    def child_view(self) -> ParentView:
        """The view this layer hands to its children: the parent's, with this layer applied."""
        view = ParentView(dict(self.parent.dirs), dict(self.parent.symlinks), dict(self.parent.files),
                          dict(self.parent.nondirs))
        tables = (view.dirs, view.symlinks, view.files, view.nondirs)
        for gone in self.removed:
            for table in tables:
                for p in [p for p in table if p == gone or p.startswith(gone + "/")]:
                    del table[p]
        for path, item in self.items.items():
            e = item.entry
            for table in tables:
                table.pop(path, None)
            if e.kind == "dir":
                view.dirs[path] = [e.mode, e.uname, e.gname, e.mtime]
                continue
            view.nondirs[path] = [e.kind, item.owner]
            if e.kind == "symlink":
                view.symlinks[path] = e.target
            elif watched(path):
                view.files[path] = self.read(path) or b""
        return view

    def package_index(self) -> dict[str, list[str]]:
        """Package-owned non-directories: path -> [kind, digest, package] (cross-layer checks)."""
        return {p: [i.entry.kind, i.digest, i.owner] for p, i in sorted(self.items.items())
                if i.package and i.entry.kind != "dir"}


def _beneath(owner: str, path: str, parent: str, kind: str, parent_owner: str, target: str, *,
             lower: bool = False, child_lower: bool = False) -> LayerError:
    """The one refusal of the layer invariant, naming the entry and the non-directory above it."""
    where = " in a lower layer" if lower else ""
    what = f"{owner}: {path}" + (" (in a lower layer)" if child_lower else "")
    details = ", ".join(x for x in (f"to {target}" if kind == "symlink" else "",
                                    f"from {parent_owner}" if parent_owner else "") if x)
    details = f" ({details})" if details else ""
    if kind == "symlink":
        return LayerError(f"{what}: parent {parent} is a symlink{where}{details}; refusing to write through it")
    return LayerError(f"{what}: parent {parent} is a {kind}{where}{details}, not a directory")


def _link_sum(entry: Entry) -> str:
    if entry.kind in ("symlink", "hardlink"):
        return hashlib.sha256(entry.target.encode()).hexdigest()
    return ""


def _describe(item: Item) -> tuple[str, int, str, str, str]:
    e = item.entry
    return (e.kind, e.mode, e.uname, e.gname, item.digest)


def _summary(item: Item) -> str:
    e = item.entry
    digest = item.digest if item.digest.startswith("2$") else f"sha256 {item.digest}"
    what = {"file": f"file {digest[:19]}", "dir": "directory",
            "symlink": f"symlink to {e.target}", "hardlink": f"hardlink to {e.target}"}[e.kind]
    return f"{what}, {e.uname}:{e.gname} {e.mode:04o}"


class _Window(io.RawIOBase):
    """Read-only view of [offset, offset+size) of a shared file (bounded memory)."""

    def __init__(self, f: BinaryIO, offset: int, size: int) -> None:
        self._f, self._pos, self._end = f, offset, offset + size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        left = self._end - self._pos
        if n < 0 or n > left:
            n = left
        if n <= 0:
            return b""
        self._f.seek(self._pos)
        data = self._f.read(n)
        self._pos += len(data)
        return data


def entries_sorted(paths: Iterable[str]) -> list[str]:
    """Tar order: by path bytes, which puts every directory before its contents."""
    return sorted(paths, key=lambda p: p.encode())

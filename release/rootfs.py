"""An image root on disk, for the few steps that must run the image's own programs.

Everything else in the pipeline works on values (tree.LayerTree) and never
extracts anything.  Package scripts and `run` steps under emulation are the
exception: a program needs a real directory tree.  materialise() lays one down
in a temporary directory of the work directory — the parent layers' blobs
(tar, tar+gzip, tar+zstd, whiteouts applied) and then the layer under
construction — and removes it again on every way out of the `with` block.

The layers are inputs we did not necessarily write, and the root is written
as root, so every path is created relative to a directory descriptor opened
component by component with O_NOFOLLOW: a symlink in the root is never
followed while writing, members naming ".." or absolute paths are refused,
as are device nodes and FIFOs (an image layer has no business carrying them).
Owners are the numeric ids of the tar headers; modes (set-id bits too) and
mtimes are preserved.

snapshot() records what the root holds (type, mode, owner, size, sha256,
link target per path) and diff() compares two snapshots; mtimes are left out
of both, so a command that only touches files changes nothing.  File hashes
known from the extraction are reused, and a file whose inode, size, mtime and
ctime are unchanged is not read again (ctime cannot be set by a program), so
a snapshot after a command reads only what the command wrote.
"""
from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal, overload

import zstandard

from .accounts import lookup, name_to_id
from .errors import LayerError
from .fsutil import TMP_PREFIX, Readable, disk_errors
from .tree import LayerTree, entries_sorted

CHUNK = 1 << 20
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class LayerBlob:
    """One parent layer: its blob file, media type and digest (for messages)."""
    path: Path
    media_type: str
    digest: str


@dataclass
class Root:
    """A materialised image root."""
    path: Path
    lower: frozenset[str] = frozenset()                   # image paths the parent layers provide
    hashes: dict[str, str] = field(default_factory=dict)  # image path -> sha256 of files written
    bytes_written: int = 0


@dataclass(frozen=True)
class Node:
    """What one path of a root is; `stamp` (inode, size, mtime, ctime) only decides re-hashing."""
    kind: str               # file | dir | symlink | other
    mode: int
    uid: int
    gid: int
    size: int
    sha256: str = ""
    target: str = ""
    stamp: tuple[int, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Changes:
    added: list[str]
    changed: list[str]
    deleted: list[str]


# --------------------------------------------------------------------------- safe writing

def _parts(name: str, where: str) -> list[str]:
    """Components of a member or image path; '..' and absolute member names are refused."""
    if "\0" in name:
        raise LayerError(f"{where}: NUL in path {name!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LayerError(f"{where}: path {name!r} escapes the root ('..')")
    return parts


class _Writer:
    """Writes into one root through directory descriptors, never following a symlink."""

    def __init__(self, root: Root) -> None:
        self.root = root
        self.top = os.open(root.path, _DIR_FLAGS)
        self._cache: tuple[tuple[str, ...], int] | None = None

    def close(self) -> None:
        self._forget()
        os.close(self.top)

    def _forget(self) -> None:
        if self._cache is not None:
            os.close(self._cache[1])
            self._cache = None

    @overload
    def parent(self, parts: list[str], where: str, *, create: Literal[True] = True) -> int: ...

    @overload
    def parent(self, parts: list[str], where: str, *, create: bool) -> int | None: ...

    def parent(self, parts: list[str], where: str, *, create: bool = True) -> int | None:
        """Descriptor of the directory holding parts[-1] (owned by the writer's cache); None when it is
        missing and *create* is false."""
        key = tuple(parts[:-1])
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        fd = os.dup(self.top)
        try:
            for i, name in enumerate(key):
                try:
                    nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        os.close(fd)
                        return None
                    os.mkdir(name, 0o755, dir_fd=fd)
                    nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError as e:
                    if e.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                        raise
                    what = "a symlink" if _lkind(fd, name) == "symlink" else "not a directory"
                    raise LayerError(f"{where}: parent /{'/'.join(key[:i + 1])} is {what}; "
                                     "refusing to write through it") from None
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        self._forget()
        self._cache = (key, fd)
        return fd

    def remove(self, parts: list[str], where: str) -> None:
        """rm -rf of one path (missing is fine); never follows a symlink."""
        if not parts:
            raise LayerError(f"{where}: refusing to remove the root")
        dfd = self.parent(parts, where, create=False)
        if dfd is None:
            return
        self._remove_at(dfd, parts[-1])

    def _remove_at(self, dfd: int, name: str) -> None:
        kind = _lkind(dfd, name)
        if kind == "dir":
            shutil.rmtree(name, dir_fd=dfd)
            if self._cache is not None and self._cache[1] != dfd:
                self._forget()          # it may have been a directory inside the removed tree
        elif kind is not None:
            os.unlink(name, dir_fd=dfd)

    def clear_dir(self, parts: list[str], keep: set[str], where: str) -> None:
        """Opaque whiteout: everything in the directory except what this layer already wrote."""
        dfd = self.parent(parts + ["."], where, create=True)
        prefix = "/" + "/".join(parts)
        for name in sorted(os.listdir(dfd)):
            path = f"{prefix.rstrip('/')}/{name}"
            if path not in keep:
                self._remove_at(dfd, name)
                dfd = self.parent(parts + ["."], where, create=True)

    def directory(self, parts: list[str], mode: int, uid: int, gid: int, mtime: int, where: str) -> None:
        dfd = self.parent(parts, where)
        name = parts[-1]
        if _lkind(dfd, name) != "dir":
            self._remove_at(dfd, name)
            dfd = self.parent(parts, where)
            os.mkdir(name, 0o700, dir_fd=dfd)
        fd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            os.utime(fd, (mtime, mtime))
        finally:
            os.close(fd)

    def file(self, parts: list[str], mode: int, uid: int, gid: int, mtime: int, data: Readable,
             where: str) -> str:
        """A regular file streamed from *data*; returns its sha256."""
        dfd = self.parent(parts, where)
        self._remove_at(dfd, parts[-1])
        dfd = self.parent(parts, where)
        fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=dfd)
        h = hashlib.sha256()
        with os.fdopen(fd, "wb", closefd=True) as out:
            while chunk := data.read(CHUNK):
                h.update(chunk)
                out.write(chunk)
                self.root.bytes_written += len(chunk)
            out.flush()
            os.fchown(fd, uid, gid)          # before chmod: chown clears set-id bits
            os.fchmod(fd, mode)
            os.utime(fd, (mtime, mtime))
        return h.hexdigest()

    def symlink(self, parts: list[str], target: str, uid: int, gid: int, mtime: int, where: str) -> None:
        dfd = self.parent(parts, where)
        self._remove_at(dfd, parts[-1])
        dfd = self.parent(parts, where)
        os.symlink(target, parts[-1], dir_fd=dfd)
        os.chown(parts[-1], uid, gid, dir_fd=dfd, follow_symlinks=False)
        os.utime(parts[-1], (mtime, mtime), dir_fd=dfd, follow_symlinks=False)

    def hardlink(self, parts: list[str], source: list[str], where: str) -> None:
        sdfd = self.parent(source, where, create=False)
        if sdfd is None or _lkind(sdfd, source[-1]) not in ("file", "symlink"):
            raise LayerError(f"{where}: hardlink to /{'/'.join(source)}, which is not a file in the root")
        sfd = os.dup(sdfd)
        try:
            dfd = self.parent(parts, where)
            self._remove_at(dfd, parts[-1])
            dfd = self.parent(parts, where)
            os.link(source[-1], parts[-1], src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)
        finally:
            os.close(sfd)


def _lkind(dfd: int, name: str) -> str | None:
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return _kind(st.st_mode)


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


# --------------------------------------------------------------------------- layers

def _open_blob(f: BinaryIO, media_type: str) -> gzip.GzipFile | zstandard.ZstdDecompressionReader | BinaryIO:
    if media_type.endswith("+gzip"):
        return gzip.GzipFile(fileobj=f, mode="rb")
    if media_type.endswith("+zstd"):
        return zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
    if media_type.endswith(".tar") or media_type == "tar":
        return f
    raise LayerError(f"unsupported layer media type {media_type!r}")


def extract_layer(w: _Writer, blob: LayerBlob) -> None:
    """Apply one layer: its members, whiteouts and opaque whiteouts (streamed, bounded memory)."""
    label = f"layer {blob.digest}"
    written: set[str] = set()
    with open(blob.path, "rb") as raw, contextlib.closing(_open_blob(raw, blob.media_type)) as data:
        try:
            with tarfile.open(fileobj=data, mode="r|") as tar:
                for m in tar:
                    _apply_member(w, tar, m, label, written)
        except (tarfile.TarError, zstandard.ZstdError, gzip.BadGzipFile, EOFError) as e:
            raise LayerError(f"{label}: unreadable layer ({e})") from None


def _apply_member(w: _Writer, tar: tarfile.TarFile, m: tarfile.TarInfo, label: str, written: set[str]) -> None:
    if m.name.startswith("/"):
        raise LayerError(f"{label}: {m.name}: absolute member name refused")
    parts = _parts(m.name, f"{label}: {m.name}")
    if not parts:
        return                                  # the root itself keeps its own metadata
    where = f"{label}: {m.name}"
    base = parts[-1]
    path = "/" + "/".join(parts)
    if base == OPAQUE:
        w.clear_dir(parts[:-1], written, where)
        return
    if base.startswith(WHITEOUT):
        name = base[len(WHITEOUT):]
        if name in ("", ".", ".."):
            raise LayerError(f"{where}: malformed whiteout")
        w.remove(parts[:-1] + [name], where)
        return
    mode, mtime = stat.S_IMODE(m.mode), int(m.mtime)
    if m.isdir():
        w.directory(parts, mode, m.uid, m.gid, mtime, where)
    elif m.isreg():
        stream = tar.extractfile(m)
        assert stream is not None               # a regular file
        w.root.hashes[path] = w.file(parts, mode, m.uid, m.gid, mtime, stream, where)
    elif m.issym():
        w.symlink(parts, m.linkname, m.uid, m.gid, mtime, where)
    elif m.islnk():
        if m.linkname.startswith("/"):
            raise LayerError(f"{where}: hardlink to absolute path {m.linkname!r} refused")
        source = _parts(m.linkname, where)
        w.hardlink(parts, source, where)
        src = "/" + "/".join(source)
        if src in w.root.hashes:
            w.root.hashes[path] = w.root.hashes[src]
    else:
        kind = {tarfile.CHRTYPE: "character device", tarfile.BLKTYPE: "block device",
                tarfile.FIFOTYPE: "FIFO"}.get(m.type, f"member of type {m.type!r}")
        raise LayerError(f"{where}: {kind} refused (device nodes and FIFOs do not belong in a layer)")
    written.add(path)


# --------------------------------------------------------------------------- the layer under construction

def write_layer_into_root(w: _Writer, tree: LayerTree, sde: int) -> None:
    """This layer's removals, then its entries (hardlinks last, once their sources exist)."""
    users, groups = name_to_id(tree.read("/etc/master.passwd"), tree.read("/etc/group"))
    for path in sorted(tree.removed):
        w.remove(_parts(path, path), f"{path} (removed by this layer)")
    paths = entries_sorted(tree.items)
    for path in [p for p in paths if tree.items[p].entry.kind != "hardlink"] + \
                [p for p in paths if tree.items[p].entry.kind == "hardlink"]:
        item = tree.items[path]
        e = item.entry
        where = f"{item.owner}: {path}"
        parts = _parts(path, where)
        if not parts:
            continue
        uid, gid = lookup(users, e.uname, "user", where), lookup(groups, e.gname, "group", where)
        mtime = sde if e.mtime is None else e.mtime
        if e.kind == "dir":
            w.directory(parts, e.mode, uid, gid, mtime, where)
        elif e.kind == "file":
            w.root.hashes[path] = w.file(parts, e.mode, uid, gid, mtime, tree.open(item), where)
        elif e.kind == "symlink":
            w.symlink(parts, e.target, uid, gid, mtime, where)
        else:
            w.hardlink(parts, _parts(e.target, where), where)
            if e.target in w.root.hashes:
                w.root.hashes[path] = w.root.hashes[e.target]


@contextlib.contextmanager
def materialise(parent_dir: Path, lowers: Sequence[LayerBlob], tree: LayerTree | None = None, *,
                sde: int = 0) -> Iterator[Root]:
    """The image root in a fresh directory under *parent_dir*, removed on every exit path.

    The directory carries the work directory's partial-file prefix, so even a
    SIGKILLed build's root is swept by the next run.
    """
    with disk_errors(parent_dir):
        parent_dir.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + "root-", dir=parent_dir))
    try:
        os.chmod(path, 0o755)
        root = Root(path)
        w = _Writer(root)
        try:
            with disk_errors(f"{path} (the image root for running its programs)"):
                for blob in lowers:
                    extract_layer(w, blob)
                root.lower = frozenset(walk_paths(path))
                if tree is not None:
                    write_layer_into_root(w, tree, sde)
        finally:
            w.close()
        yield root
    finally:
        remove_root(path)


def remove_root(path: Path) -> None:
    """rm -rf that also copes with directories a command left without write permission."""
    def retry(func: Callable[[str], object], name: str, _exc: object) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(name), 0o700)
            func(name)
    if path.exists():
        shutil.rmtree(path, onerror=retry)


# --------------------------------------------------------------------------- snapshots

def walk_paths(top: Path) -> Iterator[str]:
    """Every image path below *top* (symlinks are not descended into)."""
    stack = [("", str(top))]
    while stack:
        image_dir, real = stack.pop()
        with os.scandir(real) as it:
            for entry in it:
                path = f"{image_dir}/{entry.name}"
                yield path
                if entry.is_dir(follow_symlinks=False):
                    stack.append((path, entry.path))


def snapshot(top: Path, *, hashes: dict[str, str] | None = None,
             known: dict[str, Node] | None = None) -> dict[str, Node]:
    """Image path -> Node for everything below *top*.

    A file's sha256 comes from *hashes* (what materialise wrote), else from
    *known* when its stamp is unchanged, else from reading it.
    """
    out: dict[str, Node] = {}
    for path in walk_paths(top):
        real = os.path.join(top, path.lstrip("/"))
        st = os.lstat(real)
        kind = _kind(st.st_mode)
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        sha, target = "", ""
        if kind == "file":
            old = (known or {}).get(path)
            if hashes is not None and path in hashes:
                sha = hashes[path]
            elif old is not None and old.kind == "file" and old.stamp == stamp:
                sha = old.sha256
            else:
                sha = _hash_file(real)
        elif kind == "symlink":
            target = os.readlink(real)
        out[path] = Node(kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                         st.st_size if kind == "file" else 0, sha, target, stamp)
    return out


def _hash_file(real: str) -> str:
    h = hashlib.sha256()
    fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def diff(before: dict[str, Node], after: dict[str, Node]) -> Changes:
    """Added, changed (type, mode, owner, content or target) and deleted paths, in tar order."""
    added = [p for p in after if p not in before]
    deleted = [p for p in before if p not in after]
    changed = [p for p in after if p in before and after[p] != before[p]]
    return Changes(entries_sorted(added), entries_sorted(changed), entries_sorted(deleted))


def open_in_root(top: Path, path: str) -> BinaryIO:
    """A regular file of the root for reading, refusing symlinks on the way."""
    parts = _parts(path, path)
    fd = os.open(top, _DIR_FLAGS)
    try:
        for name in parts[:-1]:
            nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nfd
        ffd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    finally:
        os.close(fd)
    return os.fdopen(ffd, "rb")


def read_in_root(top: Path, path: str) -> bytes | None:
    """Small files (accounts) of the root; None when absent or not a plain file."""
    try:
        with open_in_root(top, path) as f:
            return f.read()
    except OSError:
        return None

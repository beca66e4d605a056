"""Files that appear whole or not at all.

Every output of the pipeline is written under a temporary name in its final
directory and renamed into place once complete (and, for downloads, verified),
so a crash or a bad input never leaves a half-written file under a real name.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import json
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol

TMP_PREFIX = ".partial-"
# errors of the file system rather than of the program: named by path in one line (DiskError)
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


@contextlib.contextmanager
def disk_errors(path: str | os.PathLike[str]) -> Iterator[None]:
    """A full disk (or quota, read-only file system) while writing *path*: one line naming it."""
    from .errors import DiskError
    try:
        yield
    except OSError as e:
        if e.errno in DISK_ERRNOS:
            raise DiskError(f"{path}: cannot write: {e.strerror}") from None
        raise


class Readable(Protocol):
    """A byte stream the program only reads: files, BytesIO, a window of a spool file, a request body."""

    def read(self, size: int = -1, /) -> bytes: ...


def canonical_json(value: object) -> bytes:
    """The one JSON spelling used for identities and digests: sorted keys, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def pretty_json(value: object) -> bytes:
    """Human-readable, still deterministic JSON (locks, reports)."""
    return (json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def identity(value: object) -> str:
    """sha256 hex of the canonical JSON of *value*: a step's or layer's identity."""
    return hashlib.sha256(canonical_json(value)).hexdigest()


class _Unchanged(Exception):
    """Raised inside atomic_output to drop the temporary file: *path* already holds it."""


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], mode: int = 0o644) -> Iterator[IO[bytes]]:
    """Open a temporary file next to *path*; rename it over *path* only on success.

    On any exception the temporary file is removed and *path* is untouched; a
    full disk is a DiskError naming *path*.
    """
    path = Path(path)
    with disk_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        with disk_errors(path), os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class Writeback:
    """Start writing a large file's pages to disk while the file is still growing.

    The fsync that ends a GB-size blob or archive would otherwise wait for all
    of it: the kernel starts writeback on its own only past
    vm.dirty_background_ratio or after 30 s.  The writer reports each write
    (wrote()); every STEP bytes an fdatasync runs on a helper thread, never
    waited for by the writer and at most one at a time, so the closing fsync
    waits only for the last stretch.  finish() waits for the helper and raises
    its error, if it had one (on Linux a failed writeback is reported to one
    fsync only, which may have been the helper's).
    """

    STEP = 64 << 20

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self._since = 0
        self._thread: threading.Thread | None = None
        self._error: OSError | None = None

    def wrote(self, size: int) -> None:
        self._since += size
        if self._since >= self.STEP and (self._thread is None or not self._thread.is_alive()):
            self._since = 0
            self._f.flush()
            self._thread = threading.Thread(target=self._sync, args=(self._f.fileno(),),
                                            name="writeback", daemon=True)
            self._thread.start()

    def _sync(self, fd: int) -> None:
        try:
            os.fdatasync(fd)
        except OSError as e:
            self._error = e

    def finish(self) -> None:
        """Wait for the helper; raise what its fdatasync raised."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def atomic_write(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> None:
    with atomic_output(path, mode) as f:
        f.write(data)


def write_if_changed(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> bool:
    """Write *data* atomically unless *path* already holds exactly it.

    Returns True when the file was (re)written.  Keeping unchanged files
    untouched is what lets doit's checkers and incremental rebuilds skip work.
    """
    path = Path(path)
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    atomic_write(path, data, mode)
    return True


def write_chunks_if_changed(path: str | os.PathLike[str], chunks: Iterable[bytes], mode: int = 0o644) -> bool:
    """write_if_changed for content made piece by piece (never whole in memory)."""
    path = Path(path)
    digest = hashlib.sha256()
    try:
        with atomic_output(path, mode) as f:
            for chunk in chunks:
                digest.update(chunk)
                f.write(chunk)
            with contextlib.suppress(FileNotFoundError):
                if file_digest(path) == digest.hexdigest():
                    raise _Unchanged
    except _Unchanged:
        return False
    return True


def read_json(path: str | os.PathLike[str]) -> Any:
    """The JSON document at *path*: any JSON value (the caller knows what it wrote there)."""
    with open(path, "rb") as f:
        return json.load(f)


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks (bounded memory)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def remove_partials(directory: str | os.PathLike[str]) -> int:
    """Delete temporary files a killed run left in *directory*; returns how many."""
    n = 0
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    for p in directory.iterdir():
        if p.name.startswith(TMP_PREFIX):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            n += 1
    return n


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a directory under a temporary name and swap it into place on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if path.exists() and exchange(tmp, path):    # one step: readers see the old or the new directory
            shutil.rmtree(tmp, ignore_errors=True)
            return
        old = None
        if path.exists():
            old = path.with_name(TMP_PREFIX + path.name + ".old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


RENAME_EXCHANGE = 2
_libc = None


def exchange(a: Path, b: Path) -> bool:
    """renameat2(RENAME_EXCHANGE): atomically swap two directory entries (Linux >= 3.15).

    False where the system has no such call; the caller then falls back to two renames.
    """
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    func = getattr(_libc, "renameat2", None)
    if func is None:
        return False
    at_fdcwd = -100
    rc = func(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), RENAME_EXCHANGE)
    if rc != 0:
        err = ctypes.get_errno()
        if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            return False
        raise OSError(err, os.strerror(err), str(b))
    return True


# --------------------------------------------------------------------------- trees we share with others

def entry_kind(path: str | os.PathLike[str]) -> str | None:
    """What *path* itself is (a symlink is not followed): dir, file, symlink, other, or None."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(mode):
        return "symlink"
    return "dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"


def describe_entry(path: str | os.PathLike[str], kind: str | None) -> str:
    """"a symlink (to /etc)", "a file", ... for one-line messages about a foreign entry."""
    if kind == "symlink":
        return f"a symlink (to {os.readlink(path)})"
    return {"dir": "a directory", "file": "a file", None: "nothing"}.get(kind, "a special file")


def own_dirs(root: Path, parts: list[str], foreign: Callable[[Path, str | None], Exception]) -> Path:
    """root/parts..., every component a real directory: made when missing, never followed when a symlink.

    *root* is trusted (it comes from the configuration); below it, a component
    that is a symlink, a file or anything else is *foreign(path, kind)*.
    """
    path = Path(root)
    for part in parts:
        path = path / part
        kind = entry_kind(path)
        if kind is None:
            with contextlib.suppress(FileExistsError):
                os.mkdir(path, 0o755)
            kind = entry_kind(path)
        if kind != "dir":
            raise foreign(path, kind)
    return path

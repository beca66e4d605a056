"""The package cache: .pkg files named by the sum the catalogue gives them.

Naming a package by its sum rather than by name-version means a package
shared by two releases or two image flavours is stored and downloaded once,
a re-rolled package with the same version can never be confused with the old
one, and an entry's name says what its bytes must hash to.  Entries appear
only after Fetcher.download verified them (verify, then rename).

Layout::

    <root>/sha256/<hex>.pkg            catalogue sum "<hex>" or "1$<hex>" (pkg <= 2.7)
    <root>/blake2b/<zbase32>.pkg       catalogue sum "2$<zbase32>" (pkg >= 2.8)
    <root>/<kind>/.partial-<...>.pkg   a download in progress (resumable)
    <root>/<kind>/.lock-<...>          held while one thread or process fetches that sum

The lock files make ensure() safe between threads and between processes
(doit runs tasks in parallel processes): flock(2) locks belong to an open
file, so two opens in one process exclude each other too.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import BusyError
from .fsutil import TMP_PREFIX
from .fetcher import Fetcher
from .sums import Summer, sum_kind

LOCK_PREFIX = ".lock-"
SUFFIX = ".pkg"
_LOCK_ATTEMPTS = 100


def _entry_name(sum_text: str) -> tuple[str, str]:
    """(kind directory, file stem) for a catalogue sum in any of pkg's spellings."""
    kind = sum_kind(sum_text)
    if kind == "blake2b":
        return kind, sum_text[2:]
    return kind, sum_text.removeprefix("1$")


class PackageCache:
    """Content-addressed store of verified .pkg files under *root*."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, sum: str) -> Path:
        kind, stem = _entry_name(sum)
        return self.root / kind / (stem + SUFFIX)

    def has(self, sum: str) -> bool:
        return self.path_for(sum).is_file()

    def ensure(self, fetcher: Fetcher, url: str, *, name: str, sum: str, size: int | None) -> Path:
        """The cached path of the package with this *sum*, downloading it first if needed.

        Entries are trusted once present: they were verified before the rename.
        Use verify() to re-check a cache that may have been tampered with.
        """
        path = self.path_for(sum)
        if path.is_file():
            return path
        with self._locked(sum):
            if not path.is_file():  # another thread or process may have fetched it meanwhile
                fetcher.download(url, path, name=name, expected_sum=sum, expected_size=size)
        return path

    def verify(self, sum: str) -> bool:
        """Re-hash an entry: False when it is missing or its bytes no longer match its name."""
        summer = Summer()
        try:
            with open(self.path_for(sum), "rb") as f:
                while chunk := f.read(1 << 20):
                    summer.update(chunk)
        except FileNotFoundError:
            return False
        return summer.matches(sum)

    def gc(self, keep: set[str]) -> list[Path]:
        """Delete every entry (and its partial and lock) whose sum is not in *keep*.

        Returns the removed .pkg paths, sorted.  An entry being downloaded by
        another process is waited for, then removed: gc runs under the same
        per-sum lock as ensure().
        """
        kept = {_entry_name(s) for s in keep}
        removed: list[Path] = []
        for kind in ("sha256", "blake2b"):
            directory = self.root / kind
            if not directory.is_dir():
                continue
            stems = {stem for p in directory.iterdir() if (stem := _stem_of(p.name)) is not None}
            for stem in sorted(stems - {s for k, s in kept if k == kind}):
                removed.extend(self._remove(directory, stem))
        return sorted(removed)

    def _remove(self, directory: Path, stem: str) -> list[Path]:
        entry = directory / (stem + SUFFIX)
        lock = directory / (LOCK_PREFIX + stem)
        with _flocked(lock):
            gone = []
            if entry.is_file():
                entry.unlink()
                gone.append(entry)
            with contextlib.suppress(FileNotFoundError):
                (directory / (TMP_PREFIX + stem + SUFFIX)).unlink()
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()  # waiters notice the lock file changed and take the new one
        return gone

    def _locked(self, sum: str) -> contextlib.AbstractContextManager[None]:
        kind, stem = _entry_name(sum)
        directory = self.root / kind
        directory.mkdir(parents=True, exist_ok=True)
        return _flocked(directory / (LOCK_PREFIX + stem))


def _stem_of(filename: str) -> str | None:
    """The sum part of a cache file name, None for files the cache does not own."""
    if filename.startswith(LOCK_PREFIX):
        return filename[len(LOCK_PREFIX):]
    if filename.startswith(TMP_PREFIX):
        filename = filename[len(TMP_PREFIX):]
    if filename.endswith(SUFFIX):
        return filename[:-len(SUFFIX)]
    return None


@contextlib.contextmanager
def _flocked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on *path*, created if needed.

    gc() unlinks lock files while holding them; a waiter that then gets the
    lock on the unlinked file sees a different inode at *path* and tries again.
    """
    for _ in range(_LOCK_ATTEMPTS):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    else:
        raise BusyError(f"{path}: could not lock (removed {_LOCK_ATTEMPTS} times while waiting)")
    try:
        yield
    finally:
        os.close(fd)

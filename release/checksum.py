"""CHECKSUM.SHA256 / CHECKSUM.SHA512 next to the released archives.

FreeBSD's release/Makefile.mirrors writes them with ``sha256 ${OSRELEASE}* >
CHECKSUM.SHA256`` (and sha512): BSD md5(1)-family output, one line per file
in the shell's glob (byte) order::

    SHA256 (FreeBSD-14.2-RELEASE-amd64-container-image-static.txz) = <hex>

Snapshots name them CHECKSUM.SHA256-<suffix> (suffix = date-gitrev-count).
Users check downloads with ``sha256 -c`` or ``shasum -a 256 -c``-style tools
that parse exactly this spelling, so it is reproduced byte for byte.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from .errors import InputError
from .fsutil import write_if_changed

ALGORITHMS = {"SHA256": "sha256", "SHA512": "sha512"}
ARCHIVE_SUFFIX = ".txz"
_CHUNK = 1 << 20
_LINE = re.compile(r"^(SHA256|SHA512) \((?P<name>[^/\n]+)\) = (?P<hex>[0-9a-f]+)$")


def checksum_file_name(algorithm: str, suffix: str = "") -> str:
    return f"CHECKSUM.{algorithm}" + (f"-{suffix}" if suffix else "")


class Digests:
    """SHA-256 and SHA-512 of a stream fed to update(), the SHA-512 on a second thread.

    hashlib releases the GIL, so both digests of a GB-size archive take the
    time of the slower one when a second core is free: the second thread
    hashes one piece while the caller produces the next.  Callers feed large
    pieces (1 MiB: a file's chunks, the archive writer's gathered blocks).
    The archive writer feeds it the bytes it writes, so a fresh archive is
    never read back to be checksummed; _digests() feeds it a file.
    """

    BLOCK = 1 << 20         # the piece size callers gather to

    def __init__(self) -> None:
        self._hashes = {name: hashlib.new(algo) for name, algo in ALGORITHMS.items()}
        self._first, *self._others = self._hashes.values()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checksum")
        self._pending: Future[None] | None = None
        self.size = 0

    def update(self, data: bytes) -> None:
        """Hash *data* (bytes: the second thread still reads it after this returns)."""
        if self._pending is not None:
            self._pending.result()              # the previous piece is in every digest before this one
        self._pending = self._pool.submit(self._update_others, data)
        self._first.update(data)
        self.size += len(data)

    def _update_others(self, data: bytes) -> None:
        for h in self._others:
            h.update(data)

    def hexdigests(self) -> dict[str, str]:
        """{"SHA256": hex, "SHA512": hex}; the hashing thread ends here."""
        if self._pending is not None:
            self._pending.result()
        self._pool.shutdown()
        return {name: h.hexdigest() for name, h in self._hashes.items()}

    def __enter__(self) -> Digests:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown()


def _digests(path: Path) -> dict[str, str]:
    """Every algorithm's hex digest of *path*, in one chunked read."""
    with open(path, "rb") as f, Digests() as digests:
        while chunk := f.read(_CHUNK):
            digests.update(chunk)
        return digests.hexdigests()


def _ordered(names: list[str]) -> list[str]:
    """sh's glob order: sorted by bytes (the C locale), duplicates dropped."""
    return sorted(set(names), key=lambda n: n.encode())


def write_checksums(directory: Path, names: list[str], suffix: str = "",
                    known: Mapping[str, tuple[int, dict[str, str]]] | None = None) -> None:
    """Write CHECKSUM.SHA256[-suffix] and CHECKSUM.SHA512[-suffix] for *names*.

    *known* maps a name to (size, digests) its writer computed while writing
    it (the archive stage); they are used when the file still has that size,
    and the file is hashed otherwise.  (A file changed behind the pipeline's
    back at the same size is what verify-checksums, which always hashes, is for.)
    """
    directory = Path(directory)
    known = known or {}
    lines: dict[str, list[str]] = {name: [] for name in ALGORITHMS}
    for name in _ordered(names):
        if "/" in name or "\n" in name or name in ("", ".", ".."):
            raise InputError(f"{directory}: {name!r} is not a plain file name")
        try:
            size = (directory / name).stat().st_size
            digests = known[name][1] if name in known and known[name][0] == size else _digests(directory / name)
        except FileNotFoundError:
            raise InputError(f"{directory / name}: missing, cannot checksum it") from None
        for algorithm, hexdigest in digests.items():
            lines[algorithm].append(f"{algorithm} ({name}) = {hexdigest}\n")
    for algorithm, text in lines.items():
        write_if_changed(directory / checksum_file_name(algorithm, suffix), "".join(text).encode())


def _parse(path: Path, algorithm: str, problems: list[str]) -> dict[str, str]:
    expected: dict[str, str] = {}
    width = hashlib.new(ALGORITHMS[algorithm]).digest_size * 2
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        match = _LINE.match(line)
        if not match or line.split(" ", 1)[0] != algorithm or len(match["hex"]) != width:
            problems.append(f"{path.name}:{number}: malformed line {line[:80]!r}")
        elif match["name"] in expected:
            problems.append(f"{path.name}:{number}: {match['name']} listed twice")
        else:
            expected[match["name"]] = match["hex"]
    return expected


def verify_checksums(directory: Path, suffix: str = "") -> list[str]:
    """Problems with the CHECKSUM files in *directory*; empty when all is well.

    Reports a missing CHECKSUM file, malformed lines, listed files that are
    missing or whose digest differs, and archives present but not listed.
    """
    directory = Path(directory)
    problems: list[str] = []
    listed: dict[str, dict[str, str]] = {}
    for algorithm in ALGORITHMS:
        path = directory / checksum_file_name(algorithm, suffix)
        if not path.is_file():
            problems.append(f"{path.name}: missing")
            continue
        listed[algorithm] = _parse(path, algorithm, problems)
    names = _ordered([name for entries in listed.values() for name in entries])
    for name in names:
        try:
            actual = _digests(directory / name)
        except FileNotFoundError:
            problems.append(f"{name}: listed in CHECKSUM but missing")
            continue
        for algorithm, entries in listed.items():
            if name not in entries:
                problems.append(f"{name}: not listed in {checksum_file_name(algorithm, suffix)}")
            elif entries[name] != actual[algorithm]:
                problems.append(f"{name}: {algorithm} mismatch")
    for path in sorted(directory.glob("*" + ARCHIVE_SUFFIX)):
        if path.name not in names:
            problems.append(f"{path.name}: archive not listed in any CHECKSUM file")
    return problems

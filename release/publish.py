"""Publishing a built release into a download.freebsd.org-shaped tree.

Layout (release/Makefile.mirrors' oci-images-stage):

    releases/OCI-IMAGES/<version>/<arch>/Latest/
        FreeBSD-<version>-<arch>-container-image-<flavour>.txz, CHECKSUM.SHA256, CHECKSUM.SHA512
    snapshots/OCI-IMAGES/<version>/<arch>/<YYYYMMDD>/
        FreeBSD-<version>-<arch>-container-image-<suffix>-<flavour>.txz,
        CHECKSUM.SHA256-<suffix>, CHECKSUM.SHA512-<suffix>,
        BUILDINFO-<suffix>.json, CHANGES-<suffix>.json, CHANGES-<suffix>.txt
    snapshots/OCI-IMAGES/<version>/<arch>/Latest/
        symlinks under the plain names: FreeBSD-...-container-image-<flavour>.txz -> ../<YYYYMMDD>/...,
        CHECKSUM.SHA256 -> ../<YYYYMMDD>/CHECKSUM.SHA256-<suffix>, ...

Readers never see a mix: files are written under temporary names and renamed;
a new Latest is built beside the old one and swapped with it in one
renameat2(RENAME_EXCHANGE) (on systems without it, a rename pair with a brief
moment without Latest, never a mixed one).  A reader that has opened Latest
keeps reading the build it opened: the superseded Latest, and the files only it
references, stay (under a temporary name) until the next publish removes them.
Publishing the same build again changes nothing.  Old snapshot dates beyond
the configured number are pruned.  The CHECKSUM files are signed by the
configured keys (release/treesign.py), and the OpenPGP signatures push made of
the images join the tree's signature store (release/sigpublish.py), in the
same locked publish.

The tree is shared with mirrors and operators, so its existing contents are
not trusted: below the configured root publish never follows a symlink it did
not create (the only ones it makes are snapshot Latest/'s ../<date>/<name>
links, read back only in exactly that form), never deletes outside the tree,
and refuses with one line (TreeError, exit status 2) a foreign entry where it
expects its own: a symlinked date directory, a file where a directory goes.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .attest import tree_root
from .changes import buildinfo, compare, text
from .errors import InputError, ReleaseError
from .fsutil import (TMP_PREFIX, atomic_output, describe_entry, entry_kind, exchange as _exchange, own_dirs,
                     pretty_json, remove_partials)
from .names import CHECKSUM_FILES as CHECKSUMS
from .names import snapshot_name
from .plans import PublishPlan
from .records import Lock, SrcHead
from .sigpublish import publish_signatures, store_dir
from .sources import mirror_of
from .treesign import TreeSigners, tree_signers

_DATE = re.compile(r"^\d{8}$")


class PublishError(ReleaseError):
    """The download tree cannot be updated."""


class TreeError(InputError):
    """The download tree holds something publish did not make where it expects its own."""


def foreign(path: Path, kind: str | None, wanted: str = "directory") -> TreeError:
    return TreeError(f"{path}: {describe_entry(path, kind)} where publish expects its own {wanted}; "
                     "refusing to follow or replace it")


def _tree_dirs(root: Path, *parts: str) -> Path:
    return own_dirs(root, list(parts), foreign)


def _own_file(path: Path) -> bool:
    """*path* is a regular file (False when absent); anything else there is foreign."""
    kind = entry_kind(path)
    if kind not in (None, "file"):
        raise foreign(path, kind, "file")
    return kind == "file"


def _own_entries(directory: Path) -> list[str]:
    """The names in a directory publish fills with regular files only (partials left for the sweep)."""
    names = sorted(p.name for p in directory.iterdir())
    for name in names:
        if not name.startswith(TMP_PREFIX):
            _own_file(directory / name)
    return [n for n in names if not n.startswith(TMP_PREFIX)]


def publish_release(plan: PublishPlan) -> dict[str, Any]:
    """Publish every architecture of the release under the plan's tree; returns what changed per arch."""
    root = tree_root(plan.root)
    if entry_kind(root) is None:
        root.mkdir(parents=True)
    if not root.is_dir():
        raise TreeError(f"{root}: the publish root is not a directory")
    changed = {}
    with _tree_lock(root), tree_signers(plan.signing) as signers:
        for files in plan.files:
            if plan.kind == "snapshot":
                changed[files.arch] = _publish_snapshot(plan, files.arch, list(files.names), root, signers)
            else:
                changed[files.arch] = _publish_release(plan, files.arch, list(files.names), root, signers)
        kind = entry_kind(store_dir(root))     # the store's own files are release/sigpublish.py's
        if kind not in (None, "dir"):
            raise foreign(store_dir(root), kind)
        store = publish_signatures(plan, root, signers.openpgp)
    return {"changed": changed, "signature_store": store}


# --------------------------------------------------------------------------- releases

def _publish_release(plan: PublishPlan, arch: str, plain: list[str], root: Path, signers: TreeSigners) -> bool:
    out = plan.workspace.arch_dir(plan.release, arch)
    wanted = {n: out / n for n in [*plain, *CHECKSUMS]}
    _require(wanted)
    base = _tree_dirs(root, "releases", "OCI-IMAGES", plan.version, arch)
    latest = base / "Latest"
    if _holds(latest, wanted, signers):
        return False
    remove_partials(base)
    _drop_superseded(base)
    stage = base / f"{TMP_PREFIX}Latest.{os.getpid()}"
    stage.mkdir()
    for name, source in wanted.items():
        _place(source, stage / name)
    signers.sign(stage)
    _swap_in(stage, latest)
    return True


# --------------------------------------------------------------------------- snapshots

def _publish_snapshot(plan: PublishPlan, arch: str, plain: list[str], root: Path, signers: TreeSigners) -> bool:
    ws = plan.workspace
    src = SrcHead.load(ws.src_json(plan.release))
    suffix, date = src.suffix or "", src.build_date or ""
    out = ws.arch_dir(plan.release, arch)
    _require({n: out / n for n in [*plain, *CHECKSUMS]})
    base = _tree_dirs(root, "snapshots", "OCI-IMAGES", plan.version, arch)
    day, latest = base / date, base / "Latest"
    info = buildinfo(release=plan.release, version=plan.version, suffix=suffix, arch=arch, src=asdict(src),
                     lock=Lock.load(ws.lock(plan.release, arch)).document)
    links = _latest_links(base)
    previous = _published_buildinfo(base, links)
    if previous is not None and previous.get("suffix") == suffix and \
            _snapshot_current(day, links, plain, suffix, signers):
        return False
    if previous is not None and previous.get("suffix") == suffix:
        previous = _published_buildinfo_at(base, date, suffix, "previous")
    report = compare(previous, info, mirror_of(plan.src))
    remove_partials(base)
    _drop_superseded(base)                 # the Latest the last publish replaced
    _tidy(base, links, plan.keep, date)
    _tree_dirs(base, date)
    remove_partials(day)
    _own_entries(day)
    for name in plain:
        _place(out / name, day / snapshot_name(name, suffix))
    for checksum in CHECKSUMS:
        lines = (out / checksum).read_text().splitlines(keepends=True)
        renamed = "".join(_rename_checksum_line(line, suffix) for line in lines)
        _write(day / f"{checksum}-{suffix}", renamed.encode())
    _write(day / f"BUILDINFO-{suffix}.json", pretty_json({**info, "previous": report.get("previous")}))
    _write(day / f"CHANGES-{suffix}.json", pretty_json(report))
    _write(day / f"CHANGES-{suffix}.txt", text(report).encode())
    made = {name: f"../{date}/{snapshot_name(name, suffix)}" for name in plain}
    made.update({c: f"../{date}/{c}-{suffix}" for c in CHECKSUMS})
    signers.sign(day, suffix)
    made.update({plain_name: f"../{date}/{name}" for name, plain_name in signers.names(suffix).items()})
    made.update({f"{n}.{ext}": f"../{date}/{n}-{suffix}.{ext}"
                 for n, ext in (("BUILDINFO", "json"), ("CHANGES", "json"), ("CHANGES", "txt"))})
    stage = base / f"{TMP_PREFIX}Latest.{os.getpid()}"
    stage.mkdir()
    for name, target in sorted(made.items()):
        os.symlink(target, stage / name)
    _swap_in(stage, latest)
    return True


def _rename_checksum_line(line: str, suffix: str) -> str:
    m = re.match(r"^(SHA\d+) \((.+)\) = ([0-9a-f]+)\n?$", line)
    if not m:
        raise PublishError(f"malformed checksum line {line.strip()!r}")
    return f"{m.group(1)} ({snapshot_name(m.group(2), suffix)}) = {m.group(3)}\n"


def _latest_links(base: Path) -> dict[str, tuple[str, str]]:
    """A snapshot Latest's links: name -> (date, file name), as publish made them (../<date>/<name>).

    Anything else in Latest (a file, a link elsewhere) was not made by publish: TreeError.
    """
    latest = base / "Latest"
    kind = entry_kind(latest)
    if kind is None:
        return {}
    if kind != "dir":
        raise foreign(latest, kind)
    links = {}
    for entry in sorted(latest.iterdir()):
        if entry.name.startswith(TMP_PREFIX):
            continue
        target = os.readlink(entry) if entry.is_symlink() else ""
        parts = target.split("/")
        if len(parts) != 3 or parts[0] != ".." or not _DATE.match(parts[1]) or parts[2] in ("", ".", ".."):
            raise foreign(entry, entry_kind(entry), "link to ../<date>/<file>")
        links[entry.name] = (parts[1], parts[2])
    return links


def _read_own(base: Path, date: str, name: str) -> dict[str, Any] | None:
    """A JSON file publish wrote into a date directory (never through a symlink)."""
    directory = base / date
    if entry_kind(directory) != "dir":
        return None
    path = directory / name
    if not _own_file(path):
        return None
    try:
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as f:
            doc: dict[str, Any] = json.load(f)
            return doc
    except (OSError, ValueError):
        return None


def _published_buildinfo(base: Path, links: dict[str, tuple[str, str]]) -> dict[str, Any] | None:
    if "BUILDINFO.json" not in links:
        return None
    return _read_own(base, *links["BUILDINFO.json"])


def _published_buildinfo_at(base: Path, date: str, suffix: str, key: str) -> dict[str, Any] | None:
    """Re-publishing a build: its report stays against the build it was first compared with."""
    previous = (_read_own(base, date, f"BUILDINFO-{suffix}.json") or {}).get(key)
    if not previous:
        return None
    for day in _dates(base):
        found = _read_own(base, day, f"BUILDINFO-{previous}.json")
        if found is not None:
            return found
    return None


def _dates(base: Path) -> list[str]:
    """The date directories of a snapshot arch directory, newest first (a symlink among them is foreign)."""
    days = []
    for p in base.iterdir():
        if _DATE.match(p.name):
            kind = entry_kind(p)
            if kind != "dir":
                raise foreign(p, kind)
            days.append(p.name)
    return sorted(days, reverse=True)


def _snapshot_current(day: Path, links: dict[str, tuple[str, str]], plain: list[str], suffix: str,
                      signers: TreeSigners) -> bool:
    expected = [snapshot_name(n, suffix) for n in plain] + [f"{c}-{suffix}" for c in CHECKSUMS]
    if entry_kind(day) != "dir":
        return False
    _own_entries(day)
    if not all(_own_file(day / n) for n in expected) or signers.problems(day, suffix):
        return False
    wanted = {n: snapshot_name(n, suffix) for n in plain}
    wanted.update({plain_name: name for name, plain_name in signers.names(suffix).items()})
    return all(links.get(n) == (day.name, name) for n, name in wanted.items())


def _tidy(base: Path, links: dict[str, tuple[str, str]], keep: int, today: str) -> None:
    """Before a new Latest: drop what the current Latest does not reference, then old dates.

    Runs one publish late on purpose: files of the build being replaced stay
    until the next publish, for readers still walking the Latest they opened.
    Only real directories and files of the tree are removed (see _dates, _own_entries).
    """
    current = set(links.values())
    current_days = {d for d, _ in current}
    days = _dates(base)
    kept = set(current_days) | {today}          # the date being published counts towards *keep*
    for d in days:
        if len(kept) >= keep:
            break
        kept.add(d)
    for d in days:
        if d not in kept:
            shutil.rmtree(base / d)
        elif d in current_days:                 # an earlier build of that day, no longer in Latest
            for name in _own_entries(base / d):
                if (d, name) not in current:
                    (base / d / name).unlink()


# --------------------------------------------------------------------------- files

def _require(files: dict[str, Path]) -> None:
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise PublishError(f"{missing[0]}: not built (build the release first)")


def _holds(directory: Path, wanted: dict[str, Path], signers: TreeSigners) -> bool:
    """The published directory already holds exactly these files (same checksums and sizes), signed by the keys."""
    kind = entry_kind(directory)
    if kind is None:
        return False
    if kind != "dir":
        raise foreign(directory, kind)
    present = set(_own_entries(directory))
    if present != set(wanted) | set(signers.names()) or signers.problems(directory):
        return False
    for name, source in wanted.items():
        if (directory / name).stat().st_size != source.stat().st_size:
            return False
    return all((directory / c).read_bytes() == wanted[c].read_bytes() for c in CHECKSUMS)


def _place(source: Path, dest: Path) -> None:
    """*source* at *dest*, never visible half-written: a hardlink when possible, else a copy, then rename."""
    if _own_file(dest) and dest.stat().st_size == source.stat().st_size and _same_file(source, dest):
        return
    tmp = dest.with_name(f"{TMP_PREFIX}{dest.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(source, tmp)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        with atomic_output(tmp) as f, open(source, "rb") as src:
            shutil.copyfileobj(src, f, 1 << 20)
    os.replace(tmp, dest)


def _same_file(a: Path, b: Path) -> bool:
    sa, sb = a.stat(), b.stat()
    if (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino):
        return True
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def _write(dest: Path, data: bytes) -> None:
    if _own_file(dest) and dest.read_bytes() == data:
        return
    with atomic_output(dest) as f:
        f.write(data)


SUPERSEDED = ".Latest.superseded"


def _swap_in(stage: Path, target: Path) -> None:
    """Make *stage* be *target* in one step.

    The old target stays as .Latest.superseded, for readers still in it; the
    next publish removes it (_drop_superseded) before it swaps again.
    """
    kind = entry_kind(target)
    if kind not in (None, "dir"):
        raise foreign(target, kind)
    if kind == "dir":
        if not _exchange(stage, target):
            os.replace(target, stage.with_name(stage.name + ".old"))
            os.replace(stage, target)
            stage = stage.with_name(stage.name + ".old")
        os.replace(stage, target.with_name(SUPERSEDED))
        return
    os.replace(stage, target)


def _drop_superseded(base: Path) -> None:
    kind = entry_kind(base / SUPERSEDED)
    if kind not in (None, "dir"):
        raise foreign(base / SUPERSEDED, kind)
    if kind == "dir":
        shutil.rmtree(base / SUPERSEDED)


@contextlib.contextmanager
def _tree_lock(root: Path) -> Iterator[None]:
    """One publisher at a time per tree: an flock on the tree's root directory (no lock file in the tree).

    A second publisher (another release of the same nightly, running in
    parallel) waits for the first: each holds the lock for seconds at most.
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)

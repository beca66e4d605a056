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
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
from dataclasses import asdict
from pathlib import Path

from .attest import tree_root
from .changes import buildinfo, compare, text
from .errors import ReleaseError
from .fsutil import TMP_PREFIX, atomic_output, exchange as _exchange, pretty_json, read_json, remove_partials
from .names import CHECKSUM_FILES as CHECKSUMS
from .names import snapshot_name
from .plans import PublishPlan
from .records import Lock, SrcHead
from .sigpublish import publish_signatures
from .sources import mirror_of
from .treesign import TreeSigners, tree_signers

_DATE = re.compile(r"^\d{8}$")


class PublishError(ReleaseError):
    """The download tree cannot be updated."""


def publish_release(plan: PublishPlan) -> dict:
    """Publish every architecture of the release under the plan's tree; returns what changed per arch."""
    root = tree_root(plan.root)
    root.mkdir(parents=True, exist_ok=True)
    changed = {}
    with _tree_lock(root), tree_signers(plan.signing) as signers:
        for files in plan.files:
            if plan.kind == "snapshot":
                changed[files.arch] = _publish_snapshot(plan, files.arch, list(files.names), root, signers)
            else:
                changed[files.arch] = _publish_release(plan, files.arch, list(files.names), root, signers)
        store = publish_signatures(plan, root, signers.openpgp)
    return {"changed": changed, "signature_store": store}


# --------------------------------------------------------------------------- releases

def _publish_release(plan: PublishPlan, arch: str, plain: list[str], root: Path, signers: TreeSigners) -> bool:
    out = plan.workspace.arch_dir(plan.release, arch)
    base = root / "releases" / "OCI-IMAGES" / plan.version / arch
    latest = base / "Latest"
    wanted = {n: out / n for n in [*plain, *CHECKSUMS]}
    _require(wanted)
    if _holds(latest, wanted, signers):
        return False
    base.mkdir(parents=True, exist_ok=True)
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
    base = root / "snapshots" / "OCI-IMAGES" / plan.version / arch
    day, latest = base / date, base / "Latest"
    info = buildinfo(release=plan.release, version=plan.version, suffix=suffix, arch=arch, src=asdict(src),
                     lock=Lock.load(ws.lock(plan.release, arch)).document)
    previous = _published_buildinfo(latest)
    if previous is not None and previous.get("suffix") == suffix and \
            _snapshot_current(day, latest, plain, suffix, signers):
        return False
    if previous is not None and previous.get("suffix") == suffix:
        previous = _published_buildinfo_at(day, suffix, "previous")
    report = compare(previous, info, mirror_of(plan.src))
    base.mkdir(parents=True, exist_ok=True)
    remove_partials(base)
    _drop_superseded(base)                 # the Latest the last publish replaced
    _tidy(base, latest, plan.keep, date)
    day.mkdir(exist_ok=True)
    remove_partials(day)
    for name in plain:
        _place(out / name, day / snapshot_name(name, suffix))
    for checksum in CHECKSUMS:
        lines = (out / checksum).read_text().splitlines(keepends=True)
        renamed = "".join(_rename_checksum_line(line, suffix) for line in lines)
        _write(day / f"{checksum}-{suffix}", renamed.encode())
    _write(day / f"BUILDINFO-{suffix}.json", pretty_json({**info, "previous": report.get("previous")}))
    _write(day / f"CHANGES-{suffix}.json", pretty_json(report))
    _write(day / f"CHANGES-{suffix}.txt", text(report).encode())
    links = {name: f"../{date}/{snapshot_name(name, suffix)}" for name in plain}
    links.update({c: f"../{date}/{c}-{suffix}" for c in CHECKSUMS})
    signers.sign(day, suffix)
    links.update({plain_name: f"../{date}/{name}" for name, plain_name in signers.names(suffix).items()})
    links.update({f"{n}.{ext}": f"../{date}/{n}-{suffix}.{ext}"
                  for n, ext in (("BUILDINFO", "json"), ("CHANGES", "json"), ("CHANGES", "txt"))})
    stage = base / f"{TMP_PREFIX}Latest.{os.getpid()}"
    stage.mkdir()
    for name, target in sorted(links.items()):
        os.symlink(target, stage / name)
    _swap_in(stage, latest)
    return True


def _rename_checksum_line(line: str, suffix: str) -> str:
    m = re.match(r"^(SHA\d+) \((.+)\) = ([0-9a-f]+)\n?$", line)
    if not m:
        raise PublishError(f"malformed checksum line {line.strip()!r}")
    return f"{m.group(1)} ({snapshot_name(m.group(2), suffix)}) = {m.group(3)}\n"


def _published_buildinfo(latest: Path) -> dict | None:
    try:
        return read_json(latest / "BUILDINFO.json")
    except (OSError, ValueError):
        return None


def _published_buildinfo_at(day: Path, suffix: str, key: str) -> dict | None:
    """Re-publishing a build: its report stays against the build it was first compared with."""
    try:
        previous = read_json(day / f"BUILDINFO-{suffix}.json").get(key)
    except (OSError, ValueError):
        return None
    if not previous:
        return None
    for other in day.parent.glob(f"*/BUILDINFO-{previous}.json"):
        return read_json(other)
    return None


def _snapshot_current(day: Path, latest: Path, plain: list[str], suffix: str, signers: TreeSigners) -> bool:
    expected = [snapshot_name(n, suffix) for n in plain] + [f"{c}-{suffix}" for c in CHECKSUMS]
    if not all((day / n).is_file() for n in expected) or signers.problems(day, suffix):
        return False
    return all((latest / n).exists() for n in [*plain, *signers.names(suffix).values()])


def _tidy(base: Path, latest: Path, keep: int, today: str) -> None:
    """Before a new Latest: drop what the current Latest does not reference, then old dates.

    Runs one publish late on purpose: files of the build being replaced stay
    until the next publish, for readers still walking the Latest they opened.
    """
    try:
        current = {(base / "Latest" / os.readlink(p)).resolve() for p in latest.iterdir() if p.is_symlink()}
    except FileNotFoundError:
        current = set()
    current_days = {p.parent.name for p in current}
    days = sorted((p.name for p in base.iterdir() if p.is_dir() and _DATE.match(p.name)), reverse=True)
    kept = set(current_days) | {today}          # the date being published counts towards *keep*
    for d in days:
        if len(kept) >= keep:
            break
        kept.add(d)
    for d in days:
        if d not in kept:
            shutil.rmtree(base / d, ignore_errors=True)
        elif d in current_days:                 # an earlier build of that day, no longer in Latest
            for p in (base / d).iterdir():
                if p.resolve() not in current:
                    p.unlink()


# --------------------------------------------------------------------------- files

def _require(files: dict[str, Path]) -> None:
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise PublishError(f"{missing[0]}: not built (build the release first)")


def _holds(directory: Path, wanted: dict[str, Path], signers: TreeSigners) -> bool:
    """The published directory already holds exactly these files (same checksums and sizes), signed by the keys."""
    try:
        present = {p.name for p in directory.iterdir()}
    except FileNotFoundError:
        return False
    if present != set(wanted) | set(signers.names()) or signers.problems(directory):
        return False
    for name, source in wanted.items():
        if (directory / name).stat().st_size != source.stat().st_size:
            return False
    return all((directory / c).read_bytes() == wanted[c].read_bytes() for c in CHECKSUMS)


def _place(source: Path, dest: Path) -> None:
    """*source* at *dest*, never visible half-written: a hardlink when possible, else a copy, then rename."""
    if dest.is_file() and dest.stat().st_size == source.stat().st_size and _same_file(source, dest):
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
    if dest.is_file() and dest.read_bytes() == data:
        return
    with atomic_output(dest) as f:
        f.write(data)


SUPERSEDED = ".Latest.superseded"


def _swap_in(stage: Path, target: Path) -> None:
    """Make *stage* be *target* in one step.

    The old target stays as .Latest.superseded, for readers still in it; the
    next publish removes it (_drop_superseded) before it swaps again.
    """
    if target.exists() or target.is_symlink():
        if not _exchange(stage, target):
            os.replace(target, stage.with_name(stage.name + ".old"))
            os.replace(stage, target)
            stage = stage.with_name(stage.name + ".old")
        os.replace(stage, target.with_name(SUPERSEDED))
        return
    os.replace(stage, target)


def _drop_superseded(base: Path) -> None:
    shutil.rmtree(base / SUPERSEDED, ignore_errors=True)


@contextlib.contextmanager
def _tree_lock(root: Path):
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

"""Where everything lives inside the work directory.

One place decides the layout, so tasks, tests and later steps (publishing,
verification) agree on paths:

    <work>/git/<mirror>.git                     bare src mirrors
    <work>/demo/                                generated demo repositories
    <work>/state/<release>/src.json             branch head (commit, time, count, SOURCE_DATE_EPOCH)
    <work>/state/<release>/src-inputs.json      blob ids of every src file the release reads
    <work>/state/<release>/src-inputs-<flavour>.json   the ones one flavour's steps read
    <work>/state/<release>/src-walk.json        where the last history walk stopped (fetch's own)
    <work>/state/<release>/<arch>.downloaded.json   the packages the download put in the cache
    <work>/repos/<release>/<arch>/              meta.conf, catalogue archive, catalogue.json
    <work>/locks/<release>/<arch>.json          the lock
    <work>/cache/packages/{sha256,blake2b}/     content-addressed package cache
    <work>/cache/meta/<sum>.json                package manifests and tar metadata (for pkgdb)
    <work>/cache/meta/<sum>.payload             what installing the package puts in a layer (release.layershare)
    <work>/cache/xz/                            xz segments of large blobs (archives)
    <work>/cache/builtins/                      outputs of pwd_mkdb, services_mkdb ... by input digest
    <work>/build/<release>/<arch>/<flavour>/    packages.json, layer.json, view.json, index.json, image.json
    <work>/build/<release>/index-<flavour>.json the multi-arch index record
    <work>/layers/<identity>.json               built layers by plan identity (reuse)
    <work>/layers/shared/<key>/<identity>.json  built layers other architectures may take (release.layershare)
    <work>/blobs/sha256/                        content-addressed OCI blobs
    <work>/out/<release>/<arch>/                archives, SBOMs, CHECKSUM files
    <work>/out/<release>/oci/<flavour>/         OCI image layouts (all architectures)
    <work>/verify/<release>/                    scratch rebuilds of verify
    <work>/tmp/                                 spools and scratch roots (emptied by the crash sweep)
"""
from __future__ import annotations

import fcntl
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import BusyError, InputError
from .fsutil import TMP_PREFIX, remove_partials

# A work directory says so: the crash sweep deletes temporary names in it, which
# must never happen in a directory someone pointed workdir= at by mistake.
MARKER = ".release-workdir"
# The folders the pipeline writes (git/ is libgit2's own); the sweep looks nowhere else.
FOLDERS = ("demo", "state", "repos", "locks", "cache", "build", "layers", "blobs", "out", "tmp", "verify")


@dataclass(frozen=True)
class Workspace:
    root: Path

    # src ------------------------------------------------------------------
    def mirror(self, url: str, default_url: str, default_mirror: Path | None = None) -> Path:
        """One bare mirror per distinct src URL; the configured src ([src] mirror) is simply 'src'."""
        if url == default_url:
            return default_mirror or self.root / "git" / "src.git"
        return self.root / "git" / f"src-{hashlib.sha256(url.encode()).hexdigest()[:12]}.git"

    def state(self, release: str) -> Path:
        return self.root / "state" / release

    def src_json(self, release: str) -> Path:
        return self.state(release) / "src.json"

    def src_inputs(self, release: str) -> Path:
        return self.state(release) / "src-inputs.json"

    def flavour_src_inputs(self, release: str, flavour: str) -> Path:
        return self.state(release) / f"src-inputs-{flavour}.json"

    def src_walk(self, release: str) -> Path:
        return self.state(release) / "src-walk.json"

    def demo(self) -> Path:
        return self.root / "demo"

    # pkgbase --------------------------------------------------------------
    def repo(self, release: str, arch: str) -> Path:
        return self.root / "repos" / release / arch

    def catalogue_json(self, release: str, arch: str) -> Path:
        return self.repo(release, arch) / "catalogue.json"

    def trust_dir(self, release: str, arch: str) -> Path:
        """The release's fingerprint trust store (trusted/, revoked/), as read from its src."""
        return self.repo(release, arch) / "fingerprints"

    def lock(self, release: str, arch: str) -> Path:
        return self.root / "locks" / release / f"{arch}.json"

    def downloaded(self, release: str, arch: str) -> Path:
        return self.state(release) / f"{arch}.downloaded.json"

    def cache(self) -> Path:
        return self.root / "cache" / "packages"

    def package_meta(self, stem: str) -> Path:
        return self.root / "cache" / "meta" / f"{stem}.json"

    def package_payload(self, stem: str) -> Path:
        return self.root / "cache" / "meta" / f"{stem}.payload"

    def xz_cache(self) -> Path:
        return self.root / "cache" / "xz"

    def builtin_cache(self) -> Path:
        """release.builtincache's store: the install-time tools' outputs by input digest."""
        return self.root / "cache" / "builtins"

    def tmp(self) -> Path:
        return self.root / "tmp"

    # build ----------------------------------------------------------------
    def flavour(self, release: str, arch: str, flavour: str) -> Path:
        return self.root / "build" / release / arch / flavour

    def packages_json(self, release: str, arch: str, flavour: str) -> Path:
        return self.flavour(release, arch, flavour) / "packages.json"

    def layer_json(self, release: str, arch: str, flavour: str) -> Path:
        return self.flavour(release, arch, flavour) / "layer.json"

    def view_json(self, release: str, arch: str, flavour: str) -> Path:
        return self.flavour(release, arch, flavour) / "view.json"

    def package_index_json(self, release: str, arch: str, flavour: str) -> Path:
        """path -> (kind, digest, package) of what the flavour's packages installed (conflict checks)."""
        return self.flavour(release, arch, flavour) / "index.json"

    def image_json(self, release: str, arch: str, flavour: str) -> Path:
        return self.flavour(release, arch, flavour) / "image.json"

    def archive_json(self, release: str, arch: str, flavour: str) -> Path:
        """The archive stage's record of the flavour's .txz (size and CHECKSUM digests)."""
        return self.flavour(release, arch, flavour) / "archive.json"

    def index_json(self, release: str, flavour: str) -> Path:
        return self.root / "build" / release / f"index-{flavour}.json"

    def built_layer(self, identity: str) -> Path:
        """A built layer's record, named by its plan identity."""
        return self.root / "layers" / f"{identity}.json"

    def shared_layers(self, key: str) -> Path:
        """Built layers whose share key is *key* (release.layershare), one file per identity."""
        return self.root / "layers" / "shared" / key

    def blobs(self) -> Path:
        return self.root / "blobs" / "sha256"

    def blob(self, digest: str) -> Path:
        return self.blobs() / digest.removeprefix("sha256:")

    def out(self, release: str) -> Path:
        return self.root / "out" / release

    def arch_dir(self, release: str, arch: str) -> Path:
        """Where a release's archives, SBOMs and CHECKSUM files for one architecture are written."""
        return self.out(release) / arch

    def layout_dir(self, release: str, flavour: str) -> Path:
        return self.out(release) / "oci" / flavour

    def signatures_dir(self, release: str) -> Path:
        """The OpenPGP signatures push made of the release's images: a lookaside store (release/sigstore.py)."""
        return self.out(release) / "signatures"

    def signatures_record(self, release: str) -> Path:
        """What each file of signatures_dir() signs, and with which key."""
        return self.out(release) / "signatures.json"

    def verify_dir(self, release: str) -> Path:
        return self.root / "verify" / release

    def lockfile(self) -> Path:
        return self.root / ".lock"


def claim_workdir(root: Path) -> None:
    """Make sure *root* is a work directory: a new or empty one is marked, a marked one used.

    A directory holding nothing but what the pipeline makes (its folders,
    git/, .lock, doit's .doit.db: an earlier version's work directory) is
    marked and used; any other non-empty directory is refused.
    """
    try:
        root.mkdir(parents=True, exist_ok=True)
        if (root / MARKER).is_file():
            return
        present = sorted(p.name for p in root.iterdir())
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"{root}: workdir is not a directory") from None
    foreign = [n for n in present if n not in (*FOLDERS, "git", ".lock") and not n.startswith(".doit.db")]
    if foreign:
        raise InputError(f"{root}: not a work directory of this pipeline (no {MARKER}, holds {foreign[0]}"
                         f"{' and more' if len(foreign) > 1 else ''}); use a new or empty workdir=")
    (root / MARKER).write_text("FreeBSD OCI release pipeline work directory\n")


def lock_workdir(root: Path) -> int:
    """Hold the work directory for this run (released when the process ends, even by SIGKILL).

    Two runs on one work directory would race on the same records and blobs;
    the second is refused with the first one's pid instead.
    """
    claim_workdir(root)
    fd = os.open(Workspace(root).lockfile(), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise BusyError(f"{root}: work directory in use by another doit run (pid {holder}); "
                        "wait for it to finish or use another workdir=") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def sweep_partials(root: Path) -> int:
    """Remove what a killed run left half-written (temporary names only; finished files are whole).

    Only in a marked work directory, and only in its own folders (FOLDERS)
    and among its own entries; symlinks are never followed.
    """
    if not (root / MARKER).is_file():
        return 0
    removed = remove_partials(root)
    for folder in FOLDERS:
        if (root / folder).is_dir() and not (root / folder).is_symlink():
            for dirpath, dirnames, _ in os.walk(root / folder):
                removed += remove_partials(dirpath)
                dirnames[:] = [d for d in dirnames if not d.startswith(TMP_PREFIX)]
    return removed

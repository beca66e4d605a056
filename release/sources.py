"""src inputs of a release: the branch head and the files its images are made from.

After a fetch, each release gets small records (rewritten only on change):

- src.json: url, branch, commit, gitrev (short), gitcount, commit time, subject
  and SOURCE_DATE_EPOCH — what the lock, the image annotations and snapshot
  names need;
- src-inputs.json: the git object id of every src path the release's steps read
  (mtree specs, master.passwd, group, termcap, caroot, pkg trust anchors) and the
  SOURCE_DATE_EPOCH, and src-inputs-<flavour>.json with the ones one flavour's
  steps read.  Layers depend on their flavour's record, not on the commit, and
  read those files by object id (SrcFiles), so a commit elsewhere in src does
  not rebuild any layer;
- src-walk.json: where the last history walk stopped (the fetch's own memory).
"""
from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import asdict
from pathlib import Path

from .errors import InputError
from .fsutil import write_if_changed
from .plans import SrcLocation, SrcPlan, SrcRelease, TrustSettings
from .records import Lock, SrcHead, SrcInputs, SrcWalk
from .srcgit import BranchHead, SrcMirror
from .workspace import Workspace


def mirror_of(src: SrcLocation) -> SrcMirror:
    return SrcMirror(src.mirror, src.url)


# mirrors this process already fetched: (mirror path, branches) -> branch heads.  The matrix is
# resolved from the fetched src before the tasks exist (release.matrix); the src fetch stage of the
# same run then records those heads instead of asking the remote again (forked workers inherit it).
_FETCHED: dict[tuple[str, tuple[str, ...]], dict[str, str]] = {}


def update_mirror(src: SrcLocation, branches: list[str]) -> dict[str, str]:
    """Fetch *branches* (globs allowed) into the mirror, once per process; branch -> head commit."""
    key = (str(src.mirror), tuple(sorted(branches)))
    if key not in _FETCHED:
        _FETCHED[key] = mirror_of(src).fetch(sorted(branches))
    return _FETCHED[key]


def source_date_epoch(policy: str, head_time: int, inputs_time: int) -> int:
    """SOURCE_DATE_EPOCH of a release: the environment's when set, else the configured policy.

    "src-inputs" (the default) is the commit time of the newest commit that
    changed a src file the images read, so a commit elsewhere in src rebuilds
    no layer; "src-commit" is the branch head's commit time.
    """
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    if value or policy == "environment":
        if not value.isdigit():
            raise InputError(f"SOURCE_DATE_EPOCH: {value or 'not set'!r} is not an epoch in seconds")
        return int(value)
    if policy == "src-inputs":
        return inputs_time
    if policy == "src-commit":
        return head_time
    return int(policy)


def snapshot_suffix(head_time: int, short: str, count: int) -> tuple[str, str]:
    """(BUILDDATE, <YYYYMMDD>-<gitrev>-<gitcount>) as release/Makefile.mirrors names snapshots.

    BUILDDATE is the UTC date of the branch head (RELEASE_BUILD_DATE overrides):
    a rebuild of the same head gets the same names, wherever and whenever it runs.
    """
    date = os.environ.get("RELEASE_BUILD_DATE") or \
        datetime.datetime.fromtimestamp(head_time, datetime.UTC).strftime("%Y%m%d")
    if not (len(date) == 8 and date.isdigit()):
        raise InputError(f"RELEASE_BUILD_DATE: {date!r} is not YYYYMMDD")
    return date, f"{date}-{short}-{count}"


def _previous(ws: Workspace, r: SrcRelease, url: str) -> tuple[SrcHead, SrcWalk] | None:
    try:
        head, walk = SrcHead.load(ws.src_json(r.name)), SrcWalk.load(ws.src_walk(r.name))
    except InputError:
        return None
    return (head, walk) if head.url == url and head.branch == r.branch and walk.commit == head.commit else None


def fetch_sources(plan: SrcPlan) -> None:
    """Fetch one mirror's branches and refresh each release's src records.

    Every record is rewritten only when its content changes; a head that did
    not move costs no history walk at all, a moved one only the new commits.
    Each flavour gets its own src-inputs record (the objects its steps read),
    so a change to what one flavour reads does not touch the others' records.
    """
    mirror = mirror_of(plan.src)
    heads = update_mirror(plan.src, list(plan.branches))
    ws = plan.workspace
    for r in plan.releases:
        head, walk = _head(mirror, plan.src.url, r, ws, heads[r.branch])
        epoch = source_date_epoch(plan.epoch_policy, head.time, walk.inputs_changed["time"])
        build_date = suffix = None
        if r.kind == "snapshot":
            build_date, suffix = snapshot_suffix(head.time, head.short, head.count)
        SrcHead(url=plan.src.url, **asdict(head), source_date_epoch=epoch, build_date=build_date,
                suffix=suffix).save(ws.src_json(r.name))
        walk.save(ws.src_walk(r.name))
        inputs = SrcInputs(inputs={p: mirror.input_id(head.commit, p) for p in r.paths}, source_date_epoch=epoch)
        inputs.save(ws.src_inputs(r.name))
        for f in r.flavours:
            SrcInputs(inputs=inputs.only(f.paths), source_date_epoch=epoch).save(
                ws.flavour_src_inputs(r.name, f.name))


def _head(mirror: SrcMirror, url: str, r: SrcRelease, ws: Workspace, head_commit: str) -> tuple[BranchHead, SrcWalk]:
    """The head to build and the newest commit that changed an input path (reusing the last walk)."""
    prev = _previous(ws, r, url)
    paths = list(r.paths)
    wanted = pinned_commit(r) or head_commit
    if prev is not None and prev[0].commit == wanted and prev[1].inputs_paths == paths:
        built, walk = prev
        return BranchHead(branch=built.branch, commit=built.commit, short=built.short, time=built.time,
                          count=built.count, subject=built.subject), walk
    if prev is not None:
        with contextlib.suppress(InputError):
            mirror.remember_count(prev[1].commit, prev[1].count)
    head = mirror.describe(r.branch, wanted)
    known = (prev[1].commit, prev[1].inputs_changed["commit"]) \
        if prev is not None and prev[1].inputs_paths == paths else None
    try:
        changed, changed_time = mirror.last_change(head.commit, paths, known)
    except InputError:
        changed, changed_time = mirror.last_change(head.commit, paths)
    return head, SrcWalk(commit=head.commit, count=head.count, inputs_paths=paths,
                         inputs_changed={"commit": changed, "time": changed_time})


def pinned_commit(r: SrcRelease) -> str | None:
    """The src commit a pinned release is built from: the one its lock records."""
    return Lock.load(Path(r.pinned_lock)).src["commit"] if r.pinned_lock else None


class SrcFiles:
    """The src files a stage reads, by the object ids src-inputs.json recorded for their paths.

    A stage depends on the ids, not on the commit that happens to carry them, so
    a commit elsewhere in src changes nothing it reads.
    """

    def __init__(self, src: SrcLocation, inputs: SrcInputs) -> None:
        self._mirror = mirror_of(src)
        self._inputs = inputs.inputs

    def _oid(self, path: str) -> str | None:
        clean = path.strip("/")
        if clean not in self._inputs:
            raise InputError(f"src {clean}: not among the src inputs of this release (fetch the src again)")
        return self._inputs[clean]

    def read(self, path: str) -> bytes:
        oid = self._oid(path)
        if oid is None:
            raise InputError(f"{self._mirror.url}: no {path.strip('/')} in the release's src commit")
        return self._mirror.read_object(oid, path)

    def read_dir(self, path: str) -> dict[str, bytes]:
        """The regular files of one src directory ({} when the directory is absent)."""
        oid = self._oid(path)
        if oid is None:
            return {}
        return {n: f.data for n, f in self._mirror.read_tree_object(oid, path).items() if not f.is_symlink}


def trust_directory(ws: Workspace, release: str, arch: str, trust: TrustSettings, src: SrcLocation) -> Path | None:
    """Materialise the release's fingerprint trust store (trusted/, revoked/) for pkgrepo to read.

    "src:<dir>" reads it from the release's src (the objects src-inputs.json
    names): the trust anchors travel with the source the release is built from,
    as they do on a FreeBSD system.  Other values are directories.
    """
    if trust.signature_type != "fingerprints":
        return None
    base = trust.src_dir
    if base is None:
        return Path(trust.fingerprints)
    files = SrcFiles(src, SrcInputs.load(ws.src_inputs(release)))
    dest = ws.trust_dir(release, arch)
    for sub in ("trusted", "revoked"):
        wanted = files.read_dir(f"{base}/{sub}")
        if sub == "trusted" and not wanted:
            raise InputError(f"{src.url}: no {base}/trusted in the src of {release} "
                             f"(fingerprints = \"{trust.fingerprints}\")")
        target = dest / sub
        target.mkdir(parents=True, exist_ok=True)
        for old in target.iterdir():
            if old.name not in wanted:
                old.unlink()
        for name, data in wanted.items():
            write_if_changed(target / name, data)
    return dest


def pubkey(trust: TrustSettings, release: str) -> bytes | None:
    if trust.signature_type != "pubkey":
        return None
    try:
        return Path(trust.pubkey).read_bytes()
    except OSError as e:
        raise InputError(f"{trust.pubkey}: cannot read the public key for {release}: {e.strerror}") from None

"""src inputs of a release: the branch head and the files its images are made from.

After a fetch, each release gets two small records (rewritten only on change):

- src.json: url, branch, commit, gitrev (short), gitcount, commit time, subject —
  what the lock, the image annotations and snapshot names need;
- src-inputs.json: the git object id of every src path the release's steps read
  (mtree specs, master.passwd, group, termcap, caroot, pkg trust anchors) and the
  SOURCE_DATE_EPOCH.  Layers depend on this record, not on the commit, so a commit
  elsewhere in src does not rebuild any layer.
"""
from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import asdict
from pathlib import Path

from .config import Config, Release
from .errors import InputError
from .fsutil import pretty_json, read_json, write_if_changed
from .srcgit import SrcMirror
from .solver import read_lock
from .workspace import Workspace, pinned_lock


def mirrors(cfg: Config) -> dict[str, tuple[str, list[Release]]]:
    """Mirror label -> (URL, releases using it).  'src' is the configured FreeBSD src."""
    by_url: dict[str, list[Release]] = {}
    for r in sorted(cfg.releases.values(), key=lambda r: r.name):
        by_url.setdefault(cfg.src_url(r), []).append(r)
    default = cfg.src.url
    out = {}
    for url, rels in by_url.items():
        label = "src" if url == default else f"src-{rels[0].name}"
        out[label] = (url, rels)
    return out


def mirror_for(cfg: Config, release: Release) -> SrcMirror:
    url = cfg.src_url(release)
    return SrcMirror(Workspace.of(cfg).mirror(url, cfg.src.url), url)


def src_paths(cfg: Config, release: Release) -> list[str]:
    """Every src path (file or directory) that the release's images or its trust read."""
    paths: set[str] = set()
    for name in release.flavours:
        for step in cfg.flavours[name].steps:
            if step.kind == "mtree":
                paths.update(f"etc/mtree/{spec.split(':', 1)[0]}" for spec in step.get("specs"))
            elif step.kind == "accounts":
                paths.update((step.get("master_passwd"), step.get("group")))
            elif step.kind == "src-file":
                paths.add(step.get("src").rstrip("/"))
            elif step.kind == "caroot":
                paths.update((step.get("trusted"), step.get("untrusted")))
    if release.fingerprints.startswith("src:"):
        base = release.fingerprints[4:].rstrip("/")
        paths.update((f"{base}/trusted", f"{base}/revoked"))
    return sorted(paths)


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
        datetime.datetime.fromtimestamp(head_time, datetime.timezone.utc).strftime("%Y%m%d")
    if not (len(date) == 8 and date.isdigit()):
        raise InputError(f"RELEASE_BUILD_DATE: {date!r} is not YYYYMMDD")
    return date, f"{date}-{short}-{count}"


def _previous(path: Path, url: str, branch: str) -> dict | None:
    try:
        prev = read_json(path)
    except (OSError, ValueError):
        return None
    return prev if prev.get("url") == url and prev.get("branch") == branch else None


def fetch_sources(cfg: Config, label: str) -> None:
    """Fetch one mirror's branches and refresh src.json / src-inputs.json of its releases.

    Both records are rewritten only when their content changes; a head that did
    not move costs no history walk at all, a moved one only the new commits.
    """
    url, releases = mirrors(cfg)[label]
    mirror = mirror_for(cfg, releases[0])
    heads = mirror.fetch(sorted({r.branch for r in releases}))
    ws = Workspace.of(cfg)
    for r in releases:
        prev = _previous(ws.src_json(r.name), url, r.branch)
        paths = src_paths(cfg, r)
        wanted = pinned_commit(cfg, r) or heads[r.branch]
        if prev is not None and prev["commit"] == wanted and prev.get("inputs_paths") == paths:
            record = prev
        else:
            if prev is not None:
                with contextlib.suppress(InputError):
                    mirror.remember_count(prev["commit"], prev["count"])
            head = mirror.describe(r.branch, wanted)
            known = (prev["commit"], prev["inputs_changed"]["commit"]) \
                if prev is not None and prev.get("inputs_paths") == paths else None
            try:
                changed, changed_time = mirror.last_change(head.commit, paths, known)
            except InputError:
                changed, changed_time = mirror.last_change(head.commit, paths)
            record = {"url": url, **asdict(head), "inputs_paths": paths,
                      "inputs_changed": {"commit": changed, "time": changed_time}}
        if r.kind == "snapshot":
            record["build_date"], record["suffix"] = snapshot_suffix(record["time"], record["short"], record["count"])
        write_if_changed(ws.src_json(r.name), pretty_json(record))
        inputs = {p: mirror.object_id(record["commit"], p) for p in paths}
        epoch = source_date_epoch(cfg.pipeline.source_date_epoch, record["time"], record["inputs_changed"]["time"])
        write_if_changed(ws.src_inputs(r.name), pretty_json({"inputs": inputs, "source_date_epoch": epoch}))


def pinned_commit(cfg: Config, release: Release) -> str | None:
    """The src commit a pinned release is built from: the one its lock records."""
    for arch in release.arches:
        path = pinned_lock(cfg, release, arch)
        if path is not None:
            return read_lock(path)["src"]["commit"]
    return None


def read_src(ws: Workspace, release: str) -> dict:
    try:
        return read_json(ws.src_json(release))
    except FileNotFoundError:
        raise InputError(f"{ws.src_json(release)}: src not fetched yet (run the fetch:src task)") from None


def trust_directory(cfg: Config, release: Release, dest: Path) -> Path | None:
    """Materialise the release's fingerprint trust store (trusted/, revoked/) in *dest*.

    "src:<dir>" reads it from the release's src commit: the trust anchors travel
    with the source the release is built from, as they do on a FreeBSD system.
    Other values are directories relative to the project.
    """
    spec = release.fingerprints
    if release.signature_type != "fingerprints":
        return None
    if not spec.startswith("src:"):
        path = Path(spec)
        return path if path.is_absolute() else cfg.project / path
    src = read_src(Workspace.of(cfg), release.name)
    mirror = mirror_for(cfg, release)
    base = spec[4:].rstrip("/")
    for sub in ("trusted", "revoked"):
        wanted: dict[str, bytes] = {}
        if mirror.object_id(src["commit"], f"{base}/{sub}") is not None:
            wanted = {n: f.data for n, f in mirror.read_tree(src["commit"], f"{base}/{sub}").items()
                      if not f.is_symlink}
        elif sub == "trusted":
            raise InputError(f"{src['url']}: no {base}/trusted in src commit {src['commit'][:12]} "
                             f"(fingerprints = \"{spec}\" for {release.name})")
        target = dest / sub
        target.mkdir(parents=True, exist_ok=True)
        for old in target.iterdir():
            if old.name not in wanted:
                old.unlink()
        for name, data in wanted.items():
            write_if_changed(target / name, data)
    return dest


def pubkey(cfg: Config, release: Release) -> bytes | None:
    if release.signature_type != "pubkey":
        return None
    path = Path(release.pubkey)
    if not path.is_absolute():
        path = cfg.project / path
    try:
        return path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read the public key for {release.name}: {e.strerror}") from None

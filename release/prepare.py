"""Fetch, lock, download: everything a build needs before the first layer.

Each function is the body of one doit task (fetch:<release>:<arch>,
lock:<release>:<arch>, download:<release>:<arch>); each takes the configuration
and names, and writes its results atomically, only when they change.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .cache import PackageCache
from .config import Config
from .errors import LockError
from .fsutil import pretty_json, read_json, write_if_changed
from .http import Fetcher
from .pkgrepo import Trust, fetch_catalogue, read_catalogue
from .progress import Progress
from .solver import Universe, check_lock, make_lock, read_lock, solve, write_lock
from .sources import pubkey, read_src, trust_directory
from .workspace import Workspace, pinned_lock

log = logging.getLogger(__name__)


def fetcher_for(cfg: Config, progress: Progress | None = None) -> Fetcher:
    p = cfg.pipeline
    return Fetcher(retries=p.http_retries, timeout=p.http_timeout, max_workers=p.jobs,
                   user_agent=p.user_agent, progress=progress)


def fetch_repository(cfg: Config, release: str, arch: str) -> dict:
    """Refresh the verified catalogue of one release x arch; returns request statistics."""
    r = cfg.release(release)
    ws = Workspace.of(cfg)
    dest = ws.repo(release, arch)
    trust = Trust(r.signature_type, trust_directory(cfg, r, dest / "fingerprints"), pubkey(cfg, r))
    with fetcher_for(cfg) as fetcher:
        changed = fetch_catalogue(fetcher, cfg.pkgbase_url(r, arch), dest, trust)
        stats = fetcher.stats
    log.info("%s %s: catalogue %s (%d requests, %d bytes)", release, arch,
             "changed" if changed else "unchanged", stats.requests, stats.bytes)
    return {"changed": changed, "requests": stats.requests, "bytes": stats.bytes}


def flavour_parents(cfg: Config, release: str) -> dict[str, str | None]:
    r = cfg.release(release)
    return {f: cfg.flavours[f].parent for f in r.flavours}


def lock_release(cfg: Config, release: str, arch: str) -> None:
    """Resolve every flavour (or take the pinned lock) and write the lock and per-flavour package sets."""
    r = cfg.release(release)
    ws = Workspace.of(cfg)
    pinned = pinned_lock(cfg, r, arch)
    if pinned is not None:
        lock = read_lock(pinned)
        check_lock(lock, str(pinned), release=release, arch=arch, flavours=flavour_parents(cfg, release))
    else:
        catalogue = read_catalogue(ws.repo(release, arch))
        url = cfg.pkgbase_url(r, arch)
        universe = Universe(catalogue["packages"], url)
        wanted = [(f, cfg.flavours[f].parent, r.flavour_packages(cfg.flavours[f])) for f in r.flavours]
        src = read_src(ws, release)
        lock = make_lock(
            release=release, arch=arch, abi=r.abi(arch), repository=url,
            catalogue={k: catalogue[k] for k in ("archive", "payload", "payload_sha256", "fingerprint")},
            src={k: src[k] for k in ("url", "branch", "commit", "short", "count", "time")},
            flavours=solve(universe, wanted))
    write_lock(ws.lock(release, arch), lock)
    for name, flavour in lock["flavours"].items():
        record = {"release": release, "arch": arch, "flavour": name, "parent": flavour["parent"],
                  "packages": flavour["packages"]}
        write_if_changed(ws.packages_json(release, arch, name), pretty_json(record))


def locked_packages(lock: dict) -> list[dict]:
    """Every package of a lock once, in flavour order then by name."""
    seen: dict[str, dict] = {}
    for flavour in lock["flavours"].values():
        for p in flavour["packages"]:
            seen.setdefault(p["sum"], p)
    return list(seen.values())


def download_packages(cfg: Config, release: str, arch: str) -> dict:
    """Make sure every locked package is in the cache, downloading in parallel (bounded)."""
    r = cfg.release(release)
    ws = Workspace.of(cfg)
    lock = read_lock(ws.lock(release, arch))
    cache = PackageCache(ws.cache())
    base = cfg.pkgbase_url(r, arch)
    packages = locked_packages(lock)
    missing = [p for p in packages if not cache.has(p["sum"])]
    progress = Progress(f"{release} {arch}", total=sum(int(p.get("pkgsize") or 0) for p in missing))
    with fetcher_for(cfg, progress) as fetcher:
        def ensure(p: dict) -> Path:
            return cache.ensure(fetcher, f"{base}/{p['path']}", name=f"{p['name']}-{p['version']}",
                                sum=p["sum"], size=p.get("pkgsize"))
        with ThreadPoolExecutor(max_workers=cfg.pipeline.jobs) as pool:
            paths = list(pool.map(ensure, missing))
        stats = fetcher.stats
    if missing:
        progress.close()
    record = {"packages": {p["sum"]: str(cache.path_for(p["sum"]).relative_to(ws.root)) for p in packages}}
    write_if_changed(ws.downloaded(release, arch), pretty_json(record))
    log.info("%s %s: %d packages, %d downloaded (%d bytes)", release, arch, len(packages), len(paths),
             stats.bytes)
    return {"downloaded": len(paths), "requests": stats.requests, "bytes": stats.bytes}


def downloads_present(workdir: str, release: str, arch: str) -> bool:
    """doit uptodate check: every package the last download recorded is still in the cache."""
    ws = Workspace(Path(workdir))
    try:
        record = read_json(ws.downloaded(release, arch))
    except (OSError, ValueError):
        return False
    return all((ws.root / rel).is_file() for rel in record.get("packages", {}).values())


def require_lock(ws: Workspace, release: str, arch: str) -> dict:
    try:
        return read_lock(ws.lock(release, arch))
    except LockError:
        raise LockError(f"{ws.lock(release, arch)}: no lock yet (run lock:{release}:{arch})") from None

"""Fetch, lock, download: everything a build needs before the first layer.

Each function is the body of one stage (the catalogue of a release x arch, its
lock, its downloads); each takes its plan (release.plans) and writes its
results atomically, only when they change.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cache import PackageCache
from .errors import InputError
from .fetcher import Fetcher
from .pkgrepo import Trust, fetch_catalogue, read_catalogue
from .plans import CataloguePlan, DownloadPlan, GcPlan, Http, LockPlan
from .progress import Progress
from .records import Downloaded, Lock, LockedPackage, SrcHead
from .solver import Universe, make_lock, solve
from .sources import pubkey, trust_directory

log = logging.getLogger(__name__)


def fetcher_for(http: Http, progress: Progress | None = None) -> Fetcher:
    return Fetcher(retries=http.retries, timeout=http.timeout, max_workers=http.jobs,
                   user_agent=http.user_agent, progress=progress)


def fetch_repository(plan: CataloguePlan) -> dict[str, Any]:
    """Refresh the verified catalogue of one release x arch; returns request statistics."""
    ws = plan.workspace
    dest = ws.repo(plan.release, plan.arch)
    trust = Trust(plan.trust.signature_type,
                  trust_directory(ws, plan.release, plan.arch, plan.trust, plan.src),
                  pubkey(plan.trust, plan.release))
    with fetcher_for(plan.http) as fetcher:
        changed = fetch_catalogue(fetcher, plan.url, dest, trust)
        stats = fetcher.stats
    log.info("%s %s: catalogue %s (%d requests, %d bytes)", plan.release, plan.arch,
             "changed" if changed else "unchanged", stats.requests, stats.bytes)
    return {"changed": changed, "requests": stats.requests, "bytes": stats.bytes}


def lock_release(plan: LockPlan) -> None:
    """Resolve every flavour (or take the pinned lock) and write the lock and per-flavour package sets."""
    ws = plan.workspace
    parents = {f.name: f.parent for f in plan.flavours}
    if plan.pinned:
        lock = Lock.load(Path(plan.pinned))
        lock.check(plan.pinned, release=plan.release, arch=plan.arch, flavours=parents)
    else:
        catalogue = read_catalogue(ws.repo(plan.release, plan.arch))
        universe = Universe(catalogue["packages"], plan.url)
        src = SrcHead.load(ws.src_json(plan.release))
        lock = Lock(make_lock(
            release=plan.release, arch=plan.arch, abi=plan.abi, repository=plan.url,
            catalogue={k: catalogue[k] for k in ("archive", "payload", "payload_sha256", "fingerprint")},
            src={"url": src.url, "branch": src.branch, "commit": src.commit, "short": src.short,
                 "count": src.count, "time": src.time},
            flavours=solve(universe, [(f.name, f.parent, f.packages) for f in plan.flavours])))
    lock.save(ws.lock(plan.release, plan.arch))
    for name in lock.flavour_names():
        lock.package_set(name).save(ws.packages_json(plan.release, plan.arch, name))


def download_packages(plan: DownloadPlan) -> dict[str, Any]:
    """Make sure every locked package is in the cache, downloading in parallel (bounded)."""
    ws = plan.workspace
    lock = Lock.load(ws.lock(plan.release, plan.arch))
    cache = PackageCache(ws.cache())
    packages = lock.packages()
    missing = [p for p in packages if not cache.has(p.sum)]
    progress = Progress(f"{plan.release} {plan.arch}", total=sum(int(p.pkgsize or 0) for p in missing))
    with fetcher_for(plan.http, progress) as fetcher:
        def ensure(p: LockedPackage) -> Path:
            return cache.ensure(fetcher, f"{plan.url}/{p.path}", name=p.label, sum=p.sum, size=p.pkgsize)
        fetcher.each(ensure, missing)
        stats = fetcher.stats
    if missing:
        progress.close()
    Downloaded({p.sum: str(cache.path_for(p.sum).relative_to(ws.root)) for p in packages}).save(
        ws.downloaded(plan.release, plan.arch))
    log.info("%s %s: %d packages, %d downloaded (%d bytes)", plan.release, plan.arch, len(packages), len(missing),
             stats.bytes)
    return {"downloaded": len(missing), "requests": stats.requests, "bytes": stats.bytes}


def downloads_present(plan: DownloadPlan) -> bool:
    """Up-to-date check: every package the last download recorded is still in the cache."""
    ws = plan.workspace
    try:
        record = Downloaded.load(ws.downloaded(plan.release, plan.arch))
    except InputError:
        return False
    return all((ws.root / rel).is_file() for rel in record.packages.values())


def collect_garbage(plan: GcPlan, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Remove cached packages no lock of the configuration names, and kept ones whose bytes no longer match
    their sum (the next download fetches them again); their remembered metadata goes with them."""
    keep: set[str] = set()
    for path in plan.locks:
        try:
            keep.update(p.sum for p in Lock.load(Path(path)).packages())
        except InputError:
            continue                    # a release not locked yet keeps nothing
    cache = PackageCache(plan.workspace.cache())
    damaged = sorted(s for s in keep if cache.has(s) and not cache.verify(s))
    removed = cache.gc(keep - set(damaged))
    for pkg in removed:
        meta = plan.workspace.package_meta(pkg.stem)
        if meta.is_file():
            meta.unlink()
    say(f"gc: {len(removed) - len(damaged)} unused and {len(damaged)} damaged packages removed, "
        f"{len(keep) - len(damaged)} kept")
    return {"removed": len(removed), "damaged": len(damaged), "kept": len(keep) - len(damaged)}


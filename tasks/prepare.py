"""Tasks up to the package cache: demo inputs, fetch, lock, download."""
from __future__ import annotations

from dataclasses import asdict

from release import prepare, sources
from release.demo import inputs as demo_inputs

from .common import CONFIG, WS, act, reads


def _demo_task_dep(release) -> list[str]:
    return ["demo"] if release.demo else []


def task_demo():
    """Generate the embedded demo release's pkgbase repositories and src tree (offline)."""
    demo = [r for r in CONFIG.releases.values() if r.demo]
    if not demo:
        return
    yield {
        "basename": "demo",
        "actions": [act(demo_inputs.generate_for, cfg=CONFIG)],
        "file_dep": demo_inputs.generator_files(),
        "targets": [demo_inputs.stamp_path(WS.demo())],
        "uptodate": [reads(demo=[demo_inputs.parameters(CONFIG, r) for r in demo])],
        "doc": "generate the embedded demo repositories and src tree",
        "verbosity": 1,
    }


def task_fetch():
    """Fetch src branches (git) and verified pkgbase catalogues; unchanged upstream costs one small request."""
    for label, (url, releases) in sources.mirrors(CONFIG).items():
        yield {
            "name": label,
            "actions": [act(sources.fetch_sources, cfg=CONFIG, label=label)],
            "task_dep": sorted({d for r in releases for d in _demo_task_dep(r)}),
            "targets": [str(WS.src_json(r.name)) for r in releases] +
                       [str(WS.src_inputs(r.name)) for r in releases],
            "doc": f"fetch src branches {', '.join(sorted({r.branch for r in releases}))} from {url}",
        }
    labels = {r.name: label for label, (_, rels) in sources.mirrors(CONFIG).items() for r in rels}
    for r in CONFIG.releases.values():
        for arch in r.arches:
            yield {
                "name": f"{r.name}:{arch}",
                "actions": [act(prepare.fetch_repository, cfg=CONFIG, release=r.name, arch=arch)],
                "task_dep": [f"fetch:{labels[r.name]}"] + _demo_task_dep(r),
                "targets": [str(WS.catalogue_json(r.name, arch))],
                "doc": f"fetch and verify the {r.repo} catalogue for {r.abi(arch)}",
            }


def task_lock():
    """Resolve each flavour's package closure into the release x arch lock."""
    for r in CONFIG.releases.values():
        flavours = {f: asdict(CONFIG.flavours[f]) for f in r.flavours}
        for arch in r.arches:
            pinned = prepare.pinned_lock(CONFIG, r, arch)
            deps = [str(pinned)] if pinned else [str(WS.catalogue_json(r.name, arch)), str(WS.src_json(r.name))]
            yield {
                "name": f"{r.name}:{arch}",
                "actions": [act(prepare.lock_release, cfg=CONFIG, release=r.name, arch=arch)],
                "file_dep": deps,
                "task_dep": [] if pinned else [f"fetch:{r.name}:{arch}"],
                "targets": [str(WS.lock(r.name, arch))] +
                           [str(WS.packages_json(r.name, arch, f)) for f in r.flavours],
                "uptodate": [reads(flavours={f: [v["parent"], list(r.flavour_packages(CONFIG.flavours[f]))]
                                             for f, v in flavours.items()},
                                   url=CONFIG.pkgbase_url(r, arch), pinned=str(pinned or ""))],
                "doc": f"lock {r.name} {arch}: exact packages per flavour" + (" (pinned)" if pinned else ""),
            }


def task_download():
    """Download every locked package into the content-addressed cache (verified, resumable)."""
    for r in CONFIG.releases.values():
        for arch in r.arches:
            yield {
                "name": f"{r.name}:{arch}",
                "actions": [act(prepare.download_packages, cfg=CONFIG, release=r.name, arch=arch)],
                "file_dep": [str(WS.lock(r.name, arch))],
                "task_dep": [f"lock:{r.name}:{arch}"],
                "targets": [str(WS.downloaded(r.name, arch))],
                "uptodate": [(prepare.downloads_present, [str(WS.root), r.name, arch])],
                "doc": f"download the packages locked for {r.name} {arch} into the cache",
            }

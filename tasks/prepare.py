"""Tasks up to the package cache: demo inputs, fetch, lock, download, and the cache's gc."""
from __future__ import annotations

from release import planner, prepare, sources
from release.demo import inputs as demo_inputs

from .common import CONFIG, MATRIX, planned, say


def _demo_task_dep(release) -> list[str]:
    return ["demo"] if release.demo else []


def task_demo():
    """Generate the embedded demo release's pkgbase repositories and src tree (offline)."""
    plan = planner.demo_plan(CONFIG)
    if plan is None:
        return
    task = planned(plan, demo_inputs.generate_for, doc="generate the embedded demo repositories and src tree")
    task["file_dep"] = demo_inputs.generator_files()
    yield {"basename": "demo", **task, "verbosity": 1}


def task_fetch():
    """Fetch src branches (git) and verified pkgbase catalogues; unchanged upstream costs one small request."""
    labels = {}
    for plan in planner.src_plans(MATRIX):
        rels = [MATRIX.release(r.name) for r in plan.releases]
        labels.update({r.name: plan.label for r in rels})
        yield {"name": plan.label,
               **planned(plan, sources.fetch_sources, always=True,
                         doc=f"fetch src branches {', '.join(plan.branches)} from {plan.src.url}"),
               "task_dep": sorted({d for r in rels for d in _demo_task_dep(r)})}
    for name, resolved in MATRIX.releases.items():
        r = resolved.release
        for arch in r.arches:
            plan = planner.catalogue_plan(MATRIX, name, arch)
            yield {"name": f"{name}:{arch}",
                   **planned(plan, prepare.fetch_repository, always=True,
                             doc=f"fetch and verify the {r.repo} catalogue for {r.abi(arch)}"),
                   "task_dep": [f"fetch:{labels[name]}"] + _demo_task_dep(r)}


def task_lock():
    """Resolve each flavour's package closure into the release x arch lock."""
    for name, resolved in MATRIX.releases.items():
        for arch in resolved.release.arches:
            plan = planner.lock_plan(MATRIX, name, arch)
            yield {"name": f"{name}:{arch}",
                   **planned(plan, prepare.lock_release,
                             doc=f"lock {name} {arch}: exact packages per flavour"
                                 + (" (pinned)" if plan.pinned else ""))}


def task_download():
    """Download every locked package into the content-addressed cache (verified, resumable)."""
    for name, resolved in MATRIX.releases.items():
        for arch in resolved.release.arches:
            plan = planner.download_plan(MATRIX, name, arch)
            yield {"name": f"{name}:{arch}",
                   **planned(plan, prepare.download_packages, uptodate=[(prepare.downloads_present, [plan])],
                             doc=f"download the packages locked for {name} {arch} into the cache")}


def task_gc():
    """Remove cached packages that no configured release's lock names."""
    return {"basename": "gc",
            **planned(planner.gc_plan(MATRIX), prepare.collect_garbage, always=True, say=say,
                      doc="remove cached packages no lock names, and damaged ones"),
            "verbosity": 2}

"""publish:<release> (download tree) and nightly (every snapshot release)."""
from __future__ import annotations

import os

from doit import get_var

from release import publish

from .common import CONFIG, act


def _root() -> str | None:
    return get_var("publish_root", None) or os.environ.get("RELEASE_PUBLISH_ROOT") or CONFIG.publish.root or None


def task_publish():
    """Publish a built release into the download tree (atomic Latest, snapshot dates, change reports)."""
    root = _root()
    for r in CONFIG.releases.values():
        yield {
            "name": r.name,
            "actions": [act(publish.publish_release_to, cfg=CONFIG, release=r.name, root=root)],
            "task_dep": [f"build:{r.name}"],
            "uptodate": [False],        # compares with the tree each time; an unchanged build writes nothing
            "doc": f"publish {r.version} under "
                   f"{'snapshots' if r.kind == 'snapshot' else 'releases'}/OCI-IMAGES/{r.version}/<arch>/",
        }


def task_nightly():
    """Build every snapshot release (stable and main branches), and publish them when a tree is configured."""
    snapshots = [r for r in CONFIG.releases.values() if r.kind == "snapshot"]
    deps = [f"build:{r.name}" for r in snapshots]
    if _root():
        deps += [f"publish:{r.name}" for r in snapshots]
    return {
        "actions": None,
        "task_dep": deps,
        "doc": "build (and publish, when a tree is configured) every snapshot release: "
               + ", ".join(r.name for r in snapshots),
    }

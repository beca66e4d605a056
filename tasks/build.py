"""Group tasks: build:<release> and build:<release>:<arch>."""
from __future__ import annotations

from .common import CONFIG


def task_build():
    """Build a release for every architecture (build:<release>) or one (build:<release>:<arch>)."""
    for r in CONFIG.releases.values():
        for arch in r.arches:
            yield {
                "name": f"{r.name}:{arch}",
                "actions": None,
                "task_dep": [f"download:{r.name}:{arch}"],
                "doc": f"build {r.version} for {arch}",
            }
        yield {
            "name": r.name,
            "actions": None,
            "task_dep": [f"build:{r.name}:{a}" for a in r.arches],
            "doc": f"build {r.version} for {', '.join(r.arches)}",
        }

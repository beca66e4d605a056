"""Group tasks: build:<release> and build:<release>:<arch>."""
from __future__ import annotations

from .common import CONFIG


def task_build():
    """Build a release: every architecture (build:<release>) or one (build:<release>:<arch>)."""
    for r in CONFIG.releases.values():
        for arch in r.arches:
            yield {
                "name": f"{r.name}:{arch}",
                "actions": None,
                "task_dep": [f"checksum:{r.name}:{arch}"],
                "doc": f"layers, images, archives and checksums of {r.version} for {arch}",
            }
        yield {
            "name": r.name,
            "actions": None,
            "task_dep": [f"build:{r.name}:{a}" for a in r.arches] + [f"index:{r.name}:{f}" for f in r.flavours],
            "doc": f"{r.version} for {', '.join(r.arches)}, with multi-arch indexes and layouts",
        }

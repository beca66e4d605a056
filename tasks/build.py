"""Group tasks: build:<release> and build:<release>:<arch>."""
from __future__ import annotations

from .common import MATRIX


def task_build():
    """Build a release: every architecture (build:<release>) or one (build:<release>:<arch>)."""
    for r in (x.release for x in MATRIX.releases.values()):
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


def task_config_check():
    """Show the release matrix as it will be built: each release completed from its own src."""
    from release.matrix import describe

    from .common import act, say_lines
    return {"basename": "config-check", "actions": [act(say_lines, lines=describe(MATRIX))], "uptodate": [False],
            "verbosity": 2, "doc": "validate the configuration and show every release, flavour and package "
                                   "as read from its src (fetches the src)"}

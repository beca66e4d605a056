"""verify:<release>: rebuild a release from its locks in a scratch directory and compare."""
from __future__ import annotations

from release import verify

from .common import CONFIG, act, say


def task_verify():
    """Rebuild a release from its lock files in a scratch directory; report every difference.

    It checks the build as it is (no task_dep on build: building first would
    "repair" the CHECKSUM files of an archive altered after the build).
    """
    for r in CONFIG.releases.values():
        yield {
            "name": r.name,
            "actions": [act(verify.verify_release, cfg=CONFIG, release=r.name, say=say)],
            "uptodate": [False],
            "verbosity": 2,
            "doc": f"rebuild {r.version} from its locks and compare every blob, manifest, index and archive",
        }

"""verify:<release>: rebuild a release from its locks in a scratch directory and compare."""
from __future__ import annotations

from release import planner, verify

from .common import MATRIX, act, say


def task_verify():
    """Rebuild a release from its lock files in a scratch directory; report every difference.

    It checks the build as it is (no task_dep on build: building first would
    "repair" the CHECKSUM files of an archive altered after the build).
    """
    for r in (x.release for x in MATRIX.releases.values()):
        yield {
            "name": r.name,
            "actions": [act(verify.rebuild_and_compare, plan=planner.rebuild_plan(MATRIX, r.name), say=say)],
            "uptodate": [False],
            "verbosity": 2,
            "doc": f"rebuild {r.version} from its locks and compare every blob, manifest, index and archive",
        }

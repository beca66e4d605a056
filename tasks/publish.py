"""publish:<release> (download tree), push:<release> (registries), nightly, verify-tree."""
from __future__ import annotations

from doit import get_var

from release import attest, planner, publish, push

from .common import CONFIG, MATRIX, act, say


def _root_override() -> str | None:
    return get_var("publish_root", None)


def task_push():
    """Push a release's multi-arch indexes, manifests and blobs (plus signatures and SBOMs) to the registries."""
    for r in (x.release for x in MATRIX.releases.values()):
        yield {
            "name": r.name,
            "actions": [act(push.push_release, plan=planner.push_plan(MATRIX, r.name), say=say)],
            "task_dep": [f"build:{r.name}"],
            "uptodate": [False],        # HEAD requests make a repeated push cost no upload
            "verbosity": 2,
            "doc": f"push {r.version} to " + (", ".join(CONFIG.registries) or "the configured registries"),
        }


def task_publish():
    """Publish a built release into the download tree (and push it, when registries are configured)."""
    for r in (x.release for x in MATRIX.releases.values()):
        yield {
            "name": r.name,
            "actions": [act(publish.publish_release, plan=planner.publish_plan(MATRIX, r.name, _root_override()))],
            "task_dep": [f"build:{r.name}"] + ([f"push:{r.name}"] if CONFIG.registries else []),
            "uptodate": [False],        # compares with the tree each time; an unchanged build writes nothing
            "doc": f"publish {r.version} under "
                   f"{'snapshots' if r.kind == 'snapshot' else 'releases'}/OCI-IMAGES/{r.version}/<arch>/",
        }


def task_nightly():
    """Build every snapshot release (stable and main branches), and publish them when a tree is configured."""
    snapshots = [x.release for x in MATRIX.releases.values() if x.release.kind == "snapshot"]
    deps = [f"build:{r.name}" for r in snapshots]
    if planner.publish_root(CONFIG, _root_override()):
        deps += [f"publish:{r.name}" for r in snapshots]
    elif CONFIG.registries:
        deps += [f"push:{r.name}" for r in snapshots]
    return {
        "actions": None,
        "task_dep": deps,
        "doc": "build (and publish or push, when configured) every snapshot release: "
               + ", ".join(r.name for r in snapshots),
    }


def task_verify_tree():
    """Check a download tree: detached CHECKSUM signatures against the trusted key, checksums, archives."""
    return {
        "basename": "verify-tree",
        "actions": [act(attest.verify_published_tree, plan=planner.tree_plan(CONFIG, _root_override()), say=say)],
        "uptodate": [False],
        "verbosity": 2,
        "doc": "verify every published directory of the download tree (signatures, checksums, archives)",
    }

"""Tasks from the package cache to released files: layer, image, index, archive, sbom, checksum."""
from __future__ import annotations

from release import attest, image, layer, planner

from .common import MATRIX, act, planned


def task_layer():
    """Stream a flavour's packages and install steps into its deterministic layer blob."""
    for r in MATRIX.releases.values():
        r = r.release
        for arch in r.arches:
            for name in r.flavours:
                plan = planner.layer_plan(MATRIX, r.name, arch, name)
                yield {"name": f"{r.name}:{arch}:{name}",
                       **planned(plan, layer.build_layer, doc=f"layer of {r.version} {arch} {name}"),
                       # the layer reads the cache the download fills (by the sums its package set names)
                       "task_dep": [f"download:{r.name}:{arch}"]}


def task_image():
    """Write a flavour's OCI config and manifest over its layer chain, for one architecture."""
    for r in MATRIX.releases.values():
        r = r.release
        for arch in r.arches:
            for name in r.flavours:
                plan = planner.image_plan(MATRIX, r.name, arch, name)
                yield {"name": f"{r.name}:{arch}:{name}",
                       **planned(plan, image.build_image, doc=f"OCI config and manifest of {r.version} {arch} {name}")}


def task_index():
    """Write a flavour's multi-arch image index and its OCI image layout (all architectures)."""
    for r in MATRIX.releases.values():
        r = r.release
        for name in r.flavours:
            plan = planner.index_plan(MATRIX, r.name, name)
            yield {"name": f"{r.name}:{name}",
                   **planned(plan, image.build_index, doc=f"multi-arch index and OCI layout of {r.version} {name}")}


def task_archive():
    """Write FreeBSD-<version>-<arch>-container-image-<flavour>.txz (single-arch OCI archive)."""
    for r in MATRIX.releases.values():
        r = r.release
        for arch in r.arches:
            for name in r.flavours:
                plan = planner.archive_plan(MATRIX, r.name, arch, name)
                yield {"name": f"{r.name}:{arch}:{name}", **planned(plan, image.build_archive, doc=plan.name)}


def task_sbom():
    """Write an image's SPDX 2.3 SBOM next to its archive (every package, licences, sums, src commit)."""
    for r in MATRIX.releases.values():
        r = r.release
        for arch in r.arches:
            for name in r.flavours:
                plan = planner.sbom_plan(MATRIX, r.name, arch, name)
                yield {"name": f"{r.name}:{arch}:{name}",
                       **planned(plan, attest.build_sbom, doc=f"SPDX SBOM of {r.version} {arch} {name}")}


def task_checksum():
    """Write CHECKSUM.SHA256 and CHECKSUM.SHA512 for one architecture's archives and SBOMs."""
    for r in MATRIX.releases.values():
        r = r.release
        for arch in r.arches:
            plan = planner.checksum_plan(MATRIX, r.name, arch)
            yield {"name": f"{r.name}:{arch}",
                   **planned(plan, image.write_release_checksums, doc=f"CHECKSUM.SHA256/512 of {r.version} {arch}")}


def task_verify_checksums():
    """Check a release's archives against its CHECKSUM files (always runs)."""
    for r in MATRIX.releases.values():
        r = r.release
        yield {
            "basename": "verify-checksums",
            "name": r.name,
            "actions": [act(image.verify_release_checksums, plan=planner.verify_checksums_plan(MATRIX, r.name))],
            "uptodate": [False],
            "doc": f"verify the {r.version} archives against CHECKSUM.SHA256/512",
        }

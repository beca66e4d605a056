"""Images, multi-arch indexes, .txz archives and checksums of a release (stage bodies).

- build_image: per release x arch x flavour, the OCI config and manifest over
  the flavour's layer chain (static first), with FreeBSD's annotations and
  base.name/base.digest pointing at the parent image;
- build_index: per release x flavour, the multi-arch image index and an OCI
  image layout holding every architecture (for `skopeo copy --all`);
- build_archive: per arch and flavour, the single-arch
  FreeBSD-<version>-<arch>-container-image-<flavour>.txz;
- write_release_checksums / verify_release_checksums: CHECKSUM.SHA256 and .SHA512.

Each takes its plan (release.plans); names and settings come from there, the
earlier stages' results from the records the plan names.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .archive import write_archive
from .checksum import verify_checksums, write_checksums
from .errors import LayerError, ReleaseError
from .licences import image_license, license_expression
from .names import image_version
from .oci import (MEDIA_CONFIG, document_bytes, image_config, image_index, image_manifest, rfc3339,
                  with_ref_name, write_json_blob, write_layout)
from .plans import ArchivePlan, ChecksumPlan, ImagePlan, IndexPlan, VerifyChecksumsPlan
from .records import ArchiveRecord, ImageRecord, IndexRecord, LayerRecord, PackageIndex, PackageSet, SrcHead

VENDOR = "The FreeBSD Project"
URL = "https://www.FreeBSD.org"


def check_conflicts(plan: ImagePlan) -> None:
    """A path owned by packages of two layers must be the same thing in both (pkg would refuse)."""
    ws = plan.workspace
    owners: dict[str, tuple[list[str], str]] = {}     # path -> ([kind, digest, package], flavour)
    for f in plan.chain:
        for path, (kind, digest, package) in PackageIndex.load(
                ws.package_index_json(plan.release, plan.arch, f)).paths.items():
            seen = owners.get(path)
            if seen is not None and seen[0][:2] != [kind, digest]:
                raise LayerError(f"{path}: installed by {seen[0][2]} (flavour {seen[1]}) and differently by "
                                 f"{package} (flavour {f}) for {plan.release} {plan.arch}")
            owners[path] = ([kind, digest, package], f)


def _licenses(plan: ImagePlan) -> str:
    ws = plan.workspace
    packages = [p for f in plan.chain for p in PackageSet.load(ws.packages_json(plan.release, plan.arch, f)).packages]
    return image_license([license_expression(p.licenses, p.licenselogic) for p in packages])


def build_image(plan: ImagePlan) -> dict[str, Any]:
    ws, r, a = plan.workspace, plan.release, plan.arch
    check_conflicts(plan)
    layers = [LayerRecord.load(ws.layer_json(r, a, c)) for c in plan.chain]
    src = SrcHead.load(ws.src_json(r))
    sde = src.source_date_epoch
    config = image_config(architecture=plan.platform["architecture"], variant=plan.platform.get("variant", ""),
                          created=sde, cmd=list(plan.cmd), env=list(plan.env),
                          diff_ids=[layer.diff_id for layer in layers],
                          history=[{"created_by": layer.created_by, "comment": layer.comment} for layer in layers],
                          labels=None)
    config_desc = write_json_blob(ws.blobs(), config, MEDIA_CONFIG)
    annotations = {
        "org.opencontainers.image.version": image_version(plan.version, plan.kind, src),
        "org.opencontainers.image.revision": src.commit,
        "org.opencontainers.image.source": plan.source,
        "org.opencontainers.image.created": rfc3339(sde),
        "org.opencontainers.image.title": plan.title,
        "org.opencontainers.image.description": plan.description,
        "org.opencontainers.image.licenses": _licenses(plan),
        "org.opencontainers.image.vendor": VENDOR,
        "org.opencontainers.image.url": URL,
    }
    if plan.parent:
        parent = ImageRecord.load(ws.image_json(r, a, plan.parent))
        annotations["org.opencontainers.image.base.name"] = plan.parent_ref
        annotations["org.opencontainers.image.base.digest"] = parent.manifest["digest"]
    manifest_desc = write_json_blob(ws.blobs(), image_manifest(config_desc, [x.descriptor for x in layers],
                                                               annotations))
    ImageRecord(manifest=manifest_desc, platform=dict(plan.platform), config=config_desc,
                ref=plan.ref).save(ws.image_json(r, a, plan.flavour))
    return {"manifest": manifest_desc["digest"]}


def build_index(plan: IndexPlan) -> dict[str, Any]:
    ws = plan.workspace
    images = [ImageRecord.load(ws.image_json(plan.release, a, plan.flavour)) for a in plan.arches]
    src = SrcHead.load(ws.src_json(plan.release))
    annotations = {"org.opencontainers.image.version": image_version(plan.version, plan.kind, src),
                   "org.opencontainers.image.revision": src.commit,
                   "org.opencontainers.image.title": plan.title}
    index = image_index([(i.manifest, i.platform) for i in images], annotations)
    index_desc = write_json_blob(ws.blobs(), index)
    layout_index = image_index([(with_ref_name(index_desc, plan.ref), {})], None)
    layout = ws.layout_dir(plan.release, plan.flavour)
    record = ws.index_json(plan.release, plan.flavour)
    current = layout / "index.json"
    if current.is_file() and current.read_bytes() == document_bytes(layout_index) and record.is_file():
        return {"index": index_desc["digest"]}
    write_layout(layout, ws.blobs(), layout_index)
    IndexRecord(index=index_desc, layout=str(layout)).save(record)
    return {"index": index_desc["digest"]}


def build_archive(plan: ArchivePlan) -> dict[str, Any]:
    ws = plan.workspace
    image = ImageRecord.load(ws.image_json(plan.release, plan.arch, plan.flavour))
    index = image_index([(with_ref_name(image.manifest, image.ref), image.platform)], None)
    dest = ws.arch_dir(plan.release, plan.arch) / plan.name
    size, digests = write_archive(dest, ws.blobs(), index, xz_preset=plan.xz_preset, cache_dir=ws.xz_cache())
    ArchiveRecord(plan.name, size, digests).save(ws.archive_json(plan.release, plan.arch, plan.flavour))
    return {"archive": str(dest)}


def write_release_checksums(plan: ChecksumPlan) -> None:
    """CHECKSUM.SHA256/512 over the archives and their SBOMs (FreeBSD lists every ${OSRELEASE}* file).

    An archive's digests come from its record (taken as the archive stage wrote it), so a GB-size
    archive is not read again here.
    """
    ws = plan.workspace
    records = [ArchiveRecord.load(ws.archive_json(plan.release, plan.arch, f)) for f, _ in plan.archives]
    write_checksums(ws.arch_dir(plan.release, plan.arch), list(plan.names),
                    known={r.name: (r.size, r.digests) for r in records})


def verify_checksum_dirs(directory: Path) -> None:
    """Every per-arch directory under *directory* (or *directory* itself) against its CHECKSUM files."""
    dirs = [directory] if (directory / "CHECKSUM.SHA256").exists() else \
        sorted(p.parent for p in directory.glob("*/CHECKSUM.SHA256"))
    if not dirs:
        raise ReleaseError(f"{directory}: no CHECKSUM.SHA256 found")
    problems = [f"{d.name}: {p}" for d in dirs for p in verify_checksums(d)]
    if problems:
        raise ReleaseError(f"{directory}: " + "; ".join(problems))


def verify_release_checksums(plan: VerifyChecksumsPlan) -> None:
    verify_checksum_dirs(plan.workspace.out(plan.release))

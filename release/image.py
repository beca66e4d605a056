"""Images, multi-arch indexes, .txz archives and checksums of a release.

- build_image: per release x arch x flavour, the OCI config and manifest over
  the flavour's layer chain (static first), with FreeBSD's annotations and
  base.name/base.digest pointing at the parent image;
- build_index: per release x flavour, the multi-arch image index and an OCI
  image layout holding every architecture (for `skopeo copy --all`);
- build_archive: per arch and flavour, the single-arch
  FreeBSD-<version>-<arch>-container-image-<flavour>.txz;
- write_release_checksums / verify_release: CHECKSUM.SHA256 and .SHA512.
"""
from __future__ import annotations

from pathlib import Path

from .archive import write_archive
from .checksum import verify_checksums, write_checksums
from .config import Config
from .errors import LayerError, ReleaseError
from .fsutil import pretty_json, read_json, read_record, write_if_changed
from .oci import (MEDIA_CONFIG, image_config, image_index, image_manifest, rfc3339, with_ref_name,
                  write_json_blob, write_layout)
from .workspace import Workspace

VENDOR = "The FreeBSD Project"
URL = "https://www.FreeBSD.org"
# pkg license names -> SPDX identifiers (the ones FreeBSD's base packages use)
SPDX = {"BSD2CLAUSE": "BSD-2-Clause", "BSD3CLAUSE": "BSD-3-Clause", "BSD4CLAUSE": "BSD-4-Clause",
        "ISCL": "ISC", "MIT": "MIT", "APACHE20": "Apache-2.0", "OPENSSL": "OpenSSL", "PD": "LicenseRef-PD",
        "CDDL": "CDDL-1.0", "GPLv2": "GPL-2.0-only", "LGPL21": "LGPL-2.1-only", "ZLIB": "Zlib",
        "BSD": "BSD-2-Clause"}


def archive_name(cfg: Config, release: str, arch: str, flavour: str) -> str:
    r = cfg.release(release)
    return f"FreeBSD-{r.version}-{cfg.architectures[arch].file_arch}-container-image-{flavour}.txz"


def image_version(cfg: Config, release: str, src: dict) -> str:
    """The version images carry: 15.0-CURRENT-<YYYYMMDD>-<gitrev>-<gitcount> for snapshots."""
    r = cfg.release(release)
    return f"{r.version}-{src['suffix']}" if r.kind == "snapshot" and src.get("suffix") else r.version


def sbom_name(archive: str) -> str:
    """FreeBSD-...-container-image-static.txz -> FreeBSD-...-container-image-static.spdx.json"""
    return archive.removesuffix(".txz") + ".spdx.json"


def ref_name(cfg: Config, release: str, flavour: str, arch: str | None = None) -> str:
    version = cfg.release(release).version
    return f"freebsd-{flavour}:{version}" + (f"-{arch}" if arch else "")


def platform(cfg: Config, arch: str) -> dict:
    a = cfg.architectures[arch]
    p = {"architecture": a.oci, "os": "freebsd"}
    if a.variant:
        p["variant"] = a.variant
    return p


def image_record(ws: Workspace, release: str, arch: str, flavour: str) -> Path:
    return ws.flavour(release, arch, flavour) / "image.json"


def index_record(ws: Workspace, release: str, flavour: str) -> Path:
    return ws.root / "build" / release / f"index-{flavour}.json"


def layout_dir(ws: Workspace, release: str, flavour: str) -> Path:
    return ws.out(release) / "oci" / flavour


def arch_dir(ws: Workspace, release: str, arch: str) -> Path:
    return ws.out(release) / arch


def _licenses(ws: Workspace, release: str, arch: str, chain: list[str]) -> str:
    names: set[str] = set()
    for f in chain:
        for p in read_json(ws.packages_json(release, arch, f))["packages"]:
            names.update(p.get("licenses") or [])
    spdx = sorted({SPDX.get(n, f"LicenseRef-{n}") for n in names})
    return " AND ".join(spdx)


def check_conflicts(ws: Workspace, release: str, arch: str, chain: list[str]) -> None:
    """A path owned by packages of two layers must be the same thing in both (pkg would refuse)."""
    owners: dict[str, tuple[list, str]] = {}
    for f in chain:
        for path, (kind, digest, package) in read_json(ws.flavour(release, arch, f) / "index.json").items():
            seen = owners.get(path)
            if seen is not None and seen[0][:2] != [kind, digest]:
                raise LayerError(f"{path}: installed by {seen[0][2]} (flavour {seen[1]}) and differently by "
                                 f"{package} (flavour {f}) for {release} {arch}")
            owners[path] = ([kind, digest, package], f)


def build_image(cfg: Config, release: str, arch: str, flavour: str) -> dict:
    ws = Workspace.of(cfg)
    r = cfg.release(release)
    f = cfg.flavours[flavour]
    chain = [c.name for c in cfg.chain(flavour)]
    check_conflicts(ws, release, arch, chain)
    layers = [read_record(ws.flavour(release, arch, c) / "layer.json", f"layer:{release}:{arch}:{c}")
              for c in chain]
    sde = read_json(ws.src_inputs(release))["source_date_epoch"]
    src = read_json(ws.src_json(release))
    a = cfg.architectures[arch]
    config = image_config(architecture=a.oci, variant=a.variant, created=sde, cmd=list(f.cmd), env=list(f.env),
                          diff_ids=[layer["diff_id"] for layer in layers],
                          history=[{"created_by": layer["created_by"], "comment": layer["comment"]}
                                   for layer in layers], labels=None)
    config_desc = write_json_blob(ws.blobs(), config, MEDIA_CONFIG)
    annotations = {
        "org.opencontainers.image.version": image_version(cfg, release, src),
        "org.opencontainers.image.revision": src["commit"],
        "org.opencontainers.image.source": cfg.source(r),
        "org.opencontainers.image.created": rfc3339(sde),
        "org.opencontainers.image.title": f"FreeBSD {r.version} {flavour}",
        "org.opencontainers.image.description": f.description,
        "org.opencontainers.image.licenses": _licenses(ws, release, arch, chain),
        "org.opencontainers.image.vendor": VENDOR,
        "org.opencontainers.image.url": URL,
    }
    if f.parent:
        parent = read_record(image_record(ws, release, arch, f.parent), f"image:{release}:{arch}:{f.parent}")
        annotations["org.opencontainers.image.base.name"] = ref_name(cfg, release, f.parent, arch)
        annotations["org.opencontainers.image.base.digest"] = parent["manifest"]["digest"]
    layer_descs = [{"mediaType": layer["media_type"], "digest": layer["digest"], "size": layer["size"]}
                   for layer in layers]
    manifest_desc = write_json_blob(ws.blobs(), image_manifest(config_desc, layer_descs, annotations))
    record = {"manifest": manifest_desc, "platform": platform(cfg, arch), "config": config_desc,
              "ref": ref_name(cfg, release, flavour, arch)}
    write_if_changed(image_record(ws, release, arch, flavour), pretty_json(record))
    return {"manifest": manifest_desc["digest"]}


def build_index(cfg: Config, release: str, flavour: str) -> dict:
    ws = Workspace.of(cfg)
    r = cfg.release(release)
    images = [read_record(image_record(ws, release, a, flavour), f"image:{release}:{a}:{flavour}")
              for a in r.arches]
    src = read_json(ws.src_json(release))
    annotations = {"org.opencontainers.image.version": image_version(cfg, release, src),
                   "org.opencontainers.image.revision": src["commit"],
                   "org.opencontainers.image.title": f"FreeBSD {r.version} {flavour}"}
    index = image_index([(i["manifest"], i["platform"]) for i in images], annotations)
    index_desc = write_json_blob(ws.blobs(), index)
    layout_index = image_index([(with_ref_name(index_desc, ref_name(cfg, release, flavour)), {})], None)
    if _layout_current(ws, release, flavour, layout_index):
        return {"index": index_desc["digest"]}
    write_layout(layout_dir(ws, release, flavour), ws.blobs(), layout_index)
    write_if_changed(index_record(ws, release, flavour),
                     pretty_json({"index": index_desc, "layout": str(layout_dir(ws, release, flavour))}))
    return {"index": index_desc["digest"]}


def _layout_current(ws: Workspace, release: str, flavour: str, layout_index: dict) -> bool:
    from .oci import document_bytes
    current = layout_dir(ws, release, flavour) / "index.json"
    return current.is_file() and current.read_bytes() == document_bytes(layout_index) \
        and index_record(ws, release, flavour).is_file()


def build_archive(cfg: Config, release: str, arch: str, flavour: str) -> dict:
    ws = Workspace.of(cfg)
    image = read_record(image_record(ws, release, arch, flavour), f"image:{release}:{arch}:{flavour}")
    index = image_index([(with_ref_name(image["manifest"], image["ref"]), image["platform"])], None)
    dest = arch_dir(ws, release, arch) / archive_name(cfg, release, arch, flavour)
    write_archive(dest, ws.blobs(), index, xz_preset=cfg.pipeline.xz_preset, cache_dir=ws.root / "cache" / "xz")
    return {"archive": str(dest)}


def write_release_checksums(cfg: Config, release: str, arch: str) -> None:
    """CHECKSUM.SHA256/512 over the archives and their SBOMs (FreeBSD lists every ${OSRELEASE}* file)."""
    ws = Workspace.of(cfg)
    names = [archive_name(cfg, release, arch, f) for f in cfg.release(release).flavours]
    write_checksums(arch_dir(ws, release, arch), names + [sbom_name(n) for n in names])


def verify_tree(directory: Path) -> None:
    """Every per-arch directory under *directory* (or *directory* itself) against its CHECKSUM files."""
    dirs = [directory] if (directory / "CHECKSUM.SHA256").exists() else \
        sorted(p.parent for p in directory.glob("*/CHECKSUM.SHA256"))
    if not dirs:
        raise ReleaseError(f"{directory}: no CHECKSUM.SHA256 found")
    problems = [f"{d.name}: {p}" for d in dirs for p in verify_checksums(d)]
    if problems:
        raise ReleaseError(f"{directory}: " + "; ".join(problems))


def verify_release(cfg: Config, release: str) -> None:
    verify_tree(Workspace.of(cfg).out(release))

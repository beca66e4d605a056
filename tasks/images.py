"""Tasks from the package cache to released files: layer, image, index, archive, checksum."""
from __future__ import annotations

from dataclasses import asdict

from release import attest, emulate, image, layer
from release.layerplan import PLAN_VERSION, ships_pkg

from .common import CONFIG, WS, act, reads


def _layer_deps(r, arch: str, flavour: str) -> list[str]:
    """A layer depends on its own package set, its src inputs and the view of the layers below —
    and, when its image ships pkg, on every package of the image (they are all in local.sqlite)."""
    f = CONFIG.flavours[flavour]
    deps = [str(WS.packages_json(r.name, arch, flavour)), str(WS.src_inputs(r.name))]
    if f.parent:
        deps.append(str(WS.flavour(r.name, arch, f.parent) / "view.json"))
    if ships_pkg(CONFIG, r.name, flavour):
        deps += [str(WS.packages_json(r.name, arch, c.name)) for c in CONFIG.chain(flavour)[:-1]]
    if emulate.needs_emulation(f):
        # programs run inside the layer see the whole image below it, not just the view
        deps += [str(WS.flavour(r.name, arch, c.name) / "layer.json") for c in CONFIG.chain(flavour)[:-1]]
    return deps


def task_layer():
    """Stream a flavour's packages and install steps into its deterministic layer blob."""
    p = CONFIG.pipeline
    for r in CONFIG.releases.values():
        for arch in r.arches:
            for name in r.flavours:
                f = CONFIG.flavours[name]
                out = WS.flavour(r.name, arch, name)
                yield {
                    "name": f"{r.name}:{arch}:{name}",
                    "actions": [act(layer.build_layer, cfg=CONFIG, release=r.name, arch=arch, flavour=name)],
                    "file_dep": _layer_deps(r, arch, name),
                    "task_dep": [f"download:{r.name}:{arch}"] +
                                ([f"layer:{r.name}:{arch}:{f.parent}"] if f.parent else []),
                    "targets": [str(out / "layer.json"), str(out / "view.json"), str(out / "index.json")],
                    "uptodate": [reads(plan=PLAN_VERSION, steps=[s.as_dict() for s in f.steps],
                                       scripts=f.scripts, ignore=list(f.ignore_scripts), comment=f.description,
                                       compression=[p.layer_compression, p.gzip_level, p.gzip_engine,
                                                    p.zstd_level],
                                       arch=asdict(CONFIG.architectures[arch]),
                                       pkgdb=r.pkgdb_schema if ships_pkg(CONFIG, r.name, name) else None,
                                       **({"executor": emulate.describe(arch)}
                                          if emulate.needs_emulation(f) else {}))],
                    "doc": f"layer of {r.version} {arch} {name}",
                }


def task_image():
    """Write a flavour's OCI config and manifest over its layer chain, for one architecture."""
    for r in CONFIG.releases.values():
        for arch in r.arches:
            for name in r.flavours:
                f = CONFIG.flavours[name]
                chain = [c.name for c in CONFIG.chain(name)]
                deps = [str(WS.flavour(r.name, arch, c) / n) for c in chain for n in ("layer.json", "index.json")]
                deps += [str(WS.packages_json(r.name, arch, c)) for c in chain]
                deps += [str(WS.src_json(r.name)), str(WS.src_inputs(r.name))]
                if f.parent:
                    deps.append(str(image.image_record(WS, r.name, arch, f.parent)))
                yield {
                    "name": f"{r.name}:{arch}:{name}",
                    "actions": [act(image.build_image, cfg=CONFIG, release=r.name, arch=arch, flavour=name)],
                    "file_dep": deps,
                    "task_dep": [f"layer:{r.name}:{arch}:{c}" for c in chain] +
                                ([f"image:{r.name}:{arch}:{f.parent}"] if f.parent else []),
                    "targets": [str(image.image_record(WS, r.name, arch, name))],
                    "uptodate": [reads(cmd=list(f.cmd), env=list(f.env), description=f.description,
                                       version=r.version, platform=image.platform(CONFIG, arch))],
                    "doc": f"OCI config and manifest of {r.version} {arch} {name}",
                }


def task_index():
    """Write a flavour's multi-arch image index and its OCI image layout (all architectures)."""
    for r in CONFIG.releases.values():
        for name in r.flavours:
            yield {
                "name": f"{r.name}:{name}",
                "actions": [act(image.build_index, cfg=CONFIG, release=r.name, flavour=name)],
                "file_dep": [str(image.image_record(WS, r.name, a, name)) for a in r.arches] +
                            [str(WS.src_json(r.name))],
                "task_dep": [f"image:{r.name}:{a}:{name}" for a in r.arches],
                "targets": [str(image.index_record(WS, r.name, name)),
                            str(image.layout_dir(WS, r.name, name) / "index.json")],
                "uptodate": [reads(arches=list(r.arches), version=r.version)],
                "doc": f"multi-arch index and OCI layout of {r.version} {name}",
            }


def task_archive():
    """Write FreeBSD-<version>-<arch>-container-image-<flavour>.txz (single-arch OCI archive)."""
    for r in CONFIG.releases.values():
        for arch in r.arches:
            for name in r.flavours:
                dest = image.arch_dir(WS, r.name, arch) / image.archive_name(CONFIG, r.name, arch, name)
                yield {
                    "name": f"{r.name}:{arch}:{name}",
                    "actions": [act(image.build_archive, cfg=CONFIG, release=r.name, arch=arch, flavour=name)],
                    "file_dep": [str(image.image_record(WS, r.name, arch, name))],
                    "task_dep": [f"image:{r.name}:{arch}:{name}"],
                    "targets": [str(dest)],
                    "uptodate": [reads(xz_preset=CONFIG.pipeline.xz_preset)],
                    "doc": f"{dest.name}",
                }


def task_sbom():
    """Write an image's SPDX 2.3 SBOM next to its archive (every package, licences, sums, src commit)."""
    for r in CONFIG.releases.values():
        for arch in r.arches:
            for name in r.flavours:
                f = CONFIG.flavours[name]
                deps = [str(image.image_record(WS, r.name, arch, name)), str(WS.lock(r.name, arch)),
                        str(WS.src_json(r.name)), str(WS.src_inputs(r.name))]
                if f.parent:
                    deps.append(str(image.image_record(WS, r.name, arch, f.parent)))
                out = image.arch_dir(WS, r.name, arch)
                yield {
                    "name": f"{r.name}:{arch}:{name}",
                    "actions": [act(attest.build_sbom, cfg=CONFIG, release=r.name, arch=arch, flavour=name)],
                    "file_dep": deps,
                    "task_dep": [f"image:{r.name}:{arch}:{name}"] +
                                ([f"image:{r.name}:{arch}:{f.parent}"] if f.parent else []),
                    "targets": [str(out / image.sbom_name(image.archive_name(CONFIG, r.name, arch, name)))],
                    "uptodate": [reads(source=CONFIG.source(r), repository=attest.public_repository(CONFIG, r.name, arch))],
                    "doc": f"SPDX SBOM of {r.version} {arch} {name}",
                }


def task_checksum():
    """Write CHECKSUM.SHA256 and CHECKSUM.SHA512 for one architecture's archives and SBOMs."""
    for r in CONFIG.releases.values():
        for arch in r.arches:
            out = image.arch_dir(WS, r.name, arch)
            archives = [str(out / image.archive_name(CONFIG, r.name, arch, f)) for f in r.flavours]
            sboms = [str(out / image.sbom_name(image.archive_name(CONFIG, r.name, arch, f))) for f in r.flavours]
            yield {
                "name": f"{r.name}:{arch}",
                "actions": [act(image.write_release_checksums, cfg=CONFIG, release=r.name, arch=arch)],
                "file_dep": archives + sboms,
                "task_dep": [f"archive:{r.name}:{arch}:{f}" for f in r.flavours] +
                            [f"sbom:{r.name}:{arch}:{f}" for f in r.flavours],
                "targets": [str(out / "CHECKSUM.SHA256"), str(out / "CHECKSUM.SHA512")],
                "doc": f"CHECKSUM.SHA256/512 of {r.version} {arch}",
            }


def task_verify_checksums():
    """Check a release's archives against its CHECKSUM files (always runs)."""
    for r in CONFIG.releases.values():
        yield {
            "basename": "verify-checksums",
            "name": r.name,
            "actions": [act(image.verify_release, cfg=CONFIG, release=r.name)],
            "uptodate": [False],
            "doc": f"verify the {r.version} archives against CHECKSUM.SHA256/512",
        }

"""From config.toml to plans: the one place that decides what each stage reads.

Every stage plan (release.plans) is made here from the validated Config, and
nowhere else reads the Config for a stage: the doit tasks derive their
``file_dep``, ``targets`` and ``config_changed`` from these plans, and the
stage bodies take them as their only argument.  Adding a setting that a stage
needs means adding it to that stage's plan here, which is also what makes the
stage rerun when the setting changes.
"""
from __future__ import annotations

import os
from pathlib import Path

from . import emulate, names, steps
from .builtins.generations import tool_generations
from .builtins.repoconf import repository_name
from .compress import compressor_identity
from .config import Config, Release
from .plans import (ArchFiles, ArchivePlan, CataloguePlan, ChecksumPlan, DemoPlan, DemoRelease,
                    DownloadPlan, FlavourRequest, FlavourSrc, GcPlan, Http, ImagePlan, IndexPlan, KeySettings, LayerPlan,
                    LockPlan, PkgDatabase, PublishPlan, PushFlavour, PushPlan, RebuildPlan, SbomPlan,
                    SrcLocation, SrcPlan, SrcRelease, TreePlan, TrustSettings, VerifyChecksumsPlan)
from .steps import RepoSettings
from .workspace import Workspace


def workspace(cfg: Config) -> Workspace:
    return Workspace(cfg.pipeline.workdir)


def _abs(cfg: Config, path: str) -> str:
    """A path from config.toml, absolute (relative ones are relative to the config's directory)."""
    if not path:
        return ""
    p = Path(path)
    return str(p if p.is_absolute() else cfg.project / p)


def http(cfg: Config) -> Http:
    p = cfg.pipeline
    return Http(timeout=p.http_timeout, retries=p.http_retries, user_agent=p.user_agent, jobs=p.jobs)


def src_location(cfg: Config, release: Release) -> SrcLocation:
    url = cfg.src_url(release)
    return SrcLocation(url=url, mirror=workspace(cfg).mirror(url, cfg.src.url, cfg.src.mirror))


def pinned_lock(cfg: Config, release: Release, arch: str) -> str:
    """The lock file a release is pinned to ("" when it is not)."""
    return str(Path(_abs(cfg, release.lock)) / f"{arch}.json") if release.lock else ""


def ships_pkg(cfg: Config, release: str, flavour: str) -> bool:
    """A flavour whose image (with its parents) requests a pkg package gets a pkg database."""
    r = cfg.release(release)
    wanted = set(cfg.pkgbase.pkg_packages)
    return any(wanted.intersection(r.flavour_packages(f)) for f in cfg.chain(flavour))


def trust(cfg: Config, release: Release) -> TrustSettings:
    return TrustSettings(signature_type=release.signature_type,
                         fingerprints=release.fingerprints if release.fingerprints.startswith("src:")
                         else _abs(cfg, release.fingerprints),
                         pubkey=_abs(cfg, release.pubkey) if release.signature_type == "pubkey" else "")


def src_paths(cfg: Config, release: Release) -> list[str]:
    """Every src path (file or directory) that the release's images or its trust read."""
    paths = {p for name in release.flavours for p in steps.src_paths(cfg.flavours[name].steps)}
    paths.update(trust(cfg, release).src_paths())
    return sorted(paths)


# --------------------------------------------------------------------------- fetch, lock, download

def src_plans(cfg: Config) -> list[SrcPlan]:
    """One plan per distinct src URL; 'src' is the configured FreeBSD src, others are named by a release."""
    by_url: dict[str, list[Release]] = {}
    for r in sorted(cfg.releases.values(), key=lambda r: r.name):
        by_url.setdefault(cfg.src_url(r), []).append(r)
    plans = []
    for url, rels in by_url.items():
        label = "src" if url == cfg.src.url else f"src-{rels[0].name}"
        releases = tuple(SrcRelease(
            name=r.name, branch=r.branch, kind=r.kind, paths=tuple(src_paths(cfg, r)),
            flavours=tuple(FlavourSrc(name=f, paths=tuple(sorted(steps.src_paths(cfg.flavours[f].steps))))
                           for f in r.flavours),
            pinned_lock=next((pinned_lock(cfg, r, a) for a in r.arches), "")) for r in rels)
        plans.append(SrcPlan(workspace(cfg), label=label, src=src_location(cfg, rels[0]), releases=releases,
                             epoch_policy=cfg.pipeline.source_date_epoch))
    return plans


def catalogue_plan(cfg: Config, release: str, arch: str) -> CataloguePlan:
    r = cfg.release(release)
    return CataloguePlan(workspace(cfg), release=release, arch=arch, url=cfg.pkgbase_url(r, arch),
                         trust=trust(cfg, r), src=src_location(cfg, r), http=http(cfg))


def lock_plan(cfg: Config, release: str, arch: str) -> LockPlan:
    r = cfg.release(release)
    flavours = tuple(FlavourRequest(name=f, parent=cfg.flavours[f].parent,
                                    packages=r.flavour_packages(cfg.flavours[f])) for f in r.flavours)
    return LockPlan(workspace(cfg), release=release, arch=arch, abi=r.abi(arch), url=cfg.pkgbase_url(r, arch),
                    flavours=flavours, pinned=pinned_lock(cfg, r, arch))


def download_plan(cfg: Config, release: str, arch: str) -> DownloadPlan:
    r = cfg.release(release)
    return DownloadPlan(workspace(cfg), release=release, arch=arch, url=cfg.pkgbase_url(r, arch), http=http(cfg))


# --------------------------------------------------------------------------- layers and images

def compression(cfg: Config) -> dict:
    """The layer compressor's identity: media type, level, engine and the compressor's version."""
    p = cfg.pipeline
    return compressor_identity(p.layer_compression, gzip_level=p.gzip_level, zstd_level=p.zstd_level,
                               gzip_engine=p.gzip_engine)


def repository_settings(cfg: Config, release: Release) -> RepoSettings:
    """What the image's own pkg configuration says about its trust (the release's, as pkg sees it)."""
    spec = release.fingerprints
    fingerprints = spec[4:] if spec.startswith("src:") else "share/keys/pkg"
    return RepoSettings(signature_type=release.signature_type, fingerprints="/usr/" + fingerprints.strip("/"),
                        variables={"REPO": release.repo, "MAJOR": str(release.abi_major)})


def layer_plan(cfg: Config, release: str, arch: str, flavour: str) -> LayerPlan:
    r = cfg.release(release)
    f = cfg.flavours[flavour]
    chain = [c.name for c in cfg.chain(flavour)]
    runs = f.scripts == "emulate" or steps.needs_executor(f.steps)
    return LayerPlan(
        workspace(cfg), release=release, arch=arch, flavour=flavour, parent=f.parent, lower=tuple(chain[:-1]),
        byte_order=cfg.architectures[arch].byte_order, steps=f.steps, scripts=f.scripts,
        ignore_scripts=f.ignore_scripts, compression=compression(cfg), description=f.description,
        tools=tool_generations(r.abi_major, r.branch),
        pkgdb=PkgDatabase(schema=r.pkgdb_schema, flavours=tuple(chain),
                          repository=repository_name([s for c in cfg.chain(flavour) for s in c.steps]))
        if ships_pkg(cfg, release, flavour) else None,
        executor=emulate.describe(arch) if runs else None,
        repository=repository_settings(cfg, r) if steps.needs_repository(f.steps) else None,
        src=src_location(cfg, r))


def platform(cfg: Config, arch: str) -> dict[str, str]:
    a = cfg.architectures[arch]
    p = {"architecture": a.oci, "os": "freebsd"}
    if a.variant:
        p["variant"] = a.variant
    return p


def archive_name(cfg: Config, release: str, arch: str, flavour: str) -> str:
    return names.archive_name(cfg.release(release).version, cfg.architectures[arch].file_arch, flavour)


def image_plan(cfg: Config, release: str, arch: str, flavour: str) -> ImagePlan:
    r = cfg.release(release)
    f = cfg.flavours[flavour]
    return ImagePlan(
        workspace(cfg), release=release, arch=arch, flavour=flavour,
        chain=tuple(c.name for c in cfg.chain(flavour)), version=r.version, kind=r.kind,
        title=f"FreeBSD {r.version} {flavour}", description=f.description, cmd=f.cmd, env=f.env,
        platform=platform(cfg, arch), source=cfg.source(r), ref=names.ref_name(flavour, r.version, arch),
        parent_ref=names.ref_name(f.parent, r.version, arch) if f.parent else "")


def index_plan(cfg: Config, release: str, flavour: str) -> IndexPlan:
    r = cfg.release(release)
    return IndexPlan(workspace(cfg), release=release, flavour=flavour, arches=r.arches, version=r.version,
                     kind=r.kind, title=f"FreeBSD {r.version} {flavour}", ref=names.ref_name(flavour, r.version))


def archive_plan(cfg: Config, release: str, arch: str, flavour: str) -> ArchivePlan:
    return ArchivePlan(workspace(cfg), release=release, arch=arch, flavour=flavour,
                       name=archive_name(cfg, release, arch, flavour), xz_preset=cfg.pipeline.xz_preset)


def public_repository(cfg: Config, release: Release, arch: str) -> str:
    """The pkgbase URL an SBOM names: the configured one, never a local mirror override."""
    if release.mirror and not release.mirror.startswith("file:"):
        return cfg.pkgbase_url(release, arch)
    from dataclasses import replace
    return cfg.pkgbase_url(replace(release, mirror=""), arch)


def sbom_plan(cfg: Config, release: str, arch: str, flavour: str) -> SbomPlan:
    r = cfg.release(release)
    return SbomPlan(workspace(cfg), release=release, arch=arch, flavour=flavour,
                    parent=cfg.flavours[flavour].parent, version=r.version, kind=r.kind, source=cfg.source(r),
                    repository=public_repository(cfg, r, arch),
                    name=names.sbom_name(archive_name(cfg, release, arch, flavour)))


def release_files(cfg: Config, release: str, arch: str) -> tuple[str, ...]:
    """The archives and their SBOMs of one architecture, as the build names them."""
    archives = [archive_name(cfg, release, arch, f) for f in cfg.release(release).flavours]
    return tuple(archives + [names.sbom_name(n) for n in archives])


def checksum_plan(cfg: Config, release: str, arch: str) -> ChecksumPlan:
    return ChecksumPlan(workspace(cfg), release=release, arch=arch, names=release_files(cfg, release, arch))


# --------------------------------------------------------------------------- releasing

def key_settings(cfg: Config) -> KeySettings:
    s = cfg.signing
    return KeySettings(key=_abs(cfg, s.key), public_key=_abs(cfg, s.public_key), openpgp_key=s.openpgp_key,
                       gnupg_home=_abs(cfg, s.gnupg_home), openpgp_public_key=_abs(cfg, s.openpgp_public_key),
                       lookaside_url=s.lookaside_url)


def publish_root(cfg: Config, override: str | None = None) -> str:
    """The download tree: publish_root= on the command line, $RELEASE_PUBLISH_ROOT, or [publish] root."""
    return override or os.environ.get("RELEASE_PUBLISH_ROOT") or _abs(cfg, cfg.publish.root)


def _files(cfg: Config, release: str) -> tuple[ArchFiles, ...]:
    return tuple(ArchFiles(arch=a, names=release_files(cfg, release, a)) for a in cfg.release(release).arches)


def publish_plan(cfg: Config, release: str, root: str | None = None) -> PublishPlan:
    r = cfg.release(release)
    return PublishPlan(workspace(cfg), release=release, kind=r.kind, version=r.version, files=_files(cfg, release),
                       root=publish_root(cfg, root), keep=cfg.publish.keep, signing=key_settings(cfg),
                       src=src_location(cfg, r), registries=tuple(cfg.registries.values()))


def push_plan(cfg: Config, release: str) -> PushPlan:
    r = cfg.release(release)
    flavours = tuple(PushFlavour(name=f, sboms=tuple((a, names.sbom_name(archive_name(cfg, release, a, f)))
                                                     for a in r.arches)) for f in r.flavours)
    return PushPlan(workspace(cfg), release=release, kind=r.kind, version=r.version, arches=r.arches,
                    flavours=flavours, registries=tuple(cfg.registries.values()),
                    tags=cfg.push.snapshot_tags if r.kind == "snapshot" else cfg.push.release_tags,
                    sbom=cfg.push.sbom, signing=key_settings(cfg), http=http(cfg))


def verify_checksums_plan(cfg: Config, release: str) -> VerifyChecksumsPlan:
    return VerifyChecksumsPlan(workspace(cfg), release=release, arches=cfg.release(release).arches)


def rebuild_plan(cfg: Config, release: str) -> RebuildPlan:
    r = cfg.release(release)
    return RebuildPlan(workspace(cfg), release=release, config=str(cfg.path.resolve()), arches=r.arches,
                       flavours=r.flavours, files=_files(cfg, release), src=src_location(cfg, r))


def tree_plan(cfg: Config, root: str | None = None) -> TreePlan:
    return TreePlan(workspace(cfg), root=publish_root(cfg, root), signing=key_settings(cfg))


def gc_plan(cfg: Config) -> GcPlan:
    ws = workspace(cfg)
    locks = [pinned_lock(cfg, r, a) or str(ws.lock(r.name, a)) for r in cfg.releases.values() for a in r.arches]
    return GcPlan(ws, locks=tuple(sorted(locks)))


def demo_release(r: Release) -> DemoRelease:
    """What the demo generator makes for a release: "14.2-DEMO" gets pkgbase packages of version "14.2"."""
    return DemoRelease(release=r.name, abi_major=r.abi_major, arches=r.arches, repo=r.repo,
                       version=r.version.split("-", 1)[0], branch=r.branch)


def demo_plan(cfg: Config) -> DemoPlan | None:
    demo = [r for r in cfg.releases.values() if r.demo]
    if not demo:
        return None
    return DemoPlan(workspace(cfg), releases=tuple(demo_release(r) for r in demo))

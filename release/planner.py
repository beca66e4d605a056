"""From the release matrix to plans: the one place that decides what each stage reads.

Every stage plan (release.plans) is made here from the resolved matrix
(release.matrix: config.toml completed by each release's own src), and nowhere
else reads the configuration for a stage: the doit tasks derive their
``file_dep``, ``targets`` and ``config_changed`` from these plans, and the
stage bodies take them as their only argument.  Adding a setting that a stage
needs means adding it to that stage's plan here, which is also what makes the
stage rerun when the setting changes.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import emulate, names, steps
from .builtins.generations import tool_generations
from .builtins.repoconf import repository_name
from .compress import compressor_identity
from .config import Config, Release
from .matrix import Matrix
from .textvars import expand
from .plans import (ArchFiles, ArchivePlan, CataloguePlan, ChecksumPlan, DemoPlan, DemoRelease,
                    DownloadPlan, FlavourRequest, FlavourSrc, GcPlan, Http, ImagePlan, IndexPlan, KeySettings,
                    LayerPlan, LockPlan, PkgDatabase, PublishPlan, PushFlavour, PushPlan, RebuildPlan, SbomPlan,
                    SrcLocation, SrcPlan, SrcRelease, TreePlan, TrustSettings, VerifyChecksumsPlan)
from .steps import RepoSettings
from .workspace import Workspace


# where an image keeps the trust anchors of a repository no FreeBSD package ships keys for
OWN_KEYS = "/usr/local/etc/pkg/keys"


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


def ships_pkg(m: Matrix, release: str, flavour: str) -> bool:
    """A flavour whose image (with its parents) requests a pkg package gets a pkg database."""
    r = m.release(release)
    wanted = set(m.config.pkgbase.pkg_packages)
    return any(wanted.intersection(r.flavour_packages(f)) for f in m.chain(release, flavour))


def trust(cfg: Config, release: Release) -> TrustSettings:
    return TrustSettings(signature_type=release.signature_type,
                         fingerprints=release.fingerprints if release.fingerprints.startswith("src:")
                         else _abs(cfg, release.fingerprints),
                         pubkey=_abs(cfg, release.pubkey) if release.signature_type == "pubkey" else "")


def src_paths(m: Matrix, release: str) -> list[str]:
    """Every src path (file or directory) that the release's images or its trust read."""
    r = m.release(release)
    paths = {p for name in r.flavours for p in steps.src_paths(m.flavour(release, name).steps)}
    paths.update(trust(m.config, r).src_paths())
    return sorted(paths)


# --------------------------------------------------------------------------- fetch, lock, download

def src_plans(m: Matrix) -> list[SrcPlan]:
    """One plan per distinct src URL; 'src' is the configured FreeBSD src, others are named by a release."""
    cfg = m.config
    configured: dict[str, list[Release]] = {}
    for r in sorted(cfg.releases.values(), key=lambda r: r.name):
        configured.setdefault(cfg.src_url(r), []).append(r)
    by_url: dict[str, list[Release]] = {}
    for r in sorted((x.release for x in m.releases.values()), key=lambda r: r.name):
        by_url.setdefault(cfg.src_url(r), []).append(r)
    plans = []
    for url, rels in by_url.items():
        label = "src" if url == cfg.src.url else f"src-{configured[url][0].name}"
        releases = tuple(SrcRelease(
            name=r.name, branch=r.branch, kind=r.kind, paths=tuple(src_paths(m, r.name)),
            flavours=tuple(FlavourSrc(name=f, paths=tuple(sorted(steps.src_paths(m.flavour(r.name, f).steps))))
                           for f in r.flavours),
            pinned_lock=next((pinned_lock(cfg, r, a) for a in r.arches), "")) for r in rels)
        plans.append(SrcPlan(workspace(cfg), label=label, src=src_location(cfg, rels[0]),
                             branches=tuple(sorted({r.branch for r in configured[url]})), releases=releases,
                             epoch_policy=cfg.pipeline.source_date_epoch))
    return plans


def catalogue_plan(m: Matrix, release: str, arch: str) -> CataloguePlan:
    cfg, r = m.config, m.release(release)
    return CataloguePlan(workspace(cfg), release=release, arch=arch, url=cfg.pkgbase_url(r, arch),
                         trust=trust(cfg, r), src=src_location(cfg, r), http=http(cfg))


def lock_plan(m: Matrix, release: str, arch: str) -> LockPlan:
    cfg, r = m.config, m.release(release)
    flavours = tuple(FlavourRequest(name=f, parent=m.flavour(release, f).parent,
                                    packages=r.flavour_packages(m.flavour(release, f))) for f in r.flavours)
    return LockPlan(workspace(cfg), release=release, arch=arch, abi=r.abi(arch), url=cfg.pkgbase_url(r, arch),
                    flavours=flavours, pinned=pinned_lock(cfg, r, arch))


def download_plan(m: Matrix, release: str, arch: str) -> DownloadPlan:
    cfg, r = m.config, m.release(release)
    return DownloadPlan(workspace(cfg), release=release, arch=arch, url=cfg.pkgbase_url(r, arch), http=http(cfg))


# --------------------------------------------------------------------------- layers and images

def compression(cfg: Config) -> dict[str, Any]:
    """The layer compressor's identity: media type, level, engine and the compressor's version."""
    p = cfg.pipeline
    return compressor_identity(p.layer_compression, gzip_level=p.gzip_level, zstd_level=p.zstd_level,
                               gzip_engine=p.gzip_engine, gzip_block_size=p.gzip_block_size)


def repository_settings(m: Matrix, release: str) -> RepoSettings:
    """What the image's own pkg configuration says about its base repository and its trust.

    The release's usr.sbin/pkg/FreeBSD.conf.* FreeBSD-base block where its src
    has one (release.matrix); otherwise the release's own trust settings.
    """
    r = m.release(release)
    t = trust(m.config, r)
    keys: list[str] = []
    pubkey = ""
    if t.signature_type == "pubkey":
        pubkey = f"{OWN_KEYS}/pkgbase.pub"
        keys.append(f"{t.pubkey}={pubkey}")
    if t.signature_type == "fingerprints" and t.src_dir is None:
        fingerprints = f"{OWN_KEYS}/pkgbase"
        for sub in ("trusted", "revoked"):
            directory = Path(t.fingerprints) / sub
            keys += [f"{p}={fingerprints}/{sub}/{p.name}" for p in sorted(directory.iterdir()) if p.is_file()] \
                if directory.is_dir() else []
    else:
        fingerprints = "/usr/" + (t.src_dir or "share/keys/pkg")
    base = {k: v for k, v in (m.releases[release].repository or {}).items() if k != "origin"}
    return RepoSettings(signature_type=r.signature_type, fingerprints=fingerprints,
                        variables={"REPO": r.repo, "MAJOR": str(r.abi_major)}, base=base, pubkey=pubkey,
                        keys=tuple(keys), url=r.image_repository)


def layer_plan(m: Matrix, release: str, arch: str, flavour: str) -> LayerPlan:
    cfg, r = m.config, m.release(release)
    f = m.flavour(release, flavour)
    chain = [c.name for c in m.chain(release, flavour)]
    runs = f.scripts == "emulate" or steps.needs_executor(f.steps)
    return LayerPlan(
        workspace(cfg), release=release, arch=arch, flavour=flavour, parent=f.parent, lower=tuple(chain[:-1]),
        byte_order=cfg.architectures[arch].byte_order, steps=f.steps, scripts=f.scripts,
        ignore_scripts=f.ignore_scripts, compression=compression(cfg),
        compress_threads=cfg.pipeline.compress_threads, description=f.description,
        tools=tool_generations(r.abi_major, r.branch),
        pkgdb=PkgDatabase(schema=r.pkgdb_schema, flavours=tuple(chain),
                          repository=repository_name([s for c in m.chain(release, flavour) for s in c.steps]))
        if ships_pkg(m, release, flavour) else None,
        executor=emulate.describe(arch) if runs else None,
        repository=repository_settings(m, release) if steps.needs_repository(f.steps) else None,
        origin=m.releases[release].origins.get(flavour, "config"), src=src_location(cfg, r))


def platform(cfg: Config, arch: str) -> dict[str, str]:
    a = cfg.architectures[arch]
    p = {"architecture": a.oci, "os": "freebsd"}
    if a.variant:
        p["variant"] = a.variant
    return p


def archive_name(m: Matrix, release: str, arch: str, flavour: str) -> str:
    return names.archive_name(m.release(release).version, m.config.architectures[arch].file_arch, flavour)


def image_name(m: Matrix, release: str, flavour: str) -> str:
    """The name an image loads as: freebsd-minimal, or freebsd14-minimal as 14.x's src names it."""
    r = m.release(release)
    return expand(r.image_name, {"FLAVOUR": flavour, "MAJOR": str(r.abi_major)})


def image_plan(m: Matrix, release: str, arch: str, flavour: str) -> ImagePlan:
    cfg, r = m.config, m.release(release)
    f = m.flavour(release, flavour)
    return ImagePlan(
        workspace(cfg), release=release, arch=arch, flavour=flavour,
        chain=tuple(c.name for c in m.chain(release, flavour)), version=r.version, kind=r.kind,
        title=f"FreeBSD {r.version} {flavour}", description=f.description, cmd=f.cmd, env=f.env,
        platform=platform(cfg, arch), source=cfg.source(r),
        ref=names.ref_name(image_name(m, release, flavour), r.version, arch),
        parent_ref=names.ref_name(image_name(m, release, f.parent), r.version, arch) if f.parent else "")


def index_plan(m: Matrix, release: str, flavour: str) -> IndexPlan:
    cfg, r = m.config, m.release(release)
    return IndexPlan(workspace(cfg), release=release, flavour=flavour, arches=r.arches, version=r.version,
                     kind=r.kind, title=f"FreeBSD {r.version} {flavour}",
                     ref=names.ref_name(image_name(m, release, flavour), r.version))


def archive_plan(m: Matrix, release: str, arch: str, flavour: str) -> ArchivePlan:
    return ArchivePlan(workspace(m.config), release=release, arch=arch, flavour=flavour,
                       name=archive_name(m, release, arch, flavour), xz_preset=m.config.pipeline.xz_preset)


def public_repository(cfg: Config, release: Release, arch: str) -> str:
    """The pkgbase URL an SBOM names: the configured one, never a local mirror override."""
    if release.mirror and not release.mirror.startswith("file:"):
        return cfg.pkgbase_url(release, arch)
    from dataclasses import replace
    return cfg.pkgbase_url(replace(release, mirror=""), arch)


def sbom_plan(m: Matrix, release: str, arch: str, flavour: str) -> SbomPlan:
    cfg, r = m.config, m.release(release)
    return SbomPlan(workspace(cfg), release=release, arch=arch, flavour=flavour,
                    parent=m.flavour(release, flavour).parent, version=r.version, kind=r.kind,
                    source=cfg.source(r), repository=public_repository(cfg, r, arch),
                    name=names.sbom_name(archive_name(m, release, arch, flavour)))


def release_files(m: Matrix, release: str, arch: str) -> tuple[str, ...]:
    """The archives and their SBOMs of one architecture, as the build names them."""
    return checksum_plan(m, release, arch).names


def checksum_plan(m: Matrix, release: str, arch: str) -> ChecksumPlan:
    archives = tuple((f, archive_name(m, release, arch, f)) for f in m.release(release).flavours)
    return ChecksumPlan(workspace(m.config), release=release, arch=arch, archives=archives,
                        sboms=tuple(names.sbom_name(n) for _, n in archives))


# --------------------------------------------------------------------------- releasing

def key_settings(cfg: Config) -> KeySettings:
    s = cfg.signing
    return KeySettings(key=_abs(cfg, s.key), public_key=_abs(cfg, s.public_key), openpgp_key=s.openpgp_key,
                       gnupg_home=_abs(cfg, s.gnupg_home), openpgp_public_key=_abs(cfg, s.openpgp_public_key),
                       lookaside_url=s.lookaside_url)


def publish_root(cfg: Config, override: str | None = None) -> str:
    """The download tree: publish_root= on the command line, $RELEASE_PUBLISH_ROOT, or [publish] root."""
    return override or os.environ.get("RELEASE_PUBLISH_ROOT") or _abs(cfg, cfg.publish.root)


def _files(m: Matrix, release: str) -> tuple[ArchFiles, ...]:
    return tuple(ArchFiles(arch=a, names=release_files(m, release, a)) for a in m.release(release).arches)


def publish_plan(m: Matrix, release: str, root: str | None = None) -> PublishPlan:
    cfg, r = m.config, m.release(release)
    return PublishPlan(workspace(cfg), release=release, kind=r.kind, version=r.version, files=_files(m, release),
                       root=publish_root(cfg, root), keep=cfg.publish.keep, signing=key_settings(cfg),
                       src=src_location(cfg, r), registries=tuple(cfg.registries.values()))


def push_plan(m: Matrix, release: str) -> PushPlan:
    cfg, r = m.config, m.release(release)
    flavours = tuple(PushFlavour(name=f, sboms=tuple((a, names.sbom_name(archive_name(m, release, a, f)))
                                                     for a in r.arches)) for f in r.flavours)
    return PushPlan(workspace(cfg), release=release, kind=r.kind, version=r.version, arches=r.arches,
                    flavours=flavours, registries=tuple(cfg.registries.values()),
                    tags=cfg.push.snapshot_tags if r.kind == "snapshot" else cfg.push.release_tags,
                    sbom=cfg.push.sbom, signing=key_settings(cfg), http=http(cfg))


def verify_checksums_plan(m: Matrix, release: str) -> VerifyChecksumsPlan:
    return VerifyChecksumsPlan(workspace(m.config), release=release, arches=m.release(release).arches)


def rebuild_plan(m: Matrix, release: str) -> RebuildPlan:
    cfg, r = m.config, m.release(release)
    return RebuildPlan(workspace(cfg), release=release, config=str(cfg.path.resolve()), arches=r.arches,
                       flavours=r.flavours, files=_files(m, release), src=src_location(cfg, r))


def tree_plan(cfg: Config, root: str | None = None) -> TreePlan:
    return TreePlan(workspace(cfg), root=publish_root(cfg, root), signing=key_settings(cfg))


def gc_plan(m: Matrix) -> GcPlan:
    ws = workspace(m.config)
    locks = [pinned_lock(m.config, r.release, a) or str(ws.lock(r.release.name, a))
             for r in m.releases.values() for a in r.release.arches]
    return GcPlan(ws, locks=tuple(sorted(locks)))


def demo_release(r: Release) -> DemoRelease:
    """What the demo generator makes for a release: "14.2-DEMO" gets pkgbase packages of version "14.2".

    What a demo release leaves to its src (version, ABI, repository) is what
    the demo generator will write into that src (release.demo.generate.branch_version).
    """
    from .builtins.repoconf import base_repository
    from .demo.generate import branch_version
    revision, kind = branch_version(r.branch)
    return DemoRelease(release=r.name, abi_major=r.abi_major or int(revision.split(".")[0]), arches=r.arches,
                       repo=r.repo or base_repository(kind, int(revision.split(".")[1])),
                       version=(r.version or revision).split("-", 1)[0], branch=r.branch)


def demo_plan(cfg: Config) -> DemoPlan | None:
    demo = [r for r in cfg.releases.values() if r.demo]
    if not demo:
        return None
    return DemoPlan(workspace(cfg), releases=tuple(demo_release(r) for r in demo))

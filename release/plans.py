"""Each stage's plan: everything its body reads, as one frozen value.

A stage body (fetch, lock, download, layer, image, index, archive, sbom,
checksum, publish, push ...) takes its plan and nothing else: no Config, no
environment lookups of settings.  What a body reads is therefore exactly:

- the plan's own fields (settings taken from config.toml by release.planner);
- the records of earlier stages the plan names (``inputs()``, paths from the
  workspace), which doit tracks as ``file_dep``;
- content-addressed stores whose keys those records hold (package cache, blobs,
  git objects).

The plan's ``identity()`` is the sha256 of the canonical JSON of its settings
(osbuild's ``Stage.id``): the doit task's ``config_changed`` uses it, so a
change of any setting a stage reads reruns that stage and no other.  Fields
that say *where* or *how* rather than *what* (the work directory, the src
mirror's location, HTTP timeouts) are marked ``how()`` and left out of the
identity: they cannot change a stage's output.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import RegistrySettings
from .fsutil import canonical_json
from .names import CHECKSUM_FILES
from .steps import RepoSettings, Step
from .workspace import Workspace

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def how(**kwargs: Any) -> Any:
    """A plan field that says where or how a stage runs, not what it makes (not part of the identity)."""
    return field(metadata={"identity": False}, **kwargs)


def plain(value: Any) -> Any:
    """The canonical JSON value of plan settings (nested plans and dataclasses included)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain_fields(value)
    if isinstance(value, Step):
        return value.as_dict()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def plain_fields(value: DataclassInstance) -> dict[str, Any]:
    """plain() of a dataclass instance: its fields that count for identity."""
    return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)
            if f.metadata.get("identity", True)}


@dataclass(frozen=True)
class Plan:
    """Base of every plan: the work directory, and inputs/outputs/identity derived from the fields."""

    workspace: Workspace = how()

    def inputs(self) -> list[Path]:
        """Records of earlier stages the body reads (doit file_dep)."""
        return []

    def outputs(self) -> list[Path]:
        """What the body writes (doit targets)."""
        return []

    def settings(self) -> dict[str, Any]:
        return plain_fields(self)

    def identity(self) -> str:
        return hashlib.sha256(canonical_json({"stage": type(self).__name__, **self.settings()})).hexdigest()


@dataclass(frozen=True)
class Http:
    """How to talk to servers; never part of what a stage produces."""

    timeout: float
    retries: int
    user_agent: str
    jobs: int


@dataclass(frozen=True)
class SrcLocation:
    """Where a release's src git objects are read from (the objects are named by id in src-inputs.json)."""

    url: str
    mirror: Path


# --------------------------------------------------------------------------- fetch, lock, download

@dataclass(frozen=True)
class FlavourSrc:
    name: str
    paths: tuple[str, ...]      # src paths the flavour's steps read


@dataclass(frozen=True)
class SrcRelease:
    name: str
    branch: str
    kind: str                   # "release" or "snapshot" (snapshots get a date suffix)
    paths: tuple[str, ...]      # src paths whose object ids the release's stages read
    flavours: tuple[FlavourSrc, ...]
    pinned_lock: str            # a lock file pinning the src commit ("" = the branch head)


@dataclass(frozen=True)
class SrcPlan(Plan):
    """fetch:<mirror>: fetch one src mirror's branches; write src.json and the src-inputs records per release."""

    label: str = ""
    src: SrcLocation = how(default=None)
    branches: tuple[str, ...] = ()      # what the mirror fetches: the configured branches (globs allowed)
    releases: tuple[SrcRelease, ...] = ()
    epoch_policy: str = "src-inputs"

    def inputs(self) -> list[Path]:
        return [Path(r.pinned_lock) for r in self.releases if r.pinned_lock]

    def outputs(self) -> list[Path]:
        ws = self.workspace
        return [p for r in self.releases
                for p in (ws.src_json(r.name), ws.src_inputs(r.name),
                          *(ws.flavour_src_inputs(r.name, f.name) for f in r.flavours))]


@dataclass(frozen=True)
class TrustSettings:
    """How a release's catalogues are verified: pkg's signature_type and its trust anchors."""

    signature_type: str         # "fingerprints", "pubkey" or "none"
    fingerprints: str           # "src:<dir>" (trusted/ and revoked/ at the release's src commit) or a directory
    pubkey: str                 # absolute path of the RSA public key (signature_type "pubkey")

    @property
    def src_dir(self) -> str | None:
        if self.signature_type == "fingerprints" and self.fingerprints.startswith("src:"):
            return self.fingerprints[4:].strip("/")
        return None

    def src_paths(self) -> list[str]:
        base = self.src_dir
        return [f"{base}/trusted", f"{base}/revoked"] if base else []


@dataclass(frozen=True)
class CataloguePlan(Plan):
    """fetch:<release>:<arch>: the verified catalogue of one pkgbase repository."""

    release: str = ""
    arch: str = ""
    url: str = ""
    trust: TrustSettings = field(default=None)      # type: ignore[assignment]
    src: SrcLocation = how(default=None)
    http: Http = how(default=None)

    def inputs(self) -> list[Path]:
        return [self.workspace.src_inputs(self.release)] if self.trust.src_dir else []

    def outputs(self) -> list[Path]:
        return [self.workspace.catalogue_json(self.release, self.arch)]


@dataclass(frozen=True)
class FlavourRequest:
    name: str
    parent: str | None
    packages: tuple[str, ...]


@dataclass(frozen=True)
class LockPlan(Plan):
    """lock:<release>:<arch>: each flavour's package closure, or the pinned lock."""

    release: str = ""
    arch: str = ""
    abi: str = ""
    url: str = ""
    flavours: tuple[FlavourRequest, ...] = ()
    pinned: str = ""            # absolute path of a pinned lock file ("" = resolve afresh)

    def inputs(self) -> list[Path]:
        if self.pinned:
            return [Path(self.pinned)]
        return [self.workspace.catalogue_json(self.release, self.arch), self.workspace.src_json(self.release)]

    def outputs(self) -> list[Path]:
        ws = self.workspace
        return [ws.lock(self.release, self.arch)] + [ws.packages_json(self.release, self.arch, f.name)
                                                     for f in self.flavours]


@dataclass(frozen=True)
class DownloadPlan(Plan):
    """download:<release>:<arch>: every locked package into the content-addressed cache."""

    release: str = ""
    arch: str = ""
    url: str = ""
    http: Http = how(default=None)

    def inputs(self) -> list[Path]:
        return [self.workspace.lock(self.release, self.arch)]

    def outputs(self) -> list[Path]:
        return [self.workspace.downloaded(self.release, self.arch)]


# --------------------------------------------------------------------------- layers and images

@dataclass(frozen=True)
class PkgDatabase:
    """/var/db/pkg/local.sqlite of an image that ships pkg: its generation and whose packages it lists."""

    schema: int
    flavours: tuple[str, ...]   # the image's chain, root first (every package of the image is listed)
    repository: str | None = None   # the name the image's repo-conf gives its repository (pkg's annotation)


@dataclass(frozen=True)
class LayerPlan(Plan):
    """layer:<release>:<arch>:<flavour>: the flavour's packages and steps as one deterministic layer."""

    release: str = ""
    arch: str = ""
    flavour: str = ""
    parent: str | None = None
    lower: tuple[str, ...] = ()         # the flavours below, root first
    byte_order: str = "little"
    steps: tuple[Step, ...] = ()
    scripts: str = "builtin"
    ignore_scripts: tuple[str, ...] = ()
    compression: dict[str, Any] = field(default_factory=dict)   # compress.compressor_identity: media, level, engine...
    compress_threads: int = how(default=0)              # 0: every CPU; the bytes are the same for any count
    description: str = ""
    pkgdb: PkgDatabase | None = None
    tools: dict[str, Any] = field(default_factory=dict)   # the release's tool generations (builtins.generations)
    executor: dict[str, Any] | None = None        # how target code runs (emulate.Method.identity), when it runs
    repository: RepoSettings | None = None
    origin: str = "config"              # what defines the flavour: "config" or the src file (oci-image-*.conf)
    src: SrcLocation = how(default=None)

    def key_files(self) -> list[tuple[Path, str]]:
        """(host file, image path) of trust anchors the image must carry (a repository of your own)."""
        keys = self.repository.keys if self.repository else ()
        return [(Path(k.split("=", 1)[0]), k.split("=", 1)[1]) for k in keys]

    def inputs(self) -> list[Path]:
        ws, r, a = self.workspace, self.release, self.arch
        deps = [ws.packages_json(r, a, self.flavour), ws.flavour_src_inputs(r, self.flavour)]
        if self.parent:
            deps.append(ws.view_json(r, a, self.parent))
        if self.pkgdb:
            deps += [ws.packages_json(r, a, f) for f in self.pkgdb.flavours if f != self.flavour]
        if self.executor is not None:
            # programs run inside the layer see the whole image below it, not just the view
            deps += [ws.layer_json(r, a, f) for f in self.lower]
        return deps + [host for host, _ in self.key_files()]

    def outputs(self) -> list[Path]:
        ws, r, a, f = self.workspace, self.release, self.arch, self.flavour
        return [ws.layer_json(r, a, f), ws.view_json(r, a, f), ws.package_index_json(r, a, f)]


@dataclass(frozen=True)
class ImagePlan(Plan):
    """image:<release>:<arch>:<flavour>: OCI config and manifest over the flavour's layer chain."""

    release: str = ""
    arch: str = ""
    flavour: str = ""
    chain: tuple[str, ...] = ()         # root first, this flavour last
    version: str = ""
    kind: str = "release"
    title: str = ""
    description: str = ""
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    platform: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    ref: str = ""
    parent_ref: str = ""

    @property
    def parent(self) -> str | None:
        return self.chain[-2] if len(self.chain) > 1 else None

    def inputs(self) -> list[Path]:
        ws, r, a = self.workspace, self.release, self.arch
        deps = [p for c in self.chain for p in (ws.layer_json(r, a, c), ws.package_index_json(r, a, c),
                                               ws.packages_json(r, a, c))]
        deps.append(ws.src_json(r))
        if self.parent:
            deps.append(ws.image_json(r, a, self.parent))
        return deps

    def outputs(self) -> list[Path]:
        return [self.workspace.image_json(self.release, self.arch, self.flavour)]


@dataclass(frozen=True)
class IndexPlan(Plan):
    """index:<release>:<flavour>: the multi-arch index and the flavour's OCI image layout."""

    release: str = ""
    flavour: str = ""
    arches: tuple[str, ...] = ()
    version: str = ""
    kind: str = "release"
    title: str = ""
    ref: str = ""

    def inputs(self) -> list[Path]:
        ws = self.workspace
        return [ws.image_json(self.release, a, self.flavour) for a in self.arches] + [ws.src_json(self.release)]

    def outputs(self) -> list[Path]:
        ws = self.workspace
        return [ws.index_json(self.release, self.flavour), ws.layout_dir(self.release, self.flavour) / "index.json"]


@dataclass(frozen=True)
class ArchivePlan(Plan):
    """archive:<release>:<arch>:<flavour>: the single-arch .txz OCI archive."""

    release: str = ""
    arch: str = ""
    flavour: str = ""
    name: str = ""
    xz_preset: int = 6

    def inputs(self) -> list[Path]:
        return [self.workspace.image_json(self.release, self.arch, self.flavour)]

    def outputs(self) -> list[Path]:
        return [self.workspace.arch_dir(self.release, self.arch) / self.name,
                self.workspace.archive_json(self.release, self.arch, self.flavour)]


@dataclass(frozen=True)
class SbomPlan(Plan):
    """sbom:<release>:<arch>:<flavour>: the image's SPDX document, next to its archive."""

    release: str = ""
    arch: str = ""
    flavour: str = ""
    parent: str | None = None
    version: str = ""
    kind: str = "release"
    source: str = ""
    repository: str = ""        # the pkgbase repository the SBOM names (never a local mirror)
    name: str = ""

    def inputs(self) -> list[Path]:
        ws, r, a = self.workspace, self.release, self.arch
        deps = [ws.image_json(r, a, self.flavour), ws.lock(r, a), ws.src_json(r)]
        if self.parent:
            deps.append(ws.image_json(r, a, self.parent))
        return deps

    def outputs(self) -> list[Path]:
        return [self.workspace.arch_dir(self.release, self.arch) / self.name]


@dataclass(frozen=True)
class ChecksumPlan(Plan):
    """checksum:<release>:<arch>: CHECKSUM.SHA256 and CHECKSUM.SHA512 over the archives and SBOMs."""

    release: str = ""
    arch: str = ""
    archives: tuple[tuple[str, str], ...] = ()      # (flavour, archive name): digests from the archive records
    sboms: tuple[str, ...] = ()                     # the SBOM files next to them, hashed here

    @property
    def names(self) -> tuple[str, ...]:
        """Every file the CHECKSUM files list."""
        return tuple(name for _, name in self.archives) + self.sboms

    def inputs(self) -> list[Path]:
        """The archives' records (their digests were taken as they were written) and the SBOMs."""
        out = self.workspace.arch_dir(self.release, self.arch)
        return [self.workspace.archive_json(self.release, self.arch, f) for f, _ in self.archives] + \
            [out / n for n in self.sboms]

    def outputs(self) -> list[Path]:
        out = self.workspace.arch_dir(self.release, self.arch)
        return [out / c for c in CHECKSUM_FILES]


# --------------------------------------------------------------------------- releasing

@dataclass(frozen=True)
class ArchFiles:
    arch: str
    names: tuple[str, ...]      # archives and SBOMs, in flavour order


@dataclass(frozen=True)
class KeySettings:
    """The release signing keys and the trusted public keys ("" = none configured; the environment may name one)."""

    key: str
    public_key: str
    openpgp_key: str = ""           # fingerprint of the OpenPGP key in the GnuPG home
    gnupg_home: str = how(default="")     # where that key is kept: not what is signed
    openpgp_public_key: str = ""
    lookaside_url: str = ""         # where mirrors serve the tree's signatures/ ("" = its file:// path)


@dataclass(frozen=True)
class PublishPlan(Plan):
    """publish:<release>: the built release into the download tree."""

    release: str = ""
    kind: str = "release"
    version: str = ""
    files: tuple[ArchFiles, ...] = ()
    root: str = ""              # "" = none configured (the task's publish_root= may give one)
    keep: int = 7
    signing: KeySettings = field(default=None)     # type: ignore[assignment]
    src: SrcLocation = how(default=None)
    registries: tuple[RegistrySettings, ...] = ()  # named by the signature store's registries.d and policy


@dataclass(frozen=True)
class PushFlavour:
    name: str
    sboms: tuple[tuple[str, str], ...]      # (arch, SBOM file name)


@dataclass(frozen=True)
class PushPlan(Plan):
    """push:<release>: every flavour's index, manifests, blobs, signatures and SBOMs to the registries."""

    release: str = ""
    kind: str = "release"
    version: str = ""
    arches: tuple[str, ...] = ()
    flavours: tuple[PushFlavour, ...] = ()
    registries: tuple[RegistrySettings, ...] = ()
    tags: tuple[str, ...] = ()              # templates: ${VERSION} ${MAJOR} ${MINOR} ${BUILDDATE}
    sbom: bool = True
    signing: KeySettings = field(default=None)     # type: ignore[assignment]
    http: Http = how(default=None)


@dataclass(frozen=True)
class VerifyChecksumsPlan(Plan):
    """verify-checksums:<release>: the archives against their CHECKSUM files."""

    release: str = ""
    arches: tuple[str, ...] = ()


@dataclass(frozen=True)
class RebuildPlan(Plan):
    """verify:<release>: rebuild from the locks in a scratch directory and compare."""

    release: str = ""
    config: str = ""            # the configuration file the build was made with
    arches: tuple[str, ...] = ()
    flavours: tuple[str, ...] = ()
    files: tuple[ArchFiles, ...] = ()
    src: SrcLocation = how(default=None)


@dataclass(frozen=True)
class TreePlan(Plan):
    """verify-tree: every published directory of a download tree."""

    root: str = ""
    signing: KeySettings = field(default=None)     # type: ignore[assignment]


@dataclass(frozen=True)
class GcPlan(Plan):
    """gc: drop cached packages no configured release's lock names."""

    locks: tuple[str, ...] = ()     # lock files whose packages are kept


@dataclass(frozen=True)
class DemoRelease:
    release: str
    abi_major: int
    arches: tuple[str, ...]
    repo: str
    version: str
    branch: str


@dataclass(frozen=True)
class DemoPlan(Plan):
    """demo: the embedded demo release's repositories and src tree."""

    releases: tuple[DemoRelease, ...] = ()

    def outputs(self) -> list[Path]:
        return [self.workspace.demo() / "demo.json"]

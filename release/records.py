"""The records stages hand each other, typed, each with one reader and one writer.

Every file a stage writes for a later stage to read (src.json, src-inputs.json,
the lock, packages.json, layer.json, index.json, image.json, the index record,
downloaded.json) is one dataclass here (view.json is release.tree.ParentView) with ``load(path)`` and
``save(path)``; nobody else parses those files (apko's ``lock.FromFile`` /
``SaveToFile`` is the model).  Paths come from release.workspace.

The JSON spelling of every record is the one the pipeline has always written
(pretty, sorted keys), so a work directory made before this module existed is
read as it is, and a save of an unchanged record rewrites nothing
(write_if_changed keeps doit's checkers and incremental builds quiet).
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from .errors import InputError, LockError
from .fsutil import pretty_json, read_json, write_if_changed
from .tree import ParentView

Descriptor = dict[str, Any]         # an OCI content descriptor (mediaType, digest, size[, annotations])
R = TypeVar("R", bound="Record")


def load_json(path: Path, what: str) -> Any:
    """A record's JSON, or one line saying which stage should have written it."""
    try:
        return read_json(path)
    except FileNotFoundError:
        raise InputError(f"{path}: missing ({what} has not run yet)") from None
    except ValueError as e:
        raise InputError(f"{path}: damaged ({e}); run {what} again") from None


class Record:
    """load/save for dataclass records whose JSON is their fields (None fields left out)."""

    WRITTEN_BY: ClassVar[str] = "an earlier stage"

    @classmethod
    def from_json(cls: type[R], doc: Any) -> R:
        names = {f.name for f in fields(cls)}      # type: ignore[arg-type]
        return cls(**{k: v for k, v in doc.items() if k in names})

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}   # type: ignore[call-overload]

    @classmethod
    def load(cls: type[R], path: Path) -> R:
        doc = load_json(path, cls.WRITTEN_BY)
        try:
            return cls.from_json(doc)
        except (TypeError, KeyError, AttributeError, ValueError) as e:
            raise InputError(f"{path}: not a {cls.__name__} record ({e}); run {cls.WRITTEN_BY} again") from None

    def save(self, path: Path) -> bool:
        return write_if_changed(path, pretty_json(self.to_json()))


# --------------------------------------------------------------------------- src

@dataclass(frozen=True)
class SrcHead(Record):
    """src.json: the branch head a release is built from."""

    WRITTEN_BY: ClassVar[str] = "the src fetch"
    url: str
    branch: str
    commit: str
    short: str
    time: int
    count: int
    subject: str
    source_date_epoch: int
    build_date: str | None = None       # snapshots: YYYYMMDD of the head
    suffix: str | None = None           # snapshots: <YYYYMMDD>-<gitrev>-<gitcount>


@dataclass(frozen=True)
class SrcWalk(Record):
    """src-walk.json: the fetch's own memory, so the next history walk starts where this one stopped."""

    WRITTEN_BY: ClassVar[str] = "the src fetch"
    commit: str
    count: int
    inputs_paths: list[str]
    inputs_changed: dict[str, Any]      # {"commit", "time"} of the newest commit changing an input path


@dataclass(frozen=True)
class SrcInputs(Record):
    """src-inputs[-<flavour>].json: git object ids of the src paths a release (or a flavour) reads, and
    SOURCE_DATE_EPOCH."""

    WRITTEN_BY: ClassVar[str] = "the src fetch"
    inputs: dict[str, str | None]
    source_date_epoch: int

    def to_json(self) -> dict[str, Any]:
        return {"inputs": dict(self.inputs), "source_date_epoch": self.source_date_epoch}

    def only(self, paths: Collection[str]) -> dict[str, str | None]:
        return {p: oid for p, oid in self.inputs.items() if p in paths}


# --------------------------------------------------------------------------- lock

@dataclass(frozen=True)
class LockedPackage(Record):
    """One package of a lock: catalogue fields enough to download, verify and describe it."""

    name: str
    version: str
    sum: str
    path: str
    origin: str | None = None
    comment: str | None = None
    abi: str | None = None
    arch: str | None = None
    prefix: str | None = None
    pkgsize: int | None = None
    flatsize: int | None = None
    licenselogic: str | None = None
    licenses: list[str] | None = None
    maintainer: str | None = None
    www: str | None = None
    reason: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name}-{self.version}"


@dataclass(frozen=True)
class PackageSet(Record):
    """packages.json: the packages one flavour's layer installs (what its parents lack)."""

    WRITTEN_BY: ClassVar[str] = "the lock"
    release: str
    arch: str
    flavour: str
    parent: str | None
    packages: tuple[LockedPackage, ...]

    @classmethod
    def from_json(cls, doc: Any) -> PackageSet:
        return cls(release=doc["release"], arch=doc["arch"], flavour=doc["flavour"], parent=doc["parent"],
                   packages=tuple(LockedPackage.from_json(p) for p in doc["packages"]))

    def to_json(self) -> dict[str, Any]:
        return {"release": self.release, "arch": self.arch, "flavour": self.flavour, "parent": self.parent,
                "packages": [p.to_json() for p in self.packages]}


@dataclass(frozen=True)
class Lock:
    """locks/<release>/<arch>.json: exact packages per flavour, the catalogue and src they came from.

    The lock's JSON is also a user-facing file (a release can be pinned to a
    directory of locks), so it is kept as the document it is; this class only
    reads and checks it.
    """

    document: dict[str, Any]

    VERSION: ClassVar[int] = 1

    @classmethod
    def load(cls, path: Path) -> Lock:
        try:
            doc = read_json(path)
        except FileNotFoundError:
            raise LockError(f"{path}: lock file not found") from None
        except ValueError as e:
            raise LockError(f"{path}: not valid JSON: {e}") from None
        lock = cls(doc)
        lock.check(str(path))
        return lock

    def save(self, path: Path) -> bool:
        return write_if_changed(path, pretty_json(self.document))

    @property
    def src(self) -> dict[str, Any]:
        src: dict[str, Any] = self.document["src"]
        return src

    def flavour_names(self) -> list[str]:
        return list(self.document["flavours"])

    def package_set(self, flavour: str) -> PackageSet:
        f = self.document["flavours"][flavour]
        return PackageSet(release=self.document["release"], arch=self.document["arch"], flavour=flavour,
                          parent=f["parent"], packages=tuple(LockedPackage.from_json(p) for p in f["packages"]))

    def packages(self) -> list[LockedPackage]:
        """Every package of the lock once, in flavour order then by name."""
        seen: dict[str, LockedPackage] = {}
        for name in self.flavour_names():
            for p in self.package_set(name).packages:
                seen.setdefault(p.sum, p)
        return list(seen.values())

    def check(self, source: str, *, release: str | None = None, arch: str | None = None,
              flavours: dict[str, str | None] | None = None) -> None:
        """Of our version and, when pinned, matching the configured release, arch and flavours."""
        lock = self.document
        if not isinstance(lock, dict) or lock.get("lock_version") != self.VERSION:
            raise LockError(f"{source}: not a version-{self.VERSION} lock file")
        for key in ("release", "arch", "abi", "repository", "src", "flavours"):
            if key not in lock:
                raise LockError(f"{source}: missing {key!r}")
        if release is not None and lock["release"] != release:
            raise LockError(f"{source}: locks release {lock['release']}, not {release}")
        if arch is not None and lock["arch"] != arch:
            raise LockError(f"{source}: locks architecture {lock['arch']}, not {arch}")
        if flavours is not None:
            locked = {n: f.get("parent") for n, f in lock["flavours"].items()}
            if locked != flavours:
                raise LockError(f"{source}: locks flavours {sorted(locked)} (parents {locked}), "
                                f"config has {sorted(flavours)} (parents {flavours})")
        for fname, f in lock["flavours"].items():
            for p in f.get("packages", []):
                for key in ("name", "version", "sum", "path"):
                    if not p.get(key):
                        raise LockError(f"{source}: flavour {fname}: package entry without {key}: "
                                        f"{p.get('name', p)}")


@dataclass(frozen=True)
class Downloaded(Record):
    """<arch>.downloaded.json: cache path (relative to the work directory) of every locked package."""

    WRITTEN_BY: ClassVar[str] = "the download"
    packages: dict[str, str]


# --------------------------------------------------------------------------- layers

@dataclass(frozen=True)
class LayerRecord(Record):
    """layer.json: the layer blob and how it was made."""

    WRITTEN_BY: ClassVar[str] = "the layer stage"
    identity: str
    digest: str
    diff_id: str
    size: int
    media_type: str
    created_by: str
    comment: str
    packages: list[str]
    scripts: list[str]

    @property
    def descriptor(self) -> Descriptor:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class PackageIndex:
    """index.json: image path -> (kind, content digest, package) of what a flavour's packages installed."""

    # path -> [kind, digest, package]: a file's sha256, or in a layer that is never shared the "2$..."
    # BLAKE2b sum its package verified it with (tree.LayerTree package_sums); a link's target sha256
    paths: dict[str, list[str]]

    @classmethod
    def load(cls, path: Path) -> PackageIndex:
        return cls(dict(load_json(path, "the layer stage")))

    def save(self, path: Path) -> bool:
        return write_if_changed(path, pretty_json(self.paths))


@dataclass(frozen=True)
class BuiltLayer:
    """layers/<identity>.json: everything a layer stage wrote, kept under its plan identity for reuse."""

    layer: LayerRecord
    view: ParentView
    index: PackageIndex

    @classmethod
    def load(cls, path: Path) -> BuiltLayer:
        doc = load_json(path, "the layer stage")
        return cls(LayerRecord.from_json(doc["layer"]), ParentView.from_json(doc["view"]),
                   PackageIndex(doc["index"]))

    def save(self, path: Path) -> bool:
        return write_if_changed(path, pretty_json({"layer": self.layer.to_json(), "view": self.view.to_json(),
                                                   "index": self.index.paths}))


# --------------------------------------------------------------------------- images

@dataclass(frozen=True)
class ImageRecord(Record):
    """image.json: one architecture's image of a flavour (config and manifest descriptors)."""

    WRITTEN_BY: ClassVar[str] = "the image stage"
    manifest: Descriptor
    platform: dict[str, str]
    config: Descriptor
    ref: str


@dataclass(frozen=True)
class ArchiveRecord(Record):
    """archive.json: a written .txz's name, size and CHECKSUM digests (computed as it was written)."""

    WRITTEN_BY: ClassVar[str] = "the archive stage"
    name: str
    size: int
    digests: dict[str, str]             # {"SHA256": hex, "SHA512": hex}


@dataclass(frozen=True)
class IndexRecord(Record):
    """index-<flavour>.json: the multi-arch index of a flavour and where its OCI layout is."""

    WRITTEN_BY: ClassVar[str] = "the index stage"
    index: Descriptor
    layout: str

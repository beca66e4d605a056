"""How FreeBSD names what a release build makes: files, image references, snapshot versions.

One home for every name the pipeline gives its outputs, so the planner, the
stages, publishing and pushing agree (release/Makefile.mirrors and
release/scripts/make-oci-image.sh are the source of each spelling).
"""
from __future__ import annotations

from typing import Protocol

CHECKSUM_FILES = ("CHECKSUM.SHA256", "CHECKSUM.SHA512")


class HasSuffix(Protocol):
    @property
    def suffix(self) -> str | None: ...


def archive_name(version: str, file_arch: str, flavour: str) -> str:
    """FreeBSD-<version>-<arch>-container-image-<flavour>.txz (arch as TARGET-TARGET_ARCH when they differ)."""
    return f"FreeBSD-{version}-{file_arch}-container-image-{flavour}.txz"


def sbom_name(archive: str) -> str:
    """FreeBSD-...-container-image-static.txz -> FreeBSD-...-container-image-static.spdx.json"""
    return archive.removesuffix(".txz") + ".spdx.json"


def snapshot_name(plain: str, suffix: str) -> str:
    """FreeBSD-15.0-CURRENT-amd64-container-image-runtime.txz -> ...-container-image-<suffix>-runtime.txz"""
    head, _, flavour = plain.rpartition("-container-image-")
    return f"{head}-container-image-{suffix}-{flavour}"


def image_version(version: str, kind: str, src: HasSuffix) -> str:
    """The version images carry: 15.0-CURRENT-<YYYYMMDD>-<gitrev>-<gitcount> for snapshots."""
    return f"{version}-{src.suffix}" if kind == "snapshot" and src.suffix else version


def ref_name(image: str, version: str, arch: str | None = None) -> str:
    """The reference an image loads as from an archive or layout: <image>:<version>[-<arch>]
    (freebsd14-minimal:14.2-RELEASE-amd64 as 14.x names it, freebsd-runtime:15.0-RELEASE-amd64 later)."""
    return f"{image}:{version}" + (f"-{arch}" if arch else "")


def registry_repository(namespace: str, flavour: str) -> str:
    """<namespace>/freebsd-<flavour> in a registry."""
    return f"{namespace}/freebsd-{flavour}" if namespace else f"freebsd-{flavour}"

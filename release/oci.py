"""OCI image-spec v1.1 documents and image layouts.

Every JSON document is serialised one way only:
``json.dumps(obj, sort_keys=True, separators=(",", ":"))`` (ASCII, escapes
for anything else), and a document's digest is the sha256 of exactly those
bytes.  So the same inputs give the same config, manifest and index digests
on every host, and a digest can be recomputed from the parsed document.

Blobs live in one content-addressed directory (``blobs_dir/<hex>``, the
same directory compress.BlobWriter writes layers into); layouts and archives
are views of it assembled from an index.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import LayerError
from .fsutil import atomic_directory, atomic_write

MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = {MEDIA_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json"}
INDEX_TYPES = {MEDIA_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json"}
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}
_MAX_DOCUMENT = 4 << 20  # manifests and indexes are kilobytes; refuse to parse giants


def document_bytes(obj: dict[str, Any]) -> bytes:
    """The canonical serialisation whose sha256 is the document's digest."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("ascii")


def descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
            "size": len(data)}


def rfc3339(epoch: int) -> str:
    """UTC, whole seconds, 'Z' suffix: '2024-11-29T00:00:00Z'."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def blob_path(blobs_dir: Path, digest: str) -> Path:
    algorithm, _, hexdigest = digest.partition(":")
    if algorithm != "sha256" or len(hexdigest) != 64 or not all(c in "0123456789abcdef" for c in hexdigest):
        raise LayerError(f"unsupported or malformed digest {digest!r}")
    return Path(blobs_dir) / hexdigest


def write_json_blob(blobs_dir: Path, obj: dict[str, Any], media_type: str | None = None) -> dict[str, Any]:
    """Store *obj* as a blob; its descriptor (media type from *obj* or the argument).

    An image config has no mediaType field of its own: pass MEDIA_CONFIG.
    """
    media_type = media_type or obj.get("mediaType")
    if not media_type:
        raise LayerError("write_json_blob: document has no mediaType and none was given")
    data = document_bytes(obj)
    desc = descriptor(media_type, data)
    path = blob_path(blobs_dir, desc["digest"])
    if not (path.is_file() and path.stat().st_size == len(data)):
        atomic_write(path, data, 0o644)
    return desc


def image_config(*, architecture: str, variant: str, os: str = "freebsd", created: int,
                 cmd: list[str], env: list[str], diff_ids: list[str], history: list[dict[str, Any]],
                 labels: dict[str, str] | None) -> dict[str, Any]:
    """The image configuration: platform, runtime defaults, rootfs and history.

    *history* has one entry per layer ({"created_by", "comment", optional
    "created" epoch defaulting to *created*}), because tools pair history
    entries with layers.  Cmd and Labels are left out when empty, so an image
    without a default command inherits nothing surprising.
    """
    if len(history) != len(diff_ids):
        raise LayerError(f"image config {architecture}: {len(history)} history entries "
                         f"for {len(diff_ids)} layers")
    runtime: dict[str, Any] = {"Env": list(env)}
    if cmd:
        runtime["Cmd"] = list(cmd)
    if labels:
        runtime["Labels"] = dict(labels)
    config = {
        "architecture": architecture,
        "os": os,
        "created": rfc3339(created),
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [_history_entry(h, created) for h in history],
    }
    if variant:
        config["variant"] = variant
    return config


def _history_entry(entry: dict[str, Any], created: int) -> dict[str, Any]:
    out = {"created": rfc3339(entry.get("created", created)), "created_by": entry["created_by"]}
    if entry.get("comment"):
        out["comment"] = entry["comment"]
    return out


def image_manifest(config_desc: dict[str, Any], layer_descs: list[dict[str, Any]],
                   annotations: dict[str, str] | None) -> dict[str, Any]:
    if not layer_descs:
        raise LayerError(f"manifest for config {config_desc.get('digest')}: no layers "
                         "(the image-spec schema requires at least one)")
    manifest = {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
                "config": dict(config_desc), "layers": [dict(d) for d in layer_descs]}
    if annotations:
        manifest["annotations"] = dict(annotations)
    return manifest


def image_index(entries: list[tuple[dict[str, Any], dict[str, str]]],
                annotations: dict[str, str] | None) -> dict[str, Any]:
    """An image index of (descriptor, platform) pairs; an empty platform is left out.

    The same shape serves as a multi-arch index blob and as a layout's
    index.json (where descriptors usually carry a ref.name annotation,
    see with_ref_name()).
    """
    manifests = []
    for desc, platform in entries:
        item = dict(desc)
        if platform:
            item["platform"] = dict(platform)
        manifests.append(item)
    index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": manifests}
    if annotations:
        index["annotations"] = dict(annotations)
    return index


def with_ref_name(desc: dict[str, Any], ref_name: str) -> dict[str, Any]:
    """*desc* annotated with the tag a layout or `podman load` shows for it."""
    out = dict(desc)
    out["annotations"] = {**desc.get("annotations", {}), ANNOTATION_REF_NAME: ref_name}
    return out


def _load_document(blobs_dir: Path, desc: dict[str, Any]) -> dict[str, Any]:
    """Read a manifest/index blob, checking size and digest (they are small)."""
    path = blob_path(blobs_dir, desc["digest"])
    if desc["size"] > _MAX_DOCUMENT:
        raise LayerError(f"{desc['digest']}: {desc['size']} bytes is too big for a {desc['mediaType']}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LayerError(f"{desc['digest']}: {desc['mediaType']} missing from {blobs_dir}") from None
    if "sha256:" + hashlib.sha256(data).hexdigest() != desc["digest"]:
        raise LayerError(f"{path}: content does not match its digest")
    document: dict[str, Any] = json.loads(data)
    return document


def reachable_blobs(blobs_dir: Path, index: dict[str, Any]) -> list[tuple[str, int]]:
    """(digest, size) of every blob *index* leads to, sorted, each once.

    Walks nested indexes and manifests (config and layers); every blob must
    exist in *blobs_dir* with the size its descriptor promises.
    """
    found: dict[str, int] = {}
    pending = list(index.get("manifests", []))
    while pending:
        desc = pending.pop()
        digest, size = desc["digest"], desc["size"]
        if found.setdefault(digest, size) != size:
            raise LayerError(f"{digest}: described with two sizes ({found[digest]} and {size})")
        path = blob_path(blobs_dir, digest)
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            raise LayerError(f"{digest}: blob missing from {blobs_dir}") from None
        if actual != size:
            raise LayerError(f"{path}: {actual} bytes, descriptor says {size}")
        media = desc.get("mediaType", "")
        if media in INDEX_TYPES:
            pending.extend(_load_document(blobs_dir, desc).get("manifests", []))
        elif media in MANIFEST_TYPES:
            manifest = _load_document(blobs_dir, desc)
            pending.append(manifest["config"])
            pending.extend(manifest.get("layers", []))
    return sorted(found.items())


def _place_blob(src: Path, dst: Path) -> None:
    """Hard-link *src* to *dst* when possible (same file system), else copy."""
    try:
        os.link(src, dst)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        shutil.copyfile(src, dst)
    if dst.stat().st_mode & 0o7777 != 0o644:
        os.chmod(dst, 0o644)


def write_layout(dest: Path, blobs_dir: Path, index: dict[str, Any]) -> None:
    """An OCI image layout at *dest* holding *index* as index.json and its blobs.

    Built in a temporary directory next to *dest* and swapped in whole, so a
    reader never sees half a layout.  File modes are fixed (0644/0755);
    index.json and oci-layout use the canonical JSON spelling.
    """
    blobs = reachable_blobs(blobs_dir, index)
    with atomic_directory(dest) as tmp:
        sha_dir = tmp / "blobs" / "sha256"
        sha_dir.mkdir(parents=True)
        for directory in (tmp / "blobs", sha_dir):
            os.chmod(directory, 0o755)
        atomic_write(tmp / "oci-layout", document_bytes(LAYOUT_VERSION), 0o644)
        atomic_write(tmp / "index.json", document_bytes(index), 0o644)
        for digest, _size in blobs:
            _place_blob(blob_path(blobs_dir, digest), blob_path(sha_dir, digest))


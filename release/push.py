"""Pushing a built release to the configured registries, with signatures and SBOMs.

Per registry and flavour (parents first, so children mount their layers): the
multi-arch index, its per-arch manifests and every blob, pushed by digest and
then tagged (freebsd-static:14.2-RELEASE, :14.2, :14; snapshots :15.snap and
:15.snap<YYYYMMDD>).  With a signing key, each per-arch manifest and the index
get a cosign signature (`sha256-<hex>.sig`); with [push] sbom, each image's
SPDX document is pushed as an OCI artifact whose subject is the image manifest,
announced through the referrers API or, where the registry has none, the
`sha256-<hex>` referrers tag.
"""
from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Callable

from .attest import signing_key
from .config import Config, expand
from .cosign import sign_image, signature_tag
from .errors import ReleaseError
from .fsutil import atomic_write, read_record
from .image import arch_dir, archive_name, image_record, layout_dir, sbom_name
from .oci import MEDIA_INDEX, MEDIA_MANIFEST, blob_path
from .regauth import find_credentials
from .registry import Registry
from .sbom import Attachment, referrers_index, sbom_artifact
from .sources import read_src
from .workspace import Workspace


def repository(namespace: str, flavour: str) -> str:
    return f"{namespace}/freebsd-{flavour}" if namespace else f"freebsd-{flavour}"


def tags_for(cfg: Config, release: str, src: dict) -> list[str]:
    """The configured tags, expanded: ${VERSION}, ${MAJOR}, ${MINOR}, ${BUILDDATE}."""
    r = cfg.release(release)
    number = r.version.split("-", 1)[0]
    major, _, minor = number.partition(".")
    variables = {"VERSION": r.version, "MAJOR": major, "MINOR": minor or "0",
                 "BUILDDATE": src.get("build_date", "")}
    templates = cfg.push.snapshot_tags if r.kind == "snapshot" else cfg.push.release_tags
    return [expand(t, variables) for t in templates]


def push_release(cfg: Config, release: str, say: Callable[[str], None] = print) -> dict:
    if not cfg.registries:
        raise ReleaseError("no registry configured: add a [registries.<name>] table to config.toml")
    ws = Workspace.of(cfg)
    src = read_src(ws, release)
    key = signing_key(cfg)
    results = {}
    for reg in cfg.registries.values():
        host = urllib.parse.urlsplit(reg.url).netloc
        with Registry(reg.url, tls_verify=reg.tls_verify, credentials=find_credentials(host),
                      retries=cfg.pipeline.http_retries, timeout=cfg.pipeline.http_timeout,
                      chunk_size=reg.chunk_size, user_agent=cfg.pipeline.user_agent) as client:
            results[reg.name] = _push_to(cfg, release, ws, client, host, reg.namespace, src, key, say)
    return results


def _push_to(cfg, release, ws, client, host, namespace, src, key, say) -> dict:
    r = cfg.release(release)
    tags = tags_for(cfg, release, src)
    pushed: list[str] = []
    uploaded = 0
    for flavour in r.flavours:
        repo = repository(namespace, flavour)
        index_desc = _layout_index(ws, release, flavour)
        report = client.push_index_tree(repo, ws.blobs(), index_desc, tags=tags, mount_from=pushed)
        pushed.append(repo)
        uploaded += report.bytes_uploaded
        images = {a: read_record(image_record(ws, release, a, flavour), f"image:{release}:{a}:{flavour}")
                  for a in r.arches}
        if key is not None:
            for desc in [i["manifest"] for i in images.values()] + [index_desc]:
                existing = client.get_manifest(repo, signature_tag(desc["digest"]), accept=(MEDIA_MANIFEST,))
                _push_attachment(client, ws, repo, sign_image(key, f"{host}/{repo}", desc["digest"],
                                                              existing=existing))
        if cfg.push.sbom:
            created = read_record(ws.src_inputs(release), "fetch")["source_date_epoch"]
            for arch, image in images.items():
                path = arch_dir(ws, release, arch) / sbom_name(archive_name(cfg, release, arch, flavour))
                sbom = read_record_bytes(path, f"sbom:{release}:{arch}:{flavour}")
                _push_referrer(client, ws, repo, sbom_artifact(sbom, image["manifest"], created=created,
                                                               title=path.name))
        say(f"{client.base}/{repo}: {', '.join(tags)} -> {index_desc['digest']} "
            f"({report.bytes_uploaded} bytes uploaded, {report.blobs_present} blobs present, "
            f"{report.blobs_mounted} mounted)" + (", signed" if key is not None else ""))
    return {"repositories": pushed, "bytes_uploaded": uploaded}


def _layout_index(ws: Workspace, release: str, flavour: str) -> dict:
    layout = read_record(layout_dir(ws, release, flavour) / "index.json", f"index:{release}:{flavour}")
    desc = dict(layout["manifests"][0])
    desc.pop("annotations", None)           # ref.name belongs to the layout, not to the registry
    return desc


def read_record_bytes(path: Path, producer: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ReleaseError(f"{path}: missing (it is written by {producer})") from None


def _push_attachment(client: Registry, ws: Workspace, repo: str, att: Attachment) -> None:
    """Blobs first, then the manifest by digest, then its tag (if any)."""
    for digest, data in sorted(att.blobs.items()):
        path = blob_path(ws.blobs(), digest)
        if not path.is_file():
            atomic_write(path, data)
        client.push_blob(repo, digest, len(data), path)
    client.push_manifest(repo, att.manifest, att.media_type, reference=att.digest)
    if att.tag:
        client.push_manifest(repo, att.manifest, att.media_type, reference=att.tag)


def _push_referrer(client: Registry, ws: Workspace, repo: str, att: Attachment) -> None:
    _push_attachment(client, ws, repo, att)
    subject = att.fallback_tag.replace("-", ":", 1)
    if client.has_referrers_api(repo, subject):
        return                                  # the registry indexes the subject by itself
    existing = client.get_manifest(repo, att.fallback_tag, accept=(MEDIA_INDEX,))
    client.push_manifest(repo, referrers_index(existing, att.descriptor), MEDIA_INDEX,
                         reference=att.fallback_tag)

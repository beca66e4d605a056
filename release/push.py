"""Pushing a built release to the configured registries, with signatures and SBOMs.

Per registry and flavour (parents first, so children mount their layers): the
multi-arch index, its per-arch manifests and every blob, pushed by digest and
then tagged (freebsd-static:14.2-RELEASE, :14.2, :14; snapshots :15.snap and
:15.snap<YYYYMMDD>).  With a signing key, each per-arch manifest and the index
get a cosign signature (`sha256-<hex>.sig`); with an OpenPGP key, each of them
gets, per pushed tag, a containers simple-signing signature in the release's
lookaside store (release/sigstore.py), which publish carries into the download
tree; with [push] sbom, each image's
SPDX document is pushed as an OCI artifact whose subject is the image manifest,
announced through the referrers API or, where the registry has none, the
`sha256-<hex>` referrers tag.
"""
from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .attest import signing_key
from .cosign import sign_image, signature_tag
from .errors import ReleaseError
from .fsutil import atomic_write
from .names import registry_repository
from .oci import MEDIA_INDEX, MEDIA_MANIFEST, blob_path
from .plans import PushPlan
from .records import ImageRecord, SrcHead, load_json
from .regauth import find_credentials
from .registry import Registry
from .sbom import Attachment, referrers_index, sbom_artifact
from .sigstore import PushSignatures, configured_signer
from .signing import SigningKey
from .textvars import expand
from .workspace import Workspace


def tags_for(plan: PushPlan, src: SrcHead) -> list[str]:
    """The configured tags, expanded: ${VERSION}, ${MAJOR}, ${MINOR}, ${BUILDDATE}."""
    number = plan.version.split("-", 1)[0]
    major, _, minor = number.partition(".")
    variables = {"VERSION": plan.version, "MAJOR": major, "MINOR": minor or "0",
                 "BUILDDATE": src.build_date or ""}
    return [expand(t, variables) for t in plan.tags]


def push_release(plan: PushPlan, say: Callable[[str], None] = print) -> dict[str, Any]:
    if not plan.registries:
        raise ReleaseError("no registry configured: add a [registries.<name>] table to config.toml")
    src = SrcHead.load(plan.workspace.src_json(plan.release))
    key = signing_key(plan.signing)
    results = {}
    with configured_signer(plan.signing) as openpgp:
        store = None if openpgp is None else \
            PushSignatures(plan.workspace, plan.release, openpgp, plan.http.user_agent)
        for reg in plan.registries:
            host = urllib.parse.urlsplit(reg.url).netloc
            with Registry(reg.url, tls_verify=reg.tls_verify, credentials=find_credentials(host),
                          retries=plan.http.retries, timeout=plan.http.timeout,
                          chunk_size=reg.chunk_size, user_agent=plan.http.user_agent) as client:
                results[reg.name] = _push_to(plan, client, host, reg.namespace, src, key, say, store)
        if store is not None:
            made = store.save()
            say(f"{plan.release}: OpenPGP signatures by {store.signer.fingerprint}: {made} made, "
                f"{store.count - made} kept ({store.root})")
    return results


def _push_to(plan: PushPlan, client: Registry, host: str, namespace: str, src: SrcHead, key: SigningKey | None,
             say: Callable[[str], None], store: PushSignatures | None = None) -> dict[str, Any]:
    ws = plan.workspace
    tags = tags_for(plan, src)
    pushed: list[str] = []
    uploaded = 0
    for flavour in plan.flavours:
        repo = registry_repository(namespace, flavour.name)
        index_desc = _layout_index(ws, plan.release, flavour.name)
        report = client.push_index_tree(repo, ws.blobs(), index_desc, tags=tags, mount_from=pushed)
        pushed.append(repo)
        uploaded += report.bytes_uploaded
        images = {a: ImageRecord.load(ws.image_json(plan.release, a, flavour.name)) for a in plan.arches}
        if key is not None:
            for desc in [i.manifest for i in images.values()] + [index_desc]:
                existing = client.get_manifest(repo, signature_tag(desc["digest"]), accept=(MEDIA_MANIFEST,))
                _push_attachment(client, ws, repo, sign_image(key, f"{host}/{repo}", desc["digest"],
                                                              existing=existing))
        if store is not None:
            store.sign(host, repo, tags, [i.manifest["digest"] for i in images.values()] + [index_desc["digest"]])
        if plan.sbom:
            created = src.source_date_epoch
            for arch, name in flavour.sboms:
                path = ws.arch_dir(plan.release, arch) / name
                sbom = read_record_bytes(path, "the sbom stage")
                _push_referrer(client, ws, repo, sbom_artifact(sbom, images[arch].manifest, created=created,
                                                               title=path.name))
        say(f"{client.base}/{repo}: {', '.join(tags)} -> {index_desc['digest']} "
            f"({report.bytes_uploaded} bytes uploaded, {report.blobs_present} blobs present, "
            f"{report.blobs_mounted} mounted)" + (", signed" if key is not None or store is not None else ""))
    return {"repositories": pushed, "bytes_uploaded": uploaded}


def _layout_index(ws: Workspace, release: str, flavour: str) -> dict[str, Any]:
    layout = load_json(ws.layout_dir(release, flavour) / "index.json", "the index stage")
    desc = dict(layout["manifests"][0])
    desc.pop("annotations", None)           # ref.name belongs to the layout, not to the registry
    return desc


def read_record_bytes(path: Path, producer: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ReleaseError(f"{path}: missing ({producer} has not run yet)") from None


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

"""Image signatures in cosign's registry format, as containers/image (podman, skopeo) verifies them.

cosign stores the signatures of image ``<repo>@sha256:<hex>`` as an OCI image
manifest tagged ``sha256-<hex>.sig`` in the same repository.  Each of its layers
is one signature:

- the layer blob is the "simple signing" payload, media type
  ``application/vnd.dev.cosign.simplesigning.v1+json``, exactly the bytes Go's
  encoding/json writes for sigstore's payload struct (one line, no spaces)::

    {"critical":{"identity":{"docker-reference":"<repo>"},
                 "image":{"docker-manifest-digest":"sha256:<hex>"},
                 "type":"cosign container image signature"},"optional":null}

- the layer annotation ``dev.cosignproject.cosign/signature`` holds the base64
  of the DER ECDSA-SHA256 signature over those payload bytes.

The config blob is the one go-containerregistry makes for such an image (empty
architecture/os, zero timestamps, one diff_id per payload).  containers/image
(policy type ``sigstoreSigned`` with ``use-sigstore-attachments: true``) fetches
that tag, requires the OCI manifest media type, checks each payload blob's
digest, verifies the signature over the payload bytes and then parses the
payload strictly: exactly the keys above, no duplicates, ``optional`` null or
an object (``creator`` a string, ``timestamp`` an integer).  parse_simple_signing
applies the same rules, so what passes here passes there.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from .errors import InputError, SignatureError
from .oci import MEDIA_CONFIG, MEDIA_MANIFEST
from .sbom import Attachment
from .signing import SigningKey, verify

MEDIA_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
ANNOTATION_SIGNATURE = "dev.cosignproject.cosign/signature"
SIGNATURE_TYPE = "cosign container image signature"
ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time, as cosign's signature config carries it
_DIGEST = re.compile(r"^(sha256:[0-9a-f]{64}|sha384:[0-9a-f]{96}|sha512:[0-9a-f]{128})$")


@dataclass(frozen=True)
class SimpleSigning:
    """A parsed (not yet trusted) simple-signing payload."""
    docker_reference: str
    manifest_digest: str
    creator: str | None = None
    timestamp: int | None = None


def signature_tag(manifest_digest: str) -> str:
    """The tag cosign and containers/image look for: ``sha256-<hex>.sig``."""
    if not _DIGEST.match(manifest_digest):
        raise InputError(f"{manifest_digest!r}: not a manifest digest")
    return manifest_digest.replace(":", "-", 1) + ".sig"


def _go_json(value: object) -> str:
    """JSON spelled as Go's encoding/json writes it (no spaces, UTF-8, <>& escaped)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def _check_text(what: str, value: object) -> None:
    if not isinstance(value, str) or not value or any(ord(c) < 0x20 for c in value):
        raise InputError(f"simple-signing payload: {what} {value!r} must be non-empty text without control "
                         "characters")


def simple_signing_payload(docker_reference: str, manifest_digest: str,
                           optional: dict[str, str | int] | None = None, *,
                           signature_type: str = SIGNATURE_TYPE) -> bytes:
    """The payload cosign signs for *docker_reference* (repository, no tag) at *manifest_digest*.

    *optional*: cosign's ``-a key=value`` annotations (None gives ``"optional":null``,
    like cosign without annotations).  *signature_type* "atomic container
    signature" makes the payload of containers' OpenPGP simple signing
    (release/sigstore.py), whose reference carries the tag it was pushed as.
    """
    _check_text("docker-reference", docker_reference)
    if "@" in docker_reference:
        raise InputError(f"simple-signing payload: docker-reference {docker_reference!r} must not carry a digest")
    if not _DIGEST.match(manifest_digest):
        raise InputError(f"simple-signing payload: {manifest_digest!r} is not a manifest digest")
    critical = ('{"identity":{"docker-reference":' + _go_json(docker_reference) + '},'
                '"image":{"docker-manifest-digest":' + _go_json(manifest_digest) + '},'
                '"type":' + _go_json(signature_type) + '}')
    if optional is None:
        extra = "null"
    else:
        for key, value in optional.items():
            _check_text("optional key", key)
            if not isinstance(value, int) or isinstance(value, bool):
                _check_text(f"optional {key}", value)
        extra = _go_json({k: optional[k] for k in sorted(optional)})  # Go sorts map keys
    return ('{"critical":' + critical + ',"optional":' + extra + '}').encode()


def _strict_object(data: object, where: str, exact: set[str] | None = None) -> dict[str, Any]:
    """A JSON object from containers/image's point of view: *exact* keys when given."""
    if not isinstance(data, dict):
        raise SignatureError(f"{where}: JSON object expected")
    if exact is not None and set(data) != exact:
        raise SignatureError(f"{where}: keys {sorted(data)}, expected exactly {sorted(exact)}")
    return data


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise SignatureError(f"simple-signing payload: duplicate key {key!r}")
        seen[key] = value
    return seen


def parse_simple_signing(payload: bytes, signature_type: str = SIGNATURE_TYPE) -> SimpleSigning:
    """Parse *payload* with containers/image's rules (paranoid: exact keys, no duplicates).

    The same rules hold for both payload types (signature/internal/sigstore_payload.go
    and signature/simple.go), but for *signature_type*.
    """
    try:
        data = json.loads(payload, object_pairs_hook=_no_duplicates)
    except (ValueError, UnicodeDecodeError) as e:
        raise SignatureError(f"simple-signing payload: not JSON ({str(e).splitlines()[0]})") from None
    top = _strict_object(data, "simple-signing payload", {"critical", "optional"})
    creator = timestamp = None
    if top["optional"] is not None:
        optional = _strict_object(top["optional"], "simple-signing payload optional")
        if "creator" in optional:
            if not isinstance(optional["creator"], str):
                raise SignatureError("simple-signing payload: optional.creator is not a string")
            creator = optional["creator"]
        if "timestamp" in optional:
            value = optional["timestamp"]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
                raise SignatureError("simple-signing payload: optional.timestamp is not an integer")
            timestamp = int(value)
    critical = _strict_object(top["critical"], "simple-signing payload critical", {"type", "image", "identity"})
    if critical["type"] != signature_type:
        raise SignatureError(f"simple-signing payload: unrecognised signature type {critical['type']!r}")
    image = _strict_object(critical["image"], "simple-signing payload critical.image", {"docker-manifest-digest"})
    digest = image["docker-manifest-digest"]
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise SignatureError(f"simple-signing payload: invalid docker-manifest-digest {digest!r}")
    identity = _strict_object(critical["identity"], "simple-signing payload critical.identity", {"docker-reference"})
    reference = identity["docker-reference"]
    if not isinstance(reference, str):
        raise SignatureError("simple-signing payload: docker-reference is not a string")
    return SimpleSigning(reference, digest, creator, timestamp)


def signature_config(payload_digests: list[str]) -> bytes:
    """go-containerregistry's config for an image of payload layers (what cosign pushes)."""
    history = ",".join('{"created":"%s"}' % ZERO_TIME for _ in payload_digests)
    diff_ids = ",".join(_go_json(d) for d in payload_digests)
    return ('{"architecture":"","created":"%s","history":[%s],"os":"","rootfs":{"type":"layers",'
            '"diff_ids":[%s]},"config":{}}' % (ZERO_TIME, history, diff_ids)).encode()


def _descriptor_json(desc: dict[str, Any]) -> str:
    """A descriptor in go-containerregistry's field order: mediaType, size, digest, annotations."""
    text = '{"mediaType":%s,"size":%d,"digest":%s' % (_go_json(desc["mediaType"]), desc["size"],
                                                      _go_json(desc["digest"]))
    if desc.get("annotations"):
        text += ',"annotations":' + _go_json({k: desc["annotations"][k] for k in sorted(desc["annotations"])})
    return text + "}"


def _existing_layers(existing: bytes | None, tag: str) -> list[dict[str, Any]]:
    if not existing:
        return []
    try:
        manifest = json.loads(existing)
        layers = [{"mediaType": layer["mediaType"], "size": int(layer["size"]), "digest": layer["digest"],
                   "annotations": dict(layer.get("annotations") or {})} for layer in manifest["layers"]]
    except (ValueError, KeyError, TypeError):
        raise SignatureError(f"{tag}: the existing signature manifest is not an image manifest") from None
    if manifest.get("mediaType") != MEDIA_MANIFEST:
        raise SignatureError(f"{tag}: the existing signature manifest is {manifest.get('mediaType')!r}, "
                             f"not {MEDIA_MANIFEST}")
    return layers


def sign_image(key: SigningKey, docker_reference: str, manifest_digest: str, *,
               optional: dict[str, str | int] | None = None, existing: bytes | None = None) -> Attachment:
    """The signature manifest (tag ``sha256-<hex>.sig``) for one image manifest, and its blobs.

    *existing*: the manifest already under that tag, whose signatures (layers)
    are kept, as ``cosign sign`` does; signing the same payload with the same
    key again changes nothing (signatures are deterministic).
    """
    tag = signature_tag(manifest_digest)
    payload = simple_signing_payload(docker_reference, manifest_digest, optional)
    signature = base64.b64encode(key.sign(payload)).decode()
    layer: dict[str, Any] = {"mediaType": MEDIA_SIMPLESIGNING, "size": len(payload),
                             "digest": "sha256:" + hashlib.sha256(payload).hexdigest(),
                             "annotations": {ANNOTATION_SIGNATURE: signature}}
    layers = _existing_layers(existing, tag)
    if layer not in layers:
        layers.append(layer)
    config = signature_config([entry["digest"] for entry in layers])
    config_desc: dict[str, Any] = {"mediaType": MEDIA_CONFIG, "size": len(config),
                   "digest": "sha256:" + hashlib.sha256(config).hexdigest()}
    manifest = ('{"schemaVersion":2,"mediaType":%s,"config":%s,"layers":[%s]}' % (
        _go_json(MEDIA_MANIFEST), _descriptor_json(config_desc),
        ",".join(_descriptor_json(entry) for entry in layers))).encode()
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    return Attachment(manifest=manifest, media_type=MEDIA_MANIFEST, digest=digest,
                      blobs={config_desc["digest"]: config, layer["digest"]: payload},
                      descriptor={"mediaType": MEDIA_MANIFEST, "digest": digest, "size": len(manifest)},
                      tag=tag)


def _verify_layer(layer: dict[str, Any], payload: bytes, public_key: ec.EllipticCurvePublicKey) -> str:
    """'' when *layer* carries a valid signature of *payload*, else why not."""
    encoded = (layer.get("annotations") or {}).get(ANNOTATION_SIGNATURE)
    if encoded is None:
        return f"missing {ANNOTATION_SIGNATURE} annotation"
    try:
        signature = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError, TypeError):
        return "signature annotation is not base64"
    if not verify(public_key, payload, signature):
        return "cryptographic signature verification failed"
    return ""


def verify_cosign(manifest: bytes, payload: bytes, public_key: ec.EllipticCurvePublicKey,
                  expected_digest: str, expected_reference: str | None = None) -> SimpleSigning:
    """Check a signature manifest and one payload blob as containers/image does; the payload on success.

    Raises SignatureError (one line, naming the signature tag) when the manifest
    is not an OCI manifest, no simple-signing layer carries *payload*, no such
    layer's signature verifies with *public_key*, or the signed digest (and
    *expected_reference*, when given) is not the expected one.
    """
    tag = signature_tag(expected_digest)
    try:
        document = json.loads(manifest)
        layers = list(document["layers"])
    except (ValueError, KeyError, TypeError):
        raise SignatureError(f"{tag}: not an image manifest") from None
    if document.get("mediaType") != MEDIA_MANIFEST:
        raise SignatureError(f"{tag}: manifest media type {document.get('mediaType')!r}, not {MEDIA_MANIFEST}")
    payload_digest = "sha256:" + hashlib.sha256(payload).hexdigest()
    candidates = [layer for layer in layers if isinstance(layer, dict)
                  and layer.get("mediaType") == MEDIA_SIMPLESIGNING and layer.get("digest") == payload_digest]
    if not candidates:
        raise SignatureError(f"{tag}: no {MEDIA_SIMPLESIGNING} layer for payload {payload_digest}")
    reasons = [_verify_layer(layer, payload, public_key) for layer in candidates]
    if "" not in reasons:
        raise SignatureError(f"{tag}: {reasons[0]}")
    signed = parse_simple_signing(payload)
    if signed.manifest_digest != expected_digest:
        raise SignatureError(f"{tag}: signature is for {signed.manifest_digest}, not {expected_digest}")
    if expected_reference is not None and signed.docker_reference != expected_reference:
        raise SignatureError(f"{tag}: signature is for {signed.docker_reference!r}, not {expected_reference!r}")
    return signed

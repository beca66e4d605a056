"""SPDX 2.3 software bills of materials for the images, and the registry artifact carrying one.

An image's SBOM lists exactly what the image holds: the pkgbase packages of its
flavour *and* of every flavour below it (static -> dynamic -> minimal ...),
taken from the lock, which pins each package's version, sum and location.  The
image itself is the described package, named by its manifest digest; it is
GENERATED_FROM the src tree at the locked commit and a DESCENDANT_OF its parent
image.  Scanners (grype, trivy) and policy engines read these documents, so the
identifiers follow the public conventions:

- package URLs use the purl type ``bsd`` with namespace ``freebsd``
  (``pkg:bsd/freebsd/freebsd-runtime@14.2?arch=amd64&distro=14.2``); purl has
  no ``freebsd`` type of its own.  The image is ``pkg:oci/freebsd-<flavour>@sha256%3A...``.
- a pkg >= 2.8 ``2$`` sum is a z-base32 BLAKE2b-512 digest: SPDX 2.3 knows the
  algorithm as ``BLAKE2b-512`` and wants lower-case hex, so it is decoded.
- pkg's license names (BSD2CLAUSE ...) become SPDX identifiers; names with no
  SPDX identifier become ``LicenseRef-<name>`` and are declared in
  hasExtractedLicensingInfos, as SPDX requires.

The document is a pure function of its inputs: no clock, no random UUID (the
namespace is derived from the manifest digest), canonical JSON bytes.
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from .errors import InputError, LockError
from .fsutil import canonical_json
from .licences import ID_UNSAFE, image_license, license_expression
from .oci import MEDIA_INDEX, MEDIA_MANIFEST, descriptor, document_bytes, rfc3339
from .sums import ZBASE32, sum_kind

TOOL = "Tool: freebsd-oci-release"
SUPPLIER = "Organization: The FreeBSD Project"
NAMESPACE_BASE = "https://www.freebsd.org/spdx"
MEDIA_SPDX = "application/spdx+json"
MEDIA_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"



# --- small conversions ------------------------------------------------------------

def zbase32_decode(text: str) -> bytes:
    """Inverse of release.sums.zbase32 (pkg's LSB-first z-base32): the raw digest bytes."""
    acc = bits = 0
    out = bytearray()
    for char in text:
        value = ZBASE32.find(char)
        if value < 0:
            raise InputError(f"z-base32 {text[:16]}...: invalid character {char!r}")
        acc |= value << bits
        bits += 5
        if bits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            bits -= 8
    if acc:
        raise InputError(f"z-base32 {text[:16]}...: trailing bits are not zero")
    return bytes(out)


def package_checksum(sum_text: str) -> dict[str, Any]:
    """The SPDX checksum of a package from its catalogue sum (sha256 hex, 1$ or 2$ spelling)."""
    if sum_kind(sum_text) == "sha256":
        return {"algorithm": "SHA256", "checksumValue": sum_text.removeprefix("1$")}
    digest = zbase32_decode(sum_text[2:])
    if len(digest) != 64:
        raise InputError(f"package sum {sum_text[:20]}...: {len(digest)} bytes, BLAKE2b-512 has 64")
    return {"algorithm": "BLAKE2b-512", "checksumValue": digest.hex()}


def _qualifiers(values: dict[str, str]) -> str:
    """purl qualifiers: sorted keys, percent-encoded values, empty ones dropped."""
    items = [f"{k}={quote(v, safe='/:')}" for k, v in sorted(values.items()) if v]
    return ("?" + "&".join(items)) if items else ""


def freebsd_purl(name: str, version: str, *, arch: str, distro: str, repository_url: str = "") -> str:
    """``pkg:bsd/freebsd/<name>@<version>?arch=..&distro=..`` (purl names are lower case)."""
    return (f"pkg:bsd/freebsd/{quote(name.lower(), safe='')}@{quote(version, safe='')}"
            + _qualifiers({"arch": arch, "distro": distro, "repository_url": repository_url}))


def oci_purl(name: str, digest: str, *, arch: str, tag: str = "") -> str:
    """``pkg:oci/<name>@sha256%3A<hex>?arch=..&tag=..``: a registry-agnostic image identity."""
    return f"pkg:oci/{quote(name.lower(), safe='')}@{quote(digest, safe='')}" + _qualifiers(
        {"arch": arch, "tag": tag})


def _spdx_id(kind: str, name: str) -> str:
    return f"SPDXRef-{kind}-" + (ID_UNSAFE.sub("-", name).strip("-") or "x")


def image_chain(lock: dict[str, Any], flavour: str) -> list[str]:
    """The flavours whose layers make up *flavour*'s image, base first (static, dynamic, ...)."""
    flavours = lock.get("flavours", {})
    chain: list[str] = []
    name: str | None = flavour
    while name:
        if name not in flavours:
            raise LockError(f"lock for {lock.get('release')} {lock.get('arch')}: no flavour {name}"
                            + (f" (parent of {chain[-1]})" if chain else ""))
        if name in chain:
            raise LockError(f"lock for {lock.get('release')} {lock.get('arch')}: flavour {name} is its own parent")
        chain.append(name)
        name = flavours[name].get("parent")
    return list(reversed(chain))


# --- the document -----------------------------------------------------------------

@dataclass
class _Document:
    """Packages, relationships and extracted licences collected while building the SBOM."""
    packages: list[dict[str, Any]] = field(default_factory=list)
    relationships: list[dict[str, Any]] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    license_refs: set[str] = field(default_factory=set)

    def unique_id(self, kind: str, name: str) -> str:
        base = candidate = _spdx_id(kind, name)
        n = 2
        while candidate in self.ids:
            candidate, n = f"{base}-{n}", n + 1
        self.ids.add(candidate)
        return candidate

    def relate(self, element: str, kind: str, related: str) -> None:
        self.relationships.append({"spdxElementId": element, "relationshipType": kind,
                                   "relatedSpdxElement": related})

    def note_licenses(self, expression: str) -> None:
        self.license_refs.update(re.findall(r"LicenseRef-[A-Za-z0-9.-]+", expression))


def _image_package(doc: _Document, flavour: str, image: dict[str, Any], version: str) -> dict[str, Any]:
    manifest = image["manifest"]
    algorithm, _, hexdigest = manifest["digest"].partition(":")
    if algorithm != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hexdigest):
        raise InputError(f"image freebsd-{flavour}: manifest digest {manifest['digest']!r} is not sha256")
    tag = image.get("ref", "").partition(":")[2]
    arch = image.get("platform", {}).get("architecture", "")
    return {
        "SPDXID": doc.unique_id("Image", f"freebsd-{flavour}"),
        "name": f"freebsd-{flavour}", "versionInfo": version,
        "supplier": SUPPLIER, "originator": SUPPLIER,
        "downloadLocation": "NOASSERTION", "filesAnalyzed": False,
        "checksums": [{"algorithm": "SHA256", "checksumValue": hexdigest}],
        "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                          "referenceLocator": oci_purl(f"freebsd-{flavour}", manifest["digest"],
                                                       arch=arch, tag=tag)}],
        "primaryPackagePurpose": "CONTAINER", "copyrightText": "NOASSERTION",
    }


def _pkg_package(doc: _Document, pkg: dict[str, Any], *, flavour: str, repository_url: str,
                 distro: str) -> dict[str, Any]:
    name, version = pkg["name"], pkg["version"]
    expression = license_expression(pkg.get("licenses"), pkg.get("licenselogic"))
    doc.note_licenses(expression)
    path = pkg["path"].lstrip("/")
    public = repository_url and not repository_url.startswith("file:")
    entry = {
        "SPDXID": doc.unique_id("Package", name),
        "name": name, "versionInfo": version,
        "supplier": SUPPLIER, "originator": SUPPLIER,
        "downloadLocation": f"{repository_url.rstrip('/')}/{path}" if public else "NOASSERTION",
        "packageFileName": path.rsplit("/", 1)[-1],
        "filesAnalyzed": False,
        "checksums": [package_checksum(pkg["sum"])],
        "licenseConcluded": expression, "licenseDeclared": expression,
        "copyrightText": "NOASSERTION",
        "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                          "referenceLocator": freebsd_purl(
                              name, version, arch=(pkg.get("abi") or "::").split(":")[2], distro=distro,
                              repository_url=repository_url if public else "")}],
        "comment": f"installed by the {flavour} flavour's layer",
    }
    if pkg.get("comment"):
        entry["summary"] = pkg["comment"]
    if pkg.get("www"):
        entry["homepage"] = pkg["www"]
    return entry


def _src_package(doc: _Document, src: dict[str, Any], source_url: str) -> dict[str, Any]:
    commit = src["commit"]
    location = source_url if source_url.startswith("git+") else f"git+{source_url}"
    return {
        "SPDXID": doc.unique_id("Source", "freebsd-src"),
        "name": "freebsd-src", "versionInfo": commit,
        "supplier": SUPPLIER, "originator": SUPPLIER,
        "downloadLocation": f"{location}@{commit}", "filesAnalyzed": False,
        "primaryPackagePurpose": "SOURCE", "copyrightText": "NOASSERTION",
        "sourceInfo": f"branch {src.get('branch', '?')} at commit {commit}",
    }


def image_sbom(*, release: str, version: str, arch: str, flavour: str, lock: dict[str, Any], src: dict[str, Any],
               image: dict[str, Any], parent: dict[str, Any] | None, created: int, source_url: str,
               repository_url: str | None = None, namespace_base: str = NAMESPACE_BASE) -> dict[str, Any]:
    """The SPDX 2.3 document of one image (release x arch x flavour).

    *lock* is the arch's lock, *src* the src record (commit, branch), *image* and
    *parent* the image.json records (manifest descriptor, platform, ref) of the
    image and of its parent flavour's image.  *source_url* is the public src
    repository, *repository_url* the public pkgbase repository (default: the
    lock's; a file: URL is never published, downloadLocation says NOASSERTION).
    """
    chain = image_chain(lock, flavour)
    parent_flavour = lock["flavours"][flavour].get("parent")
    if bool(parent_flavour) != (parent is not None):
        raise InputError(f"SBOM of freebsd-{flavour} {release} {arch}: flavour parent {parent_flavour!r} "
                         f"but {'a' if parent else 'no'} parent image record was given")
    repository_url = lock.get("repository", {}).get("url", "") if repository_url is None else repository_url
    distro = version.split("-", 1)[0]
    doc = _Document()
    top = _image_package(doc, flavour, image, version)
    top["sourceInfo"] = f"built from {source_url} branch {src.get('branch', '?')} commit {src['commit']}"
    top["builtDate"] = top["releaseDate"] = rfc3339(created)
    top["description"] = f"FreeBSD {version} {flavour} container image for {arch}"
    doc.packages.append(top)
    doc.relate("SPDXRef-DOCUMENT", "DESCRIBES", top["SPDXID"])
    if parent is not None:
        base = _image_package(doc, parent_flavour, parent, version)
        doc.packages.append(base)
        doc.relate(top["SPDXID"], "DESCENDANT_OF", base["SPDXID"])
    source = _src_package(doc, src, source_url)
    doc.packages.append(source)
    doc.relate(top["SPDXID"], "GENERATED_FROM", source["SPDXID"])
    contents = [(p, f) for f in chain for p in lock["flavours"][f].get("packages", [])]
    expressions = []
    for pkg, owner in sorted(contents, key=lambda item: item[0]["name"]):
        entry = _pkg_package(doc, pkg, flavour=owner, repository_url=repository_url, distro=distro)
        expressions.append(entry["licenseConcluded"])
        doc.packages.append(entry)
        doc.relate(top["SPDXID"], "CONTAINS", entry["SPDXID"])
    top["licenseConcluded"] = top["licenseDeclared"] = image_license(expressions)
    name = f"freebsd-{flavour}-{version}-{arch}"
    digest = image["manifest"]["digest"]
    document = {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": f"{namespace_base.rstrip('/')}/{name}-{uuid.uuid5(uuid.NAMESPACE_URL, digest)}",
        "creationInfo": {"created": rfc3339(created), "creators": [TOOL]},
        "packages": doc.packages,
        "relationships": doc.relationships,
    }
    if doc.license_refs:
        document["hasExtractedLicensingInfos"] = [
            {"licenseId": ref, "name": ref.removeprefix("LicenseRef-"),
             "extractedText": f"The license pkg(8) calls {ref.removeprefix('LicenseRef-')}; "
                              "it has no SPDX license list identifier."}
            for ref in sorted(doc.license_refs)]
    return document


def sbom_bytes(document: dict[str, Any]) -> bytes:
    """The published spelling: canonical JSON (sorted keys, no spaces, UTF-8)."""
    return canonical_json(document)


# --- the registry artifact --------------------------------------------------------

@dataclass(frozen=True)
class Attachment:
    """A manifest to push next to an image, with the blobs it needs uploaded first.

    *tag*: push the manifest under this tag ("" = by digest only).
    *fallback_tag*: for registries without the referrers API, the tag whose
    image index lists the subject's referrers ("" when not a referrer).
    *descriptor*: how a referrers index lists this manifest.
    """
    manifest: bytes
    media_type: str
    digest: str
    blobs: dict[str, bytes]
    descriptor: dict[str, Any]
    tag: str = ""
    fallback_tag: str = ""


def referrers_tag(digest: str) -> str:
    """distribution-spec's referrers tag schema: ``sha256:<hex>`` -> ``sha256-<hex>``."""
    algorithm, _, hexdigest = digest.partition(":")
    if not algorithm or not re.fullmatch(r"[0-9a-f]{32,128}", hexdigest):
        raise InputError(f"{digest!r}: not a digest")
    return f"{algorithm}-{hexdigest}"


def sbom_artifact(sbom: bytes, subject: dict[str, Any], *, created: int, title: str) -> Attachment:
    """The OCI 1.1 artifact manifest carrying *sbom* with *subject* (the image manifest descriptor)."""
    empty = {**descriptor(MEDIA_EMPTY, EMPTY_BLOB), "data": "e30="}
    layer = {**descriptor(MEDIA_SPDX, sbom), "annotations": {"org.opencontainers.image.title": title}}
    annotations = {"org.opencontainers.image.created": rfc3339(created)}
    manifest = {
        "schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "artifactType": MEDIA_SPDX,
        "config": empty, "layers": [layer],
        "subject": {k: subject[k] for k in ("mediaType", "digest", "size")},
        "annotations": annotations,
    }
    data = document_bytes(manifest)
    desc = {**descriptor(MEDIA_MANIFEST, data), "artifactType": MEDIA_SPDX, "annotations": annotations}
    return Attachment(manifest=data, media_type=MEDIA_MANIFEST, digest=desc["digest"],
                      blobs={empty["digest"]: EMPTY_BLOB, layer["digest"]: sbom}, descriptor=desc,
                      fallback_tag=referrers_tag(subject["digest"]))


def referrers_index(existing: bytes | None, referrer: dict[str, Any]) -> bytes:
    """The fallback tag's image index with *referrer* added (kept once, others kept in order)."""
    manifests: list[dict[str, Any]] = []
    if existing:
        try:
            index = json.loads(existing)
            manifests = [m for m in index["manifests"] if m.get("digest") != referrer["digest"]]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise InputError(f"referrers index for {referrer['digest']}: not an image index") from None
    return document_bytes({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": manifests + [referrer]})

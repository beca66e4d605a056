"""SBOMs of the demo images: SPDX 2.3 schema, exact package lists, sums, licences, the registry artifact."""
from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from jsonschema import Draft7Validator

from release import sbom
from release.errors import InputError, LockError
from release.sums import zbase32
from tests.build_support import ARCHES, FLAVOURS, PARENT, RELEASE, VERSION

SOURCE = "https://git.freebsd.org/src.git"
PUBLIC_REPO = "https://pkg.freebsd.org/FreeBSD:14:{arch}/base_release_2"


@pytest.fixture(scope="module")
def spdx_schema(test_data: Path) -> Draft7Validator:
    schema = json.loads((test_data / "schemas" / "spdx-2.3" / "spdx-schema.json").read_text())
    assert schema["$schema"].startswith("http://json-schema.org/draft-07/")
    return Draft7Validator(schema, format_checker=Draft7Validator.FORMAT_CHECKER)


def make_sbom(build, arch: str, flavour: str, **overrides) -> dict:
    parent = PARENT[flavour]
    kwargs = dict(release=RELEASE, version=VERSION, arch=arch, flavour=flavour, lock=build.lock(arch),
                  src=build.src(), image=build.record(arch, flavour, "image"),
                  parent=build.record(arch, parent, "image") if parent else None,
                  created=build.source_date_epoch(), source_url=SOURCE,
                  repository_url=PUBLIC_REPO.format(arch=arch))
    kwargs.update(overrides)
    return sbom.image_sbom(**kwargs)


def chain_packages(lock: dict, flavour: str) -> dict[str, dict]:
    """What the image holds, walked here independently of the module: its flavour and all parents."""
    out: dict[str, dict] = {}
    while flavour:
        for pkg in lock["flavours"][flavour]["packages"]:
            out[pkg["name"]] = pkg
        flavour = PARENT[flavour]
    return out


def by_id(doc: dict) -> dict[str, dict]:
    return {p["SPDXID"]: p for p in doc["packages"]}


def relations(doc: dict, kind: str) -> list[tuple[str, str]]:
    return [(r["spdxElementId"], r["relatedSpdxElement"]) for r in doc["relationships"]
            if r["relationshipType"] == kind]


def problems(validator: Draft7Validator, doc: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.mark.parametrize("arch", list(ARCHES))
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_sbom_validates_and_lists_exactly_the_images_packages(demo_build, spdx_schema, arch, flavour):
    doc = make_sbom(demo_build, arch, flavour)
    assert problems(spdx_schema, doc) == []
    expected = chain_packages(demo_build.lock(arch), flavour)
    packages = by_id(doc)
    [(document, top_id)] = relations(doc, "DESCRIBES")
    assert document == "SPDXRef-DOCUMENT"
    contained = [packages[related] for element, related in relations(doc, "CONTAINS") if element == top_id]
    assert sorted((p["name"], p["versionInfo"]) for p in contained) == sorted(
        (name, pkg["version"]) for name, pkg in expected.items())
    pkgbase = [p for p in doc["packages"] if p["SPDXID"].startswith("SPDXRef-Package-")]
    assert len(pkgbase) == len(expected)
    for p in contained:
        pkg = expected[p["name"]]
        assert p["downloadLocation"] == f"{PUBLIC_REPO.format(arch=arch)}/{pkg['path']}"
        assert p["supplier"] == "Organization: The FreeBSD Project"
        [ref] = p["externalRefs"]
        assert ref["referenceType"] == "purl"
        assert ref["referenceLocator"].startswith(f"pkg:bsd/freebsd/{p['name'].lower()}@{pkg['version']}?")
        assert f"arch={arch}" in ref["referenceLocator"] and "distro=14.2" in ref["referenceLocator"]
    top = packages[top_id]
    image = demo_build.record(arch, flavour, "image")
    assert top["name"] == f"freebsd-{flavour}" and top["versionInfo"] == VERSION
    assert top["checksums"] == [{"algorithm": "SHA256", "checksumValue": image["manifest"]["digest"][7:]}]
    assert top["externalRefs"][0]["referenceLocator"] == (
        f"pkg:oci/freebsd-{flavour}@sha256%3A{image['manifest']['digest'][7:]}"
        f"?arch={ARCHES[arch][1]}&tag={VERSION}-{arch}")
    assert top["primaryPackagePurpose"] == "CONTAINER"
    assert doc["creationInfo"]["creators"] == ["Tool: freebsd-oci-release"]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_parent_image_and_src_tree(demo_build, flavour):
    doc = make_sbom(demo_build, "amd64", flavour)
    packages = by_id(doc)
    [(_, top_id)] = relations(doc, "DESCRIBES")
    descendant = relations(doc, "DESCENDANT_OF")
    if PARENT[flavour] is None:
        assert descendant == []
    else:
        [(element, parent_id)] = descendant
        parent_digest = demo_build.record("amd64", PARENT[flavour], "image")["manifest"]["digest"]
        assert element == top_id and packages[parent_id]["name"] == f"freebsd-{PARENT[flavour]}"
        assert packages[parent_id]["checksums"][0]["checksumValue"] == parent_digest.removeprefix("sha256:")
        assert ("SPDXRef-DOCUMENT", parent_id) not in relations(doc, "DESCRIBES")
    commit = demo_build.src()["commit"]
    [(element, src_id)] = relations(doc, "GENERATED_FROM")
    assert element == top_id
    assert packages[src_id]["downloadLocation"] == f"git+{SOURCE}@{commit}"
    assert commit in packages[top_id]["sourceInfo"] and SOURCE in packages[top_id]["sourceInfo"]


def test_package_checksums_are_the_real_files_blake2b(demo_build):
    """The `2$` sums decode to the BLAKE2b-512 of the package files the pipeline downloaded."""
    lock = demo_build.lock("amd64")
    repo = Path(unquote(urlparse(lock["repository"]["url"]).path))
    doc = make_sbom(demo_build, "amd64", "minimal")
    checked = 0
    for p in doc["packages"]:
        if p["SPDXID"].startswith("SPDXRef-Package-"):
            data = (repo / p["packageFileName"]).read_bytes()
            assert p["checksums"] == [{"algorithm": "BLAKE2b-512",
                                       "checksumValue": hashlib.blake2b(data, digest_size=64).hexdigest()}]
            checked += 1
    assert checked == len(chain_packages(lock, "minimal"))


def test_sha256_sums_and_licence_logic(demo_build, spdx_schema):
    lock = copy.deepcopy(demo_build.lock("amd64"))
    [first, second, *_] = lock["flavours"]["minimal"]["packages"]
    first["sum"] = "ab" * 32
    first.update(licenses=["BSD3CLAUSE", "GPLv3RLE"], licenselogic="or")
    second.update(licenses=["BSD2CLAUSE", "FreeBSD-odd name"], licenselogic="and")
    second["sum"] = "1$" + "cd" * 32
    doc = make_sbom(demo_build, "amd64", "minimal", lock=lock)
    assert problems(spdx_schema, doc) == []
    packages = {p["name"]: p for p in doc["packages"]}
    one, two = packages[first["name"]], packages[second["name"]]
    assert one["checksums"] == [{"algorithm": "SHA256", "checksumValue": "ab" * 32}]
    assert two["checksums"] == [{"algorithm": "SHA256", "checksumValue": "cd" * 32}]
    assert one["licenseDeclared"] == "BSD-3-Clause OR (GPL-3.0-only WITH GCC-exception-3.1)"
    assert two["licenseConcluded"] == "BSD-2-Clause AND LicenseRef-FreeBSD-odd-name"
    assert [x["licenseId"] for x in doc["hasExtractedLicensingInfos"]] == ["LicenseRef-FreeBSD-odd-name"]
    top = packages["freebsd-minimal"]
    assert top["licenseDeclared"] == ("BSD-2-Clause AND (BSD-3-Clause OR (GPL-3.0-only WITH GCC-exception-3.1))"
                                      " AND LicenseRef-FreeBSD-odd-name")


def test_no_build_machine_path_in_a_published_sbom(demo_build):
    """Without a public repository URL the lock's file: URL is not copied into the document."""
    doc = make_sbom(demo_build, "amd64", "minimal", repository_url=None)
    text = sbom.sbom_bytes(doc).decode()
    assert str(demo_build.work) not in text and "file:" not in text
    assert {p["downloadLocation"] for p in doc["packages"] if p["SPDXID"].startswith("SPDXRef-Package-")} == {
        "NOASSERTION"}


def test_sbom_is_deterministic_and_named_by_the_manifest(demo_build):
    a = sbom.sbom_bytes(make_sbom(demo_build, "amd64", "dynamic"))
    b = sbom.sbom_bytes(make_sbom(demo_build, "amd64", "dynamic"))
    assert a == b
    doc = json.loads(a)
    assert doc["creationInfo"]["created"] == "2024-11-29T00:00:00Z"
    assert doc["documentNamespace"].startswith("https://") and "#" not in doc["documentNamespace"]
    other = sbom.sbom_bytes(make_sbom(demo_build, "aarch64", "dynamic"))
    assert json.loads(other)["documentNamespace"] != doc["documentNamespace"]
    assert a == json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def test_bad_inputs_are_named(demo_build):
    lock = demo_build.lock("amd64")
    with pytest.raises(LockError, match="no flavour dynamic .parent of minimal"):
        broken = copy.deepcopy(lock)
        del broken["flavours"]["dynamic"]
        make_sbom(demo_build, "amd64", "minimal", lock=broken)
    with pytest.raises(InputError, match="freebsd-minimal .*parent"):
        make_sbom(demo_build, "amd64", "minimal", parent=None)


def test_zbase32_decoding_inverts_pkgs_encoding():
    for size in (0, 1, 5, 31, 64):
        data = os.urandom(size)
        assert sbom.zbase32_decode(zbase32(data)) == data
    with pytest.raises(InputError, match="invalid character"):
        sbom.zbase32_decode("ybnl")
    digest = hashlib.blake2b(b"x", digest_size=64).digest()
    assert sbom.package_checksum("2$" + zbase32(digest)) == {"algorithm": "BLAKE2b-512",
                                                             "checksumValue": digest.hex()}


def test_sbom_artifact_manifest(demo_build, validate):
    image = demo_build.record("amd64", "minimal", "image")
    data = sbom.sbom_bytes(make_sbom(demo_build, "amd64", "minimal"))
    art = sbom.sbom_artifact(data, image["manifest"], created=demo_build.source_date_epoch(),
                             title="freebsd-minimal-14.2-DEMO-amd64.spdx.json")
    manifest = json.loads(art.manifest)
    validate(manifest, "manifest")
    assert art.digest == "sha256:" + hashlib.sha256(art.manifest).hexdigest()
    assert manifest["artifactType"] == "application/spdx+json"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    assert manifest["subject"] == {k: image["manifest"][k] for k in ("mediaType", "digest", "size")}
    [layer] = manifest["layers"]
    assert layer["mediaType"] == "application/spdx+json"
    for desc in (manifest["config"], layer):
        blob = art.blobs[desc["digest"]]
        assert len(blob) == desc["size"] and "sha256:" + hashlib.sha256(blob).hexdigest() == desc["digest"]
    assert art.blobs[manifest["config"]["digest"]] == b"{}"
    assert art.blobs[layer["digest"]] == data
    assert art.fallback_tag == "sha256-" + image["manifest"]["digest"][7:] and art.tag == ""
    again = sbom.sbom_artifact(data, image["manifest"], created=demo_build.source_date_epoch(),
                               title="freebsd-minimal-14.2-DEMO-amd64.spdx.json")
    assert again == art


def test_referrers_fallback_index(validate):
    first = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "1" * 64,
             "size": 10, "artifactType": "application/spdx+json"}
    second = {**first, "digest": "sha256:" + "2" * 64}
    index = sbom.referrers_index(None, first)
    validate(json.loads(index), "index")
    both = sbom.referrers_index(sbom.referrers_index(index, second), first)
    assert [m["digest"] for m in json.loads(both)["manifests"]] == [second["digest"], first["digest"]]
    assert sbom.referrers_index(both, first) == both
    with pytest.raises(InputError, match="not an image index"):
        sbom.referrers_index(b"[]", first)

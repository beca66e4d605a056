"""`doit build:demo` end to end: the OCI side, checked by tar, skopeo, podman and the OCI schemas.

The layer blobs are opened as plain tar streams (ordering, parents, headers,
owners, whiteouts, digests), every JSON document reachable from the released
layouts and archives is validated against the image-spec schemas, and the
container tools a user would run on the release (skopeo, podman) must accept
it and see the family's shared layers.
"""
from __future__ import annotations

import hashlib
import json
import posixpath
import re
import subprocess
import tarfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import toml

from tests.build_support import (ARCHES, CONFIG, FLAVOURS, IMAGE, MEDIA_CONFIG, MEDIA_INDEX, MEDIA_MANIFEST, PARENT,
                                 REF_NAME, VERSION, ArchiveImage, PrivatePodman, archive_image, layer_accounts,
                                 read_layer, sha256_digest)
from tests.conftest import need_tool

TAR_KINDS = (tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE)

arches = pytest.mark.parametrize("arch", list(ARCHES))


@pytest.fixture(scope="module")
def images(demo_build) -> dict[tuple[str, str], ArchiveImage]:
    """(arch, flavour) -> the image inside the released .txz."""
    return {(arch, flavour): archive_image(path) for arch, flavour, path in demo_build.archives()}


def rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- the layer tars

@arches
def test_layer_tars_are_reproducible_streams(demo_build, images, arch):
    """Each flavour's own layer: sorted, parents first, no atime/ctime, clamped mtimes, image owners."""
    sde = demo_build.source_date_epoch()
    top = images[arch, "minimal"]
    layers = []
    for position, flavour in enumerate(FLAVOURS):
        desc = top.manifest["layers"][position]
        blob = top.blob(desc["digest"])
        assert sha256_digest(blob) == desc["digest"] and len(blob) == desc["size"]
        assert blob[:3] == b"\x1f\x8b\x08" and blob[3] & 0x08 == 0 and blob[4:8] == bytes(4), \
            f"{flavour}: gzip header carries a name or an mtime"
        layer = read_layer(blob)
        assert layer.diff_id == top.config["rootfs"]["diff_ids"][position], flavour
        record = demo_build.record(arch, flavour, "layer")
        assert (record["digest"], record["diff_id"]) == (desc["digest"], layer.diff_id)
        layers.append(layer)
        users, groups = layer_accounts(layers)
        names = [m.name for m in layer.members]
        assert names == sorted(names, key=str.encode) and len(set(names)) == len(names), f"{flavour}: order"
        assert not {"atime", "ctime"} & set(layer.global_pax), flavour
        dirs: set[str] = set()
        files: set[str] = set()
        for m in layer.members:
            where = f"{flavour}: {m.name}"
            assert not m.name.startswith(("/", "./")) and ".." not in m.name.split("/"), where
            parent = posixpath.dirname(m.name)
            assert not parent or parent in dirs, f"{where}: parent directory not before it"
            assert m.type in TAR_KINDS and not m.issparse(), f"{where}: type {m.type!r}"
            assert not {"atime", "ctime"} & set(m.pax_headers), f"{where}: pax {m.pax_headers}"
            assert not any(k.startswith("GNU.sparse") for k in m.pax_headers), where
            assert m.mtime <= sde, f"{where}: mtime {m.mtime} after SOURCE_DATE_EPOCH {sde}"
            assert (m.uid, m.gid) == (users[m.uname], groups[m.gname]), f"{where}: {m.uname}:{m.gname}"
            if m.islnk():
                assert m.linkname in files, f"{where}: hardlink to {m.linkname}, not an earlier file"
            (dirs if m.isdir() else files).add(m.name)
        whiteouts = [n for n in names if posixpath.basename(n).startswith(".wh.")]
        # minimal: 14.x certctl.sh's rehash deleting the static hash files (FreeBSD's recipe removes nothing)
        static_certs = [posixpath.join(posixpath.dirname(m.name), ".wh." + posixpath.basename(m.name))
                        for m in layers[0].members if m.name.startswith(("etc/ssl/certs/", "etc/ssl/untrusted/"))]
        expected = sorted(static_certs, key=str.encode) if flavour == "minimal" else []
        assert whiteouts == expected and (flavour != "minimal" or static_certs), flavour
        for w in whiteouts:
            assert layers[FLAVOURS.index(flavour)].data[w] == b""


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_every_image_stacks_its_parents_layers(images, flavour):
    for arch in ARCHES:
        image = images[arch, flavour]
        assert len(image.manifest["layers"]) == FLAVOURS.index(flavour) + 1
        if PARENT[flavour]:
            parent = images[arch, PARENT[flavour]]
            assert image.manifest["layers"][:-1] == parent.manifest["layers"]
            assert image.config["rootfs"]["diff_ids"][:-1] == parent.config["rootfs"]["diff_ids"]
        for desc, diff_id in zip(image.manifest["layers"], image.config["rootfs"]["diff_ids"], strict=True):
            blob = image.blob(desc["digest"])
            assert sha256_digest(blob) == desc["digest"]
            assert read_layer(blob).diff_id == diff_id


# --------------------------------------------------------------------------- schemas

def check_documents(validate: Callable, index_bytes: bytes, fetch: Callable[[str], bytes]) -> set[str]:
    """Validate an index and everything it reaches; the digests of all blobs reached."""
    reached: set[str] = set()

    def follow(desc: dict, kind: str) -> dict:
        data = fetch(desc["digest"])
        assert sha256_digest(data) == desc["digest"] and len(data) == desc["size"], desc["digest"]
        reached.add(desc["digest"])
        doc = json.loads(data)
        validate(doc, kind)
        return doc

    def walk_index(index: dict) -> None:
        for desc in index["manifests"]:
            if desc["mediaType"] == MEDIA_INDEX:
                walk_index(follow(desc, "index"))
            else:
                assert desc["mediaType"] == MEDIA_MANIFEST
                manifest = follow(desc, "manifest")
                assert manifest["config"]["mediaType"] == MEDIA_CONFIG
                follow(manifest["config"], "config")
                for layer in manifest["layers"]:
                    data = fetch(layer["digest"])
                    assert sha256_digest(data) == layer["digest"] and len(data) == layer["size"]
                    reached.add(layer["digest"])

    top = json.loads(index_bytes)
    validate(top, "index")
    walk_index(top)
    return reached


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_layout_documents_validate_against_the_oci_schemas(demo_build, images, validate, flavour):
    layout = demo_build.layout(flavour)
    validate(json.loads((layout / "oci-layout").read_text()), "layout")
    top = json.loads((layout / "index.json").read_text())
    reached = check_documents(validate, (layout / "index.json").read_bytes(),
                              lambda d: (layout / "blobs/sha256" / d.removeprefix("sha256:")).read_bytes())
    stored = {"sha256:" + p.name for p in (layout / "blobs/sha256").iterdir()}
    assert stored == reached, "the layout holds blobs nothing references, or lacks some"
    per_arch = {d for arch in ARCHES for i in [images[arch, flavour]]
                for d in (i.manifest_digest, i.manifest["config"]["digest"], *i.layer_digests)}
    assert reached == {top["manifests"][0]["digest"], *per_arch}


@arches
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_archive_documents_validate_against_the_oci_schemas(images, validate, arch, flavour):
    image = images[arch, flavour]
    validate(json.loads(image.members["oci-layout"]), "layout")
    reached = check_documents(validate, image.members["index.json"], image.blob)
    stored = {"sha256:" + n.rsplit("/", 1)[1] for n in image.members if n.startswith("blobs/sha256/")}
    assert stored == reached == {image.manifest_digest, image.manifest["config"]["digest"], *image.layer_digests}
    assert set(image.members) == {"oci-layout", "index.json", *(f"blobs/sha256/{d[7:]}" for d in reached)}


# --------------------------------------------------------------------------- annotations and configs

@arches
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_manifest_annotations_and_config(demo_build, images, arch, flavour):
    image = images[arch, flavour]
    sde = demo_build.source_date_epoch()
    source = toml.loads(CONFIG.read_text())["releases"]["demo"]["source"]
    assert image.ref == f"{IMAGE[flavour]}:{VERSION}-{arch}"
    assert image.platform == {"architecture": ARCHES[arch][1], "os": "freebsd",
                              **({"variant": ARCHES[arch][2]} if ARCHES[arch][2] else {})}
    a = image.manifest["annotations"]
    ns = "org.opencontainers.image."
    assert a[ns + "version"] == VERSION
    assert a[ns + "revision"] == demo_build.src()["commit"] and re.fullmatch(r"[0-9a-f]{40}", a[ns + "revision"])
    assert a[ns + "source"] == source
    assert a[ns + "created"] == rfc3339(sde)
    assert VERSION in a[ns + "title"] and flavour in a[ns + "title"]
    assert a[ns + "licenses"] == "BSD-2-Clause"
    if PARENT[flavour]:
        parent = images[arch, PARENT[flavour]]
        assert a[ns + "base.digest"] == parent.manifest_digest
        assert a[ns + "base.name"] == parent.ref
    else:
        assert ns + "base.digest" not in a and ns + "base.name" not in a
    c = image.config
    assert (c["os"], c["architecture"], c.get("variant")) == ("freebsd", ARCHES[arch][1], ARCHES[arch][2])
    assert c["created"] == rfc3339(sde)
    assert c["config"].get("Cmd") is None         # 14.x's oci-image-*.conf set no Cmd (no set_cmd)
    assert len(c["history"]) == len(image.manifest["layers"])
    assert all(h["created"] == rfc3339(sde) and not h.get("empty_layer") for h in c["history"])
    assert c["rootfs"] == {"type": "layers",
                           "diff_ids": [read_layer(image.blob(d)).diff_id for d in image.layer_digests]}


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_layout_index_names_both_platforms_with_the_archives_manifests(demo_build, images, flavour):
    layout = demo_build.layout(flavour)
    top = json.loads((layout / "index.json").read_text())
    assert [d["annotations"][REF_NAME] for d in top["manifests"]] == [f"{IMAGE[flavour]}:{VERSION}"]
    index = json.loads((layout / "blobs/sha256" / top["manifests"][0]["digest"][7:]).read_text())
    assert index["annotations"]["org.opencontainers.image.version"] == VERSION
    assert index["annotations"]["org.opencontainers.image.revision"] == demo_build.src()["commit"]
    by_platform = {d["platform"]["architecture"]: d for d in index["manifests"]}
    for arch, (_, oci_arch, variant) in ARCHES.items():
        assert by_platform[oci_arch]["digest"] == images[arch, flavour].manifest_digest
        assert by_platform[oci_arch]["platform"].get("variant") == variant


# --------------------------------------------------------------------------- skopeo

def skopeo(*args: str) -> str:
    tool = need_tool("skopeo", "skopeo")
    proc = subprocess.run([tool, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"skopeo {' '.join(args)}: {proc.stderr.strip()}"
    return proc.stdout


def test_skopeo_inspects_every_archive(demo_build, images):
    for arch, flavour, path in demo_build.archives():
        info = json.loads(skopeo("inspect", f"oci-archive:{path}"))
        image = images[arch, flavour]
        assert (info["Os"], info["Architecture"]) == ("freebsd", ARCHES[arch][1]), path.name
        assert info.get("Variant", ARCHES[arch][2]) == ARCHES[arch][2]
        assert info["Digest"] == image.manifest_digest and info["Layers"] == image.layer_digests


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_skopeo_reads_the_multi_arch_layout_and_copies_it_digest_for_digest(demo_build, tmp_path, flavour):
    layout, ref = demo_build.layout(flavour), f"{IMAGE[flavour]}:{VERSION}"
    index = json.loads(skopeo("inspect", "--raw", f"oci:{layout}:{ref}"))
    assert index["mediaType"] == MEDIA_INDEX
    assert sorted(json.dumps(d["platform"], sort_keys=True) for d in index["manifests"]) == sorted(
        json.dumps({"architecture": oci, "os": "freebsd", **({"variant": v} if v else {})}, sort_keys=True)
        for _, oci, v in ARCHES.values())
    copy = tmp_path / "copy"
    skopeo("copy", "--all", "--preserve-digests", f"oci:{layout}:{ref}", f"oci:{copy}:{ref}")
    theirs = json.loads((copy / "index.json").read_text())["manifests"]
    ours = json.loads((layout / "index.json").read_text())["manifests"]
    assert [(d["digest"], d["size"]) for d in theirs] == [(d["digest"], d["size"]) for d in ours]
    copied = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (copy / "blobs/sha256").iterdir()}
    assert all(name == digest for name, digest in copied.items())
    assert set(copied) == {p.name for p in (layout / "blobs/sha256").iterdir()}


# --------------------------------------------------------------------------- podman

def test_podman_loads_every_archive_and_sees_the_family_share_layers(demo_build, images, tmp_path):
    podman = PrivatePodman(tmp_path / "podman")
    try:
        loaded = {}
        for arch, flavour, path in demo_build.archives():
            out = podman("load", "-i", str(path)).stdout
            names = re.findall(r"Loaded image(?:\(s\))?: (\S+)", out)
            assert names == [f"localhost/{IMAGE[flavour]}:{VERSION}-{arch}"], out
            info = podman.inspect(names[0])
            image = images[arch, flavour]
            assert (info["Os"], info["Architecture"]) == ("freebsd", ARCHES[arch][1])
            assert info["Digest"] == image.manifest_digest
            assert info["RootFS"]["Layers"] == image.config["rootfs"]["diff_ids"]
            loaded[arch, flavour] = info["RootFS"]["Layers"]
        for arch in ARCHES:
            assert loaded[arch, "dynamic"][:1] == loaded[arch, "static"]
            assert loaded[arch, "minimal"][:2] == loaded[arch, "dynamic"]
            static_layer = images[arch, "static"].layer_digests[0]
            assert images[arch, "dynamic"].blob(static_layer) == images[arch, "static"].blob(static_layer)
        assert len(podman("images", "--quiet", "--no-trunc").stdout.split()) == len(loaded)
    finally:
        podman.close()
    assert not Path(tmp_path / "podman").exists()

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from release import oci
from release.errors import LayerError
from tests.conftest import need_tool, unavailable
from tests.oci_support import EPOCH, dir_entry, file_entry, write_image, write_layer

REF = "freebsd-dynamic:14.2-RELEASE-amd64"


def tree(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Relative path -> (mode, bytes for files) of everything under *root*."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        out[str(path.relative_to(root))] = (st.st_mode, path.read_bytes() if path.is_file() else None)
    return out


@pytest.fixture
def family(tmp_path) -> tuple[Path, dict, dict, dict]:
    """blobs dir; static (1 layer) and dynamic (2 layers, whiteout) amd64 images; arm64 dynamic."""
    blobs = tmp_path / "blobs" / "sha256"
    base = write_layer(blobs, [
        (dir_entry("etc"), None), (file_entry("etc/motd", 8), b"FreeBSD\n"),
        (file_entry("etc/termcap.small", 4), b"vt1\n"), (dir_entry("tmp", 0o1777), None),
    ])
    top = write_layer(blobs, [
        (dir_entry("etc"), None), (file_entry("etc/.wh.termcap.small", 0), b""),
        (dir_entry("lib"), None), (file_entry("lib/libc.so.7", 5, 0o444), b"\x7fELF\n"),
    ], media="tar")
    static = write_image(blobs, [base])
    dynamic = write_image(blobs, [base, top], cmd=["/bin/sh"])
    arm = write_image(blobs, [base, top], architecture="arm64", variant="v8", cmd=["/bin/sh"])
    return blobs, static, dynamic, arm


def multiarch_index(blobs: Path, dynamic: dict, arm: dict) -> dict:
    """index.json -> multi-arch index blob -> two manifests, as pushed to a registry."""
    multi = oci.image_index([(dynamic, {"architecture": "amd64", "os": "freebsd"}),
                             (arm, {"architecture": "arm64", "os": "freebsd", "variant": "v8"})], None)
    return oci.image_index([(oci.with_ref_name(oci.write_json_blob(blobs, multi), "14.2-RELEASE"), {})],
                           None)


def test_documents_are_canonical_json():
    doc = {"b": [1, {"z": 1, "a": "é"}], "a": 2}
    data = oci.document_bytes(doc)
    assert data == b'{"a":2,"b":[1,{"a":"\\u00e9","z":1}]}'
    desc = oci.descriptor("application/json", data)
    assert desc == {"mediaType": "application/json", "size": len(data),
                    "digest": "sha256:" + hashlib.sha256(data).hexdigest()}


def test_rfc3339():
    assert oci.rfc3339(EPOCH) == "2024-11-29T00:00:00Z"
    assert oci.rfc3339(0) == "1970-01-01T00:00:00Z"


def test_image_config_shape(validate):
    config = oci.image_config(architecture="arm64", variant="v8", created=EPOCH, cmd=[],
                              env=["PATH=/bin"], diff_ids=["sha256:" + "a" * 64],
                              history=[{"created_by": "pkg install FreeBSD-runtime", "comment": "static"}],
                              labels=None)
    validate(config, "config")
    assert config["os"] == "freebsd" and config["variant"] == "v8"
    assert "Cmd" not in config["config"] and "Labels" not in config["config"]
    assert config["rootfs"] == {"type": "layers", "diff_ids": ["sha256:" + "a" * 64]}
    assert config["history"] == [{"created": "2024-11-29T00:00:00Z",
                                  "created_by": "pkg install FreeBSD-runtime", "comment": "static"}]
    with_cmd = oci.image_config(architecture="amd64", variant="", created=EPOCH, cmd=["/bin/sh"],
                                env=[], diff_ids=[], history=[], labels={"a": "b"})
    validate(with_cmd, "config")
    assert with_cmd["config"]["Cmd"] == ["/bin/sh"] and "variant" not in with_cmd


def test_history_must_pair_with_layers():
    with pytest.raises(LayerError, match="1 history entries for 2 layers"):
        oci.image_config(architecture="amd64", variant="", created=EPOCH, cmd=[], env=[],
                         diff_ids=["sha256:" + "a" * 64] * 2, history=[{"created_by": "x"}], labels=None)


def test_manifest_needs_a_layer():
    with pytest.raises(LayerError, match="no layers"):
        oci.image_manifest({"digest": "sha256:" + "c" * 64}, [], None)


def test_documents_validate_against_the_schemas(family, validate):
    blobs, static, dynamic, arm = family
    manifest = json.loads((blobs / dynamic["digest"][7:]).read_bytes())
    validate(manifest, "manifest")
    validate(json.loads((blobs / manifest["config"]["digest"][7:]).read_bytes()), "config")
    index = multiarch_index(blobs, dynamic, arm)
    validate(index, "index")
    multi = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_bytes())
    validate(multi, "index")
    assert [m["platform"]["architecture"] for m in multi["manifests"]] == ["amd64", "arm64"]


def test_reachable_blobs_walk_nested_indexes(family):
    blobs, static, dynamic, arm = family
    index = multiarch_index(blobs, dynamic, arm)
    found = oci.reachable_blobs(blobs, index)
    assert found == sorted(found) and len({d for d, _ in found}) == len(found)
    # index blob, 2 manifests, 2 configs, 2 shared layers
    assert len(found) == 7
    assert all((blobs / d[7:]).stat().st_size == s for d, s in found)
    static_only = oci.reachable_blobs(blobs, oci.image_index([(static, {})], None))
    assert len(static_only) == 3


def test_reachable_blobs_reports_missing_and_wrong_blobs(family):
    blobs, static, dynamic, arm = family
    index = oci.image_index([(dynamic, {})], None)
    manifest = json.loads((blobs / dynamic["digest"][7:]).read_bytes())
    layer = blobs / manifest["layers"][1]["digest"][7:]
    data = layer.read_bytes()
    layer.write_bytes(data + b"x")
    with pytest.raises(LayerError, match=f"{layer.name}: {len(data) + 1} bytes, descriptor says"):
        oci.reachable_blobs(blobs, index)
    layer.unlink()
    with pytest.raises(LayerError, match=f"{manifest['layers'][1]['digest']}: blob missing"):
        oci.reachable_blobs(blobs, index)
    manifest_path = blobs / dynamic["digest"][7:]
    manifest_path.write_bytes(manifest_path.read_bytes().replace(b'"size"', b'"Size"'))
    with pytest.raises(LayerError, match="does not match its digest"):
        oci.reachable_blobs(blobs, index)


def test_write_layout_is_complete_and_deterministic(family, tmp_path, validate):
    blobs, static, dynamic, arm = family
    index = oci.image_index([(oci.with_ref_name(dynamic, REF), {"architecture": "amd64", "os": "freebsd"})],
                            None)
    one, two = tmp_path / "one", tmp_path / "two"
    oci.write_layout(one, blobs, index)
    oci.write_layout(two, blobs, index)
    assert tree(one) == tree(two)
    validate(json.loads((one / "oci-layout").read_bytes()), "layout")
    validate(json.loads((one / "index.json").read_bytes()), "index")
    assert (one / "index.json").read_bytes() == oci.document_bytes(index)
    names = sorted(p.name for p in (one / "blobs" / "sha256").iterdir())
    assert names == [d[7:] for d, _ in oci.reachable_blobs(blobs, index)]
    for name in names:  # hard links into the blob store, read-only modes
        assert (one / "blobs/sha256" / name).stat().st_ino == (blobs / name).stat().st_ino
    assert {oct(mode & 0o7777) for mode, _ in tree(one).values()} == {"0o644", "0o755"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".partial-")]


def test_write_layout_replaces_an_old_layout(family, tmp_path):
    blobs, static, dynamic, arm = family
    dest = tmp_path / "layout"
    oci.write_layout(dest, blobs, oci.image_index([(oci.with_ref_name(dynamic, REF), {})], None))
    oci.write_layout(dest, blobs, oci.image_index([(oci.with_ref_name(static, "static"), {})], None))
    assert len(list((dest / "blobs/sha256").iterdir())) == 3
    assert json.loads((dest / "index.json").read_bytes())["manifests"][0]["digest"] == static["digest"]


def test_write_layout_copies_across_file_systems(family, tmp_path):
    blobs, static, dynamic, arm = family
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        unavailable("no second file system (/dev/shm) to copy blobs across")
    with tempfile.TemporaryDirectory(dir=shm) as other:
        dest = Path(other) / "layout"
        oci.write_layout(dest, blobs, oci.image_index([(static, {})], None))
        for path in (dest / "blobs/sha256").iterdir():
            assert path.read_bytes() == (blobs / path.name).read_bytes()
            assert path.stat().st_mode & 0o777 == 0o644


def test_umoci_unpacks_stacked_layers_with_whiteout(family, tmp_path):
    umoci = need_tool("umoci", "umoci")
    blobs, static, dynamic, arm = family
    layout = tmp_path / "layout"
    oci.write_layout(layout, blobs, oci.image_index([(oci.with_ref_name(dynamic, REF), {})], None))
    listed = subprocess.run([umoci, "ls", "--layout", str(layout)], capture_output=True, check=True)
    assert listed.stdout.decode().split() == [REF]
    # `umoci unpack` refuses to write a runtime config for os "freebsd"; raw unpack is the rootfs only
    rootfs = tmp_path / "rootfs"
    subprocess.run([umoci, "raw", "unpack", "--image", f"{layout}:{REF}", str(rootfs)],
                   capture_output=True, check=True)
    got = {k: (oct(m & 0o7777), d) for k, (m, d) in tree(rootfs).items()}
    assert got == {"etc": ("0o755", None), "etc/motd": ("0o644", b"FreeBSD\n"),
                   "lib": ("0o755", None), "lib/libc.so.7": ("0o444", b"\x7fELF\n"),
                   "tmp": ("0o1777", None)}


def test_skopeo_reads_and_copies_a_two_arch_index(family, tmp_path):
    skopeo = need_tool("skopeo", "skopeo")
    blobs, static, dynamic, arm = family
    layout = tmp_path / "layout"
    index = multiarch_index(blobs, dynamic, arm)
    oci.write_layout(layout, blobs, index)
    raw = subprocess.run([skopeo, "inspect", "--raw", f"oci:{layout}:14.2-RELEASE"],
                         capture_output=True, check=True).stdout
    assert json.loads(raw)["mediaType"] == oci.MEDIA_INDEX
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == index["manifests"][0]["digest"]
    inspected = json.loads(subprocess.run(
        [skopeo, "inspect", "--override-os", "freebsd", "--override-arch", "arm64",
         f"oci:{layout}:14.2-RELEASE"], capture_output=True, check=True).stdout)
    arm_manifest = json.loads((blobs / arm["digest"][7:]).read_bytes())
    assert (inspected["Architecture"], inspected["Os"]) == ("arm64", "freebsd")
    assert inspected["Layers"] == [layer["digest"] for layer in arm_manifest["layers"]]
    assert inspected["Digest"] == index["manifests"][0]["digest"]  # the index, as pushed
    copy = tmp_path / "copy"
    # without --preserve-digests skopeo would gzip the plain-tar layer on the way
    subprocess.run([skopeo, "copy", "--all", "--preserve-digests", f"oci:{layout}:14.2-RELEASE",
                    f"oci:{copy}:14.2-RELEASE"], capture_output=True, check=True)
    copied = subprocess.run([skopeo, "inspect", "--raw", f"oci:{copy}:14.2-RELEASE"],
                            capture_output=True, check=True).stdout
    assert copied == raw
    assert sorted(os.listdir(copy / "blobs/sha256")) == sorted(os.listdir(layout / "blobs/sha256"))

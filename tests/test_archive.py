from __future__ import annotations

import json
import lzma
import os
import random
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from release import oci
from release.archive import SMALL_BLOB, write_archive, xz_store_stream
from release.errors import LayerError
from tests.conftest import need_tool
from tests.oci_support import dir_entry, file_entry, write_image, write_layer

STATIC = "freebsd-static:14.2-RELEASE-amd64"
DYNAMIC = "freebsd-dynamic:14.2-RELEASE-amd64"


def compressible(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    words = [bytes(rng.choices(range(97, 123), k=rng.randint(3, 10))) for _ in range(300)]
    return b"\n".join(rng.choice(words) for _ in range(size // 4))[:size]


@pytest.fixture(scope="module")
def family(tmp_path_factory) -> dict:
    """A static image (one big plain-tar layer) and a dynamic one stacking a big gzip layer on it."""
    work = tmp_path_factory.mktemp("family")
    blobs = work / "blobs" / "sha256"
    text = compressible(600_000, 1)
    noise = random.Random(2).randbytes(400_000)
    base = write_layer(blobs, [(dir_entry("usr"), None), (dir_entry("usr/share"), None),
                               (file_entry("usr/share/termcap", len(text)), text)], media="tar")
    libs = write_layer(blobs, [(dir_entry("lib"), None),
                               (file_entry("lib/libcrypto.so.30", len(noise)), noise)])
    small = write_layer(blobs, [(dir_entry("etc"), None), (file_entry("etc/motd", 8), b"FreeBSD\n")])
    assert base.size >= SMALL_BLOB and libs.size >= SMALL_BLOB and small.size < SMALL_BLOB
    static = write_image(blobs, [base])
    dynamic = write_image(blobs, [base, libs, small], cmd=["/bin/sh"])
    platform = {"architecture": "amd64", "os": "freebsd"}
    indexes = {name: oci.image_index([(oci.with_ref_name(desc, name), platform)], None)
               for name, desc in ((STATIC, static), (DYNAMIC, dynamic))}
    cache = work / "cache"
    archives = {}
    for name, index in indexes.items():
        archives[name] = work / (name.split(":")[0] + ".txz")
        write_archive(archives[name], blobs, index, xz_preset=6, cache_dir=cache)
    return {"work": work, "blobs": blobs, "cache": cache, "indexes": indexes, "archives": archives,
            "manifests": {STATIC: static, DYNAMIC: dynamic}, "layers": (base, libs, small)}


def test_archive_holds_the_layout(family):
    archive = family["archives"][DYNAMIC]
    blobs, index = family["blobs"], family["indexes"][DYNAMIC]
    with tarfile.open(archive, "r:xz") as tf:
        members = tf.getmembers()
        names = [m.name for m in members]
        assert names[:4] == ["oci-layout", "index.json", "blobs", "blobs/sha256"]
        expected = sorted("blobs/sha256/" + d[7:] for d, _ in oci.reachable_blobs(blobs, index))
        assert sorted(names[4:]) == expected
        assert tf.extractfile("index.json").read() == oci.document_bytes(index)
        assert json.loads(tf.extractfile("oci-layout").read()) == {"imageLayoutVersion": "1.0.0"}
        for name in expected:
            assert tf.extractfile(name).read() == (blobs / Path(name).name).read_bytes()
        assert {(m.uid, m.gid, m.mtime) for m in members} == {(0, 0, 0)}
        assert {oct(m.mode) for m in members} == {"0o644", "0o755"}


def test_every_xz_reader_accepts_concatenated_streams(family, tmp_path):
    need_tool("xz", "xz-utils")
    archive = family["archives"][DYNAMIC]
    assert subprocess.run(["xz", "-t", str(archive)]).returncode == 0
    listing = subprocess.run(["tar", "-tJf", str(archive)], capture_output=True, check=True)
    assert len(listing.stdout.decode().splitlines()) == 4 + 5  # 3 layers, config, manifest
    bsdtar = need_tool("bsdtar", "libarchive-tools")
    listing_bsd = subprocess.run([bsdtar, "-tf", str(archive)], capture_output=True, check=True)
    assert listing_bsd.stdout.decode().splitlines() == listing.stdout.decode().splitlines()
    # more than one xz stream really is there: one per big blob plus head and tail
    assert archive.read_bytes().count(b"\xfd7zXZ\x00") >= 4


def test_shared_blob_reuses_the_cached_stream(family):
    base = family["layers"][0]
    cached = sorted(family["cache"].iterdir())
    assert [p.name.split(".")[0] for p in cached] == [base.digest[7:]]  # only the plain-tar blob
    segment = cached[0].read_bytes()
    for archive in family["archives"].values():
        assert segment in archive.read_bytes()


def test_compressed_blobs_are_stored_not_recompressed(family):
    libs = family["layers"][1]
    raw = (family["blobs"] / libs.digest[7:]).read_bytes()
    data = family["archives"][DYNAMIC].read_bytes()
    # store mode copies [tar header + gzip bytes] in 64 KiB LZMA2 chunks
    first = 65536 - 512
    assert raw[:first] in data and raw[first:first + 65536] in data
    assert len(raw) > first + 65536


def test_archives_are_deterministic_with_and_without_cache(family, tmp_path):
    index, blobs = family["indexes"][DYNAMIC], family["blobs"]
    original = family["archives"][DYNAMIC].read_bytes()
    again = tmp_path / "again.txz"
    write_archive(again, blobs, index, xz_preset=6, cache_dir=family["cache"])
    assert again.read_bytes() == original
    fresh = tmp_path / "fresh.txz"
    write_archive(fresh, blobs, index, xz_preset=6, cache_dir=tmp_path / "empty-cache")
    assert fresh.read_bytes() == original
    dated = tmp_path / "dated.txz"
    write_archive(dated, blobs, index, xz_preset=6, cache_dir=tmp_path / "empty-cache", mtime=1732838400)
    assert dated.read_bytes() != original
    with tarfile.open(dated, "r:xz") as tf:
        assert {m.mtime for m in tf.getmembers()} == {1732838400}


def test_damaged_cache_entry_is_rebuilt(family, tmp_path):
    cache = tmp_path / "cache"
    index, blobs = family["indexes"][STATIC], family["blobs"]
    write_archive(tmp_path / "a.txz", blobs, index, xz_preset=6, cache_dir=cache)
    [entry] = cache.iterdir()
    good = entry.read_bytes()
    entry.write_bytes(good[: len(good) // 2])
    write_archive(tmp_path / "b.txz", blobs, index, xz_preset=6, cache_dir=cache)
    assert entry.read_bytes() == good
    assert (tmp_path / "b.txz").read_bytes() == (tmp_path / "a.txz").read_bytes()


def test_missing_blob_leaves_no_archive(family, tmp_path):
    index = oci.image_index([({"mediaType": oci.MEDIA_MANIFEST, "digest": "sha256:" + "0" * 64,
                               "size": 10}, {})], None)
    with pytest.raises(LayerError, match="blob missing"):
        write_archive(tmp_path / "x.txz", family["blobs"], index, xz_preset=6, cache_dir=tmp_path / "c")
    assert not (tmp_path / "x.txz").exists()


@pytest.fixture
def podman(tmp_path) -> Iterator[list[str]]:
    """podman on a private vfs store; its runroot must be under 50 characters."""
    podman = need_tool("podman", "podman")
    with tempfile.TemporaryDirectory(prefix="podman-run-") as runroot:
        yield [podman, "--root", str(tmp_path / "root"), "--runroot", runroot,
               "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none"]


def test_podman_loads_the_archives(family, podman):
    base = podman
    for name, archive in family["archives"].items():
        out = subprocess.run(base + ["load", "-i", str(archive)], capture_output=True)
        assert out.returncode == 0, out.stderr.decode()[-500:]
        assert f"Loaded image: localhost/{name}" in out.stdout.decode()
    for name, manifest in family["manifests"].items():
        info = json.loads(subprocess.run(base + ["image", "inspect", f"localhost/{name}"],
                                         capture_output=True, check=True).stdout)[0]
        blob = json.loads((family["blobs"] / manifest["digest"][7:]).read_bytes())
        config = json.loads((family["blobs"] / blob["config"]["digest"][7:]).read_bytes())
        assert info["Digest"] == manifest["digest"]
        assert info["Id"] == blob["config"]["digest"][7:]
        assert (info["Os"], info["Architecture"]) == ("freebsd", "amd64")
        assert info["RootFS"]["Layers"] == config["rootfs"]["diff_ids"]


def test_skopeo_inspects_the_txz_directly(family):
    skopeo = need_tool("skopeo", "skopeo")
    archive = family["archives"][STATIC]
    out = json.loads(subprocess.run([skopeo, "inspect", f"oci-archive:{archive}"],
                                    capture_output=True, check=True).stdout)
    assert out["Digest"] == family["manifests"][STATIC]["digest"]
    assert (out["Os"], out["Architecture"]) == ("freebsd", "amd64")


def test_umoci_lists_the_extracted_layout(family, tmp_path):
    umoci = need_tool("umoci", "umoci")
    subprocess.run(["tar", "-xJf", str(family["archives"][DYNAMIC]), "-C", str(tmp_path)], check=True)
    out = subprocess.run([umoci, "ls", "--layout", str(tmp_path)], capture_output=True, check=True)
    assert out.stdout.decode().split() == [DYNAMIC]


def test_bad_preset_is_refused(family, tmp_path):
    with pytest.raises(LayerError, match="xz preset 10"):
        write_archive(tmp_path / "x.txz", family["blobs"], family["indexes"][STATIC], xz_preset=10,
                      cache_dir=tmp_path)


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 65537, 3 * 65536 + 17, 1 << 20])
def test_xz_store_stream_decodes_everywhere(size):
    need_tool("xz", "xz-utils")
    data = os.urandom(size)
    stream = b"".join(xz_store_stream(data[i:i + 9999] for i in range(0, len(data), 9999)))
    assert stream == b"".join(xz_store_stream([data]))  # independent of the caller's chunks
    assert lzma.decompress(stream) == data
    # concatenated with an ordinary liblzma stream, as inside an archive
    pair = stream + lzma.compress(b"tail", format=lzma.FORMAT_XZ)
    out = subprocess.run(["xz", "-dc"], input=pair, capture_output=True, check=True).stdout
    assert out == data + b"tail"
    assert subprocess.run(["xz", "-t"], input=stream).returncode == 0
    assert len(stream) <= size + 64 + 3 * (size // 65536 + 1)  # framing only

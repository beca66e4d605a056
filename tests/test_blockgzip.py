"""gzip layers in blocks (release.compress): the same bytes for any thread count, read by every consumer.

The blob writer cuts a tar into fixed blocks, deflates each on its own primed
with the 32 KiB before it, and joins them into one gzip member.  These tests
check that the bytes do not depend on the thread count or on how the caller
splits its writes, that they are exactly the documented layout (rebuilt here
from zlib directly), and that gzip -t, Python, podman, skopeo and umoci read
multi-block layers back to the tar that went in.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from release import oci
from release.archive import write_archive
from release.compress import DEFAULT_GZIP_BLOCK, DEFLATE_WINDOW, compressor_identity, open_blob_writer
from release.demo.content import pseudo_code
from release.errors import ConfigError
from tests.build_support import PrivatePodman, umoci_unpack
from tests.conftest import need_tool
from tests.oci_support import dir_entry, file_entry, sample_layer, write_image, write_layer

SMALL_BLOCK = 64 << 10


@pytest.fixture(scope="module")
def layer() -> bytes:
    """5 MiB like a layer's files: text-like runs and poorly compressible binary noise."""
    return sample_layer(5 << 20, 1414)


def write(tmp: Path, data: bytes, *, step: int = 1 << 20, **options) -> bytes:
    with open_blob_writer(tmp, "tar+gzip", gzip_level=6, zstd_level=3, **options) as writer:
        for offset in range(0, len(data), step):
            writer.write(data[offset:offset + step])
        blob = writer.finish()
    return (tmp / blob.digest[7:]).read_bytes()


def reference(data: bytes, block: int, level: int = 6) -> bytes:
    """The documented layout, from zlib alone: fixed blocks, each primed with the 32 KiB before it."""
    cuts = list(range(0, len(data), block)) or [0]
    out = [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"]
    for n, start in enumerate(cuts):
        zdict = data[max(0, start - DEFLATE_WINDOW):start]
        primed = {"zdict": zdict} if zdict else {}
        d = zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, **primed)
        last = n == len(cuts) - 1
        out.append(d.compress(data[start:start + block]) + d.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH))
    return b"".join(out) + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


@pytest.mark.parametrize("block", [SMALL_BLOCK, DEFAULT_GZIP_BLOCK])
def test_same_bytes_for_any_thread_count_and_write_size(tmp_path, layer, block):
    blobs = {(threads, step): write(tmp_path / f"{threads}-{step}", layer, step=step, gzip_block_size=block,
                                    threads=threads)
             for threads, step in ((1, 1 << 20), (2, 4099), (3, 1 << 20), (8, 65536), (16, len(layer)))}
    first = blobs[(1, 1 << 20)]
    assert all(b == first for b in blobs.values()), "blob bytes depend on the thread count or the write size"
    assert first == reference(layer, block)
    assert gzip.decompress(first) == layer


@pytest.mark.parametrize("size", [0, 1, SMALL_BLOCK - 1, SMALL_BLOCK, SMALL_BLOCK + 1, 3 * SMALL_BLOCK,
                                  3 * SMALL_BLOCK + 7])
def test_block_edges(tmp_path, layer, size):
    gz = need_tool("gzip", "gzip")
    data = layer[:size]
    one = write(tmp_path / "one", data, step=777, gzip_block_size=SMALL_BLOCK, threads=1)
    four = write(tmp_path / "four", data, gzip_block_size=SMALL_BLOCK, threads=4)
    assert one == four == reference(data, SMALL_BLOCK)
    assert subprocess.run([gz, "-t"], input=one).returncode == 0
    assert subprocess.run([gz, "-dc"], input=one, capture_output=True, check=True).stdout == data


def test_one_gzip_member_not_many(tmp_path, layer):
    """Readers that stop after the first member still read everything: there is only one."""
    blob = write(tmp_path, layer, gzip_block_size=SMALL_BLOCK)
    d = zlib.decompressobj(31)
    assert d.decompress(blob) == layer and d.eof and d.unused_data == b""
    assert blob[:10] == reference(b"", SMALL_BLOCK)[:10]


def test_blocks_cost_almost_nothing_in_size(tmp_path):
    """On code-like data (the demo's stand-in binaries) 1 MiB blocks add under 0.1%."""
    code = pseudo_code(b"blocks", 6 << 20)
    serial = write(tmp_path / "serial", code, gzip_block_size=0)
    blocks = write(tmp_path / "blocks", code)
    assert len(serial) < len(blocks) < len(serial) * 1.001


def test_isal_blocks_are_thread_independent_too(tmp_path, layer):
    a = write(tmp_path / "a", layer, gzip_engine="isal", gzip_block_size=SMALL_BLOCK, threads=1)
    b = write(tmp_path / "b", layer, gzip_engine="isal", gzip_block_size=SMALL_BLOCK, threads=5)
    assert a == b and gzip.decompress(a) == layer


def test_block_size_is_part_of_the_identity_and_threads_are_not():
    blocks = compressor_identity("tar+gzip", gzip_level=6, zstd_level=3)
    assert blocks["blocks"] == DEFAULT_GZIP_BLOCK
    serial = compressor_identity("tar+gzip", gzip_level=6, zstd_level=3, gzip_block_size=0)
    assert "blocks" not in serial and serial["probe"] != blocks["probe"]
    assert compressor_identity("tar+gzip", gzip_level=6, zstd_level=3, gzip_block_size=SMALL_BLOCK) != blocks
    assert "threads" not in blocks


@pytest.mark.parametrize("size", [1, 4096, (64 << 20) + 1])
def test_bad_block_sizes_are_config_errors(tmp_path, size):
    with pytest.raises(ConfigError, match="gzip_block_size"):
        open_blob_writer(tmp_path, "tar+gzip", gzip_level=6, zstd_level=3, gzip_block_size=size)


# --------------------------------------------------------------------------- real consumers

REF = "freebsd-blocks:14.2-RELEASE-amd64"


@pytest.fixture(scope="module")
def image(tmp_path_factory, layer) -> dict:
    """An image whose one layer spans many 64 KiB blocks, written with 3 threads, as a .txz archive."""
    work = tmp_path_factory.mktemp("blocks")
    blobs = work / "blobs" / "sha256"
    files = {f"usr/lib/lib{n}.so.1": layer[n << 20:(n + 1) << 20] for n in range(5)}
    members = [(dir_entry("usr"), None), (dir_entry("usr/lib"), None)]
    members += [(file_entry(name, len(data), 0o444), data) for name, data in files.items()]
    blob = write_layer(blobs, members, gzip_block_size=SMALL_BLOCK, threads=3)
    again = write_layer(work / "again", members, gzip_block_size=SMALL_BLOCK, threads=1)
    assert blob == again
    manifest = write_image(blobs, [blob])
    index = oci.image_index([(oci.with_ref_name(manifest, REF), {"architecture": "amd64", "os": "freebsd"})], None)
    archive = work / "blocks.txz"
    size, digests = write_archive(archive, blobs, index, xz_preset=6, cache_dir=work / "cache")
    tar = gzip.decompress((blobs / blob.digest[7:]).read_bytes())
    assert "sha256:" + hashlib.sha256(tar).hexdigest() == blob.diff_id
    assert len((blobs / blob.digest[7:]).read_bytes()) > 40 * SMALL_BLOCK // 2
    return {"archive": archive, "blob": blob, "files": files, "manifest": manifest, "tar": tar, "size": size,
            "digests": digests}


@pytest.mark.parametrize("algorithm, tool", [("SHA256", "sha256sum"), ("SHA512", "sha512sum")])
def test_the_archive_digests_taken_while_writing_are_what_coreutils_computes(image, algorithm, tool):
    """CHECKSUM takes an archive's digests from the writer: they must be the file's."""
    need_tool(tool, "coreutils")
    out = subprocess.run([tool, str(image["archive"])], capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == image["digests"][algorithm]
    assert image["size"] == image["archive"].stat().st_size


def test_umoci_unpacks_the_layer_to_its_files(image, tmp_path):
    rootfs = umoci_unpack(image["archive"], tmp_path / "umoci")
    for name, data in image["files"].items():
        assert (rootfs / name).read_bytes() == data


def test_skopeo_copies_and_decompresses_the_layer_to_its_tar(image, tmp_path):
    skopeo = need_tool("skopeo", "skopeo")
    dest = tmp_path / "dir"
    proc = subprocess.run([skopeo, "copy", "--dest-decompress", f"oci-archive:{image['archive']}", f"dir:{dest}"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (dest / image["blob"].diff_id[7:]).read_bytes() == image["tar"]


def test_podman_loads_the_image_and_checks_its_diff_id(image, tmp_path):
    podman = PrivatePodman(tmp_path / "podman")
    try:
        out = podman("load", "-i", str(image["archive"])).stdout
        assert f"localhost/{REF}" in out
        info = podman.inspect(f"localhost/{REF}")
        assert info["Digest"] == image["manifest"]["digest"]
        assert info["RootFS"]["Layers"] == [image["blob"].diff_id]
        saved = tmp_path / "saved"
        podman("save", "--format", "oci-dir", "--uncompressed", "-o", str(saved), f"localhost/{REF}")
        layers = json.loads((saved / "blobs/sha256" / json.loads((saved / "index.json").read_text())
                             ["manifests"][0]["digest"][7:]).read_text())["layers"]
        assert [(saved / "blobs/sha256" / x["digest"][7:]).read_bytes() for x in layers] == [image["tar"]]
    finally:
        podman.close()

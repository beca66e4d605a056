from __future__ import annotations

import gzip
import hashlib
import os
import struct
import subprocess
from pathlib import Path

import pytest
import zstandard

from release.compress import (ISAL_LEVELS, MEDIA_TYPES, Blob, compressor_identity,
                              open_blob_writer)
from release.errors import ConfigError, LayerError
from release.fsutil import TMP_PREFIX
from tests.conftest import need_tool
from tests.oci_support import sample_layer


@pytest.fixture(scope="module")
def layer() -> bytes:
    """3 MiB of compressible, deterministic bytes: text-like runs plus binary noise."""
    return sample_layer(3 << 20, 14)


def write_blob(blobs: Path, data: bytes, media: str, step: int = 1 << 20, **kw) -> Blob:
    levels = {"gzip_level": 6, "zstd_level": 3, **kw}
    with open_blob_writer(blobs, media, **levels) as writer:
        for offset in range(0, len(data), step):
            writer.write(data[offset:offset + step])
        return writer.finish()


def stored(blobs: Path, blob: Blob) -> bytes:
    return (blobs / blob.digest.removeprefix("sha256:")).read_bytes()


@pytest.mark.parametrize("media", sorted(MEDIA_TYPES))
def test_digests_are_computed_while_writing(tmp_path, layer, media):
    blob = write_blob(tmp_path, layer, media)
    raw = stored(tmp_path, blob)
    assert blob.digest == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert blob.diff_id == "sha256:" + hashlib.sha256(layer).hexdigest()
    assert blob.size == len(raw)
    assert blob.media_type == MEDIA_TYPES[media]
    assert blob.descriptor() == {"mediaType": MEDIA_TYPES[media], "digest": blob.digest, "size": len(raw)}
    assert os.stat(tmp_path / blob.digest[7:]).st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == [blob.digest[7:]]


@pytest.mark.parametrize("level, xfl", [(1, 4), (6, 0), (9, 2)])
def test_gzip_header_is_fixed(tmp_path, layer, level, xfl):
    need_tool("gzip", "gzip")
    blob = write_blob(tmp_path, layer, "tar+gzip", gzip_level=level)
    raw = stored(tmp_path, blob)
    # magic, deflate, no flags (so no file name), MTIME 0, XFL, OS
    assert raw[:10] == b"\x1f\x8b\x08\x00" + struct.pack("<I", 0) + bytes([xfl, 255])
    assert gzip.decompress(raw) == layer
    assert subprocess.run(["gzip", "-t"], input=raw).returncode == 0


@pytest.mark.parametrize("media, kw", [
    ("tar+gzip", {"gzip_level": 6}), ("tar+gzip", {"gzip_level": 6, "gzip_engine": "isal"}),
    ("tar+gzip", {"gzip_level": 6, "gzip_block_size": 0}),
    ("tar+zstd", {"zstd_level": 3}), ("tar+zstd", {"zstd_level": 19}), ("tar", {}),
])
def test_same_input_gives_same_blob_whatever_the_write_sizes(tmp_path, layer, media, kw):
    a = write_blob(tmp_path / "a", layer, media, step=1 << 20, **kw)
    b = write_blob(tmp_path / "b", layer, media, step=4099, **kw)
    c = write_blob(tmp_path / "c", layer, media, step=len(layer), **kw)
    assert a == b == c
    assert stored(tmp_path / "a", a) == stored(tmp_path / "b", b)


def test_zlib_deflate_matches_zlib_one_shot(tmp_path, layer):
    """One serial stream: only the header differs from Python's gzip.compress (OS byte 3 there)."""
    raw = stored(tmp_path, write_blob(tmp_path, layer, "tar+gzip", gzip_level=6, gzip_block_size=0))
    reference = gzip.compress(layer, 6, mtime=0)
    assert len(raw) == len(reference) and raw[:9] + raw[10:] == reference[:9] + reference[10:]


def test_auto_engine_is_zlib(tmp_path, layer):
    auto = write_blob(tmp_path, layer, "tar+gzip", gzip_engine="auto")
    zlib_blob = write_blob(tmp_path, layer, "tar+gzip", gzip_engine="zlib")
    assert auto == zlib_blob


def test_isal_engine_writes_valid_gzip_with_the_same_header(tmp_path, layer):
    isal_blob = write_blob(tmp_path, layer, "tar+gzip", gzip_engine="isal", gzip_level=6)
    zlib_blob = write_blob(tmp_path, layer, "tar+gzip", gzip_engine="zlib", gzip_level=6)
    raw = stored(tmp_path, isal_blob)
    assert gzip.decompress(raw) == layer
    assert raw[:10] == stored(tmp_path, zlib_blob)[:10]
    assert isal_blob.diff_id == zlib_blob.diff_id and isal_blob.digest != zlib_blob.digest


def test_isal_level_map_is_total_and_monotonic():
    assert sorted(ISAL_LEVELS) == list(range(10))
    values = [ISAL_LEVELS[level] for level in range(10)]
    assert values == sorted(values) and set(values) == {0, 1, 2, 3}


def test_zstd_frame_is_single_threaded_and_sizeless(tmp_path, layer):
    need_tool("zstd", "zstd")
    raw = stored(tmp_path, write_blob(tmp_path, layer, "tar+zstd", zstd_level=3))
    params = zstandard.get_frame_parameters(raw)
    assert params.content_size == zstandard.CONTENTSIZE_UNKNOWN
    assert not params.has_checksum and params.dict_id == 0
    out = subprocess.run(["zstd", "-dc"], input=raw, capture_output=True, check=True).stdout
    assert out == layer


def test_plain_tar_digest_is_its_diff_id(tmp_path, layer):
    blob = write_blob(tmp_path, layer, "tar")
    assert blob.digest == blob.diff_id and stored(tmp_path, blob) == layer


def test_existing_blob_is_kept(tmp_path, layer):
    first = write_blob(tmp_path, layer, "tar+gzip")
    path = tmp_path / first.digest[7:]
    inode = path.stat().st_ino
    second = write_blob(tmp_path, layer, "tar+gzip")
    assert second == first and path.stat().st_ino == inode
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_abort_leaves_nothing_behind(tmp_path, layer):
    with pytest.raises(RuntimeError), open_blob_writer(tmp_path, "tar+zstd", gzip_level=6, zstd_level=3) as writer:
        writer.write(layer)
        raise RuntimeError("layer writer failed")
    assert list(tmp_path.iterdir()) == []


def test_forgotten_finish_is_an_abort(tmp_path, layer):
    with open_blob_writer(tmp_path, "tar", gzip_level=6, zstd_level=3) as writer:
        writer.write(layer[:100])
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(LayerError, match="already finished"):
        writer.write(b"more")


def test_temporary_file_uses_the_partial_prefix(tmp_path):
    writer = open_blob_writer(tmp_path, "tar", gzip_level=6, zstd_level=3)
    writer.write(b"x")
    assert [p.name.startswith(TMP_PREFIX) for p in tmp_path.iterdir()] == [True]
    writer.abort()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("media, kw, field", [
    ("tar+xz", {}, "layer media"),
    ("tar+gzip", {"gzip_level": 10}, "gzip_level"),
    ("tar+zstd", {"zstd_level": 0}, "zstd_level"),
    ("tar+gzip", {"gzip_engine": "pigz"}, "gzip_engine"),
])
def test_bad_settings_are_config_errors(tmp_path, media, kw, field):
    with pytest.raises(ConfigError, match=field):
        open_blob_writer(tmp_path, media, **{"gzip_level": 6, "zstd_level": 3, **kw})


def test_compressor_identity_names_what_decides_the_bytes():
    zlib6 = compressor_identity("tar+gzip", gzip_level=6, zstd_level=3)
    assert zlib6["engine"] == "zlib" and zlib6["level"] == 6 and zlib6["zlib"]
    assert compressor_identity("tar+gzip", gzip_level=6, zstd_level=3) == zlib6
    isal6 = compressor_identity("tar+gzip", gzip_level=6, zstd_level=3, gzip_engine="isal")
    assert isal6["isal_level"] == ISAL_LEVELS[6] and isal6["probe"] != zlib6["probe"]
    assert compressor_identity("tar+gzip", gzip_level=9, zstd_level=3)["probe"] != zlib6["probe"]
    zstd = compressor_identity("tar+zstd", gzip_level=6, zstd_level=19)
    assert zstd["threads"] == 0 and zstd["zstd"] and zstd["level"] == 19
    assert compressor_identity("tar", gzip_level=6, zstd_level=3) == {"media": "tar"}

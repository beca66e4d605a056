"""Large blobs and archives go to disk while they are written (fsutil.Writeback).

The closing fsync of a GB-size file would otherwise wait for all of it.  These
tests watch the real fdatasync calls (wrapped, still made) and inject the
error a failing disk gives to the one sync that sees it.
"""
from __future__ import annotations

import errno
import os
import subprocess
import threading

import pytest

from release.archive import write_archive
from release.compress import open_blob_writer
from release.errors import DiskError
from release.fsutil import Writeback
from release.oci import image_index
from tests.oci_support import dir_entry, file_entry, write_image, write_layer


@pytest.fixture
def syncs(monkeypatch):
    """Every fdatasync made, by thread name; the real call still happens."""
    made: list[str] = []
    real = os.fdatasync

    def watched(fd: int) -> None:
        made.append(threading.current_thread().name)
        real(fd)
    monkeypatch.setattr(os, "fdatasync", watched)
    monkeypatch.setattr(Writeback, "STEP", 1 << 20)
    return made


def test_a_blob_is_synced_in_the_background_while_written(tmp_path, syncs):
    data = os.urandom(6 << 20)      # incompressible: about 6 MiB of output, several steps
    with open_blob_writer(tmp_path, "tar+gzip", gzip_level=1, zstd_level=3) as w:
        for i in range(0, len(data), 1 << 20):
            w.write(data[i:i + (1 << 20)])
        blob = w.finish()
    assert syncs and set(syncs) == {"writeback"}
    assert (tmp_path / blob.digest.removeprefix("sha256:")).stat().st_size == blob.size


def test_a_failed_background_sync_fails_the_blob_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(Writeback, "STEP", 1 << 20)

    def failing(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fdatasync", failing)
    data = os.urandom(4 << 20)
    with pytest.raises(DiskError, match="cannot write: No space left on device"), \
            open_blob_writer(tmp_path, "tar+gzip", gzip_level=1, zstd_level=3) as w:
        for i in range(0, len(data), 1 << 20):
            w.write(data[i:i + (1 << 20)])
        w.finish()
    assert not list(tmp_path.iterdir())


def test_an_archive_is_synced_in_the_background_and_a_failure_leaves_nothing(tmp_path, syncs, monkeypatch):
    blobs = tmp_path / "blobs" / "sha256"
    noise = os.urandom(5 << 20)
    layer = write_layer(blobs, [(dir_entry("usr"), None), (file_entry("usr/noise", len(noise)), noise)])
    index = image_index([(write_image(blobs, [layer]), {"architecture": "amd64", "os": "freebsd"})], None)
    dest = tmp_path / "out" / "image.txz"
    syncs.clear()
    size, _ = write_archive(dest, blobs, index, xz_preset=6, cache_dir=tmp_path / "cache")
    assert syncs and set(syncs) == {"writeback"} and dest.stat().st_size == size
    xz = subprocess.run(["xz", "-t", str(dest)], capture_output=True, text=True)
    assert xz.returncode == 0, xz.stderr

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))
    monkeypatch.setattr(os, "fdatasync", failing)
    again = tmp_path / "out" / "again.txz"
    with pytest.raises(OSError, match="Input/output error"):
        write_archive(again, blobs, index, xz_preset=6, cache_dir=tmp_path / "cache")
    assert sorted(p.name for p in again.parent.iterdir()) == ["image.txz"]


def test_small_files_start_no_helper(tmp_path, syncs):
    with open(tmp_path / "f", "wb") as f:
        wb = Writeback(f)
        f.write(b"x" * 1000)
        wb.wrote(1000)
        wb.finish()
    assert syncs == []

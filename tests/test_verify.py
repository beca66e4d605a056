"""verify:<release> rebuilds a release from its locks and names every difference."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import PROJECT
from tests.pipeline_support import doit, error_lines

CONFIG = PROJECT / "config.toml"
ARCHIVE = "out/demo/amd64/FreeBSD-14.2-DEMO-amd64-container-image-minimal.txz"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("verify") / "work"
    doit(CONFIG, work, "build:demo")
    return work


def _link(src: str, dst: str) -> None:
    if Path(src).name == ".doit.db":
        shutil.copy2(src, dst)          # doit writes to its database in place
    else:
        os.link(src, dst)


def copy_of(work: Path, dest: Path) -> Path:
    """A private copy sharing file data with *work* (hardlinks; the pipeline replaces files, never edits them)."""
    shutil.copytree(work, dest, copy_function=_link, symlinks=True)
    return dest


def test_an_untouched_build_verifies(built, tmp_path):
    work = copy_of(built, tmp_path / "work")
    proc = doit(CONFIG, work, "verify:demo")
    assert "demo: rebuild identical: 2 architecture(s), 3 flavour(s)" in proc.stdout
    assert not (work / "verify/demo/work/cache/packages").exists() or \
        all(p.stat().st_nlink > 1 for p in (work / "verify/demo/work/cache/packages").rglob("*.pkg"))


def test_a_changed_byte_in_an_archive_is_named_down_to_the_blob(built, tmp_path):
    work = copy_of(built, tmp_path / "work")
    archive = work / ARCHIVE
    data = bytearray(archive.read_bytes())
    data[len(data) * 2 // 3] ^= 0x01
    archive.unlink()                                   # a new file: the shared original stays intact
    archive.write_bytes(bytes(data))
    layer = (work / "build/demo/amd64/minimal/layer.json").read_text()
    proc = doit(CONFIG, work, "verify:demo", check=False)
    assert proc.returncode != 0
    [line] = error_lines(proc)
    assert line.startswith("verify:demo: demo: the rebuild differs in ")
    assert f"{archive.name}: blobs/sha256/" in proc.stdout
    named = proc.stdout.split(f"{archive.name}: blobs/sha256/")[1][:64]
    assert named in layer or (work / "blobs/sha256" / named).exists()
    assert "CHECKSUM.SHA256" not in proc.stdout       # the build being verified was not "repaired" first

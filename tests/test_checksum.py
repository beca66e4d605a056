from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from release.checksum import verify_checksums, write_checksums
from release.errors import InputError
from tests.conftest import need_tool

NAMES = [
    "FreeBSD-14.2-RELEASE-amd64-container-image-static.txz",
    "FreeBSD-14.2-RELEASE-amd64-container-image-dynamic.txz",
    "FreeBSD-14.2-RELEASE-amd64-container-image-minimal.txz",
]


@pytest.fixture
def release_dir(tmp_path) -> Path:
    for i, name in enumerate(NAMES):
        (tmp_path / name).write_bytes(bytes([i]) * (3 << 20) + name.encode())
    write_checksums(tmp_path, NAMES)
    return tmp_path


@pytest.mark.parametrize("algorithm, tool", [("SHA256", "sha256sum"), ("SHA512", "sha512sum")])
def test_format_is_bsd_style_like_coreutils_tag(release_dir, algorithm, tool):
    """`sha256sum --tag` prints exactly FreeBSD's sha256(1) format: check against it."""
    need_tool(tool, "coreutils")
    ordered = sorted(NAMES)  # sh's glob order: dynamic, minimal, static
    expected = subprocess.run([tool, "--tag", *ordered], cwd=release_dir, capture_output=True,
                              check=True).stdout
    text = (release_dir / f"CHECKSUM.{algorithm}").read_bytes()
    assert text == expected
    assert text.decode().splitlines()[0].startswith(
        f"{algorithm} (FreeBSD-14.2-RELEASE-amd64-container-image-dynamic.txz) = ")
    assert text.endswith(b"\n")
    check = subprocess.run([tool, "-c", f"CHECKSUM.{algorithm}"], cwd=release_dir, capture_output=True)
    assert check.returncode == 0, check.stdout


def test_clean_tree_verifies(release_dir):
    assert verify_checksums(release_dir) == []


def test_flipped_byte_names_the_file(release_dir):
    victim = release_dir / NAMES[2]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1
    victim.write_bytes(bytes(data))
    assert verify_checksums(release_dir) == [f"{NAMES[2]}: SHA256 mismatch", f"{NAMES[2]}: SHA512 mismatch"]


def test_missing_and_extra_archives_are_reported(release_dir):
    (release_dir / NAMES[0]).unlink()
    extra = "FreeBSD-14.2-RELEASE-amd64-container-image-toolchain.txz"
    (release_dir / extra).write_bytes(b"x")
    assert verify_checksums(release_dir) == [f"{NAMES[0]}: listed in CHECKSUM but missing",
                                             f"{extra}: archive not listed in any CHECKSUM file"]


def test_malformed_line_and_missing_checksum_file(release_dir):
    path = release_dir / "CHECKSUM.SHA256"
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace(" = ", " == ")
    path.write_text("\n".join(lines) + "\n")
    (release_dir / "CHECKSUM.SHA512").unlink()
    assert verify_checksums(release_dir) == [
        "CHECKSUM.SHA256:2: malformed line " + repr(lines[1][:80]),
        "CHECKSUM.SHA512: missing",
        f"{sorted(NAMES)[1]}: archive not listed in any CHECKSUM file",
    ]


def test_snapshot_suffix(tmp_path):
    name = "FreeBSD-15.0-CURRENT-amd64-container-image-20241128-abc1234-272000-static.txz"
    (tmp_path / name).write_bytes(b"image")
    write_checksums(tmp_path, [name], suffix="20241128-abc1234-272000")
    assert sorted(p.name for p in tmp_path.glob("CHECKSUM*")) == [
        "CHECKSUM.SHA256-20241128-abc1234-272000", "CHECKSUM.SHA512-20241128-abc1234-272000"]
    assert verify_checksums(tmp_path, suffix="20241128-abc1234-272000") == []
    assert verify_checksums(tmp_path) == ["CHECKSUM.SHA256: missing", "CHECKSUM.SHA512: missing",
                                          f"{name}: archive not listed in any CHECKSUM file"]


def test_rewriting_unchanged_checksums_keeps_the_files(release_dir):
    before = (release_dir / "CHECKSUM.SHA256").stat().st_mtime_ns
    write_checksums(release_dir, list(reversed(NAMES)))
    assert (release_dir / "CHECKSUM.SHA256").stat().st_mtime_ns == before


@pytest.mark.parametrize("name", ["../escape.txz", "sub/dir.txz", "missing.txz"])
def test_bad_names_are_input_errors(release_dir, name):
    with pytest.raises(InputError, match="escape|dir.txz|missing"):
        write_checksums(release_dir, [name])


def test_digests_the_writer_recorded_are_used_while_the_size_matches(tmp_path):
    """The archive stage hands over the digests it took while writing; a file whose size no longer
    matches its record is hashed instead (and verify-checksums, which always hashes, stays the judge)."""
    name, other = NAMES[0], NAMES[1]
    (tmp_path / name).write_bytes(b"archive bytes")
    (tmp_path / other).write_bytes(b"another archive")
    recorded = {"SHA256": "a" * 64, "SHA512": "b" * 128}           # what a writer said, not the file's
    write_checksums(tmp_path, [name, other], known={name: (13, recorded), other: (999, recorded)})
    lines = (tmp_path / "CHECKSUM.SHA256").read_text().splitlines()
    assert f"SHA256 ({name}) = {'a' * 64}" in lines                 # size 13 matches: taken as recorded
    assert f"SHA256 ({other}) = {'a' * 64}" not in lines            # size differs: hashed
    assert verify_checksums(tmp_path) == [f"{name}: SHA256 mismatch", f"{name}: SHA512 mismatch"]

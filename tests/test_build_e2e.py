"""`doit build:demo` end to end: determinism, checksums and incremental rebuilds.

The demo release is built from scratch twice, in two work directories and once
with parallel doit (`-n 2`): every released byte must be the same.  The
CHECKSUM files are checked with hashlib and through `verify-checksums:demo`,
which must name a corrupted archive in one line; and a second `build:demo` on
a finished work directory must neither run an output task nor touch out/.

The images' contents are checked in test_build_e2e_tree.py and
test_build_e2e_dbs.py, their OCI side in test_build_e2e_oci.py.
"""
from __future__ import annotations

import hashlib
import re
import shutil

from tests.build_support import ARCHES, CONFIG, FLAVOURS, archive_name, build_demo, file_bytes, stamps
from tests.pipeline_support import doit, error_lines, ran

OUTPUT_TASKS = ("layer:", "image:", "index:", "archive:", "checksum:")
CHECKSUM_LINE = re.compile(r"(SHA256|SHA512) \((\S+)\) = ([0-9a-f]+)")


def differing(a: dict[str, bytes], b: dict[str, bytes]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def test_two_clean_builds_are_byte_identical(demo_build, tmp_path_factory):
    parallel = build_demo(tmp_path_factory, "demo-build-parallel", "-n", "2")
    ours, theirs = file_bytes(demo_build.out), file_bytes(parallel.out)
    # per arch: an archive and an SBOM per flavour, two CHECKSUM files; then the layouts
    assert len(ours) == len(ARCHES) * (2 * len(FLAVOURS) + 2) + sum(
        2 + len(list((demo_build.layout(f) / "blobs/sha256").iterdir())) for f in FLAVOURS)
    assert not differing(ours, theirs), f"out/ differs: {differing(ours, theirs)}"
    blobs, other_blobs = file_bytes(demo_build.work / "blobs"), file_bytes(parallel.work / "blobs")
    assert not differing(blobs, other_blobs), f"blobs differ: {differing(blobs, other_blobs)}"
    for name, data in blobs.items():
        assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1], name


def test_checksum_files_list_every_archive(demo_build):
    for arch in ARCHES:
        directory = demo_build.out / arch
        for kind, algorithm in (("SHA256", hashlib.sha256), ("SHA512", hashlib.sha512)):
            lines = (directory / f"CHECKSUM.{kind}").read_text().splitlines()
            parsed = [CHECKSUM_LINE.fullmatch(line) for line in lines]
            assert all(parsed), f"{arch} CHECKSUM.{kind}: not BSD-style lines: {lines}"
            sums = {m.group(2): m.group(3) for m in parsed if m.group(1) == kind}
            assert len(sums) == len(lines)
            listed = [archive_name(arch, f) for f in FLAVOURS]
            listed += [n.removesuffix(".txz") + ".spdx.json" for n in listed]       # the SBOMs too
            assert sums == {n: algorithm((directory / n).read_bytes()).hexdigest() for n in listed}


def test_verify_checksums_names_the_one_corrupted_archive(demo_build, tmp_path):
    good = doit(CONFIG, demo_build.work, "verify-checksums:demo")
    assert error_lines(good) == []
    copy = tmp_path / "work"
    shutil.copytree(demo_build.out, copy / "out" / "demo", symlinks=True)
    victim = copy / "out" / "demo" / "amd64" / archive_name("amd64", "dynamic")
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    bad = doit(CONFIG, copy, "verify-checksums:demo", check=False)
    assert bad.returncode != 0
    lines = error_lines(bad)
    assert len(lines) == 1 and victim.name in lines[0], bad.stderr
    others = [archive_name(a, f) for a in ARCHES for f in FLAVOURS if archive_name(a, f) != victim.name]
    assert not any(name in lines[0] for name in others), lines[0]


def test_a_second_build_runs_no_output_task_and_rewrites_nothing(demo_build):
    before = {"out": stamps(demo_build.out), "blobs": stamps(demo_build.work / "blobs")}
    again = doit(CONFIG, demo_build.work, "build:demo")
    assert [t for t in ran(again) if t.startswith(OUTPUT_TASKS)] == [], again.stdout
    assert {"out": stamps(demo_build.out), "blobs": stamps(demo_build.work / "blobs")} == before

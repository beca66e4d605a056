"""FreeBSD 15's notoolchain and toolchain flavours on the demo's toolchain packages (bench/build.py's family).

release/demo/toolchain.py carries the packages that 15.x's
release/tools/oci-image-{notoolchain,toolchain}.conf ask for; bench/build.py
times that family at real scale (the toolchain layer over 1 GB).  Here it is
built small, from the demo's 15.x src (main) as a release listing the five
flavours builds it, and its largest image is checked the way a user would:
umoci applies every layer, and the pkg database (sqlite3) lists exactly the
image's packages.
"""
from __future__ import annotations

import json
import re
import shutil
import sqlite3

import pytest

from release.demo import content, toolchain
from release.demo.generate import generate_demo
from tests.build_support import umoci_unpack
from tests.pipeline_support import doit, write_config

FLAVOURS = ["static", "dynamic", "runtime", "notoolchain", "toolchain"]


def test_the_toolchain_family_is_real_size_at_real_scale():
    devel = [s[0] for s in toolchain._TOOLCHAIN]
    jail = [s[0] for s in toolchain._NOTOOLCHAIN]
    assert toolchain.nominal_bytes(devel) > 1_000_000_000
    assert 200_000_000 < toolchain.nominal_bytes(jail) < 1_000_000_000
    assert not set(toolchain.BUILDERS) & set(content.package_names(15))     # no name twice in a 15.x repository


def test_every_package_the_15x_src_asks_for_is_there():
    confs = content.DATA / "src-15" / "release" / "tools"
    wanted = {n for c in ("notoolchain", "toolchain")
              for n in re.findall(r"FreeBSD-[\w-]+", (confs / f"oci-image-{c}.conf").read_text())}
    assert wanted <= set(toolchain.BUILDERS) | set(content.package_names(15))


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    root = tmp_path_factory.mktemp("toolchain")
    generate_demo(root / "demo", arches=("amd64",), abi_major=15, repos={"base_latest": "15.0"}, branches=("main",),
                  toolchain=True, pkg_level=3)
    mirror, src = f"file://{root}/demo/pkgbase/${{ABI}}/${{REPO}}", (root / "demo/src.git").as_uri()
    release = {"branch": "main", "arches": ["amd64"], "flavours": FLAVOURS, "mirror": mirror, "src_url": src,
               "source": "https://git.freebsd.org/src.git"}
    config = write_config(root / "config.toml", mirror=mirror, src_url=src, releases={"test": release})
    work = root / "work"
    doit(config, work, "build:test")
    return work


def test_the_toolchain_image_holds_every_layer_and_lists_every_package(family, tmp_path):
    archive = family / "out/test/amd64/FreeBSD-15.0-CURRENT-amd64-container-image-toolchain.txz"
    root = umoci_unpack(archive, tmp_path / "unpacked")
    for path in ("etc/services", "usr/share/zoneinfo/UTC", "rescue/sh", "usr/bin/util0", "usr/lib/libstatic0.a",
                 "usr/lib/clang/19/include/h0.h"):
        assert (root / path).is_file(), path
    assert (root / "usr/bin/cc").stat().st_ino == (root / "usr/bin/clang0").stat().st_ino
    lock = json.loads((family / "locks/test/amd64.json").read_text())
    expected = sorted(p["name"] for f in FLAVOURS for p in lock["flavours"][f]["packages"])
    assert {"FreeBSD-set-devel", "FreeBSD-clang", "FreeBSD-utilities", "FreeBSD-zfs"} <= set(expected)
    db = tmp_path / "local.sqlite"
    shutil.copyfile(root / "var/db/pkg/local.sqlite", db)
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        names = [n for (n,) in con.execute("SELECT name FROM packages ORDER BY name")]
    finally:
        con.close()
    assert names == expected


def test_genrepo_prints_the_toolchain_family(tmp_path, capsys):
    from bench import genrepo
    assert genrepo.main([str(tmp_path / "g"), "--scale", "1", "--arches", "amd64", "--release", "current",
                         "--version", "15.0", "--toolchain", "--pkg-level", "1"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    assert rows["notoolchain"][1] == "runtime" and rows["toolchain"][1] == "notoolchain"
    assert int(rows["toolchain"][2]) == 1 + len(toolchain._TOOLCHAIN)     # the set and its members

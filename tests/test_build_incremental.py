"""What a changed package rebuilds: its own flavour's layer, and above it only documents.

The demo repository is republished with one package bumped (release/demo's
bump_package); the next build must rebuild the layer of the flavour that holds
it, redo configs, manifests, indexes, archives and checksums above it, and leave
the layers of the other flavours alone (byte for byte, file untouched) — except
for flavours that ship pkg, whose /var/db/pkg/local.sqlite lists every package
of the image and therefore must change.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from release.demo.generate import bump_package
from tests.pipeline_support import doit, ran, write_config


def layer_digest(work: Path, arch: str, flavour: str) -> str:
    return json.loads((work / f"build/test/{arch}/{flavour}/layer.json").read_text())["digest"]


def test_a_bumped_package_rebuilds_only_its_flavours_layer(demo_tree, tmp_path):
    root = tmp_path / "mirror"
    shutil.copytree(demo_tree, root, symlinks=True)
    config = write_config(tmp_path / "config.toml", mirror=f"file://{root}/pkgbase/${{ABI}}/${{REPO}}",
                          src_url=(root / "src.git").as_uri(), arches=["amd64"])
    work = tmp_path / "work"
    doit(config, work, "build:test")
    before = {f: layer_digest(work, "amd64", f) for f in ("static", "dynamic", "minimal")}
    dynamic_blob = work / "blobs/sha256" / before["dynamic"][7:]
    dynamic_stat = dynamic_blob.stat().st_mtime_ns
    archives = {p.name: p.read_bytes() for p in (work / "out/test/amd64").glob("*.txz")}

    bump_package(root, arch="amd64", abi_major=14, repo="base_release_2", name="FreeBSD-zoneinfo",
                 version="14.2p1", change=b"\n# a new time zone rule\n")
    proc = doit(config, work, "build:test")
    done = set(ran(proc))
    assert {"layer:test:amd64:static", "lock:test:amd64", "download:test:amd64"} <= done
    assert "layer:test:amd64:dynamic" not in done                   # its own packages did not change
    assert {"image:test:amd64:dynamic", "archive:test:amd64:dynamic", "index:test:dynamic",
            "checksum:test:amd64"} <= done                         # base.digest moved under it
    assert "layer:test:amd64:minimal" in done                      # ships pkg: local.sqlite lists zoneinfo
    after = {f: layer_digest(work, "amd64", f) for f in ("static", "dynamic", "minimal")}
    assert after["static"] != before["static"] and after["minimal"] != before["minimal"]
    assert after["dynamic"] == before["dynamic"]
    assert dynamic_blob.stat().st_mtime_ns == dynamic_stat        # not rewritten
    for name, data in archives.items():
        assert (work / "out/test/amd64" / name).read_bytes() != data
    lock = json.loads((work / "locks/test/amd64.json").read_text())
    zoneinfo = next(p for p in lock["flavours"]["static"]["packages"] if p["name"] == "FreeBSD-zoneinfo")
    assert zoneinfo["version"] == "14.2p1"

    again = doit(config, work, "build:test")                        # and then nothing more to do
    assert not [t for t in ran(again) if not t.startswith("fetch:")]

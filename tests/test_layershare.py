"""Work done once: a layer the same for two architectures is built once, the tools run once per input.

The demo's static flavour (FreeBSD-zoneinfo plus steps reading src) comes out
byte-identical for amd64 and aarch64 although their zoneinfo packages are
different files (different ABI, different manifest generations).  Building
both architectures in one process must write that layer once and take it for
the second architecture (release.layershare), and run pwd_mkdb, services_mkdb
and certctl once per distinct input (release.builtincache).  A package whose
payload differs on one architecture must make its layer be built for both.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from release import config as config_mod
from release import layer as layer_mod
from release import planner
from release.builtins import certctl, pwdmkdb, servicesmkdb
from release.demo.generate import bump_package
from release.matrix import resolve
from release.workspace import Workspace
from tests.conftest import count_calls
from tests.pipeline_support import doit, write_config

FLAVOURS = ("static", "dynamic", "minimal")
ARCHES = ("amd64", "aarch64")


def prepared(demo_tree: Path, tmp_path: Path, bump_aarch64_zoneinfo: bool = False) -> tuple:
    root = tmp_path / "mirror"
    shutil.copytree(demo_tree, root, symlinks=True)
    if bump_aarch64_zoneinfo:
        bump_package(root, arch="aarch64", abi_major=14, repo="base_release_2", name="FreeBSD-zoneinfo",
                     version="14.2p1", change=b"\n# a rule only aarch64 has\n")
    config = write_config(tmp_path / "config.toml", mirror=f"file://{root}/pkgbase/${{ABI}}/${{REPO}}",
                          src_url=(root / "src.git").as_uri())
    work = tmp_path / "work"
    doit(config, work, *(f"download:test:{a}" for a in ARCHES))
    return resolve(config_mod.load(config, workdir=work), Workspace(work)), work


def build_all(m) -> dict:
    return {(a, f): layer_mod.build_layer(planner.layer_plan(m, "test", a, f)) for a in ARCHES for f in FLAVOURS}


def test_the_static_layer_and_the_tools_run_once_for_both_architectures(demo_tree, tmp_path, monkeypatch):
    m, work = prepared(demo_tree, tmp_path)
    blobs = count_calls(monkeypatch, layer_mod, "write_layer_blob")
    tools = {name: count_calls(monkeypatch, module, fn) for name, module, fn in (
        ("pwd_mkdb", pwdmkdb, "pwd_mkdb"), ("services_mkdb", servicesmkdb, "services_mkdb"),
        ("certctl", certctl, "rehash"))}
    done = build_all(m)
    assert len(blobs) == len(ARCHES) * len(FLAVOURS) - 1
    assert done[("aarch64", "static")] == {**done[("amd64", "static")], "shared": True}
    assert not any(r["shared"] for k, r in done.items() if k != ("aarch64", "static"))
    assert len({done[(a, "dynamic")]["digest"] for a in ARCHES}) == 2
    # static's accounts and the runtime package's post-install read the same master.passwd;
    # certctl runs as the static step (copies) and as certctl's post-install (symlinks)
    assert {name: len(calls) for name, calls in tools.items()} == {"pwd_mkdb": 1, "services_mkdb": 1, "certctl": 2}
    records = {a: json.loads((work / f"build/test/{a}/static/layer.json").read_text()) for a in ARCHES}
    assert records["amd64"]["identity"] != records["aarch64"]["identity"]
    assert {k: v for k, v in records["amd64"].items() if k != "identity"} == \
        {k: v for k, v in records["aarch64"].items() if k != "identity"}
    for a in ARCHES:
        assert (work / f"build/test/{a}/static/view.json").read_bytes() == \
            (work / "build/test/amd64/static/view.json").read_bytes()
    # a layer that may be shared digests files with SHA-256 (comparable across repositories); minimal
    # (pkg database: never shared) keeps the sums its packages verified: BLAKE2b for amd64's pkg 2.x
    # packages instead of hashing every file a second time, sha256 for aarch64's older ones
    kinds = {(a, f): {"blake2b" if d.startswith("2$") else "sha256" if len(d) == 64 else d
                      for kind, d, _ in json.loads((work / f"build/test/{a}/{f}/index.json").read_text()).values()
                      if kind == "file"} for a in ARCHES for f in FLAVOURS}
    assert kinds == {("amd64", "static"): {"sha256"}, ("amd64", "dynamic"): {"sha256"},
                     ("amd64", "minimal"): {"blake2b"}, ("aarch64", "static"): {"sha256"},
                     ("aarch64", "dynamic"): {"sha256"}, ("aarch64", "minimal"): {"sha256"}}
    assert build_all(m) == {k: {**v, "reused": True, "shared": False} for k, v in done.items()}
    assert len(blobs) == len(ARCHES) * len(FLAVOURS) - 1


def test_a_package_that_differs_on_one_architecture_is_not_shared(demo_tree, tmp_path, monkeypatch):
    m, work = prepared(demo_tree, tmp_path, bump_aarch64_zoneinfo=True)
    blobs = count_calls(monkeypatch, layer_mod, "write_layer_blob")
    done = build_all(m)
    assert len(blobs) == len(ARCHES) * len(FLAVOURS)
    assert not any(r["shared"] for r in done.values())
    assert done[("amd64", "static")]["digest"] != done[("aarch64", "static")]["digest"]


@pytest.mark.parametrize("damage", ["entry", "record", "blob"])
def test_a_damaged_shared_layer_is_built_again(demo_tree, tmp_path, monkeypatch, damage):
    m, work = prepared(demo_tree, tmp_path)
    first = layer_mod.build_layer(planner.layer_plan(m, "test", "amd64", "static"))
    [entry] = (work / "layers/shared").glob("*/*.json")
    if damage == "entry":
        entry.write_text("{")
    elif damage == "record":
        (work / "layers" / entry.name).write_text("[]")
    else:
        (work / "blobs/sha256" / first["digest"][7:]).unlink()
    blobs = count_calls(monkeypatch, layer_mod, "write_layer_blob")
    second = layer_mod.build_layer(planner.layer_plan(m, "test", "aarch64", "static"))
    assert len(blobs) == 1 and not second["shared"] and second["digest"] == first["digest"]

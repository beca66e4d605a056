"""scripts = "emulate" and run steps through the whole pipeline (`doit build`), on busybox images.

The aarch64 images run their scripts under qemu-aarch64-static, the amd64
ones natively; the results are read back with tar and `umoci raw unpack`.
"""
from __future__ import annotations

import json
import os
import platform
import struct
from pathlib import Path

import pytest

from release import config as config_mod
from release.emulate import binfmt_interpreter
from release.layer import read_inputs
from release.matrix import resolve
from release.planner import layer_plan
from release.workspace import Workspace
from tests.build_support import read_layer, umoci_unpack
from tests.conftest import need_tool, unavailable
from tests.emulation_support import MOTD, RELEASE, SCRIPTED_LAYER, EmulationInputs, need_root, write_config
from tests.pipeline_support import doit, error_lines

ARCHES = ("amd64", "aarch64")
ELF_MACHINE = {"amd64": 62, "aarch64": 183}


class Build:
    def __init__(self, config: Path, work: Path) -> None:
        self.config, self.work = config, work

    def record(self, arch: str, flavour: str, name: str = "layer") -> dict:
        return json.loads((self.work / "build" / RELEASE / arch / flavour / f"{name}.json").read_text())

    def layer_blob(self, arch: str, flavour: str) -> bytes:
        digest = self.record(arch, flavour)["digest"]
        return (self.work / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()

    def archive(self, arch: str, flavour: str) -> Path:
        return next((self.work / "out" / RELEASE / arch).glob(f"*-container-image-{flavour}.txz"))

    def sde(self) -> int:
        return json.loads((self.work / "state" / RELEASE / "src-inputs.json").read_text())["source_date_epoch"]


def build(tmp: Path, inputs: EmulationInputs, **options) -> Build:
    need_root()
    need_tool("qemu-aarch64-static", "qemu-user-static")
    config = write_config(tmp / "config.toml", inputs, **options)
    doit(config, tmp / "work", f"build:{RELEASE}")
    return Build(config, tmp / "work")


@pytest.fixture(scope="module")
def emulated(emulation_inputs: EmulationInputs, tmp_path_factory: pytest.TempPathFactory) -> Build:
    return build(tmp_path_factory.mktemp("emulated"), emulation_inputs)


@pytest.mark.parametrize("arch", ARCHES)
def test_the_layer_carries_exactly_the_scripts_and_run_step_effects(emulated: Build, arch: str) -> None:
    layer = read_layer(emulated.layer_blob(arch, "scripted"))
    by = {m.name.rstrip("/"): m for m in layer.members}
    assert set(by) == SCRIPTED_LAYER
    assert layer.data["etc/motd"] == MOTD + b"edited by FreeBSD-hello-14.2\n"
    assert by["etc/.wh.obsolete.conf"].size == 0
    assert layer.data["etc/hello.conf"] == b"installed FreeBSD-hello-14.2 under / prefix / as FreeBSD-hello\n"
    assert layer.data["etc/hello.env"] == (b"PATH=/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin "
                                           b"HOME=/root LANG=C TZ=UTC SOURCE_DATE_EPOCH=%d\n" % emulated.sde())
    assert layer.data["etc/superusers"].split() == [b"#", b"root", b"toor"]
    state = by["var/db/hello/state"]
    assert (state.uid, state.gid, state.uname, state.gname, state.mode) == (1, 1, "daemon", "daemon", 0o640)
    assert by["etc/hello.link"].issym() and by["etc/hello.link"].linkname == "hello.conf"
    assert all(m.mtime <= emulated.sde() for m in layer.members)


@pytest.mark.parametrize("arch", ARCHES)
def test_the_unpacked_image_shows_the_effects_and_nothing_of_the_run(emulated: Build, arch: str,
                                                                    tmp_path: Path) -> None:
    root = umoci_unpack(emulated.archive(arch, "scripted"), tmp_path)
    assert (root / "etc/motd").read_bytes() == MOTD + b"edited by FreeBSD-hello-14.2\n"
    assert not (root / "etc/obsolete.conf").exists() and (root / "etc/keep.conf").is_file()
    assert (root / "usr/share/hello/README").is_file() and not (root / "usr/share/hello/scratch").exists()
    assert not any(p.name.startswith(".qemu") for p in root.iterdir())
    assert not (root / "dev").exists() and not (root / "proc").exists()
    # the scripts really ran the image's own busybox, built for the target
    header = (root / "bin/busybox").read_bytes()[:20]
    assert struct.unpack("<H", header[18:20])[0] == ELF_MACHINE[arch]


def test_native_and_emulated_runs_agree(emulated: Build) -> None:
    assert emulated.record("amd64", "scripted")["diff_id"] == emulated.record("aarch64", "scripted")["diff_id"]


def test_the_plan_names_the_executor_and_the_parent_layers(emulated: Build) -> None:
    cfg = config_mod.load(emulated.config, workdir=emulated.work)
    m = resolve(cfg, Workspace(emulated.work))
    for arch in ARCHES:
        plan = layer_plan(m, RELEASE, arch, "scripted")
        parents = read_inputs(plan).identity_json()["parent_layers"]
        assert parents == [{"digest": emulated.record(arch, "shell")["digest"],
                            "media_type": "application/vnd.oci.image.layer.v1.tar+gzip"}]
        assert str(emulated.work / f"build/{RELEASE}/{arch}/shell/layer.json") in map(str, plan.inputs())
        expected = "native" if arch == "amd64" else ("binfmt" if _binfmt("aarch64") else "qemu")
        assert plan.executor["method"] == expected
        shell = layer_plan(m, RELEASE, arch, "shell")
        assert shell.executor is None and not read_inputs(shell).parent_layers


def test_the_image_history_says_the_scripts_were_emulated(emulated: Build) -> None:
    history = emulated.record("aarch64", "scripted")["created_by"]
    assert history.endswith("steps: run; scripts: FreeBSD-hello post-install emulated")


def test_two_builds_give_identical_layers(emulated: Build, emulation_inputs: EmulationInputs,
                                          tmp_path: Path) -> None:
    again = build(tmp_path, emulation_inputs)
    for arch in ARCHES:
        for flavour in ("shell", "scripted"):
            assert again.layer_blob(arch, flavour) == emulated.layer_blob(arch, flavour)
    assert list((again.work / "tmp").iterdir()) == []        # no materialised root left behind


def test_without_the_emulator_the_build_stops_with_the_package_to_install(emulation_inputs: EmulationInputs,
                                                                          tmp_path: Path) -> None:
    need_root()
    if _binfmt("aarch64"):
        unavailable("a binfmt_misc handler for aarch64 is registered: a missing emulator cannot be simulated")
    config = write_config(tmp_path / "config.toml", emulation_inputs, arches=("aarch64",))
    env = {"PATH": os.pathsep.join(d for d in ("/usr/sbin", "/sbin") if Path(d).is_dir())}
    proc = doit(config, tmp_path / "work", f"build:{RELEASE}", check=False, env=env)
    assert proc.returncode != 0
    assert error_lines(proc) == [
        f"layer:{RELEASE}:aarch64:scripted: aarch64 programs need QEMU user emulation on this "
        f"{platform.machine().lower()} host, but "
        "qemu-aarch64-static not found: apt-get install qemu-user-static (Debian) / "
        "pkg install qemu-user-static (FreeBSD)"]


def test_scripts_ignore_skips_them_and_says_so(emulation_inputs: EmulationInputs, tmp_path: Path) -> None:
    b = build(tmp_path, emulation_inputs, scripts="ignore", run=False, arches=("amd64",))
    layer = read_layer(b.layer_blob("amd64", "scripted"))
    assert {m.name.rstrip("/") for m in layer.members} == {
        "usr", "usr/share", "usr/share/hello", "usr/share/hello/README", "usr/share/hello/scratch"}
    assert b.record("amd64", "scripted")["created_by"].endswith("scripts: FreeBSD-hello post-install ignored (config)")


def test_scripts_builtin_refuses_a_script_it_does_not_know(emulation_inputs: EmulationInputs,
                                                           tmp_path: Path) -> None:
    need_root()
    config = write_config(tmp_path / "config.toml", emulation_inputs, scripts="builtin", run=False,
                          arches=("amd64",))
    proc = doit(config, tmp_path / "work", f"build:{RELEASE}", check=False)
    assert proc.returncode != 0
    assert any("FreeBSD-hello: post-install script: unrecognised command" in line for line in error_lines(proc))


def _binfmt(arch: str) -> bool:
    return bool(binfmt_interpreter(Path("/proc/sys/fs/binfmt_misc") / f"qemu-{arch}"))

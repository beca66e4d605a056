"""The executor and the materialised root, on real files, real chroot and real QEMU.

Layers are hand-made tars (plain, gzip, zstd) read back by release.rootfs;
programs are Debian's busybox-static for amd64 (run natively) and arm64 (run
under qemu-aarch64-static), see tests/emulation_support.py.
"""
from __future__ import annotations

import gzip
import io
import logging
import os
import stat
import tarfile
import tempfile
from pathlib import Path

import pytest
import zstandard

from release.builtins.entries import Entry
from release.emulate import (Emulation, Executor, Method, PackageScript, choose_method, install_scripts,
                             resolve_in_root)
from release.errors import LayerError, StepError
from release.rootfs import LayerBlob, diff, materialise, snapshot
from release.tree import LayerTree, ParentView
from tests.conftest import need_tool
from tests.emulation_support import need_root

SDE = 1_700_000_000
PASSWD = b"root:*:0:0::0:0:Charlie &:/root:/bin/sh\ndaemon:*:1:1::0:0:Owner:/root:/usr/sbin/nologin\n" \
         b"www:*:80:80::0:0:World Wide Web Owner:/nonexistent:/usr/sbin/nologin\n"
GROUP = b"wheel:*:0:root\ndaemon:*:1:\nwww:*:80:\n"
V7_PASSWD = b"root:*:0:0:Charlie &:/root:/bin/sh\nwww:*:80:80:World Wide Web Owner:/nonexistent:/usr/sbin/nologin\n"
MEDIA = {"tar": "application/vnd.oci.image.layer.v1.tar", "tar+gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
         "tar+zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}


# --------------------------------------------------------------------------- hand-made layers

def member(name: str, kind: str = "file", *, data: bytes = b"", mode: int = 0o644, uid: int = 0, gid: int = 0,
           link: str = "", device: tuple[int, int] = (0, 0)) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
               "hardlink": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE}[kind]
    ti.mode, ti.uid, ti.gid, ti.mtime, ti.linkname = mode, uid, gid, SDE - 100, link
    ti.devmajor, ti.devminor = device
    ti.size = len(data) if kind == "file" else 0
    return ti, data


def layer_blob(directory: Path, name: str, members: list, media: str = "tar") -> LayerBlob:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for ti, data in members:
            tar.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    data = raw.getvalue()
    if media == "tar+gzip":
        data = gzip.compress(data)
    elif media == "tar+zstd":
        data = zstandard.ZstdCompressor().compress(data)
    path = directory / f"{name}.blob"
    path.write_bytes(data)
    return LayerBlob(path, MEDIA[media], f"sha256:{name}")


def base_layer(directory: Path, media: str = "tar") -> LayerBlob:
    return layer_blob(directory, "base", [
        member("etc", "dir", mode=0o755), member("etc/master.passwd", data=PASSWD, mode=0o600),
        member("etc/group", data=GROUP), member("etc/a", data=b"a", mode=0o640, uid=1, gid=80),
        member("etc/b", data=b"b"), member("etc/sub", "dir", mode=0o750), member("etc/sub/x", data=b"x"),
        member("bin", "dir", mode=0o755), member("bin/test", data=b"test", mode=0o555),
        member("bin/[", "hardlink", link="bin/test"), member("bin/sh", "symlink", link="/rescue/sh"),
        member("usr/bin/su", data=b"su", mode=0o4555),
    ], media)


def upper_layer(directory: Path, media: str = "tar") -> LayerBlob:
    return layer_blob(directory, "upper", [
        member("etc/+early", data=b"kept: written before the opaque marker"),
        member("etc/.wh.b"), member("etc/c", data=b"c"),
        member("etc/sub/.wh..wh..opq"), member("etc/sub/y", data=b"y"),
    ], media)


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    need_root()
    return tmp_path


# --------------------------------------------------------------------------- materialise

@pytest.mark.parametrize("media", ["tar", "tar+gzip", "tar+zstd"])
def test_layers_are_applied_with_owners_modes_links_and_whiteouts(tmp: Path, media: str) -> None:
    blobs = [base_layer(tmp, media), upper_layer(tmp, media)]
    with materialise(tmp / "work", blobs) as root:
        r = root.path
        kept = path_set(r)
        a = os.lstat(r / "etc/a")
        assert (stat.S_IMODE(a.st_mode), a.st_uid, a.st_gid) == (0o640, 1, 80)
        assert stat.S_IMODE(os.lstat(r / "usr/bin/su").st_mode) == 0o4555
        assert os.readlink(r / "bin/sh") == "/rescue/sh"
        assert os.lstat(r / "bin/[").st_ino == os.lstat(r / "bin/test").st_ino
        assert int(os.lstat(r / "etc/c").st_mtime) == SDE - 100
        assert "/etc/b" not in kept and "/etc/sub/x" not in kept        # whiteout, opaque whiteout
        assert {"/etc/sub/y", "/etc/+early", "/etc/c"} <= kept
        assert stat.S_IMODE(os.lstat(r / "etc/sub").st_mode) == 0o750
        assert root.lower == kept
        assert root.hashes["/bin/["] == root.hashes["/bin/test"]
    assert not r.exists() and list((tmp / "work").iterdir()) == []


@pytest.mark.parametrize("bad, message", [
    ([member("../escape", data=b"x")], r"escapes the root"),
    ([member("etc/../../escape", data=b"x")], r"escapes the root"),
    ([member("/etc/passwd", data=b"x")], r"absolute member name refused"),
    ([member("dev", "dir"), member("dev/sda", "chr", device=(8, 0))], r"character device refused"),
    ([member("run", "dir"), member("run/pipe", "fifo")], r"FIFO refused"),
    ([member("x", "hardlink", link="../../etc/shadow")], r"escapes the root"),
    ([member("x", "hardlink", link="/etc/shadow")], r"hardlink to absolute path"),
    ([member("etc", "symlink", link="OUTSIDE"), member("etc/passwd", data=b"owned")],
     r"parent /etc is a symlink; refusing to write through it"),
    ([member("etc", "symlink", link="OUTSIDE"), member("etc/.wh.passwd")],
     r"parent /etc is a symlink; refusing to write through it"),
])
def test_members_that_escape_the_root_are_refused_and_the_root_removed(tmp: Path, bad: list,
                                                                       message: str) -> None:
    outside = tmp / "outside"
    outside.mkdir()
    (outside / "passwd").write_bytes(b"host")
    bad = [(ti, data) if ti.linkname != "OUTSIDE" else (_relink(ti, str(outside)), data) for ti, data in bad]
    blob = layer_blob(tmp, "bad", bad)
    with pytest.raises(LayerError, match=message), materialise(tmp / "work", [blob]):
        pass
    assert list((tmp / "work").iterdir()) == []
    assert sorted(p.name for p in outside.iterdir()) == ["passwd"] and (outside / "passwd").read_bytes() == b"host"
    assert not (tmp / "escape").exists()


def _relink(ti: tarfile.TarInfo, target: str) -> tarfile.TarInfo:
    ti.linkname = target
    return ti


def test_the_root_is_removed_when_the_block_raises(tmp: Path) -> None:
    with pytest.raises(RuntimeError), materialise(tmp / "work", [base_layer(tmp)]) as root:
        (root.path / "etc" / "locked").mkdir(mode=0o500)
        (root.path / "etc" / "locked" / "f").write_bytes(b"")
        raise RuntimeError("boom")
    assert list((tmp / "work").iterdir()) == []


def test_the_layer_under_construction_goes_over_the_parents(tmp: Path) -> None:
    with tempfile.TemporaryFile() as spool:
        tree = LayerTree(ParentView(files={"/etc/master.passwd": PASSWD, "/etc/group": GROUP}), spool)
        tree.put(Entry("/var", "dir", 0o755), "test")
        tree.put(Entry("/var/www", "dir", 0o750, "www", "www"), "test")
        tree.add_stream(Entry("/var/www/index.html", "file", 0o444, "www", "daemon"), "FreeBSD-www",
                        io.BytesIO(b"<h1>hi</h1>" * 1000))
        tree.add_package_entry(Entry("/var/www/index.htm", "hardlink", 0o444, target="/var/www/index.html"),
                               "FreeBSD-www")
        tree.put(Entry("/etc/motd", "symlink", 0o755, target="../var/www/index.html"), "test")
        tree.remove("/etc/b", "test")
        with materialise(tmp / "work", [base_layer(tmp)], tree, sde=SDE) as root:
            r = root.path
            index = os.lstat(r / "var/www/index.html")
            assert (index.st_uid, index.st_gid, stat.S_IMODE(index.st_mode)) == (80, 1, 0o444)
            assert int(index.st_mtime) == SDE
            assert (r / "var/www/index.html").read_bytes() == b"<h1>hi</h1>" * 1000
            assert os.lstat(r / "var/www/index.htm").st_ino == index.st_ino
            assert os.lstat(r / "var/www").st_uid == 80
            assert os.readlink(r / "etc/motd") == "../var/www/index.html"
            assert not (r / "etc/b").exists()
            assert "/var/www" not in root.lower and "/etc/b" in root.lower


# --------------------------------------------------------------------------- snapshot and diff

def test_snapshot_diff_sees_content_mode_owner_and_links_but_not_mtimes(tmp_path: Path) -> None:
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    for name in ("same", "touched", "edited", "chmodded", "chowned", "gone"):
        (r / "etc" / name).write_bytes(b"x")
    os.symlink("same", r / "etc/link")
    before = snapshot(r)
    os.utime(r / "etc/touched", (1, 1))
    (r / "etc/edited").write_bytes(b"y")
    os.chmod(r / "etc/chmodded", 0o600)
    if os.geteuid() == 0:
        os.chown(r / "etc/chowned", 1, 1)
    (r / "etc/gone").unlink()
    (r / "etc/link").unlink()
    os.symlink("edited", r / "etc/link")
    (r / "etc/new").mkdir()
    (r / "etc/new/file").write_bytes(b"new")
    after = snapshot(r, known=before)
    changes = diff(before, after)
    assert changes.added == ["/etc/new", "/etc/new/file"]
    assert changes.deleted == ["/etc/gone"]
    expected = ["/etc/chmodded", "/etc/edited", "/etc/link"] + (["/etc/chowned"] if os.geteuid() == 0 else [])
    assert changes.changed == sorted(expected)
    assert after["/etc/edited"].sha256 == "a1fce4363854ff888cff4b8e7875d600c2682390412a8cf79b37d0b11148b0fa"


# --------------------------------------------------------------------------- choosing a method

def test_native_when_the_host_runs_the_target(tmp_path: Path) -> None:
    assert choose_method("amd64", machine="x86_64").kind == "native"
    assert choose_method("i386", machine="x86_64").kind == "native"
    assert choose_method("aarch64", machine="arm64").kind == "native"


def test_a_binfmt_handler_is_used_only_with_the_fix_binary_flag(tmp_path: Path) -> None:
    qemu = need_tool("qemu-aarch64-static", "qemu-user-static")
    handler = tmp_path / "qemu-aarch64"
    handler.write_text(f"enabled\ninterpreter {qemu}\nflags: POCF\noffset 0\nmagic 7f454c46\n")
    m = choose_method("aarch64", machine="x86_64", binfmt_dir=tmp_path)
    assert (m.kind, m.emulator) == ("binfmt", qemu) and m.version.startswith("qemu-aarch64 version")
    handler.write_text(f"enabled\ninterpreter {qemu}\nflags: OC\noffset 0\n")
    assert choose_method("aarch64", machine="x86_64", binfmt_dir=tmp_path).kind == "qemu"
    handler.write_text(f"disabled\ninterpreter {qemu}\nflags: F\n")
    assert choose_method("aarch64", machine="x86_64", binfmt_dir=tmp_path).kind == "qemu"


def test_a_missing_emulator_names_the_package_to_install(tmp_path: Path) -> None:
    with pytest.raises(StepError) as e:
        choose_method("aarch64", machine="x86_64", search_path=str(tmp_path), binfmt_dir=tmp_path)
    assert "qemu-aarch64-static not found: apt-get install qemu-user-static (Debian) / " \
           "pkg install qemu-user-static (FreeBSD)" in str(e.value)
    assert "\n" not in str(e.value)


def test_the_emulator_version_is_part_of_the_method_identity() -> None:
    need_tool("qemu-riscv64-static", "qemu-user-static")
    ident = choose_method("riscv64", machine="x86_64", binfmt_dir=Path("/nonexistent")).identity()
    assert ident["method"] == "qemu" and ident["emulator"] == "qemu-riscv64-static"
    assert ident["version"].startswith("qemu-riscv64 version")


def test_without_root_the_executor_says_so() -> None:
    with pytest.raises(StepError, match=r"needs root \(the sandbox gives the image.s users their own ids\)"):
        Executor(Method("native", "amd64"), sde=SDE, euid=1000)


# --------------------------------------------------------------------------- running

def busybox_root(directory: Path, binary: bytes) -> Path:
    (directory / "bin").mkdir(parents=True)
    (directory / "etc").mkdir()
    (directory / "bin/busybox").write_bytes(binary)
    os.chmod(directory / "bin/busybox", 0o555)
    for applet in ("sh", "cat", "sleep", "rm", "echo", "ls"):
        os.symlink("busybox", directory / "bin" / applet)
    return directory


def executor_for(arch: str) -> Executor:
    need_root()
    if arch != "amd64":
        need_tool(f"qemu-{arch}-static", "qemu-user-static")
    return Executor(choose_method(arch), sde=SDE)


@pytest.mark.parametrize("arch", ["amd64", "aarch64"])
def test_a_script_runs_as_pkg_runs_it_with_a_fixed_environment(tmp_path: Path, busybox: dict, arch: str,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    ex = executor_for(arch)
    root = busybox_root(tmp_path / "root", busybox[arch])
    script = PackageScript("FreeBSD-hello", "14.2", "/usr", "post-install", "",
                           'echo "args=$# $1"\necho "root=$PKG_ROOTDIR name=$PKG_NAME prefix=$PKG_PREFIX"\n'
                           'echo "env=$PATH $HOME $LANG $TZ $SOURCE_DATE_EPOCH $USER"\n'
                           'echo "unset=${SSH_AUTH_SOCK-none}${VIRTUAL_ENV-none}"\nls /dev\necho to-stderr >&2')
    os.environ["SSH_AUTH_SOCK"] = "/leak"
    try:
        with caplog.at_level(logging.INFO, logger="release.emulate"), ex.prepared(root) as placed:
            result = ex.run(root, script.command(), env=script.env(), timeout=60, label=script.label)
    finally:
        del os.environ["SSH_AUTH_SOCK"]
    lines = result.stdout.splitlines()
    assert lines[:4] == ["args=1 FreeBSD-hello-14.2", "root=/ name=FreeBSD-hello prefix=/usr",
                         f"env=/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin /root C UTC {SDE} root",
                         "unset=nonenone"]
    assert lines[4:] == ["null", "zero"] and result.stderr == "to-stderr\n"
    assert "FreeBSD-hello post-install: to-stderr" in caplog.messages
    assert ("/.qemu-aarch64-static" in placed) == (arch == "aarch64")
    assert sorted(p.name for p in root.iterdir()) == ["bin", "etc"]      # emulator and /dev gone again


def test_the_install_script_gets_pkg_s_argument() -> None:
    scripts = {"pre-install": "a", "install": "b", "post-install": "c"}
    pre = install_scripts("FreeBSD-x", "1.0", "/", scripts, "pre")
    post = install_scripts("FreeBSD-x", "1.0", "/", scripts, "post")
    assert [s.command()[2] for s in pre] == ["set -- FreeBSD-x-1.0\na", "set -- FreeBSD-x-1.0 PRE-INSTALL\nb"]
    assert [s.command()[2] for s in post] == ["set -- FreeBSD-x-1.0\nc", "set -- FreeBSD-x-1.0 POST-INSTALL\nb"]


def test_a_failing_or_overlong_command_is_a_one_line_error(tmp_path: Path, busybox: dict) -> None:
    ex = executor_for("aarch64")
    root = busybox_root(tmp_path / "root", busybox["aarch64"])
    with ex.prepared(root):
        with pytest.raises(StepError, match=r"^FreeBSD-x post-install: exit status 3: it broke$"):
            ex.run(root, ["/bin/sh", "-c", "echo it broke >&2; exit 3"], env={}, timeout=60,
                   label="FreeBSD-x post-install")
        with pytest.raises(StepError, match=r"^run step 1: still running after 1 s, stopped"):
            ex.run(root, ["/bin/sh", "-c", "while :; do :; done"], env={}, timeout=1, label="run step 1")
        with pytest.raises(StepError, match=r"^run step 2: /usr/bin/python3 is not in the image$"):
            ex.run(root, ["/usr/bin/python3"], env={}, timeout=60, label="run step 2")


def test_a_freebsd_program_is_refused_on_a_linux_host(tmp_path: Path) -> None:
    ex = executor_for("amd64")
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin/sh").write_bytes(b"\x7fELF\x02\x01\x01\x09" + bytes(56))      # EI_OSABI 9: FreeBSD
    with pytest.raises(StepError, match=r"/bin/sh in the image is a FreeBSD program, which a Linux host cannot run"):
        ex.run(root, ["/bin/sh", "-c", "true"], env={}, timeout=60, label="FreeBSD-runtime post-install")


def test_symlinks_resolve_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    os.symlink("usr/bin", root / "bin")
    os.symlink("/../../../usr/bin/real", root / "usr/bin/sh")
    assert resolve_in_root(root, "/bin/sh") == "/usr/bin/real"
    os.symlink("loop", root / "loop")
    assert resolve_in_root(root, "/loop") is None


# --------------------------------------------------------------------------- effects into the layer

def test_effects_become_layer_content_with_whiteouts_only_for_lower_paths(tmp_path: Path, busybox: dict) -> None:
    ex = executor_for("aarch64")
    lower = layer_blob(tmp_path, "lower", [
        member("bin", "dir", mode=0o755), member("bin/busybox", data=busybox["aarch64"], mode=0o555),
        *[member(f"bin/{a}", "symlink", link="busybox") for a in ("sh", "rm", "mkdir", "chown", "chmod", "ln")],
        member("etc", "dir", mode=0o755), member("etc/master.passwd", data=PASSWD, mode=0o600),
        member("etc/group", data=GROUP), member("etc/passwd", data=V7_PASSWD),
        member("etc/motd", data=b"hello\n"), member("etc/old", data=b"old"),
        member("tmp", "dir", mode=0o1777)])
    with tempfile.TemporaryFile() as spool:
        tree = LayerTree(ParentView(dirs={"/etc": [0o755, "root", "wheel", SDE], "/bin": [0o755, "root", "wheel", SDE]},
                                    files={"/etc/master.passwd": PASSWD, "/etc/group": GROUP}), spool)
        tree.add_stream(Entry("/etc/own", "file", 0o644), "FreeBSD-x", io.BytesIO(b"own"))
        tree.add_stream(Entry("/etc/pkgfile", "file", 0o644), "FreeBSD-x", io.BytesIO(b"v1"))
        emulation = Emulation(ex, tmp_path / "work", [lower], SDE)
        script = ("set -e; echo more >> /etc/motd; echo v2 > /etc/pkgfile; rm /etc/old /etc/own; mkdir -p /var/www\n"
                  "echo page > /var/www/index; chown www:www /var/www/index; chmod 0640 /var/www/index\n"
                  "ln -s ../var/www/index /etc/page; mkdir /tmp/scratch\n")
        changes = emulation.session(tree, [job("script", script)], "FreeBSD-x post-install (emulated)")
        assert changes.deleted == ["/etc/old", "/etc/own"]
        assert tree.removed == {"/etc/old"}                       # the lower path only: a whiteout
        assert "/etc/own" not in tree.items                       # this layer's own: just gone
        assert tree.read("/etc/motd") == b"hello\nmore\n" and tree.read("/etc/pkgfile") == b"v2\n"
        index = tree.items["/var/www/index"]
        assert (index.entry.uname, index.entry.gname, index.entry.mode, index.entry.mtime) == ("www", "www", 0o640, SDE)
        assert index.spool is not None and not index.package       # streamed, not a package's file
        assert not tree.items["/etc/pkgfile"].package
        assert tree.items["/etc/page"].entry.target == "../var/www/index"
        assert tree.items["/tmp/scratch"].entry.kind == "dir"
        assert not any(p.startswith(("/dev", "/.qemu", "/proc")) for p in tree.items)
    assert list((tmp_path / "work").iterdir()) == []


def job(label: str, script: str):
    from release.emulate import Job
    return Job(label, ["/bin/sh", "-c", script], {}, 120)


def path_set(root: Path) -> set[str]:
    return {"/" + p.relative_to(root).as_posix() for p in root.rglob("*")}

"""Images whose programs really run here: busybox-static packages in a signed pkgbase repository.

FreeBSD programs cannot run on a Linux test host, so the emulation tests use
Linux busybox-static binaries from Debian's packages (amd64, and arm64 for
aarch64) as the image's /bin/busybox, with /bin/sh and the applets as
symlinks to it.  Everything else is the pipeline's own: packages written by
release.demo.pkgwriter, a catalogue signed with the demo key by release.demo.repowriter,
a src repository from release.demo.srcrepo (the demo's FreeBSD src files, so
the accounts step and the trust anchors are real).

The family built from it:

- shell: FreeBSD-busybox (busybox, applet links, /etc/motd, /etc/obsolete.conf,
  /etc/keep.conf, /tmp) plus the accounts step;
- scripted (parent shell): FreeBSD-hello, whose post-install script creates
  files, appends to the inherited /etc/motd, deletes the inherited
  /etc/obsolete.conf and its own /usr/share/hello/scratch; and a `run` step.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
import toml

from release.demo.generate import signing_key_pem, src_files
from release.demo.srcrepo import make_src_repo
from release.demo.pkgtar import Member
from release.demo.pkgwriter import write_package
from release.pkgmanifest import MANIFEST_KEY_ORDER
from release.demo.repowriter import write_repository
from tests.conftest import PROJECT, need_tool, unavailable

DEB_ARCH = {"amd64": "amd64", "aarch64": "arm64"}
LEGACY = {"amd64": "x86:64", "aarch64": "aarch64:64"}
TIME = 1732838400
VERSION = "14.2"
RELEASE = "emu"
REPO = "base_release_2"
APPLETS = ("awk", "cat", "chmod", "chown", "cp", "echo", "ln", "ls", "mkdir", "mv", "printf", "rm", "sed",
           "sleep", "touch")
MOTD = b"Welcome to the emulation test image.\n"

# What FreeBSD-hello's post-install script does; every line uses only shell built-ins and busybox
# applets that run in-process, so it works when only the shell itself is emulated.
POST_INSTALL = """\
echo "installed $1 under ${PKG_ROOTDIR} prefix ${PKG_PREFIX} as ${PKG_NAME}" > /etc/hello.conf
echo "PATH=$PATH HOME=$HOME LANG=$LANG TZ=$TZ SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH" > /etc/hello.env
mkdir -p /var/db/hello
printf 'state=ok\\n' > /var/db/hello/state
chmod 0640 /var/db/hello/state
chown daemon:daemon /var/db/hello/state
ln -s hello.conf /etc/hello.link
echo "edited by $1" >> /etc/motd
rm /etc/obsolete.conf
rm /usr/share/hello/scratch
"""
RUN_STEP = ["/bin/sh", "-c", "awk -F: '$3 == 0 { print $1 }' /etc/master.passwd > /etc/superusers"]

# Image paths the scripted flavour's layer must hold: the package's files, the script's and the
# run step's effects (with the parent directories the layer writer adds), and one whiteout.
SCRIPTED_LAYER = {
    "etc", "etc/.wh.obsolete.conf", "etc/hello.conf", "etc/hello.env", "etc/hello.link", "etc/motd",
    "etc/superusers", "usr", "usr/share", "usr/share/hello", "usr/share/hello/README",
    "var", "var/db", "var/db/hello", "var/db/hello/state",
}


# --------------------------------------------------------------------------- busybox-static

def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _download(debs: Path, deb_arch: str) -> Path:
    """busybox-static:<arch> from Debian, adding the architecture to dpkg once if it is missing."""
    def found() -> list[Path]:
        return sorted(debs.glob(f"busybox-static_*_{deb_arch}.deb"))
    if not found():
        argv = ["apt-get", "download", f"busybox-static:{deb_arch}"]
        proc = subprocess.run(argv, cwd=debs, capture_output=True, text=True, timeout=600)
        foreign = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True,
                                 text=True).stdout.split()
        native = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
        if proc.returncode != 0 and deb_arch not in foreign and deb_arch != native and os.geteuid() == 0:
            subprocess.run(["dpkg", "--add-architecture", deb_arch], check=True)
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600)
            proc = subprocess.run(argv, cwd=debs, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0 or not found():
            unavailable(f"busybox-static:{deb_arch} could not be downloaded (dpkg --add-architecture {deb_arch} "
                        f"&& apt-get update && apt-get download busybox-static:{deb_arch}): "
                        f"{proc.stderr.strip()[-200:]}")
    return found()[-1]


def busybox_binary(cache: Path, arch: str) -> bytes:
    """The static busybox of *arch* (TARGET_ARCH), extracted from its Debian package once per run."""
    need_tool("apt-get", "apt")
    need_tool("dpkg-deb", "dpkg")
    out = cache / arch / "bin" / "busybox"
    fd = _locked(cache / ".lock")
    try:
        if not out.is_file():
            debs = cache / "debs"
            debs.mkdir(parents=True, exist_ok=True)
            deb = _download(debs, DEB_ARCH[arch])
            subprocess.run(["dpkg-deb", "-x", str(deb), str(cache / arch)], check=True, capture_output=True)
        return out.read_bytes()
    finally:
        os.close(fd)


@pytest.fixture(scope="session")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """TARGET_ARCH -> busybox-static binary; shared by the xdist workers of one run."""
    cache = tmp_path_factory.getbasetemp().parent / "busybox-static"
    return {arch: busybox_binary(cache, arch) for arch in DEB_ARCH}


# --------------------------------------------------------------------------- packages and repository

def manifest(name: str, arch: str, **extra) -> dict:
    m = {"name": name, "origin": "base", "version": VERSION, "comment": f"{name} for the emulation tests",
         "maintainer": "re@FreeBSD.org", "www": "https://www.FreeBSD.org", "abi": f"FreeBSD:14:{arch}",
         "arch": f"freebsd:14:{LEGACY[arch]}", "prefix": "/", "licenselogic": "single",
         "licenses": ["BSD2CLAUSE"], "desc": f"{name} test package", "categories": ["base"]}
    m.update(extra)
    return m


def shell_members(busybox: bytes) -> list[Member]:
    """/bin/busybox, /bin/sh and applet links, and the /etc files the child flavour edits and deletes."""
    members = [Member("/bin/busybox", "file", 0o555, data=busybox, mtime=TIME),
               Member("/bin/sh", "symlink", 0o755, target="busybox", mtime=TIME),
               Member("/etc/motd", "file", 0o644, data=MOTD, mtime=TIME),
               Member("/etc/obsolete.conf", "file", 0o644, data=b"# gone after FreeBSD-hello\n", mtime=TIME),
               Member("/etc/keep.conf", "file", 0o644, data=b"# stays\n", mtime=TIME),
               Member("/bin", "dir", 0o755, mtime=TIME), Member("/etc", "dir", 0o755, mtime=TIME),
               Member("/tmp", "dir", 0o1777, mtime=TIME)]
    members += [Member(f"/bin/{a}", "symlink", 0o755, target="busybox", mtime=TIME) for a in APPLETS]
    return members


def hello_members() -> list[Member]:
    return [Member("/usr/share/hello/README", "file", 0o444, data=b"hello\n", mtime=TIME),
            Member("/usr/share/hello/scratch", "file", 0o644, data=b"deleted by the script\n", mtime=TIME),
            Member("/usr/share/hello", "dir", 0o755, mtime=TIME)]


def write_package_repo(directory: Path, arch: str, packages: list[tuple[dict, list[Member]]], *,
                       hostile_paths: dict[str, str] | None = None) -> None:
    """Packages and a catalogue signed with the demo key, as the demo repositories are.

    *hostile_paths* gives packages a catalogue path the writer's own checks
    would refuse (they are bypassed for it: the test plays a hostile mirror).
    """
    directory.mkdir(parents=True, exist_ok=True)
    entries = []
    for m, members in packages:
        filename = f"{m['name']}-{m['version']}.pkg"
        info = write_package(directory / filename, m, members, generation="new", level=3)
        path = (hostile_paths or {}).get(m["name"], filename)
        row = dict(info.compact, sum=info.pkg2, path=path, repopath=path, pkgsize=info.size)
        entries.append({key: row[key] for key in MANIFEST_KEY_ORDER if key in row})
    checks = contextlib.nullcontext() if not hostile_paths else \
        mock.patch("release.demo.repowriter.entry_from_manifest", lambda row, *_: SimpleNamespace(name=row["name"]))
    with checks:
        write_repository(directory, entries, signing_key=signing_key_pem(), signature_type="fingerprints",
                         packing_format="tzst", formats=("data", "packagesite"), legacy_copies=True, mtime=TIME)


@dataclass(frozen=True)
class EmulationInputs:
    root: Path

    def pkgbase(self, arch: str) -> Path:
        return self.root / "pkgbase" / f"FreeBSD:14:{arch}" / REPO


def write_inputs(root: Path, busybox: dict[str, bytes], *, post_install: str = POST_INSTALL) -> EmulationInputs:
    root.mkdir(parents=True, exist_ok=True)
    make_src_repo(root / "src.git", {"releng/14.2": src_files()}, time=TIME)
    inputs = EmulationInputs(root)
    for arch in DEB_ARCH:
        write_package_repo(inputs.pkgbase(arch), arch, [
            (manifest("FreeBSD-busybox", arch), shell_members(busybox[arch])),
            (manifest("FreeBSD-hello", arch, scripts={"post-install": post_install},
                      deps={"FreeBSD-busybox": {"origin": "base", "version": VERSION}}), hello_members()),
        ])
    return inputs


@pytest.fixture(scope="session")
def emulation_inputs(busybox: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory) -> EmulationInputs:
    return write_inputs(tmp_path_factory.mktemp("emulation-inputs"), busybox)


def write_config(path: Path, inputs: EmulationInputs, *, scripts: str = "emulate", run: bool = True,
                 arches: tuple[str, ...] = ("amd64", "aarch64")) -> Path:
    """The project's config.toml with the shell/scripted family and one release served from *inputs*."""
    base = toml.loads((PROJECT / "config.toml").read_text())
    base["flavours"] = {
        "shell": {"description": "busybox shell and the accounts", "packages": ["FreeBSD-busybox"],
                  "cmd": ["/bin/sh"], "steps": [{"kind": "accounts"}]},
        "scripted": {"description": "package scripts and a run step, really run", "parent": "shell",
                     "packages": ["FreeBSD-hello"], "cmd": ["/bin/sh"], "scripts": scripts,
                     "steps": [{"kind": "run", "command": RUN_STEP, "timeout": 120}] if run else []},
    }
    base["releases"] = {RELEASE: {
        "version": "14.2-EMU", "branch": "releng/14.2", "repo": REPO, "abi_major": 14, "arches": list(arches),
        "flavours": ["shell", "scripted"], "mirror": (inputs.root / "pkgbase").as_uri() + "/${ABI}/${REPO}",
        "src_url": (inputs.root / "src.git").as_uri(), "source": "https://git.freebsd.org/src.git"}}
    path.write_text(toml.dumps(base))
    return path


def need_root() -> None:
    """Running programs inside an image root needs root (the sandbox maps the image's ids) and bubblewrap."""
    if os.geteuid() != 0:
        unavailable("running programs inside an image root needs root (the sandbox maps the image's ids)")
    need_tool("bwrap", "bubblewrap")

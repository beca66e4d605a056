"""The demo release as `doit build:demo` makes it, and independent readers of the result.

The end-to-end tests build the embedded demo release once per test module
(`demo_build`, module scope) and then look at what came out the way a release
engineer checks a release by hand: tar, umoci, skopeo, podman, libdb1, openssl
and sqlite.  Nothing here reuses the pipeline's own readers (release.oci,
release.tree, release.builtins ...): a misunderstanding shared by a writer and
its reader would otherwise go unnoticed.

The expected values (version, file names, platforms, the family's parents) are
spelled out here rather than derived from config.toml, so a change to the
released names shows up as a failing test, not as silently moved goalposts.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard

from tests.libdb1_support import pwd_record, u32be  # noqa: F401 (re-exported)
from tests.conftest import PROJECT, need_tool, unavailable
from tests.pipeline_support import doit

CONFIG = PROJECT / "config.toml"
DEMO_DATA = PROJECT / "release" / "demo" / "data"
RELEASE = "demo"
VERSION = "14.2-DEMO"
FLAVOURS = ("static", "dynamic", "minimal")
PARENT = {"static": None, "dynamic": "static", "minimal": "dynamic"}
# TARGET_ARCH -> (architecture in file names, OCI architecture, OCI variant)
ARCHES = {"amd64": ("amd64", "amd64", None), "aarch64": ("arm64-aarch64", "arm64", "v8")}
ELF_MACHINE = {"amd64": 62, "aarch64": 183}

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
# The demo's src is 14.x's: its make-oci-image.sh names the images freebsd${major}-<flavour>.
IMAGE = {flavour: f"freebsd14-{flavour}" for flavour in FLAVOURS}


def archive_name(arch: str, flavour: str) -> str:
    return f"FreeBSD-{VERSION}-{ARCHES[arch][0]}-container-image-{flavour}.txz"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- the build

@dataclass(frozen=True)
class DemoBuild:
    """Paths and records of one finished `doit build:demo` work directory."""

    work: Path

    @property
    def out(self) -> Path:
        return self.work / "out" / RELEASE

    def archive(self, arch: str, flavour: str) -> Path:
        return self.out / arch / archive_name(arch, flavour)

    def archives(self) -> Iterator[tuple[str, str, Path]]:
        for arch in ARCHES:
            for flavour in FLAVOURS:
                yield arch, flavour, self.archive(arch, flavour)

    def layout(self, flavour: str) -> Path:
        return self.out / "oci" / flavour

    def record(self, arch: str, flavour: str, name: str) -> dict:
        """build/demo/<arch>/<flavour>/<name>.json (layer, image, view, index)."""
        return json.loads((self.work / "build" / RELEASE / arch / flavour / f"{name}.json").read_text())

    def src(self) -> dict:
        return json.loads((self.work / "state" / RELEASE / "src.json").read_text())

    def source_date_epoch(self) -> int:
        return json.loads((self.work / "state" / RELEASE / "src-inputs.json").read_text())["source_date_epoch"]

    def lock(self, arch: str) -> dict:
        return json.loads((self.work / "locks" / RELEASE / f"{arch}.json").read_text())


def build_demo(factory: pytest.TempPathFactory, label: str, *options: str) -> DemoBuild:
    """A clean `doit [options] build:demo` with the project's own config.toml."""
    work = factory.mktemp(label) / "work"
    doit(CONFIG, work, *options, "build:demo")
    return DemoBuild(work)


@pytest.fixture(scope="module")
def demo_build(tmp_path_factory: pytest.TempPathFactory) -> DemoBuild:
    return build_demo(tmp_path_factory, "demo-build")


# --------------------------------------------------------------------------- archives and images

def archive_members(path: Path) -> dict[str, bytes]:
    """Every regular file of a .txz OCI archive, by member name (the demo's are small)."""
    out: dict[str, bytes] = {}
    with tarfile.open(path, "r:xz") as tar:
        for member in tar:
            assert member.isfile() or member.isdir(), f"{path.name}: {member.name}: unexpected member type"
            if member.isfile():
                out[member.name] = tar.extractfile(member).read()
    return out


@dataclass(frozen=True)
class ArchiveImage:
    """The one image a single-arch archive holds, read through its own index.json."""

    ref: str
    platform: dict
    manifest_digest: str
    manifest: dict
    config: dict
    members: dict[str, bytes]

    def blob(self, digest: str) -> bytes:
        return self.members[f"blobs/sha256/{digest.removeprefix('sha256:')}"]

    @property
    def layer_digests(self) -> list[str]:
        return [layer["digest"] for layer in self.manifest["layers"]]


def archive_image(path: Path) -> ArchiveImage:
    members = archive_members(path)
    index = json.loads(members["index.json"])
    assert len(index["manifests"]) == 1, f"{path.name}: expected one image in index.json"
    desc = index["manifests"][0]
    digest = desc["digest"]
    manifest_bytes = members[f"blobs/sha256/{digest.removeprefix('sha256:')}"]
    assert sha256_digest(manifest_bytes) == digest
    manifest = json.loads(manifest_bytes)
    config = json.loads(members[f"blobs/sha256/{manifest['config']['digest'].removeprefix('sha256:')}"])
    return ArchiveImage(desc.get("annotations", {}).get(REF_NAME, ""), desc.get("platform", {}), digest,
                        manifest, config, members)


def extract_archive(path: Path, dest: Path) -> Path:
    """The OCI image layout inside a .txz, as files in *dest*."""
    dest.mkdir(parents=True)
    with tarfile.open(path, "r:xz") as tar:
        tar.extractall(dest, filter="data")
    return dest


# --------------------------------------------------------------------------- layer tars

@dataclass(frozen=True)
class LayerTar:
    """A layer blob opened as the tar it carries."""

    members: list[tarfile.TarInfo]
    global_pax: dict[str, str]
    diff_id: str                       # sha256 of the uncompressed tar
    data: dict[str, bytes]             # regular file contents by member name


def read_layer(blob: bytes) -> LayerTar:
    tar_bytes = _decompress(blob)
    members, data = [], {}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        for member in tar:
            members.append(member)
            if member.isreg():
                data[member.name] = tar.extractfile(member).read()
        global_pax = dict(tar.pax_headers)
    return LayerTar(members, global_pax, sha256_digest(tar_bytes), data)


def _decompress(blob: bytes) -> bytes:
    if blob[:2] == b"\x1f\x8b":
        return gzip.decompress(blob)
    if blob[:4] == b"\x28\xb5\x2f\xfd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(blob)
    return blob


def layer_accounts(layers: list[LayerTar]) -> tuple[dict[str, int], dict[str, int]]:
    """Name -> id from the topmost etc/master.passwd and etc/group of a layer stack."""
    master = next(layer.data["etc/master.passwd"] for layer in reversed(layers)
                  if "etc/master.passwd" in layer.data)
    group = next(layer.data["etc/group"] for layer in reversed(layers) if "etc/group" in layer.data)
    return parse_accounts(master, group)


def parse_accounts(master: bytes, group: bytes) -> tuple[dict[str, int], dict[str, int]]:
    """First name wins, as getpwnam(3) finds it."""
    users: dict[str, int] = {}
    groups: dict[str, int] = {}
    for table, text in ((users, master), (groups, group)):      # the id is the third field of both
        for line in text.decode().splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = line.split(":")
            table.setdefault(fields[0], int(fields[2]))
    return users, groups


# --------------------------------------------------------------------------- unpacked root file systems

def umoci_unpack(archive: Path, dest: Path) -> Path:
    """The image of a single-arch archive as a root file system (umoci applies layers and whiteouts).

    `umoci unpack` refuses os=freebsd configs; `raw unpack` only lays down the
    layers, which is all these tests need.
    """
    umoci = need_tool("umoci", "umoci")
    layout = extract_archive(archive, dest / "layout")
    ref = json.loads((layout / "index.json").read_text())["manifests"][0]["annotations"][REF_NAME]
    rootfs = dest / "rootfs"
    argv = [umoci, "raw", "unpack", "--image", f"{layout}:{ref}", str(rootfs)]
    if os.geteuid() != 0:
        argv.insert(3, "--rootless")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"umoci raw unpack {archive.name}: {proc.stderr.strip()}"
    return rootfs


@pytest.fixture(scope="module")
def rootfs(demo_build: DemoBuild, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """(arch, flavour) -> the unpacked image of that archive."""
    base = tmp_path_factory.mktemp("rootfs")
    return {(arch, flavour): umoci_unpack(path, base / f"{arch}-{flavour}")
            for arch, flavour, path in demo_build.archives()}


def need_root_owners() -> None:
    """Owners in an unpacked tree are only the image's own when umoci ran as root."""
    if os.geteuid() != 0:
        unavailable("umoci applies image owners only when run as root")


def tree_listing(root: Path) -> dict[str, os.stat_result]:
    """Image path ("/etc/group") -> lstat of every entry under *root*."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            out["/" + path.relative_to(root).as_posix()] = path.lstat()
    return out


def non_dirs(listing: dict[str, os.stat_result]) -> set[str]:
    return {p for p, st in listing.items() if not stat.S_ISDIR(st.st_mode)}


def image_accounts(root: Path) -> tuple[dict[str, int], dict[str, int]]:
    return parse_accounts((root / "etc/master.passwd").read_bytes(), (root / "etc/group").read_bytes())


# --------------------------------------------------------------------------- mtree specifications

def mtree_dirs(spec: str, prefix: str) -> dict[str, tuple[int, str, str] | None]:
    """Image path -> (mode, uname, gname) of every directory of a BSD.*.dist specification.

    Only what FreeBSD's .dist files use: `/set` defaults, one name per line with
    keyword overrides, `..` to go up; the spec's "." is *prefix*.  `nochange`
    directories map to None (they must exist; mtree -U leaves their attributes).
    """
    defaults: dict[str, str] = {}
    stack: list[str] = []
    out: dict[str, tuple[int, str, str] | None] = {}
    for raw in spec.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        if words[0] == "/set":
            defaults.update(w.split("=", 1) for w in words[1:])
            continue
        if words[0] == "..":
            stack.pop()
            continue
        keys = dict(defaults, **dict(w.partition("=")[::2] for w in words[1:]))
        assert keys.get("type", "dir") == "dir", f"mtree: {line!r} is not a directory"
        stack.append(words[0])
        rel = "/".join(stack[1:])
        path = "/" + "/".join(p for p in (prefix.strip("/"), rel) if p)
        # nochange: the directory must exist, its attributes are left alone
        out[path] = None if "nochange" in keys else (int(keys["mode"], 8), keys["uname"], keys["gname"])
    return out


def static_skeleton() -> dict[str, tuple[int, str, str] | None]:
    """The directories the static flavour's mtree step lays down (config.toml's specs)."""
    specs = {"BSD.root.dist": "/", "BSD.var.dist": "/var", "BSD.usr.dist": "/usr",
             "BSD.include.dist": "/usr/include", "BSD.debug.dist": "/usr/lib"}
    out: dict[str, tuple[int, str, str] | None] = {}
    for name, prefix in specs.items():
        out.update(mtree_dirs((DEMO_DATA / "src/etc/mtree" / name).read_text(), prefix))
    out.pop("/", None)
    return out


# --------------------------------------------------------------------------- pwd.db records

def passwd_record(record: bytes) -> dict:
    """A version-4 pwd.db record with its strings decoded."""
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in pwd_record(record).items()}


def master_passwd_entries(text: bytes) -> list[list[str]]:
    """The ten fields of every account line, in file order."""
    return [line.split(":") for line in text.decode().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


# --------------------------------------------------------------------------- podman

class PrivatePodman:
    """podman on a throw-away storage root, so the host's images are never touched.

    podman refuses a runroot path longer than 50 characters, so that one lives
    in a short directory of the system's temporary area, not under *base*.
    """

    def __init__(self, base: Path) -> None:
        self.podman = need_tool("podman", "podman")
        self.base = base
        self.runroot = Path(tempfile.mkdtemp(prefix="podman-run-"))
        (base / "root").mkdir(parents=True)
        (base / "tmp").mkdir()

    def _argv(self, *args: str) -> list[str]:
        return [self.podman, "--root", str(self.base / "root"), "--runroot", str(self.runroot),
                "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none", *args]

    def __call__(self, *args: str) -> subprocess.CompletedProcess:
        proc = self.run(*args)
        assert proc.returncode == 0, f"podman {' '.join(args)}: {proc.stderr.strip()[-2000:]}"
        return proc

    def run(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        """podman *args*, whatever it answers (*env* adds to the environment, e.g. a private HOME)."""
        return subprocess.run(self._argv(*args), capture_output=True, text=True, timeout=300,
                              env={**os.environ, "TMPDIR": str(self.base / "tmp"), **(env or {})})

    def inspect(self, ref: str) -> dict:
        return json.loads(self("image", "inspect", ref).stdout)[0]

    def close(self) -> None:
        subprocess.run(self._argv("rmi", "--all", "--force"), capture_output=True, timeout=300)
        shutil.rmtree(self.base, ignore_errors=True)
        shutil.rmtree(self.runroot, ignore_errors=True)


# --------------------------------------------------------------------------- snapshots

def file_bytes(root: Path) -> dict[str, bytes]:
    """Relative path -> content of every regular file under *root* (symlinks as their target)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = b"-> " + os.readlink(path).encode()
        elif path.is_file():
            out[rel] = path.read_bytes()
    return out


def stamps(root: Path) -> dict[str, tuple[int, int, int]]:
    """Relative path -> (inode, size, mtime_ns): what changes when a file is rewritten."""
    return {p.relative_to(root).as_posix(): (p.lstat().st_ino, p.lstat().st_size, p.lstat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}

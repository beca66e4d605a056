"""`doit build:demo` end to end: the images' file trees, unpacked by umoci.

Each released .txz is unpacked with `umoci raw unpack` (which applies the
layers and their whiteouts the way a container runtime does), and the trees
are compared with what the static recipe, the demo packages and their
post-install scripts must produce.  The databases the pipeline writes without
FreeBSD's tools are read back with independent readers (test_build_e2e_dbs.py).
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.build_support import (ARCHES, DEMO_DATA, ELF_MACHINE, PARENT, image_accounts, need_root_owners,
                                 non_dirs, static_skeleton, tree_listing)

ACCOUNT_FILES = {"/etc/master.passwd": 0o600, "/etc/passwd": 0o644, "/etc/pwd.db": 0o644,
                 "/etc/spwd.db": 0o600, "/etc/group": 0o644}
STATIC_FILES = {*ACCOUNT_FILES, "/etc/termcap.small", "/usr/share/misc/termcap",
                "/usr/local/etc/pkg/repos/base.conf"}
# directories the static recipe adds besides the mtree skeleton (`mkdir -p` for its files)
STATIC_EXTRA_DIRS = {"/etc/ssl/certs", "/etc/ssl/untrusted", "/usr/local/etc", "/usr/local/etc/pkg",
                     "/usr/local/etc/pkg/repos"}
BASE_CONF = """FreeBSD-base: {
  url: "https://pkg.FreeBSD.org/${ABI}/base_release_2",
  mirror_type: "srv",
  signature_type: "fingerprints",
  fingerprints: "/usr/share/keys/pkg",
  enabled: yes
}
"""
DYNAMIC_FILES = {"/lib/libc.so.7": 0o444, "/lib/libthr.so.3": 0o444, "/lib/libm.so.5": 0o444,
                 "/lib/libgcc_s.so.1": 0o444, "/libexec/ld-elf.so.1": 0o555, "/lib/libcrypto.so.30": 0o444,
                 "/usr/lib/libssl.so.30": 0o444}
DYNAMIC_SYMLINKS = {"/usr/lib/libthr.so": "../../lib/libthr.so.3",
                    "/usr/lib/libcrypto.so": "../../lib/libcrypto.so.30"}
# FreeBSD-runtime's LINKS= (one inode each)
HARDLINKS = {"/bin/test": ["/bin/["], "/bin/tcsh": ["/bin/csh"], "/sbin/md5": ["/sbin/sha256", "/sbin/sha512"]}
ZONEINFO = DEMO_DATA / "files" / "zoneinfo"

arches = pytest.mark.parametrize("arch", list(ARCHES))


def mode(root: Path, path: str) -> int:
    return stat.S_IMODE((root / path.lstrip("/")).lstat().st_mode)


def zoneinfo_files() -> dict[str, bytes]:
    """The tz files of FreeBSD-zoneinfo, with UTC (a hardlink of Etc/UTC in the package)."""
    files = {"/usr/share/zoneinfo/" + p.relative_to(ZONEINFO).as_posix(): p.read_bytes()
             for p in sorted(ZONEINFO.rglob("*")) if p.is_file()}
    files["/usr/share/zoneinfo/UTC"] = files["/usr/share/zoneinfo/Etc/UTC"]
    return files


@arches
def test_static_has_the_mtree_skeleton_with_its_modes(rootfs, arch):
    root = rootfs[arch, "static"]
    listing = tree_listing(root)
    skeleton = static_skeleton()
    missing = sorted(p for p in skeleton if p not in listing or not stat.S_ISDIR(listing[p].st_mode))
    assert not missing, f"mtree directories missing: {missing[:10]}"
    wrong = {p: (oct(stat.S_IMODE(listing[p].st_mode)), oct(want[0])) for p, want in skeleton.items()
             if want is not None and stat.S_IMODE(listing[p].st_mode) != want[0]}
    assert not wrong, f"directory modes differ from the .dist specs: {dict(list(wrong.items())[:10])}"
    dirs = {p for p, st in listing.items() if stat.S_ISDIR(st.st_mode)}
    assert dirs - set(skeleton) == STATIC_EXTRA_DIRS
    assert mode(root, "/tmp") == 0o1777 == mode(root, "/var/tmp")
    assert mode(root, "/var/empty") == 0o555
    assert mode(root, "/root") == 0o750


@arches
def test_static_skeleton_owners_are_the_images_own_accounts(rootfs, arch):
    need_root_owners()
    root = rootfs[arch, "static"]
    users, groups = image_accounts(root)
    listing = tree_listing(root)
    wrong = {p: (listing[p].st_uid, listing[p].st_gid, want[1], want[2])
             for p, want in static_skeleton().items()
             if want is not None and (listing[p].st_uid, listing[p].st_gid) != (users[want[1]], groups[want[2]])}
    assert not wrong, f"owners differ from the .dist specs: {dict(list(wrong.items())[:10])}"
    assert (listing["/var/db/ntp"].st_uid, listing["/var/db/ntp"].st_gid) == (users["ntpd"], groups["ntpd"]) \
        == (123, 123)
    others = {p: (st.st_uid, st.st_gid) for p, st in listing.items()
              if not stat.S_ISDIR(st.st_mode) and (st.st_uid, st.st_gid) != (0, 0)}
    assert not others, f"files not owned by root:wheel: {others}"


@arches
def test_static_files_are_exactly_the_recipes(rootfs, arch):
    root = rootfs[arch, "static"]
    listing = tree_listing(root)
    certs = {p for p in non_dirs(listing) if p.startswith(("/etc/ssl/certs/", "/etc/ssl/untrusted/"))}
    assert certs, "no /etc/ssl/certs hash files"
    assert non_dirs(listing) - certs == STATIC_FILES | set(zoneinfo_files())
    for path, want in ACCOUNT_FILES.items():
        assert mode(root, path) == want, path
    assert (root / "etc/master.passwd").read_bytes() == (DEMO_DATA / "src/etc/master.passwd").read_bytes()
    assert (root / "etc/group").read_bytes() == (DEMO_DATA / "src/etc/group").read_bytes()
    # 14.x pwd_mkdb -p copies comment lines into /etc/passwd (15.x would drop them)
    v7 = [line if not line.strip() or line.lstrip().startswith("#") else
          ":".join([f[0], "*", f[2], f[3], f[7], f[8], f[9]])
          for line in (root / "etc/master.passwd").read_text().splitlines() for f in [line.split(":")]]
    assert (root / "etc/passwd").read_text().splitlines() == v7
    assert (root / "etc/passwd").read_text().startswith("#")
    termcap = (DEMO_DATA / "src/etc/termcap.small").read_bytes()
    for path in ("/etc/termcap.small", "/usr/share/misc/termcap"):
        assert (root / path.lstrip("/")).read_bytes() == termcap, path
        assert mode(root, path) == 0o644, path
    assert (root / "usr/local/etc/pkg/repos/base.conf").read_text() == BASE_CONF
    assert mode(root, "/usr/local/etc/pkg/repos/base.conf") == 0o644


@arches
def test_static_zoneinfo_is_the_packages_with_its_hardlink(rootfs, arch):
    root = rootfs[arch, "static"]
    for path, data in zoneinfo_files().items():
        assert (root / path.lstrip("/")).read_bytes() == data, path
        assert data[:4] == b"TZif", path
    utc, etc_utc = (root / "usr/share/zoneinfo/UTC").lstat(), (root / "usr/share/zoneinfo/Etc/UTC").lstat()
    assert stat.S_ISREG(utc.st_mode) and utc.st_ino == etc_utc.st_ino and utc.st_nlink == 2


@arches
def test_dynamic_adds_the_c_runtime_and_openssl_over_an_unchanged_static(rootfs, arch):
    static, dynamic = rootfs[arch, "static"], rootfs[arch, "dynamic"]
    below, above = tree_listing(static), tree_listing(dynamic)
    assert set(above) - set(below) == set(DYNAMIC_FILES) | set(DYNAMIC_SYMLINKS)
    changed = [p for p, st in below.items()
               if (st.st_mode, st.st_uid, st.st_gid, st.st_size) !=
               (above[p].st_mode, above[p].st_uid, above[p].st_gid, above[p].st_size)]
    assert not changed, f"dynamic changed static's {changed[:10]}"
    for path, want in DYNAMIC_FILES.items():
        data = (dynamic / path.lstrip("/")).read_bytes()
        assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, path     # ELFCLASS64, LSB
        assert data[7] == 9, f"{path}: EI_OSABI {data[7]}, not FreeBSD"
        assert int.from_bytes(data[18:20], "little") == ELF_MACHINE[arch], path
        assert mode(dynamic, path) == want, path
    for path, target in DYNAMIC_SYMLINKS.items():
        assert os.readlink(dynamic / path.lstrip("/")) == target
        assert (dynamic / path.lstrip("/")).resolve().is_file(), f"{path} dangles"


@arches
def test_minimal_keeps_the_static_recipe_and_applies_the_runtime_scripts(rootfs, arch):
    root = rootfs[arch, "minimal"]
    # FreeBSD's minimal recipe (release/tools/oci-image-minimal.conf) removes nothing of static's
    assert (root / "usr/share/misc/termcap").is_file() and (root / "etc/termcap.small").is_file()
    assert mode(root, "/tmp") == 0o1777                  # runtime ships it 0755; its script chmods
    assert mode(root, "/var/empty") == 0o555
    assert mode(root, "/usr/bin/su") == 0o4555
    assert mode(root, "/var/db/services.db") == 0o644
    for source, links in HARDLINKS.items():
        st = (root / source.lstrip("/")).lstat()
        assert stat.S_ISREG(st.st_mode) and st.st_nlink == 1 + len(links), source
        assert all((root / link.lstrip("/")).lstat().st_ino == st.st_ino for link in links), source
    for path in ("bin/sh", "usr/sbin/pkg", "etc/rc", "etc/services", "var/db/pkg/local.sqlite"):
        assert (root / path).is_file(), path
    for suffix in ("-journal", "-wal", "-shm"):
        assert not os.path.lexists(root / f"var/db/pkg/local.sqlite{suffix}"), suffix
    # 14.x certctl.sh's rehash replaces the static recipe's hash files (test_build_e2e_dbs)
    assert os.listdir(rootfs[arch, "dynamic"] / "etc/ssl/certs") and os.listdir(root / "etc/ssl/certs") == []
    for path in ACCOUNT_FILES:
        assert mode(root, path) == ACCOUNT_FILES[path], path


@arches
def test_minimal_owners_come_from_the_images_accounts(rootfs, arch):
    need_root_owners()
    root = rootfs[arch, "minimal"]
    users, groups = image_accounts(root)
    output = (root / "var/spool/output").lstat()
    assert (output.st_uid, output.st_gid) == (users["daemon"], groups["daemon"]) == (1, 1)
    su = (root / "usr/bin/su").lstat()
    assert (su.st_uid, su.st_gid) == (users["root"], groups["wheel"]) == (0, 0)
    ids_u, ids_g = set(users.values()), set(groups.values())
    strangers = {p: (st.st_uid, st.st_gid) for p, st in tree_listing(root).items()
                 if st.st_uid not in ids_u or st.st_gid not in ids_g}
    assert not strangers, f"owners unknown to the image's master.passwd/group: {strangers}"


@pytest.mark.parametrize("flavour", ["dynamic", "minimal"])
def test_every_flavour_keeps_its_parents_directories(rootfs, flavour):
    for arch in ARCHES:
        parent = tree_listing(rootfs[arch, PARENT[flavour]])
        child = tree_listing(rootfs[arch, flavour])
        gone = [p for p, st in parent.items() if stat.S_ISDIR(st.st_mode) and p not in child]
        assert not gone, f"{arch} {flavour} lost {gone[:10]}"

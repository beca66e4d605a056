"""The embedded demo release: generated twice, read back with the pipeline's own readers.

Everything is checked through the real code paths a build uses: the src
repository through SrcMirror over file://, catalogues through open_catalogue
with the trust store read from that src, packages through pkgfile's verifying
reader, scripts through the built-in step recogniser, closures through the solver.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import struct
import zlib
from pathlib import Path

import pytest

from bench import genrepo
from release.builtins.scripts import recognise
from release.catalogue import VerifiedCatalogue, open_catalogue, parse_meta
from release.demo import content
from release.demo.inputs import demo_flavours
from release.demo.generate import (DEFAULT_BRANCHES, KEY_NAME, STAMP, DemoInfo, bump_package, fingerprint,
                                   generate_demo, pubkey_pem, signing_key_pem)
from release.errors import InputError
from release.pkgfile import PkgEntry, open_package
from release.demo.repowriter import public_key_pem
from release.solver import Universe, solve
from release.srcgit import SrcMirror
from release.sums import Summer

REPO = "base_release_2"
ARCHES = ("amd64", "aarch64")


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def tree_stats(root: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> DemoInfo:
    return generate_demo(tmp_path_factory.mktemp("demo-a"))


@pytest.fixture(scope="module")
def trust(demo: DemoInfo, tmp_path_factory) -> Path:
    """share/keys/pkg of the generated src, fetched like the pipeline fetches src."""
    mirror = SrcMirror(tmp_path_factory.mktemp("mirror") / "src.git", f"file://{demo.src_git}")
    heads = mirror.fetch(list(DEFAULT_BRANCHES))
    store = tmp_path_factory.mktemp("trust")
    (store / "trusted").mkdir()
    per_branch = {b: mirror.read_tree(heads[b], "share/keys/pkg/trusted") for b in DEFAULT_BRANCHES}
    assert len({tuple(sorted((n, f.data) for n, f in t.items())) for t in per_branch.values()}) == 1
    assert sorted(per_branch["main"]) == [KEY_NAME, "pkg.freebsd.org.2013102301"]
    for name, file in per_branch["main"].items():
        (store / "trusted" / name).write_bytes(file.data)
    pkgbase15 = mirror.read_tree(heads["main"], "share/keys/pkgbase-15/trusted")
    assert pkgbase15[KEY_NAME].data == (store / "trusted" / KEY_NAME).read_bytes()
    return store


def catalogue(repo: Path, trust: Path, archive: str = "packagesite.pkg") -> VerifiedCatalogue:
    return open_catalogue(repo / archive, f"{repo.name}/{archive}", signature_type="fingerprints",
                          fingerprints=trust, meta=parse_meta((repo / "meta.conf").read_bytes(), "meta.conf"))


def read_package(path: Path) -> tuple[dict, dict[str, PkgEntry], dict[str, bytes], object]:
    """(manifest, entries, file contents, reader) after streaming every member (sums verified)."""
    entries, data = {}, {}
    with open_package(path, path.name) as reader:
        for entry, stream in reader.entries():
            entries[entry.path] = entry
            if stream is not None:
                data[entry.path] = stream.read()
    return reader.manifest, entries, data, reader


def package_file(demo: DemoInfo, arch: str, name: str) -> Path:
    repo = demo.repositories[(arch, REPO)]
    return next(repo.glob(f"{name}-[0-9]*.pkg"))


# --- determinism and idempotency -----------------------------------------------------

def test_two_runs_write_identical_bytes(demo: DemoInfo, tmp_path: Path) -> None:
    other = generate_demo(tmp_path / "b")
    first, second = tree_bytes(demo.root), tree_bytes(other.root)
    assert sorted(first) == sorted(second)
    assert [p for p in first if first[p] != second[p]] == []
    assert any(p.startswith("src.git/objects/") for p in first)
    assert other.fingerprint == demo.fingerprint == hashlib.sha256(demo.pubkey_pem).hexdigest()
    assert pubkey_pem() == public_key_pem(signing_key_pem()) and fingerprint() == demo.fingerprint


def test_second_run_rewrites_nothing(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    info = generate_demo(root, arches=("aarch64",))
    assert info.written == ("src.git", f"pkgbase/FreeBSD:14:aarch64/{REPO}")
    before = tree_stats(root)
    again = generate_demo(root, arches=("aarch64",))
    assert again.written == ()
    assert tree_stats(root) == before
    # a changed parameter rebuilds only what depends on it
    assert generate_demo(root, arches=("aarch64",), repos={REPO: "14.2p1"}).written == \
        (f"pkgbase/FreeBSD:14:aarch64/{REPO}",)
    assert (root / "pkgbase/FreeBSD:14:aarch64" / REPO / "FreeBSD-runtime-14.2p1.pkg").is_file()


# --- repositories and packages -------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHES)
def test_catalogues_verify_against_src_trust_store(demo: DemoInfo, trust: Path, arch: str) -> None:
    repo = demo.repositories[(arch, REPO)]
    assert repo == demo.root / "pkgbase" / f"FreeBSD:14:{arch}" / REPO
    meta = parse_meta((repo / "meta.conf").read_bytes(), "meta.conf")
    assert (meta.version, meta.packing_format) == (2, "tzst")
    site = catalogue(repo, trust)
    assert site.fingerprint == demo.fingerprint
    assert sorted(site.entries) == sorted(content.PACKAGE_NAMES)
    if arch == "amd64":
        data = catalogue(repo, trust, "data.pkg")
        assert data.payload_kind == "data" and dict(data.entries) == dict(site.entries)
    else:
        assert not (repo / "data.pkg").exists()
    for entry in site.entries.values():
        assert (entry.abi, entry.arch, entry.version, entry.origin) == \
            (f"FreeBSD:14:{arch}", content.legacy_arch(14, arch), "14.2", "base")
        assert entry.path == entry.raw["repopath"] == f"{entry.name}-14.2.pkg"
        assert entry.raw["maintainer"] == "re@FreeBSD.org" and entry.licenses == ("BSD2CLAUSE",)
        assert entry.sum.startswith("2$") if arch == "amd64" else len(entry.sum) == 64


@pytest.mark.parametrize("arch", ARCHES)
def test_every_listed_package_exists_matches_and_streams(demo: DemoInfo, trust: Path, arch: str) -> None:
    repo = demo.repositories[(arch, REPO)]
    for entry in catalogue(repo, trust).entries.values():
        path = repo / entry.path
        summer = Summer()
        summer.update(path.read_bytes())
        assert summer.matches(entry.sum), entry.name
        assert summer.size == entry.pkgsize
        manifest, entries, data, reader = read_package(path)
        assert reader.generation == ("new" if arch == "amd64" else "old")
        assert manifest["flatsize"] == entry.flatsize
        assert all(e.mtime == content.BUILD_TIME for e in entries.values())
    machine = {"amd64": 62, "aarch64": 183}[arch]
    _, _, data, _ = read_package(package_file(demo, arch, "FreeBSD-clibs"))
    libc = data["/lib/libc.so.7"]
    assert libc[:4] == b"\x7fELF" and libc[4:8] == b"\x02\x01\x01\x09"     # 64-bit, LSB, v1, FreeBSD
    assert struct.unpack_from("<HH", libc, 16) == (3, machine)
    assert 1024 <= len(libc) <= 16 * 1024


def test_runtime_package(demo: DemoInfo) -> None:
    manifest, entries, data, reader = read_package(package_file(demo, "amd64", "FreeBSD-runtime"))
    # pkg stores scripts with surrounding white space trimmed
    assert reader.scripts == {"post-install": (
        "pwd_mkdb -i -p -d  ${PKG_ROOTDIR}/etc ${PKG_ROOTDIR}/etc/master.passwd\n"
        "services_mkdb -l -q -o ${PKG_ROOTDIR}/var/db/services.db ${PKG_ROOTDIR}/etc/services\n"
        "chmod 1777 ${PKG_ROOTDIR}/tmp")}
    steps = recognise("FreeBSD-runtime", "post-install", reader.scripts["post-install"], byte_order="little")
    assert [s.kind for s in steps] == ["pwd_mkdb", "services_mkdb", "chmod"]
    assert reader.config_files == {"/etc/master.passwd", "/etc/group", "/etc/services", "/etc/login.conf",
                                   "/etc/shells"}
    assert data["/etc/master.passwd"] == (content.DATA / "src/etc/master.passwd").read_bytes()
    assert entries["/etc/master.passwd"].mode == 0o600 and entries["/etc/master.passwd"].config
    su = entries["/usr/bin/su"]
    assert (su.kind, su.mode, su.uname, su.gname) == ("file", 0o4555, "root", "wheel")
    assert entries["/bin/test"].kind == "file"
    assert (entries["/bin/["].kind, entries["/bin/["].target) == ("hardlink", "/bin/test")
    assert entries["/bin/sh"].kind == "file"
    spool = entries["/var/spool/output"]
    assert (spool.kind, spool.uname, spool.gname, spool.mode) == ("dir", "daemon", "daemon", 0o755)
    assert (entries["/tmp"].kind, entries["/tmp"].mode) == ("dir", 0o755)
    assert entries["/var/empty"].kind == "dir"
    assert "/usr/share/misc/termcap" not in entries
    assert manifest["vital"] is True and "deps" not in manifest
    assert manifest["shlibs_required"] == ["libc.so.7", "libcasper.so.1"]


def test_old_generation_runtime_keeps_owners_in_tar_headers(demo: DemoInfo) -> None:
    manifest, entries, _, _ = read_package(package_file(demo, "aarch64", "FreeBSD-runtime"))
    assert manifest["files"]["/usr/bin/su"].startswith("1$")
    assert manifest["directories"]["/var/spool/output"] == "y"
    assert (entries["/var/spool/output"].uname, entries["/usr/bin/su"].mode) == ("daemon", 0o4555)


def test_other_packages_scripts_links_and_keys(demo: DemoInfo) -> None:
    _, entries, data, reader = read_package(package_file(demo, "amd64", "FreeBSD-certctl"))
    assert reader.scripts["post-install"] == content.CERTCTL_POST_INSTALL.strip()
    assert entries["/usr/sbin/certctl"].mode == 0o555
    assert [s.kind for s in recognise("FreeBSD-certctl", "post-install", reader.scripts["post-install"],
                                      byte_order="little")] == ["certctl_rehash"]
    manifest, entries, _, reader = read_package(package_file(demo, "amd64", "FreeBSD-caroot"))
    assert sorted(p.rsplit("/", 1)[1] for p in entries) == sorted(content.CAROOT_CERTS)
    assert manifest["deps"] == {"FreeBSD-certctl": {"origin": "base", "version": "14.2"}}
    assert [s.kind for s in recognise("FreeBSD-caroot", "post-install", reader.scripts["post-install"],
                                      byte_order="little")] == ["certctl_rehash"]
    _, entries, data, _ = read_package(package_file(demo, "amd64", "FreeBSD-zoneinfo"))
    assert (entries["/usr/share/zoneinfo/UTC"].kind, entries["/usr/share/zoneinfo/UTC"].target) == \
        ("hardlink", "/usr/share/zoneinfo/Etc/UTC")
    assert data["/usr/share/zoneinfo/Europe/Amsterdam"].startswith(b"TZif")
    _, entries, _, _ = read_package(package_file(demo, "amd64", "FreeBSD-openssl-lib"))
    assert (entries["/usr/lib/libcrypto.so"].kind, entries["/usr/lib/libcrypto.so"].target) == \
        ("symlink", "../../lib/libcrypto.so.30")
    _, entries, data, _ = read_package(package_file(demo, "amd64", "FreeBSD-pkg-bootstrap"))
    assert entries["/usr/share/keys/pkg/revoked"].kind == "dir"
    assert b"b0170035af3acc5f" in data["/usr/share/keys/pkg/trusted/pkg.freebsd.org.2013102301"]


def test_libcasper_comes_in_through_shlibs(demo: DemoInfo, trust: Path) -> None:
    entries = catalogue(demo.repositories[("amd64", REPO)], trust).entries
    assert "libcasper.so.1" in entries["FreeBSD-runtime"].raw["shlibs_required"]
    assert entries["FreeBSD-libcasper"].raw["shlibs_provided"] == ["libcasper.so.1"]
    plan = [(f.name, f.parent, f.packages) for f in demo_flavours("releng/14.2")]   # the demo src's family
    assert all("FreeBSD-libcasper" not in packages for _, _, packages in plan)
    resolved = solve(Universe({n: dict(e.raw) for n, e in entries.items()}, REPO), plan)
    minimal = {p["name"]: p["reason"] for p in resolved["minimal"]["packages"]}
    assert minimal["FreeBSD-libcasper"] == "libcasper.so.1 for FreeBSD-runtime"
    assert all(not r["unresolved_shlibs"] for r in resolved.values())


# --- bumps -------------------------------------------------------------------------

def test_bump_package_changes_one_package_and_the_catalogue(demo: DemoInfo, trust: Path,
                                                            tmp_path: Path) -> None:
    root = tmp_path / "demo"
    shutil.copytree(demo.root, root, symlinks=True)
    repo = root / "pkgbase/FreeBSD:14:amd64" / REPO
    before = tree_bytes(repo)
    bump_package(root, arch="amd64", abi_major=14, repo=REPO, name="FreeBSD-fetch", version="14.2p1",
                 change=b"security fix\n")
    after = tree_bytes(repo)
    assert sorted(set(before) - set(after)) == ["FreeBSD-fetch-14.2.pkg"]
    assert sorted(set(after) - set(before)) == ["FreeBSD-fetch-14.2p1.pkg"]
    changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
    assert changed == [STAMP, "data.pkg", "data.tzst", "packagesite.pkg", "packagesite.tzst"]
    entry = catalogue(repo, trust, "data.pkg").entries["FreeBSD-fetch"]
    assert (entry.version, entry.path) == ("14.2p1", "FreeBSD-fetch-14.2p1.pkg")
    _, _, data, _ = read_package(repo / entry.path)
    assert data["/usr/bin/fetch"].endswith(b"security fix\n")
    # the bump survives a regeneration with unchanged inputs
    assert generate_demo(root).written == ()
    assert (repo / "FreeBSD-fetch-14.2p1.pkg").is_file()
    with pytest.raises(InputError, match="FreeBSD-nonesuch"):
        bump_package(root, arch="amd64", abi_major=14, repo=REPO, name="FreeBSD-nonesuch", version="1",
                     change=b"x")
    with pytest.raises(InputError, match="not a generated demo repository"):
        bump_package(root, arch="riscv64", abi_major=14, repo=REPO, name="FreeBSD-fetch", version="1",
                     change=b"x")


# --- content generators and scale --------------------------------------------------

def test_stand_in_binaries_are_deterministic_per_arch_and_path() -> None:
    amd64, arm = content.arch_info("amd64"), content.arch_info("aarch64")
    one = content.binary(amd64, "/bin/sh", 184, 64)
    assert one == content.binary(amd64, "/bin/sh", 184, 64)
    assert one[64:] != content.binary(arm, "/bin/sh", 184, 64)[64:]
    assert one[64:] != content.binary(amd64, "/bin/ls", 184, 64)[64:]
    i386 = content.binary(content.arch_info("i386"), "/bin/sh", 184, 1)
    assert i386[4] == 1 and struct.unpack_from("<HH", i386, 16) == (2, 3)       # ELFCLASS32, ET_EXEC, EM_386
    ppc = content.binary(content.arch_info("powerpc64"), "/lib/libc.so.7", 2048, 1)
    assert ppc[5] == 2 and struct.unpack_from(">HH", ppc, 16) == (3, 21)       # big-endian, EM_PPC64
    riscv = content.binary(content.arch_info("riscv64"), "/bin/sh", 184, 1)
    assert struct.unpack_from("<H", riscv, 18) == (243,)
    assert struct.unpack_from("<H", content.binary(content.arch_info("mips64"), "/bin/sh", 1, 1), 18) == (0,)
    with pytest.raises(InputError):
        content.arch_info("../amd64")


def test_big_endian_runtime_script_and_any_arch_name() -> None:
    for arch, flag in (("powerpc64", "-b"), ("riscv64", "-l"), ("sparc64", "-l")):
        pkg = content.build_package("FreeBSD-runtime", content.Build(content.arch_info(arch), 15, "15.snap1"))
        assert f"services_mkdb {flag} -q" in pkg.manifest["scripts"]["post-install"]
        assert pkg.manifest["abi"] == f"FreeBSD:15:{arch}"
    assert content.legacy_arch(14, "aarch64") == "freebsd:14:aarch64:64"
    assert content.legacy_arch(14, "amd64") == "freebsd:14:x86:64"


def test_real_size_binaries_compress_like_real_ones() -> None:
    data = content.binary(content.arch_info("amd64"), "/lib/libcrypto.so.30", 4096, content.REAL_SCALE)
    assert len(data) == 4096 * 1024
    ratio = len(data) / len(zlib.compress(data, 6))
    assert 2.2 <= ratio <= 3.0, ratio


def test_scaled_generation(demo: DemoInfo, trust: Path, tmp_path: Path) -> None:
    small = generate_demo(tmp_path / "small", arches=("amd64",), scale=0.05)
    repo = small.repositories[("amd64", REPO)]
    entries = catalogue(repo, trust, "data.pkg").entries
    full = catalogue(demo.repositories[("amd64", REPO)], trust, "data.pkg").entries
    assert entries["FreeBSD-clibs"].flatsize < full["FreeBSD-clibs"].flatsize
    assert entries["FreeBSD-zoneinfo"].flatsize == full["FreeBSD-zoneinfo"].flatsize   # real data, not scaled
    _, _, data, _ = read_package(repo / entries["FreeBSD-clibs"].path)
    libc = data["/lib/libc.so.7"]
    assert libc[:4] == b"\x7fELF" and len(libc) == content.scaled_size(2048, 0.05) == 410
    assert content.scaled_size(2048, 1) == 8192 and content.scaled_size(2048, content.REAL_SCALE) == 2 << 20
    assert content.scaled_size(100_000, 10_000) == content.MAX_FILE


def test_genrepo_prints_flavour_table(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench"
    assert genrepo.main([str(out), "--scale", "8", "--arches", "amd64"]) == 0
    text = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith("  ")}
    assert rows["static"][2] == "1" and rows["dynamic"][2] == "2" and rows["minimal"][2] == "11"
    assert "FreeBSD:14:amd64/base_release_2: 15 packages" in text
    assert genrepo.main([str(out), "--scale", "8", "--arches", "amd64"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert genrepo.main([str(out), "--release", "nonesuch"]) == 2
    assert os.path.isdir(out / "src.git")

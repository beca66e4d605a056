from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from release.errors import LayerError
from release.tarstream import BLOCK, TarEntry, TarStream, encode_header
from tests.conftest import need_tool

MTIME = 1732838400
LONG_DIR = "usr/share/" + "/".join(["d" * 60] * 3)             # > 155: no ustar prefix split
LONG_FILE = LONG_DIR + "/" + "f" * 120                          # > 256 bytes, pax path
SPLIT_FILE = "usr/" + "p" * 120 + "/" + "n" * 90                # fits prefix + name
TARGET_150 = "../" * 10 + "t" * 120                             # 150-byte symlink target


def tar_bytes(members: list[tuple[TarEntry, bytes | None]]) -> bytes:
    out = io.BytesIO()
    tar = TarStream(out)
    for entry, data in members:
        tar.add(entry, data)
    tar.close()
    return out.getvalue()


def entry(name: str, kind: str = "file", mode: int = 0o644, size: int = 0, linkname: str = "",
          uname: str = "root", gname: str = "wheel", uid: int = 0, gid: int = 0) -> TarEntry:
    return TarEntry(name, kind, mode, uid, gid, uname, gname, MTIME, size, linkname)


def make_tricky_tree(root: Path) -> None:
    """On-disk twin of the tricky layer, for GNU tar to archive."""
    (root / LONG_DIR).mkdir(parents=True)
    (root / LONG_FILE).write_bytes(b"long\n")
    (root / SPLIT_FILE).parent.mkdir(parents=True)
    (root / SPLIT_FILE).write_bytes(b"split\n")
    (root / "bin").mkdir()
    (root / "bin/su").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "bin/su", 0o4555)
    os.link(root / "bin/su", root / "bin/su-hardlink")
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    (root / "usr/share/zoneinfo").mkdir(parents=True)
    (root / "usr/share/zoneinfo/Amérique_Café").write_bytes(b"TZif")
    os.symlink(TARGET_150, root / "usr/share/long-link")
    os.symlink("zoneinfo/Amérique_Café", root / "usr/share/ünïcode-link")
    (root / "usr/share/empty").write_bytes(b"")


def entries_like(root: Path, names: list[str]) -> list[tuple[TarEntry, bytes | None]]:
    """TarEntries for *names* (GNU tar's member order) from the tree's lstat."""
    members, seen = [], {}
    for name in names:
        path = root / name
        st = os.lstat(path)
        mode = st.st_mode & 0o7777
        if os.path.islink(path):
            members.append((entry(name, "symlink", mode, linkname=os.readlink(path)), None))
        elif path.is_dir():
            members.append((entry(name, "dir", mode), None))
        elif st.st_ino in seen:
            members.append((entry(name, "hardlink", mode, linkname=seen[st.st_ino]), None))
        else:
            seen[st.st_ino] = name
            data = path.read_bytes()
            members.append((entry(name, "file", mode, len(data)), data))
    return members


def gnu_tar(root: Path, out: Path, *members: str) -> None:
    subprocess.run(["tar", "--format=posix", "--pax-option=delete=atime,delete=ctime",
                    f"--mtime=@{MTIME}", "--numeric-owner", "--owner=0", "--group=0",
                    "--sort=name", "-C", str(root), "-cf", str(out), *members], check=True)


def listing(tool: str, archive: Path) -> list[str]:
    argv = [tool, "-tvf", str(archive)] + (["--numeric-owner"] if tool == "tar" else [])
    out = subprocess.run(argv, check=True, capture_output=True, env={**os.environ, "TZ": "UTC"})
    return out.stdout.decode().splitlines()


@pytest.fixture(scope="module")
def tricky(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(tree, GNU tar's archive, ours) of the same tricky members."""
    need_tool("tar", "tar")
    tmp = tmp_path_factory.mktemp("tricky")
    root = tmp / "root"
    root.mkdir()
    make_tricky_tree(root)
    gnu = tmp / "gnu.tar"
    gnu_tar(root, gnu, "bin", "tmp", "usr")
    names = [n.rstrip("/") for n in subprocess.run(
        ["tar", "-tf", str(gnu)], check=True, capture_output=True).stdout.decode().splitlines()]
    ours = tmp / "ours.tar"
    ours.write_bytes(tar_bytes(entries_like(root, names)))
    return root, gnu, ours


def test_simple_members_are_byte_identical_to_gnu_tar(tmp_path):
    need_tool("tar", "tar")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/motd").write_bytes(b"FreeBSD\n")
    os.chmod(root / "etc", 0o755)
    os.chmod(root / "etc/motd", 0o644)
    os.symlink("motd", root / "etc/motd.link")
    gnu = tmp_path / "gnu.tar"
    gnu_tar(root, gnu, "etc")
    ours = tar_bytes([(entry("etc", "dir", 0o755, uname="", gname=""), None),
                      (entry("etc/motd", size=8, uname="", gname=""), b"FreeBSD\n"),
                      (entry("etc/motd.link", "symlink", 0o777, linkname="motd", uname="", gname=""),
                       None)])
    theirs = gnu.read_bytes()
    assert theirs[:len(ours)] == ours
    assert not theirs[len(ours):].strip(b"\0")  # GNU only pads to its 10 KiB record


def test_tricky_members_list_like_gnu_tar(tricky):
    _, gnu, ours = tricky
    assert listing("tar", ours) == listing("tar", gnu)


def test_tricky_members_list_like_gnu_tar_in_bsdtar(tricky):
    need_tool("bsdtar", "libarchive-tools")
    _, gnu, ours = tricky

    def without_owner_names(lines: list[str]) -> list[list[str]]:
        # GNU's --numeric-owner archive has no names; bsdtar would print ids instead
        return [[f for i, f in enumerate(line.split(None, 8)) if i not in (2, 3)] for line in lines]

    ours_listing = listing("bsdtar", ours)
    assert without_owner_names(ours_listing) == without_owner_names(listing("bsdtar", gnu))
    assert all(line.split()[2:4] == ["root", "wheel"] for line in ours_listing)


def test_python_tarfile_reads_every_field(tricky):
    root, _, ours = tricky
    with tarfile.open(ours) as tf:
        members = {m.name: m for m in tf.getmembers()}
        assert members[LONG_FILE].isfile() and tf.extractfile(LONG_FILE).read() == b"long\n"
        assert tf.extractfile(SPLIT_FILE).read() == b"split\n"
        assert members["usr/share/long-link"].linkname == TARGET_150
        assert members["usr/share/ünïcode-link"].linkname == "zoneinfo/Amérique_Café"
        assert tf.extractfile("usr/share/zoneinfo/Amérique_Café").read() == b"TZif"
        assert members["bin/su"].mode == 0o4555
        assert members["bin/su-hardlink"].islnk() and members["bin/su-hardlink"].linkname == "bin/su"
        assert members["tmp"].isdir() and members["tmp"].mode == 0o1777
        assert {m.mtime for m in members.values()} == {MTIME}
        assert {(m.uid, m.gid, m.uname, m.gname) for m in members.values()} == {(0, 0, "root", "wheel")}
        for m in members.values():  # pax only where needed, never times
            assert not set(m.pax_headers) & {"mtime", "atime", "ctime"}
        assert set(members[LONG_FILE].pax_headers) == {"path"}
        assert set(members["usr/share/long-link"].pax_headers) == {"linkpath"}
        assert members["bin/su"].pax_headers == {}
        assert members[SPLIT_FILE].pax_headers == {}


def test_gnu_tar_extracts_our_archive_like_its_own(tricky, tmp_path):
    root, _, ours = tricky
    dest = tmp_path / "x"
    dest.mkdir()
    subprocess.run(["tar", "-xpf", str(ours), "-C", str(dest)], check=True)
    for name in ("bin/su", LONG_FILE, "usr/share/zoneinfo/Amérique_Café"):
        assert (dest / name).read_bytes() == (root / name).read_bytes()
    assert os.stat(dest / "bin/su").st_ino == os.stat(dest / "bin/su-hardlink").st_ino
    assert os.stat(dest / "bin/su").st_mode & 0o7777 == 0o4555
    assert os.readlink(dest / "usr/share/long-link") == TARGET_150


def test_same_entries_give_identical_bytes(tricky):
    root, gnu, ours = tricky
    with tarfile.open(gnu) as tar:
        names = [m.name for m in tar.getmembers()]
    assert tar_bytes(entries_like(root, names)) == ours.read_bytes()


def test_directories_are_spelled_with_trailing_slash():
    header = encode_header(entry("usr/lib", "dir", 0o755))
    assert header[:9] == b"usr/lib/\0"
    assert header[156:157] == b"5"


def test_non_ascii_owner_and_big_ids_go_to_pax():
    data = tar_bytes([(entry("f", size=1, uname="ópérateur", uid=3_000_000, gid=7), b"x")])
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        member = tf.getmember("f")
        assert (member.uname, member.uid, member.gid) == ("ópérateur", 3_000_000, 7)
        assert set(member.pax_headers) == {"uname", "uid"}


def test_huge_size_is_a_pax_record():
    header = encode_header(entry("big", size=1 << 34))
    assert b" size=17179869184\n" in header
    assert header.count(b"ustar\x0000") == 2  # pax header + ustar header


def test_end_of_archive_is_two_zero_blocks():
    assert tar_bytes([]) == bytes(2 * BLOCK)


@pytest.mark.parametrize("data, message", [
    (b"abc", "3 bytes given, 4 announced"),
    (io.BytesIO(b"abc"), "1 bytes short of 4"),
    (io.BytesIO(b"abcde"), "longer than 4 bytes"),
    (None, "no data given"),
])
def test_size_mismatch_names_the_entry(data, message):
    with pytest.raises(LayerError, match=f"'etc/rc'.*{message}"):
        tar_bytes([(entry("etc/rc", size=4), data)])


def test_stream_data_is_copied_in_chunks():
    payload = os.urandom(3 * (1 << 20) + 5)
    data = tar_bytes([(entry("blob", size=len(payload)), io.BytesIO(payload))])
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert tf.extractfile("blob").read() == payload


@pytest.mark.parametrize("bad", [
    entry("/etc/passwd"), entry("etc/"), entry("../etc"), entry("a/./b"), entry("a//b"),
    entry("l", "symlink"), entry("d", "dir", size=3), entry("f", mode=0o10644),
    entry("f", "fifo"), entry("f", linkname="x"),
])
def test_unsafe_or_inconsistent_entries_are_refused(bad):
    with pytest.raises(LayerError, match="tar entry"):
        encode_header(bad)


def test_directory_with_data_is_refused():
    with pytest.raises(LayerError, match="carries no data"):
        tar_bytes([(entry("d", "dir"), b"x")])

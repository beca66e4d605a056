"""The .pkg writer and the verifying streaming reader, with real files and real tools."""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import zstandard

from release.errors import PackageError
from release.demo.pkgtar import Member
from release.demo.pkgwriter import write_package
from release.pkgfile import _Forward, open_package, read_manifest
from release.pkgmanifest import fflags_bits, fflags_text, urldecode, urlencode
from release.sums import pkg2_sum
from tests.conftest import PROJECT, need_tool

MANIFEST = {
    "name": "FreeBSD-runtime", "origin": "base", "version": "14.2",
    "comment": "FreeBSD runtime", "maintainer": "re@FreeBSD.org", "www": "https://www.FreeBSD.org",
    "abi": "FreeBSD:14:amd64", "arch": "freebsd:14:x86:64", "prefix": "/",
    "licenselogic": "single", "licenses": ["BSD2CLAUSE"], "desc": "Runtime files\n",
    "categories": ["base"], "annotations": {"set": "minimal"},
    "config": ["/etc/login.conf"],
    "scripts": {"post-install": "\tpwd_mkdb -i -p -d  ${PKG_ROOTDIR}/etc ${PKG_ROOTDIR}/etc/master.passwd\n"
                                "chmod 1777 ${PKG_ROOTDIR}/tmp # 100%\n"},
}
SH = b"#!/bin/sh\necho sh\n"
MEMBERS = [
    Member("/bin/sh", "file", 0o555, data=SH, mtime=1_700_000_000, fflags="schg"),
    Member("/bin/-sh", "hardlink", 0o555, target="/bin/sh", mtime=1_700_000_000),
    Member("/usr/bin/su", "file", 0o4555, data=b"su\0", gname="operator"),
    Member("/usr/libexec/ld-elf.so.1", "symlink", 0o755, target="/libexec/ld-elf.so.1"),
    Member("/usr/bin/chsh", "symlink", 0o755, target="chpass"),
    Member("/etc/login.conf", "file", 0o644, data=b"default:\\\n\t:umask=022:\n"),
    Member("/var/spool/uucp/.keep", "file", 0o640, uname="uucp", gname="uucp", data=b""),
    Member("/usr/share/caf\u00e9", "file", 0o444, data=b"non-ascii name\n"),
    Member("/tmp", "dir", 0o1777),
    Member("/var/spool/uucp", "dir", 0o775, uname="uucp", gname="uucp", mtime=1_600_000_000),
]
LONG = "/usr/share/" + "d" * 90 + "/" + "f" * 120
LONG_MEMBERS = [
    Member("/usr/share/" + "a" * 60 + "/" + "b" * 70 + "/split", "file", 0o644, data=b"1"),
    Member(LONG, "file", 0o644, data=b"2", fflags="schg,nodump"),
    Member("/usr/lnk", "symlink", 0o755, target="/" + "t" * 150),
    Member("/usr/lnk2", "symlink", 0o755, target="\u00e9t\u00e9"),
    Member("/usr/own", "file", 0o600, uname="u" * 40, gname="gr\u00fcn", data=b"3"),
    Member("/usr/hl", "hardlink", 0o644, target=LONG),
    Member("/usr/share/" + "c" * 120, "dir", 0o755),
]


def write(tmp_path: Path, generation: str, name: str = "FreeBSD-runtime-14.2.pkg", **kw):
    dest = tmp_path / name
    return dest, write_package(dest, kw.pop("manifest", MANIFEST), kw.pop("members", MEMBERS),
                               generation=generation, **kw)


def read_all(path: Path, name: str = "pkg"):
    with open_package(path, name) as reader:
        return reader, [(e, s.read() if s else None) for e, s in reader.entries()]


# --- round trip and manifest layout ------------------------------------------

@pytest.mark.parametrize("generation", ["old", "new"])
def test_round_trip(tmp_path, generation):
    dest, info = write(tmp_path, generation)
    reader, entries = read_all(dest)
    assert reader.generation == generation
    assert reader.manifest == info.manifest and reader.compact == info.compact
    assert read_manifest(dest) == info.manifest
    assert reader.scripts == {"post-install": MANIFEST["scripts"]["post-install"].strip()}
    assert reader.config_files == {"/etc/login.conf"}
    got = {e.path: e for e, _ in entries}
    # pkg's order: every file-like member first, then the directories
    assert [e.path for e, _ in entries] == [m.path for m in MEMBERS]
    for m in MEMBERS:
        e = got[m.path]
        assert (e.kind, e.mode, e.uname, e.gname, e.mtime, e.fflags) == \
            (m.kind, m.mode, m.uname, m.gname, m.mtime, m.fflags), m.path
        assert e.target == m.target
        assert e.config == (m.path == "/etc/login.conf")
    data = {e.path: d for e, d in entries}
    assert data["/bin/sh"] == SH and data["/usr/bin/su"] == b"su\0"
    assert data["/var/spool/uucp/.keep"] == b"" and data["/bin/-sh"] is None
    assert got["/usr/bin/su"].mode == 0o4555 and got["/tmp"].mode == 0o1777


def manifest_bytes(dest: Path, member: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(zstandard.ZstdDecompressor().stream_reader(
            dest.open("rb")).read()), mode="r:") as tf:
        return tf.extractfile(member).read()


@pytest.mark.parametrize("generation", ["old", "new"])
def test_manifest_as_pkg_writes_it(tmp_path, generation):
    dest, info = write(tmp_path, generation)
    raw = manifest_bytes(dest, "+MANIFEST")
    assert b"\n" not in raw and b": " not in raw  # single-line compact JSON
    full = json.loads(raw)
    assert list(full) == ["name", "origin", "version", "comment", "maintainer", "www", "abi", "arch",
                          "prefix", "flatsize", "licenselogic", "licenses", "desc", "categories",
                          "annotations", "files", "config", "directories", "scripts"]
    compact = json.loads(manifest_bytes(dest, "+COMPACT_MANIFEST"))
    assert compact == {k: v for k, v in full.items()
                       if k not in ("files", "config", "directories", "scripts")}
    # flatsize: content once per hardlinked file, a symlink counts its target's length
    assert full["flatsize"] == len(SH) + 3 + 20 + 6 + 23 + 15
    assert full["desc"] == "Runtime files"
    assert "%25" in full["scripts"]["post-install"] and "\n" in full["scripts"]["post-install"]
    assert "/usr/share/caf%c3%a9" in full["files"]
    files, dirs = full["files"], full["directories"]
    abs_link = hashlib.sha256(b"libexec/ld-elf.so.1\0").hexdigest()  # pkg hashes the NUL too
    rel_link = hashlib.sha256(b"chpass").hexdigest()
    if generation == "old":
        assert files["/bin/sh"] == "1$" + hashlib.sha256(SH).hexdigest()
        assert files["/bin/-sh"] == files["/bin/sh"]
        assert files["/usr/libexec/ld-elf.so.1"] == "1$" + abs_link
        assert files["/usr/bin/chsh"] == "1$" + rel_link
        assert dirs == {"/tmp": "y", "/var/spool/uucp": "y"}
        return
    assert files["/bin/sh"] == {"sum": pkg2_sum(SH), "uname": "root", "gname": "wheel",
                                "perm": "0555", "fflags": 0x20000, "mtime": 1_700_000_000}
    assert files["/usr/bin/su"]["perm"] == "04555" and files["/usr/bin/su"]["gname"] == "operator"
    link = files["/usr/libexec/ld-elf.so.1"]
    assert link["symlink_target"] == "/libexec/ld-elf.so.1"
    assert link["sum"] == pkg2_sum(b"libexec/ld-elf.so.1\0")
    assert list(link) == ["sum", "uname", "gname", "perm", "fflags", "symlink_target", "mtime"]
    assert dirs["/tmp"] == {"uname": "root", "gname": "wheel", "perm": "01777", "fflags": 0}
    assert dirs["/var/spool/uucp"]["uname"] == "uucp"


def test_same_inputs_same_bytes(tmp_path):
    first, info = write(tmp_path, "new", name="a.pkg")
    second, _ = write(tmp_path, "new", name="b.pkg")
    assert first.read_bytes() == second.read_bytes()
    blob = first.read_bytes()
    assert blob[:4] == b"\x28\xb5\x2f\xfd"
    assert info.sha256 == hashlib.sha256(blob).hexdigest() and info.size == len(blob)
    assert info.pkg2 == pkg2_sum(blob)
    old, _ = write(tmp_path, "old", name="c.pkg")
    assert old.read_bytes() != blob
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".partial")]


def test_xz_packages(tmp_path):
    dest, info = write(tmp_path, "old", compression="xz")
    assert dest.read_bytes()[:6] == b"\xfd7zXZ\x00"
    reader, entries = read_all(dest)
    assert reader.manifest == info.manifest and len(entries) == len(MEMBERS)


def test_sums_are_pkg_z_base32():
    """A 2$ sum derived independently: pkg_checksum_encode_base32's five-byte cycle."""
    alphabet = "ybndrfg8ejkmcpqxot1uwisza345h769"

    def pkg_base32(data: bytes) -> str:
        out, remain = [], -1
        for i, byte in enumerate(data):
            step = i % 5
            if step == 0:
                out.append(alphabet[byte & 0x1F])
                remain = byte >> 5
            elif step == 1:
                x = remain | byte << 3
                out += [alphabet[x & 0x1F], alphabet[x >> 5 & 0x1F]]
                remain = x >> 10
            elif step == 2:
                x = remain | byte << 1
                out.append(alphabet[x & 0x1F])
                remain = x >> 5
            elif step == 3:
                x = remain | byte << 4
                out += [alphabet[x & 0x1F], alphabet[x >> 5 & 0x1F]]
                remain = x >> 10 & 0x3
            else:
                x = remain | byte << 2
                out += [alphabet[x & 0x1F], alphabet[x >> 5 & 0x1F]]
                remain = -1
        if remain >= 0:
            out.append(alphabet[remain])
        return "".join(out)

    text = b"FreeBSD pkgbase"
    expected = "2$" + pkg_base32(hashlib.blake2b(text, digest_size=64).digest())
    assert len(expected) == 2 + 103
    assert pkg2_sum(text) == expected


def test_flag_and_url_spellings():
    assert fflags_text(fflags_bits("nodump,schg")) == "schg,nodump"
    assert fflags_bits("simmutable") == 0x20000 and fflags_text(0) == ""
    with pytest.raises(ValueError):
        fflags_bits("bogus")
    assert urlencode("/a%b/caf\u00e9") == "/a%25b/caf%c3%a9"
    assert urldecode(urlencode("/a%b/caf\u00e9")) == "/a%b/caf\u00e9"
    assert urldecode("100%zz") == "100%zz"


# --- real tools --------------------------------------------------------------

def test_bsdtar_lists_owners_and_modes(tmp_path):
    bsdtar = need_tool("bsdtar", "libarchive-tools")
    zstd = need_tool("zstd", "zstd")
    dest, _ = write(tmp_path, "old")
    tar = tmp_path / "plain.tar"
    subprocess.run([zstd, "-q", "-d", str(dest), "-o", str(tar)], check=True)
    for archive in (dest, tar):
        out = subprocess.run([bsdtar, "-tvf", str(archive)], check=True, capture_output=True,
                             env={**os.environ, "LC_ALL": "C.UTF-8"}, text=True).stdout
        lines = {line.split()[-1] if "->" not in line and " link to " not in line
                 else line.split()[8]: line.split() for line in out.splitlines()}
        assert list(lines)[:2] == ["+COMPACT_MANIFEST", "+MANIFEST"]
        assert lines["/bin/sh"][0] == "-r-xr-xr-x" and lines["/bin/sh"][2:4] == ["root", "wheel"]
        assert lines["/usr/bin/su"][0] == "-r-sr-xr-x" and lines["/usr/bin/su"][3] == "operator"
        assert lines["/tmp/"][0] == "drwxrwxrwt"
        assert lines["/var/spool/uucp/"][:4] == ["drwxrwxr-x", "0", "uucp", "uucp"]
        assert lines["/usr/bin/chsh"][0].startswith("l") and lines["/bin/-sh"][0].startswith("h")
        assert list(lines)[-2:] == ["/tmp/", "/var/spool/uucp/"]


@pytest.mark.parametrize("members", [MEMBERS, LONG_MEMBERS], ids=["base", "long-names"])
def test_tar_bytes_match_libarchive_restricted_pax(tmp_path, members):
    """Re-archiving our tar with bsdtar's restricted pax writer (what pkg uses) changes nothing."""
    bsdtar = need_tool("bsdtar", "libarchive-tools")
    dest, _ = write(tmp_path, "new", members=members, manifest={"name": "n", "version": "1"})
    ours = zstandard.ZstdDecompressor().stream_reader(dest.open("rb")).read()
    assert b"SCHILY.fflags=schg" in ours
    # (into a file: libarchive pads its output to whole 10 KiB blocks only on devices and stdout)
    theirs = tmp_path / "bsdtar.tar"
    subprocess.run([bsdtar, "-P", "-cf", str(theirs), "--format=paxr", "@-"], input=ours,
                   check=True, capture_output=True, env={**os.environ, "LC_ALL": "C.UTF-8"})
    assert ours == theirs.read_bytes()
    _, entries = read_all(dest)
    assert {e.path: (e.uname, e.gname, e.target) for e, _ in entries} == \
        {m.path: (m.uname, m.gname, m.target) for m in members}


# --- malformed packages ------------------------------------------------------

def _info(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, **kw) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.size, ti.uname, ti.gname = kind, size, "root", "wheel"
    for key, value in kw.items():
        setattr(ti, key, value)
    return ti


def craft(tmp_path: Path, members, files=None, dirs=None, manifest=None, *, with_manifest=True,
          fmt=tarfile.PAX_FORMAT) -> Path:
    """A .pkg assembled by hand, to hold what the writer refuses to produce."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        if with_manifest:
            obj = manifest if manifest is not None else \
                {"name": "bad", "version": "1", "files": files or {}, "directories": dirs or {}}
            raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
            compact = b'{"name":"bad","version":"1"}'
            tf.addfile(_info("+COMPACT_MANIFEST", size=len(compact)), io.BytesIO(compact))
            tf.addfile(_info("+MANIFEST", size=len(raw)), io.BytesIO(raw))
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    path = tmp_path / "bad.pkg"
    path.write_bytes(zstandard.ZstdCompressor(write_checksum=True).compress(buf.getvalue()))
    return path


def expect_error(path: Path, *fragments: str) -> str:
    with pytest.raises(PackageError) as exc:
        read_all(path, "bad.pkg")
    message = str(exc.value)
    assert "\n" not in message and "bad.pkg" in message
    for fragment in fragments:
        assert fragment in message
    return message


def one_file(name: str, data: bytes = b"x", listed: str | None = None, **kw):
    return [(_info(name, size=len(data), **kw), data)], {listed or name: "1$" + hashlib.sha256(data).hexdigest()}


@pytest.mark.parametrize("path, reason", [
    ("bin/sh", "not absolute"), ("/usr/../etc/passwd", "'.' or '..'"), ("/usr/./bin", "'.' or '..'"),
    ("/usr//bin", "empty component"), ("/etc/a\0b", "NUL"),
])
def test_unsafe_member_paths(tmp_path, path, reason):
    ti = _info("/placeholder", size=1, pax_headers={"path": path})
    expect_error(craft(tmp_path, [(ti, b"x")], {"/placeholder": "1$" + "0" * 64}), reason)


def test_member_not_in_manifest(tmp_path):
    members, _ = one_file("/bin/sh")
    expect_error(craft(tmp_path, members, {}), "/bin/sh", "not listed")


def test_listed_file_missing(tmp_path):
    members, files = one_file("/bin/sh")
    files["/bin/ls"] = "1$" + "0" * 64
    expect_error(craft(tmp_path, members, files), "/bin/ls", "missing from the archive")


@pytest.mark.parametrize("kind, word", [(tarfile.CHRTYPE, "character device"),
                                        (tarfile.BLKTYPE, "block device"), (tarfile.FIFOTYPE, "fifo"),
                                        (b"s", "member type")])
def test_special_files_refused(tmp_path, kind, word):
    path = craft(tmp_path, [(_info("/dev/null", kind), None)], {"/dev/null": "1$" + "0" * 64})
    expect_error(path, "/dev/null", word)


def test_hardlink_must_follow_its_file(tmp_path):
    sums = "1$" + hashlib.sha256(b"x").hexdigest()
    link = (_info("/bin/-sh", tarfile.LNKTYPE, linkname="/bin/sh"), None)
    path = craft(tmp_path, [link, (_info("/bin/sh", size=1), b"x")], {"/bin/-sh": sums, "/bin/sh": sums})
    expect_error(path, "/bin/-sh", "not an earlier file")


@pytest.mark.parametrize("style", ["gnu", "pax"])
def test_sparse_members_refused(tmp_path, style):
    if style == "gnu":
        members = [(_info("/var/db/services.db", tarfile.GNUTYPE_SPARSE), None)]
        path = craft(tmp_path, members, {"/var/db/services.db": "1$" + "0" * 64}, fmt=tarfile.GNU_FORMAT)
    else:
        ti = _info("/var/db/services.db", size=5,
                   pax_headers={"GNU.sparse.map": "0,5", "GNU.sparse.size": "9"})
        path = craft(tmp_path, [(ti, b"12345")], {"/var/db/services.db": "1$" + "0" * 64})
    expect_error(path, "/var/db/services.db", "sparse")


@pytest.mark.parametrize("manifest, fragment", [
    (b"{not json", "malformed manifest"), (b"[1, 2]", "not a JSON object"),
    (b'{"name": "x"}', "no 'version'"), (b'{"name":"x","version":"1","files":[]}', "not an object"),
])
def test_malformed_manifest(tmp_path, manifest, fragment):
    expect_error(craft(tmp_path, [], manifest=manifest), "+MANIFEST", fragment)


def test_missing_manifest(tmp_path):
    members, files = one_file("/bin/sh")
    expect_error(craft(tmp_path, members, files, with_manifest=False), "no +MANIFEST")


def test_content_checked_while_streaming(tmp_path):
    members, files = one_file("/bin/sh", b"genuine")
    files["/bin/sh"] = "1$" + hashlib.sha256(b"tampered").hexdigest()
    path = craft(tmp_path, members, files)
    with open_package(path, "bad.pkg") as reader:
        entry, stream = next(reader.entries())
        assert stream.read(3) == b"gen"          # streaming, no check yet
        with pytest.raises(PackageError, match=r"bad\.pkg: /bin/sh: contents do not match"):
            stream.read(100)
    with open_package(path, "bad.pkg") as reader:  # an unread stream is verified on the next step
        entries = reader.entries()
        next(entries)
        with pytest.raises(PackageError, match="/bin/sh"):
            next(entries)


def test_blake2_sums_checked(tmp_path):
    members, _ = one_file("/bin/sh", b"genuine")
    path = craft(tmp_path, members, {"/bin/sh": {"sum": pkg2_sum(b"other"), "uname": "root",
                                                 "gname": "wheel", "perm": "0755", "fflags": 0}})
    expect_error(path, "/bin/sh", "manifest sum")


def test_symlink_target_checked(tmp_path):
    link = _info("/usr/bin/chsh", tarfile.SYMTYPE, linkname="/etc/master.passwd")
    path = craft(tmp_path, [(link, None)], {"/usr/bin/chsh": "1$" + hashlib.sha256(b"chpass").hexdigest()})
    expect_error(path, "/usr/bin/chsh", "symlink target")


@pytest.mark.parametrize("cut", ["half", "tail"])
def test_truncated_or_corrupt_compression(tmp_path, cut):
    dest, _ = write(tmp_path, "new", name="bad.pkg", members=MEMBERS + [
        Member("/usr/lib/big", "file", 0o444, data=os.urandom(300_000))])
    blob = dest.read_bytes()
    dest.write_bytes(blob[:len(blob) // 2] if cut == "half" else blob[:-3])
    expect_error(dest, "corrupt or truncated")
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0xFF
    dest.write_bytes(bytes(flipped))
    expect_error(dest)


def test_truncated_xz(tmp_path):
    dest, _ = write(tmp_path, "old", name="bad.pkg", compression="xz")
    dest.write_bytes(dest.read_bytes()[:-10])
    expect_error(dest, "corrupt or truncated")


def test_new_manifest_metadata_wins_over_tar_header(tmp_path):
    ti = _info("/usr/bin/passwd", size=1, mode=0o755, uname="nobody", gname="nogroup", uid=65534,
               pax_headers={"SCHILY.fflags": "nodump"})
    attrs = {"sum": pkg2_sum(b"x"), "uname": "root", "gname": "wheel", "perm": "04555",
             "fflags": 0x20000, "mtime": 1234}
    _, [(entry, _)] = read_all(craft(tmp_path, [(ti, b"x")], {"/usr/bin/passwd": attrs}))
    assert (entry.uname, entry.gname, entry.mode, entry.fflags, entry.mtime) == \
        ("root", "wheel", 0o4555, "schg", 1234)


def test_old_manifest_owner_from_header_names_not_ids(tmp_path):
    members, files = one_file("/var/spool/uucp/x", mode=0o640, uname="uucp", gname="dialer",
                              uid=65534, gid=65534, pax_headers={"SCHILY.fflags": "uarch"})
    _, [(entry, _)] = read_all(craft(tmp_path, members, files))
    assert (entry.uname, entry.gname, entry.mode, entry.fflags) == ("uucp", "dialer", 0o640, "uarch")


@pytest.mark.parametrize("members, manifest, fragment", [
    ([Member("/bin/-sh", "hardlink", 0o555, target="/bin/sh"), Member("/bin/sh", "file", 0o555)],
     {}, "not an earlier file"),
    ([Member("bin/sh", "file", 0o555)], {}, "not absolute"),
    ([Member("/bin/sh", "file", 0o555, fflags="sticky")], {}, "unknown file flag"),
    ([Member("/bin/sh", "file", 0o555), Member("/bin/sh", "file", 0o555)], {}, "listed twice"),
    ([Member("/bin", "dir", 0o755)], {"config": ["/bin"]}, "config file"),
    ([], {"files": {}}, "computed from the members"),
    ([], {"scripts": {"post-instal": "true"}}, "unknown script phase"),
])
def test_writer_refuses_bad_input(tmp_path, members, manifest, fragment):
    with pytest.raises(PackageError, match=fragment):
        write_package(tmp_path / "bad.pkg", {"name": "n", "version": "1", **manifest}, members,
                      generation="new")
    assert not list(tmp_path.iterdir())


# --- bounded memory ----------------------------------------------------------

_MAKE_BIG = """
import sys
from pathlib import Path
from release.demo.pkgtar import Member
from release.demo.pkgwriter import write_package
data = bytes(200 << 20)
write_package(Path(sys.argv[1]), {"name": "big", "version": "1"},
              [Member("/usr/lib/big.a", "file", 0o444, data=data)], generation="new", level=1)
"""
_READ_BIG = """
import resource, sys
from release.pkgfile import open_package
with open_package(sys.argv[1], "big.pkg") as reader:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    total = 0
    for entry, stream in reader.entries():
        while chunk := stream.read(1 << 16):
            total += len(chunk)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(total, (after - before) * 1024)
"""


def test_reading_a_200mb_member_keeps_memory_flat(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    pkg = tmp_path / "big.pkg"
    subprocess.run([sys.executable, "-c", _MAKE_BIG, str(pkg)], check=True, env=env, cwd=PROJECT)
    assert pkg.stat().st_size < 1 << 20  # zeros: every byte must come out of the decompressor
    out = subprocess.run([sys.executable, "-c", _READ_BIG, str(pkg)], check=True, env=env,
                         cwd=PROJECT, capture_output=True, text=True).stdout.split()
    total, growth = int(out[0]), int(out[1])
    assert total == 200 << 20
    assert growth < 32 << 20, f"peak RSS grew by {growth >> 20} MiB while streaming"


def test_the_forward_reader_gives_the_stream_byte_for_byte_and_never_goes_back():
    """pkgfile._Forward: tarfile's file object for the one pass (headers buffered, contents direct)."""
    data = os.urandom(3 * _Forward.PIECE + 777)
    reader, pos, out = _Forward(io.BytesIO(data)), 0, []
    for size in (512, 1, _Forward.PIECE + 5, 0, 512 * 3, 2 * _Forward.PIECE, 10_000_000):
        chunk = reader.read(size)
        assert chunk == data[pos:pos + size] and reader.tell() == pos + len(chunk)
        pos += len(chunk)
        out.append(chunk)
    assert b"".join(out) == data and reader.read(1) == b""
    again = _Forward(io.BytesIO(data))
    assert again.seek(1000) == 1000 and again.read(24) == data[1000:1024] and again.seek(1024) == 1024
    with pytest.raises(tarfile.StreamError, match="backwards"):
        again.seek(1000)

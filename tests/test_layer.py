"""The layer writer on hand-made packages: ordering, metadata, links, whiteouts and refusals.

Packages are real .pkg files written by release.demo.pkgwriter.write_package (both manifest
generations); layers are real blobs read back with Python's tarfile and GNU tar.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from release.builtins.entries import Entry
from release.compress import compressor_identity
from release.errors import LayerError, PackageError, StepError
from release.cache import PackageCache
from release.layer import install_packages
from release.layerblob import write_layer_blob
from release.demo.pkgtar import Member
from release.demo.pkgwriter import write_package
from release.records import LockedPackage
from release.sums import zbase32
from release.tree import LayerTree, ParentView
from release.workspace import Workspace
from tests.conftest import need_tool

SDE = 1_700_000_000
PASSWD = (b"root:*:0:0::0:0:Charlie &:/root:/bin/sh\n"
          b"daemon:*:1:1::0:0:Owner of many system processes:/root:/usr/sbin/nologin\n")
GROUP = b"wheel:*:0:root\ndaemon:*:1:\n"


def manifest(name: str, **extra) -> dict:
    m = {"name": name, "origin": "base", "version": "14.2", "comment": f"{name} comment",
         "maintainer": "re@FreeBSD.org", "www": "https://www.FreeBSD.org", "abi": "FreeBSD:14:amd64",
         "arch": "freebsd:14:x86:64", "prefix": "/", "licenselogic": "single", "licenses": ["BSD2CLAUSE"],
         "desc": f"{name} description", "categories": ["base"]}
    m.update(extra)
    return m


class Harness:
    """A work directory with a cache of hand-made packages and a way to build one layer."""

    def __init__(self, root: Path) -> None:
        self.ws = Workspace(root)
        self.packages: list[LockedPackage] = []

    def package(self, name: str, members: list[Member], *, generation: str = "new", **extra) -> None:
        staged = self.ws.root / "staging" / f"{name}.pkg"
        info = write_package(staged, manifest(name, **extra), members, generation=generation)
        dest = PackageCache(self.ws.cache()).path_for(info.sha256)       # the cache names packages by sum
        dest.parent.mkdir(parents=True, exist_ok=True)
        staged.replace(dest)
        self.packages.append(LockedPackage(name=name, version="14.2", sum=info.sha256, path=f"{name}.pkg"))

    def path(self, index: int) -> Path:
        return PackageCache(self.ws.cache()).path_for(self.packages[index].sum)

    def install(self, tree: LayerTree, scripts: str = "builtin", ignore: tuple = ()) -> None:
        install_packages(self.ws, tree, self.packages, scripts=scripts, ignore_scripts=ignore,
                         byte_order="little", sde=SDE)

    def write(self, tree: LayerTree, media: str = "tar+gzip") -> dict:
        return write_layer_blob(self.ws.blobs(), tree, sde=SDE,
                                compression=compressor_identity(media, gzip_level=6, zstd_level=3))

    def build(self, *, parent: ParentView | None = None, steps=(), scripts: str = "builtin",
              ignore: tuple = (), media: str = "tar+gzip", package_sums: bool = False) -> tuple[dict, LayerTree]:
        (self.ws.root / "tmp").mkdir(parents=True, exist_ok=True)
        spool = tempfile.TemporaryFile(dir=self.ws.root / "tmp")  # noqa: SIM115 (the returned tree reads it)
        tree = LayerTree(parent or ParentView(), spool, package_sums=package_sums)
        for e in steps:
            tree.put(e, "test step")
        self.install(tree, scripts, ignore)
        tree.check_structure()
        return self.write(tree, media), tree

    def tar(self, blob: dict) -> tarfile.TarFile:
        data = self.ws.blob(blob["digest"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == blob["digest"][7:]
        raw = gzip.decompress(data) if blob["media_type"].endswith("gzip") else data
        assert hashlib.sha256(raw).hexdigest() == blob["diff_id"][7:]
        return tarfile.open(fileobj=io.BytesIO(raw))


ACCOUNTS = [Entry("/etc", "dir", 0o755), Entry("/etc/master.passwd", "file", 0o600, data=PASSWD),
            Entry("/etc/group", "file", 0o644, data=GROUP)]


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


@pytest.mark.parametrize("generation", ["new", "old"])
def test_layer_is_sorted_complete_and_carries_package_metadata(h: Harness, generation: str) -> None:
    h.package("FreeBSD-b", [
        Member("/usr/bin/su", "file", 0o4555, data=b"su"),
        Member("/bin/test", "file", 0o555, data=b"test", mtime=SDE + 1000),
        Member("/bin/[", "hardlink", 0o555, target="/bin/test"),
        Member("/var/spool/output", "dir", 0o755, uname="daemon", gname="daemon"),
        Member("/usr/lib/libx.so", "symlink", 0o755, target="../../lib/libx.so.1"),
    ], generation=generation)
    h.package("FreeBSD-a", [Member("/lib/libx.so.1", "file", 0o444, data=b"lib", mtime=SDE - 5)],
              generation=generation)
    blob, _ = h.build(steps=ACCOUNTS)
    with h.tar(blob) as tar:
        members = tar.getmembers()
    names = [m.name.rstrip("/") for m in members]
    assert names == sorted(names, key=lambda n: n.encode())
    for m in members:                                    # every parent directory comes first
        parent = str(Path(m.name.rstrip("/")).parent)
        assert parent == "." or parent in names[:names.index(m.name.rstrip("/"))]
        assert not any(k in m.pax_headers for k in ("atime", "ctime", "mtime"))
        assert m.mtime <= SDE
    by = {m.name.rstrip("/"): m for m in members}
    assert by["usr/bin/su"].mode == 0o4555 and by["usr/bin/su"].uid == 0
    assert (by["var/spool/output"].uid, by["var/spool/output"].gid, by["var/spool/output"].uname) == (1, 1, "daemon")
    assert by["lib/libx.so.1"].mtime == SDE - 5 and by["bin/test"].mtime == SDE
    assert by["usr/lib/libx.so"].issym() and by["usr/lib/libx.so"].linkname == "../../lib/libx.so.1"
    # the hardlink group is written so the first name in tar order carries the data
    assert by["bin/["].isfile() and by["bin/test"].islnk() and by["bin/test"].linkname == "bin/["
    assert by["usr"].isdir() and by["usr"].mode == 0o755 and by["usr"].mtime == SDE


def test_gnu_tar_lists_the_layer_with_numeric_owners(h: Harness, tmp_path: Path) -> None:
    need_tool("tar", "tar")
    h.package("FreeBSD-a", [Member("/var/spool/output/x", "file", 0o640, uname="daemon", gname="wheel", data=b"x")])
    blob, _ = h.build(steps=ACCOUNTS)
    listing = subprocess.run(["tar", "-tvzf", str(h.ws.blob(blob["digest"])), "--numeric-owner"],
                             capture_output=True, text=True, check=True).stdout
    assert "-rw-r----- 1/0" in listing and "var/spool/output/x" in listing


def test_same_inputs_give_the_same_blob(tmp_path: Path) -> None:
    digests = set()
    for n in range(2):
        h = Harness(tmp_path / str(n))
        h.package("FreeBSD-a", [Member(f"/usr/share/f{i}", "file", 0o644, data=bytes([i]) * 1000) for i in range(20)])
        digests.add(h.build(steps=ACCOUNTS)[0]["digest"])
    assert len(digests) == 1


def test_two_packages_claiming_one_path_differently_are_named(h: Harness) -> None:
    h.package("FreeBSD-one", [Member("/etc/motd", "file", 0o644, data=b"one")])
    h.package("FreeBSD-two", [Member("/etc/motd", "file", 0o644, data=b"two")])
    with pytest.raises(LayerError, match=r"/etc/motd: claimed differently by FreeBSD-one .* and FreeBSD-two"):
        h.build(steps=ACCOUNTS)


@pytest.mark.parametrize("generation", ["new", "old"])
def test_package_sums_change_the_bookkeeping_only(tmp_path: Path, generation: str) -> None:
    """A layer that is never shared keeps the sum each file was verified with instead of hashing it again."""
    data = b"FreeBSD " * 4096
    built = {}
    for package_sums in (False, True):
        h = Harness(tmp_path / str(package_sums))
        h.package("FreeBSD-a", [Member("/usr/share/a", "file", 0o644, data=data)], generation=generation)
        blob, tree = h.build(steps=ACCOUNTS, package_sums=package_sums)
        built[package_sums] = blob
        expected = hashlib.sha256(data).hexdigest()
        if package_sums and generation == "new":     # pkg 2.x sums: "2$" + zbase32(BLAKE2b-512)
            expected = "2$" + zbase32(hashlib.blake2b(data, digest_size=64).digest())
        assert tree.items["/usr/share/a"].digest == expected
        assert tree.package_index()["/usr/share/a"] == ["file", expected, "FreeBSD-a"]
    assert built[False] == built[True]          # the same layer, byte for byte


def test_package_sums_still_tell_two_packages_apart(h: Harness) -> None:
    h.package("FreeBSD-one", [Member("/etc/motd", "file", 0o644, data=b"one")])
    h.package("FreeBSD-two", [Member("/etc/motd", "file", 0o644, data=b"two")])
    with pytest.raises(LayerError, match=r"/etc/motd: claimed differently by FreeBSD-one \(file 2\$\w{17}, "
                                         r"root:wheel 0644\) and FreeBSD-two \(file 2\$"):
        h.build(steps=ACCOUNTS, package_sums=True)


def test_with_package_sums_one_file_of_two_package_generations_is_refused(tmp_path: Path) -> None:
    """Sums of two algorithms cannot show the files equal; pkg refuses any path two packages share anyway."""
    for package_sums in (False, True):
        h = Harness(tmp_path / str(package_sums))
        h.package("FreeBSD-one", [Member("/etc/motd", "file", 0o644, data=b"same")], generation="new")
        h.package("FreeBSD-two", [Member("/etc/motd", "file", 0o644, data=b"same")], generation="old")
        if package_sums:
            with pytest.raises(LayerError, match=r"/etc/motd: claimed differently by FreeBSD-one \(file 2\$.*"
                                                 r"and FreeBSD-two \(file sha256 "):
                h.build(steps=ACCOUNTS, package_sums=True)
        else:
            h.build(steps=ACCOUNTS)


def test_identical_claims_by_two_packages_are_allowed(h: Harness) -> None:
    doc = Member("/usr/share/doc", "dir", 0o755)
    h.package("FreeBSD-one", [doc, Member("/usr/share/doc/x", "file", 0o644, data=b"x")])
    h.package("FreeBSD-two", [doc, Member("/usr/share/doc/y", "file", 0o644, data=b"y")])
    blob, _ = h.build(steps=ACCOUNTS)
    with h.tar(blob) as tar:
        assert [m.name for m in tar.getmembers()].count("usr/share/doc") == 1


def test_writing_through_a_symlink_is_refused(h: Harness) -> None:
    h.package("FreeBSD-evil", [Member("/usr/trap", "symlink", 0o755, target="/etc")])
    h.package("FreeBSD-victim", [Member("/usr/trap/passwd", "file", 0o644, data=b"owned")])
    with pytest.raises(LayerError, match=r"FreeBSD-victim: /usr/trap/passwd: parent /usr/trap is a symlink "
                                         r"\(to /etc, from FreeBSD-evil\)"):
        h.build(steps=ACCOUNTS)


def test_writing_through_a_symlink_of_a_lower_layer_is_refused(h: Harness) -> None:
    h.package("FreeBSD-victim", [Member("/usr/lib32/x", "file", 0o644, data=b"x")])
    with pytest.raises(LayerError, match=r"parent /usr/lib32 is a symlink in a lower layer"):
        h.build(parent=ParentView(symlinks={"/usr/lib32": "/tmp"}), steps=ACCOUNTS)


def test_a_symlink_listed_after_its_children_is_refused_naming_both(h: Harness) -> None:
    h.package("FreeBSD-evil", [Member("/a/x", "file", 0o644, data=b"x"), Member("/a", "symlink", 0o755, target="/etc")])
    with pytest.raises(LayerError, match=r"^FreeBSD-evil: /a/x: parent /a is a symlink \(to /etc, from FreeBSD-evil\); "
                                         r"refusing to write through it$"):
        h.build(steps=ACCOUNTS)


def test_the_same_split_across_two_packages_is_refused_whatever_their_order(h: Harness) -> None:
    h.package("FreeBSD-a", [Member("/a", "symlink", 0o755, target="/etc")])
    h.package("FreeBSD-b", [Member("/a/master.passwd", "file", 0o644, data=b"x")])
    with pytest.raises(LayerError,
                       match=r"FreeBSD-b: /a/master.passwd: parent /a is a symlink \(to /etc, from FreeBSD-a\)"):
        h.build(steps=ACCOUNTS)


def test_a_path_with_children_claimed_as_a_file_is_refused(h: Harness) -> None:
    h.package("FreeBSD-a", [Member("/usr/share/x/y", "file", 0o644, data=b"y")])
    h.package("FreeBSD-b", [Member("/usr/share/x", "file", 0o644, data=b"x")])
    with pytest.raises(LayerError, match=r"FreeBSD-a: /usr/share/x/y: parent /usr/share/x is a file "
                                         r"\(from FreeBSD-b\), not a directory"):
        h.build(steps=ACCOUNTS)


def lower_with(path: str, owner: str) -> ParentView:
    """The view of a lower layer holding the accounts and one regular file of *owner*."""
    return ParentView(nondirs={path: ["file", owner]}, files={e.path: e.data for e in ACCOUNTS if e.kind == "file"})


@pytest.mark.parametrize("lower, member, message", [
    ("/a/master.passwd", Member("/a", "symlink", 0o755, target="/etc"),
     r"^FreeBSD-base: /a/master.passwd \(in a lower layer\): parent /a is a symlink \(to /etc, from FreeBSD-evil\); "
     r"refusing to write through it$"),
    ("/usr/lib/x", Member("/usr/lib/x/y", "file", 0o644, data=b"y"),
     r"^FreeBSD-evil: /usr/lib/x/y: parent /usr/lib/x is a file in a lower layer \(from FreeBSD-base\), "
     r"not a directory$"),
])
def test_the_layers_below_count_for_the_invariant_naming_both(h: Harness, lower: str, member: Member,
                                                              message: str) -> None:
    h.package("FreeBSD-evil", [member])
    with pytest.raises(LayerError, match=message):
        h.build(parent=lower_with(lower, "FreeBSD-base"))


def test_the_view_handed_down_names_every_non_directory_and_its_owner(h: Harness) -> None:
    h.package("FreeBSD-a", [Member("/bin/sh", "file", 0o555, data=b"sh"),
                            Member("/bin/rsh", "hardlink", 0o555, target="/bin/sh"),
                            Member("/lib32", "symlink", 0o755, target="/usr/lib32"), Member("/bin", "dir", 0o755)])
    _, tree = h.build(steps=ACCOUNTS)
    view = ParentView.from_json(tree.child_view().to_json())
    assert view.nondirs["/bin/sh"] == ["file", "FreeBSD-a"] and view.nondirs["/bin/rsh"] == ["hardlink", "FreeBSD-a"]
    assert view.nondirs["/lib32"] == ["symlink", "FreeBSD-a"] and view.symlinks["/lib32"] == "/usr/lib32"
    assert "/bin" in view.dirs and "/bin" not in view.nondirs


def test_replacing_a_lower_directory_by_a_file_is_refused(h: Harness) -> None:
    h.package("FreeBSD-a", [Member("/var/db", "file", 0o644, data=b"x")])
    with pytest.raises(LayerError, match=r"FreeBSD-a: /var/db: is a directory in the layers below"):
        h.build(parent=ParentView(dirs={"/var": [0o755, "root", "wheel", SDE],
                                        "/var/db": [0o755, "root", "wheel", SDE]}), steps=ACCOUNTS)


def test_an_owner_missing_from_the_image_accounts_is_refused(h: Harness) -> None:
    h.package("FreeBSD-a", [Member("/var/unbound", "dir", 0o755, uname="unbound", gname="unbound")])
    with pytest.raises(LayerError, match=r"FreeBSD-a: /var/unbound: user 'unbound' is not in the image's "
                                         r"/etc/master.passwd"):
        h.build(steps=ACCOUNTS)


def test_owner_ids_come_from_the_image_accounts_of_lower_layers(h: Harness) -> None:
    h.package("FreeBSD-a", [Member("/var/x", "file", 0o644, uname="daemon", gname="daemon", data=b"")])
    parent = ParentView(files={"/etc/master.passwd": PASSWD.replace(b"daemon:*:1:1", b"daemon:*:7:9"),
                               "/etc/group": GROUP.replace(b"daemon:*:1:", b"daemon:*:9:")})
    blob, _ = h.build(parent=parent)
    with h.tar(blob) as tar:
        x = tar.getmember("var/x")
    assert (x.uid, x.gid) == (7, 9)


def test_a_removed_lower_path_becomes_a_whiteout_and_parents_keep_lower_metadata(h: Harness) -> None:
    h.package("FreeBSD-a", [Member("/usr/bin/x", "file", 0o555, data=b"x")])
    (h.ws.root / "tmp").mkdir(parents=True, exist_ok=True)
    parent = ParentView(dirs={"/usr": [0o755, "root", "wheel", 1], "/usr/share": [0o755, "root", "wheel", 1],
                              "/usr/share/misc": [0o755, "root", "wheel", 1]})
    with tempfile.TemporaryFile(dir=h.ws.root / "tmp") as spool:
        tree = LayerTree(parent, spool)
        tree.remove("/usr/share/misc/termcap", "step remove")
        h.install(tree)
        tree.parent.files.update({"/etc/master.passwd": PASSWD, "/etc/group": GROUP})
        blob = h.write(tree, "tar")
    with h.tar(blob) as tar:
        by = {m.name.rstrip("/"): m for m in tar.getmembers()}
    assert by["usr/share/misc/.wh.termcap"].isfile() and by["usr/share/misc/.wh.termcap"].size == 0
    assert by["usr/share/misc"].mtime == 1 and by["usr"].mtime == 1


def test_recognised_scripts_run_as_built_ins_and_unknown_ones_are_refused(h: Harness) -> None:
    services = b"ssh\t\t22/tcp\n"
    h.package("FreeBSD-runtime", [
        Member("/etc/master.passwd", "file", 0o600, data=PASSWD), Member("/etc/group", "file", 0o644, data=GROUP),
        Member("/etc/services", "file", 0o644, data=services), Member("/tmp", "dir", 0o755)],
        scripts={"post-install": "pwd_mkdb -i -p -d  ${PKG_ROOTDIR}/etc ${PKG_ROOTDIR}/etc/master.passwd\n"
                                 "services_mkdb -l -q -o ${PKG_ROOTDIR}/var/db/services.db "
                                 "${PKG_ROOTDIR}/etc/services\n"
                                 "chmod 1777 ${PKG_ROOTDIR}/tmp\n"})
    blob, tree = h.build()
    with h.tar(blob) as tar:
        by = {m.name.rstrip("/"): m for m in tar.getmembers()}
    assert by["tmp"].mode == 0o1777
    assert by["etc/pwd.db"].size == 40960 and by["etc/spwd.db"].mode == 0o600
    assert by["var/db/services.db"].size > 0
    assert tree.read("/etc/passwd").startswith(b"root:*:0:0:")


def test_an_unrecognised_script_is_an_error_unless_ignored(tmp_path: Path) -> None:
    script = {"post-install": "/usr/bin/newaliases\n"}
    h = Harness(tmp_path / "a")
    h.package("FreeBSD-sendmail", [Member("/etc/mail/x", "file", 0o644, data=b"")], scripts=script)
    with pytest.raises(StepError, match=r'FreeBSD-sendmail: post-install script: unrecognised command '
                                        r'"/usr/bin/newaliases"'):
        h.build(steps=ACCOUNTS)
    h2 = Harness(tmp_path / "b")
    h2.package("FreeBSD-sendmail", [Member("/etc/mail/x", "file", 0o644, data=b"")], scripts=script)
    h2.build(steps=ACCOUNTS, ignore=("FreeBSD-sendmail:post-install",))


def test_a_tampered_package_in_the_cache_stops_the_layer(h: Harness) -> None:
    h.package("FreeBSD-a", [Member("/usr/share/x", "file", 0o644, data=b"A" * 100_000)], generation="old")
    path = h.path(0)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(PackageError, match=r"FreeBSD-a-14.2"):
        h.build(steps=ACCOUNTS)
    assert list(h.ws.blobs().glob("*")) == [] or all(not p.name.startswith(".partial-")
                                                     for p in h.ws.blobs().iterdir())


@pytest.mark.parametrize("media", ["tar", "tar+zstd"])
def test_other_compressions(h: Harness, media: str) -> None:
    h.package("FreeBSD-a", [Member("/usr/share/x", "file", 0o644, data=b"x" * 1000)])
    blob, _ = h.build(steps=ACCOUNTS, media=media)
    assert blob["media_type"] == f"application/vnd.oci.image.layer.v1.{media}"
    if media == "tar":
        assert blob["digest"] == blob["diff_id"]

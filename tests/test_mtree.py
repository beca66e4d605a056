"""mtree spec skeletons, checked against libarchive's independent mtree reader."""
from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from release.builtins.entries import Entry
from release.builtins.mtree import MTREE_PREFIXES, STATIC_SPECS, mtree_dirs, skeleton
from release.errors import StepError
from tests.conftest import need_tool

SPECS = ("BSD.root.dist", "BSD.var.dist", "BSD.usr.dist", "BSD.include.dist",
         "BSD.debug.dist", "BSD.lib32.dist")


def libarchive_dirs(spec: bytes, prefix: str, tmp_path: Path) -> list[tuple[str, int, str, str]]:
    """What bsdtar makes of *spec* (read as an mtree 'archive'), mounted at *prefix*."""
    bsdtar = need_tool("bsdtar", "libarchive-tools")
    (tmp_path / "spec").write_bytes(spec)
    out = tmp_path / "out.tar"
    subprocess.run([bsdtar, "-cf", str(out), "--format=pax", "@spec"], cwd=tmp_path, check=True)
    rows = []
    with tarfile.open(out) as tar:
        for m in tar:
            if not m.isdir():       # mtree -d creates directories only
                continue
            rel = "" if m.name == "." else m.name
            path = (prefix.rstrip("/") + "/" + rel).rstrip("/") or "/"
            rows.append((path, m.mode, m.uname, m.gname))
    return rows


def rows(entries: list[Entry]) -> list[tuple[str, int, str, str]]:
    return [(e.path, e.mode, e.uname, e.gname) for e in entries]


@pytest.mark.parametrize("name", SPECS)
def test_real_specs_match_libarchive(name, src_samples, tmp_path):
    spec = (src_samples / "etc/mtree" / name).read_bytes()
    ours = mtree_dirs(spec, MTREE_PREFIXES[name], name)
    assert rows(ours) == libarchive_dirs(spec, MTREE_PREFIXES[name], tmp_path)
    assert all(e.kind == "dir" for e in ours)
    assert len({e.path for e in ours}) == len(ours)


def test_prefixes_follow_freebsd_distrib_dirs():
    assert MTREE_PREFIXES["BSD.root.dist"] == "/"
    assert MTREE_PREFIXES["BSD.var.dist"] == "/var"
    assert MTREE_PREFIXES["BSD.usr.dist"] == "/usr"
    assert MTREE_PREFIXES["BSD.include.dist"] == "/usr/include"
    # the spec's first level is `debug` / `lib32`
    assert MTREE_PREFIXES["BSD.debug.dist"] == "/usr/lib"
    assert MTREE_PREFIXES["BSD.lib32.dist"] == "/usr"


def test_static_skeleton(src_samples):
    specs = {n: (src_samples / "etc/mtree" / n).read_bytes() for n in STATIC_SPECS}
    tree = {e.path: e for e in skeleton(specs)}
    assert tree["/tmp"].mode == 0o1777
    assert tree["/var/tmp"].mode == 0o1777
    assert tree["/root"].mode == 0o750
    assert tree["/var/empty"].mode == 0o555
    assert (tree["/var/audit/dist"].uname, tree["/var/audit/dist"].gname) == ("auditdistd", "audit")
    assert "/usr/lib/debug/usr/bin" in tree
    assert "/usr/include/sys" in tree
    assert "/usr/share/misc" in tree
    paths = [e.path for e in skeleton(specs)]
    assert len(paths) == len(set(paths))            # /usr and /var once each
    seen: set[str] = set()
    for p in paths:                                  # parents first
        if p != "/":
            assert (p.rsplit("/", 1)[0] or "/") in seen, p
        seen.add(p)
    with pytest.raises(StepError, match="BSD.var.dist: mtree spec not provided"):
        skeleton({"BSD.root.dist": specs["BSD.root.dist"]})


SYNTHETIC = b"""\
# comment line
/set type=dir uname=root gname=wheel mode=0755
.
    bin         # trailing comment
    ..
    with\\040space mode=0700
    ..
/set uname=operator \\
    gname=operator
    op
        deep    mode=01777
        ..
    ..
/unset gname
    named       gname=staff
    ..
    aFile       type=file mode=0644
    link        type=link link=bin
/unset all
    plain       type=dir uname=root gid=0
    ..
..
"""


def test_grammar():
    got = rows(mtree_dirs(SYNTHETIC, "/srv", "SYNTH"))
    assert got == [
        ("/srv", 0o755, "root", "wheel"),
        ("/srv/bin", 0o755, "root", "wheel"),
        ("/srv/with space", 0o700, "root", "wheel"),
        ("/srv/op", 0o755, "operator", "operator"),
        ("/srv/op/deep", 0o1777, "operator", "operator"),
        ("/srv/named", 0o755, "operator", "staff"),
        ("/srv/plain", 0o755, "root", "wheel"),
    ]


def test_synthetic_matches_libarchive(tmp_path):
    # libarchive knows /set, /unset, continuations and escapes too; comments only
    # on their own lines, so drop the trailing one for this comparison.
    spec = SYNTHETIC.replace(b"         # trailing comment", b"").replace(b"gid=0", b"gname=wheel mode=0755")
    assert rows(mtree_dirs(spec, "/srv", "SYNTH")) == libarchive_dirs(spec, "/srv", tmp_path)


def test_optional_directories_are_not_created():
    spec = b"/set type=dir uname=root gname=wheel\n.\n  opt optional\n    sub\n    ..\n  ..\n  kept\n  ..\n..\n"
    assert [e.path for e in mtree_dirs(spec, "/", "S")] == ["/", "/kept"]


@pytest.mark.parametrize("spec, message", [
    (b"/set type=dir uname=root gname=wheel\n.\n bin colour=red\n", "S: line 3: unknown keyword 'colour'"),
    (b"/set type=dir uname=root gname=wheel\n.\n..\n..\n", "S: line 4: '..' climbs above"),
    (b"/set type=dir uname=root gname=wheel\nbin\n", "S: line 2: the first entry must be '.'"),
    (b"/set type=dir uname=root gname=wheel\n.\n bin mode=rwx\n", "S: line 3: 'bin' has a mode that is not octal"),
    (b"/set type=dir uname=root gname=wheel\n.\n bin mode=17777\n", "S: line 3: 'bin' has an out-of-range mode"),
    (b"/set type=dir uname=root gname=wheel\n.\n bin \\\n", "S: line 3: continuation at end of file"),
    (b"/set type=dir\n.\n", "S: line 2: '.' has no uname= or uid="),
    (b"/set type=dir gname=wheel\n. uid=0\n bin uid=5\n", "S: line 3: 'bin' has numeric uid=5"),
    (b"/set uname=root gname=wheel\n.\n", "S: line 2: '.' has no type= keyword"),
    (b"/set type=door uname=root gname=wheel\n.\n", "S: line 2: '.' has unknown type 'door'"),
    (b"/unset colour\n", "S: line 1: /unset of unknown keyword 'colour'"),
    (b"/frob x\n", "S: line 1: unknown special command '/frob'"),
    (b"/set type=dir uname=root gname=wheel\n.\n a/b\n", "S: line 3: bad file name 'a/b'"),
    (b"/set type=dir uname=root gname=wheel\n.\n..\nbin\n", "S: line 4: entry 'bin' lies outside"),
    (b"/set type=dir uname=root gname=wheel\n.\n b\\q\n", "S: line 3: bad escape"),
    (b"/set type=dir uname= gname=wheel\n", "S: line 1: keyword 'uname' has an empty value"),
    (b"/set type=dir optional=yes\n", "S: line 1: malformed keyword 'optional=yes'"),
    (b"# nothing\n", "S: no entries"),
    (b"\xff\n", "S: not UTF-8 text"),
])
def test_malformed_specs(spec, message):
    with pytest.raises(StepError) as exc:
        mtree_dirs(spec, "/", "S")
    assert str(exc.value).startswith(message)

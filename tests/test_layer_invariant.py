"""The layer invariant, tried with generated packages: nothing ever lies beneath a non-directory.

Hypothesis generates member lists (files, directories, symlinks, hardlinks on a
small set of paths, so that they collide) spread over packages and layers, in
random orders.  Each layer is built the way the pipeline builds it (real .pkg
files, install_packages, check_structure, write_tree), the next layer over the
JSON round trip of the view the previous one hands down.  Then:

- when the pipeline accepts the layers, replaying their tar members (whiteouts
  included) as an extractor does gives a tree with no entry beneath a
  non-directory;
- whether it accepts them does not depend on the order of members or of
  packages: the same content shuffled and renamed gets the same verdict;
- a refusal is a one-line LayerError naming the package at fault, never anything else.
"""
from __future__ import annotations

import gzip
import io
import posixpath
import random
import tarfile
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from release.cache import PackageCache
from release.compress import compressor_identity
from release.errors import LayerError
from release.layer import install_packages
from release.layerblob import write_layer_blob
from release.demo.pkgtar import Member
from release.demo.pkgwriter import write_package
from release.records import LockedPackage
from release.tree import LayerTree, ParentView
from release.workspace import Workspace

SDE = 1_700_000_000
PASSWD = b"root:*:0:0::0:0:Charlie &:/root:/bin/sh\n"
GROUP = b"wheel:*:0:root\n"
KINDS = ("file", "dir", "symlink", "hardlink")
COMPRESSION = compressor_identity("tar+gzip", gzip_level=1, zstd_level=3)

paths = st.lists(st.sampled_from(("a", "b", "etc")), min_size=1, max_size=3).map(lambda p: "/" + "/".join(p))
members = st.lists(st.tuples(paths, st.sampled_from(KINDS), st.sampled_from(("/etc", "a", "../b"))),
                   min_size=1, max_size=5, unique_by=lambda m: m[0])
layers = st.lists(st.lists(members, min_size=1, max_size=3), min_size=1, max_size=3)


def package_members(spec: list[tuple[str, str, str]]) -> list[Member]:
    """Members as write_package takes them, in *spec*'s order but for hardlinks, which come last.

    A hardlink links to the package's first file by path (a hardlink in a package without a file
    becomes a file), so what a package holds does not depend on the order of *spec*: the
    shuffled build gets the same content.
    """
    out: list[Member] = []
    links: list[Member] = []
    files = sorted(path for path, kind, _ in spec if kind == "file")
    for path, kind, target in spec:
        if kind == "hardlink" and not files:
            kind = "file"
        if kind == "file":
            out.append(Member(path, "file", 0o644, data=path.encode()))
        elif kind == "dir":
            out.append(Member(path, "dir", 0o755))
        elif kind == "symlink":
            out.append(Member(path, "symlink", 0o755, target=target))
        else:
            links.append(Member(path, "hardlink", 0o644, target=files[0]))
    return out + links


def build(root: Path, spec: list[list[list[tuple[str, str, str]]]], shuffle: random.Random | None = None
          ) -> list[bytes] | LayerError:
    """Build the layers of *spec*; their tar bytes, or the LayerError that refused one."""
    ws = Workspace(root)
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    view = ParentView(files={"/etc/master.passwd": PASSWD, "/etc/group": GROUP})
    tars = []
    for n, layer in enumerate(spec):
        layer = [list(p) for p in layer]
        names = [f"FreeBSD-p{n}-{i}" for i in range(len(layer))]
        if shuffle is not None:          # other member and package orders, other install order (by name)
            for p in layer:
                shuffle.shuffle(p)
            shuffle.shuffle(names)
        packages = []
        for name, content in zip(names, layer, strict=True):
            staged = root / "staging" / f"{name}.pkg"
            manifest = {"name": name, "origin": "base", "version": "1", "comment": "c", "maintainer": "m",
                        "www": "w", "abi": "FreeBSD:14:amd64", "arch": "freebsd:14:x86:64", "prefix": "/",
                        "desc": "d"}
            info = write_package(staged, manifest, package_members(content), generation="new", level=1)
            dest = PackageCache(ws.cache()).path_for(info.sha256)
            dest.parent.mkdir(parents=True, exist_ok=True)
            staged.replace(dest)
            packages.append(LockedPackage(name=name, version="1", sum=info.sha256, path=f"{name}.pkg"))
        with tempfile.TemporaryFile(dir=root / "tmp") as spool:
            tree = LayerTree(view, spool)
            try:
                install_packages(ws, tree, packages, scripts="builtin", ignore_scripts=(), byte_order="little",
                                 sde=SDE)
                tree.check_structure()
            except LayerError as e:
                return e
            blob = write_layer_blob(ws.blobs(), tree, sde=SDE, compression=COMPRESSION)
            view = ParentView.from_json(tree.child_view().to_json())
        tars.append(gzip.decompress(ws.blob(blob["digest"]).read_bytes()))
    return tars


def beneath_a_non_directory(tars: list[bytes]) -> list[str]:
    """Replay the layers as an extractor does; every path that has a non-directory above it."""
    tree: dict[str, str] = {}
    for data in tars:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for m in tar:
                path = "/" + m.name.rstrip("/")
                base = posixpath.basename(path)
                if base.startswith(".wh."):
                    gone = posixpath.join(posixpath.dirname(path), base[4:])
                    tree = {p: k for p, k in tree.items() if p != gone and not p.startswith(gone + "/")}
                    continue
                tree[path] = "dir" if m.isdir() else "other"
    bad = []
    for path in tree:
        parent = posixpath.dirname(path)
        while parent != "/":
            if tree.get(parent, "dir") != "dir":
                bad.append(f"{path} beneath {parent}")
            parent = posixpath.dirname(parent)
    return bad


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(spec=layers, seed=st.integers(0, 2 ** 32 - 1))
def test_accepted_layers_never_hold_an_entry_beneath_a_non_directory(spec, seed) -> None:
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        first = build(Path(a), spec)
        again = build(Path(b), spec, shuffle=random.Random(seed))
    if isinstance(first, LayerError):
        message = str(first)
        assert "\n" not in message and "FreeBSD-p" in message
    else:
        assert beneath_a_non_directory(first) == []
    # the verdict does not depend on the order of members, packages or install
    assert isinstance(first, LayerError) == isinstance(again, LayerError), (first, again)
    if not isinstance(again, LayerError):
        assert beneath_a_non_directory(again) == []

"""`certctl rehash` run by a package script in a later layer, as the release's certctl does it.

FreeBSD-certctl's (14.x: FreeBSD-caroot's) post-install script runs
`certctl rehash` over the image as it stands, after earlier layers already
filled /etc/ssl.  What that leaves depends on the certctl generation of the
release being built (certctl.style_for(), from usr.sbin/certctl of freebsd-src):

- symlink (13.x certctl.sh): only the old hash *symlinks* go (`find -type link
  -delete`); regular files stay (e.g. the static flavour's copies) and a new link
  takes the first free `.N` suffix, so a certificate the static layer already
  has gets a second name.
- link (14.x certctl.sh): every file and link in /etc/ssl/certs and
  /etc/ssl/untrusted goes (`find \\( -type f -or -type l \\) -delete`), then the
  certificates of /usr/share/certs are installed again, each once.  A hard link
  to a file of an earlier layer cannot be expressed in a layer, so it becomes a
  copy (what a layered build of FreeBSD's records too).  /etc/ssl/cert.pem is
  not certctl.sh's and stays as it is.
- copy-sticky (certctl.c as released in 15.0): the installed certificates
  (/etc/ssl/certs, following links) join those of /usr/share/certs, untrusted
  ones (/etc/ssl/untrusted and the legacy /etc/ssl/blacklisted) are left out,
  and the hash directories are rewritten to exactly that set, each certificate
  once, with the bundle /etc/ssl/cert.pem regenerated over all of them.
- copy (certctl.c of stable/15, releng/15.1 and main, since "Unstickify
  (un)trusted certificates"): the same, but from /usr/share/certs alone, so
  what earlier layers installed from elsewhere is removed.

Only /usr/share/certs is read as a source: ${LOCALBASE}/share/certs and
${LOCALBASE}/etc/ssl are empty in a base image.
"""
from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Protocol

from ..tree import LayerTree
from . import certctl
from .certctl import CERT_MODE, DIR_MODE, SHARE_CERTS, SSL_DIR
from .entries import Entry

Put = Callable[[LayerTree, Entry, str], None]     # install.put_with_parents(tree, entry, owner)


class Rehash(Protocol):
    """certctl.rehash, or a cache in front of it (release.builtincache)."""

    def __call__(self, trusted: Mapping[str, bytes], untrusted: Mapping[str, bytes], *, layout: str = ...,
                 style: str = ..., install_sources: bool = ...) -> list[Entry]: ...


def rehash_tree(tree: LayerTree, owner: str, style: str, put: Put, rehash: Rehash = certctl.rehash) -> None:
    """Apply `certctl rehash` of generation *style* to the layer *tree*."""
    if style == "symlink":
        _symlinks(tree, owner, put, rehash)
    elif style == "link":
        _hard_links(tree, owner, put, rehash)
    else:
        _rewrite(tree, owner, put, rehash, sticky=style == "copy-sticky")


def _in(directory: str, path: str) -> bool:
    return path.startswith(directory + "/")


def _remove_installed(tree: LayerTree, owner: str, directories: tuple[str, ...], kinds: tuple[str, ...]) -> None:
    """`find DIR -type ... -delete` over this layer and the layers below (whiteouts)."""
    lower = list(tree.parent.symlinks) + (list(tree.parent.files) if "file" in kinds else [])
    for directory in directories:
        for path, item in list(tree.items.items()):
            if _in(directory, path) and item.entry.kind in kinds:
                tree.remove(path, owner)
        for path in lower:
            if _in(directory, path) and path not in tree.removed:
                tree.remove(path, owner)


def _ensure_dir(tree: LayerTree, owner: str, path: str, put: Put) -> None:
    if path not in tree.items and path not in tree.parent.dirs:
        put(tree, Entry(path, "dir", DIR_MODE), owner)


def _symlinks(tree: LayerTree, owner: str, put: Put, rehash: Rehash) -> None:
    """13.x: old symlinks go, regular files stay, new links take the first free suffix."""
    layout = "blacklisted" if tree.listdir(f"{SHARE_CERTS}/blacklisted") else "untrusted"
    trusted = tree.listdir(f"{SHARE_CERTS}/trusted")
    untrusted = tree.listdir(f"{SHARE_CERTS}/{layout}")
    directories = (f"{SSL_DIR}/certs", f"{SSL_DIR}/{layout}")
    _remove_installed(tree, owner, directories, ("symlink",))
    taken: dict[str, set[str]] = {d: set(tree.listdir(d)) for d in directories}
    for e in rehash(trusted, untrusted, layout=layout, style="symlink", install_sources=True):
        if e.path.startswith(SHARE_CERTS):
            continue            # the certificates themselves are the packages' own files
        if e.kind == "dir":
            _ensure_dir(tree, owner, e.path, put)
            continue
        directory, name = posixpath.split(e.path)
        stem, _, n = name.rpartition(".")
        number = int(n)
        while f"{stem}.{number}" in taken[directory]:
            number += 1
        taken[directory].add(f"{stem}.{number}")
        put(tree, replace(e, path=f"{directory}/{stem}.{number}"), owner)


def _hard_links(tree: LayerTree, owner: str, put: Put, rehash: Rehash) -> None:
    """14.x: everything installed goes; each certificate of /usr/share/certs comes back once."""
    _remove_installed(tree, owner, (f"{SSL_DIR}/certs", f"{SSL_DIR}/untrusted"), ("file", "symlink", "hardlink"))
    sources = {f"{SHARE_CERTS}/{sub}": tree.listdir(f"{SHARE_CERTS}/{sub}") for sub in ("trusted", "untrusted")}
    for e in rehash(sources[f"{SHARE_CERTS}/trusted"], sources[f"{SHARE_CERTS}/untrusted"],
                    style="link", install_sources=True):
        if e.path.startswith(SHARE_CERTS):
            continue
        if e.kind == "dir":
            _ensure_dir(tree, owner, e.path, put)
            continue
        if e.kind == "hardlink":
            source = tree.items.get(e.target)
            if source is not None and source.entry.kind == "file":
                e = replace(e, mode=source.entry.mode, uname=source.entry.uname, gname=source.entry.gname)
            else:       # the file is in a lower layer: the link is a copy of it here
                directory, name = posixpath.split(e.target)
                e = Entry(e.path, "file", CERT_MODE, data=sources[directory][name])
        put(tree, e, owner)


def _installed(tree: LayerTree, directory: str) -> dict[str, bytes]:
    """What certctl.c's fts (FTS_LOGICAL) reads in *directory*: files, and files behind symlinks."""
    files = dict(tree.listdir(directory))
    links = {p: t for p, t in tree.parent.symlinks.items() if p not in tree.removed}
    links.update({p: i.entry.target for p, i in tree.items.items() if i.entry.kind == "symlink"})
    for path, target in links.items():
        if posixpath.dirname(path) == directory:
            data = tree.read(posixpath.normpath(posixpath.join(directory, target)))
            if data is not None:
                files[posixpath.basename(path)] = data
    return files


def _readable(files: dict[str, bytes]) -> dict[str, bytes]:
    """certctl.c warns about and skips files without a PEM certificate."""
    return {n: d for n, d in files.items() if certctl.has_certificate(d)}


def _rewrite(tree: LayerTree, owner: str, put: Put, rehash: Rehash, *, sticky: bool) -> None:
    """15.x: the shipped (and, *sticky*, installed) certificates, written once each, and the bundle."""
    # file names only matter for error messages; prefixes keep the sources apart
    untrusted = {f"u-{n}": d for n, d in _readable(tree.listdir(f"{SHARE_CERTS}/untrusted")).items()}
    trusted = {f"t-{n}": d for n, d in _readable(tree.listdir(f"{SHARE_CERTS}/trusted")).items()}
    if sticky:
        for prefix, directory in (("iu", f"{SSL_DIR}/untrusted"), ("ib", f"{SSL_DIR}/blacklisted")):
            untrusted.update({f"{prefix}-{n}": d for n, d in _readable(_installed(tree, directory)).items()})
        trusted.update({f"it-{n}": d for n, d in _readable(_installed(tree, f"{SSL_DIR}/certs")).items()})
    _remove_installed(tree, owner, (f"{SSL_DIR}/certs", f"{SSL_DIR}/untrusted"), ("file", "symlink", "hardlink"))
    for e in rehash(trusted, untrusted, style="copy", install_sources=False):
        if e.kind == "dir":
            _ensure_dir(tree, owner, e.path, put)
        else:
            put(tree, e, owner)

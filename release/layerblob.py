"""A LayerTree written as the layer blob: sorted, deterministic tar through the compressor.

Every parent directory is written (with the lower layers' metadata where they
have the directory), removed lower paths become OCI whiteouts, a hardlink
group's data is carried by the member that comes first in tar order, and
owners are numeric ids from the *image's* master.passwd and group.
"""
from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from .accounts import lookup, name_to_id
from .builtins.entries import Entry
from .compress import open_blob_writer
from .errors import LayerError
from .tarstream import TarEntry, TarStream
from .tree import Item, LayerTree, entries_sorted


def write_layer_blob(blobs: Path, tree: LayerTree, *, compression: dict[str, Any], sde: int,
                     threads: int = 0) -> dict[str, Any]:
    """Write the tree as a layer blob into *blobs*; returns digest, diff_id, size and media type.

    *compression* is the compressor's identity (compress.compressor_identity);
    *threads* compress gzip blocks (0: every CPU), which never changes the bytes.
    """
    users, groups = name_to_id(tree.read("/etc/master.passwd"), tree.read("/etc/group"))
    entries = _with_parents_and_whiteouts(tree, sde)
    canonical = _hardlink_sources(tree)
    media = compression["media"]
    writer = open_blob_writer(blobs, media, gzip_level=compression["level"] if media == "tar+gzip" else 6,
                              zstd_level=compression["level"] if media == "tar+zstd" else 3,
                              gzip_engine=compression.get("engine", "zlib"),
                              gzip_block_size=compression.get("blocks", 0), threads=threads)
    try:
        tar = TarStream(writer)
        for path in entries_sorted(entries):
            item = entries[path]
            e = item.entry
            kind, link = e.kind, e.target
            if kind == "hardlink" or path in canonical:
                source = canonical.get(path) or canonical.get(e.target, e.target)
                if source != path:
                    kind, link = "hardlink", source.lstrip("/")
                else:
                    kind, link = "file", ""
            where = f"{item.owner}: {path}"
            uid, gid = lookup(users, e.uname, "user", where), lookup(groups, e.gname, "group", where)
            # a hardlink carrying its group's data reads the file it links to (_hardlink_sources checked it is one)
            data_item = tree.items[e.target] if (e.kind == "hardlink" and kind == "file") else item
            size = data_item.size if kind == "file" else 0
            te = TarEntry(name=path.lstrip("/"), kind=kind, mode=e.mode, uid=uid, gid=gid, uname=e.uname,
                          gname=e.gname, mtime=sde if e.mtime is None else e.mtime, size=size,
                          linkname=link)
            tar.add(te, tree.open(data_item) if kind == "file" else None)
        tar.close()
        blob = writer.finish()
    except BaseException:
        writer.abort()
        raise
    return {"digest": blob.digest, "diff_id": blob.diff_id, "size": blob.size, "media_type": blob.media_type}


def _with_parents_and_whiteouts(tree: LayerTree, sde: int) -> dict[str, Item]:
    """The layer's entries plus the directories above them and whiteouts for removed paths."""
    out = dict(tree.items)
    for path in sorted(tree.removed):
        if path not in out:
            parent, base = posixpath.split(path)
            wh = f"{parent.rstrip('/')}/.wh.{base}"
            out[wh] = Item(Entry(wh, "file", 0o644, mtime=sde), "whiteout", False)
    for path in list(out):
        parent = posixpath.dirname(path)
        while parent != "/" and parent not in out:
            if parent in tree.parent.dirs:
                out[parent] = Item(tree.parent.dir_entry(parent), "lower layer", False)
            else:
                out[parent] = Item(Entry(parent, "dir", 0o755, mtime=sde), "implied", False)
            parent = posixpath.dirname(parent)
    return out


def _hardlink_sources(tree: LayerTree) -> dict[str, str]:
    """For each hardlink group, the member written first in tar order carries the data."""
    groups: dict[str, list[str]] = {}
    for path, item in tree.items.items():
        if item.entry.kind == "hardlink":
            target = item.entry.target
            if target not in tree.items or tree.items[target].entry.kind != "file":
                raise LayerError(f"{item.owner}: {path}: hardlink to {target}, which is not a file of this layer")
            groups.setdefault(target, [target]).append(path)
    canonical: dict[str, str] = {}
    for members in groups.values():
        first = entries_sorted(members)[0]
        for m in members:
            canonical[m] = first
    return canonical

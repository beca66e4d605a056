"""What the pkg database needs to know of each installed package, remembered by its sum.

A flavour that ships pkg gets /var/db/pkg/local.sqlite listing every package of
the image, its parents' included.  The database needs each package's manifest
and the metadata pkg records per installed file (owner, group, mode, mtime,
symlink target; older manifests lack some of it, the tar headers have it).
The layer that installs a package records both under cache/meta/<sum>.json as
it streams the package, so a child's database does not read its parents'
packages again.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterable

from .builtins.entries import Entry
from .builtins.pkgdb import DB_MODE, write_pkgdb
from .cache import PackageCache
from .errors import LayerError
from .fsutil import pretty_json, read_json, write_if_changed
from .pkgfile import open_package
from .records import LockedPackage
from .tree import LayerTree
from .workspace import Workspace

PKGDB_PATH = "/var/db/pkg/local.sqlite"


def cached_package(ws: Workspace, p: LockedPackage) -> Path:
    return PackageCache(ws.cache()).path_for(p.sum)


def _meta_path(ws: Workspace, p: LockedPackage) -> Path:
    return ws.package_meta(cached_package(ws, p).stem)


def _manifest(ws: Workspace, p: LockedPackage) -> dict:
    meta = _meta_path(ws, p)
    if meta.is_file():
        return read_json(meta)["manifest"]
    with open_package(cached_package(ws, p), p.label) as reader:
        return reader.manifest


def install_order(ws: Workspace, packages: Iterable[LockedPackage]) -> list[LockedPackage]:
    """Dependencies before dependants (as pkg installs them), otherwise by name."""
    by_name = {p.name: p for p in packages}
    deps = {}
    for p in by_name.values():
        deps[p.name] = sorted(d for d in (_manifest(ws, p).get("deps") or {}) if d in by_name)
    done: list[str] = []
    pending = sorted(by_name)
    while pending:
        ready = [n for n in pending if all(d in done for d in deps[n])]
        if not ready:
            raise LayerError(f"dependency cycle among {', '.join(pending)}")
        done.append(ready[0])
        pending.remove(ready[0])
    return [by_name[n] for n in done]


def tar_meta_of(entry) -> dict:
    """What pkg records of an installed file that an old-generation manifest lacks (from its tar header)."""
    return {"uname": entry.uname, "gname": entry.gname, "perm": f"{entry.mode:04o}", "mtime": entry.mtime,
            "symlink_target": entry.target if entry.kind == "symlink" else None}


def remember(ws: Workspace, p: LockedPackage, manifest: dict, tar_meta: dict) -> dict:
    """Remember a package's manifest and tar-header metadata (keyed by its sum) for pkgdb."""
    meta = {"manifest": manifest, "tar_meta": tar_meta}
    write_if_changed(_meta_path(ws, p), pretty_json(meta))
    return meta


def _load_meta(ws: Workspace, p: LockedPackage) -> dict:
    path = _meta_path(ws, p)
    if path.is_file():
        return read_json(path)
    tar_meta = {}
    with open_package(cached_package(ws, p), p.label) as reader:
        for entry, stream in reader.entries():
            if stream is not None:
                while stream.read(1 << 20):
                    pass
            tar_meta[entry.path] = tar_meta_of(entry)
        return remember(ws, p, reader.manifest, tar_meta)


def write_pkgdb_entry(ws: Workspace, tree: LayerTree, packages: list[LockedPackage], *, schema: int, time: int,
                      metas: dict[str, dict]) -> None:
    """/var/db/pkg/local.sqlite listing every package of the image, parents' first."""
    manifests = []
    for p in packages:
        meta = metas.get(p.sum) or _load_meta(ws, p)
        manifest = dict(meta["manifest"])
        manifest["_tar_meta"] = meta["tar_meta"]
        manifests.append(manifest)
    ws.tmp().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ws.tmp()) as tmp:
        dest = Path(tmp) / "local.sqlite"
        write_pkgdb(dest, manifests, time=time, schema=schema)
        data = dest.read_bytes()
    for d in ("/var", "/var/db", "/var/db/pkg"):
        if d not in tree.items and d not in tree.parent.dirs:
            tree.put(Entry(d, "dir", 0o755), "pkg database")
    tree.put(Entry(PKGDB_PATH, "file", DB_MODE, data=data), "pkg database")

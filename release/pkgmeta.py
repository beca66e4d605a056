"""What the pkg database needs to know of each installed package, remembered by its sum.

A flavour that ships pkg gets /var/db/pkg/local.sqlite listing every package of
the image, its parents' included.  pkg registers a package from its manifest
(before extracting it) and then stores the text of its @config files from the
archive (for its three-way merge on upgrade), so the database needs both.  The
layer that installs a package records them under cache/meta/<sum>.json as it
streams the package, so a child's database does not read its parents'
packages again.
"""
from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

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


def _manifest(ws: Workspace, p: LockedPackage) -> dict[str, Any]:
    meta = _meta_path(ws, p)
    if meta.is_file():
        manifest: dict[str, Any] = read_json(meta)["manifest"]
        return manifest
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


def config_text(data: bytes) -> str:
    """An @config file's bytes as JSON-safe text for the package's meta record."""
    return data.decode("utf-8", "surrogateescape")


def remember(ws: Workspace, p: LockedPackage, manifest: dict[str, Any], config: dict[str, str]) -> dict[str, Any]:
    """Remember a package's manifest and the texts of its @config files (keyed by its sum) for pkgdb."""
    meta = {"manifest": manifest, "config": config}
    write_if_changed(_meta_path(ws, p), pretty_json(meta))
    return meta


def _load_meta(ws: Workspace, p: LockedPackage) -> dict[str, Any]:
    path = _meta_path(ws, p)
    if path.is_file():
        meta: dict[str, Any] = read_json(path)
        if "config" in meta:
            return meta
    config: dict[str, str] = {}
    with open_package(cached_package(ws, p), p.label) as reader:
        for entry, stream in reader.entries():
            if stream is not None and entry.config:
                config[entry.path] = config_text(stream.read())
            elif stream is not None:
                while stream.read(1 << 20):
                    pass
        return remember(ws, p, reader.manifest, config)


def write_pkgdb_entry(ws: Workspace, tree: LayerTree, packages: list[LockedPackage], *, schema: int, time: int,
                      repository: str | None, metas: dict[str, dict[str, Any]]) -> None:
    """/var/db/pkg/local.sqlite listing every package of the image, parents' first.

    A package the lock pulled in as a dependency (not asked for by name) is
    recorded as pkg records it: automatic.
    """
    manifests = []
    for p in packages:
        meta = metas.get(p.sum) or _load_meta(ws, p)
        manifests.append(dict(meta["manifest"], _automatic=(p.reason or "requested") != "requested",
                              _config_content={k: v.encode("utf-8", "surrogateescape")
                                               for k, v in meta["config"].items()}))
    ws.tmp().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ws.tmp()) as tmp:
        dest = Path(tmp) / "local.sqlite"
        write_pkgdb(dest, manifests, time=time, schema=schema, repository=repository)
        data = dest.read_bytes()
    for d in ("/var", "/var/db", "/var/db/pkg"):
        if d not in tree.items and d not in tree.parent.dirs:
            tree.put(Entry(d, "dir", 0o755), "pkg database")
    tree.put(Entry(PKGDB_PATH, "file", DB_MODE, data=data), "pkg database")

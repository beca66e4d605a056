"""A layer's plan: every input that decides its bytes, as one canonical JSON value.

The plan is what the layer task depends on and what names a built layer (its
identity).  It holds this flavour's packages (name, version, sum, cache path),
its steps and the git object ids of the src files they read, the script policy,
SOURCE_DATE_EPOCH, the compression settings, the digest of the view of the
layers below, and — only for flavours that ship pkg — the whole image's package
list, because /var/db/pkg/local.sqlite lists every package of the image.
Flavours that run the image's own programs (scripts = "emulate", run steps)
also name the executor and every parent layer's digest (see _emulation).
"""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from .builtins.entries import Entry
from .builtins.pkgdb import DB_MODE, write_pkgdb
from .cache import PackageCache
from .compress import compressor_identity
from .config import Config
from .emulate import choose_method, needs_emulation
from .errors import LayerError
from .fsutil import file_digest, pretty_json, read_json, read_record, write_if_changed
from .pkgfile import open_package
from .sources import src_paths
from .tree import LayerTree
from .workspace import Workspace

PLAN_VERSION = 1
PKGDB_PATH = "/var/db/pkg/local.sqlite"


def ships_pkg(cfg: Config, release: str, flavour: str) -> bool:
    """A flavour whose image (with its parents) requests a pkg package gets a pkg database."""
    r = cfg.release(release)
    wanted = set(cfg.pkgbase.pkg_packages)
    return any(wanted.intersection(r.flavour_packages(f)) for f in cfg.chain(flavour))


def plan_layer(cfg: Config, release: str, arch: str, flavour: str) -> dict:
    ws = Workspace.of(cfg)
    r = cfg.release(release)
    f = cfg.flavours[flavour]
    own = read_record(ws.packages_json(release, arch, flavour), f"lock:{release}:{arch}")
    src_inputs = read_record(ws.src_inputs(release), "the fetch task of the release's src")
    cache = PackageCache(ws.cache())
    p = cfg.pipeline
    steps = [s.as_dict() for s in f.steps]
    wanted_src = {path: oid for path, oid in src_inputs["inputs"].items()
                  if path in _step_src_paths(cfg, release, flavour)}
    view = ws.flavour(release, arch, f.parent) / "view.json" if f.parent else None
    plan = {
        "plan_version": PLAN_VERSION,
        "release": release, "arch": arch, "flavour": flavour,
        "byte_order": cfg.architectures[arch].byte_order,
        "packages": [_pkg(ws, cache, p_) for p_ in own["packages"]],
        "steps": steps,
        "scripts": f.scripts, "ignore_scripts": list(f.ignore_scripts),
        "src": wanted_src,
        "source_date_epoch": src_inputs["source_date_epoch"],
        "compression": compressor_identity(p.layer_compression, gzip_level=p.gzip_level,
                                           zstd_level=p.zstd_level, gzip_engine=p.gzip_engine),
        "parent": f.parent,
        "parent_view": file_digest(view) if view else None,
        "pkgdb": _pkgdb(cfg, ws, cache, release, arch, flavour),
        "comment": f.description,
        "repo": r.repo,
    }
    if needs_emulation(f):
        plan["emulation"] = _emulation(ws, release, arch, [c.name for c in cfg.chain(flavour)[:-1]])
    return plan


def _emulation(ws: Workspace, release: str, arch: str, parents: list[str]) -> dict:
    """What a layer that runs the image's own programs adds to its plan.

    The programs see the whole image, not just the view children normally
    depend on, so every parent layer's digest is an input; and a different
    QEMU (or running natively instead of emulated) may act differently, so the
    executor's method and the emulator's version are inputs too.  The
    emulator's file digest is not: a distribution rebuild of the same QEMU
    version should not rebuild every emulated layer.
    """
    layers = [read_record(ws.flavour(release, arch, p) / "layer.json", f"layer:{release}:{arch}:{p}")
              for p in parents]
    return {"executor": choose_method(arch).identity(),
            "parent_layers": [{"digest": x["digest"], "media_type": x["media_type"]} for x in layers]}


def _step_src_paths(cfg: Config, release: str, flavour: str) -> set[str]:
    """The src paths this flavour's own steps read (a subset of the release's)."""
    only = dataclasses.replace(cfg.release(release), flavours=(flavour,), fingerprints="")
    return set(src_paths(cfg, only))


def _pkg(ws: Workspace, cache: PackageCache, p: dict) -> dict:
    return {"name": p["name"], "version": p["version"], "sum": p["sum"],
            "cache": str(cache.path_for(p["sum"]).relative_to(ws.root))}


def _pkgdb(cfg: Config, ws: Workspace, cache: PackageCache, release: str, arch: str, flavour: str) -> dict | None:
    if not ships_pkg(cfg, release, flavour):
        return None
    chain = []
    for f in cfg.chain(flavour):
        for p in read_record(ws.packages_json(release, arch, f.name), f"lock:{release}:{arch}")["packages"]:
            chain.append(_pkg(ws, cache, p))
    return {"schema": cfg.release(release).pkgdb_schema, "packages": chain}


def read_view(ws: Workspace, plan: dict) -> dict | None:
    if not plan["parent"]:
        return None
    return read_record(ws.flavour(plan["release"], plan["arch"], plan["parent"]) / "view.json",
                       f"layer:{plan['release']}:{plan['arch']}:{plan['parent']}")


def install_order(ws: Workspace, packages: list[dict]) -> list[dict]:
    """Dependencies before dependants (as pkg installs them), otherwise by name."""
    by_name = {p["name"]: p for p in packages}
    deps = {}
    for p in packages:
        manifest = _manifest(ws, p)
        deps[p["name"]] = sorted(d for d in (manifest.get("deps") or {}) if d in by_name)
    done: list[str] = []
    pending = sorted(by_name)
    while pending:
        ready = [n for n in pending if all(d in done for d in deps[n])]
        if not ready:
            raise LayerError(f"dependency cycle among {', '.join(pending)}")
        done.append(ready[0])
        pending.remove(ready[0])
    return [by_name[n] for n in done]


def _meta_path(ws: Workspace, p: dict) -> Path:
    return ws.root / "cache" / "meta" / (Path(p["cache"]).stem + ".json")


def _manifest(ws: Workspace, p: dict) -> dict:
    meta = _meta_path(ws, p)
    if meta.is_file():
        return read_json(meta)["manifest"]
    with open_package(ws.root / p["cache"], f"{p['name']}-{p['version']}") as reader:
        return reader.manifest


def tar_meta_of(entry) -> dict:
    """What pkg records of an installed file that an old-generation manifest lacks (from its tar header)."""
    return {"uname": entry.uname, "gname": entry.gname, "perm": f"{entry.mode:04o}", "mtime": entry.mtime,
            "symlink_target": entry.target if entry.kind == "symlink" else None}


def package_meta(ws: Workspace, p: dict, manifest: dict, tar_meta: dict) -> dict:
    """Remember a package's manifest and tar-header metadata (keyed by its sum) for pkgdb."""
    meta = {"manifest": manifest, "tar_meta": tar_meta}
    write_if_changed(_meta_path(ws, p), pretty_json(meta))
    return meta


def _load_meta(ws: Workspace, p: dict) -> dict:
    path = _meta_path(ws, p)
    if path.is_file():
        return read_json(path)
    tar_meta = {}
    with open_package(ws.root / p["cache"], f"{p['name']}-{p['version']}") as reader:
        for entry, stream in reader.entries():
            if stream is not None:
                while stream.read(1 << 20):
                    pass
            tar_meta[entry.path] = tar_meta_of(entry)
        return package_meta(ws, p, reader.manifest, tar_meta)


def write_pkgdb_entry(ws: Workspace, tree: LayerTree, plan: dict, metas: dict[str, dict]) -> None:
    """/var/db/pkg/local.sqlite listing every package of the image, parents' first."""
    packages = []
    for p in plan["pkgdb"]["packages"]:
        meta = metas.get(p["sum"]) or _load_meta(ws, p)
        manifest = dict(meta["manifest"])
        manifest["_tar_meta"] = meta["tar_meta"]
        packages.append(manifest)
    with tempfile.TemporaryDirectory(dir=ws.root / "tmp") as tmp:
        dest = Path(tmp) / "local.sqlite"
        write_pkgdb(dest, packages, time=plan["source_date_epoch"], schema=plan["pkgdb"]["schema"])
        data = dest.read_bytes()
    for d in ("/var", "/var/db", "/var/db/pkg"):
        if d not in tree.items and d not in tree.parent.dirs:
            tree.put(Entry(d, "dir", 0o755), "pkg database")
    tree.put(Entry(PKGDB_PATH, "file", DB_MODE, data=data), "pkg database")

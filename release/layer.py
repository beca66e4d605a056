"""One flavour's layer for one release and architecture, streamed from the package cache.

build_layer() assembles the layer (tree.LayerTree: packages streamed once into a
spool, install steps applied as values), then writes it as a sorted,
deterministic tar through the configured compressor into the content-addressed
blob store, computing digest and diff_id on the way.  No host directory is ever
populated, so owners come from the *image's* passwd/group, not the builder's.

A layer's identity is the sha256 of its plan (the canonical JSON of every input:
packages and their sums, steps, the src objects they read, SOURCE_DATE_EPOCH,
compression, and the view of the layers below).  Built layers are remembered
under that identity, so an unchanged plan never rebuilds and a rebuild from
scratch lands on the same bytes.
"""
from __future__ import annotations

import logging
import posixpath
import tempfile
from pathlib import Path

from .accounts import name_to_id
from .builtins.entries import Entry
from .builtins.scripts import recognise
from .compress import open_blob_writer
from .config import Config
from .emulate import Emulation, emulation_for, install_scripts
from .errors import LayerError, StepError
from .fsutil import identity, pretty_json, read_json, write_if_changed
from .install import PRE_PACKAGE_STEPS, Context, run_config_step, run_script_step
from .layerplan import install_order, package_meta, plan_layer, read_view, tar_meta_of, write_pkgdb_entry
from .pkgfile import open_package
from .tarstream import TarEntry, TarStream
from .tree import Item, LayerTree, ParentView, entries_sorted
from .workspace import Workspace

log = logging.getLogger(__name__)


def build_layer(cfg: Config, release: str, arch: str, flavour: str) -> dict:
    """Build (or reuse) the layer; write layer.json, view.json and index.json next to the plan."""
    ws = Workspace.of(cfg)
    plan = plan_layer(cfg, release, arch, flavour)
    ident = identity(plan)
    record_path = ws.root / "layers" / f"{ident}.json"
    record = _reusable(ws, record_path)
    reused = record is not None
    if record is None:
        record = _assemble(cfg, ws, plan, ident)
        write_if_changed(record_path, pretty_json(record))
    out = ws.flavour(release, arch, flavour)
    write_if_changed(out / "layer.json", pretty_json(record["layer"]))
    write_if_changed(out / "view.json", pretty_json(record["view"]))
    write_if_changed(out / "index.json", pretty_json(record["index"]))
    return {"digest": record["layer"]["digest"], "reused": reused}


def _reusable(ws: Workspace, path: Path) -> dict | None:
    try:
        record = read_json(path)
    except (OSError, ValueError):
        return None
    return record if ws.blob(record["layer"]["digest"]).is_file() else None


def _assemble(cfg: Config, ws: Workspace, plan: dict, ident: str) -> dict:
    (ws.root / "tmp").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=ws.root / "tmp") as spool:
        tree = LayerTree(ParentView.from_json(read_view(ws, plan)), spool)
        ctx = _context(cfg, plan)
        steps = [s for s in cfg.flavours[plan["flavour"]].steps]
        emulation = emulation_for(plan, ws.root / "tmp", ws.blobs())
        for step in steps:
            if step.kind in PRE_PACKAGE_STEPS:
                run_config_step(tree, step, ctx)
        metas = install_packages(ws, tree, plan, ctx, emulation)
        for step in steps:
            if step.kind not in PRE_PACKAGE_STEPS and step.kind != "run":
                run_config_step(tree, step, ctx)
        run_steps = [s for s in steps if s.kind == "run"]
        if run_steps and emulation is not None:     # the plan has an executor whenever there are run steps
            emulation.run_steps(tree, run_steps)
        if plan["pkgdb"]:
            write_pkgdb_entry(ws, tree, plan, metas)
        blob = write_tree(ws, tree, plan)
        view, index = tree.child_view().to_json(), tree.package_index()
    layer = {"identity": ident, **blob, "created_by": _created_by(plan), "comment": plan["comment"],
             "packages": [p["name"] for p in plan["packages"]], "scripts": plan.get("script_log", [])}
    return {"layer": layer, "view": view, "index": index}


def _context(cfg: Config, plan: dict) -> Context:
    from .sources import mirror_for, read_src  # local: only layers that read src open the mirror
    r = cfg.release(plan["release"])
    mirror = mirror_for(cfg, r)
    # The commit only locates the src objects the plan names; it is not part of the identity.
    commit = read_src(Workspace.of(cfg), plan["release"])["commit"]

    def read_src(path: str) -> bytes:
        return mirror.read_file(commit, path)

    def read_src_dir(path: str) -> dict[str, bytes]:
        if mirror.object_id(commit, path) is None:
            return {}
        return {n: f.data for n, f in mirror.read_tree(commit, path).items() if not f.is_symlink}

    fingerprints = r.fingerprints[4:] if r.fingerprints.startswith("src:") else "share/keys/pkg"
    return Context(read_src=read_src, read_src_dir=read_src_dir, byte_order=plan["byte_order"],
                   variables={k: v for k, v in cfg.variables(r, None).items() if k in ("REPO", "MAJOR")},
                   fingerprints_path="/usr/" + fingerprints.strip("/"), signature_type=r.signature_type)


def install_packages(ws: Workspace, tree: LayerTree, plan: dict, ctx: Context,
                     emulation: Emulation | None = None) -> dict:
    """Stream every package of the layer into the tree; run their install scripts' built-ins.

    With scripts = "emulate", *emulation* runs the scripts themselves: a
    package's pre-install scripts before its files are in the tree (as pkg
    does), and every post-install script, in install order, once all of the
    layer's packages are in place (pkg runs each right after its package; the
    scripts of pkgbase packages do not read each other's files).
    """
    sde = plan["source_date_epoch"]
    ignorable = set(plan["ignore_scripts"])
    metas: dict[str, dict] = {}
    post: list[tuple[str, list]] = []
    emulated_post: list = []
    log_lines: list[str] = []
    for pkg in install_order(ws, plan["packages"]):
        name = f"{pkg['name']}-{pkg['version']}"
        with open_package(ws.root / pkg["cache"], name) as reader:
            if plan["scripts"] == "emulate" and emulation is not None:
                steps = []
                prefix = reader.manifest.get("prefix") or "/"
                pre = _emulated(pkg, prefix, reader.scripts, "pre", ignorable, log_lines)
                emulation.run_scripts(tree, pre)
                emulated_post += _emulated(pkg, prefix, reader.scripts, "post", ignorable, log_lines)
            else:
                steps = _script_steps(plan, pkg["name"], reader.scripts, ignorable, log_lines)
            for phase, found in steps:
                if phase != "post-install":
                    for s in found:
                        run_script_step(tree, s, pkg["name"], ctx)
            tar_meta: dict[str, dict] = {}
            for entry, stream in reader.entries():
                e = Entry(entry.path, entry.kind, entry.mode, entry.uname, entry.gname,
                          target=entry.target, mtime=min(entry.mtime, sde))
                tar_meta[entry.path] = tar_meta_of(entry)
                if entry.kind == "file":
                    tree.add_stream(e, pkg["name"], stream)
                else:
                    tree.add_package_entry(e, pkg["name"])
            metas[pkg["sum"]] = package_meta(ws, pkg, reader.manifest, tar_meta)
        post += [(pkg["name"], found) for phase, found in steps if phase == "post-install"]
    for package, found in post:
        for s in found:
            run_script_step(tree, s, package, ctx)
    if emulation is not None:
        emulation.run_scripts(tree, emulated_post)
    plan["script_log"] = log_lines
    return metas


def _emulated(pkg: dict, prefix: str, scripts: dict, when: str, ignorable: set, log_lines: list) -> list:
    """The package's scripts to run under the executor (those listed in ignore_scripts skipped)."""
    out = []
    for s in install_scripts(pkg["name"], pkg["version"], prefix, scripts, when):
        if f"{pkg['name']}:{s.phase}" in ignorable:
            log_lines.append(f"{pkg['name']} {s.phase} script ignored (config)")
        else:
            log_lines.append(f"{pkg['name']} {s.phase} script emulated")
            out.append(s)
    return out


def _script_steps(plan: dict, package: str, scripts: dict, ignorable: set, log_lines: list) -> list:
    out = []
    for phase in ("pre-install", "install", "post-install"):
        text = scripts.get(phase)
        if not text:
            continue
        if plan["scripts"] == "ignore" or f"{package}:{phase}" in ignorable:
            log_lines.append(f"{package} {phase} script ignored (config)")
            continue
        if plan["scripts"] == "emulate":
            raise StepError(f"{package}: {phase} script: scripts = \"emulate\" needs the emulation executor, "
                            "which this build does not provide")
        found = recognise(package, phase, text, ignorable=ignorable, byte_order=plan["byte_order"])
        log_lines.append(f"{package} {phase} script: built-in " + (", ".join(s.kind for s in found) or "nothing"))
        out.append((phase, found))
    return out


# --------------------------------------------------------------------------- writing

def write_tree(ws: Workspace, tree: LayerTree, plan: dict) -> dict:
    """Write the tree as the layer blob; returns digest, diff_id, size and media type."""
    sde = plan["source_date_epoch"]
    users, groups = name_to_id(tree.read("/etc/master.passwd"), tree.read("/etc/group"))
    entries = _with_parents_and_whiteouts(tree, sde)
    canonical = _hardlink_sources(tree)
    comp = plan["compression"]
    media = comp["media"]
    writer = open_blob_writer(ws.blobs(), media, gzip_level=comp["level"] if media == "tar+gzip" else 6,
                              zstd_level=comp["level"] if media == "tar+zstd" else 3,
                              gzip_engine=comp.get("engine", "zlib"))
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
            uid = _id(users, e.uname, "user", path, item.owner)
            gid = _id(groups, e.gname, "group", path, item.owner)
            data_item = tree.items.get(e.target) if (e.kind == "hardlink" and kind == "file") else item
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


def _id(table: dict[str, int], name: str, what: str, path: str, owner: str) -> int:
    try:
        return table[name]
    except KeyError:
        raise LayerError(f"{owner}: {path}: {what} {name!r} is not in the image's "
                         f"{'/etc/master.passwd' if what == 'user' else '/etc/group'}") from None


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
                mode, uname, gname, mtime = tree.parent.dirs[parent]
                out[parent] = Item(Entry(parent, "dir", mode, uname, gname, mtime=mtime), "lower layer", False)
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


def _created_by(plan: dict) -> str:
    names = " ".join(p["name"] for p in plan["packages"])
    steps = " ".join(s["kind"] for s in plan["steps"])
    # Scripts that were not replaced by built-ins are part of the image's story.
    scripts = [line.replace(" script ", " ") for line in plan.get("script_log", [])
               if line.endswith((" ignored (config)", " emulated"))]
    parts = [f"pkg install {names}" if names else "", f"steps: {steps}" if steps else "",
             f"scripts: {'; '.join(scripts)}" if scripts else "", "pkg database" if plan["pkgdb"] else ""]
    return f"{plan['flavour']}: " + "; ".join(p for p in parts if p)

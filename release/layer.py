"""One flavour's layer for one release and architecture, streamed from the package cache.

build_layer() takes the layer's plan (release.plans.LayerPlan), reads the
records it names (the flavour's package set, the src object ids, the view of
the layers below, and for pkg-shipping flavours the image's other package
sets), assembles the layer (tree.LayerTree: steps before the packages, the
packages streamed once into a spool with their scripts' built-ins, steps after
them, commands under the executor, the pkg database), then writes it as a
sorted, deterministic tar through the configured compressor into the
content-addressed blob store (release.layerblob).  No host directory is ever
populated, so owners come from the *image's* passwd/group, not the builder's.

A layer's identity is the sha256 of its plan's settings and of the records'
content it reads (packages and their sums, the src objects, SOURCE_DATE_EPOCH,
the digest of the view below ...).  Built layers are remembered under that
identity, so an unchanged plan never rebuilds and a rebuild from scratch lands
on the same bytes.  A layer that another architecture's plan already built
to the same bytes (same settings, src and view, packages with the same
payload: the static flavour) is taken from there (release.layershare).
"""
from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from . import layershare
from . import steps as step_kinds
from .builtincache import UNCACHED, Builtins
from .builtins.entries import Entry
from .builtins.scripts import ScriptAction, recognise
from .emulate import Emulation, PackageScript, emulation_for, install_scripts
from .errors import InputError, StepError
from .fsutil import disk_errors, file_digest, identity
from .install import run_script_action
from .layerblob import write_layer_blob
from .pkgfile import open_package
from .pkgmeta import cached_package, config_text, install_order, remember, write_pkgdb_entry
from .plans import LayerPlan
from .records import BuiltLayer, LayerRecord, LockedPackage, PackageIndex, PackageSet, SrcInputs
from .sources import SrcFiles
from .steps import StepContext
from .tree import VIEW_FORMAT, LayerTree, ParentView
from .workspace import Workspace

if TYPE_CHECKING:
    from .pkgfile import _VerifiedStream as VerifiedStream

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LayerInputs:
    """What the records named by a layer's plan say, read once when the stage runs."""

    packages: tuple[LockedPackage, ...]         # this flavour's own
    src: SrcInputs                              # the object ids of the src paths its steps read
    parent_view: ParentView
    parent_view_digest: str | None
    pkgdb_packages: tuple[LockedPackage, ...]   # every package of the image, parents' first (pkgdb only)
    parent_layers: tuple[LayerRecord, ...]      # the layers below (only when target code runs)
    keys: dict[str, bytes] = field(default_factory=dict)    # trust anchors to install: image path -> content

    def identity_json(self) -> dict[str, Any]:
        def pkgs(ps: tuple[LockedPackage, ...]) -> list[dict[str, Any]]:
            return [{"name": p.name, "version": p.version, "sum": p.sum} for p in ps]
        return {"packages": pkgs(self.packages), "src": self.src.inputs,
                "source_date_epoch": self.src.source_date_epoch, "parent_view": self.parent_view_digest,
                # the database records whether each package was asked for by name (pkg's "automatic")
                "pkgdb": [dict(x, reason=p.reason) for x, p in zip(pkgs(self.pkgdb_packages), self.pkgdb_packages,
                                                                               strict=True)],
                "parent_layers": [{"digest": x.digest, "media_type": x.media_type} for x in self.parent_layers],
                "keys": {p: hashlib.sha256(data).hexdigest() for p, data in sorted(self.keys.items())}}


def read_inputs(plan: LayerPlan) -> LayerInputs:
    ws, r, a = plan.workspace, plan.release, plan.arch
    src = SrcInputs.load(ws.flavour_src_inputs(r, plan.flavour))
    view = ws.view_json(r, a, plan.parent) if plan.parent else None
    pkgdb: tuple[LockedPackage, ...] = ()
    if plan.pkgdb:
        pkgdb = tuple(p for f in plan.pkgdb.flavours for p in PackageSet.load(ws.packages_json(r, a, f)).packages)
    parents = tuple(LayerRecord.load(ws.layer_json(r, a, f)) for f in plan.lower) if plan.executor else ()
    return LayerInputs(
        packages=PackageSet.load(ws.packages_json(r, a, plan.flavour)).packages,
        src=src,
        parent_view=ParentView.load(view) if view else ParentView(),
        parent_view_digest=file_digest(view) if view else None,
        pkgdb_packages=pkgdb, parent_layers=parents,
        keys={image: _read_key(host) for host, image in plan.key_files()})


def _read_key(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read a trust anchor the image must carry: {e.strerror}") from None


def build_layer(plan: LayerPlan) -> dict[str, Any]:
    """Build (or reuse) the layer; write layer.json, view.json and index.json for the stages above."""
    ws = plan.workspace
    inputs = read_inputs(plan)
    ident = identity({"plan": plan.settings(), "inputs": inputs.identity_json(), "view": VIEW_FORMAT})
    built = _reusable(ws, ident)
    reused, shared = built is not None, False
    if built is None:
        key = layershare.share_key(plan, inputs)
        found = layershare.find_shared(ws, key, inputs.packages)
        shared = found is not None
        built = BuiltLayer(replace(found.layer, identity=ident), found.view, found.index) if found \
            else _assemble(plan, inputs, ident, shareable=key is not None)
        built.save(ws.built_layer(ident))
        if not shared:
            layershare.register(ws, key, ident, inputs.packages)
    r, a, f = plan.release, plan.arch, plan.flavour
    built.layer.save(ws.layer_json(r, a, f))
    built.view.save(ws.view_json(r, a, f))
    built.index.save(ws.package_index_json(r, a, f))
    return {"digest": built.layer.digest, "reused": reused, "shared": shared}


def _reusable(ws: Workspace, ident: str) -> BuiltLayer | None:
    path = ws.built_layer(ident)
    if not path.is_file():
        return None
    try:
        built = BuiltLayer.load(path)
    except Exception:           # a damaged record is rebuilt, not trusted
        return None
    return built if ws.blob(built.layer.digest).is_file() else None


def _context(plan: LayerPlan, inputs: LayerInputs, builtins: Builtins) -> StepContext:
    files = SrcFiles(plan.src, inputs.src)
    return StepContext(read_src=files.read, read_src_dir=files.read_dir, byte_order=plan.byte_order,
                       repository=plan.repository, tools=plan.tools, keys=dict(inputs.keys), builtins=builtins)


def _assemble(plan: LayerPlan, inputs: LayerInputs, ident: str, *, shareable: bool) -> BuiltLayer:
    ws = plan.workspace
    sde = inputs.src.source_date_epoch
    ws.tmp().mkdir(parents=True, exist_ok=True)
    with disk_errors(f"{ws.tmp()} (the layer's spool)"), tempfile.TemporaryFile(dir=ws.tmp()) as spool:
        # only a layer that may be shared needs SHA-256 digests comparable across repositories
        tree = LayerTree(inputs.parent_view, spool, package_sums=not shareable)
        builtins = Builtins(ws.builtin_cache())
        ctx = _context(plan, inputs, builtins)
        emulation = emulation_for(plan.arch, sde, inputs.parent_layers, ws.tmp(), ws.blobs()) \
            if plan.executor is not None else None
        step_kinds.apply_phase(tree, plan.steps, step_kinds.BEFORE_PACKAGES, ctx)
        metas, script_log = install_packages(ws, tree, inputs.packages, scripts=plan.scripts,
                                             ignore_scripts=plan.ignore_scripts, byte_order=plan.byte_order,
                                             sde=sde, emulation=emulation, tools=plan.tools,
                                             builtins=builtins)
        step_kinds.apply_phase(tree, plan.steps, step_kinds.AFTER_PACKAGES, ctx)
        commands = [s for s in plan.steps if step_kinds.kind_of(s).phase == step_kinds.EXECUTOR]
        if commands and emulation is not None:     # the plan has an executor whenever there are commands
            emulation.run_steps(tree, commands)
        if plan.pkgdb:
            write_pkgdb_entry(ws, tree, list(inputs.pkgdb_packages), schema=plan.pkgdb.schema, time=sde,
                              repository=plan.pkgdb.repository, metas=metas)
        tree.check_structure()
        blob = write_layer_blob(ws.blobs(), tree, compression=plan.compression, sde=sde,
                                threads=plan.compress_threads)
        view, index = tree.child_view(), tree.package_index()
    layer = LayerRecord(identity=ident, **blob, created_by=_created_by(plan, inputs, script_log),
                        comment=plan.description, packages=[p.name for p in inputs.packages], scripts=script_log)
    return BuiltLayer(layer, view, PackageIndex(index))


def install_packages(ws: Workspace, tree: LayerTree, packages: tuple[LockedPackage, ...] | list[LockedPackage],
                     *, scripts: str, ignore_scripts: tuple[str, ...], byte_order: str, sde: int,
                     emulation: Emulation | None = None,
                     tools: dict[str, Any] | None = None,
                     builtins: Builtins = UNCACHED) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Stream every package of the layer into the tree; run their install scripts' built-ins.

    Returns each package's remembered metadata (by sum) and the script log.
    With scripts = "emulate", *emulation* runs the scripts themselves: a
    package's pre-install scripts before its files are in the tree (as pkg
    does), and every post-install script, in install order, once all of the
    layer's packages are in place (pkg runs each right after its package; the
    scripts of pkgbase packages do not read each other's files).
    """
    ignorable = set(ignore_scripts)
    metas: dict[str, dict[str, Any]] = {}
    post: list[tuple[str, list[ScriptAction]]] = []
    emulated_post: list[PackageScript] = []
    log_lines: list[str] = []
    for pkg in install_order(ws, packages):
        with open_package(cached_package(ws, pkg), pkg.label) as reader:
            if scripts == "emulate" and emulation is not None:
                found_steps = []
                prefix = reader.manifest.get("prefix") or "/"
                emulation.run_scripts(tree, _emulated(pkg, prefix, reader.scripts, "pre", ignorable, log_lines))
                emulated_post += _emulated(pkg, prefix, reader.scripts, "post", ignorable, log_lines)
            else:
                found_steps = _script_actions(scripts, byte_order, pkg.name, reader.scripts, ignorable, log_lines)
            for phase, found in found_steps:
                if phase != "post-install":
                    for s in found:
                        run_script_action(tree, s, pkg.name, byte_order, tools, builtins)
            config: dict[str, str] = {}
            # payload digests (layershare) are SHA-256 based: remembered only from a tree that has them
            payload = None if tree.package_sums else layershare.for_reader(reader)
            for entry, stream in reader.entries():
                e = Entry(entry.path, entry.kind, entry.mode, entry.uname, entry.gname,
                          target=entry.target, mtime=min(entry.mtime, sde))
                if stream is not None:
                    tree.add_stream(e, pkg.name, cast(BinaryIO, stream), _verified_digest(stream, tree.package_sums))
                    if payload is not None:
                        payload.add(entry, tree.items[e.path].digest)
                    if entry.config:
                        config[entry.path] = config_text(tree.read(entry.path) or b"")
                else:
                    tree.add_package_entry(e, pkg.name)
                    if payload is not None:
                        payload.add(entry, "")
            metas[pkg.sum] = remember(ws, pkg, reader.manifest, config)
            if payload is not None:
                layershare.remember_payload(ws, pkg, payload.hexdigest())
        post += [(pkg.name, found) for phase, found in found_steps if phase == "post-install"]
    for package, found in post:
        for s in found:
            run_script_action(tree, s, package, byte_order, tools, builtins)
    if emulation is not None:
        emulation.run_scripts(tree, emulated_post)
    return metas, log_lines


def _verified_digest(stream: VerifiedStream, package_sums: bool) -> Callable[[], str] | None:
    """The digest the stream computes as it verifies (instead of hashing the bytes a second time):
    its sha256 when the manifest sum is one, else with *package_sums* its "2$..." BLAKE2b sum."""
    if stream.kind == "sha256" or package_sums:
        return lambda: stream.actual or ""      # a sha256 sum's actual is its sha256 hex
    return None


def _emulated(pkg: LockedPackage, prefix: str, scripts: dict[str, str], when: str, ignorable: set[str],
              log_lines: list[str]) -> list[PackageScript]:
    """The package's scripts to run under the executor (those listed in ignore_scripts skipped)."""
    out = []
    for s in install_scripts(pkg.name, pkg.version, prefix, scripts, when):
        if f"{pkg.name}:{s.phase}" in ignorable:
            log_lines.append(f"{pkg.name} {s.phase} script ignored (config)")
        else:
            log_lines.append(f"{pkg.name} {s.phase} script emulated")
            out.append(s)
    return out


def _script_actions(policy: str, byte_order: str, package: str, scripts: dict[str, str], ignorable: set[str],
                    log_lines: list[str]) -> list[tuple[str, list[ScriptAction]]]:
    out = []
    for phase in ("pre-install", "install", "post-install"):
        text = scripts.get(phase)
        if not text:
            continue
        if policy == "ignore" or f"{package}:{phase}" in ignorable:
            log_lines.append(f"{package} {phase} script ignored (config)")
            continue
        if policy == "emulate":
            raise StepError(f"{package}: {phase} script: scripts = \"emulate\" needs the emulation executor, "
                            "which this build does not provide")
        found = recognise(package, phase, text, ignorable=ignorable, byte_order=byte_order)
        log_lines.append(f"{package} {phase} script: built-in " + (", ".join(s.kind for s in found) or "nothing"))
        out.append((phase, found))
    return out


def _created_by(plan: LayerPlan, inputs: LayerInputs, script_log: list[str]) -> str:
    names = " ".join(p.name for p in inputs.packages)
    kinds = " ".join(s.kind for s in plan.steps)
    # Scripts that were not replaced by built-ins are part of the image's story.
    scripts = [line.replace(" script ", " ") for line in script_log
               if line.endswith((" ignored (config)", " emulated"))]
    parts = [f"pkg install {names}" if names else "", f"steps: {kinds}" if kinds else "",
             f"scripts: {'; '.join(scripts)}" if scripts else "", "pkg database" if plan.pkgdb else ""]
    return f"{plan.flavour}: " + "; ".join(p for p in parts if p)

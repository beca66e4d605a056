"""The demo releases of a configuration, mapped onto the demo generator.

Every release marked `demo = true` is served from one generated tree under
<work>/demo: one src repository holding all their branches, and one pkgbase
repository per ABI, architecture and repository name.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..fsutil import pretty_json, write_if_changed
from ..plans import DemoPlan, DemoRelease
from . import generate

if TYPE_CHECKING:
    from .. import srcconf


def generator_files() -> list[str]:
    """The generator's code and data: editing any of them regenerates the demo."""
    here = Path(__file__).resolve().parent
    files = [here / "content.py", here / "toolchain.py", here / "generate.py", here / "srcrepo.py",
             Path(__file__).resolve()]
    files += sorted(p for p in (here / "data").rglob("*") if p.is_file())
    return [str(p) for p in files]


def generate_for(plan: DemoPlan) -> dict[str, Any]:
    """Generate (or leave up to date) everything the configuration's demo releases fetch."""
    root = plan.workspace.demo()
    written = generate_tree(root, plan.releases)
    write_if_changed(plan.outputs()[0], pretty_json([{**asdict(r), "arches": list(r.arches)} for r in plan.releases]))
    return {"written": written}


def generate_tree(root: Path, demo: Sequence[DemoRelease], *, scale: float = 1, toolchain: bool = False) -> list[str]:
    """One src repository with every branch and one pkgbase repository per ABI, arch and repository.

    *toolchain*: the 15.x ABI's repositories also carry the packages of the
    notoolchain and toolchain flavours (release/demo/toolchain.py).
    """
    branches = sorted({r.branch for r in demo})
    by_abi: dict[int, list[DemoRelease]] = {}
    for r in demo:
        by_abi.setdefault(r.abi_major, []).append(r)
    written: list[str] = []
    for abi_major, releases in sorted(by_abi.items()):
        info = generate.generate_demo(
            root, arches=sorted({a for r in releases for a in r.arches}), abi_major=abi_major,
            repos={r.repo: r.version for r in releases}, branches=branches, scale=scale,
            pkg_level=generate.PKG_LEVEL if scale == 1 else 3, toolchain=toolchain and abi_major >= 15)
        written += [str(p) for p in info.written]
    return written


def demo_flavours(branch: str = "releng/14.2", names: Sequence[str] | None = None) -> list[srcconf.FlavourDef]:
    """The image family the demo src tree defines for *branch* (its release/tools/oci-image-*.conf), in build
    order: what a demo release builds when it lists no flavours (or the listed *names*, as the src defines them)."""
    from .. import srcconf
    files = generate.src_files(branch)
    rel = srcconf.ReleaseId(*generate.branch_version(branch))
    makefile = files.get(srcconf.MAKEFILE)
    if names is None:
        names = srcconf.read_image_list(makefile) if makefile is not None else sorted(
            p.removeprefix(f"{srcconf.CONF_DIR}/oci-image-").removesuffix(".conf")
            for p in files if p.startswith(f"{srcconf.CONF_DIR}/oci-image-"))
    defs = {n: srcconf.read_flavour(n, files[srcconf.conf_path(n)], rel) for n in names}
    order: list[srcconf.FlavourDef] = []

    def visit(n: str) -> None:
        if n not in [d.name for d in order]:
            parent = defs[n].parent
            if parent:
                visit(parent)
            order.append(defs[n])
    for n in names:
        visit(n)
    return order

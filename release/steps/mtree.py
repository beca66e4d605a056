"""mtree: the directory skeleton from FreeBSD's mtree specifications.

oci-image-static.conf runs ``mtree -deU -p $rootdir -f etc/mtree/BSD.*.dist``
for the root, var, usr, include and debug trees; this step makes the same
directories (modes, owners) from the specs in the release's src, before any
package is installed.
"""
from __future__ import annotations

from typing import Any

from ..builtins import mtree
from ..tree import LayerTree
from . import BEFORE_PACKAGES, Option, Step, StepContext, StepKind

SPEC_DIR = "etc/mtree"


def _specs(step: Step) -> list[tuple[str, str]]:
    """(spec file name, image prefix) pairs; the prefix defaults to the one FreeBSD uses for that spec."""
    out = []
    for spec in step.get("specs"):
        name, _, prefix = spec.partition(":")
        out.append((name, prefix or mtree.MTREE_PREFIXES.get(name, "/")))
    return out


def apply(tree: LayerTree, step: Step, ctx: StepContext) -> None:
    for name, prefix in _specs(step):
        for e in mtree.mtree_dirs(ctx.read_src(f"{SPEC_DIR}/{name}"), prefix, name):
            if e.path != "/":
                tree.put(e, f"mtree {name}")


def src_paths(step: Step) -> list[str]:
    return [f"{SPEC_DIR}/{name}" for name, _ in _specs(step)]


def check(options: dict[str, Any]) -> list[tuple[str, str]]:
    return [("specs", f"{spec!r} is not NAME or NAME:/PREFIX")
            for spec in options.get("specs", ())
            if not spec.split(":", 1)[0] or "/" in spec.split(":", 1)[0]
            or (":" in spec and not spec.split(":", 1)[1].startswith("/"))]


KIND = StepKind(
    name="mtree",
    doc="Creates the directories of FreeBSD's mtree specifications (src etc/mtree/), before the packages.",
    options=(Option("specs", "list[str]", '"NAME:/PREFIX" per spec file of src etc/mtree/; the prefix defaults '
                    "to FreeBSD's for that spec (BSD.usr.dist: /usr ...)"),),
    phase=BEFORE_PACKAGES,
    example='{ kind = "mtree", specs = ["BSD.root.dist:/", "BSD.var.dist:/var", "BSD.usr.dist:/usr"] }',
    apply=apply, src_paths=src_paths, check=check,
)

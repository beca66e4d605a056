"""remove: paths of the layers below that this flavour's image does not have (OCI whiteouts).

FreeBSD's runtime recipe removes /usr/share/misc/termcap, which the static
image installs as a copy of termcap.small; a layer records that as a whiteout.
"""
from __future__ import annotations

from typing import Any

from ..tree import LayerTree
from . import BEFORE_PACKAGES, Option, Step, StepContext, StepKind


def apply(tree: LayerTree, step: Step, ctx: StepContext) -> None:
    for path in step.get("paths"):
        tree.remove(path, "step remove")


def check(options: dict[str, Any]) -> list[tuple[str, str]]:
    return [("paths", f"{p!r} is not an absolute image path") for p in options.get("paths", ())
            if not p.startswith("/") or p == "/" or "/../" in p + "/" or "//" in p]


KIND = StepKind(
    name="remove",
    doc="Removes paths of the layers below from this image (each becomes an OCI whiteout).",
    options=(Option("paths", "list[str]", "absolute image paths to remove"),),
    phase=BEFORE_PACKAGES,
    example='{ kind = "remove", paths = ["/usr/share/misc/termcap"] }',
    apply=apply, check=check,
)

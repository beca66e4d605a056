"""caroot: the CA certificates of src secure/caroot, and ``certctl -c rehash``.

oci-image-static.conf installs the trusted and untrusted certificates of the
release's src and runs certctl's rehash, which makes the <hash>.N links under
/etc/ssl/certs (release.builtins.certctl).
"""
from __future__ import annotations

from ..builtins import certctl
from ..install import put_with_parents
from ..tree import LayerTree
from . import AFTER_PACKAGES, Option, Step, StepContext, StepKind

LAYOUTS = ("untrusted", "blacklisted")


def apply(tree: LayerTree, step: Step, ctx: StepContext) -> None:
    trusted = ctx.read_src_dir(step.get("trusted"))
    untrusted = ctx.read_src_dir(step.get("untrusted"))
    for e in certctl.rehash(trusted, untrusted, layout=step.get("layout"), style="copy", install_sources=False):
        put_with_parents(tree, e, "step caroot")


def src_paths(step: Step) -> list[str]:
    return [step.get("trusted"), step.get("untrusted")]


def check(options: dict) -> list[tuple[str, str]]:
    layout = options.get("layout")
    return [] if layout in LAYOUTS else [("layout", f"must be one of {', '.join(LAYOUTS)}, not {layout!r}")]


KIND = StepKind(
    name="caroot",
    doc="Installs the CA certificates of src secure/caroot and makes certctl's hash links.",
    options=(Option("trusted", "str", "src directory of trusted certificates", "secure/caroot/trusted"),
             Option("untrusted", "str", "src directory of distrusted certificates", "secure/caroot/untrusted"),
             Option("layout", "str", 'where distrusted certificates go: "untrusted" (14.x and later) or '
                    '"blacklisted" (13.x)', "untrusted")),
    phase=AFTER_PACKAGES,
    example='{ kind = "caroot" }',
    apply=apply, src_paths=src_paths, check=check,
)

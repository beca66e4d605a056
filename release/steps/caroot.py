"""caroot: the CA certificates of src secure/caroot, and ``certctl -c rehash``.

oci-image-static.conf runs `certctl -c rehash` with TRUSTPATH and UNTRUSTPATH
pointing at the release's src: the hash files under /etc/ssl/certs and
/etc/ssl/untrusted, as the release's own certctl makes them
(release.builtins.certctl: the 14.x certctl.sh copies each file whole and
writes no bundle, the C certctl of 15.x writes each certificate as PEM and the
bundle /etc/ssl/cert.pem).
"""
from __future__ import annotations

from typing import Any

from ..install import put_with_parents
from ..tree import LayerTree
from . import AFTER_PACKAGES, Option, Step, StepContext, StepKind

LAYOUTS = ("untrusted", "blacklisted")


def apply(tree: LayerTree, step: Step, ctx: StepContext) -> None:
    trusted = ctx.read_src_dir(step.get("trusted"))
    untrusted = ctx.read_src_dir(step.get("untrusted"))
    style = "copy" if ctx.tools.get("certctl", "copy").startswith("copy") else "link"
    for e in ctx.builtins.certctl_rehash(trusted, untrusted, layout=step.get("layout"), style=style,
                                         install_sources=False, copy=True):
        put_with_parents(tree, e, "step caroot")


def src_paths(step: Step) -> list[str]:
    return [step.get("trusted"), step.get("untrusted")]


def check(options: dict[str, Any]) -> list[tuple[str, str]]:
    layout = options.get("layout")
    return [] if layout in LAYOUTS else [("layout", f"must be one of {', '.join(LAYOUTS)}, not {layout!r}")]


KIND = StepKind(
    name="caroot",
    doc="Hashes the CA certificates of src secure/caroot into /etc/ssl as the release's own certctl -c rehash does.",
    options=(Option("trusted", "str", "src directory of trusted certificates", "secure/caroot/trusted"),
             Option("untrusted", "str", "src directory of distrusted certificates", "secure/caroot/untrusted"),
             Option("layout", "str", 'where distrusted certificates go: "untrusted" (14.x and later) or '
                    '"blacklisted" (13.x)', "untrusted")),
    phase=AFTER_PACKAGES,
    example='{ kind = "caroot" }',
    apply=apply, src_paths=src_paths, check=check,
)

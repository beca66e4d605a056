"""repo-conf: /usr/local/etc/pkg/repos/base.conf, the image's pkg repository configuration.

oci-image-static.conf ends by writing it, so that ``pkg`` inside a container can
install more of the base system; release.builtins.repoconf writes the same text.
The URL may use ${REPO} and ${MAJOR} (expanded from the release) and keeps pkg's
own ${ABI} for pkg to expand at run time.
"""
from __future__ import annotations

from ..builtins import repoconf
from ..errors import StepError
from ..install import put_with_parents
from ..textvars import expand
from ..tree import LayerTree
from . import AFTER_PACKAGES, Option, Step, StepContext, StepKind


def apply(tree: LayerTree, step: Step, ctx: StepContext) -> None:
    repo = ctx.repository
    if repo is None:            # the planner always provides it for this kind
        raise StepError("step repo-conf: the release's repository settings are missing from the plan")
    url = expand(step.get("url"), repo.variables)
    # pkg inside the image checks the repository by fingerprints unless it is unsigned
    signature_type = "none" if repo.signature_type == "none" else "fingerprints"
    entry = repoconf.base_conf(url, signature_type=signature_type, fingerprints=repo.fingerprints,
                               name=step.get("name"))
    put_with_parents(tree, entry, "step repo-conf")


KIND = StepKind(
    name="repo-conf",
    doc="Writes /usr/local/etc/pkg/repos/base.conf pointing pkg inside the image at a pkgbase repository.",
    options=(Option("name", "str", "repository name (the UCL key)", "base"),
             Option("url", "str", "repository URL; ${REPO} and ${MAJOR} are expanded, ${ABI} is left for pkg")),
    phase=AFTER_PACKAGES,
    example='{ kind = "repo-conf", name = "FreeBSD-base", url = "https://pkg.FreeBSD.org/${ABI}/${REPO}" }',
    apply=apply, needs_repository=True,
)

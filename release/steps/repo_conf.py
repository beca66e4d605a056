"""repo-conf: /usr/local/etc/pkg/repos/base.conf, the image's pkg repository configuration.

oci-image-static.conf ends by writing it, so that ``pkg`` inside a container can
install more of the base system; release.builtins.repoconf writes the same text.
The URL may use ${REPO} and ${MAJOR} (expanded from the release) and keeps pkg's
own ${ABI} for pkg to expand at run time.

A release's image_repository names the URL whatever the step says (the image
points at your repository, not at where this build fetched from).  Options left
empty take the release's values: for the FreeBSD-base repository
the FreeBSD-base block of the release's own usr.sbin/pkg/FreeBSD.conf.* (15.x:
pkg+https://..., /usr/share/keys/pkgbase-15); otherwise the trust the release
is verified with.  A release verified with a key of your own ("pubkey", or
fingerprints from a directory) gets that key installed in the image, so pkg
inside it trusts the same repository.
"""
from __future__ import annotations

from ..builtins import repoconf
from ..builtins.entries import Entry
from ..errors import StepError
from ..install import put_with_parents
from ..textvars import expand
from ..tree import LayerTree
from . import AFTER_PACKAGES, Option, Step, StepContext, StepKind

KEY_MODE = 0o644


def apply(tree: LayerTree, step: Step, ctx: StepContext) -> None:
    repo = ctx.repository
    if repo is None:            # the planner always provides it for this kind
        raise StepError("step repo-conf: the release's repository settings are missing from the plan")
    name = step.get("name")
    base = repo.base if name == "FreeBSD-base" else {}
    url = repo.url or step.get("url") or base.get("url", "")
    signature_type = step.get("signature_type") or base.get("signature_type") or repo.signature_type
    fingerprints = step.get("fingerprints") or base.get("fingerprints") or repo.fingerprints
    if repo.keys:               # a repository of your own: the image trusts the key the release is verified with
        signature_type, fingerprints = repo.signature_type, repo.fingerprints
    entry = repoconf.base_conf(expand(url, repo.variables), signature_type=signature_type,
                               fingerprints=fingerprints, name=name, enabled=step.get("enabled"),
                               mirror_type=step.get("mirror_type") or base.get("mirror_type") or "srv",
                               pubkey=repo.pubkey)
    put_with_parents(tree, entry, "step repo-conf")
    for path, data in sorted(ctx.keys.items()):
        put_with_parents(tree, Entry(path, "file", KEY_MODE, data=data), "step repo-conf")


KIND = StepKind(
    name="repo-conf",
    doc="Writes /usr/local/etc/pkg/repos/base.conf pointing pkg inside the image at a pkgbase repository.",
    options=(Option("name", "str", "repository name (the UCL key)", "FreeBSD-base"),
             Option("url", "str", "repository URL; ${REPO} and ${MAJOR} are expanded, ${ABI} is left for pkg "
                    "(empty: the release's own FreeBSD-base URL)", ""),
             Option("mirror_type", "str", "srv, http or none (empty: the release's own, else srv)", ""),
             Option("signature_type", "str", "fingerprints, pubkey or none (empty: as the release is verified)",
                    ""),
             Option("fingerprints", "str", "image path of the trust anchors (empty: the release's)", ""),
             Option("enabled", "bool", "whether pkg uses the repository", True)),
    phase=AFTER_PACKAGES,
    example='{ kind = "repo-conf", name = "FreeBSD-base", url = "https://pkg.FreeBSD.org/${ABI}/${REPO}" }',
    apply=apply, needs_repository=True,
)

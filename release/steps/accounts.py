"""accounts: /etc/master.passwd and /etc/group from src, then ``pwd_mkdb -p``.

As oci-image-static.conf does: copy etc/master.passwd and etc/group of the
release's src into the image and build pwd.db, spwd.db and /etc/passwd from
them (release.builtins.pwdmkdb, FreeBSD's usr.sbin/pwd_mkdb in Python).
"""
from __future__ import annotations

from ..builtins.entries import Entry
from ..install import MASTER_PASSWD_MODE, put_with_parents, pwd_mkdb
from ..tree import LayerTree
from . import AFTER_PACKAGES, Option, Step, StepContext, StepKind

OWNER = "step accounts"


def apply(tree: LayerTree, step: Step, ctx: StepContext) -> None:
    master = ctx.read_src(step.get("master_passwd"))
    put_with_parents(tree, Entry("/etc/master.passwd", "file", MASTER_PASSWD_MODE, data=master), OWNER)
    put_with_parents(tree, Entry("/etc/group", "file", 0o644, data=ctx.read_src(step.get("group"))), OWNER)
    pwd_mkdb(tree, {"source": "/etc/master.passwd", "directory": "/etc", "v7_passwd": True}, OWNER, ctx.tools,
             ctx.builtins)


def src_paths(step: Step) -> list[str]:
    return [step.get("master_passwd"), step.get("group")]


KIND = StepKind(
    name="accounts",
    doc="Installs master.passwd and group from src and runs pwd_mkdb -p (pwd.db, spwd.db, /etc/passwd).",
    options=(Option("master_passwd", "str", "src path of master.passwd", "etc/master.passwd"),
             Option("group", "str", "src path of group", "etc/group")),
    phase=AFTER_PACKAGES,
    example='{ kind = "accounts" }',
    apply=apply, src_paths=src_paths,
)

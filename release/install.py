"""The commands of recognised package scripts, applied to a LayerTree as built-ins.

pkgbase packages' install scripts run pwd_mkdb, services_mkdb, cap_mkdb, chmod
and certctl rehash (release.builtins.scripts recognises them); here they are
carried out by the pure-Python builtins, reading their inputs from the image as
it stands (the tree), so every builder writes the same bytes.  Where a tool
changed between FreeBSD branches, *tools* (release.builtins.generations) says
which generation the release's src carries.  The configured
steps (release.steps) use the same helpers (the accounts step runs pwd_mkdb).
The tools run through a release.builtincache.Builtins (*builtins*), which the
layer stage backs with the work directory's cache (one run per distinct input).
"""
from __future__ import annotations

import posixpath
from typing import Any

from .builtincache import UNCACHED, Builtins
from .builtins.certctl_tree import rehash_tree
from .builtins.entries import Entry, implied_dirs
from .builtins.scripts import ScriptAction
from .errors import StepError
from .tree import LayerTree

MASTER_PASSWD_MODE = 0o600
PASSWD_MODE = 0o644
SPWD_MODE = 0o600
DB_MODE = 0o644


def run_script_action(tree: LayerTree, step: ScriptAction, package: str, byte_order: str,
                      tools: dict[str, Any] | None = None, builtins: Builtins = UNCACHED) -> None:
    owner = f"{package} {step.kind}"
    a = step.args
    tools = tools or {}
    if step.kind == "pwd_mkdb":
        pwd_mkdb(tree, a, owner, tools, builtins)
    elif step.kind == "services_mkdb":
        source = _need(tree, a["source"], owner)
        put_with_parents(tree, Entry(a["database"], "file", DB_MODE,
                                      data=builtins.services_mkdb(source, a.get("byte_order") or byte_order)),
                          owner)
    elif step.kind == "cap_mkdb":
        sources = [_need(tree, s, owner) for s in a["sources"]]
        put_with_parents(tree, Entry(a["database"], "file", DB_MODE,
                                      data=builtins.cap_mkdb(b"".join(sources), a.get("byte_order") or byte_order)),
                          owner)
    elif step.kind == "chmod":
        tree.chmod(a["path"], int(str(a["mode"]), 8) if isinstance(a["mode"], str) else a["mode"], owner)
    elif step.kind == "certctl_rehash":
        rehash_tree(tree, owner, tools.get("certctl", "copy"), put_with_parents, builtins.certctl_rehash)
    else:
        raise StepError(f"{owner}: no built-in for {step.kind}")


def pwd_mkdb(tree: LayerTree, args: dict[str, Any], owner: str, tools: dict[str, Any] | None = None,
             builtins: Builtins = UNCACHED) -> None:
    """pwd_mkdb -p -d DIR SOURCE: the hashed databases and /etc/passwd, from the image's master.passwd."""
    source = _need(tree, args["source"], owner)
    directory = args.get("directory") or posixpath.dirname(args["source"])
    dbs = builtins.pwd_mkdb(source, copy_comments=(tools or {}).get("pwd_mkdb_copies_comments", False))
    out = [Entry(f"{directory}/pwd.db", "file", DB_MODE, data=dbs.pwd_db),
           Entry(f"{directory}/spwd.db", "file", SPWD_MODE, data=dbs.spwd_db)]
    if args.get("v7_passwd", True):
        out.append(Entry(f"{directory}/passwd", "file", PASSWD_MODE, data=dbs.passwd))
    if args["source"] != f"{directory}/master.passwd":
        out.append(Entry(f"{directory}/master.passwd", "file", MASTER_PASSWD_MODE, data=source))
    for e in out:
        put_with_parents(tree, e, owner)


def _need(tree: LayerTree, path: str, owner: str) -> bytes:
    data = tree.read(path)
    if data is None:
        raise StepError(f"{owner}: needs {path}, which is not in the image")
    return data


def put_with_parents(tree: LayerTree, entry: Entry, owner: str) -> None:
    """Add *entry*; missing parent directories appear as `mkdir -p` makes them (root:wheel 0755)."""
    for d in implied_dirs([entry]):
        if d.path not in tree.items and d.path not in tree.parent.dirs:
            tree.put(d, owner)
    tree.put(entry, owner)

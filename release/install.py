"""The commands of recognised package scripts, applied to a LayerTree as built-ins.

pkgbase packages' install scripts run pwd_mkdb, services_mkdb, cap_mkdb, chmod
and certctl rehash (release.builtins.scripts recognises them); here they are
carried out by the pure-Python builtins, reading their inputs from the image as
it stands (the tree), so every builder writes the same bytes.  The configured
steps (release.steps) use the same helpers (the accounts step runs pwd_mkdb).
"""
from __future__ import annotations

import posixpath
from dataclasses import replace

from .builtins import certctl
from .builtins.entries import Entry, implied_dirs
from .builtins.scripts import ScriptAction
from .errors import StepError
from .tree import LayerTree

MASTER_PASSWD_MODE = 0o600
PASSWD_MODE = 0o644
SPWD_MODE = 0o600
DB_MODE = 0o644


def run_script_action(tree: LayerTree, step: ScriptAction, package: str, byte_order: str) -> None:
    owner = f"{package} {step.kind}"
    a = step.args
    if step.kind == "pwd_mkdb":
        pwd_mkdb(tree, a, owner)
    elif step.kind == "services_mkdb":
        from .builtins.servicesmkdb import services_mkdb
        source = _need(tree, a["source"], owner)
        put_with_parents(tree, Entry(a["database"], "file", DB_MODE,
                                      data=services_mkdb(source, a.get("byte_order") or byte_order)), owner)
    elif step.kind == "cap_mkdb":
        from .builtins.capmkdb import cap_mkdb
        sources = [_need(tree, s, owner) for s in a["sources"]]
        put_with_parents(tree, Entry(a["database"], "file", DB_MODE,
                                      data=cap_mkdb(b"".join(sources), a.get("byte_order") or byte_order)),
                          owner)
    elif step.kind == "chmod":
        tree.chmod(a["path"], int(str(a["mode"]), 8) if isinstance(a["mode"], str) else a["mode"], owner)
    elif step.kind == "certctl_rehash":
        certctl_rehash(tree, owner)
    else:
        raise StepError(f"{owner}: no built-in for {step.kind}")


def pwd_mkdb(tree: LayerTree, args: dict, owner: str) -> None:
    """pwd_mkdb -p -d DIR SOURCE: the hashed databases and /etc/passwd, from the image's master.passwd."""
    from .builtins.pwdmkdb import pwd_mkdb as build
    source = _need(tree, args["source"], owner)
    directory = args.get("directory") or posixpath.dirname(args["source"])
    dbs = build(source)
    out = [Entry(f"{directory}/pwd.db", "file", DB_MODE, data=dbs.pwd_db),
           Entry(f"{directory}/spwd.db", "file", SPWD_MODE, data=dbs.spwd_db)]
    if args.get("v7_passwd", True):
        out.append(Entry(f"{directory}/passwd", "file", PASSWD_MODE, data=dbs.passwd))
    if args["source"] != f"{directory}/master.passwd":
        out.append(Entry(f"{directory}/master.passwd", "file", MASTER_PASSWD_MODE, data=source))
    for e in out:
        put_with_parents(tree, e, owner)


def certctl_rehash(tree: LayerTree, owner: str) -> None:
    """certctl rehash over the image's /usr/share/certs, as 14.x's certctl.sh does it.

    Old hash *symlinks* go (`find -type link -delete`), regular files stay (the
    static flavour's copies), and a new link takes the first free `.N` suffix.
    """
    layout = "blacklisted" if tree.listdir(f"{certctl.SHARE_CERTS}/blacklisted") else "untrusted"
    trusted = tree.listdir(f"{certctl.SHARE_CERTS}/trusted")
    untrusted = tree.listdir(f"{certctl.SHARE_CERTS}/{layout}")
    taken: dict[str, set[str]] = {}
    for sub in ("certs", layout):
        directory = f"{certctl.SSL_DIR}/{sub}"
        for path, item in list(tree.items.items()):
            if posixpath.dirname(path) == directory and item.entry.kind == "symlink":
                tree.remove(path, owner)
        for path in tree.lower_paths_under(directory):
            if posixpath.dirname(path) == directory and path in tree.parent.symlinks:
                tree.remove(path, owner)
        taken[directory] = {posixpath.basename(p) for p, i in tree.items.items()
                            if posixpath.dirname(p) == directory and i.entry.kind == "file"}
        taken[directory] |= {posixpath.basename(p) for p in tree.parent.files
                             if posixpath.dirname(p) == directory and p not in tree.removed}
    for e in certctl.rehash(trusted, untrusted, layout=layout, style="symlink", install_sources=True):
        if e.path.startswith(certctl.SHARE_CERTS):
            continue            # the certificates themselves are the packages' own files
        if e.kind == "dir":
            if e.path not in tree.items and e.path not in tree.parent.dirs:
                put_with_parents(tree, e, owner)
            continue
        directory, name = posixpath.split(e.path)
        stem, _, n = name.rpartition(".")
        number = int(n)
        while f"{stem}.{number}" in taken.get(directory, set()):
            number += 1
        taken.setdefault(directory, set()).add(f"{stem}.{number}")
        put_with_parents(tree, replace(e, path=f"{directory}/{stem}.{number}"), owner)


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

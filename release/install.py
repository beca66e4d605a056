"""Install steps applied to a LayerTree: the flavour's configured steps and package scripts.

The static flavour's recipe (mtree skeleton, accounts, termcap, CA certificates,
repository config) and the commands of recognised package scripts (pwd_mkdb,
services_mkdb, cap_mkdb, chmod, certctl rehash) are carried out by the pure-Python
builtins, reading their inputs from the src tree (by git object, see SrcFiles) or
from the image as it stands (the tree), so every builder writes the same bytes.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass, replace
from typing import Callable

from .builtins import certctl, mtree, repoconf
from .builtins.entries import Entry, implied_dirs
from .builtins.scripts import Step as ScriptStep
from .config import Step, expand
from .errors import StepError
from .tree import LayerTree

MASTER_PASSWD_MODE = 0o600
PASSWD_MODE = 0o644
SPWD_MODE = 0o600
DB_MODE = 0o644


@dataclass(frozen=True)
class Context:
    """What steps may consult besides the tree."""
    read_src: Callable[[str], bytes]                 # a file of the release's src commit
    read_src_dir: Callable[[str], dict[str, bytes]]  # regular files of one src directory ({} if absent)
    byte_order: str
    variables: dict[str, str]                        # ${REPO} ... for repo-conf URLs
    fingerprints_path: str                           # where base.conf tells pkg to find trust anchors
    signature_type: str


PRE_PACKAGE_STEPS = ("mtree", "remove")


def run_config_step(tree: LayerTree, step: Step, ctx: Context) -> None:
    owner = f"step {step.kind}"
    if step.kind == "mtree":
        for spec in step.get("specs"):
            name, _, prefix = spec.partition(":")
            data = ctx.read_src(f"etc/mtree/{name}")
            for e in mtree.mtree_dirs(data, prefix or mtree.MTREE_PREFIXES.get(name, "/"), name):
                if e.path != "/":
                    tree.put(e, f"mtree {name}")
    elif step.kind == "remove":
        for path in step.get("paths"):
            tree.remove(path, owner)
    elif step.kind == "accounts":
        master = ctx.read_src(step.get("master_passwd"))
        _put_with_parents(tree, Entry("/etc/master.passwd", "file", MASTER_PASSWD_MODE, data=master), owner)
        _put_with_parents(tree, Entry("/etc/group", "file", 0o644, data=ctx.read_src(step.get("group"))), owner)
        pwd_mkdb(tree, {"source": "/etc/master.passwd", "directory": "/etc", "v7_passwd": True}, owner)
    elif step.kind == "src-file":
        data = ctx.read_src(step.get("src"))
        mode = int(step.get("mode"), 8)
        for dest in step.get("dest"):
            _put_with_parents(tree, Entry(dest, "file", mode, step.get("uname"), step.get("gname"), data=data),
                              owner)
    elif step.kind == "caroot":
        trusted = ctx.read_src_dir(step.get("trusted"))
        untrusted = ctx.read_src_dir(step.get("untrusted"))
        for e in certctl.rehash(trusted, untrusted, layout=step.get("layout"), style="copy",
                                install_sources=False):
            _put_with_parents(tree, e, owner)
    elif step.kind == "repo-conf":
        url = expand(step.get("url"), ctx.variables)
        entry = repoconf.base_conf(url, signature_type=ctx.signature_type if ctx.signature_type != "pubkey"
                                   else "fingerprints", fingerprints=ctx.fingerprints_path, name=step.get("name"))
        _put_with_parents(tree, entry, owner)
    elif step.kind == "run":
        raise StepError(f"{owner}: run steps need the emulation executor, which this build does not provide")
    else:  # the config schema makes this unreachable
        raise StepError(f"unknown step kind {step.kind}")


def run_script_step(tree: LayerTree, step: ScriptStep, package: str, ctx: Context) -> None:
    owner = f"{package} {step.kind}"
    a = step.args
    if step.kind == "pwd_mkdb":
        pwd_mkdb(tree, a, owner)
    elif step.kind == "services_mkdb":
        from .builtins.servicesmkdb import services_mkdb
        source = _need(tree, a["source"], owner)
        _put_with_parents(tree, Entry(a["database"], "file", DB_MODE,
                                      data=services_mkdb(source, a.get("byte_order") or ctx.byte_order)), owner)
    elif step.kind == "cap_mkdb":
        from .builtins.capmkdb import cap_mkdb
        sources = [_need(tree, s, owner) for s in a["sources"]]
        _put_with_parents(tree, Entry(a["database"], "file", DB_MODE,
                                      data=cap_mkdb(b"".join(sources), a.get("byte_order") or ctx.byte_order)),
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
        _put_with_parents(tree, e, owner)


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
                _put_with_parents(tree, e, owner)
            continue
        directory, name = posixpath.split(e.path)
        stem, _, n = name.rpartition(".")
        number = int(n)
        while f"{stem}.{number}" in taken.get(directory, set()):
            number += 1
        taken.setdefault(directory, set()).add(f"{stem}.{number}")
        _put_with_parents(tree, replace(e, path=f"{directory}/{stem}.{number}"), owner)


def _need(tree: LayerTree, path: str, owner: str) -> bytes:
    data = tree.read(path)
    if data is None:
        raise StepError(f"{owner}: needs {path}, which is not in the image")
    return data


def _put_with_parents(tree: LayerTree, entry: Entry, owner: str) -> None:
    """Add *entry*; missing parent directories appear as `mkdir -p` makes them (root:wheel 0755)."""
    for d in implied_dirs([entry]):
        if d.path not in tree.items and d.path not in tree.parent.dirs:
            tree.put(d, owner)
    tree.put(entry, owner)

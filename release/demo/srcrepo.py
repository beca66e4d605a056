"""Small, deterministic src repositories for the demo release and the tests.

The pipeline reads src through a git mirror, so the demo needs a real git
repository to serve over file://.  It is written object by object with pygit2
(no checkout, no `git` command, no clock): the same files and time give the
same commit ids on every machine, which keeps the demo images reproducible.

Each branch gets a tiny history shaped like FreeBSD's: three commits on the
first-parent line whose tip merges one side commit, so gitcount
(`git rev-list --first-parent --count`, 3) differs from the total count (4)
and code that confuses the two is caught.  Repositories are bare: nothing
ever needs a working tree.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pygit2
from pygit2.enums import FileMode, RepositoryOpenFlag

from ..errors import InputError

RE_NAME = "FreeBSD Release Engineering"
RE_EMAIL = "re@FreeBSD.org"
HOUR = 3600


class Symlink(bytes):
    """A file value that is a symbolic link; the bytes are the link target."""


class Executable(bytes):
    """A file value that is an executable regular file (mode 755)."""


# path -> (blob id, git file mode), the flat form trees are built from
Entries = dict[str, tuple[pygit2.Oid, int]]


def _mode(data: bytes) -> int:
    if isinstance(data, Symlink):
        return FileMode.LINK
    if isinstance(data, Executable):
        return FileMode.BLOB_EXECUTABLE
    return FileMode.BLOB


def _check_path(path: str) -> None:
    parts = path.split("/")
    if any(p in ("", ".", "..", ".git") for p in parts) or "\0" in path:
        raise InputError(f"{path!r}: not a clean repository-relative file path")


def _signature(time: int) -> pygit2.Signature:
    """The release engineering identity at *time*, in UTC so no host zone leaks in."""
    return pygit2.Signature(RE_NAME, RE_EMAIL, time, 0)


def _blobs(repo: pygit2.Repository, files: Mapping[str, bytes]) -> Entries:
    entries: Entries = {}
    for path, data in files.items():
        _check_path(path)
        if not isinstance(data, bytes):
            raise InputError(f"{path}: file contents must be bytes")
        entries[path] = (repo.create_blob(bytes(data)), _mode(data))
    return entries


def _write_tree(repo: pygit2.Repository, entries: Entries, where: str = "") -> pygit2.Oid:
    """Write nested trees for flat *entries*; a file and a directory may not share a name."""
    files: dict[str, tuple[pygit2.Oid, int]] = {}
    dirs: dict[str, Entries] = {}
    for path, entry in entries.items():
        head, _, rest = path.partition("/")
        if rest:
            dirs.setdefault(head, {})[rest] = entry
        else:
            files[head] = entry
    builder = repo.TreeBuilder()
    for name, (oid, mode) in files.items():
        if name in dirs:
            raise InputError(f"{where}{name}: is both a file and a directory")
        builder.insert(name, oid, mode)
    for name, sub in dirs.items():
        builder.insert(name, _write_tree(repo, sub, f"{where}{name}/"), FileMode.TREE)
    return builder.write()


def _flatten(repo: pygit2.Repository, tree: pygit2.Tree, prefix: str = "") -> Entries:
    entries: Entries = {}
    for obj in tree:
        assert obj.name is not None                     # an entry of a tree always has a name
        path = prefix + obj.name
        if isinstance(obj, pygit2.Tree):
            entries.update(_flatten(repo, obj, path + "/"))
        else:
            entries[path] = (obj.id, int(obj.filemode))
    return entries


def _commit(repo: pygit2.Repository, entries: Entries, parents: list[pygit2.Oid],
            time: int, message: str) -> pygit2.Oid:
    sig = _signature(time)
    if not message.endswith("\n"):
        message += "\n"          # as `git commit` stores it
    return repo.create_commit(None, sig, sig, message, _write_tree(repo, entries), parents)


def _branch_history(repo: pygit2.Repository, branch: str, entries: Entries, time: int) -> pygit2.Oid:
    """c1 -> c2 -> merge(c2, side), side forked from c1; the tip holds exactly *entries*.

    Files are dealt round-robin in path order: the first share is imported by
    c1, the second added by c2 and the third by the side commit, so every
    commit (up to small file counts) changes something.
    """
    paths = sorted(entries)
    shares = [{p: entries[p] for p in paths[i::3]} for i in range(3)]
    c1_tree = shares[0]
    c2_tree = {**c1_tree, **shares[1]}
    side_tree = {**c1_tree, **shares[2]}
    c1 = _commit(repo, c1_tree, [], time - 3 * HOUR, f"{branch}: import the source tree")
    side = _commit(repo, side_tree, [c1], time - 2 * HOUR, f"{branch}: add files on a topic branch")
    c2 = _commit(repo, c2_tree, [c1], time - HOUR, f"{branch}: add more files")
    return _commit(repo, entries, [c2, side], time, f"Merge the topic branch into {branch}")


def make_src_repo(path: Path, branches: dict[str, dict[str, bytes]], *, time: int) -> dict[str, str]:
    """Create a bare repository at *path*; return branch -> tip commit id.

    Every branch tip has committer time *time* and holds exactly the given
    files (paths like "etc/master.passwd"; wrap a value in Symlink or
    Executable for those modes).  *path* must not exist or be empty, so a
    repository can never mix in branches from an earlier run.
    """
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise InputError(f"{path}: exists and is not empty; demo src repositories are made fresh")
    if not branches:
        raise InputError(f"{path}: a demo src repository needs at least one branch")
    if time < 3 * HOUR:
        raise InputError(f"time {time}: too early for a three-hour demo history")
    for branch in branches:
        if not pygit2.reference_is_valid_name(f"refs/heads/{branch}"):
            raise InputError(f"{branch!r}: not a valid branch name")
    repo = pygit2.init_repository(str(path), bare=True)
    heads = {}
    for branch, files in branches.items():
        tip = _branch_history(repo, branch, _blobs(repo, files), time)
        repo.references.create(f"refs/heads/{branch}", tip, force=True)
        heads[branch] = str(tip)
    default = "main" if "main" in branches else next(iter(branches))
    repo.references.create("HEAD", f"refs/heads/{default}", force=True)
    return heads


def advance_branch(path: Path, branch: str, changes: dict[str, bytes | None], *,
                   time: int, message: str) -> str:
    """Add one commit on *branch* of the repository at *path*; return its id.

    *changes* maps a path to its new contents, or to None to delete it, the
    way a nightly src commit would touch a few files.
    """
    try:
        repo = pygit2.Repository(str(path), RepositoryOpenFlag.NO_SEARCH)
    except pygit2.GitError:
        raise InputError(f"{path}: not a git repository") from None
    ref = repo.references.get(f"refs/heads/{branch}")
    if ref is None:
        raise InputError(f"{path}: no branch {branch}")
    parent = ref.peel(pygit2.Commit)
    entries = _flatten(repo, parent.tree)
    for name, data in changes.items():
        if data is not None:
            continue
        if entries.pop(name, None) is None:
            raise InputError(f"{path}: cannot delete {name} from {branch}: no such file")
    entries.update(_blobs(repo, {k: v for k, v in changes.items() if v is not None}))
    commit = _commit(repo, entries, [parent.id], time, message)
    ref.set_target(commit, f"advance {branch}")
    return str(commit)

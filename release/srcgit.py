"""A bare mirror of the FreeBSD src repository, limited to the configured branches.

The images need very little from src: the branch head (commit, committer time,
gitrev, gitcount for snapshot names and SOURCE_DATE_EPOCH) and a handful of
small files (master.passwd, services, caroot certificates ...) that are read
straight from git objects, so the pipeline never checks out a tree.

Only `refs/heads/<branch>` of the configured branches is fetched, each into the
same name locally (`+refs/heads/main:refs/heads/main`), so the mirror looks like
the source repository minus everything the release does not build from.

History depth: FreeBSD's gitcount (`git rev-list --first-parent --count`, the
`n274209` in `main-n274209-b3fb3a9d0d8c`) needs the whole first-parent chain,
so the mirror fetches full history.  For freebsd-src that is a download of
roughly 2 GB and a few minutes of pack indexing on the first fetch; later
fetches only bring the new commits (usually a few MB).  pygit2 can fetch
shallow (`Remote.fetch(depth=N)`, libgit2 >= 1.7), but the count of a shallow
history is wrong, which is why FreeBSD's own newvers.sh leaves the count out of
the version string of shallow clones; this module never fetches shallow.
libgit2 does not repack, so every fetch adds one pack; run `git gc` on the
mirror now and then if many hundreds of fetches accumulate.
"""
from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import pygit2
from pygit2.enums import FileMode, RepositoryOpenFlag, SortMode

from .errors import FetchError, InputError
from .progress import Progress

log = logging.getLogger("release.srcgit")

REMOTE = "origin"
# release/Makefile.inc1 takes GITREV from `git rev-parse --verify --short HEAD`;
# on freebsd-src git's automatic abbreviation comes out at 12 hex digits, the
# length seen in every snapshot name (and what newvers.sh shows after nNNNNNN-).
GITREV_LENGTH = 12
URL_SCHEMES = ("file", "https")
# Held (flock) while fetching: serialises pipeline processes sharing the mirror
# and proves that git lock files found inside are leftovers of a crashed fetch.
FETCH_LOCK = "mirror-lock"


@dataclass(frozen=True)
class BranchHead:
    """What a build records about the src branch it was made from."""

    branch: str
    commit: str      # 40 hex digits
    short: str       # gitrev as in snapshot names
    time: int        # committer time, seconds since the epoch
    count: int       # gitcount: first-parent commits up to and including `commit`
    subject: str


@dataclass(frozen=True)
class TreeFile:
    """One non-directory entry of a src directory, read from git objects.

    For a symbolic link `data` is the link target, as git stores it.
    """

    name: str
    data: bytes
    mode: int        # git file mode: 0o100644, 0o100755 or 0o120000

    @property
    def is_symlink(self) -> bool:
        return self.mode == FileMode.LINK

    @property
    def is_executable(self) -> bool:
        return self.mode == FileMode.BLOB_EXECUTABLE


class Change(NamedTuple):
    """One first-parent commit in a change report."""

    commit: str
    subject: str


def refspec(branch: str) -> str:
    """The fetch refspec that mirrors *branch* under its own name."""
    return f"+refs/heads/{branch}:refs/heads/{branch}"


def commit_subject(message: str) -> str:
    """git's %s: the first paragraph of a commit message on one line."""
    lines: list[str] = []
    for line in message.strip().splitlines():
        if not line.strip():
            break
        lines.append(line.strip())
    return " ".join(lines)


def _check_branches(url: str, branches: list[str]) -> list[str]:
    """Deduplicated branch list, or InputError naming the first bad name."""
    if not branches:
        raise InputError(f"{url}: no src branches configured")
    for branch in branches:
        if not pygit2.reference_is_valid_name(f"refs/heads/{branch}"):
            raise InputError(f"{url}: invalid branch name {branch!r}")
    return list(dict.fromkeys(branches))


def _is_glob(branch: str) -> bool:
    return any(c in branch for c in "*?[")


def _clean_path(path: str) -> str:
    """Repository-relative path with no leading slash, '.' or '..' parts."""
    parts = [p for p in path.strip("/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InputError(f"{path}: '..' is not allowed in a src path")
    return "/".join(parts)


class SrcMirror:
    """A bare git mirror of src at *path*, fetched from *url* (file:// or https://)."""

    def __init__(self, path: Path, url: str) -> None:
        scheme = urlsplit(url).scheme
        if scheme not in URL_SCHEMES:
            raise InputError(f"{url}: src URL must be file:// or https://, not {scheme or 'a plain path'}")
        self.path = Path(path)
        self.url = url
        self._repository: pygit2.Repository | None = None
        self._counts: dict[pygit2.Oid, int] = {}

    # -- fetching -----------------------------------------------------------

    def fetch(self, branches: list[str], progress: Progress | None = None) -> dict[str, str]:
        """Bring the configured *branches* up to date; return branch -> commit id.

        The remote is asked for its branch list first, because libgit2 silently
        skips a refspec whose source does not exist: a typo in config.toml (or a
        branch deleted upstream) must fail here, not build from a stale ref.
        A glob (releng/15.*) stands for every branch the remote has that matches.
        """
        if not branches:
            raise InputError(f"{self.url}: no src branches configured")
        globs = [b for b in branches if _is_glob(b)]
        patterns = (_check_branches(self.url, [b for b in branches if not _is_glob(b)]) if len(globs) < len(branches)
                    else []) + globs
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / FETCH_LOCK, "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            repo = self._open_or_init()
            _remove_crash_leftovers(self.path)
            if REMOTE not in {r.name for r in repo.remotes}:
                repo.remotes.create(REMOTE, self.url, refspec("main"))
            elif repo.remotes[REMOTE].url != self.url:
                repo.remotes.set_url(REMOTE, self.url)
            advertised = self._list_branches(repo.remotes[REMOTE], patterns)
            missing = [b for b in patterns if not any(fnmatch.fnmatchcase(a, b) for a in advertised)]
            if missing:
                raise FetchError(f"{self.url}: no branch {', '.join(missing)} in the src repository")
            branches = sorted({a for a in advertised for b in patterns if fnmatch.fnmatchcase(a, b)})
            remote = self._configure_remote(repo, branches)
            callbacks = _Callbacks(progress) if progress is not None else None
            try:
                remote.fetch(callbacks=callbacks, message=f"fetch {' '.join(branches)}",
                             proxy=None if self.url.startswith("file:") else True)
            except pygit2.GitError as e:
                raise FetchError(f"{self.url}: fetching branch {', '.join(branches)} failed: {e}") from None
            heads = {b: str(self._branch_commit(repo, b).id) for b in branches}
        log.debug("fetched %s from %s: %s", ", ".join(branches), self.url, heads)
        return heads

    def _open_or_init(self) -> pygit2.Repository:
        """Open the bare mirror, creating (or completing a crashed creation of) it."""
        try:
            repo = pygit2.Repository(str(self.path), RepositoryOpenFlag.NO_SEARCH)
        except pygit2.GitError:
            repo = pygit2.init_repository(str(self.path), bare=True)
        if not repo.is_bare:
            raise InputError(f"{self.path}: is a git checkout, not a bare src mirror")
        self._repository = repo
        return repo

    def _configure_remote(self, repo: pygit2.Repository, branches: list[str]) -> pygit2.Remote:
        """Make "origin" point at the URL with exactly one refspec per branch."""
        if REMOTE not in {r.name for r in repo.remotes}:
            repo.remotes.create(REMOTE, self.url, refspec(branches[0]))
        elif repo.remotes[REMOTE].url != self.url:
            repo.remotes.set_url(REMOTE, self.url)
        wanted = [refspec(b) for b in branches]
        if repo.remotes[REMOTE].fetch_refspecs != wanted:
            with contextlib.suppress(KeyError, pygit2.GitError):   # no fetch refspec yet
                repo.config.delete_multivar(f"remote.{REMOTE}.fetch", ".*")
            for spec in wanted:
                repo.remotes.add_fetch(REMOTE, spec)
        return repo.remotes[REMOTE]

    def _list_branches(self, remote: pygit2.Remote, branches: list[str]) -> set[str]:
        """Branch names the remote advertises (needs one connection)."""
        try:
            heads = remote.list_heads(proxy=None if self.url.startswith("file:") else True)
        except pygit2.GitError as e:
            raise FetchError(f"{self.url}: cannot reach src repository for branch "
                             f"{', '.join(branches)}: {e}") from None
        prefix = "refs/heads/"
        return {h.name[len(prefix):] for h in heads if h.name and h.name.startswith(prefix)}

    # -- reading ------------------------------------------------------------

    def _repo(self) -> pygit2.Repository:
        if self._repository is None:
            try:
                self._repository = pygit2.Repository(str(self.path), RepositoryOpenFlag.NO_SEARCH)
            except pygit2.GitError:
                raise FetchError(f"{self.path}: src mirror of {self.url} has not been fetched yet") from None
        return self._repository

    def branches(self) -> list[str]:
        """The branches the mirror holds."""
        prefix = "refs/heads/"
        return sorted(r[len(prefix):] for r in self._repo().references if r.startswith(prefix))

    def branch_commit(self, branch: str) -> str:
        """The commit a mirrored branch points at."""
        return str(self._branch_commit(self._repo(), branch).id)

    def _branch_commit(self, repo: pygit2.Repository, branch: str) -> pygit2.Commit:
        ref = repo.references.get(f"refs/heads/{branch}")
        if ref is None:
            raise FetchError(f"{self.url}: branch {branch} is not in the src mirror (not fetched)")
        return ref.peel(pygit2.Commit)

    def _commit(self, rev: str) -> pygit2.Commit:
        """The commit named by an id (full or abbreviated) or a mirrored branch."""
        repo = self._repo()
        try:
            obj = repo.revparse_single(rev)
            return obj.peel(pygit2.Commit)
        except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
            raise InputError(f"{self.url}: no commit {rev} in the src mirror") from None

    def head(self, branch: str) -> BranchHead:
        """Commit, gitrev, time, gitcount and subject of a fetched branch."""
        return self.describe(branch, str(self._branch_commit(self._repo(), branch).id))

    def describe(self, branch: str, rev: str) -> BranchHead:
        """The same record for a given commit of *branch* (a build pinned to a lock's src commit)."""
        commit = self._commit(rev)
        return BranchHead(branch=branch, commit=str(commit.id), short=self.short_id(commit.id),
                          time=commit.commit_time, count=self.first_parent_count(str(commit.id)),
                          subject=commit_subject(commit.raw_message.decode("utf-8", "replace")))

    def short_id(self, oid: pygit2.Oid | str, length: int = GITREV_LENGTH) -> str:
        """Like `git rev-parse --short=12`: 12 hex digits, more if that is ambiguous."""
        repo, hexid = self._repo(), str(oid)
        for n in range(length, len(hexid)):
            try:
                repo[hexid[:n]]
                return hexid[:n]
            except pygit2.AmbiguousError:
                continue
        return hexid

    def remember_count(self, commit: str, count: int) -> None:
        """Seed the gitcount of a commit counted by an earlier run (first_parent_count stops there)."""
        self._counts[self._commit(commit).id] = count

    def first_parent_count(self, commit: str) -> int:
        """gitcount: commits on the first-parent chain from *commit* to the root.

        A Walker with simplify_first_parent parses every commit of the chain:
        about 2 s for a synthetic 300,000-commit chain (the length of
        freebsd-src main), where `git rev-list` takes about 1 s; real commits
        are larger, so expect a few seconds.  Counts are remembered per mirror object, and a
        later walk stops at the first commit already counted, so asking again
        for a newer head of the same branch costs only the new commits.
        """
        start = self._commit(commit).id
        walker = self._repo().walk(start, SortMode.NONE)
        walker.simplify_first_parent()
        steps, total = 0, None
        for c in walker:
            if c.id in self._counts:
                total = self._counts[c.id] + steps
                break
            steps += 1
        count = steps if total is None else total
        self._counts[start] = count
        return count

    def commits_between(self, old: str, new: str) -> list[Change]:
        """First-parent commits in *new* but not in *old*, newest first.

        The same list as `git rev-list --first-parent old..new`: what went into
        a branch between two builds, for the nightly change report.
        """
        old_id, new_id = self._commit(old).id, self._commit(new).id
        walker = self._repo().walk(new_id, SortMode.NONE)
        walker.simplify_first_parent()
        walker.hide(old_id)
        return [Change(str(c.id), commit_subject(c.raw_message.decode("utf-8", "replace")))
                for c in walker]

    def last_change(self, commit: str, paths: list[str], known: tuple[str, str] | None = None) -> tuple[str, int]:
        """(id, commit time) of the newest first-parent commit up to *commit* that changed any of *paths*.

        This is when the files a release's images are made from last changed:
        commits elsewhere in src do not move it.  *known* is an earlier answer
        (a commit walked to, and the change found from there): the walk stops on
        reaching it, so a nightly pays only for the commits since the last one.
        """
        repo = self._repo()
        walker = repo.walk(self._commit(commit).id, SortMode.NONE)
        walker.simplify_first_parent()

        def ids(c: pygit2.Commit) -> tuple[pygit2.Oid | None, ...]:
            tree = c.tree
            out: list[pygit2.Oid | None] = []
            for p in paths:
                try:
                    out.append(tree[_clean_path(p)].id)
                except KeyError:
                    out.append(None)
            return tuple(out)

        for c in walker:
            if known is not None and str(c.id) == known[0]:
                found = self._commit(known[1])
                return str(found.id), found.commit_time
            if not c.parents or ids(c) != ids(c.parents[0]):
                return str(c.id), c.commit_time
        raise InputError(f"{self.url}: no commit reachable from {commit}")  # unreachable: the root commit returns

    def _entry(self, commit: str, path: str) -> tuple[pygit2.Tree | pygit2.Blob, str]:
        """The git object at *path* in *commit* (root tree for an empty path)."""
        tree = self._commit(commit).tree
        clean = _clean_path(path)
        if not clean:
            return tree, clean
        try:
            return tree[clean], clean
        except KeyError:
            raise InputError(f"{self.url}: no {clean} in src commit {commit}") from None

    def object_id(self, commit: str, path: str) -> str | None:
        """Git object id of *path* in *commit* (blob or tree), None when it is absent.

        Content identity without reading content: a layer built from these
        files depends on their ids, not on the commit that happens to carry them.
        """
        try:
            obj, _ = self._entry(commit, path)
        except InputError:
            return None
        return str(obj.id)

    def input_id(self, commit: str, path: str) -> str | None:
        """object_id() of a path the images read: a symbolic link there is refused by name."""
        try:
            obj, clean = self._entry(commit, path)
        except InputError:
            return None
        if isinstance(obj, pygit2.Blob) and obj.filemode == FileMode.LINK:
            raise InputError(f"{self.url}: {clean} in src commit {commit} is a symbolic link "
                             f"to {obj.data.decode('utf-8', 'replace')}")
        return str(obj.id)

    def read_object(self, oid: str, path: str) -> bytes:
        """The blob *oid* (recorded for *path* by input_id), straight from the object store."""
        obj = self._object(oid, path)
        if not isinstance(obj, pygit2.Blob):
            raise InputError(f"{self.url}: {path} (object {oid[:12]}) is not a file")
        return obj.data

    def read_tree_object(self, oid: str, path: str) -> dict[str, TreeFile]:
        """Files and symlinks directly in the tree *oid* (recorded for directory *path*), sorted by name."""
        obj = self._object(oid, path)
        if not isinstance(obj, pygit2.Tree):
            raise InputError(f"{self.url}: {path} (object {oid[:12]}) is not a directory")
        return _tree_files(obj)

    def _object(self, oid: str, path: str) -> pygit2.Object:
        try:
            return self._repo()[oid]
        except (KeyError, ValueError):
            raise InputError(f"{self.url}: object {oid[:12]} ({path}) is not in the mirror {self.path}; "
                             "fetch the src again") from None

    def read_file(self, commit: str, path: str) -> bytes:
        """Contents of the regular file *path* in *commit*, straight from the blob."""
        obj, clean = self._entry(commit, path)
        if not isinstance(obj, pygit2.Blob):
            raise InputError(f"{self.url}: {clean or '/'} in src commit {commit} is not a file")
        if obj.filemode == FileMode.LINK:
            raise InputError(f"{self.url}: {clean} in src commit {commit} is a symbolic link "
                             f"to {obj.data.decode('utf-8', 'replace')}")
        return obj.data

    def read_tree(self, commit: str, path: str) -> dict[str, TreeFile]:
        """Files and symlinks directly in directory *path* of *commit*, sorted by name.

        Subdirectories and submodules are left out: callers read one directory
        of data files (e.g. secure/caroot/trusted), never a whole subtree.
        """
        obj, clean = self._entry(commit, path)
        if not isinstance(obj, pygit2.Tree):
            raise InputError(f"{self.url}: {clean} in src commit {commit} is not a directory")
        return _tree_files(obj)


def _tree_files(tree: pygit2.Tree) -> dict[str, TreeFile]:
    """The files and symlinks directly in *tree* (not subtrees or submodules), sorted by name."""
    blobs = {entry.name: entry for entry in tree if isinstance(entry, pygit2.Blob) and entry.name is not None}
    return {name: TreeFile(name, blobs[name].data, int(blobs[name].filemode)) for name in sorted(blobs)}


class _Callbacks(pygit2.RemoteCallbacks):
    """Feeds libgit2's received-bytes counter to the pipeline's Progress."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress
        self.seen = 0

    def transfer_progress(self, stats: pygit2.remotes.TransferProgress) -> None:
        if stats.received_bytes > self.seen:
            self.progress.advance(stats.received_bytes - self.seen)
            self.seen = stats.received_bytes


def _remove_crash_leftovers(gitdir: Path) -> int:
    """Delete lock and temporary files a killed fetch left behind.

    libgit2 writes refs and config through `<name>.lock` files and packs
    through `objects/pack/pack_git2_*` temporaries, renaming them when done.
    A fetch killed half-way leaves them, and a stale ref lock would make every
    later fetch fail.  Only called while holding FETCH_LOCK, so no live fetch
    owns them.
    """
    victims = [gitdir / n for n in ("config.lock", "HEAD.lock", "packed-refs.lock",
                                     "FETCH_HEAD.lock", "shallow.lock")]
    for sub in ("refs", "logs"):
        victims += (gitdir / sub).rglob("*.lock")
    victims += (gitdir / "objects" / "pack").glob("pack_git2_*")
    victims += (gitdir / "objects").glob("??/tmp_object_git2_*")
    removed = 0
    for victim in victims:
        try:
            victim.unlink()
            removed += 1
            log.debug("removed leftover of an interrupted fetch: %s", victim)
        except FileNotFoundError:
            pass
    return removed

"""The src mirror against real git repositories made by the demo generator, over file:// URLs."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pygit2
import pytest

from release.demo.srcrepo import Executable, Symlink, advance_branch, make_src_repo
from release.errors import FetchError, InputError
from release.progress import NullProgress
from release.srcgit import FETCH_LOCK, BranchHead, SrcMirror, TreeFile, refspec
from tests.conftest import PROJECT, need_tool

T0 = 1735689600  # 2025-01-01 00:00:00 UTC

MAIN_FILES = {
    "etc/master.passwd": b"root:*:0:0::0:0:Charlie &:/root:/bin/sh\n",
    "etc/group": b"wheel:*:0:root\n",
    "secure/caroot/trusted/A.pem": b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    "secure/caroot/trusted/B.pem": b"-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n",
    "secure/caroot/trusted/C.pem": Symlink(b"B.pem"),
    "secure/caroot/trusted/old/D.pem": b"-----BEGIN CERTIFICATE-----\nDDDD\n-----END CERTIFICATE-----\n",
    "usr.sbin/certctl/certctl.sh": Executable(b"#!/bin/sh\nexit 0\n"),
}
BRANCHES = {
    "main": MAIN_FILES,
    "stable/14": {"etc/master.passwd": b"root:*:0:0::0:0:Charlie &:/root:/bin/csh\n"},
    "releng/14.2": {"etc/group": b"wheel:*:0:\n"},
}


@pytest.fixture
def src(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    path = tmp_path / "src.git"
    return path, make_src_repo(path, BRANCHES, time=T0)


@pytest.fixture
def mirror(tmp_path: Path, src) -> SrcMirror:
    return SrcMirror(tmp_path / "work" / "src.git", src[0].as_uri())


def git(gitdir: Path, *args: str) -> str:
    exe = need_tool("git", "git")
    return subprocess.run([exe, f"--git-dir={gitdir}", *args], check=True,
                          capture_output=True, text=True).stdout.strip()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the demo generator ------------------------------------------------------

def test_make_src_repo_is_deterministic(tmp_path: Path):
    one = make_src_repo(tmp_path / "one", BRANCHES, time=T0)
    two = make_src_repo(tmp_path / "two", dict(reversed(BRANCHES.items())), time=T0)
    assert one == two
    assert len(set(one.values())) == 3
    later = make_src_repo(tmp_path / "later", BRANCHES, time=T0 + 1)
    assert later.keys() == one.keys() and not set(later.values()) & set(one.values())


def test_make_src_repo_history_and_identity(src):
    path, heads = src
    repo = pygit2.Repository(str(path))
    assert repo.is_bare and repo.head.shorthand == "main"
    tip = repo[heads["main"]]
    assert len(tip.parents) == 2
    assert (tip.author.name, tip.author.email) == ("FreeBSD Release Engineering", "re@FreeBSD.org")
    assert tip.committer == tip.author and tip.commit_time == T0 and tip.commit_time_offset == 0
    for name, data in MAIN_FILES.items():
        obj = tip.tree[name]
        assert obj.data == bytes(data)
    assert tip.tree["secure/caroot/trusted/C.pem"].filemode == pygit2.enums.FileMode.LINK
    assert tip.tree["usr.sbin/certctl/certctl.sh"].filemode == pygit2.enums.FileMode.BLOB_EXECUTABLE
    assert git(path, "rev-list", "--count", "main") == "4"
    assert git(path, "rev-list", "--first-parent", "--count", "main") == "3"
    git(path, "fsck", "--strict")


def test_make_src_repo_refuses_bad_input(tmp_path: Path):
    with pytest.raises(InputError, match=r"etc/\.\./x"):
        make_src_repo(tmp_path / "a", {"main": {"etc/../x": b""}}, time=T0)
    with pytest.raises(InputError, match="etc: is both a file and a directory"):
        make_src_repo(tmp_path / "b", {"main": {"etc": b"", "etc/x": b""}}, time=T0)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "junk").write_bytes(b"")
    with pytest.raises(InputError, match="not empty"):
        make_src_repo(tmp_path / "c", BRANCHES, time=T0)


def test_advance_branch(src):
    path, heads = src
    new = advance_branch(path, "main", {"etc/group": None, "etc/shells": b"/bin/sh\n"},
                         time=T0 + 60, message="Add /etc/shells")
    repo = pygit2.Repository(str(path))
    commit = repo[new]
    assert [str(p) for p in commit.parent_ids] == [heads["main"]]
    assert str(repo.references["refs/heads/main"].target) == new
    assert "etc/group" not in commit.tree and commit.tree["etc/shells"].data == b"/bin/sh\n"
    assert commit.message == "Add /etc/shells\n"
    with pytest.raises(InputError, match="nope"):
        advance_branch(path, "main", {"nope": None}, time=T0 + 120, message="x")
    with pytest.raises(InputError, match="no branch stable/13"):
        advance_branch(path, "stable/13", {}, time=T0, message="x")


# -- fetching ----------------------------------------------------------------

def test_fetch_only_configured_branches(mirror: SrcMirror, src):
    _, heads = src
    got = mirror.fetch(["main", "stable/14"])
    assert got == {"main": heads["main"], "stable/14": heads["stable/14"]}
    repo = pygit2.Repository(str(mirror.path))
    assert repo.is_bare
    assert sorted(repo.listall_references()) == ["refs/heads/main", "refs/heads/stable/14"]
    assert repo.remotes["origin"].fetch_refspecs == [refspec("main"), refspec("stable/14")]
    assert repo.remotes["origin"].url == mirror.url
    git(mirror.path, "fsck", "--strict")


def test_fetch_follows_a_changed_branch_list(mirror: SrcMirror, src):
    _, heads = src
    mirror.fetch(["main", "stable/14"])
    assert mirror.fetch(["releng/14.2"]) == {"releng/14.2": heads["releng/14.2"]}
    repo = pygit2.Repository(str(mirror.path))
    assert repo.remotes["origin"].fetch_refspecs == [refspec("releng/14.2")]
    assert "refs/heads/releng/14.2" in repo.references


def test_fetch_reports_progress(mirror: SrcMirror):
    progress = NullProgress()
    mirror.fetch(["main"], progress=progress)
    assert progress.done > 0


def test_fetch_does_not_adopt_an_enclosing_repository(tmp_path: Path, src):
    outer = pygit2.init_repository(str(tmp_path / "checkout"))
    inner = Path(outer.workdir) / "work" / "src.git"
    mirror = SrcMirror(inner, src[0].as_uri())
    mirror.fetch(["main"])
    assert pygit2.Repository(str(inner)).is_bare
    assert list(outer.references) == []


def test_head_fields(mirror: SrcMirror, src):
    _, heads = src
    mirror.fetch(["main"])
    head = mirror.head("main")
    assert isinstance(head, BranchHead)
    assert head == BranchHead(branch="main", commit=heads["main"], short=heads["main"][:12],
                              time=T0, count=3, subject="Merge the topic branch into main")
    assert head.short == git(mirror.path, "rev-parse", "--verify", "--short=12", "main")
    assert str(head.count) == git(mirror.path, "rev-list", "--first-parent", "--count", "main")
    assert head.subject == git(mirror.path, "log", "-1", "--format=%s", "main")
    assert str(head.time) == git(mirror.path, "log", "-1", "--format=%ct", "main")


def test_short_id_grows_when_ambiguous(mirror: SrcMirror):
    mirror.fetch(["main"])
    repo = pygit2.Repository(str(mirror.path))
    target = str(repo.references["refs/heads/main"].target)
    # Add blobs until one shares the commit's first two hex digits.
    n = 0
    while not str(repo.create_blob(b"%d" % n)).startswith(target[:2]):
        n += 1
    short = mirror.short_id(target, length=2)
    assert len(short) > 2 and target.startswith(short)
    assert str(repo[short].id) == target
    with pytest.raises(pygit2.AmbiguousError):
        repo[short[:-1]]
    assert mirror.short_id(target, length=4) == git(mirror.path, "rev-parse", "--short=4", target)


def test_refetch_after_advance(mirror: SrcMirror, src):
    path, heads = src
    mirror.fetch(["main", "stable/14"])
    first = advance_branch(path, "main", {"etc/shells": b"/bin/sh\n"}, time=T0 + 3600,
                           message="etc: add shells\n\nLong description.")
    second = advance_branch(path, "main", {"etc/group": None}, time=T0 + 7200,
                            message="etc: remove group")
    assert mirror.head("main").commit == heads["main"]  # not fetched yet
    assert mirror.fetch(["main", "stable/14"])["main"] == second
    head = mirror.head("main")
    assert (head.commit, head.count, head.time, head.subject) == (second, 5, T0 + 7200, "etc: remove group")
    assert str(head.count) == git(mirror.path, "rev-list", "--first-parent", "--count", "main")
    assert mirror.head("stable/14").commit == heads["stable/14"]
    changes = mirror.commits_between(heads["main"], second)
    assert changes == [(second, "etc: remove group"), (first, "etc: add shells")]
    assert [c.commit for c in changes] == git(
        mirror.path, "rev-list", "--first-parent", f"{heads['main']}..{second}").split()
    assert mirror.commits_between(second, second) == []
    assert mirror.read_file(second, "etc/shells") == b"/bin/sh\n"
    with pytest.raises(InputError, match="etc/group"):
        mirror.read_file(second, "etc/group")
    assert mirror.read_file(heads["main"], "etc/group") == MAIN_FILES["etc/group"]


def test_first_parent_count_uses_earlier_counts(mirror: SrcMirror, src):
    path, heads = src
    mirror.fetch(["main"])
    assert mirror.first_parent_count(heads["main"]) == 3
    for i in range(3):
        advance_branch(path, "main", {"n": b"%d" % i}, time=T0 + i + 1, message=f"step {i}")
    tip = mirror.fetch(["main"])["main"]
    mirror._counts[pygit2.Oid(hex=heads["main"])] = 100   # a count only the cache knows
    assert mirror.first_parent_count(tip) == 103
    assert SrcMirror(mirror.path, mirror.url).first_parent_count(tip) == 6


# -- reading files -------------------------------------------------------------

def test_read_file_and_tree(mirror: SrcMirror, src):
    commit = mirror.fetch(["main"])["main"]
    assert mirror.read_file(commit, "etc/master.passwd") == MAIN_FILES["etc/master.passwd"]
    assert mirror.read_file(commit, "/secure/caroot/trusted/old/D.pem") == \
        MAIN_FILES["secure/caroot/trusted/old/D.pem"]
    assert mirror.read_file("main", "etc/group") == MAIN_FILES["etc/group"]
    trusted = mirror.read_tree(commit, "secure/caroot/trusted")
    assert list(trusted) == ["A.pem", "B.pem", "C.pem"]           # old/ is a directory: left out
    assert trusted["A.pem"] == TreeFile("A.pem", MAIN_FILES["secure/caroot/trusted/A.pem"], 0o100644)
    assert trusted["C.pem"].is_symlink and trusted["C.pem"].data == b"B.pem"
    assert not trusted["B.pem"].is_symlink
    tool = mirror.read_tree(commit, "usr.sbin/certctl")["certctl.sh"]
    assert tool.is_executable and tool.mode == 0o100755
    assert list(mirror.read_tree(commit, "")) == []                # the root holds only directories
    with pytest.raises(InputError, match="symbolic link to B.pem"):
        mirror.read_file(commit, "secure/caroot/trusted/C.pem")
    with pytest.raises(InputError, match="etc in src commit .* is not a file"):
        mirror.read_file(commit, "etc")
    with pytest.raises(InputError, match="is not a directory"):
        mirror.read_tree(commit, "etc/group")


# -- errors --------------------------------------------------------------------

def test_missing_branch(mirror: SrcMirror):
    with pytest.raises(FetchError) as err:
        mirror.fetch(["main", "stable/13"])
    assert mirror.url in str(err.value) and "stable/13" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(FetchError, match="stable/13"):
        mirror.head("stable/13")


def test_branch_deleted_upstream_is_not_served_stale(mirror: SrcMirror, src):
    path, _ = src
    mirror.fetch(["main", "stable/14"])
    pygit2.Repository(str(path)).references.delete("refs/heads/stable/14")
    with pytest.raises(FetchError, match=f"{mirror.url}: no branch stable/14"):
        mirror.fetch(["main", "stable/14"])


def test_missing_file_and_commit(mirror: SrcMirror):
    commit = mirror.fetch(["main"])["main"]
    with pytest.raises(InputError) as err:
        mirror.read_file(commit, "etc/rc.conf")
    assert "etc/rc.conf" in str(err.value) and commit in str(err.value)
    with pytest.raises(InputError, match="secure/nope"):
        mirror.read_tree(commit, "secure/nope")
    with pytest.raises(InputError, match="no commit 0123456789ab"):
        mirror.read_file("0123456789ab", "etc/group")
    with pytest.raises(InputError, match=r"'\.\.'"):
        mirror.read_file(commit, "etc/../../x")


def test_bad_urls(tmp_path: Path):
    missing = (tmp_path / "no-such-src.git").as_uri()
    with pytest.raises(FetchError) as err:
        SrcMirror(tmp_path / "m1", missing).fetch(["main"])
    assert missing in str(err.value) and "main" in str(err.value)
    url = f"https://127.0.0.1:{closed_port()}/src.git"
    with pytest.raises(FetchError, match=f"{url}.*stable/14"):
        SrcMirror(tmp_path / "m2", url).fetch(["stable/14"])
    with pytest.raises(InputError, match="git://example.org/src"):
        SrcMirror(tmp_path / "m3", "git://example.org/src")
    with pytest.raises(InputError, match="invalid branch name"):
        SrcMirror(tmp_path / "m4", missing).fetch(["main..x"])
    with pytest.raises(FetchError, match="not been fetched"):
        SrcMirror(tmp_path / "m5", missing).head("main")


# -- crashes -------------------------------------------------------------------

CRASHING_FETCH = """
import os, sys
from pathlib import Path
from release.progress import Progress
from release.srcgit import SrcMirror

class Crash(Progress):
    def advance(self, n):
        os._exit(9)      # as if killed while the pack is arriving

SrcMirror(Path(sys.argv[1]), sys.argv[2]).fetch(["main"], progress=Crash("src", enabled=False))
"""


def test_fetch_completes_after_a_crash_mid_fetch(mirror: SrcMirror, src):
    _, heads = src
    proc = subprocess.run([sys.executable, "-c", CRASHING_FETCH, str(mirror.path), mirror.url],
                          cwd=PROJECT, env={**os.environ, "PYTHONPATH": str(PROJECT)})
    assert proc.returncode == 9
    assert not (mirror.path / "refs" / "heads" / "main").exists()
    assert mirror.fetch(["main"]) == {"main": heads["main"]}
    assert list((mirror.path / "objects" / "pack").glob("pack_git2_*")) == []
    assert mirror.head("main").count == 3
    git(mirror.path, "fsck", "--strict")


def test_fetch_clears_a_stale_ref_lock(mirror: SrcMirror, src):
    path, _ = src
    mirror.fetch(["main"])
    (mirror.path / "refs" / "heads" / "main.lock").write_bytes(b"")   # killed during the ref update
    (mirror.path / "config.lock").write_bytes(b"")
    new = advance_branch(path, "main", {"etc/shells": b"/bin/sh\n"}, time=T0 + 60, message="x")
    assert mirror.fetch(["main", "stable/14"])["main"] == new
    assert not (mirror.path / "refs" / "heads" / "main.lock").exists()
    assert (mirror.path / FETCH_LOCK).exists()

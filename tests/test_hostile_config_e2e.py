"""Names and directories the user gives: refused before anything runs, with exit status 2.

- a release name, version, flavour or architecture name holding "/" or ".."
  would become a path outside the work directory and the output tree;
- workdir= pointing at a directory that is not a work directory (the crash
  sweep deletes temporary names in a work directory, and only there);
- a work directory whose disk fills up.
"""
from __future__ import annotations

import hashlib
import re
import shlex
import subprocess
import sys
from pathlib import Path

import toml

from tests.hostile_support import RELEASE, hostile_release
from tests.pipeline_support import doit, error_lines

RULE = 'must start with a letter or digit and hold only letters, digits, ".", "_", "+" and "-" (it becomes a file name)'


def test_names_that_would_become_paths_are_all_listed_and_nothing_runs(tmp_path: Path) -> None:
    h = hostile_release(tmp_path / "in", {})
    config = toml.loads(h.config.read_text())
    release = config["releases"].pop(RELEASE)
    config["releases"]["../../escaped"] = dict(release, version="14.2/../../../x")
    config["flavours"]["top/../../x"] = config["flavours"].pop("top")
    config["releases"]["../../escaped"]["flavours"] = ["base", "top/../../x"]
    config.setdefault("architectures", {})["amd64/.."] = {"oci": "amd64"}
    h.config.write_text(toml.dumps(config))
    before = sorted(tmp_path.rglob("*"))
    proc = doit(h.config, tmp_path / "work" / "w", "list", check=False)
    assert proc.returncode == 2
    assert error_lines(proc) == [
        f"config.toml: architectures.amd64/..: 'amd64/..' {RULE}",
        f"config.toml: flavours.top/../../x: 'top/../../x' {RULE}",
        f"config.toml: releases.../../escaped: '../../escaped' {RULE}",
        f"config.toml: releases.../../escaped.version: '14.2/../../../x' {RULE}",
    ]
    assert sorted(tmp_path.rglob("*")) == before            # not even the work directory was made


def test_a_foreign_directory_is_not_used_as_a_work_directory(tmp_path: Path) -> None:
    h = hostile_release(tmp_path / "in", {})
    foreign = tmp_path / "home"
    keep = [foreign / ".partial-draft.txt", foreign / "projects" / ".partial-thesis.tex", foreign / "notes.txt"]
    for path in keep:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("mine\n")
    for command in (f"build:{RELEASE}", "list"):
        proc = doit(h.config, foreign, command, check=False)
        assert proc.returncode == 2
        assert error_lines(proc) == [f"{foreign}: not a work directory of this pipeline (no .release-workdir, "
                                     f"holds .partial-draft.txt and more); use a new or empty workdir="]
    assert all(p.read_text() == "mine\n" for p in keep)
    assert sorted(p.name for p in foreign.iterdir()) == [".partial-draft.txt", "notes.txt", "projects"]


def test_the_sweep_stays_in_the_work_directory_s_own_folders(tmp_path: Path) -> None:
    h = hostile_release(tmp_path / "in", {})
    work = tmp_path / "work"
    doit(h.config, work, f"build:{RELEASE}")
    assert (work / ".release-workdir").is_file()
    mine = work / "mine" / ".partial-keep"            # a folder the pipeline does not own
    mine.parent.mkdir()
    mine.write_text("not the pipeline's\n")
    outside = tmp_path / "elsewhere"
    (outside / "sub").mkdir(parents=True)
    (outside / "sub" / ".partial-x").write_text("outside\n")
    (work / "tmp").mkdir(exist_ok=True)
    (work / "tmp" / "link").symlink_to(outside)       # a symlink is never followed by the sweep
    left = work / "blobs" / ".partial-left-by-a-crash"
    left.write_text("half")
    doit(h.config, work, f"build:{RELEASE}")
    assert not left.exists()
    assert mine.read_text() == "not the pipeline's\n" and (outside / "sub" / ".partial-x").is_file()


def test_a_full_disk_is_one_line_naming_the_file(tmp_path: Path) -> None:
    """The work directory on a 3 MiB file system (a tmpfs in a private mount namespace), a 3 MiB package."""
    from release.demo.pkgtar import Member
    from tests.conftest import PROJECT, need_tool
    from tests.emulation_support import TIME, need_root
    need_root()
    need_tool("unshare", "util-linux")
    noise = b"".join(hashlib.sha256(b"%d" % i).digest() for i in range((3 << 20) // 32))   # incompressible
    h = hostile_release(tmp_path / "in", {"FreeBSD-big": [Member("/usr/share/big", "file", 0o644, data=noise,
                                                                  mtime=TIME)]})
    work = tmp_path / "work"
    work.mkdir()
    doit_cmd = shlex.join([sys.executable, "-m", "doit", "-f", str(PROJECT / "dodo.py"), f"config={h.config}",
                           f"workdir={work}", f"build:{RELEASE}"])
    proc = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=3m tmpfs {work} && exec {doit_cmd}"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr
    [line] = error_lines(proc)
    assert re.fullmatch(rf"download:{RELEASE}:amd64: {work}/cache/packages/blake2b/\w+\.pkg: cannot write: "
                        "No space left on device", line), line

"""Nightly snapshot builds against a moving fixture, and the download tree they publish.

The demo src branch `main` advances (a new commit, made with pygit2) and the
demo base_latest repository is republished with one package bumped; the
nightly must rebuild exactly the flavour that changed, publish a new dated
directory with suffixed names, switch Latest atomically, report what changed,
and prune old dates.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from release.demo.generate import bump_package
from release.demo.srcrepo import advance_branch
from tests.pipeline_support import demo_matrix_config, doit, ran

DAY = 86400
REL = "current"                 # config.toml's main: 15.0-CURRENT, as the demo's main newvers.sh says


def tree_dir(tree: Path, arch: str = "amd64") -> Path:
    return tree / "snapshots/OCI-IMAGES/15.0-CURRENT" / arch


def src_head(work: Path) -> dict:
    return json.loads((work / f"state/{REL}/src.json").read_text())


def layer(work: Path, flavour: str) -> str:
    return json.loads((work / f"build/{REL}/amd64/{flavour}/layer.json").read_text())["digest"]


def advance(work: Path, days: int, message: str = "sys: an unrelated kernel change") -> str:
    """A commit on main that touches no file the images are built from."""
    head = src_head(work)
    return advance_branch(work / "demo/src.git", "main", {"sys/kern/kern_fork.c": message.encode()},
                          time=head["time"] + days * DAY, message=message)


@pytest.fixture
def nightly(tmp_path: Path):
    tree = tmp_path / "tree"
    config = demo_matrix_config(tmp_path / "config.toml", publish_root=tree, keep=2, arches=["amd64"],
                                only=[REL])
    work = tmp_path / "work"
    first = doit(config, work, "nightly")
    return config, work, tree, first


def test_first_nightly_publishes_an_initial_snapshot(nightly):
    config, work, tree, first = nightly
    head = src_head(work)
    suffix = head["suffix"]
    assert suffix == f"{head['build_date']}-{head['short']}-{head['count']}" and len(head["short"]) == 12
    day = tree_dir(tree) / head["build_date"]
    names = sorted(p.name for p in day.iterdir())
    assert names == sorted([f"FreeBSD-15.0-CURRENT-amd64-container-image-{suffix}-{f}.{ext}"
                            for f in ("static", "dynamic", "runtime") for ext in ("txz", "spdx.json")] +
                           [f"CHECKSUM.SHA256-{suffix}", f"CHECKSUM.SHA512-{suffix}",
                            f"BUILDINFO-{suffix}.json", f"CHANGES-{suffix}.json", f"CHANGES-{suffix}.txt"])
    latest = tree_dir(tree) / "Latest"
    for f in ("static", "dynamic", "runtime"):
        link = latest / f"FreeBSD-15.0-CURRENT-amd64-container-image-{f}.txz"
        dated = f"FreeBSD-15.0-CURRENT-amd64-container-image-{suffix}-{f}.txz"
        assert os.readlink(link) == f"../{head['build_date']}/{dated}"
        assert link.read_bytes() == (work / f"out/{REL}/amd64" / link.name).read_bytes()
    assert os.readlink(latest / "CHECKSUM.SHA256") == f"../{head['build_date']}/CHECKSUM.SHA256-{suffix}"
    checksum = (latest / "CHECKSUM.SHA256").read_text()
    assert f"SHA256 (FreeBSD-15.0-CURRENT-amd64-container-image-{suffix}-runtime.txz) = " in checksum
    report = json.loads((latest / "CHANGES.json").read_text())
    assert report["initial"] is True and report["src"]["to"] == head["commit"]
    assert (latest / "CHANGES.txt").read_text().startswith(f"FreeBSD 15.0-CURRENT amd64 {suffix}: initial build")
    manifest_version = json.loads((work / f"build/{REL}/amd64/runtime/image.json").read_text())
    assert manifest_version["ref"] == "freebsd-runtime:15.0-CURRENT-amd64"


def test_unchanged_inputs_make_the_nightly_a_no_op(nightly):
    config, work, tree, _ = nightly
    before = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in [*work.rglob("*"), *tree.rglob("*")]
              if p.is_file() and p.name not in (".doit.db", ".lock") and "/git/" not in str(p)}
    proc = doit(config, work, "nightly")
    assert {t.split(":")[0] for t in ran(proc)} <= {"fetch", "publish"}
    after = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in before}
    assert after == before                                         # zero files rewritten


def test_a_moved_branch_and_one_bumped_package_rebuild_exactly_what_they_should(nightly):
    config, work, tree, _ = nightly
    old = src_head(work)
    layers = {f: layer(work, f) for f in ("static", "dynamic", "runtime")}
    advance(work, days=1)
    bump_package(work / "demo", arch="amd64", abi_major=15, repo="base_latest", name="FreeBSD-runtime",
                 version="15.0p1", change=b"\n# fixed\n")
    doit(config, work, f"lock:{REL}:amd64")
    why = doit(config, work, "info", f"layer:{REL}:amd64:runtime", check=False).stdout   # exit 1: would run
    assert "status     : run" in why and f"build/{REL}/amd64/runtime/packages.json" in why.split("file_dep")[0]
    assert "status     : up-to-date" in doit(config, work, "info", f"layer:{REL}:amd64:static").stdout
    proc = doit(config, work, "nightly")
    done = set(ran(proc))
    assert f"layer:{REL}:amd64:runtime" in done
    assert not {f"layer:{REL}:amd64:static", f"layer:{REL}:amd64:dynamic"} & done
    for f in ("static", "dynamic", "runtime"):                     # new revision and suffix above every layer
        assert {f"image:{REL}:amd64:{f}", f"archive:{REL}:amd64:{f}", f"index:{REL}:{f}"} <= done
    assert layer(work, "static") == layers["static"] and layer(work, "dynamic") == layers["dynamic"]
    assert layer(work, "runtime") != layers["runtime"]

    new = src_head(work)
    assert new["count"] == old["count"] + 1 and new["build_date"] != old["build_date"]
    base = tree_dir(tree)
    assert sorted(p.name for p in base.iterdir()) == sorted([old["build_date"], new["build_date"], "Latest",
                                                              ".Latest.superseded"])
    report = json.loads((base / "Latest/CHANGES.json").read_text())
    assert report["initial"] is False and report["previous"] == old["suffix"]
    assert report["src"]["from"] == old["commit"] and report["src"]["to"] == new["commit"]
    assert [c["subject"] for c in report["src"]["commits"]] == ["sys: an unrelated kernel change"]
    assert report["flavours"]["runtime"]["upgraded"] == {"FreeBSD-runtime": ["15.0", "15.0p1"]}
    assert report["flavours"]["static"] == {"added": {}, "removed": {}, "upgraded": {}}
    txt = (base / "Latest/CHANGES.txt").read_text()
    assert "1 commit(s)" in txt and "runtime: upgraded FreeBSD-runtime 15.0 -> 15.0p1" in txt

    # retention keeps the newest two dates
    advance(work, days=2, message="sys: another one")
    doit(config, work, "nightly")
    latest = src_head(work)["build_date"]
    assert sorted(p.name for p in base.iterdir()) == sorted([new["build_date"], latest, "Latest",
                                                              ".Latest.superseded"])


def test_a_reader_never_sees_a_mixed_latest(nightly):
    config, work, tree, _ = nightly
    latest = tree_dir(tree) / "Latest"
    seen: list[set[str]] = []
    problems: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        """Walks Latest the way a mirror does: open the directory once, read entries relative to it."""
        for _ in range(200_000):                                 # bounded
            if stop.is_set():
                return
            try:
                fd = os.open(latest, os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                problems.append("Latest missing")
                continue
            try:
                targets = {os.readlink(n, dir_fd=fd) for n in os.listdir(fd)}
                dangling = [t for t in targets if not os.path.exists(f"/proc/self/fd/{fd}/{t}")]
            finally:
                os.close(fd)
            dates = {t.split("/")[1] for t in targets}           # ../<date>/<file>
            stamp = {t.split("-container-image-")[1].rsplit("-", 1)[0] for t in targets if t.endswith(".txz")}
            if len(dates) != 1 or len(stamp) != 1:
                problems.append(f"mixed Latest: {sorted(targets)}")
            if dangling:
                problems.append(f"dangling {dangling}")
            seen.append(stamp)

    for days in (1, 2):
        advance(work, days=days, message=f"sys: change {days}")
        thread = threading.Thread(target=reader)
        thread.start()
        try:
            doit(config, work, "nightly")
        finally:
            stop.set()
            thread.join()
        stop.clear()
    assert problems == []
    assert len({s for stamp in seen for s in stamp}) >= 2        # the reader saw the switch happen


def test_republishing_the_same_build_changes_nothing(nightly, tmp_path):
    config, work, tree, _ = nightly
    files = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in tree.rglob("*") if not p.is_dir()}
    doit(config, work, f"publish:{REL}")
    assert {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in files} == files
    assert sorted(p for p in tree.rglob("*") if not p.is_dir()) == sorted(files)


def test_release_publishing_puts_files_in_latest(tmp_path, demo_tree=None):
    tree = tmp_path / "tree"
    config = demo_matrix_config(tmp_path / "config.toml", publish_root=tree, arches=["amd64"], only=["demo"])
    work = tmp_path / "work"
    doit(config, work, "publish:demo")
    latest = tree / "releases/OCI-IMAGES/14.2-DEMO/amd64/Latest"
    names = sorted(p.name for p in latest.iterdir())
    assert names == sorted(["CHECKSUM.SHA256", "CHECKSUM.SHA512"] +
                           [f"FreeBSD-14.2-DEMO-amd64-container-image-{f}.{ext}"
                            for f in ("static", "dynamic", "minimal") for ext in ("txz", "spdx.json")])
    assert all(not (latest / n).is_symlink() for n in names)
    doit(config, work, "verify-checksums:demo")
    from release.checksum import verify_checksums
    assert verify_checksums(latest) == []

"""End-to-end builds from repositories the real pkg made, compared with the real pkg's own install.

At test time every demo package is made by real `pkg create` (from the demo's
content: the same files, owners, modes, hardlinks and manifests) and catalogued
by real `pkg repo`, by pkg main and by pkg 1.21.3 (the two catalogue
generations), each once with packages under All/ and catalogues signed through
a signing_command, trusted by fingerprint (the demo src's share/keys/pkg), and
once with packages at the repository root and catalogues signed with
`rsa:KEY`, trusted through the configured public key ("pubkey").
The pipeline builds the release from that repository (file://), and the
minimal image, unpacked by umoci, is compared path by path with an empty root
into which the same real pkg installed the same packages from the same
repository: kind, mode, owner, size, content, symlink target and hardlink
groups.  The only differences allowed are the project's own steps (mtree
skeleton, accounts, CA certificates, repository config, termcap) and the
pipeline's built-ins for the package scripts pkg is not allowed to run here
(RUN_SCRIPTS=false: they would run this host's /bin/sh): pwd_mkdb, services_mkdb
and `chmod 1777 /tmp`.  The image's local.sqlite must also hold the rows the
real install recorded.
"""
from __future__ import annotations

import json
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from release.demo import content
from release.demo.generate import pubkey_pem
from release.demo.repowriter import fingerprint_file
from tests.build_support import need_root_owners, parse_accounts, static_skeleton, umoci_unpack
from tests.pipeline_support import doit, write_config
from tests.realpkg_support import (db_differences, file_url, logical_db, metalog_owners, need_pkg,
                                   real_demo_repository, repo_conf, root_nodes)

ABI = "FreeBSD:14:amd64"
FLAVOURS = ("static", "dynamic", "minimal")
# what the project's steps and script built-ins add to an image that `pkg install` alone does not
STEP_FILES = {
    "/etc/passwd", "/etc/pwd.db", "/etc/spwd.db",           # accounts step / runtime's pwd_mkdb -p
    "/var/db/services.db",                                   # runtime's services_mkdb
    "/etc/termcap.small", "/usr/share/misc/termcap",         # src-file step
    "/usr/local/etc/pkg/repos/base.conf",                    # repo-conf step
}
PUBKEY_FILES = {"/usr/local/etc/pkg/keys/pkgbase.pub"}       # repo-conf step: the key of a "pubkey" repository
STEP_TREES = ("/etc/ssl/",)                                  # caroot step
STEP_DIRS = {"/etc/ssl", "/etc/ssl/certs", "/etc/ssl/untrusted", "/usr/local/etc", "/usr/local/etc/pkg",
             "/usr/local/etc/pkg/repos", "/usr/local/etc/pkg/keys"}
SCRIPT_MODES = {"/tmp": 0o1777}                              # runtime's `chmod 1777 ${PKG_ROOTDIR}/tmp`
NOT_COMPARED = ("/var/db/pkg", "/var/cache/pkg", "/usr/share/keys/demo")   # pkg's own state, the test's trust


@dataclass(frozen=True)
class Case:
    version: str
    signing: str
    subdir: str
    schema: int


CASES = [Case("2.8.99.1", "fingerprints", "All", 42), Case("2.8.99.1", "pubkey", "", 42),
         Case("1.21.3", "pubkey", "", 36), Case("1.21.3", "fingerprints", "All", 36)]


@dataclass
class Built:
    case: Case
    image: Path
    reference: Path
    metalog: Path
    lock: dict
    source_date_epoch: int


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"pkg{c.version}-{c.signing}-{c.subdir or 'root'}")
def built(request, demo_tree, tmp_path_factory) -> Built:
    case = request.param
    base = tmp_path_factory.mktemp(f"realrepo-{case.version}")
    pkg = need_pkg(case.version, base / "home")
    pub = base / "demo.pub"
    pub.write_bytes(pubkey_pem())
    repo = base / "served" / "pkgbase" / ABI / "base_release_2"
    real_demo_repository(pkg, repo, base / "create", arch="amd64", signing=case.signing, subdir=case.subdir,
                         key=content.DATA / "keys" / "demo-signing.key", pub=pub)
    trust = {"signature_type": "pubkey", "pubkey": str(pub)} if case.signing == "pubkey" else {}
    config = write_config(base / "config.toml", mirror=file_url(base / "served" / "pkgbase") + "/${ABI}/${REPO}",
                          src_url=(demo_tree / "src.git").as_uri(), arches=["amd64"], pkgdb_schema=case.schema,
                          **trust)
    work = base / "work"
    doit(config, work, "build:test")
    image = umoci_unpack(next((work / "out/test/amd64").glob("*-container-image-minimal.txz")), base / "image")
    lock = json.loads((work / "locks/test/amd64.json").read_text())
    sde = json.loads((work / "state/test/src-inputs.json").read_text())["source_date_epoch"]

    reference, metalog = base / "reference", base / "METALOG"
    if case.signing == "pubkey":
        conf = repo_conf(base / "conf", "FreeBSD-base", file_url(repo), signing="pubkey", pubkey=pub)
    else:
        keys = reference / "usr/share/keys/demo"
        (keys / "revoked").mkdir(parents=True)
        (keys / "trusted").mkdir()
        (keys / "trusted" / "demo").write_bytes(fingerprint_file(pubkey_pem()))
        conf = repo_conf(base / "conf", "FreeBSD-base", file_url(repo), signing="fingerprints",
                         fingerprints="/usr/share/keys/demo")
    reference.mkdir(exist_ok=True)
    requested = [p["name"] for f in FLAVOURS for p in lock["flavours"][f]["packages"] if p["reason"] == "requested"]
    pkg.run("install", "-y", *requested, root=reference, abi=ABI, conf=conf,
            options={"RUN_SCRIPTS": "false", "METALOG": str(metalog)}, env={"PKG_INSTALL_EPOCH": str(sde)})
    return Built(case, image, reference, metalog, lock, sde)


def _compared(nodes: dict) -> dict:
    return {p: n for p, n in nodes.items() if not any(p == s or p.startswith(s + "/") for s in NOT_COMPARED)}


def test_image_is_what_real_pkg_installs_plus_the_projects_steps(built):
    need_root_owners()
    users, groups = parse_accounts((built.image / "etc/master.passwd").read_bytes(),
                                   (built.image / "etc/group").read_bytes())
    ids = ({uid: name for name, uid in reversed(list(users.items()))},
           {gid: name for name, gid in reversed(list(groups.items()))})
    ours, our_links = root_nodes(built.image, ids=ids)
    theirs, their_links = root_nodes(built.reference, owners=metalog_owners(built.metalog))
    ours, theirs = _compared(ours), _compared(theirs)

    assert sorted(p for p in theirs if p not in ours) == []
    extra_files = {p for p, n in ours.items() if p not in theirs and n.kind != "dir"}
    steps = STEP_FILES | (PUBKEY_FILES if built.case.signing == "pubkey" else set())
    assert extra_files - steps == {p for p in extra_files if p.startswith(STEP_TREES)}
    assert steps <= extra_files
    skeleton = set(static_skeleton())
    extra_dirs = {p for p, n in ours.items() if p not in theirs and n.kind == "dir"}
    assert extra_dirs - skeleton - STEP_DIRS == set()

    differences = []
    for path in sorted(set(ours) & set(theirs)):
        a, b = ours[path], theirs[path]
        if path in SCRIPT_MODES:
            assert (a.mode, b.mode) == (SCRIPT_MODES[path], 0o755), path
            a = b
        if a.kind == b.kind == "dir" and b.uname == "?":        # a parent pkg made without a METALOG line
            a = b = (a.kind, a.mode)
        if a != b:
            differences.append(f"{path}: image {a} real pkg {b}")
    assert differences == []
    assert our_links == their_links and our_links, "hardlink groups differ"
    assert any(stat.S_IMODE(n.mode) & 0o4000 for n in ours.values() if n.kind == "file")   # su's set-uid made it


def test_image_database_holds_the_rows_real_pkg_recorded(built):
    ours = logical_db(built.image / "var/db/pkg/local.sqlite")
    theirs = logical_db(built.reference / "var/db/pkg/local.sqlite")
    install_time = ("time",) if built.case.schema == 36 else ()
    assert db_differences(ours, theirs, ignore_columns=install_time) == []
    assert ours["user_version"] == built.case.schema


def test_the_lock_read_the_real_catalogue(built):
    """The project's catalogue reader took every package from the real pkg's catalogue, path and sum."""
    packages = [p for f in FLAVOURS for p in built.lock["flavours"][f]["packages"]]
    prefix = f"{built.case.subdir}/" if built.case.subdir else ""
    assert all(p["path"] == f"{prefix}{p['name']}-{p['version']}.pkg" for p in packages)
    sums = {p["sum"] for p in packages}
    assert all(s.startswith("2$") for s in sums) if built.case.version != "1.21.3" else \
        all(len(s) == 64 for s in sums)

"""Each release follows its own src: flavours, package names, trust, repository config and image names.

Two src trees that differ the way FreeBSD's do, both the embedded demo's (which
carries FreeBSD's own release/tools/oci-image-*.conf, make-oci-image.sh,
Makefile.oci and FreeBSD.conf files, see release/demo/data/README.md):

- releng/14.2: 14.x's confs (static, dynamic, minimal with FreeBSD-kerberos-lib),
  images named freebsd14-<flavour>, catalogues trusted by share/keys/pkg;
- releng/15.0: 15.x's (Makefile.oci builds static, dynamic, runtime; runtime
  installs FreeBSD-krb5-lib and sets Cmd), images named freebsd-<flavour>,
  catalogues trusted by share/keys/pkgbase-15, base.conf from FreeBSD.conf.

Each is built end to end and checked by what it contains and what podman
loads it as; a catalogue signed with the other generation's key is refused,
and a conf file with a command the reader does not know fails naming file and line.
"""
from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
from pathlib import Path

import pygit2
import pytest
import toml

from release import srcconf
from release.demo.generate import KEY_NAME, generate_demo, src_files
from release.demo.srcrepo import advance_branch
from release.errors import InputError
from release.demo.repowriter import fingerprint_file
from tests.build_support import PrivatePodman
from tests.conftest import need_tool
from tests.pipeline_support import doit, error_lines

BRANCHES = ("releng/14.2", "releng/15.0")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("release-src") / "served"
    generate_demo(root, arches=("amd64",), abi_major=14, repos={"base_release_2": "14.2"}, branches=BRANCHES)
    generate_demo(root, arches=("amd64",), abi_major=15, repos={"base_release_0": "15.0"}, branches=BRANCHES)
    return root


def config(path: Path, served: Path, **releases) -> Path:
    """Releases that say nothing but their branch: everything else comes from their src."""
    data = {"src": {"url": (served / "src.git").as_uri()},
            "pkgbase": {"url": (served / "pkgbase").as_uri() + "/${ABI}/${REPO}"},
            "releases": {name: {"branch": branch, "arches": ["amd64"], "source": "https://git.freebsd.org/src.git"}
                         for name, branch in releases.items()}}
    path.write_text(toml.dumps(data))
    return path


def layer_file(work: Path, release: str, flavour: str, path: str) -> bytes | None:
    record = json.loads((work / f"build/{release}/amd64/{flavour}/layer.json").read_text())
    blob = gzip.decompress((work / "blobs/sha256" / record["digest"][7:]).read_bytes())
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        try:
            return tar.extractfile(path.lstrip("/")).read()
        except KeyError:
            return None


@pytest.fixture(scope="module")
def built(served: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    top = tmp_path_factory.mktemp("release-src-build")
    cfg = config(top / "config.toml", served, fourteen="releng/14.2", fifteen="releng/15.0")
    work = top / "work"
    doit(cfg, work, "build:fourteen", "build:fifteen")
    return cfg, work


def test_each_release_builds_the_family_its_src_defines(built):
    cfg, work = built
    assert sorted(p.name for p in (work / "out/fourteen/amd64").glob("*.txz")) == [
        f"FreeBSD-14.2-RELEASE-amd64-container-image-{f}.txz" for f in ("dynamic", "minimal", "static")]
    assert sorted(p.name for p in (work / "out/fifteen/amd64").glob("*.txz")) == [
        f"FreeBSD-15.0-RELEASE-amd64-container-image-{f}.txz" for f in ("dynamic", "runtime", "static")]
    lock14 = json.loads((work / "locks/fourteen/amd64.json").read_text())
    lock15 = json.loads((work / "locks/fifteen/amd64.json").read_text())
    assert "FreeBSD-kerberos-lib" in {p["name"] for p in lock14["flavours"]["minimal"]["packages"]}
    assert "FreeBSD-krb5-lib" in {p["name"] for p in lock15["flavours"]["runtime"]["packages"]}
    runtime = json.loads((work / "build/fifteen/amd64/runtime/image.json").read_text())
    config15 = json.loads((work / "blobs/sha256" / runtime["config"]["digest"][7:]).read_text())
    assert config15["config"]["Cmd"] == ["/bin/sh"]            # set_cmd in oci-image-runtime.conf


def test_trust_and_repository_config_follow_each_release(built):
    _, work = built
    assert json.loads((work / "locks/fifteen/amd64.json").read_text())["repository"]["url"].endswith(
        "FreeBSD:15:amd64/base_release_0")
    base14 = layer_file(work, "fourteen", "static", "/usr/local/etc/pkg/repos/base.conf").decode()
    base15 = layer_file(work, "fifteen", "static", "/usr/local/etc/pkg/repos/base.conf").decode()
    assert 'url: "https://pkg.FreeBSD.org/${ABI}/base_release_2"' in base14       # the 14.x static recipe
    assert 'fingerprints: "/usr/share/keys/pkg"' in base14
    assert 'url: "pkg+https://pkg.FreeBSD.org/${ABI}/base_release_0"' in base15    # 15.x FreeBSD.conf
    assert 'fingerprints: "/usr/share/keys/pkgbase-15"' in base15
    assert sorted(p.name for p in (work / "repos/fifteen/amd64/fingerprints/trusted").iterdir()) == [KEY_NAME]


def test_podman_loads_each_release_under_the_name_its_src_gives(built, tmp_path):
    need_tool("podman", "podman")
    _, work = built
    podman = PrivatePodman(tmp_path / "podman")
    try:
        for release, image, version in (("fourteen", "freebsd14-minimal", "14.2-RELEASE"),
                                        ("fifteen", "freebsd-runtime", "15.0-RELEASE")):
            flavour = image.split("-", 1)[1]
            archive = work / f"out/{release}/amd64/FreeBSD-{version}-amd64-container-image-{flavour}.txz"
            out = podman("load", "-i", str(archive)).stdout
            assert f"Loaded image: localhost/{image}:{version}-amd64" in out, out
    finally:
        podman.close()


def test_a_catalogue_signed_with_the_other_generations_key_is_refused(served, tmp_path):
    """15.x trusts share/keys/pkgbase-15 only: a catalogue signed by a key in share/keys/pkg is refused."""
    root = tmp_path / "served"
    shutil.copytree(served, root, symlinks=True)
    repo = pygit2.Repository(str(root / "src.git"))
    head = repo.references["refs/heads/releng/15.0"].peel(pygit2.Commit)
    # pkgbase-15 now trusts only another key; the demo key stays trusted in share/keys/pkg (14.x's)
    stranger = fingerprint_file(b"-----BEGIN PUBLIC KEY-----\nnot the demo key\n-----END PUBLIC KEY-----\n")
    advance_branch(root / "src.git", "releng/15.0", {f"share/keys/pkgbase-15/trusted/{KEY_NAME}": stranger},
                   time=head.commit_time + 60, message="pkgbase-15: rotate the signing key")
    cfg = config(tmp_path / "config.toml", root, fifteen="releng/15.0")
    proc = doit(cfg, tmp_path / "work", "lock:fifteen:amd64", check=False)
    assert proc.returncode == 2
    [line] = error_lines(proc)
    assert line.startswith("fetch:fifteen:amd64: ") and "signed by an untrusted key" in line \
        and "FreeBSD:15:amd64" in line
    assert not (tmp_path / "work/locks/fifteen/amd64.json").exists()


def test_a_conf_command_the_reader_does_not_know_names_file_and_line(served, tmp_path):
    root = tmp_path / "served"
    shutil.copytree(served, root, symlinks=True)
    conf = src_files("releng/14.2")[srcconf.conf_path("dynamic")].replace(
        b"\tinstall_packages", b"\tchflags -R noschg ${workdir}/rootfs\n\tinstall_packages")
    repo = pygit2.Repository(str(root / "src.git"))
    head = repo.references["refs/heads/releng/14.2"].peel(pygit2.Commit)
    advance_branch(root / "src.git", "releng/14.2", {srcconf.conf_path("dynamic"): conf},
                   time=head.commit_time + 60, message="release: a new command in the dynamic image")
    cfg = config(tmp_path / "config.toml", root, fourteen="releng/14.2")
    proc = doit(cfg, tmp_path / "work", "build:fourteen", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("release matrix: release/tools/oci-image-dynamic.conf:10: unrecognised command "
                                   "'chflags' (known: cp, env, install_packages, local, mkdir, mtree, pwd_mkdb, "
                                   "set_cmd, case, cat > FILE <<EOF)")


def test_a_branch_glob_makes_one_release_per_branch_named_by_its_version(served, tmp_path):
    cfg = config(tmp_path / "config.toml", served, releng="releng/*")
    proc = doit(cfg, tmp_path / "work", "config-check")
    assert "14.2-RELEASE: 14.2-RELEASE (release, sys/conf/newvers.sh), src releng/14.2" in proc.stdout
    assert "15.0-RELEASE: 15.0-RELEASE (release, sys/conf/newvers.sh), src releng/15.0" in proc.stdout
    assert "  runtime [release/tools/oci-image-runtime.conf] on dynamic: FreeBSD-runtime FreeBSD-certctl " \
           "FreeBSD-krb5-lib" in proc.stdout
    listed = doit(cfg, tmp_path / "work", "list", "--all").stdout
    assert "layer:15.0-RELEASE:amd64:runtime" in listed and "layer:14.2-RELEASE:amd64:minimal" in listed


def test_the_conf_reader_on_freebsds_files():
    files = src_files("main")
    rel = srcconf.ReleaseId("15.0", "CURRENT")
    notoolchain = srcconf.read_flavour("notoolchain", files[srcconf.conf_path("notoolchain")], rel)
    assert notoolchain.parent == "runtime" and notoolchain.cmd == ("/bin/sh",) and len(notoolchain.packages) == 57
    static = srcconf.read_flavour("static", files[srcconf.conf_path("static")], rel)
    assert [s.kind for s in static.steps] == ["mtree", "accounts", "src-file", "caroot", "repo-conf"]
    repo = dict(static.steps[-1].options)
    assert repo["url"] == "https://pkg.FreeBSD.org/${ABI}/base_latest"            # case ${branch}: CURRENT
    assert srcconf.read_image_list(files[srcconf.MAKEFILE]) == ["static", "dynamic", "runtime"]
    assert srcconf.read_name_template(files[srcconf.SCRIPT]) == "freebsd-${FLAVOUR}"
    assert srcconf.read_name_template(src_files("releng/14.2")[srcconf.SCRIPT]) == "freebsd${MAJOR}-${FLAVOUR}"
    with pytest.raises(InputError, match=r"^sys/conf/newvers.sh: no REVISION"):
        srcconf.read_newvers(b"TYPE=FreeBSD\n")

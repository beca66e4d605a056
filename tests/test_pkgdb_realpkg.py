"""The image's /var/db/pkg/local.sqlite, used by FreeBSD's real pkg (main for schema 42, 1.21.3 for 36).

For each generation the demo release is built with the project's own config
(only pkgdb_schema differs) and its minimal images are unpacked with umoci.
The real pkg of that generation then
- lists the installed packages, checks every file's checksum, names the owner of /bin/sh;
- installs the same packages from the same (demo) repository into an empty
  root, and its database must hold the same rows, table by table and package
  by package, as the image's (pkg main honours PKG_INSTALL_EPOCH, so even the
  install time matches; pkg 1.21.3 stamps the wall clock, the one column set
  aside);
- installs an extra package made with real `pkg create` (depending on
  FreeBSD-runtime and on a shared library it provides) from a repository made
  with real `pkg repo`, after which `pkg check -d` is clean;
- upgrades FreeBSD-runtime to a version whose @config master.passwd gained an
  account while the image's copy gained a local one: pkg's three-way merge,
  which needs the content recorded at install time, keeps both.
Package scripts would run with this host's /bin/sh, so pkg runs with
RUN_SCRIPTS=false; the image ran the pipeline's built-ins for them.
"""
from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest
import toml

from release.demo import content
from release.demo.content import DemoPackage
from release.demo.generate import pubkey_pem
from release.demo.pkgtar import Member
from release.demo.repowriter import fingerprint_file
from tests.build_support import ARCHES, CONFIG, DemoBuild, umoci_unpack
from tests.conftest import need_tool
from tests.pipeline_support import doit
from tests.realpkg_support import (VERSION_FOR, db_differences, file_url, freebsd_elf, logical_db, need_pkg,
                                   pkg_create, pkg_repo, repo_conf)

SCHEMAS = (42, 36)
REPO_NAME = "FreeBSD-base"                   # config.toml's repo-conf step
ELF_MACHINE = {"amd64": 62, "aarch64": 183}
LOCAL_ACCOUNT = b"alice:*:1001:1001::0:0:Alice:/home/alice:/bin/sh\n"
NEW_ACCOUNT = b"_newsvc:*:901:901::0:0:New service:/nonexistent:/usr/sbin/nologin\n"


@dataclasses.dataclass
class Generation:
    """One demo build for a database generation, its real pkg, and what the tests made of them."""

    schema: int
    build: DemoBuild
    pkg: object
    base: Path
    roots: dict = dataclasses.field(default_factory=dict)
    references: dict = dataclasses.field(default_factory=dict)

    def abi(self, arch: str) -> str:
        return f"FreeBSD:14:{arch}"

    def root(self, arch: str) -> Path:
        """The unpacked minimal image (read-only use: tests that change it take a copy)."""
        if arch not in self.roots:
            self.roots[arch] = umoci_unpack(self.build.archive(arch, "minimal"), self.base / f"image-{arch}")
        return self.roots[arch]

    def copy_of_root(self, arch: str, label: str) -> Path:
        dest = self.base / f"{label}-{arch}"
        shutil.copytree(self.root(arch), dest, symlinks=True)
        return dest

    def packages(self, arch: str) -> list[dict]:
        lock = self.build.lock(arch)
        return [p for f in ("static", "dynamic", "minimal") for p in lock["flavours"][f]["packages"]]

    def reference(self, arch: str) -> Path:
        """An empty root into which the real pkg installed the image's packages from the demo repository."""
        if arch in self.references:
            return self.references[arch]
        root = self.base / f"reference-{arch}"
        keys = root / "usr/share/keys/demo"
        (keys / "revoked").mkdir(parents=True)
        (keys / "trusted").mkdir()
        (keys / "trusted" / "demo").write_bytes(fingerprint_file(pubkey_pem()))
        repo = self.build.work / "demo" / "pkgbase" / self.abi(arch) / "base_release_2"
        conf = repo_conf(self.base / f"conf-{arch}", REPO_NAME, file_url(repo), signing="fingerprints",
                         fingerprints="/usr/share/keys/demo")
        requested = [p["name"] for p in self.packages(arch) if p["reason"] == "requested"]
        self.pkg.run("install", "-y", *requested, root=root, abi=self.abi(arch), conf=conf,
                     options={"RUN_SCRIPTS": "false"},
                     env={"PKG_INSTALL_EPOCH": str(self.build.source_date_epoch())})
        self.references[arch] = root
        return root


_BUILDS: dict[int, Generation] = {}


@pytest.fixture(scope="module", params=SCHEMAS, ids=lambda s: f"schema{s}")
def generation(request, tmp_path_factory) -> Generation:
    schema = request.param
    if schema not in _BUILDS:
        base = tmp_path_factory.mktemp(f"pkgdb{schema}")
        pkg = need_pkg(VERSION_FOR[schema], base / "home")
        config = toml.loads(CONFIG.read_text())
        config["releases"]["demo"]["pkgdb_schema"] = schema
        path = base / "config.toml"
        path.write_text(toml.dumps(config))
        doit(path, base / "work", "build:demo")
        _BUILDS[schema] = Generation(schema, DemoBuild(base / "work"), pkg, base)
    yield _BUILDS[schema]


arches = pytest.mark.parametrize("arch", list(ARCHES))
# pkg 1.21 records no file sums for packages made by pkg >= 2.4 (amd64's demo packages; see
# pkgdb_rows) and then crashes upgrading them (attempt_to_merge() strcmp()s the missing sum),
# exactly as on a root it installed itself; its checks and upgrades use the older packages (aarch64).
with_sums = pytest.mark.parametrize("generation,arch", [(42, "amd64"), (42, "aarch64"), (36, "aarch64")],
                                    indirect=["generation"], ids=["schema42-amd64", "schema42-aarch64",
                                                                  "schema36-aarch64"])


@arches
def test_pkg_info_lists_exactly_the_locks_packages(generation, arch):
    out = generation.pkg.run("info", "-a", root=generation.copy_of_root(arch, "info"), abi=generation.abi(arch))
    listed = sorted(line.split()[0] for line in out.stdout.splitlines() if line.strip())
    assert listed == sorted(f"{p['name']}-{p['version']}" for p in generation.packages(arch))
    assert not out.stderr.strip(), out.stderr


@arches
def test_database_holds_the_rows_real_pkg_records(generation, arch):
    image_db = generation.root(arch) / "var/db/pkg/local.sqlite"
    ours = logical_db(image_db)
    theirs = logical_db(generation.reference(arch) / "var/db/pkg/local.sqlite")
    install_time = ("time",) if generation.schema == 36 else ()    # pkg 1.21 has no PKG_INSTALL_EPOCH
    assert db_differences(ours, theirs, ignore_columns=install_time) == []
    assert ours["user_version"] == generation.schema
    assert ours["journal_mode"] == ("wal" if generation.schema == 42 else "delete")
    assert {row["time"] for row in ours["packages"].values()} == {generation.build.source_date_epoch()}
    assert {a for rows in ours["annotations"].values() for a in rows if a[0] == "repository"} == \
        {("repository", REPO_NAME)}
    runtime_config = dict(ours["config_files"]["FreeBSD-runtime"])
    assert runtime_config["/etc/master.passwd"] == (generation.root(arch) / "etc/master.passwd").read_text()


@arches
def test_pkg_query_answers_the_same_for_the_image_and_a_real_install(generation, arch):
    pkg, abi = generation.pkg, generation.abi(arch)
    image = generation.copy_of_root(arch, "query")
    for query in ("%n %v %o %R %a %k %V %q", "%n %At=%Av", "%n %Fp %Fs", "%n %dn-%dv", "%n %b", "%n %B", "%n %D"):
        answers = [pkg.run("query", "-a", query, root=root, abi=abi).stdout
                   for root in (image, generation.reference(arch))]
        assert sorted(answers[0].splitlines()) == sorted(answers[1].splitlines()), query
        assert answers[0].strip() or query.startswith("%n %d"), query     # 1.21.3 answers %d with nothing


@with_sums
def test_check_finds_no_checksum_mismatch_and_which_names_the_package(generation, arch):
    pkg, root, abi = generation.pkg, generation.copy_of_root(arch, "check"), generation.abi(arch)
    check = pkg.run("check", "-s", "-a", root=root, abi=abi)
    assert "checksum mismatch" not in check.stdout + check.stderr
    assert check.stdout.strip().startswith("Checking all packages") and check.stdout.strip().endswith("done")
    which = pkg.run("which", "/bin/sh", root=root, abi=abi)
    assert which.stdout.strip() == "/bin/sh was installed by package FreeBSD-runtime-14.2"
    # the check really reads the image's files: a changed one is reported
    (root / "bin/sh").write_bytes((root / "bin/sh").read_bytes() + b"x")
    changed = pkg.run("check", "-s", "-a", root=root, abi=abi, check=False)
    assert changed.returncode != 0 and "checksum mismatch for /bin/sh" in changed.stdout + changed.stderr


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory) -> tuple[Path, Path]:
    openssl = need_tool("openssl", "openssl")
    d = tmp_path_factory.mktemp("repo-key")
    subprocess.run([openssl, "genrsa", "-out", str(d / "repo.key"), "2048"], check=True, capture_output=True)
    subprocess.run([openssl, "rsa", "-in", str(d / "repo.key"), "-pubout", "-out", str(d / "repo.pub")],
                   check=True, capture_output=True)
    return d / "repo.key", d / "repo.pub"


def test_extra_package_from_a_real_pkg_repository_installs_with_clean_dependencies(generation, signing_key,
                                                                                   tmp_path):
    pkg, abi = generation.pkg, generation.abi("amd64")
    key, pub = signing_key
    hello = DemoPackage("hello", {
        "name": "hello", "origin": "misc/hello", "version": "1.0", "comment": "Says hello", "desc": "Says hello",
        "maintainer": "test@example.org", "www": "https://example.org", "abi": abi,
        "arch": content.legacy_arch(14, "amd64"), "prefix": "/usr/local",
        "deps": {"FreeBSD-runtime": {"origin": "base", "version": "14.2"}}},
        (Member("/usr/local/bin/hello", "file", 0o555, data=freebsd_elf(ELF_MACHINE["amd64"], needed=("libxo.so.0",)),
                mtime=generation.build.source_date_epoch()),))
    # pkg 1.21's create resolves DT_NEEDED through the running system's ld-elf.so.hints, which this
    # host lacks, so the package is made by pkg main's create; the repository by the generation's pkg
    creator = pkg if pkg.version == VERSION_FOR[42] else need_pkg(VERSION_FOR[42], tmp_path / "home")
    made = pkg_create(creator, hello, tmp_path, tmp_path / "repo" / "All")
    assert "libxo.so.0" in creator.run("info", "-B", "-F", str(made)).stdout     # create found the DT_NEEDED
    pkg_repo(pkg, tmp_path / "repo", key, pub, "pubkey")
    conf = repo_conf(tmp_path / "conf", "local", file_url(tmp_path / "repo"), signing="pubkey", pubkey=pub)
    root = generation.copy_of_root("amd64", "extra")
    install = pkg.run("install", "-y", "hello", root=root, abi=abi, conf=conf, options={"RUN_SCRIPTS": "false"})
    assert "New packages to be INSTALLED:\n\thello: 1.0" in install.stdout
    assert "[1/1] Installing hello-1.0..." in install.stdout
    assert (root / "usr/local/bin/hello").read_bytes() == hello.members[0].data
    deps = pkg.run("check", "-d", "-a", root=root, abi=abi)
    assert "missing" not in deps.stdout + deps.stderr, deps.stdout + deps.stderr
    assert pkg.run("query", "%dn", "hello", root=root, abi=abi).stdout.split() == ["FreeBSD-runtime"]
    assert pkg.run("query", "%B", "hello", root=root, abi=abi).stdout.split() == ["libxo.so.0"]


def _with_new_account(master_passwd: bytes) -> bytes:
    """The new package's master.passwd: one more account, right after root's (away from local additions)."""
    lines = master_passwd.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith(b"root:")) + 1
    return b"".join(lines[:at] + [NEW_ACCOUNT] + lines[at:])


@with_sums
def test_upgrade_merges_the_new_master_passwd_with_the_images_accounts(generation, signing_key, tmp_path, arch):
    pkg, abi = generation.pkg, generation.abi(arch)
    key, pub = signing_key
    old = content.build_package("FreeBSD-runtime", content.Build(content.arch_info(arch), 14))
    new = dataclasses.replace(old, members=tuple(
        dataclasses.replace(m, data=_with_new_account(m.data)) if m.path == "/etc/master.passwd" else m
        for m in old.members))
    pkg_create(pkg, new, tmp_path, tmp_path / "repo", version="14.2_1")
    pkg_repo(pkg, tmp_path / "repo", key, pub, "pubkey")
    conf = repo_conf(tmp_path / "conf", REPO_NAME, file_url(tmp_path / "repo"), signing="pubkey", pubkey=pub)
    root = generation.copy_of_root(arch, "upgrade")
    image_accounts = (root / "etc/master.passwd").read_bytes()
    (root / "etc/master.passwd").write_bytes(image_accounts + LOCAL_ACCOUNT)   # the container's own change
    pkg.run("update", "-f", root=root, abi=abi, conf=conf)
    upgrade = pkg.run("upgrade", "-y", root=root, abi=abi, conf=conf, options={"RUN_SCRIPTS": "false"})
    assert "Installed packages to be UPGRADED:\n\tFreeBSD-runtime: 14.2 -> 14.2_1" in upgrade.stdout
    assert "merge" not in upgrade.stderr, upgrade.stderr                  # "Unable to merge configuration file"
    merged = (root / "etc/master.passwd").read_bytes()
    assert merged == _with_new_account(image_accounts) + LOCAL_ACCOUNT
    runtime = logical_db(root / "var/db/pkg/local.sqlite")
    assert dict(runtime["config_files"]["FreeBSD-runtime"])["/etc/master.passwd"] == \
        _with_new_account(image_accounts).decode()
    assert runtime["packages"]["FreeBSD-runtime"]["version"] == "14.2_1"

"""Every configuration key, changed in a built work directory: the incremental rebuild equals a fresh one.

For each key of the configuration reference (every setting of
release/configschema.py and every option of every step kind), a mutation
changes it in a copy of a built work directory's configuration.  Then:

- `doit build:test` on that copy (incremental) and on a fresh work directory
  (seeded only with the content-addressed package cache and the src mirror)
  give byte-identical released files and OCI layouts;
- the tasks that ran incrementally are exactly those whose plan identity
  changed, whose input records changed, whose targets did not exist, or that
  always run (the upstream fetches): a task whose plan and inputs cannot
  depend on the key does not run.

Keys that no build stage reads (HTTP, publishing, pushing, signing) are listed
in NO_BUILD_EFFECT; each of them must run nothing but the fetches, and one
fresh build with all of them changed at once must equal the base build.
`test_every_key_has_a_mutation` makes a new setting without a mutation fail.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pygit2
import pytest
import toml

from release import config as config_mod
from release import planner
from release.matrix import resolve
from release.workspace import Workspace
from release.configschema import SCHEMA
from release.demo.generate import generate_demo
from release.demo.srcrepo import advance_branch
from release.steps import REGISTRY
from tests.emulation_support import need_root
from tests.emulation_support import write_config as emulation_config
from tests.pipeline_support import doit, ran

FLAVOURS = ["static", "dynamic", "minimal"]
EXEMPT = {"pipeline.workdir": "names the work directory itself: a changed one is a fresh build by definition"}


# --------------------------------------------------------------------------- the base build

@dataclass(frozen=True)
class Base:
    root: Path          # served inputs: pkgbase/, pubkey/pkgbase/, src.git, keys
    config: Path
    work: Path          # where every key's incremental build runs (doit's state names absolute paths)
    pristine: Path      # the base build, restored into *work* before each key


def _served(root: Path) -> None:
    """Demo repositories (two names, ABI 14 and 15, amd64 and aarch64; also signed the "pubkey" way) and a src
    repository with alternative files for the steps' options to point at."""
    repos = {"base_release_2": "14.2", "base_latest": "14.2"}
    for abi in (14, 15):
        generate_demo(root, arches=("amd64", "aarch64"), abi_major=abi, repos=repos)
        generate_demo(root / "pubkey", arches=("amd64",), abi_major=abi, repos=repos, signature_type="pubkey")
    repo = pygit2.Repository(str(root / "src.git"))
    head = repo.references["refs/heads/releng/14.2"].peel(pygit2.Commit)
    passwd = head.tree["etc/master.passwd"].data
    advance_branch(root / "src.git", "releng/14.2", {
        "etc/master.passwd.drift": passwd + b"drift:*:4242:4242::0:0:Drift test:/nonexistent:/usr/sbin/nologin\n",
        "etc/group.drift": head.tree["etc/group"].data + b"drift:*:4242:\n",
        "share/termcap/termcap.drift": b"# an alternative termcap\n",
    }, time=head.commit_time, message="Alternative files for the drift test")
    (root / "keys").mkdir()
    from release.demo.generate import pubkey_pem
    (root / "keys/demo.pub").write_bytes(pubkey_pem())


def base_config(root: Path, path: Path) -> Path:
    """The shipped configuration on the served inputs, with the built-in family written out (so the
    flavour keys and step options have values to change) and listed by the one release."""
    data = toml.loads((Path(__file__).parent.parent / "config.toml").read_text())
    defaults = toml.loads(config_mod.DEFAULTS.read_text())
    data["flavours"], data["architectures"] = defaults["flavours"], defaults["architectures"]
    data["flavours"]["minimal"]["steps"] = [{"kind": "remove", "paths": ["/usr/share/misc/termcap"]}]
    data["src"]["url"] = (root / "src.git").as_uri()
    data["pkgbase"]["url"] = (root / "pkgbase").as_uri() + "/${ABI}/${REPO}"
    data["registries"] = {"local": {"url": "http://127.0.0.1:9", "namespace": "freebsd"}}
    data["releases"] = {"test": {"version": "14.2-RELEASE", "branch": "releng/14.2", "repo": "base_release_2",
                                 "abi_major": 14, "arches": ["amd64"], "flavours": list(FLAVOURS),
                                 "source": "https://git.freebsd.org/src.git"}}
    path.write_text(toml.dumps(data))
    return path


@pytest.fixture(scope="session")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    top = tmp_path_factory.mktemp("drift")
    root = top / "served"
    _served(root)
    config = base_config(root, top / "config.toml")
    work = top / "work"
    doit(config, work, "build:test")
    pristine = top / "pristine"
    copy_work(work, pristine)
    return Base(root, config, work, pristine)


# --------------------------------------------------------------------------- mutations

def _release(d: dict) -> dict:
    return d["releases"]["test"]


def _flavour(d: dict, name: str) -> dict:
    return d["flavours"][name]


def _step(d: dict, flavour: str, kind: str) -> dict:
    return next(s for s in _flavour(d, flavour)["steps"] if s["kind"] == kind)


def _copy_of(root: Path, name: str) -> str:
    """A second location with the same content (a moved mirror)."""
    target = root.parent / f"{root.name}-copy-{name}"
    if not target.exists():
        shutil.copytree(root, target, symlinks=True)
    return target.as_uri()


def _pubkey(d: dict, root: Path, where: dict) -> None:
    where.update(signature_type="pubkey", pubkey=str(root / "keys/demo.pub"))
    d["pkgbase"]["url"] = (root / "pubkey" / "pkgbase").as_uri() + "/${ABI}/${REPO}"


def _pin(d: dict, root: Path, work: Path) -> None:
    locks = root.parent / "pinned-locks"
    if not locks.exists():
        locks.mkdir()
        shutil.copy(work / "locks/test/amd64.json", locks / "amd64.json")
    _release(d)["lock"] = str(locks)


Mutation = Callable[[dict, Path, Path], None]      # (config data, served root, base work) -> None

MUTATIONS: dict[str, Mutation] = {
    "pipeline.jobs": lambda d, r, w: d["pipeline"].update(jobs=1),
    "pipeline.layer_compression": lambda d, r, w: d["pipeline"].update(layer_compression="tar+zstd"),
    "pipeline.gzip_level": lambda d, r, w: d["pipeline"].update(gzip_level=1),
    "pipeline.gzip_engine": lambda d, r, w: d["pipeline"].update(gzip_engine="isal"),
    "pipeline.gzip_block_size": lambda d, r, w: d["pipeline"].update(gzip_block_size=0),
    "pipeline.compress_threads": lambda d, r, w: d["pipeline"].update(compress_threads=1),
    "pipeline.zstd_level": lambda d, r, w: d["pipeline"].update(zstd_level=9),
    "pipeline.xz_preset": lambda d, r, w: d["pipeline"].update(xz_preset=1),
    "pipeline.source_date_epoch": lambda d, r, w: d["pipeline"].update(source_date_epoch=1700000000),
    "pipeline.http_timeout": lambda d, r, w: d["pipeline"].update(http_timeout=11),
    "pipeline.http_retries": lambda d, r, w: d["pipeline"].update(http_retries=1),
    "pipeline.user_agent": lambda d, r, w: d["pipeline"].update(user_agent="drift/1"),
    "src.url": lambda d, r, w: d["src"].update(url=_copy_of(r / "src.git", "src")),
    "src.mirror": lambda d, r, w: d["src"].update(mirror="git/moved.git"),
    "pkgbase.url": lambda d, r, w: d["pkgbase"].update(url=_copy_of(r / "pkgbase", "pkgbase") + "/${ABI}/${REPO}"),
    "pkgbase.signature_type": lambda d, r, w: _pubkey(d, r, d["pkgbase"]),
    "pkgbase.fingerprints": lambda d, r, w: d["pkgbase"].update(fingerprints="src:share/keys/pkgbase-15"),
    "pkgbase.pubkey": lambda d, r, w: d["pkgbase"].update(pubkey="keys/unused.pub"),
    "pkgbase.pkgdb_schema": lambda d, r, w: d["pkgbase"].update(pkgdb_schema=36),
    "pkgbase.pkg_packages": lambda d, r, w: d["pkgbase"].update(pkg_packages=["FreeBSD-pkg"]),
    "publish.root": lambda d, r, w: d["publish"].update(root=str(r.parent / "tree")),
    "publish.keep": lambda d, r, w: d["publish"].update(keep=2),
    "push.release_tags": lambda d, r, w: d["push"].update(release_tags=["${VERSION}"]),
    "push.snapshot_tags": lambda d, r, w: d["push"].update(snapshot_tags=["${MAJOR}-snap"]),
    "push.sbom": lambda d, r, w: d["push"].update(sbom=False),
    "signing.key": lambda d, r, w: d["signing"].update(key="keys/none.pem"),
    "signing.public_key": lambda d, r, w: d["signing"].update(public_key="keys/none.pub"),
    "signing.openpgp_key": lambda d, r, w: d["signing"].update(openpgp_key="0123456789ABCDEF0123456789ABCDEF01234567"),
    "signing.gnupg_home": lambda d, r, w: d["signing"].update(gnupg_home="keys/gnupg"),
    "signing.openpgp_public_key": lambda d, r, w: d["signing"].update(openpgp_public_key="keys/none.asc"),
    "signing.lookaside_url": lambda d, r, w: d["signing"].update(lookaside_url="https://example.org/signatures"),
    "registries.*.url": lambda d, r, w: d["registries"]["local"].update(url="http://127.0.0.1:10"),
    "registries.*.namespace": lambda d, r, w: d["registries"]["local"].update(namespace="other"),
    "registries.*.tls_verify": lambda d, r, w: d["registries"]["local"].update(tls_verify=False),
    "registries.*.chunk_size": lambda d, r, w: d["registries"]["local"].update(chunk_size=1 << 20),
    "architectures.*.target": lambda d, r, w: d["architectures"]["amd64"].update(target="x86"),
    "architectures.*.oci": lambda d, r, w: d["architectures"]["amd64"].update(oci="386"),
    "architectures.*.variant": lambda d, r, w: d["architectures"]["amd64"].update(variant="v3"),
    "architectures.*.byte_order": lambda d, r, w: d["architectures"]["amd64"].update(byte_order="big"),
    "flavours.*.parent": lambda d, r, w: _flavour(d, "minimal").update(parent="static"),
    "flavours.*.packages": lambda d, r, w: _flavour(d, "minimal")["packages"].remove("FreeBSD-mtree"),
    "flavours.*.cmd": lambda d, r, w: _flavour(d, "minimal").update(cmd=["/bin/csh"]),
    "flavours.*.env": lambda d, r, w: _flavour(d, "dynamic").update(env=["PATH=/bin", "LANG=C.UTF-8"]),
    "flavours.*.steps": lambda d, r, w: _flavour(d, "dynamic").update(
        steps=[{"kind": "remove", "paths": ["/etc/termcap.small"]}]),
    "flavours.*.scripts": lambda d, r, w: _flavour(d, "minimal").update(scripts="ignore"),
    "flavours.*.ignore_scripts": lambda d, r, w: _flavour(d, "minimal").update(
        ignore_scripts=["FreeBSD-certctl:post-install"]),
    "flavours.*.description": lambda d, r, w: _flavour(d, "dynamic").update(description="drifted"),
    "releases.*.version": lambda d, r, w: _release(d).update(version="14.2-DRIFT"),
    "releases.*.newest": lambda d, r, w: (_release(d).pop("version"),
                                          _release(d).update(branch="releng/14.*", newest=1)),
    "releases.*.image_name": lambda d, r, w: _release(d).update(image_name="freebsd-${FLAVOUR}"),
    "releases.*.image_repository": lambda d, r, w: _release(d).update(
        image_repository="https://pkg.example.org/${ABI}/drift"),
    "releases.*.kind": lambda d, r, w: _release(d).update(kind="snapshot"),
    "releases.*.branch": lambda d, r, w: _release(d).update(branch="stable/14"),
    "releases.*.repo": lambda d, r, w: _release(d).update(repo="base_latest"),
    # the built-in minimal asks for 14.x's FreeBSD-kerberos-lib: a 15 ABI builds the two below it
    "releases.*.abi_major": lambda d, r, w: _release(d).update(abi_major=15, flavours=["static", "dynamic"]),
    "releases.*.arches": lambda d, r, w: _release(d).update(arches=["amd64", "aarch64"]),
    "releases.*.flavours": lambda d, r, w: _release(d).update(flavours=["static", "dynamic"]),
    "releases.*.mirror": lambda d, r, w: _release(d).update(
        mirror=_copy_of(r / "pkgbase", "mirror") + "/${ABI}/${REPO}"),
    "releases.*.src_url": lambda d, r, w: _release(d).update(src_url=_copy_of(r / "src.git", "src-url")),
    "releases.*.source": lambda d, r, w: _release(d).update(source="https://git.example.org/src.git"),
    "releases.*.signature_type": lambda d, r, w: _pubkey(d, r, _release(d)),
    "releases.*.fingerprints": lambda d, r, w: _release(d).update(fingerprints="src:share/keys/pkgbase-15"),
    "releases.*.pubkey": lambda d, r, w: _release(d).update(pubkey="keys/unused.pub"),
    "releases.*.pkgdb_schema": lambda d, r, w: _release(d).update(pkgdb_schema=36),
    "releases.*.lock": lambda d, r, w: _pin(d, r, w),
    "releases.*.demo": lambda d, r, w: _release(d).update(demo=True),
    "releases.*.packages": lambda d, r, w: _release(d).update(
        packages={"minimal": ["FreeBSD-runtime", "FreeBSD-rc", "FreeBSD-pkg-bootstrap"]}),
    "steps.mtree.specs": lambda d, r, w: _step(d, "static", "mtree")["specs"].pop(),
    "steps.accounts.master_passwd": lambda d, r, w: _step(d, "static", "accounts").update(
        master_passwd="etc/master.passwd.drift"),
    "steps.accounts.group": lambda d, r, w: _step(d, "static", "accounts").update(group="etc/group.drift"),
    "steps.src-file.src": lambda d, r, w: _step(d, "static", "src-file").update(src="share/termcap/termcap.drift"),
    "steps.src-file.dest": lambda d, r, w: _step(d, "static", "src-file").update(dest=["/etc/termcap.small"]),
    "steps.src-file.mode": lambda d, r, w: _step(d, "static", "src-file").update(mode="0444"),
    "steps.src-file.uname": lambda d, r, w: _step(d, "static", "src-file").update(uname="daemon"),
    "steps.src-file.gname": lambda d, r, w: _step(d, "static", "src-file").update(gname="operator"),
    "steps.caroot.trusted": lambda d, r, w: _step(d, "static", "caroot").update(trusted="secure/caroot/none"),
    "steps.caroot.untrusted": lambda d, r, w: _step(d, "static", "caroot").update(untrusted="secure/caroot/none"),
    "steps.caroot.layout": lambda d, r, w: _step(d, "static", "caroot").update(layout="blacklisted"),
    "steps.repo-conf.name": lambda d, r, w: _step(d, "static", "repo-conf").update(name="FreeBSD-drift"),
    "steps.repo-conf.url": lambda d, r, w: _step(d, "static", "repo-conf").update(
        url="https://pkg.example.org/${ABI}/${REPO}"),
    "steps.repo-conf.mirror_type": lambda d, r, w: _step(d, "static", "repo-conf").update(mirror_type="http"),
    "steps.repo-conf.signature_type": lambda d, r, w: _step(d, "static", "repo-conf").update(signature_type="none"),
    "steps.repo-conf.fingerprints": lambda d, r, w: _step(d, "static", "repo-conf").update(
        fingerprints="/usr/share/keys/drift"),
    "steps.repo-conf.enabled": lambda d, r, w: _step(d, "static", "repo-conf").update(enabled=False),
    "steps.remove.paths": lambda d, r, w: _step(d, "minimal", "remove")["paths"].append("/etc/termcap.small"),
}
# run steps need an image whose programs run here: test_run_step_options_drift covers them
RUN_OPTIONS = {"steps.run.command", "steps.run.timeout"}
NO_BUILD_EFFECT = {
    "pipeline.jobs", "pipeline.compress_threads", "pipeline.zstd_level", "pipeline.http_timeout",
    "pipeline.http_retries", "pipeline.user_agent",
    "src.mirror", "pkgbase.pubkey", "publish.root", "publish.keep", "push.release_tags", "push.snapshot_tags",
    "push.sbom", "signing.key", "signing.public_key", "signing.openpgp_key", "signing.gnupg_home",
    "signing.openpgp_public_key", "signing.lookaside_url", "registries.*.url", "registries.*.namespace",
    "registries.*.tls_verify", "registries.*.chunk_size", "releases.*.pubkey",
}


def all_keys() -> set[str]:
    keys = {f"{section}.{s.key}" for section, settings in SCHEMA.items() for s in settings}
    keys |= {f"steps.{kind.name}.{o.name}" for kind in REGISTRY.values() for o in kind.options}
    return keys


def test_every_key_has_a_mutation() -> None:
    assert all_keys() - set(EXEMPT) == set(MUTATIONS) | RUN_OPTIONS


# --------------------------------------------------------------------------- what ran, what should have

BUILD_STAGES = ("demo", "fetch", "lock", "download", "layer", "image", "index", "archive", "sbom", "checksum")


def build_plans(config: Path, work: Path) -> dict:
    """Task name -> plan of every build task, named as tasks/ names them (from the src the mirror holds)."""
    cfg = config_mod.load(config, workdir=work)
    m = resolve(cfg, Workspace(work))
    assert not m.pending, m.pending
    plans = {}
    demo = planner.demo_plan(cfg)
    if demo is not None:
        plans["demo"] = demo
    for p in planner.src_plans(m):
        plans[f"fetch:{p.label}"] = p
    for name, resolved in m.releases.items():
        r = resolved.release
        for a in r.arches:
            plans[f"fetch:{name}:{a}"] = planner.catalogue_plan(m, name, a)
            plans[f"lock:{name}:{a}"] = planner.lock_plan(m, name, a)
            plans[f"download:{name}:{a}"] = planner.download_plan(m, name, a)
            plans[f"checksum:{name}:{a}"] = planner.checksum_plan(m, name, a)
            for f in r.flavours:
                for stage, make in (("layer", planner.layer_plan), ("image", planner.image_plan),
                                    ("archive", planner.archive_plan), ("sbom", planner.sbom_plan)):
                    plans[f"{stage}:{name}:{a}:{f}"] = make(m, name, a, f)
        for f in r.flavours:
            plans[f"index:{name}:{f}"] = planner.index_plan(m, name, f)
    return plans


def file_sums(root: Path) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
            and ".doit.db" not in p.name}


def relocated(sums: dict[Path, str], old: Path, new: Path) -> dict[Path, str]:
    return {new / p.relative_to(old): s for p, s in sums.items()}


def expected_to_run(before: dict, after: dict, old_files: dict[Path, str], new_files: dict[Path, str]) -> set[str]:
    out = set()
    pinned = {f"fetch:{p.release}:{p.arch}" for n, p in after.items() if n.startswith("lock:") and p.pinned}
    for name, plan in after.items():
        if name in pinned:
            continue                    # nothing the build needs reads that catalogue
        always = name.startswith("fetch:")
        new = name not in before or before[name].identity() != plan.identity()
        changed_input = any(old_files.get(p) != new_files.get(p) for p in plan.inputs())
        missing_target = any(p not in old_files for p in plan.outputs())
        if always or new or changed_input or missing_target:
            out.add(name)
    return out


def released(plans: dict, work: Path) -> dict[str, str]:
    """sha256 of every file the build releases: archives, SBOMs, CHECKSUMs and the OCI layouts."""
    out: dict[str, str] = {}
    for name, plan in plans.items():
        if name.startswith(("archive:", "sbom:", "checksum:")):
            paths = plan.outputs()
        elif name.startswith("index:"):
            layout = plan.workspace.layout_dir(plan.release, plan.flavour)
            paths = [p for p in layout.rglob("*") if p.is_file()]
        else:
            continue
        for p in paths:
            rel = str(p.relative_to(plan.workspace.root))
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "missing"
    return out


def copy_work(source: Path, dest: Path) -> None:
    """A built work directory copied (content-addressed stores hardlinked: they are only ever renamed into).

    doit's state records absolute paths, so a copy is only a build's equal at the path it was built at.
    """
    def copy(src, dst):
        if "/blobs/" in src or "/cache/packages/" in src:
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)
    shutil.copytree(source, dest, symlinks=True, copy_function=copy)
    (dest / ".lock").unlink(missing_ok=True)


def seed_fresh(source: Path, dest: Path) -> None:
    """A fresh work directory that already has the packages (content-addressed) and the src objects."""
    shutil.copytree(source / "cache/packages", dest / "cache/packages", copy_function=os.link)


def mutated(base: Base, key: str, dest: Path, mutations: list[str]) -> Path:
    data = toml.loads(base.config.read_text())
    for k in mutations:
        MUTATIONS[k](data, base.root, base.work)
    dest.write_text(toml.dumps(data))
    return dest


@pytest.mark.parametrize("key", sorted(MUTATIONS))
def test_a_changed_key_rebuilds_what_reads_it_to_the_bytes_of_a_fresh_build(base: Base, key: str,
                                                                          tmp_path: Path) -> None:
    config = mutated(base, key, tmp_path / "config.toml", [key])
    work = base.work
    shutil.rmtree(work)
    copy_work(base.pristine, work)
    before = build_plans(base.config, work)
    old_files = relocated(file_sums(base.pristine), base.pristine, work)
    target = "build:14.2-RELEASE" if key == "releases.*.newest" else "build:test"   # a glob names by version
    proc = doit(config, work, target)
    after = build_plans(config, work)       # after the run: a moved src mirror is only fetched by it
    did = set(ran(proc))
    expected = expected_to_run(before, after, old_files, file_sums(work))
    assert did == expected, f"{key}: ran {sorted(did - expected)} unexpectedly, not {sorted(expected - did)}"
    if key in NO_BUILD_EFFECT:
        assert all(t.startswith("fetch:") for t in did), f"{key} is read by {sorted(did)}"
        assert released(after, work) == released(build_plans(base.config, base.pristine), base.pristine)
        return
    assert any(not t.startswith("fetch:") for t in did), f"{key}: no build stage reads it; list it in NO_BUILD_EFFECT"
    fresh = tmp_path / "fresh"
    seed_fresh(base.pristine, fresh)
    doit(config, fresh, target)
    ours, theirs = released(after, work), released(build_plans(config, fresh), fresh)
    assert ours == theirs, f"{key}: incremental and fresh builds differ: " \
        f"{sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))}"


def test_keys_no_build_stage_reads_leave_a_fresh_build_as_it_was(base: Base, tmp_path: Path) -> None:
    config = mutated(base, "all", tmp_path / "config.toml", sorted(NO_BUILD_EFFECT))
    fresh = tmp_path / "fresh"
    seed_fresh(base.pristine, fresh)
    doit(config, fresh, "build:test")
    assert released(build_plans(config, fresh), fresh) == \
        released(build_plans(base.config, base.pristine), base.pristine)


RUN_MUTATIONS = {
    "steps.run.command": lambda step: step.update(command=step["command"] + ["--", "drift"]),
    "steps.run.timeout": lambda step: step.update(timeout=60),
}


@pytest.mark.parametrize("key", sorted(RUN_OPTIONS))
def test_run_step_options_drift(emulation_inputs, tmp_path: Path, key: str) -> None:
    """A run step's options, on an image whose programs really run here (busybox, natively)."""
    need_root()
    config = emulation_config(tmp_path / "base.toml", emulation_inputs, arches=("amd64",))
    work = tmp_path / "work"
    doit(config, work, "build:emu")
    data = toml.loads(config.read_text())
    RUN_MUTATIONS[key](next(s for s in data["flavours"]["scripted"]["steps"] if s["kind"] == "run"))
    changed = tmp_path / "changed.toml"
    changed.write_text(toml.dumps(data))
    before, after = build_plans(config, work), build_plans(changed, work)
    old_files = file_sums(work)
    did = set(ran(doit(changed, work, "build:emu")))
    assert did == expected_to_run(before, after, old_files, file_sums(work))
    assert "layer:emu:amd64:scripted" in did and "layer:emu:amd64:shell" not in did
    fresh = tmp_path / "fresh"
    seed_fresh(work, fresh)
    doit(changed, fresh, "build:emu")
    assert released(after, work) == released(build_plans(changed, fresh), fresh)

"""The release matrix as it is built: each release completed from its own src.

config.toml says which releases to build; the release's src says the rest, the
way FreeBSD's own release build reads it (release.srcconf):

- version and ABI major from sys/conf/newvers.sh (unless configured);
- the flavours from release/Makefile.oci and release/tools/oci-image-*.conf
  (unless the release lists them; a listed flavour the configuration defines
  comes from [flavours.<name>], any other from the src);
- the image names from release/scripts/make-oci-image.sh;
- the catalogue trust (src:auto): share/keys/pkgbase-<major> where the src has
  it, else share/keys/pkg;
- the image's pkg repository configuration: the FreeBSD-base block of the
  release's usr.sbin/pkg/FreeBSD.conf.* where it has one;
- a branch glob (releng/15.*) becomes one release per matching branch, named
  by its version.

Everything is read from git objects at the release's commit (the fetched
branch head, or the commit a pinned lock records), so resolving needs the src
mirror to be fetched; tasks/ does that before it creates the tasks
(resolve(..., fetch=True)).  The plans then name what was read, so a src
commit that changes a conf file rebuilds exactly what it affects.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import srcconf
from .builtins.repoconf import base_repository
from .config import Config, Flavour, Release
from .steps import Step
from .errors import InputError, ReleaseError
from .records import Lock, SrcHead
from .sources import mirror_of, update_mirror
from .srcgit import SrcMirror
from .workspace import Workspace

if TYPE_CHECKING:
    from .plans import SrcLocation

DEFAULT_NAME = "freebsd-${FLAVOUR}"


@dataclass(frozen=True)
class Resolved:
    """One release with everything its src says filled in."""

    release: Release
    flavours: dict[str, Flavour]        # build order, parents first
    origins: dict[str, str]             # flavour -> "config" or the src file that defines it
    repository: dict[str, str] | None   # FreeBSD-base of usr.sbin/pkg/FreeBSD.conf.* (with "origin")
    reads: tuple[str, ...]              # the src files the definitions were read from
    version_from: str = "config.toml"   # where the version came from


@dataclass(frozen=True)
class Matrix:
    config: Config
    releases: dict[str, Resolved]
    pending: dict[str, str]             # configured release -> why it is not resolved (src not fetched yet)

    def release(self, name: str) -> Release:
        return self.releases[name].release

    def flavour(self, release: str, name: str) -> Flavour:
        return self.releases[release].flavours[name]

    def chain(self, release: str, flavour: str) -> list[Flavour]:
        """The flavour and its ancestors, root first."""
        out: list[Flavour] = []
        name: str | None = flavour
        while name is not None:
            f = self.flavour(release, name)
            out.append(f)
            name = f.parent
        return out[::-1]


def src_location_of(cfg: Config, release: Release) -> SrcLocation:
    from .planner import src_location
    return src_location(cfg, release)


def needs_src(r: Release) -> bool:
    return not (r.version and r.abi_major and r.flavours and r.repo and r.image_name
                and not r.fingerprints.startswith("src:auto") and not r.is_pattern)


def fetch_mirrors(cfg: Config, releases: set[str]) -> None:
    """Bring the src mirrors of *releases* (configured names) up to date: one negotiation each, once per
    process, asking for every branch the configuration reads from that mirror."""
    by_location: dict[SrcLocation, list[Release]] = {}
    for r in cfg.releases.values():
        by_location.setdefault(src_location_of(cfg, r), []).append(r)
    for location, rels in by_location.items():
        if any(r.name in releases for r in rels):
            update_mirror(location, sorted({r.branch for r in rels}))


def resolve(cfg: Config, ws: Workspace, *, fetch: set[str] | frozenset[str] = frozenset()) -> Matrix:
    """The matrix; the src mirrors of the releases in *fetch* are fetched first, the others are read as the
    mirrors hold them (a release whose src is not there yet stays pending: it gets no tasks)."""
    if fetch:
        fetch_mirrors(cfg, set(fetch))
    releases: dict[str, Resolved] = {}
    pending: dict[str, str] = {}
    # a branch a release table names itself is not also one of a glob's matches (14.2-RELEASE next to releng/14.*)
    named = {(cfg.src_url(r), r.branch) for r in cfg.releases.values() if not r.is_pattern}
    for r in cfg.releases.values():
        try:
            for resolved in _resolve_release(cfg, ws, r, named):
                name = resolved.release.name
                if name in releases:
                    raise InputError(f"releases.{r.name}: makes a release named {name}, which another "
                                     "release table makes too")
                releases[name] = resolved
        except _NotFetched as e:
            pending[r.name] = str(e)
    return Matrix(cfg, releases, pending)


class _NotFetched(ReleaseError):
    """The release's src is not in the mirror yet (a read-only command before the first fetch)."""


def _commit_for(cfg: Config, ws: Workspace, r: Release, branch: str, mirror: SrcMirror) -> str:
    if r.lock:
        from .planner import pinned_lock
        path = next((pinned_lock(cfg, r, a) for a in r.arches), "")
        commit: str = Lock.load(Path(path)).src["commit"]
        return commit
    try:
        return mirror.branch_commit(branch)
    except ReleaseError:
        try:
            return SrcHead.load(ws.src_json(r.name)).commit
        except ReleaseError:
            raise _NotFetched(f"src branch {branch} is not fetched yet") from None


def _branches(cfg: Config, r: Release, mirror: SrcMirror, named: set[tuple[str, str]]) -> list[str]:
    """A release's branch, or a glob's newest matches (those another release table names left out)."""
    if not r.is_pattern:
        return [r.branch]
    try:
        found = sorted((b for b in mirror.branches() if fnmatch.fnmatchcase(b, r.branch)), key=_version_key)
    except ReleaseError:
        raise _NotFetched(f"src branches {r.branch} are not fetched yet") from None
    if not found:
        raise InputError(f"releases.{r.name}.branch: no src branch matches {r.branch}")
    newest = found[-r.newest:] if r.newest else found
    return [b for b in newest if (cfg.src_url(r), b) not in named]


def _version_key(branch: str) -> tuple[int | str, ...]:
    return tuple(int(x) if x.isdigit() else x for x in re.split(r"(\d+)", branch))


def _resolve_release(cfg: Config, ws: Workspace, r: Release, named: set[tuple[str, str]]) -> list[Resolved]:
    mirror = mirror_of(src_location_of(cfg, r))
    out = []
    for branch in _branches(cfg, r, mirror, named):
        commit = _commit_for(cfg, ws, r, branch, mirror) if needs_src(r) else ""
        out.append(_complete(cfg, dataclasses.replace(r, branch=branch), mirror, commit, glob=r.is_pattern))
    return out


class _Src:
    """Files of one src commit, remembering which were read."""

    def __init__(self, mirror: SrcMirror, commit: str) -> None:
        self.mirror, self.commit = mirror, commit
        self.read: list[str] = []

    def get(self, path: str) -> bytes | None:
        if not self.commit or self.mirror.object_id(self.commit, path) is None:
            return None
        self.read.append(path)
        return self.mirror.read_file(self.commit, path)

    def has_dir(self, path: str) -> bool:
        return bool(self.commit) and self.mirror.object_id(self.commit, path) is not None

    def confs(self) -> list[str]:
        if not self.has_dir(srcconf.CONF_DIR):
            return []
        names = self.mirror.read_tree(self.commit, srcconf.CONF_DIR)
        return sorted(m.group(1) for n in names if (m := re.fullmatch(r"oci-image-([\w-]+)\.conf", n)))


def _complete(cfg: Config, r: Release, mirror: SrcMirror, commit: str, *, glob: bool) -> Resolved:
    src = _Src(mirror, commit)
    rel = _release_id(r, src)
    version = r.version or rel.version
    name = version if glob else r.name
    repository = None
    for path in srcconf.pkg_conf_path(rel):
        text = src.get(path)
        if text is not None and (block := srcconf.base_repository(text, path, rel)) is not None:
            repository = {**block, "origin": path}
            break
    flavours, origins = _flavours(cfg, r, src, rel, repository)
    fingerprints = r.fingerprints
    if fingerprints.startswith("src:auto"):
        dedicated = f"share/keys/pkgbase-{rel.major}"
        fingerprints = f"src:{dedicated}" if src.has_dir(f"{dedicated}/trusted") else "src:share/keys/pkg"
    image_name = r.image_name
    if not image_name:
        script = src.get(srcconf.SCRIPT)
        image_name = srcconf.read_name_template(script) if script is not None else DEFAULT_NAME
    resolved = dataclasses.replace(
        r, name=name, version=version, abi_major=r.abi_major or rel.major,
        repo=r.repo or _published_repository(rel), flavours=tuple(flavours), fingerprints=fingerprints,
        image_name=image_name)
    return Resolved(resolved, flavours, origins, repository, tuple(dict.fromkeys(src.read)),
                    version_from="config.toml" if r.version else srcconf.NEWVERS)


def _release_id(r: Release, src: _Src) -> srcconf.ReleaseId:
    text = src.get(srcconf.NEWVERS)
    if text is not None:
        return srcconf.read_newvers(text)
    m = re.fullmatch(r"(\d+\.\d+)-([A-Z][A-Z0-9]*)(-.*)?", r.version)
    if not m:
        raise InputError(f"releases.{r.name}: no version configured and no {srcconf.NEWVERS} in src "
                         f"{r.branch} to read it from")
    return srcconf.ReleaseId(m.group(1), m.group(2))


def _published_repository(rel: srcconf.ReleaseId) -> str:
    """Where pkg.FreeBSD.org publishes a release's pkgbase (oci-image-static.conf's rule)."""
    return base_repository(rel.branch, int(rel.minor))


def _with_base_repository(steps: tuple[Step, ...], repository: dict[str, str] | None) -> tuple[Step, ...]:
    """A conf's FreeBSD-base configuration, as the release's own FreeBSD.conf.* defines that repository.

    The static recipe's here-document and usr.sbin/pkg/FreeBSD.conf.* both
    describe FreeBSD-base; where the release's pkg has its own definition
    (15.x: pkg+https, /usr/share/keys/pkgbase-15), the image follows it, so
    pkg inside the image trusts the keys its base repository is signed with.
    """
    if not repository:
        return steps
    out = []
    for s in steps:
        if s.kind == "repo-conf" and s.get("name") == "FreeBSD-base":
            options = dict(s.options)
            options.update({k: repository[k] for k in ("url", "mirror_type", "signature_type", "fingerprints")
                            if repository.get(k)})
            s = Step(s.kind, tuple(sorted(options.items())))
        out.append(s)
    return tuple(out)


def _flavours(cfg: Config, r: Release, src: _Src, rel: srcconf.ReleaseId,
              repository: dict[str, str] | None) -> tuple[dict[str, Flavour], dict[str, str]]:
    listed = list(r.flavours)
    if not listed:
        makefile = src.get(srcconf.MAKEFILE)
        listed = srcconf.read_image_list(makefile) if makefile is not None else src.confs()
        if not listed:
            raise InputError(f"releases.{r.name}: src {r.branch} defines no images ({srcconf.CONF_DIR}/"
                             "oci-image-*.conf); list the flavours to build")
    defs: dict[str, Flavour] = {}
    origins: dict[str, str] = {}
    todo = list(listed)
    while todo:
        name = todo.pop(0)
        if name in defs:
            continue
        if r.flavours and name in cfg.flavours:
            defs[name], origins[name] = cfg.flavours[name], "config"
        else:
            text = src.get(srcconf.conf_path(name))
            if text is None:
                raise InputError(f"releases.{r.name}: flavour {name}: not in the configuration and no "
                                 f"{srcconf.conf_path(name)} in src {r.branch}")
            d = srcconf.read_flavour(name, text, rel)
            defs[name] = Flavour(name=name, parent=d.parent, packages=d.packages, cmd=d.cmd,
                                 env=cfg_env(cfg), steps=_with_base_repository(d.steps, repository),
                                 scripts="builtin", ignore_scripts=(), description=d.description)
            origins[name] = d.source
        if defs[name].parent and defs[name].parent not in listed:
            raise InputError(f"releases.{r.name}: flavour {name} needs its parent {defs[name].parent}, which "
                             "the release does not build")
    order: list[str] = []

    def visit(n: str) -> None:
        if n not in order:
            parent = defs[n].parent
            if parent:
                visit(parent)
            order.append(n)
    for n in listed:
        visit(n)
    return {n: defs[n] for n in order}, origins


def cfg_env(cfg: Config) -> tuple[str, ...]:
    """The Env of images whose flavour comes from src (the conf files set none): the schema's default."""
    from .configschema import SCHEMA
    return tuple(next(s.default for s in SCHEMA["flavours.*"] if s.key == "env"))


def describe(m: Matrix) -> list[str]:
    """The resolved matrix, one release after another, saying where each fact comes from."""
    cfg = m.config
    lines = []
    for name, resolved in m.releases.items():
        r = resolved.release
        lines.append(f"{name}: {r.version} ({r.kind}, {resolved.version_from}), src {r.branch} of {cfg.src_url(r)}")
        lines.append(f"  arches: {', '.join(r.arches)}; ABI FreeBSD:{r.abi_major}:<arch>")
        lines.append(f"  pkgbase: {cfg.pkgbase_url(r, '${ARCH}').replace('${ARCH}', '<arch>')}"
                     f" ({r.signature_type}: {r.pubkey if r.signature_type == 'pubkey' else r.fingerprints})")
        named = "make-oci-image.sh" if srcconf.SCRIPT in resolved.reads else "config.toml or the default"
        lines.append(f"  images: {r.image_name} ({named})")
        for fname, f in resolved.flavours.items():
            packages = " ".join(r.flavour_packages(f)) or "-"
            kinds = " ".join(s.kind for s in f.steps)
            lines.append(f"  {fname} [{resolved.origins[fname]}]" + (f" on {f.parent}" if f.parent else "")
                         + f": {packages}" + (f"; steps {kinds}" if kinds else "")
                         + (f"; cmd {' '.join(f.cmd)}" if f.cmd else ""))
        if resolved.repository:
            lines.append(f"  FreeBSD-base in the image: {resolved.repository.get('url')} "
                         f"({resolved.repository['origin']})")
    for name, why in sorted(m.pending.items()):
        lines.append(f"{name}: not resolved ({why})")
    return lines

"""config.toml: the release matrix, validated in full before any task runs.

One declarative table of settings (SCHEMA below) says, for every section, which
keys exist, their types, defaults and checks.  The loader walks the TOML once
against it, collects *every* problem as ``config.toml: <dotted.key>: <what is
wrong>`` and only then builds frozen dataclasses, so a release engineer sees all
mistakes at once and no task ever runs on a half-valid configuration.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import toml

from .configschema import REQUIRED, SCHEMA, Setting, path_name
from .errors import ConfigError
from .steps import REGISTRY as STEP_KINDS
from .steps import REQUIRED as STEP_REQUIRED
from .steps import Step
from .textvars import expand

# A TOML table as toml.loads returns it (values of any TOML type), or a section once _Checker.section has
# type-checked it against its settings and filled in the defaults.
Table = dict[str, Any]

# --------------------------------------------------------------------------- dataclasses

@dataclass(frozen=True)
class Pipeline:
    workdir: Path
    jobs: int
    layer_compression: str
    gzip_level: int
    gzip_engine: str                # "zlib" (identical bytes on every CPU) or "isal" (faster, CPU-dependent)
    gzip_block_size: int            # 0: one deflate stream; else independently deflated blocks (compress.py)
    compress_threads: int           # 0: every CPU; never changes the bytes
    zstd_level: int
    xz_preset: int
    source_date_epoch: str          # "src-inputs", "src-commit", "environment" or a decimal epoch
    http_timeout: float
    http_retries: int
    user_agent: str


@dataclass(frozen=True)
class Src:
    url: str
    mirror: Path                    # bare mirror, inside the work directory


@dataclass(frozen=True)
class Pkgbase:
    url: str                        # template with ${ABI} and ${REPO}
    signature_type: str
    fingerprints: str               # "src:<dir in src tree>" or a path relative to the project
    pubkey: str
    pkgdb_schema: int
    pkg_packages: tuple[str, ...]   # packages whose presence makes an image ship pkg


@dataclass(frozen=True)
class Publish:
    root: str                       # download-tree root ("" = none configured)
    keep: int                       # snapshot dates kept per version and architecture


@dataclass(frozen=True)
class RegistrySettings:
    name: str
    url: str
    namespace: str                  # repositories are <namespace>/freebsd-<flavour> ("" = freebsd-<flavour>)
    tls_verify: bool
    chunk_size: int


@dataclass(frozen=True)
class Push:
    release_tags: tuple[str, ...]   # ${VERSION}, ${MAJOR}, ${MINOR}
    snapshot_tags: tuple[str, ...]  # ${MAJOR}, ${MINOR}, ${BUILDDATE}
    sbom: bool                      # push each image's SBOM as an OCI artifact referring to it


@dataclass(frozen=True)
class Signing:
    key: str                        # private key file ("" = $RELEASE_SIGNING_KEY_FILE / $RELEASE_SIGNING_KEY)
    public_key: str                 # the trusted public key verify-tree and the tests check against
    openpgp_key: str = ""           # OpenPGP key fingerprint in the GnuPG home ("" = $RELEASE_OPENPGP_KEY_FILE ...)
    gnupg_home: str = ""            # that GnuPG home ("" = $GNUPGHOME or ~/.gnupg)
    openpgp_public_key: str = ""    # the trusted OpenPGP public key (armoured) verify-tree checks against
    lookaside_url: str = ""         # where mirrors serve the tree's signatures/ ("" = its file:// path)


@dataclass(frozen=True)
class Architecture:
    name: str                       # TARGET_ARCH: amd64, aarch64, ...
    target: str                     # TARGET: amd64, arm64, ...
    oci: str                        # OCI architecture
    variant: str
    byte_order: str                 # "little" or "big"

    @property
    def file_arch(self) -> str:
        """How FreeBSD spells the arch in file names (TARGET-TARGET_ARCH when they differ)."""
        return self.name if self.target == self.name else f"{self.target}-{self.name}"


@dataclass(frozen=True)
class Flavour:
    name: str
    parent: str | None
    packages: tuple[str, ...]
    cmd: tuple[str, ...]
    env: tuple[str, ...]
    steps: tuple[Step, ...]
    scripts: str
    ignore_scripts: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class Release:
    """A release as configured; release.matrix fills in what the release's own src says.

    version, abi_major and repo may be empty (0) and flavours empty here: they
    are then read from the release's src (sys/conf/newvers.sh, release/tools).
    A branch with glob characters stands for one release per matching branch.
    """
    name: str                       # the task key: "14.2-RELEASE", "demo"
    version: str                    # what goes into file names: "14.2-RELEASE" ("" = from newvers.sh)
    kind: str
    branch: str
    newest: int                     # with a branch glob: keep the newest N matches (0 = all)
    repo: str                       # pkgbase repository: base_release_2, base_latest ("" = by version)
    abi_major: int                  # 0 = from newvers.sh
    arches: tuple[str, ...]
    flavours: tuple[str, ...]       # in build order, parents first (() = what the src builds)
    image_name: str                 # "freebsd-${FLAVOUR}", "freebsd${MAJOR}-${FLAVOUR}" ("" = as the src names them)
    image_repository: str           # the URL the image's base.conf names ("" = as the release's src writes it)
    mirror: str                     # pkgbase URL template override ("" = pkgbase.url)
    src_url: str                    # src git URL override ("" = src.url)
    source: str                     # what images name as their source ("" = the src URL)
    signature_type: str
    fingerprints: str
    pubkey: str
    pkgdb_schema: int
    lock: str                       # pinned lock directory ("" = resolve afresh)
    demo: bool                      # inputs generated by the embedded demo generator
    packages: tuple[tuple[str, tuple[str, ...]], ...]   # per-flavour package overrides

    def flavour_packages(self, flavour: Flavour) -> tuple[str, ...]:
        return dict(self.packages).get(flavour.name, flavour.packages)

    def abi(self, arch: str) -> str:
        return f"FreeBSD:{self.abi_major}:{arch}"

    @property
    def is_pattern(self) -> bool:
        return any(c in self.branch for c in "*?[")


@dataclass(frozen=True)
class Config:
    path: Path
    project: Path
    pipeline: Pipeline
    src: Src
    pkgbase: Pkgbase
    publish: Publish
    push: Push
    signing: Signing
    registries: dict[str, RegistrySettings]
    architectures: dict[str, Architecture]
    flavours: dict[str, Flavour]
    releases: dict[str, Release]

    def release(self, name: str) -> Release:
        return self.releases[name]

    def chain(self, flavour: str) -> list[Flavour]:
        """The flavour and its ancestors, root (static) first."""
        out = []
        name: str | None = flavour
        while name is not None:
            out.append(self.flavours[name])
            name = self.flavours[name].parent
        return out[::-1]

    def pkgbase_url(self, release: Release, arch: str) -> str:
        template = release.mirror or self.pkgbase.url
        return expand(template, self.variables(release, arch))

    def src_url(self, release: Release) -> str:
        return expand(release.src_url or self.src.url, self.variables(release, None))

    def source(self, release: Release) -> str:
        """The image's source annotation: never a path of this build machine."""
        if release.source:
            return release.source
        if release.src_url and "${" not in release.src_url and not release.src_url.startswith("file:"):
            return release.src_url
        return self.src.url

    def variables(self, release: Release, arch: str | None) -> dict[str, str]:
        v = {"WORKDIR": str(self.pipeline.workdir), "PROJECT": str(self.project),
             "REPO": release.repo, "MAJOR": str(release.abi_major), "RELEASE": release.name}
        if arch is not None:
            v.update(ABI=release.abi(arch), ARCH=arch)
        return v


# --------------------------------------------------------------------------- validation

def _type_ok(value: Any, typ: str) -> bool:
    if typ == "str":
        return isinstance(value, str)
    if typ == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if typ == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if typ == "bool":
        return isinstance(value, bool)
    if typ == "str|int":
        return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
    if typ == "list[str]":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if typ in ("table", "steps"):
        return isinstance(value, (dict, list))
    raise AssertionError(typ)


_TYPE_NAMES = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
               "str|int": "a string or an integer", "list[str]": "a list of strings",
               "table": "a table", "steps": "a list of step tables"}


class _Checker:
    """Collects problems as 'config.toml: key.path: message'."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{self.source}: {where}: {message}")

    def section(self, where: str, table: Any, settings: list[Setting]) -> dict[str, Any]:
        """Type-check one table against its settings; returns values with defaults filled in."""
        out: dict[str, Any] = {}
        if not isinstance(table, dict):
            self.problem(where, "must be a table")
            table = {}
        known = {s.key for s in settings}
        for key in sorted(set(table) - known):
            self.problem(f"{where}.{key}", f"unknown key (known: {', '.join(sorted(known))})")
        for s in settings:
            if s.key not in table:
                if s.default is REQUIRED:
                    self.problem(f"{where}.{s.key}", "missing")
                    continue
                out[s.key] = s.default
                continue
            value = table[s.key]
            if not _type_ok(value, s.type):
                self.problem(f"{where}.{s.key}", f"must be {_TYPE_NAMES[s.type]}, not {value!r}")
                continue
            if s.check is not None and (msg := s.check(value)):
                self.problem(f"{where}.{s.key}", msg)
                continue
            out[s.key] = value
        return out

    def steps(self, where: str, items: Any) -> tuple[Step, ...]:
        if not isinstance(items, list):
            self.problem(where, "must be a list of step tables")
            return ()
        steps = []
        for i, item in enumerate(items):
            here = f"{where}[{i}]"
            if not isinstance(item, dict) or not isinstance(item.get("kind"), str):
                self.problem(here, 'must be a table with a "kind"')
                continue
            kind = item["kind"]
            if kind not in STEP_KINDS:
                self.problem(f"{here}.kind", f"unknown step kind {kind!r} (known: {', '.join(STEP_KINDS)})")
                continue
            spec = STEP_KINDS[kind]
            options = {o.name: o.default for o in spec.options if o.default is not STEP_REQUIRED}
            valid = True
            for key, value in item.items():
                if key == "kind":
                    continue
                option = spec.option(key)
                if option is None:
                    self.problem(f"{here}.{key}", f"unknown option for a {kind} step "
                                 f"(known: {', '.join(o.name for o in spec.options)})")
                    valid = False
                elif not _type_ok(value, option.type):
                    self.problem(f"{here}.{key}", f"must be {_TYPE_NAMES[option.type]}, not {value!r}")
                    valid = False
                else:
                    options[key] = value
            for o in spec.options:
                if o.name not in options:
                    self.problem(f"{here}.{o.name}", f"missing (a {kind} step needs it)")
                    valid = False
            if not valid:
                continue
            for key, message in spec.check(options):
                self.problem(f"{here}.{key}", message)
            steps.append(Step(kind, tuple(sorted((k, _freeze(v)) for k, v in options.items()))))
        return tuple(steps)


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _check_graph(chk: _Checker, flavours: dict[str, Table]) -> None:
    for name, f in flavours.items():
        parent = f.get("parent")
        if parent and parent not in flavours:
            chk.problem(f"flavours.{name}.parent", f'unknown flavour "{parent}"')
    for name in flavours:
        seen: list[str] = []
        cur: str | None = name
        while cur and cur in flavours:
            if cur in seen:
                if cur == name:
                    cycle = " -> ".join(seen + [cur])
                    chk.problem(f"flavours.{name}.parent", f"parent cycle: {cycle}")
                break
            seen.append(cur)
            cur = flavours[cur].get("parent") or None


def _check_release(chk: _Checker, name: str, r: Table, arches: dict[str, Table], flavours: dict[str, Table],
                   src_url: str = "") -> None:
    """What can be checked before the release's src is read (flavours the config does not define may come
    from the src; release.matrix checks those)."""
    where = f"releases.{name}"
    for a in r.get("arches", []):
        if a not in arches:
            chk.problem(f"{where}.arches", f'unknown architecture "{a}" (known: {", ".join(sorted(arches))})')
    listed = r.get("flavours", [])
    for fl in listed:
        parent = flavours[fl].get("parent") if fl in flavours else None
        if parent and parent in flavours and parent not in listed:
            chk.problem(f"{where}.flavours", f'flavour "{fl}" needs its parent "{parent}" in the same release')
    glob = any(c in str(r.get("branch", "")) for c in "*?[")
    if r.get("newest") and not glob:
        chk.problem(f"{where}.newest", "only a branch glob (releng/15.*) has matches to choose from")
    if glob and (r.get("version") or r.get("lock")):
        chk.problem(f"{where}.{'version' if r.get('version') else 'lock'}",
                    "a branch glob stands for several releases: their versions and locks come from each branch")
    if str(r.get("src_url") or src_url).startswith("file:") and not r.get("source"):
        chk.problem(f"{where}.source", "missing: images built from a local src (file:) need a public source "
                                       "to name (org.opencontainers.image.source)")
    packages = r.get("packages", {})
    if not isinstance(packages, dict):
        chk.problem(f"{where}.packages", "must be a table of flavour = [package, ...]")
        return
    for fl, pkgs in packages.items():
        if fl not in listed:
            chk.problem(f"{where}.packages.{fl}", "not a flavour of this release")
        elif not _type_ok(pkgs, "list[str]"):
            chk.problem(f"{where}.packages.{fl}", f"must be a list of strings, not {pkgs!r}")


def _build_order(listed: list[str], flavours: dict[str, Table]) -> tuple[str, ...]:
    """Parents before children, otherwise in the order the release lists them."""
    order: list[str] = []

    def visit(n: str) -> None:
        if n in order:
            return
        parent = flavours[n].get("parent") if n in flavours else None
        if parent:
            visit(parent)
        order.append(n)

    for n in listed:
        visit(n)
    return tuple(order)


# --------------------------------------------------------------------------- loading

DEFAULTS = Path(__file__).resolve().parent / "defaults.toml"


def load(path: str | os.PathLike[str], *, workdir: str | os.PathLike[str] | None = None) -> Config:
    """Parse and validate *path* (over the built-in defaults); raise ConfigError listing every problem found."""
    path = Path(path)
    source = path.name
    try:
        data = toml.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError([f"{source}: no such file ({path})"]) from None
    except (toml.TomlDecodeError, UnicodeDecodeError) as e:
        raise ConfigError([f"{source}: not valid TOML: {e}"]) from None
    return from_dict(data, path=path, workdir=workdir)


def with_defaults(data: Table) -> Table:
    """*data* over release/defaults.toml: [architectures.*] and [flavours.*] merged key by key."""
    defaults = toml.loads(DEFAULTS.read_text())
    out = dict(data)
    for table in ("architectures", "flavours"):
        mine = data.get(table, {})
        if not isinstance(mine, dict):
            continue                    # the checker reports it
        merged = {k: dict(v) for k, v in defaults[table].items()}
        for name, values in mine.items():
            merged[name] = {**merged.get(name, {}), **values} if isinstance(values, dict) else values
        out[table] = merged
    return out


def from_dict(data: Table, *, path: Path, workdir: str | os.PathLike[str] | None = None) -> Config:
    """Validate *data* (over the built-in defaults) and build the Config."""
    data = with_defaults(data)
    chk = _Checker(path.name)
    project = path.resolve().parent
    top_sections = {"pipeline", "src", "pkgbase", "publish", "push", "signing", "registries", "architectures",
                    "flavours", "releases"}
    for key in sorted(set(data) - top_sections):
        chk.problem(key, f"unknown section (known: {', '.join(sorted(top_sections))})")
    plain = {name: chk.section(name, data.get(name, {}), SCHEMA[name])
             for name in ("pipeline", "src", "pkgbase", "publish", "push", "signing")}
    tables: dict[str, dict[str, Table]] = {}
    for name in ("registries", "architectures", "flavours", "releases"):
        raw = data.get(name, {})
        if not isinstance(raw, dict):
            chk.problem(name, "must be a table")
            raw = {}
        tables[name] = {}
        for key, value in raw.items():
            if name != "registries" and ((msg := path_name(key)) or (key == "" and (msg := "must not be empty"))):
                chk.problem(f"{name}.{key}", msg)           # the name becomes a path: checked first
            tables[name][key] = chk.section(f"{name}.{key}", value, SCHEMA[f"{name}.*"])
    steps = {k: chk.steps(f"flavours.{k}.steps", f.get("steps", [])) for k, f in tables["flavours"].items()}
    _check_graph(chk, tables["flavours"])
    for name, r in tables["releases"].items():
        _check_release(chk, name, r, tables["architectures"], tables["flavours"], plain["src"].get("url", ""))
    if not tables["releases"]:
        chk.problem("releases", "no release is configured")
    if chk.problems:
        raise ConfigError(chk.problems)
    return _assemble(path, project, plain, tables, steps, workdir)


def _assemble(path: Path, project: Path, plain: dict[str, Table], tables: dict[str, dict[str, Table]],
              steps: dict[str, tuple[Step, ...]], workdir: str | os.PathLike[str] | None) -> Config:
    p = plain["pipeline"]
    wd = Path(workdir) if workdir is not None else Path(p["workdir"])
    if not wd.is_absolute():
        wd = project / wd
    pipeline = Pipeline(workdir=wd, jobs=p["jobs"], layer_compression=p["layer_compression"],
                        gzip_level=p["gzip_level"], gzip_engine=p["gzip_engine"],
                        gzip_block_size=p["gzip_block_size"], compress_threads=p["compress_threads"],
                        zstd_level=p["zstd_level"], xz_preset=p["xz_preset"],
                        source_date_epoch=str(p["source_date_epoch"]), http_timeout=float(p["http_timeout"]),
                        http_retries=p["http_retries"], user_agent=p["user_agent"])
    s = plain["src"]
    src = Src(url=s["url"], mirror=wd / s["mirror"])
    k = plain["pkgbase"]
    pkgbase = Pkgbase(url=k["url"], signature_type=k["signature_type"], fingerprints=k["fingerprints"],
                      pubkey=k["pubkey"], pkgdb_schema=k["pkgdb_schema"], pkg_packages=tuple(k["pkg_packages"]))
    publish = Publish(root=plain["publish"]["root"], keep=plain["publish"]["keep"])
    push = Push(release_tags=tuple(plain["push"]["release_tags"]), snapshot_tags=tuple(plain["push"]["snapshot_tags"]),
                sbom=plain["push"]["sbom"])
    signing = Signing(**plain["signing"])
    registries = {n: RegistrySettings(name=n, url=g["url"].rstrip("/"), namespace=g["namespace"].strip("/"),
                              tls_verify=g["tls_verify"], chunk_size=g["chunk_size"])
                  for n, g in tables["registries"].items()}
    arches = {n: Architecture(name=n, target=a["target"] or n, oci=a["oci"], variant=a["variant"],
                              byte_order=a["byte_order"])
              for n, a in tables["architectures"].items()}
    flavours = {n: Flavour(name=n, parent=f["parent"] or None, packages=tuple(f["packages"]),
                           cmd=tuple(f["cmd"]), env=tuple(f["env"]), steps=steps[n], scripts=f["scripts"],
                           ignore_scripts=tuple(f["ignore_scripts"]), description=f["description"])
                for n, f in tables["flavours"].items()}
    releases = {}
    for n, r in tables["releases"].items():
        releases[n] = Release(
            name=n, version=r["version"], kind=r["kind"], branch=r["branch"], newest=r["newest"], repo=r["repo"],
            abi_major=r["abi_major"], arches=tuple(r["arches"]),
            flavours=_build_order(r["flavours"], tables["flavours"]), image_name=r["image_name"],
            image_repository=r["image_repository"],
            mirror=r["mirror"], src_url=r["src_url"],
            source=r["source"],
            signature_type=r["signature_type"] or pkgbase.signature_type,
            fingerprints=r["fingerprints"] or pkgbase.fingerprints, pubkey=r["pubkey"] or pkgbase.pubkey,
            pkgdb_schema=r["pkgdb_schema"] or pkgbase.pkgdb_schema, lock=r["lock"], demo=r["demo"],
            packages=tuple(sorted((fl, tuple(v)) for fl, v in r["packages"].items())))
    return Config(path=path, project=project, pipeline=pipeline, src=src, pkgbase=pkgbase, publish=publish,
                  push=push, signing=signing, registries=registries, architectures=arches, flavours=flavours,
                  releases=releases)

"""Write the demo release: a src repository and signed pkgbase repositories.

Layout under the demo root (what config.toml's ``[releases.demo]`` points at):

    src.git/                                  bare src repository, one per demo
    pkgbase/FreeBSD:<major>:<arch>/<repo>/    meta.conf, catalogues, <name>-<version>.pkg

The two architectures deliberately differ the way real repositories of
different ages do: amd64 gets pkg >= 2.4 manifests (per-file objects, ``2$``
sums), a ``2$`` catalogue sum and both ``data`` and ``packagesite``
catalogues; every other architecture gets old manifests (``1$`` file sums,
owners only in tar headers), sha256 catalogue sums and only ``packagesite``,
so the pipeline's fallbacks are exercised on every demo build.

Each output directory is rebuilt under a temporary name and swapped in whole,
and carries a stamp with the identity of its inputs (data files, parameters,
this generator's source).  A second run with the same inputs compares stamps
and writes nothing, so ``doit build:demo`` stays up to date.  A repository's
stamp also records the package bumps applied to it (bump_package), so a
regeneration with unchanged inputs keeps them.
"""
from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import InputError
from ..fsutil import atomic_directory, atomic_write, canonical_json, identity, remove_partials
from ..pkgmanifest import MANIFEST_KEY_ORDER
from . import content, toolchain
from .pkgwriter import PackageInfo, write_package
from .repowriter import fingerprint_file, public_key_pem, write_repository
from .srcrepo import make_src_repo

DEFAULT_REPOS: Mapping[str, str] = MappingProxyType({"base_release_2": content.DEFAULT_VERSION})
DEFAULT_BRANCHES = ("releng/14.2", "stable/14", "main")
DEFAULT_TIME = content.BUILD_TIME
PKG_LEVEL = 19                      # pkg(8)'s zstd level for packages
KEY_NAME = "demo.example.org"       # trust-store file name of the demo key
STAMP = ".demo-inputs.json"
_KEY = content.DATA / "keys" / "demo-signing.key"
_SOURCES = (Path(content.__file__), Path(toolchain.__file__), Path(__file__))


@dataclass(frozen=True)
class DemoInfo:
    """Where the demo landed, and how to trust it."""

    root: Path
    src_git: Path
    repositories: Mapping[tuple[str, str], Path]     # (arch, repo) -> repository root
    pubkey_pem: bytes
    fingerprint: str                                  # sha256 hex of pubkey_pem
    written: tuple[str, ...]                          # outputs (re)built by this call, root-relative


def signing_key_pem() -> bytes:
    """The demo repository's private key (made for the demo; trusted nowhere else)."""
    return _KEY.read_bytes()


def pubkey_pem() -> bytes:
    return public_key_pem(signing_key_pem())


def fingerprint() -> str:
    return hashlib.sha256(pubkey_pem()).hexdigest()


def repository_dir(root: Path, *, arch: str, abi_major: int, repo: str) -> Path:
    return Path(root) / "pkgbase" / content.abi_string(abi_major, arch) / repo


def _data_identity() -> str:
    """Digest of every shipped data file and of the generator itself (README excluded)."""
    rows = [(p.relative_to(content.DATA).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(content.DATA.rglob("*")) if p.is_file() and p.name != "README.md"]
    rows += [(p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in _SOURCES]
    return identity(rows)


def _read_stamp(directory: Path) -> dict[str, Any] | None:
    try:
        stamp = json.loads((directory / STAMP).read_bytes())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def _write_stamp(directory: Path, stamp: dict[str, Any]) -> None:
    atomic_write(directory / STAMP, canonical_json(stamp) + b"\n")


# --- src ---------------------------------------------------------------------

# The version each demo branch's sys/conf/newvers.sh states (the demo's own world: its main is 15.0-CURRENT).
STABLE_MINOR = {13: 5, 14: 3, 15: 1}


def branch_version(branch: str) -> tuple[str, str]:
    """(REVISION, BRANCH) a demo branch's newvers.sh says: releng/14.2 -> 14.2 RELEASE, main -> 15.0 CURRENT."""
    if branch == "main":
        return "15.0", "CURRENT"
    kind, _, number = branch.partition("/")
    if kind == "releng" and "." in number:
        return number, "RELEASE"
    if kind == "stable" and number.isdigit():
        return f"{number}.{STABLE_MINOR.get(int(number), 0)}", "STABLE"
    raise InputError(f"demo: no version for branch {branch!r} (releng/X.Y, stable/X or main)")


def src_files(branch: str = "releng/14.2") -> dict[str, bytes]:
    """The demo src tree of one branch: FreeBSD's files from data/src, the image definitions of the
    branch's major (data/src-14, data/src-15; 13.x has none), its newvers.sh and the demo key's fingerprints."""
    revision, kind = branch_version(branch)
    files = _tree(content.DATA / "src")
    major = int(revision.split(".")[0])
    if (content.DATA / f"src-{major}").is_dir():
        files.update(_tree(content.DATA / f"src-{major}"))
    files["sys/conf/newvers.sh"] = (f'# sys/conf/newvers.sh of the demo src tree: the lines release builds read\n'
                                    f'TYPE="FreeBSD"\nREVISION="{revision}"\nBRANCH="{kind}"\n').encode()
    trust = fingerprint_file(pubkey_pem())
    files[f"share/keys/pkg/trusted/{KEY_NAME}"] = trust
    files[f"share/keys/pkgbase-15/trusted/{KEY_NAME}"] = trust
    return files


def _tree(base: Path) -> dict[str, bytes]:
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def _ensure_src(path: Path, branches: Sequence[str], time: int, data_id: str) -> bool:
    inputs = identity({"data": data_id, "branches": list(branches), "time": time})
    stamp = _read_stamp(path)
    if stamp is not None and stamp.get("inputs") == inputs:
        return False
    with atomic_directory(path) as tmp:
        make_src_repo(tmp, {branch: src_files(branch) for branch in branches}, time=time)
        _write_stamp(tmp, {"inputs": inputs})
    return True


# --- pkgbase repositories ----------------------------------------------------

def _builders(params: Mapping[str, Any]) -> dict[str, Callable[[content.Build], content.DemoPackage]]:
    """The packages a repository carries, by name: the demo's as its major names them, plus the
    notoolchain and toolchain families' when asked (release/demo/toolchain.py)."""
    out: dict[str, Callable[[content.Build], content.DemoPackage]] = {
        name: functools.partial(content.build_package, name) for name in content.package_names(params["abi_major"])}
    return {**out, **(toolchain.BUILDERS if params.get("toolchain") else {})}


def _catalogue_row(info: PackageInfo, filename: str, pkg_sum: str) -> dict[str, Any]:
    """A catalogue entry: the compact manifest plus what the repository adds, in pkg's key order."""
    row = dict(info.compact, sum=pkg_sum, path=filename, repopath=filename, pkgsize=info.size)
    return {key: row[key] for key in MANIFEST_KEY_ORDER if key in row}


def _write_repository(path: Path, params: dict[str, Any], bumps: dict[str, dict[str, Any]], inputs: str) -> None:
    """Build every package and the signed catalogues into a fresh directory swapped in at *path*."""
    build = content.Build(content.arch_info(params["arch"]), params["abi_major"], params["version"],
                          params["time"], params["scale"])
    new = params["arch"] == "amd64"
    entries = []
    builders = _builders(params)
    with atomic_directory(path) as tmp:
        for name in sorted(builders):
            pkg = builders[name](build)
            if name in bumps:
                pkg = content.with_change(pkg, bumps[name]["version"], bytes.fromhex(bumps[name]["change"]))
            filename = f"{name}-{pkg.manifest['version']}.pkg"
            info = write_package(tmp / filename, pkg.manifest, list(pkg.members),
                                 generation="new" if new else "old", level=params["pkg_level"])
            entries.append(_catalogue_row(info, filename, info.pkg2 if new else info.sha256))
            del pkg
        write_repository(tmp, entries, signing_key=signing_key_pem(),
                         signature_type=params.get("signature_type", "fingerprints"),
                         packing_format="tzst", formats=("data", "packagesite") if new else ("packagesite",),
                         legacy_copies=new, mtime=params["time"])
        _write_stamp(tmp, {"inputs": inputs, "params": params, "bumps": bumps})


def _ensure_repository(path: Path, params: dict[str, Any], data_id: str) -> bool:
    inputs = identity({"data": data_id, "params": params})
    stamp = _read_stamp(path)
    if stamp is not None and stamp.get("inputs") == inputs:
        return False
    remove_partials(path.parent)
    _write_repository(path, params, {}, inputs)
    return True


def _check(arches: Sequence[str], repos: Mapping[str, str], branches: Sequence[str], scale: float,
           time: int, signature_type: str) -> None:
    problems = []
    if not arches or len(set(arches)) != len(arches):
        problems.append(f"arches {list(arches)}: need one or more, each once")
    if not repos:
        problems.append("repos: need at least one repository name -> version")
    for repo, version in repos.items():
        if not repo or "/" in repo or repo.startswith(".") or not version or "/" in version:
            problems.append(f"repos: bad repository {repo!r} or version {version!r}")
    if not branches:
        problems.append("branches: need at least one")
    if not scale > 0:
        problems.append(f"scale {scale}: must be positive")
    if signature_type not in ("fingerprints", "pubkey"):
        problems.append(f"signature_type {signature_type!r}: fingerprints or pubkey")
    if not 3 * 3600 <= time < 0x7FFFFFFF:
        problems.append(f"time {time}: out of range")
    if problems:
        raise InputError("demo: " + "; ".join(problems))
    for arch in arches:
        content.arch_info(arch)


def generate_demo(root: Path, *, arches: Sequence[str] = ("amd64", "aarch64"), abi_major: int = 14,
                  repos: Mapping[str, str] = DEFAULT_REPOS, branches: Sequence[str] = DEFAULT_BRANCHES,
                  time: int = DEFAULT_TIME, scale: float = 1, pkg_level: int = PKG_LEVEL,
                  signature_type: str = "fingerprints", toolchain: bool = False) -> DemoInfo:
    """Write (or leave as they are, if up to date) the demo src repository and pkgbase repositories.

    *signature_type* signs the catalogues as FreeBSD does ("fingerprints":
    `.sig`/`.pub` members, trust by fingerprint) or in pkg's older "pubkey" mode
    (a `signature` member, checked against a configured key file).

    *repos* maps repository names to the package version they carry
    ({"base_release_2": "14.2"}); *time* is the src tip commit time and the
    mtime of every packaged file; *scale* sizes the binaries (content.py);
    *pkg_level* is the packages' zstd level (pkg's own default, 19, unless a
    benchmark wants generation to be quick); *toolchain* adds the packages of
    FreeBSD 15's notoolchain and toolchain flavours (release/demo/toolchain.py:
    about 1.5 GB of files at real scale).
    """
    root = Path(root)
    _check(arches, repos, branches, scale, time, signature_type)
    data_id = _data_identity()
    written = []
    root.mkdir(parents=True, exist_ok=True)
    remove_partials(root)
    if _ensure_src(root / "src.git", branches, time, data_id):
        written.append("src.git")
    repositories = {}
    for arch in arches:
        for repo, version in sorted(repos.items()):
            path = repository_dir(root, arch=arch, abi_major=abi_major, repo=repo)
            params = {"arch": arch, "abi_major": abi_major, "repo": repo, "version": version,
                      "time": time, "scale": float(scale), "pkg_level": pkg_level,
                      "signature_type": signature_type}
            if toolchain:
                params["toolchain"] = True
            if _ensure_repository(path, params, data_id):
                written.append(path.relative_to(root).as_posix())
            repositories[(arch, repo)] = path
    return DemoInfo(root=root, src_git=root / "src.git", repositories=MappingProxyType(repositories),
                    pubkey_pem=pubkey_pem(), fingerprint=fingerprint(), written=tuple(written))


def bump_package(root: Path, *, arch: str, abi_major: int, repo: str, name: str, version: str,
                 change: bytes) -> None:
    """Republish one generated repository with package *name* at *version*, its contents changed.

    *change* is appended to the package's first regular non-@config file.
    Every other package file is rebuilt to the same bytes; the catalogues are
    re-signed.  Bumping the same package again replaces its earlier bump.
    """
    path = repository_dir(root, arch=arch, abi_major=abi_major, repo=repo)
    stamp = _read_stamp(path)
    if stamp is None or not isinstance(stamp.get("params"), dict):
        raise InputError(f"{path}: not a generated demo repository (run generate_demo first)")
    builders = _builders(stamp["params"])
    if name not in builders:
        raise InputError(f"{name}: not a demo package (known: {', '.join(sorted(builders))})")
    if not version or "/" in version:
        raise InputError(f"{name}: bad version {version!r}")
    bumps = dict(stamp.get("bumps") or {})
    bumps[name] = {"version": version, "change": bytes(change).hex()}
    remove_partials(path.parent)
    _write_repository(path, stamp["params"], dict(sorted(bumps.items())), stamp["inputs"])

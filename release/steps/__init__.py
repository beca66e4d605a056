"""The kinds of install step a flavour may list, one module each, and the registry of them.

A flavour's ``steps`` (config.toml) are what FreeBSD's image recipes do besides
installing packages (release/tools/oci-image-static.conf: the mtree skeleton,
master.passwd and group with ``pwd_mkdb -p``, termcap.small, ``certctl -c
rehash``, the repository configuration; and commands run inside the image).
Each kind lives in its own module and declares, in one place:

- its options: name, type, default, a one-line doc and an example — config
  validation (release.config) and the configuration reference
  (docs/configuration.md, release.configdoc) both read them;
- its phase: before the packages are installed, after them, or as a command
  that needs the executor (emulation decisions read it);
- the src paths it reads (release.sources tracks their git objects, so a src
  commit that changes them rebuilds exactly the layers that read them);
- apply(): how it changes a LayerTree.

The model is osbuild's stages: a tiny ``main(tree, options)`` per stage, with
its schema next to it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..builtincache import UNCACHED, Builtins
from ..tree import LayerTree

BEFORE_PACKAGES = "before-packages"     # the tree holds only the layers below
AFTER_PACKAGES = "after-packages"       # the flavour's packages are in the tree
EXECUTOR = "executor"                   # runs the image's own programs (release.emulate)
PHASES = (BEFORE_PACKAGES, AFTER_PACKAGES, EXECUTOR)
REQUIRED = object()


@dataclass(frozen=True)
class Step:
    """One configured step: its kind and its options (defaults filled in), hashable."""

    kind: str
    options: tuple[tuple[str, Any], ...]    # sorted (key, value) pairs; lists frozen to tuples

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **{k: list(v) if isinstance(v, tuple) else v for k, v in self.options}}


@dataclass(frozen=True)
class Option:
    name: str
    type: str                       # "str", "int", "list[str]"
    doc: str
    default: Any = REQUIRED


@dataclass(frozen=True)
class RepoSettings:
    """What a step writing the image's pkg repository configuration needs from its release.

    *base* is the FreeBSD-base block of the release's own usr.sbin/pkg/FreeBSD.conf.*
    (url, mirror_type, signature_type, fingerprints), when its src has one: how
    that release's pkg names and trusts its base repository.  *keys* are trust
    anchors the image must carry because no package ships them (a repository
    of your own): image path -> content.
    """

    signature_type: str             # how pkg inside the image checks the repository
    fingerprints: str               # image path of the trust anchors (/usr/share/keys/pkg)
    variables: dict[str, str] = field(default_factory=dict)     # ${REPO}, ${MAJOR} for the URL
    base: dict[str, str] = field(default_factory=dict)
    pubkey: str = ""                # image path of the public key ("pubkey" repositories)
    url: str = ""                   # the release's image_repository: the URL base.conf names, whatever the step says
    keys: tuple[str, ...] = ()      # host files to install: "<host path>=<image path>"


@dataclass(frozen=True)
class StepContext:
    """What a step may consult besides the tree: src files by path, and its release's facts."""

    read_src: Callable[[str], bytes]                    # one file of the release's src
    read_src_dir: Callable[[str], dict[str, bytes]]     # the regular files of one src directory ({} if absent)
    byte_order: str
    repository: RepoSettings | None = None              # only for kinds with needs_repository
    keys: dict[str, bytes] = field(default_factory=dict)   # RepoSettings.keys, read: image path -> content
    tools: dict[str, Any] = field(default_factory=dict)    # tool generations of the release (builtins.generations)
    builtins: Builtins = UNCACHED                       # runs pwd_mkdb, certctl ... (cached by the layer stage)


def _no_paths(step: Step) -> list[str]:
    return []


def _no_problems(options: dict[str, Any]) -> list[tuple[str, str]]:
    return []


@dataclass(frozen=True)
class StepKind:
    name: str
    doc: str                                            # one paragraph for the reference
    options: tuple[Option, ...]
    phase: str
    example: str                                        # a TOML inline table
    apply: Callable[[LayerTree, Step, StepContext], None] | None = None    # None: the executor runs it
    src_paths: Callable[[Step], list[str]] = _no_paths
    check: Callable[[dict[str, Any]], list[tuple[str, str]]] = _no_problems       # (option, problem) of valid types
    needs_repository: bool = False

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)


def _load() -> dict[str, StepKind]:
    from . import accounts, caroot, mtree, remove, repo_conf, run, src_file
    kinds = [m.KIND for m in (mtree, accounts, src_file, caroot, repo_conf, remove, run)]
    return {k.name: k for k in kinds}


REGISTRY: dict[str, StepKind] = _load()


def kind_of(step: Step) -> StepKind:
    return REGISTRY[step.kind]


def needs_executor(steps: tuple[Step, ...] | list[Step]) -> bool:
    return any(kind_of(s).phase == EXECUTOR for s in steps)


def needs_repository(steps: tuple[Step, ...] | list[Step]) -> bool:
    return any(kind_of(s).needs_repository for s in steps)


def src_paths(steps: tuple[Step, ...] | list[Step]) -> set[str]:
    """Every src path (file or directory) these steps read."""
    return {p for s in steps for p in kind_of(s).src_paths(s)}


def apply_phase(tree: LayerTree, steps: tuple[Step, ...] | list[Step], phase: str, ctx: StepContext) -> None:
    """Carry out the steps of one phase, in the order the flavour lists them."""
    for s in steps:
        kind = kind_of(s)
        if kind.phase == phase and kind.apply is not None:
            kind.apply(tree, s, ctx)

"""The pkg repository configuration FreeBSD's container images ship.

release/tools/oci-image-static.conf ends by writing
/usr/local/etc/pkg/repos/base.conf so that `pkg` inside a container can install
more of the base system from pkg.FreeBSD.org.  This module writes the same
UCL text, byte for byte, from values the release configuration supplies.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .entries import Entry

if TYPE_CHECKING:
    from ..steps import Step

REPO_CONF = "/usr/local/etc/pkg/repos/base.conf"
REPO_CONF_MODE = 0o644          # `cat > file` under umask 022
SIGNATURE_TYPES = ("fingerprints", "pubkey", "none")
MIRROR_TYPES = ("srv", "http", "none")
# Branches that FreeBSD's static recipe points at the rolling base_latest
# repository; every other branch (RELEASE, RC*, ...) gets base_release_<minor>.
_LATEST_BRANCHES = re.compile(r"CURRENT|STABLE|BETA.*")
_UNSAFE = re.compile(r'["\\\x00-\x1f\x7f]')


def base_repository(branch: str, minor: int) -> str:
    """The repository name oci-image-static.conf picks for *branch* ("RELEASE", "BETA2" ...)."""
    if _LATEST_BRANCHES.fullmatch(branch):
        return "base_latest"
    return f"base_release_{minor}"


def base_conf(url: str, *, signature_type: str, fingerprints: str, enabled: bool = True,
              name: str = "FreeBSD-base", mirror_type: str = "srv", pubkey: str = "") -> Entry:
    """/usr/local/etc/pkg/repos/base.conf naming one repository.

    *url* is written verbatim, so pkg's own `${ABI}` stays for pkg to expand at
    run time (FreeBSD writes "https://pkg.FreeBSD.org/${ABI}/base_release_2").
    A "pubkey" repository names its key file instead of a fingerprints directory.
    """
    problems = []
    trust = ("pubkey", pubkey) if signature_type == "pubkey" else ("fingerprints", fingerprints)
    for key, value in (("url", url), trust, ("name", name)):
        if not value or _UNSAFE.search(value):
            problems.append(f"{REPO_CONF}: {key} {value!r} is empty or has quotes, "
                            "backslashes or control characters")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name or "-"):
        problems.append(f"{REPO_CONF}: repository name {name!r} is not a plain UCL key")
    if signature_type not in SIGNATURE_TYPES:
        problems.append(f"{REPO_CONF}: signature_type {signature_type!r} is not one of "
                        f"{', '.join(SIGNATURE_TYPES)}")
    if mirror_type not in MIRROR_TYPES:
        problems.append(f"{REPO_CONF}: mirror_type {mirror_type!r} is not one of {', '.join(MIRROR_TYPES)}")
    if problems:
        raise ConfigError(problems)
    text = (
        f"{name}: {{\n"
        f'  url: "{url}",\n'
        f'  mirror_type: "{mirror_type}",\n'
        f'  signature_type: "{signature_type}",\n'
        f'  {trust[0]}: "{trust[1]}",\n'
        f"  enabled: {'yes' if enabled else 'no'}\n"
        "}\n"
    )
    return Entry(REPO_CONF, "file", REPO_CONF_MODE, data=text.encode())


def repository_name(steps: Iterable[Step]) -> str | None:
    """The name the image's own pkg configuration gives its base repository.

    The last repo-conf step of a flavour chain writes base.conf (a later one
    replaces an earlier one); pkg records that name in every package's
    ``repository`` annotation and uses it to pick the repository on upgrade.
    None when no flavour of the chain configures one.
    """
    names = [s.get("name") for s in steps if s.kind == "repo-conf"]
    return names[-1] if names else None

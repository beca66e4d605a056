"""What is in it, who vouches for it: SBOM files, signed download trees, verify-tree.

- build_sbom: per image (release x arch x flavour) the SPDX 2.3 document,
  written next to the archive as `<archive name>.spdx.json` (so the CHECKSUM
  files list it, and publish carries it into the download tree);
- signing_key: the release signing key when one is configured (config
  [signing] key, or $RELEASE_SIGNING_KEY_FILE / $RELEASE_SIGNING_KEY), else None;
- verify_published_tree: every published directory of a download tree against
  the trusted public key: detached CHECKSUM signatures, then checksums.
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Callable

from .config import Config
from .errors import ReleaseError
from .fsutil import read_record, write_if_changed
from .image import arch_dir, archive_name, image_record, image_version, sbom_name
from .prepare import require_lock
from .sbom import image_sbom, sbom_bytes
from .signing import KEY_ENV, KEY_FILE_ENV, SigningKey, load_public_key, load_signing_key, verify_tree
from .sources import read_src
from .workspace import Workspace


def public_repository(cfg: Config, release: str, arch: str) -> str:
    """The pkgbase URL an SBOM names: the configured one, never a local mirror override."""
    r = cfg.release(release)
    if r.mirror and not r.mirror.startswith("file:"):
        return cfg.pkgbase_url(r, arch)
    return cfg.pkgbase_url(dataclasses.replace(r, mirror=""), arch)


def build_sbom(cfg: Config, release: str, arch: str, flavour: str) -> dict:
    ws = Workspace.of(cfg)
    r = cfg.release(release)
    f = cfg.flavours[flavour]
    src = read_src(ws, release)
    image = read_record(image_record(ws, release, arch, flavour), f"image:{release}:{arch}:{flavour}")
    parent = read_record(image_record(ws, release, arch, f.parent), f"image:{release}:{arch}:{f.parent}") \
        if f.parent else None
    sde = read_record(ws.src_inputs(release), "fetch")["source_date_epoch"]
    doc = image_sbom(release=release, version=image_version(cfg, release, src), arch=arch, flavour=flavour,
                     lock=require_lock(ws, release, arch), src=src, image=image, parent=parent, created=sde,
                     source_url=cfg.source(r), repository_url=public_repository(cfg, release, arch))
    dest = arch_dir(ws, release, arch) / sbom_name(archive_name(cfg, release, arch, flavour))
    write_if_changed(dest, sbom_bytes(doc))
    return {"sbom": str(dest)}


def signing_key(cfg: Config) -> SigningKey | None:
    """The configured signing key, or None when no key is configured at all."""
    if cfg.signing.key:
        path = Path(cfg.signing.key)
        return load_signing_key(path if path.is_absolute() else cfg.project / path)
    if os.environ.get(KEY_FILE_ENV) or os.environ.get(KEY_ENV):
        return load_signing_key()
    return None


def trusted_public_key(cfg: Config):
    if not cfg.signing.public_key:
        raise ReleaseError("no trusted public key: set [signing] public_key in config.toml")
    path = Path(cfg.signing.public_key)
    return load_public_key(path if path.is_absolute() else cfg.project / path)


_SUFFIXED = re.compile(r"^CHECKSUM\.SHA256-(.+)$")


def published_dirs(root: Path) -> list[tuple[Path, str]]:
    """(directory, CHECKSUM suffix) of every published directory under a download tree."""
    found = []
    for latest in sorted(root.glob("releases/OCI-IMAGES/*/*/Latest")):
        found.append((latest, ""))
    for day in sorted(root.glob("snapshots/OCI-IMAGES/*/*/[0-9]*")):
        for checksum in sorted(day.glob("CHECKSUM.SHA256-*")):
            found.append((day, _SUFFIXED.match(checksum.name).group(1)))
    return found


def verify_published_tree(cfg: Config, root: str | None, say: Callable[[str], None] = print) -> dict:
    """Signatures, checksums and archives of every published directory; each problem on its own line."""
    from .publish import publish_root
    tree = publish_root(cfg, root)
    key = trusted_public_key(cfg)
    dirs = published_dirs(tree)
    if not dirs:
        raise ReleaseError(f"{tree}: no published release or snapshot found")
    problems = [f"{d.relative_to(tree)}: {p}" for d, suffix in dirs for p in verify_tree(d, key, suffix)]
    for p in problems:
        say(p)
    if problems:
        raise ReleaseError(f"{tree}: {len(problems)} problem(s), the first: {problems[0]}")
    say(f"{tree}: {len(dirs)} published director{'y' if len(dirs) == 1 else 'ies'} verified")
    return {"verified": len(dirs)}

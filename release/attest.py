"""What is in it, who vouches for it: SBOM files, signing keys, verify-tree.

- build_sbom: per image (release x arch x flavour) the SPDX 2.3 document,
  written next to the archive as `<archive name>.spdx.json` (so the CHECKSUM
  files list it, and publish carries it into the download tree);
- signing_key: the release signing key when one is configured ([signing] key,
  or $RELEASE_SIGNING_KEY_FILE / $RELEASE_SIGNING_KEY), else None;
- verify_published_tree: every published directory of a download tree against
  the trusted public keys: detached CHECKSUM signatures (ECDSA .sig, OpenPGP
  .asc), then checksums; and every signature in the tree's signature store.
"""
from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from .errors import ReleaseError
from .fsutil import write_if_changed
from .names import image_version
from .plans import KeySettings, SbomPlan, TreePlan
from .records import ImageRecord, Lock, SrcHead
from .sbom import image_sbom, sbom_bytes
from .checksum import verify_checksums
from .openpgp import open_verifier, read_public_key
from .signing import KEY_ENV, KEY_FILE_ENV, SigningKey, load_public_key, load_signing_key, verify_tree


def build_sbom(plan: SbomPlan) -> dict[str, Any]:
    ws, r, a = plan.workspace, plan.release, plan.arch
    src = SrcHead.load(ws.src_json(r))
    image = ImageRecord.load(ws.image_json(r, a, plan.flavour))
    parent = ImageRecord.load(ws.image_json(r, a, plan.parent)).to_json() if plan.parent else None
    doc = image_sbom(release=r, version=image_version(plan.version, plan.kind, src), arch=a, flavour=plan.flavour,
                     lock=Lock.load(ws.lock(r, a)).document, src=asdict(src), image=image.to_json(),
                     parent=parent, created=src.source_date_epoch, source_url=plan.source,
                     repository_url=plan.repository)
    dest = ws.arch_dir(r, a) / plan.name
    write_if_changed(dest, sbom_bytes(doc))
    return {"sbom": str(dest)}


def signing_key(keys: KeySettings) -> SigningKey | None:
    """The configured signing key, or None when no key is configured at all."""
    if keys.key:
        return load_signing_key(Path(keys.key))
    if os.environ.get(KEY_FILE_ENV) or os.environ.get(KEY_ENV):
        return load_signing_key()
    return None


def trusted_public_key(keys: KeySettings) -> ec.EllipticCurvePublicKey:
    if not keys.public_key:
        raise ReleaseError("no trusted public key: set [signing] public_key in config.toml")
    return load_public_key(Path(keys.public_key))


def trusted_openpgp_key(keys: KeySettings) -> tuple[bytes, str] | None:
    """The trusted OpenPGP public key of [signing] openpgp_public_key (bytes, path), or None."""
    if not keys.openpgp_public_key:
        return None
    return read_public_key(keys.openpgp_public_key), keys.openpgp_public_key


_SUFFIXED = re.compile(r"^CHECKSUM\.SHA256-(.+)$")


def published_dirs(root: Path) -> list[tuple[Path, str]]:
    """(directory, CHECKSUM suffix) of every published directory under a download tree."""
    found = []
    for latest in sorted(root.glob("releases/OCI-IMAGES/*/*/Latest")):
        found.append((latest, ""))
    for day in sorted(root.glob("snapshots/OCI-IMAGES/*/*/[0-9]*")):
        for checksum in sorted(day.glob("CHECKSUM.SHA256-*")):
            suffixed = _SUFFIXED.match(checksum.name)
            if suffixed and not checksum.name.endswith((".sig", ".asc")):   # detached signatures, not suffixes
                found.append((day, suffixed.group(1)))
    return found


def tree_root(root: str) -> Path:
    """The download tree a plan names, or one line saying how to name one."""
    if not root:
        raise ReleaseError("no publish root: set [publish] root in config.toml or pass publish_root=DIR")
    return Path(root)


def verify_published_tree(plan: TreePlan, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Signatures, checksums and archives of every published directory, and the signature store.

    Each problem is said on its own line.  The ECDSA signatures are checked
    with [signing] public_key, the OpenPGP ones (CHECKSUM .asc files, and every
    signature in the tree's store) with [signing] openpgp_public_key; at least
    one of them must be configured.
    """
    from .sigpublish import STORE, store_dir, store_registries
    from .sigstore import verify_store
    from .treesign import openpgp_problems
    tree = tree_root(plan.root)
    ecdsa = trusted_public_key(plan.signing) if plan.signing.public_key else None
    openpgp = trusted_openpgp_key(plan.signing)
    if ecdsa is None and openpgp is None:
        raise ReleaseError("no trusted key: set [signing] public_key or openpgp_public_key in config.toml")
    dirs = published_dirs(tree)
    if not dirs:
        raise ReleaseError(f"{tree}: no published release or snapshot found")
    problems = []
    with contextlib.ExitStack() as stack:
        verifier = stack.enter_context(open_verifier(*openpgp)) if openpgp else None
        for d, suffix in dirs:
            found = verify_tree(d, ecdsa, suffix) if ecdsa is not None else verify_checksums(d, suffix)
            if verifier is not None:
                found += openpgp_problems(d, verifier, suffix)
            problems += [f"{d.relative_to(tree)}: {p}" for p in found]
        store = store_dir(tree)
        if verifier is not None:
            problems += [f"{STORE}/{p}" for p in verify_store(store, store_registries(store), verifier)]
    for p in problems:
        say(p)
    if problems:
        raise ReleaseError(f"{tree}: {len(problems)} problem(s), the first: {problems[0]}")
    say(f"{tree}: {len(dirs)} published director{'y' if len(dirs) == 1 else 'ies'} verified")
    return {"verified": len(dirs)}

"""A pkgbase repository as the pipeline sees it: a verified catalogue on disk.

fetch_catalogue() keeps <work>/repos/<release>/<arch>/ in step with the remote:

- an unchanged repository costs ONE conditional request (the catalogue archive
  found last time, answered 304);
- otherwise meta.conf is read (pkg's defaults when a repository has none), the
  catalogue candidates are tried in pkg's order (data, then packagesite; .pkg,
  then the packing format), the archive's signature is checked and its entries
  parsed;
- the result is catalogue.json, rewritten only when its content changes, so the
  lock task (which depends on it) does not rerun for a new ETag on equal bytes.

A catalogue or meta.conf that fails verification is deleted together with its
validators, so the next run fetches and checks it again instead of trusting a
304; both are read before anything vouches for them, so each has a size cap.
The state records the digest of the trust it was verified with (signature type,
trusted and revoked fingerprints, public key): when the trust changes — a key
moved to revoked/ in src — an unchanged catalogue is verified again before it
is used.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .catalogue import RepoMeta, catalogue_candidates, open_catalogue, parse_meta
from .errors import ReleaseError, RepositoryError
from .fsutil import pretty_json, read_json, write_chunks_if_changed, write_if_changed
from .jsonstream import RowSpool, StreamError, read_document
from .fetcher import Fetcher, NotFound, sidecar_path

log = logging.getLogger(__name__)

STATE = "state.json"
CATALOGUE_JSON = "catalogue.json"
MAX_META = 1 << 20              # pkg's meta.conf is a few hundred bytes
MAX_CATALOGUE = 1 << 30         # a catalogue archive of every port is tens of megabytes


@dataclass(frozen=True)
class Trust:
    """How a release's catalogues are verified."""
    signature_type: str
    fingerprints: Path | None = None
    pubkey: bytes | None = None

    def identity(self) -> str:
        """Digest of everything that decides whether a catalogue verifies."""
        h = hashlib.sha256(self.signature_type.encode() + b"\0")
        if self.fingerprints is not None:
            for sub in ("trusted", "revoked"):
                directory = self.fingerprints / sub
                for f in sorted(directory.iterdir()) if directory.is_dir() else []:
                    h.update(f"{sub}/{f.name}\0".encode() + f.read_bytes() + b"\0")
        h.update(self.pubkey or b"")
        return h.hexdigest()


def fetch_catalogue(fetcher: Fetcher, url: str, dest: Path, trust: Trust) -> bool:
    """Refresh the verified catalogue of the repository at *url* into *dest*.

    Returns True when catalogue.json changed.
    """
    dest.mkdir(parents=True, exist_ok=True)
    state = _read_state(dest / STATE, url)
    catalogue_json = dest / CATALOGUE_JSON
    trusted = trust.identity()
    if state and catalogue_json.is_file():
        archive = state["archive"]
        try:
            fetched = fetcher.fetch_conditional(f"{url}/{archive}", dest / archive, MAX_CATALOGUE)
            if not fetched and state.get("trust") == trusted:
                return False                       # the one small request of an unchanged repository
            changed = _verify_and_store(url, dest, archive, _load_meta(dest, state), trust)
            write_if_changed(dest / STATE, pretty_json({**state, "trust": trusted}))
            return changed
        except NotFound:
            log.info("%s/%s is gone; reading meta.conf again", url, archive)
    meta, meta_name = _fetch_meta(fetcher, url, dest)
    for archive in catalogue_candidates(meta):
        try:
            fetcher.fetch_conditional(f"{url}/{archive}", dest / archive, MAX_CATALOGUE)
        except NotFound:
            continue
        changed = _verify_and_store(url, dest, archive, meta, trust)
        write_if_changed(dest / STATE, pretty_json({"url": url, "archive": archive, "meta": meta_name,
                                                    "trust": trusted}))
        return changed
    raise RepositoryError(f"{url}: no catalogue found (tried {', '.join(catalogue_candidates(meta))})")


def _read_state(path: Path, url: str) -> dict[str, Any] | None:
    try:
        state = read_json(path)
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or state.get("url") != url or not state.get("archive"):
        return None
    return state


def _fetch_meta(fetcher: Fetcher, url: str, dest: Path) -> tuple[RepoMeta, str | None]:
    """meta.conf, else the older name `meta`, else pkg's built-in defaults."""
    for name in ("meta.conf", "meta"):
        try:
            fetcher.fetch_conditional(f"{url}/{name}", dest / name, MAX_META)
        except NotFound:
            continue
        with _forgotten_on_error(dest / name):
            return parse_meta((dest / name).read_bytes(), f"{url}/{name}"), name
    return RepoMeta(), None


@contextlib.contextmanager
def _forgotten_on_error(path: Path) -> Iterator[None]:
    """A fetched file that turns out bad goes, with its validators: the next run fetches it again."""
    try:
        yield
    except ReleaseError:
        for stale in (path, sidecar_path(path)):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        raise


def _load_meta(dest: Path, state: dict[str, Any]) -> RepoMeta:
    name = state.get("meta")
    if not name:
        return RepoMeta()
    return parse_meta((dest / name).read_bytes(), name)


def _verify_and_store(url: str, dest: Path, archive: str, meta: RepoMeta, trust: Trust) -> bool:
    source = f"{url}/{archive}"
    with _forgotten_on_error(dest / archive):
        verified = open_catalogue(dest / archive, source, signature_type=trust.signature_type,
                                  fingerprints=trust.fingerprints, pubkey=trust.pubkey, meta=meta)
    with verified:
        header = {"repository": url, "archive": archive, "payload": verified.payload_kind,
                  "payload_sha256": verified.payload_sha256, "fingerprint": verified.fingerprint}
        return write_chunks_if_changed(dest / CATALOGUE_JSON, catalogue_json(header, verified.rows))


def catalogue_json(header: dict[str, Any], rows: RowSpool) -> Iterator[bytes]:
    """catalogue.json, a package at a time: the bytes pretty_json({**header, "packages": rows}) spells."""
    def dump(value: object, indent: str) -> str:
        return json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False).replace("\n", "\n" + indent)

    keys = sorted([*header, "packages"])
    yield b"{\n"
    for n, key in enumerate(keys):
        yield f'  {json.dumps(key)}: '.encode()
        if key != "packages":
            yield dump(header[key], "  ").encode()
        elif not len(rows):
            yield b"{}"
        else:
            yield b"{\n"
            for i, name in enumerate(rows):
                row = json.loads(rows.raw(name))
                yield f'    {json.dumps(name, ensure_ascii=False)}: {dump(row, "    ")}'.encode()
                yield b",\n" if i + 1 < len(rows) else b"\n"
            yield b"  }"
        yield b",\n" if n + 1 < len(keys) else b"\n"
    yield b"}\n"


def read_catalogue(dest: Path) -> dict[str, Any]:
    """catalogue.json, its packages spooled to disk (bounded memory, however many there are)."""
    path = dest / CATALOGUE_JSON
    rows = RowSpool(str(dest))
    try:
        with open(path, "rb") as f:
            document, kind = read_document(f, "packages", rows.add)
    except FileNotFoundError:
        rows.close()
        raise RepositoryError(f"{path}: no catalogue fetched yet") from None
    except (StreamError, UnicodeDecodeError) as e:
        rows.close()
        raise RepositoryError(f"{path}: damaged ({e}); fetch it again") from None
    if kind != "object":
        rows.close()
        raise RepositoryError(f"{path}: damaged (no \"packages\" object); fetch it again")
    document["packages"] = rows
    return document

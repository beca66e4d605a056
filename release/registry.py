"""Pushing built images to an OCI registry (the distribution spec's push API).

A release is pushed blob by blob, then manifest by manifest, then tag by tag,
so that a registry never holds a manifest whose blobs it lacks and a tag is
the last thing to move:

1. every blob the index reaches (configs and layers): ``HEAD`` first, so a
   second push of the same release uploads nothing; else a cross-repository
   mount from a sibling flavour's repository (the dynamic image's first layer
   *is* the static image's layer); else an upload: one ``PUT`` for small blobs,
   ``PATCH`` chunks for large ones;
2. every per-arch manifest by digest, then the index by digest, with the
   exact bytes the build wrote (so the digests stay the build's);
3. each tag: the index bytes again under the tag.

Registries and the networks in front of them fail: 5xx, 429, resets,
timeouts are retried with the transport's policy (release.http), and a chunked
upload that breaks is resumed from what the registry reports it holds (``GET``
of the upload URL answers ``Range: 0-<last byte>``), not restarted.  Blob
bytes are streamed from the file, one slice at a time.

Registry answers are not trusted: the credentials (and the tokens they buy)
are bound to the registry's origin, so an upload Location or a redirect to
another origin is followed without them (and never from https to http), a 401
from another origin is not answered with them, and error bodies are read and
quoted only up to a small cap.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import requests

from .errors import FetchError, InputError
from .http import (Credential, Origin, Refused, RetryPolicy, Transient, Transport, TransportError, check_next,
                   is_loopback, read_capped, status_text, status_transient)
from .distribution import DIGEST, TAG, Reply, bytes_held, check_name, error_detail, scope
from .oci import INDEX_TYPES, MANIFEST_TYPES, blob_path, reachable_blobs
from .regauth import Authenticator, Credentials

log = logging.getLogger("release.registry")

MiB = 1 << 20
MAX_DOCUMENT = 4 * MiB          # the largest manifest or index a registry must accept (distribution spec)
OCTET_STREAM = "application/octet-stream"


class RegistryError(FetchError):
    """A registry refused or failed a push step (the message names registry, repository and step)."""


class RegistryRefused(RegistryError):
    """A registry's answer the client will not follow (a downgrade, a loop, a foreign 401): bad input."""

    exit_status = 2


@dataclass
class PushReport:
    """What a push cost; a second push of the same release shows bytes_uploaded == 0.

    bytes_uploaded counts blob bytes the registry accepted (manifests are not blobs).
    """

    repository: str = ""
    digest: str = ""
    tags: list[str] = field(default_factory=list)
    requests: int = 0
    retries: int = 0
    bytes_uploaded: int = 0
    blobs_present: int = 0
    blobs_mounted: int = 0
    blobs_uploaded: int = 0
    uploads_resumed: int = 0
    uploads_restarted: int = 0
    manifests_pushed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {f.name: list(v) if isinstance(v := getattr(self, f.name), list) else v
                    for f in fields(self) if not f.name.startswith("_")}


class _FileSlice:
    """Bytes [start, start+length) of a file, read on demand (requests streams objects with read/len)."""

    def __init__(self, path: Path, start: int, length: int) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 (closed by close())
        self._file.seek(start)
        self._left = length
        self.length = length

    def __len__(self) -> int:
        return self.length

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        size = self._left if size is None or size < 0 else min(size, self._left)
        data = self._file.read(size)
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._file.close()


class Registry:
    """A client of one registry (``https://host[:port]``), shared by the threads of a push.

    Blobs up to *monolithic_limit* go in one ``PUT`` (fewest round trips);
    larger ones in *chunk_size* ``PATCH`` requests, so that a broken
    connection costs at most one chunk.  *max_workers* blobs are pushed at
    once.  ``stats`` adds up every push made with this client; each push
    also returns its own PushReport.
    """

    def __init__(self, url: str, *, tls_verify: bool = True, credentials: Credentials | None = None,
                 retries: int = 4, backoff: float = 0.5, timeout: float = 60, chunk_size: int = 8 * MiB,
                 monolithic_limit: int = 16 * MiB, user_agent: str = "freebsd-oci-release",
                 max_workers: int = 4) -> None:
        parts = urllib.parse.urlsplit(url.rstrip("/"))
        if parts.username is not None or parts.password is not None:   # do not echo the URL: it holds them
            raise InputError(f"registry {parts.hostname}: credentials belong in an auth file, not the URL")
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path:
            raise InputError(f"{url}: a registry URL is http(s)://host[:port] with no path")
        if parts.scheme == "http" and credentials is not None and not is_loopback(parts.hostname):
            raise InputError(f"{url}: refusing to send credentials over plain http (use https)")
        if retries < 0 or chunk_size < 1 or max_workers < 1:
            raise InputError(f"{url}: retries >= 0, chunk_size >= 1 and max_workers >= 1 "
                             f"(got {retries}, {chunk_size}, {max_workers})")
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.name = parts.netloc
        self.origin = Origin.of(self.base)
        self.tls_verify = tls_verify
        self.retry = RetryPolicy(retries, backoff)
        self.chunk_size = chunk_size
        self.monolithic_limit = monolithic_limit
        self.max_workers = max_workers
        if parts.scheme == "https" and not tls_verify:
            # explicitly configured: say it once here rather than urllib3 once per request
            log.warning("%s: TLS certificate verification is disabled", self.name)
        self.transport = Transport(user_agent=user_agent, timeout=timeout, verify=tls_verify, retry=self.retry)
        self.auth = Authenticator(self.name, credentials, transport=self.transport, origin=self.origin)
        self.stats = PushReport()            # every request of this client, all pushes together
        self._known: set[tuple[str, str]] = set()   # (repository, digest) seen present

    def __repr__(self) -> str:
        return f"Registry({self.base!r}, tls_verify={self.tls_verify}, auth={self.auth!r})"

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # plumbing ---------------------------------------------------------------
    def _count(self, report: PushReport, **counts: int) -> None:
        report.add(**counts)
        if report is not self.stats:
            self.stats.add(**counts)

    def _url(self, current: str, location: str) -> str:
        """Where an upload continues: the registry's Location, checked like a redirect (never to http)."""
        try:
            return check_next(current, location, what="sent the upload")
        except TransportError as e:
            raise RegistryRefused(f"{self.name}: {e.cause}") from None

    def _request(self, method: str, url: str, *, repo: str, what: str, report: PushReport,
                 scopes: tuple[str, ...], headers: dict[str, str] | None = None,
                 body: bytes | Callable[[], _FileSlice] | None = None, retry: bool = True, limit: int = 0) -> Reply:
        """One request with authentication, and with retries when *retry* (else Transient).

        *body* is bytes or a callable returning a fresh readable body per attempt;
        up to *limit* bytes of a 2xx body are read (more is an error), and a
        small prefix of any other.  Non-2xx answers other than 401, 429 and 5xx
        are returned for the caller to judge.
        """
        rounds = failures = 0
        while True:
            authorization = self.auth.authorization(scopes)
            credential = Credential(self.origin, authorization) if authorization else None
            data = body() if callable(body) else body
            try:
                with self.transport.open(method, url, headers=headers, data=data, credential=credential) as resp:
                    reply = self._read(resp, url, limit, repo, what)
                problem = status_transient(resp)
            except TransportError as e:               # TLS, a downgrade, a redirect loop: retrying cannot help
                error = RegistryRefused if isinstance(e, Refused) else RegistryError
                raise error(f"{self.name}/{repo}: {what}: {e.cause}") from None
            except Transient as e:
                reply, problem = None, e
            finally:
                if isinstance(data, _FileSlice):
                    data.close()
            if reply is not None:
                self._count(report, requests=1)
                if reply.status_code == 401:
                    self._unauthorized(reply, url, scopes, credential, rounds, repo, what)
                    rounds += 1
                    continue
                if problem is None:
                    return reply
                problem = Transient(f"{problem.cause}{error_detail(reply)}", problem.retry_after)
            assert problem is not None                # no reply: the transport failed; a reply: not a success
            log.debug("%s %s failed: %s", method, url, problem.cause)
            if not retry:
                raise problem
            failures += 1
            self._backoff(report, failures, repo, what, problem.cause, problem.retry_after)

    def _read(self, resp: requests.Response, url: str, limit: int, repo: str, what: str) -> Reply:
        if 200 <= resp.status_code < 300 and limit:
            content = read_capped(resp, limit + 1)
            if len(content) > limit:
                raise RegistryError(f"{self.name}/{repo}: {what}: answer larger than {limit} bytes")
        else:
            content = b"" if resp.request.method == "HEAD" else read_capped(resp)
        return Reply(resp.status_code, resp.reason, resp.headers, content)

    def _unauthorized(self, reply: Reply, url: str, scopes: tuple[str, ...], credential: Credential | None,
                      rounds: int, repo: str, what: str) -> None:
        """Learn from a 401 of the registry; one from another origin never gets the credentials."""
        if Origin.of(url) != self.origin:
            raise RegistryRefused(f"{self.name}/{repo}: {what}: HTTP 401 from {Origin.of(url)}, which is not the "
                                f"registry; its credentials go to {self.origin} only")
        self.auth.unauthorized(reply.headers.get("WWW-Authenticate"), scopes,
                               credential.header if credential else None, rounds)

    def _refused(self, resp: Reply, repo: str, what: str) -> RegistryError:
        return RegistryError(f"{self.name}/{repo}: {what}: {status_text(resp.status_code, resp.reason)}"
                             f"{error_detail(resp)}")

    def _backoff(self, report: PushReport, failures: int, repo: str, what: str, problem: str,
                 retry_after: float = 0.0) -> None:
        """Count one failed attempt of a multi-request step; give up past the retry budget."""
        if self.retry.exhausted(failures):
            raise RegistryError(f"{self.name}/{repo}: {what}: {problem} (gave up after {failures} attempts)")
        self._count(report, retries=1)
        time.sleep(self.retry.delay(failures, retry_after))

    # blobs ------------------------------------------------------------------
    def blob_exists(self, repo: str, digest: str, *, report: PushReport | None = None,
                    actions: str = "pull") -> bool:
        """HEAD /v2/<repo>/blobs/<digest>: does the registry hold it in *repo*?

        A push asks with *actions* "pull,push", so that one token serves the
        HEAD and the upload that may follow.
        """
        report = report or self.stats
        check_name(repo)
        resp = self._request("HEAD", f"{self.base}/v2/{repo}/blobs/{digest}", repo=repo, report=report,
                             what=f"HEAD blob {digest}", scopes=(scope(repo, actions),))
        if resp.status_code == 200:
            self._known.add((repo, digest))
            return True
        if resp.status_code == 404:
            return False
        raise self._refused(resp, repo, f"HEAD blob {digest}")

    def push_blob(self, repo: str, digest: str, size: int, path: Path, *, mount_from: Sequence[str] = (),
                  report: PushReport | None = None) -> str:
        """Make the registry hold blob *digest* in *repo*: "present", "mounted" or "uploaded"."""
        report = report or self.stats
        check_name(repo)
        if not DIGEST.fullmatch(digest):
            raise InputError(f"{digest!r}: not a sha256 digest")
        if self.blob_exists(repo, digest, report=report, actions="pull,push"):
            self._count(report, blobs_present=1)
            return "present"
        location = None
        for source in mount_from:
            if source == repo or not ((source, digest) in self._known or
                                      self.blob_exists(source, digest, report=report)):
                continue
            location = self._mount(repo, digest, source, report)
            if location is None:
                self._count(report, blobs_mounted=1)
                self._known.add((repo, digest))
                return "mounted"
            break
        self._upload(repo, digest, size, Path(path), location, report)
        self._count(report, blobs_uploaded=1)
        self._known.add((repo, digest))
        return "uploaded"

    def _mount(self, repo: str, digest: str, source: str, report: PushReport) -> str | None:
        """Cross-repository mount; None when mounted, else the upload URL the registry opened instead."""
        url = f"{self.base}/v2/{repo}/blobs/uploads/?mount={digest}&from={urllib.parse.quote(source, safe='/')}"
        what = f"mount blob {digest} from {source}"
        resp = self._request("POST", url, repo=repo, what=what, report=report,
                             scopes=(scope(repo, "pull,push"), scope(source, "pull")))
        if resp.status_code == 201:
            self._check_digest(resp, digest, repo, what)
            return None
        if resp.status_code == 202 and resp.headers.get("Location"):
            return self._url(url, resp.headers["Location"])
        raise self._refused(resp, repo, what)

    def _start_upload(self, repo: str, report: PushReport) -> str:
        url = f"{self.base}/v2/{repo}/blobs/uploads/"
        resp = self._request("POST", url, repo=repo, report=report, what="start blob upload",
                             scopes=(scope(repo, "pull,push"),))
        if resp.status_code != 202 or not resp.headers.get("Location"):
            raise self._refused(resp, repo, "start blob upload")
        return self._url(url, resp.headers["Location"])

    def _upload(self, repo: str, digest: str, size: int, path: Path, location: str | None,
                report: PushReport) -> None:
        """Upload the file; retried as a whole when small, resumed chunk by chunk when large."""
        if path.stat().st_size != size:
            raise InputError(f"{path}: {path.stat().st_size} bytes, descriptor of {digest} says {size}")
        failures, offset = 0, 0
        what = f"upload blob {digest}"
        while True:
            try:
                if location is None:
                    location, offset = self._start_upload(repo, report), 0
                if size <= self.monolithic_limit:
                    self._finish(repo, digest, location, path, 0, size, report)
                    return
                while offset < size:
                    location, offset = self._patch(repo, location, path, offset, size, report)
                    failures = 0                       # progress: the budget is per stall
                self._finish(repo, digest, location, path, size, 0, report)
                return
            except Transient as e:
                failures += 1
                self._backoff(report, failures, repo, what, str(e))
                if self.blob_exists(repo, digest, report=report, actions="pull,push"):   # answer lost, not blob
                    return
                if size <= self.monolithic_limit or location is None:
                    location = None                    # cheap to redo; registries drop failed sessions
                    continue
                location, offset = self._upload_status(repo, location, report)
                self._count(report, **({"uploads_resumed": 1} if location else {"uploads_restarted": 1}))

    def _patch(self, repo: str, location: str, path: Path, offset: int, size: int,
               report: PushReport) -> tuple[str, int]:
        """Send one chunk; the registry's new upload URL and the offset it now holds."""
        length = min(self.chunk_size, size - offset)
        headers = {"Content-Type": OCTET_STREAM, "Content-Range": f"{offset}-{offset + length - 1}",
                   "Content-Length": str(length)}
        resp = self._request("PATCH", location, repo=repo, report=report, headers=headers, retry=False,
                             what=f"upload chunk at {offset}", scopes=(scope(repo, "pull,push"),),
                             body=lambda: _FileSlice(path, offset, length))
        if resp.status_code == 416:
            raise Transient(f"registry refused the chunk at {offset} (HTTP 416)")
        if resp.status_code != 202:
            raise self._refused(resp, repo, f"upload chunk at {offset}")
        self._count(report, bytes_uploaded=length)
        held = bytes_held(resp)
        return self._url(location, resp.headers.get("Location") or location), \
            offset + length if held is None else held

    def _upload_status(self, repo: str, location: str, report: PushReport) -> tuple[str | None, int]:
        """GET the upload URL: (new URL, bytes held), or (None, 0) when the session is gone."""
        resp = self._request("GET", location, repo=repo, report=report, what="upload status",
                             scopes=(scope(repo, "pull,push"),))
        if resp.status_code in (404, 400):   # BLOB_UPLOAD_UNKNOWN / _INVALID: start again
            log.debug("upload %s lost (%s); restarting", location, error_detail(resp))
            return None, 0
        if resp.status_code not in (200, 204):
            raise self._refused(resp, repo, "upload status")
        held = bytes_held(resp) or 0
        log.debug("upload %s holds %d bytes; resuming there", location, held)
        return self._url(location, resp.headers.get("Location") or location), held

    def _finish(self, repo: str, digest: str, location: str, path: Path, offset: int, length: int,
                report: PushReport) -> None:
        """PUT <location>?digest=: the last *length* bytes from *offset* (maybe none), then check."""
        parts = urllib.parse.urlsplit(location)
        query = urllib.parse.urlencode([*urllib.parse.parse_qsl(parts.query, keep_blank_values=True),
                                        ("digest", digest)])
        url = urllib.parse.urlunsplit(parts._replace(query=query))
        headers = {"Content-Type": OCTET_STREAM, "Content-Length": str(length)}
        what = f"upload blob {digest}"
        resp = self._request("PUT", url, repo=repo, report=report, headers=headers, retry=False, what=what,
                             scopes=(scope(repo, "pull,push"),),
                             body=(lambda: _FileSlice(path, offset, length)) if length else None)
        if resp.status_code != 201:
            raise self._refused(resp, repo, what)
        self._check_digest(resp, digest, repo, what)
        self._count(report, bytes_uploaded=length)

    def _check_digest(self, resp: Reply, digest: str, repo: str, what: str) -> None:
        reported = resp.headers.get("Docker-Content-Digest")
        if reported and reported != digest:
            raise RegistryError(f"{self.name}/{repo}: {what}: registry reports digest {reported}")

    # manifests --------------------------------------------------------------
    def push_manifest(self, repo: str, data: bytes, media_type: str, *, reference: str,
                      report: PushReport | None = None) -> str:
        """PUT the manifest or index *data* (byte-exact) under *reference* (a tag or its digest)."""
        report = report or self.stats
        check_name(repo)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if DIGEST.fullmatch(reference):
            if reference != digest:
                raise InputError(f"{repo}@{reference}: the manifest's bytes have digest {digest}")
        elif not TAG.fullmatch(reference):
            raise InputError(f"{reference!r}: not a valid tag (letters, digits, _ . -, at most 128)")
        what = f"PUT {'index' if media_type in INDEX_TYPES else 'manifest'} {reference}"
        resp = self._request("PUT", f"{self.base}/v2/{repo}/manifests/{reference}", repo=repo, what=what,
                             report=report, headers={"Content-Type": media_type}, body=data,
                             scopes=(scope(repo, "pull,push"),))
        if resp.status_code not in (200, 201):
            raise self._refused(resp, repo, what)
        self._check_digest(resp, digest, repo, what)
        self._count(report, manifests_pushed=1)
        return digest

    def get_manifest(self, repo: str, reference: str, *, accept: Sequence[str]) -> bytes | None:
        """The manifest or index under *reference* (byte-exact), None when there is none."""
        what = f"GET manifest {reference}"
        resp = self._request("GET", f"{self.base}/v2/{repo}/manifests/{reference}", repo=repo, what=what,
                             report=self.stats, headers={"Accept": ", ".join(accept)},
                             scopes=(scope(repo, "pull,push"),), limit=MAX_DOCUMENT)
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self._refused(resp, repo, what)
        return resp.content

    def has_referrers_api(self, repo: str, digest: str) -> bool:
        """Whether the registry serves the OCI 1.1 referrers API (else the sha256-<hex> tag is used)."""
        resp = self._request("GET", f"{self.base}/v2/{repo}/referrers/{digest}", repo=repo,
                             what=f"GET referrers {digest}", report=self.stats,
                             headers={"Accept": "application/vnd.oci.image.index.v1+json"},
                             scopes=(scope(repo, "pull,push"),))
        return resp.status_code == 200 and \
            resp.headers.get("Content-Type", "").startswith("application/vnd.oci.image.index.v1+json")

    def push_index_tree(self, repo: str, blobs_dir: Path, index_desc: dict[str, Any], *, tags: Sequence[str],
                        mount_from: Sequence[str] = ()) -> PushReport:
        """Push a multi-arch index, everything it reaches, and *tags* pointing at it."""
        return self._push_tree(repo, Path(blobs_dir), index_desc, tags, mount_from, INDEX_TYPES)

    def push_manifest_tree(self, repo: str, blobs_dir: Path, manifest_desc: dict[str, Any], *, tags: Sequence[str],
                           mount_from: Sequence[str] = ()) -> PushReport:
        """Push a single-arch image manifest, its config and layers, and *tags* pointing at it."""
        return self._push_tree(repo, Path(blobs_dir), manifest_desc, tags, mount_from, MANIFEST_TYPES)

    def _push_tree(self, repo: str, blobs_dir: Path, top: dict[str, Any], tags: Sequence[str],
                   mount_from: Sequence[str], kinds: set[str]) -> PushReport:
        if top.get("mediaType") not in kinds:
            raise InputError(f"{top.get('digest')}: {top.get('mediaType')} is not one of {', '.join(sorted(kinds))}")
        for name in (repo, *mount_from):
            check_name(name)
        for tag in tags:
            if not TAG.fullmatch(tag):
                raise InputError(f"{repo}:{tag}: not a valid tag (letters, digits, _ . -, at most 128)")
        documents, blobs = walk_tree(blobs_dir, top)
        report = PushReport(repository=repo, digest=top["digest"], tags=list(tags))
        order = sorted(blobs.items(), key=lambda item: (-item[1], item[0]))   # big ones start first
        with ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="push") as pool:
            futures = [pool.submit(self.push_blob, repo, digest, size, blob_path(blobs_dir, digest),
                                   mount_from=mount_from, report=report) for digest, size in order]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        for desc, data in documents:                  # children first, the top one last
            self.push_manifest(repo, data, desc["mediaType"], reference=desc["digest"], report=report)
        for tag in tags:
            self.push_manifest(repo, documents[-1][1], top["mediaType"], reference=tag, report=report)
        log.info("pushed %s/%s@%s (%s): %d bytes uploaded, %d blobs present, %d mounted, %d uploaded",
                 self.name, repo, top["digest"], ", ".join(tags) or "no tags", report.bytes_uploaded,
                 report.blobs_present, report.blobs_mounted, report.blobs_uploaded)
        return report


# --------------------------------------------------------------------------- trees and headers

def walk_tree(blobs_dir: Path, top: dict[str, Any]) -> tuple[list[tuple[dict[str, Any], bytes]], dict[str, int]]:
    """(documents children-first as (descriptor, bytes), {blob digest: size}) under *top*.

    release.oci.reachable_blobs checks first that every blob is there with its
    size and every document matches its digest; documents are then read whole
    (kilobytes) to be pushed byte for byte, blobs are streamed later.
    """
    blobs = dict(reachable_blobs(blobs_dir, {"manifests": [top]}))
    documents: list[tuple[dict[str, Any], bytes]] = []

    def visit(desc: dict[str, Any]) -> None:
        if desc["digest"] not in blobs:          # a document listed twice is pushed once
            return
        del blobs[desc["digest"]]
        data = blob_path(blobs_dir, desc["digest"]).read_bytes()
        if desc["mediaType"] in INDEX_TYPES:
            for child in json.loads(data).get("manifests", []):
                if child.get("mediaType") in INDEX_TYPES | MANIFEST_TYPES:
                    visit(child)
        documents.append((desc, data))

    visit(top)
    return documents, blobs

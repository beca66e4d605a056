"""Fetching repository files and packages over HTTP(S) or from file:// URLs.

pkg.freebsd.org and its mirrors are reached over networks that drop
connections, answer 503 while syncing, and serve packages of hundreds of
megabytes.  The Fetcher therefore (over release.http's transport, which
names failures, follows redirects and holds the retry policy):

- retries 5xx and 429 answers, timeouts and broken connections with
  exponential backoff, a bounded number of times, and fails with one line
  naming the URL;
- reads small documents (meta.conf, anything read before a signature is
  checked) only up to a size cap, and removes them again after an error;
- fetches catalogues conditionally (ETag / Last-Modified kept in a sidecar),
  so an unchanged nightly run costs a handful of 304s, which ``stats`` counts;
- downloads packages into ``.partial-<name>`` next to their destination,
  resumes with Range requests, verifies size and sum, and only then renames
  into place: nothing unverified ever sits under a real name.

file:// URLs (a local repository, a test fixture) follow the same rules, with
the source's (mtime_ns, size) as the validator.
"""
from __future__ import annotations

import contextlib
import os
import re
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import requests

from .errors import DiskError, FetchError, InputError, IntegrityError, RepositoryError
from .fsutil import TMP_PREFIX, atomic_output, disk_errors, pretty_json, read_json
from .http import (RetryPolicy, Transient, Transport, status_text, status_transient, transient_errors,
                   transport_cause)
from .progress import NullProgress, Progress
from .sums import Summer, sum_kind

T = TypeVar("T")
CHUNK = 1 << 16
MAX_DOCUMENT = 16 << 20         # meta.conf, fingerprints, a catalogue: anything larger is not one
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_UNSATISFIED_RANGE = re.compile(r"^bytes \*/(\d+)$")


@dataclass
class FetchStats:
    """What a run cost: the pipeline reports it so an unchanged rebuild shows ~0 bytes."""

    requests: int = 0
    bytes: int = 0
    not_modified: int = 0
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, requests: int = 0, bytes: int = 0, not_modified: int = 0, retries: int = 0) -> None:
        with self._lock:
            self.requests += requests
            self.bytes += bytes
            self.not_modified += not_modified
            self.retries += retries


class NotFound(FetchError):
    """The server (or the file system) has no such file: callers may try another name."""


@dataclass(frozen=True)
class DownloadJob:
    """One package to fetch: where from, where to, and what the catalogue promised."""

    url: str
    dest: Path
    name: str
    expected_sum: str
    expected_size: int | None = None


def partial_path(dest: Path) -> Path:
    """Where a download of *dest* accumulates until it is verified (kept for resuming)."""
    return dest.parent / (TMP_PREFIX + dest.name)


def sidecar_path(dest: Path) -> Path:
    """Where fetch_conditional keeps the validators of *dest*."""
    return dest.with_name(dest.name + ".http.json")


def _local_path(url: str) -> Path | None:
    """The filesystem path of a file:// URL, None for http(s), FetchError otherwise."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("http", "https"):
        return None
    if parts.scheme == "file" and parts.netloc in ("", "localhost"):
        path = urllib.request.url2pathname(parts.path)      # what is opened: percent-decoded
        if ".." in path.split("/"):
            raise InputError(f"{url}: the file path it opens, {path}, climbs out with '..'")
        return Path(path)
    raise FetchError(f"{url}: unsupported URL (use http, https or file)")


class Fetcher:
    """HTTP(S) and file:// client shared by every download of a run (thread-safe)."""

    def __init__(self, *, retries: int = 4, backoff: float = 0.5, timeout: float = 30,
                 progress: Progress | None = None, max_workers: int = 4, user_agent: str,
                 max_document: int = MAX_DOCUMENT) -> None:
        if retries < 0 or max_workers < 1:
            raise InputError(f"Fetcher: retries must be >= 0 and max_workers >= 1 "
                             f"(got {retries}, {max_workers})")
        self.transport = Transport(user_agent=user_agent, timeout=timeout, retry=RetryPolicy(retries, backoff))
        self.retries = retries
        self.progress = progress
        self.max_workers = max_workers
        self.max_document = max_document
        self.stats = FetchStats()

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # plumbing ---------------------------------------------------------------
    @contextlib.contextmanager
    def _get(self, url: str, headers: dict[str, str] | None = None) -> Iterator[requests.Response]:
        """A streamed GET through the transport (its pool keeps connections alive between packages)."""
        with self.transport.open("GET", url, headers=headers) as resp:
            self.stats.add(requests=1)
            yield resp

    @staticmethod
    def _check_status(resp: requests.Response, url: str, name: str | None = None) -> None:
        """5xx and 429: retry; other non-2xx: a one-line FetchError naming the package (if any) and URL."""
        transient = status_transient(resp)
        if transient is not None:
            raise transient
        status = resp.status_code
        if not 200 <= status < 300:
            detail = "not found (HTTP 404)" if status == 404 else status_text(status, resp.reason)
            error = NotFound if status == 404 else FetchError
            raise error(f"{name}: {detail} ({url})" if name else f"{url}: {detail}")

    def _body(self, resp: requests.Response) -> Iterator[bytes]:
        """The body as it arrives; read1 hands over every byte received before a break."""
        with transient_errors():
            while chunk := resp.raw.read1(CHUNK, decode_content=False):
                self.stats.add(bytes=len(chunk))
                yield chunk

    @staticmethod
    def _capped(chunks: Iterator[bytes], url: str, limit: int) -> Iterator[bytes]:
        """A document's body, refused past *limit* bytes (it is read before anything vouches for it)."""
        size = 0
        for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise RepositoryError(f"{url}: larger than {limit} bytes, more than such a file may be "
                                      "(it is read before its signature is checked)")
            yield chunk

    def _retrying(self, attempt: Callable[[], T], give_up: Callable[[str, int], FetchError]) -> T:
        """The transport's retry policy around *attempt*, each retry counted in stats."""
        return self.transport.retry.run(attempt, give_up, on_retry=lambda: self.stats.add(retries=1))

    # small documents --------------------------------------------------------
    def get(self, url: str, limit: int | None = None) -> bytes:
        """The whole body of a small document (meta.conf, a fingerprint file), at most *limit* bytes."""
        limit = self.max_document if limit is None else limit
        local = _local_path(url)
        if local is not None:
            with _open_local(local, url) as f:
                data = b"".join(self._capped(iter(lambda: f.read(CHUNK), b""), url, limit))
            self.stats.add(requests=1, bytes=len(data))
            return data

        def attempt() -> bytes:
            with self._get(url) as resp:
                self._check_status(resp, url)
                return b"".join(self._capped(self._body(resp), url, limit))

        return self._retrying(attempt, lambda why, n: FetchError(f"{url}: {why} (gave up after {n} attempts)"))

    # conditional fetches ----------------------------------------------------
    def fetch_conditional(self, url: str, dest: Path, limit: int | None = None) -> bool:
        """Refresh *dest* from *url* unless the server says it has not changed.

        Returns True when dest was (re)written.  The validators live in
        ``<dest>.http.json`` together with dest's own size and mtime, so a dest
        edited or removed behind our back is fetched again in full.  A body
        past *limit* bytes (max_document by default) is refused, and nothing
        of it stays.
        """
        dest = Path(dest)
        limit = self.max_document if limit is None else limit
        known = _known_validators(sidecar_path(dest), url, dest)
        local = _local_path(url)
        if local is not None:
            return self._fetch_local_conditional(local, url, dest, known, limit)
        headers = {}
        if known.get("etag"):
            headers["If-None-Match"] = known["etag"]
        if known.get("last_modified"):
            headers["If-Modified-Since"] = known["last_modified"]

        def attempt() -> bool:
            with self._get(url, headers) as resp:
                if resp.status_code == 304 and headers:
                    self.stats.add(not_modified=1)
                    return False
                self._check_status(resp, url)
                with atomic_output(dest) as f:
                    for chunk in self._capped(self._body(resp), url, limit):
                        f.write(chunk)
                validators = {"etag": resp.headers.get("ETag"),
                              "last_modified": resp.headers.get("Last-Modified")}
            _write_sidecar(dest, url, validators)
            return True

        return self._retrying(attempt, lambda why, n: FetchError(f"{url}: {why} (gave up after {n} attempts)"))

    def _fetch_local_conditional(self, source: Path, url: str, dest: Path, known: dict[str, Any], limit: int) -> bool:
        try:
            st = source.stat()
        except FileNotFoundError:
            raise NotFound(f"{url}: not found") from None
        except OSError as e:
            raise FetchError(f"{url}: {transport_cause(e)}") from None
        self.stats.add(requests=1)
        validators = {"source_mtime_ns": st.st_mtime_ns, "source_size": st.st_size}
        if known and all(known.get(k) == v for k, v in validators.items()):
            self.stats.add(not_modified=1)
            return False
        with atomic_output(dest) as out, _open_local(source, url) as f:
            for chunk in self._capped(iter(lambda: f.read(CHUNK), b""), url, limit):
                self.stats.add(bytes=len(chunk))
                out.write(chunk)
        _write_sidecar(dest, url, validators)
        return True

    # packages ---------------------------------------------------------------
    def download(self, url: str, dest: Path, *, name: str, expected_sum: str,
                 expected_size: int | None) -> None:
        """Fetch a package to *dest*, resuming, verifying, then renaming into place.

        A partial left by an earlier (killed) run is resumed; a download that
        gives up removes its partial, so failures leave no file behind.  If bytes from an earlier
        response fail verification, the download is redone once from zero (the
        file may have changed on the mirror in between); a fresh download that
        does not match is tampered with: IntegrityError, and the partial goes.
        """
        self._download(DownloadJob(url, Path(dest), name, expected_sum, expected_size),
                       self.progress or NullProgress())

    def _download(self, job: DownloadJob, progress: Progress) -> None:
        sum_kind(job.expected_sum)  # reject an unknown spelling before any traffic
        job.dest.parent.mkdir(parents=True, exist_ok=True)
        partial = _Partial(partial_path(job.dest), job.expected_size, progress)
        try:
            self._transfer(job, partial)
            if partial.resumed and not partial.matches(job):
                partial.restart()
                self._transfer(job, partial)
        except (FetchError, DiskError):
            # A run that gives up leaves nothing behind (and gives a full disk its space
            # back); only a killed run leaves a partial, and the next run resumes it.
            partial.discard()
            raise
        if not partial.matches(job):
            actual = partial.summer.spelling(sum_kind(job.expected_sum))
            size = partial.summer.size
            partial.discard()
            if partial.summer.matches(job.expected_sum):
                raise IntegrityError(f"{job.name}: size mismatch: catalogue says {job.expected_size} bytes, "
                                     f"downloaded {size} ({job.url})")
            raise IntegrityError(f"{job.name}: sum mismatch: catalogue says {job.expected_sum}, "
                                 f"downloaded {actual} ({job.url})")
        partial.install(job.dest)

    def _transfer(self, job: DownloadJob, partial: _Partial) -> None:
        """Fill *partial* up to the end of the file, resuming after each failure."""
        local = _local_path(job.url)

        def attempt() -> None:
            if partial.complete:
                return
            if local is not None:
                self._copy_local(local, job, partial)
            else:
                self._fetch_range(job, partial)
            if partial.short:
                raise Transient("the server ended the body early")

        def give_up(why: str, n: int) -> FetchError:
            of = f" of {job.expected_size}" if job.expected_size is not None else ""
            return FetchError(f"{job.name}: download incomplete, {partial.summer.size}{of} bytes arrived "
                              f"in {n} attempts: {why} ({job.url})")

        self._retrying(attempt, give_up)

    def _fetch_range(self, job: DownloadJob, partial: _Partial) -> None:
        offset = partial.summer.size
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with self._get(job.url, headers) as resp:
            if resp.status_code == 416 and offset:
                m = _UNSATISFIED_RANGE.match(resp.headers.get("Content-Range", ""))
                if m and int(m.group(1)) == offset:
                    partial.resumed = True  # the partial already holds the whole file
                    return
                partial.restart()
                raise Transient("the server refused to resume (HTTP 416)")
            self._check_status(resp, job.url, job.name)
            if resp.status_code == 206:
                m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
                if not m or int(m.group(1)) != offset:
                    partial.restart()
                    raise Transient(f"the server answered bytes={offset}- with "
                                     f"{resp.headers.get('Content-Range')!r}")
                partial.resumed = True
            elif offset:
                partial.restart()  # 200: the server ignored Range and sends everything
            with partial.appending() as append:
                for chunk in self._body(resp):
                    append(chunk, job)

    def _copy_local(self, source: Path, job: DownloadJob, partial: _Partial) -> None:
        with _open_local(source, job.url) as f:
            self.stats.add(requests=1)
            offset = partial.summer.size
            if offset > os.fstat(f.fileno()).st_size:
                partial.restart()
                offset = 0
            partial.resumed = partial.resumed or offset > 0
            f.seek(offset)
            with partial.appending() as append:
                while chunk := f.read(CHUNK):
                    self.stats.add(bytes=len(chunk))
                    append(chunk, job)

    def each(self, work: Callable[[T], object], items: Iterable[T]) -> None:
        """Run *work* on every item on at most max_workers threads: the fetcher's one bounded pool.

        On the first failure no new item is started; items in progress finish (a download lands
        verified or stays a partial), then that first error is raised.
        """
        stop = threading.Event()
        first: BaseException | None = None

        def run(item: T) -> None:
            if not stop.is_set():
                work(item)

        with ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="fetch") as pool:
            futures = [pool.submit(run, item) for item in items]
            try:
                for future in as_completed(futures):
                    exc = future.exception()
                    if exc is not None and first is None:
                        first = exc
                        stop.set()
            except BaseException:
                stop.set()
                raise
        if first is not None:
            raise first


class _Partial:
    """The ``.partial-<name>`` file of one download and the running sums of its bytes.

    Hashing as bytes arrive (and once over a prefix found on disk) means a
    large package is read from disk only once and never held in memory.
    """

    def __init__(self, path: Path, expected_size: int | None, progress: Progress) -> None:
        self.path = path
        self.expected_size = expected_size
        self.progress = progress
        self.summer = Summer()
        self.resumed = False  # holds bytes from an earlier response or run
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return
        if expected_size is not None and size > expected_size:
            path.unlink()  # longer than the package can be: not a prefix of it
            return
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                self.summer.update(chunk)
        self.resumed = self.summer.size > 0
        progress.advance(self.summer.size)

    @property
    def complete(self) -> bool:
        """Holds the catalogue's size already (an empty package still needs one request)."""
        return self.expected_size is not None and self.summer.size == self.expected_size > 0

    @property
    def short(self) -> bool:
        """Fewer bytes than the catalogue's size although the response ended normally."""
        return self.expected_size is not None and self.summer.size < self.expected_size

    def matches(self, job: DownloadJob) -> bool:
        size_ok = job.expected_size is None or self.summer.size == job.expected_size
        return size_ok and self.summer.matches(job.expected_sum)

    def restart(self) -> None:
        """Forget every byte so far (the next request starts from zero)."""
        self.discard()
        self.summer = Summer()
        self.resumed = False

    @contextlib.contextmanager
    def appending(self) -> Iterator[Callable[[bytes, DownloadJob], None]]:
        # a full disk names the file being downloaded, not its temporary name
        with disk_errors(self.path.with_name(self.path.name.removeprefix(TMP_PREFIX))), open(self.path, "ab") as f:
            def append(chunk: bytes, job: DownloadJob) -> None:
                if self.expected_size is not None and self.summer.size + len(chunk) > self.expected_size:
                    self.discard()
                    raise IntegrityError(f"{job.name}: the server sent more than the catalogue's "
                                         f"{self.expected_size} bytes ({job.url})")
                f.write(chunk)
                self.summer.update(chunk)
                self.progress.advance(len(chunk))
            yield append

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def install(self, dest: Path) -> None:
        """fsync, then rename the verified partial to its real name."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(self.path, 0o644)
        os.replace(self.path, dest)


def _open_local(path: Path, url: str) -> IO[bytes]:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise NotFound(f"{url}: not found") from None
    except OSError as e:
        raise FetchError(f"{url}: {transport_cause(e)}") from None


def _known_validators(sidecar: Path, url: str, dest: Path) -> dict[str, Any]:
    """The sidecar's validators, or {} when they no longer describe *dest* as it is."""
    try:
        known = read_json(sidecar)
        st = dest.stat()
    except (OSError, ValueError):
        return {}
    if not isinstance(known, dict) or known.get("url") != url:
        return {}
    if known.get("size") != st.st_size or known.get("mtime_ns") != st.st_mtime_ns:
        return {}
    return known


def _write_sidecar(dest: Path, url: str, validators: dict[str, Any]) -> None:
    st = dest.stat()
    record = {k: v for k, v in validators.items() if v is not None}
    record.update(url=url, size=st.st_size, mtime_ns=st.st_mtime_ns)
    with atomic_output(sidecar_path(dest)) as f:
        f.write(pretty_json(record))

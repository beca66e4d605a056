"""The one HTTP transport of the pipeline: package fetcher, registry client and token auth share it.

Three clients talk HTTP: the package fetcher (mirrors, CDNs), the registry
client (pushes) and its token authentication.  They share one implementation
of what is easy to get subtly wrong once per client:

- sessions: a pool per Transport, a Session never used by two threads at once
  (requests' Sessions are not thread-safe), idle ones kept for keep-alive;
- retries: one RetryPolicy (exponential backoff, capped), for transport
  failures, 5xx and 429 (whose Retry-After is honoured, within the cap);
- names of transport failures: transport_cause() gives the same words for the
  same failure wherever it is nested ("timed out", "connection refused",
  "connection reset by peer", "TLS: certificate verify failed: ...");
- credentials: a Credential is bound to the origin (scheme, host, port) it
  was issued for and is sent to that origin only.  Redirects are followed by
  the transport itself (GET and HEAD): to another origin without the
  credential, never from https to http, at most MAX_REDIRECTS hops, and a loop
  ends in one line naming it.  A registry's upload Location on another origin
  is followed the same way (check_next), without the credential.
- error bodies: read_capped() never holds more than a bounded prefix of a
  body the server may make as large as it likes.
"""
from __future__ import annotations

import contextlib
import ipaddress
import logging
import ssl
import threading
import time
import urllib.parse
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import requests
import urllib3

from .errors import FetchError
from .fsutil import Readable

log = logging.getLogger("release.http")

MAX_BACKOFF = 30.0
MAX_REDIRECTS = 10
ERROR_BODY_LIMIT = 64 << 10         # bytes of an error body ever read
ERROR_TEXT_LIMIT = 200              # characters of it ever put into a message
_REDIRECTS = (301, 302, 303, 307, 308)
_DEFAULT_PORTS = {"http": 80, "https": 443}
T = TypeVar("T")


class TransportError(FetchError):
    """A request failed in a way retrying cannot fix (TLS, redirects, a bad URL); one line naming the URL.

    *cause* is the message without the URL, for clients that name the failing step their own way.
    """

    def __init__(self, url: str, cause: str) -> None:
        super().__init__(f"{url}: {cause}")
        self.url, self.cause = url, cause


class Refused(TransportError):
    """A server's answer the transport will not follow: a downgrade to http, a redirect loop (bad input: 2)."""

    exit_status = 2


class Transient(Exception):
    """A failure worth another attempt; *cause* names it, *retry_after* is the server's wish (seconds)."""

    def __init__(self, cause: str, retry_after: float = 0.0) -> None:
        super().__init__(cause)
        self.cause = cause
        self.retry_after = retry_after


# --------------------------------------------------------------------------- origins and credentials

@dataclass(frozen=True)
class Origin:
    """RFC 6454's origin: what a credential is bound to."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        try:
            port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
        except ValueError:
            raise TransportError(url, "bad port") from None
        return cls(scheme, (parts.hostname or "").lower(), port)

    def __str__(self) -> str:
        default = _DEFAULT_PORTS.get(self.scheme) == self.port
        return f"{self.scheme}://{self.host}" + ("" if default else f":{self.port}")


# a request body: a file is streamed (requests calls read())
RequestBody = bytes | str | Readable | None


@dataclass(frozen=True, repr=False)
class Credential:
    """An Authorization header value and the one origin it may be sent to."""

    origin: Origin
    header: str

    def __repr__(self) -> str:
        return f"Credential({self.origin}, <hidden>)"

    def for_url(self, url: str) -> str | None:
        return self.header if Origin.of(url) == self.origin else None


def is_loopback(host: str) -> bool:
    """Plain http is acceptable for credentials only when they never leave the machine."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def check_next(current: str, location: str, *, what: str = "redirected") -> str:
    """The absolute URL a redirect or a Location leads to; Refused for a downgrade or a bad scheme."""
    target = urllib.parse.urljoin(current, location)
    scheme = urllib.parse.urlsplit(target).scheme.lower()
    if scheme not in ("http", "https"):
        raise Refused(current, f"{what} to {shown(target)}: not an http(s) URL")
    if urllib.parse.urlsplit(current).scheme.lower() == "https" and scheme == "http":
        raise Refused(current, f"{what} to {shown(target)}: refusing to downgrade https to http")
    return target


def shown(url: str) -> str:
    """A server-chosen URL for a message: no query (pre-signed URLs carry signatures there), cut short."""
    parts = urllib.parse.urlsplit(url)
    return cut(urllib.parse.urlunsplit(parts._replace(query="", fragment="")), 120)


# --------------------------------------------------------------------------- naming failures

def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """*exc* and every exception nested in it (requests and urllib3 wrap the real one deeply)."""
    stack, seen = [exc], set()
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        stack.extend(a for a in e.args if isinstance(a, BaseException))
        stack.extend(x for x in (e.__cause__, e.__context__, getattr(e, "reason", None))
                     if isinstance(x, BaseException))


def tls_cause(exc: BaseException) -> str:
    """The reason of a TLS failure ("certificate verify failed: self-signed certificate")."""
    for e in exception_chain(exc):
        if isinstance(e, ssl.SSLCertVerificationError) and e.verify_message:
            return f"certificate verify failed: {e.verify_message}"
        if isinstance(e, ssl.SSLError):
            return (e.reason or str(e)).lower().replace("_", " ")
    return "handshake failed"


def transport_cause(exc: BaseException) -> str:
    """The one short name of a transport failure, wherever requests and urllib3 nested it."""
    chain = list(exception_chain(exc))
    for e in chain:             # the system's own words first: "connection refused", "connection reset by peer"
        if isinstance(e, OSError) and e.strerror:
            return e.strerror.lower()
    if any(isinstance(e, (TimeoutError, requests.Timeout, urllib3.exceptions.TimeoutError)) for e in chain):
        return "timed out"
    if any(isinstance(e, urllib3.exceptions.IncompleteRead) for e in chain):
        return "connection closed before the end of the body"
    if any(isinstance(e, (requests.ConnectionError, urllib3.exceptions.ProtocolError,
                          requests.exceptions.ChunkedEncodingError)) for e in chain):
        return "connection broken"
    return type(exc).__name__


@contextlib.contextmanager
def transient_errors() -> Iterator[None]:
    """Network failures (not TLS) as Transient, so every retry loop sees one kind."""
    try:
        yield
    except requests.exceptions.SSLError as e:
        raise TransportError("", f"TLS: {tls_cause(e)}") from None
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
            urllib3.exceptions.HTTPError, OSError) as e:
        raise Transient(transport_cause(e)) from e


def read_capped(resp: requests.Response, limit: int = ERROR_BODY_LIMIT) -> bytes:
    """At most *limit* bytes of a streamed body (the rest is never read)."""
    data = b""
    with contextlib.suppress(requests.RequestException, urllib3.exceptions.HTTPError, OSError):
        while len(data) < limit:
            chunk = resp.raw.read(min(1 << 16, limit - len(data)), decode_content=True)
            if not chunk:
                break
            data += chunk
    return data


def cut(text: str, limit: int = ERROR_TEXT_LIMIT) -> str:
    """One line of at most *limit* characters of text a server chose."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


# --------------------------------------------------------------------------- retries

@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently every client of the transport tries again."""

    retries: int = 4
    backoff: float = 0.5

    def delay(self, failure: int, retry_after: float = 0.0) -> float:
        """Seconds to wait after the *failure*-th failed attempt (1-based)."""
        return min(max(self.backoff * 2.0 ** (failure - 1), retry_after), MAX_BACKOFF)

    def exhausted(self, failures: int) -> bool:
        return failures > self.retries

    def run(self, attempt: Callable[[], T], give_up: Callable[[str, int], Exception],
            on_retry: Callable[[], None] = lambda: None) -> T:
        """Run *attempt* up to retries+1 times, backing off after each Transient."""
        failures = 0
        while True:
            try:
                return attempt()
            except Transient as e:
                failures += 1
                if self.exhausted(failures):
                    raise give_up(e.cause, failures) from None
                on_retry()
                time.sleep(self.delay(failures, e.retry_after))


def status_text(code: int, reason: str | None) -> str:
    """How every client names an HTTP status in a message: "HTTP 503 Service Unavailable"."""
    return f"HTTP {code} {cut(reason or '', 60)}".rstrip()


def status_transient(resp: requests.Response) -> Transient | None:
    """5xx and 429 are worth another attempt (after the server's Retry-After, when it gives one)."""
    if resp.status_code < 500 and resp.status_code != 429:
        return None
    after = resp.headers.get("Retry-After", "")
    return Transient(status_text(resp.status_code, resp.reason), float(after) if after.strip().isdigit() else 0.0)


# --------------------------------------------------------------------------- the transport

class Transport:
    """Sessions, redirects and credentials for one client (thread-safe).

    *verify* is TLS certificate verification (a registry may turn it off
    explicitly; urllib3's warning per request is then silenced, the client says it once).
    """

    def __init__(self, *, user_agent: str, timeout: float = 30, verify: bool = True,
                 retry: RetryPolicy = RetryPolicy(), max_redirects: int = MAX_REDIRECTS) -> None:
        self.user_agent = user_agent
        self.timeout = timeout
        self.verify = verify
        self.retry = retry
        self.max_redirects = max_redirects
        self._idle: list[requests.Session] = []
        self._lock = threading.Lock()
        if not verify:
            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)

    def close(self) -> None:
        with self._lock:
            for session in self._idle:
                session.close()
            self._idle.clear()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _session(self) -> Iterator[requests.Session]:
        with self._lock:
            session = self._idle.pop() if self._idle else None
        if session is None:
            session = requests.Session()
            # identity: sums, digests and Range offsets refer to the bytes as stored
            session.headers.update({"User-Agent": self.user_agent, "Accept-Encoding": "identity"})
        try:
            yield session
        finally:
            with self._lock:
                self._idle.append(session)

    @contextlib.contextmanager
    def open(self, method: str, url: str, *, headers: dict[str, str] | None = None, data: RequestBody = None,
             credential: Credential | None = None, follow: bool | None = None) -> Iterator[requests.Response]:
        """One streamed request, redirects followed by the transport's rules (GET and HEAD by default).

        Raises Transient for a network failure, TransportError for what
        retrying cannot fix (TLS, a downgrade, a redirect loop, a bad URL);
        HTTP statuses are the caller's to judge.
        """
        follow = method in ("GET", "HEAD") if follow is None else follow
        chain = [url]
        while True:
            send = dict(headers or {})
            authorization = credential.for_url(url) if credential is not None else None
            if authorization:
                send["Authorization"] = authorization
            with self._session() as session:
                try:
                    with transient_errors():
                        resp = session.request(method, url, headers=send, data=data, stream=True,
                                               timeout=self.timeout, verify=self.verify, allow_redirects=False)
                except TransportError as e:
                    raise TransportError(url, e.cause) from None
                except requests.RequestException as e:   # a malformed URL, an unsupported scheme
                    raise TransportError(url, f"{type(e).__name__}: {e}") from None
            log.debug("%s %s -> %s", method, url, resp.status_code)
            if not (follow and resp.status_code in _REDIRECTS and resp.headers.get("Location")):
                with resp:
                    yield resp
                return
            resp.close()
            url = check_next(url, resp.headers["Location"])
            if url in chain:
                raise Refused(chain[0], f"redirect loop ({' -> '.join(chain + [url])})")
            chain.append(url)
            if len(chain) > self.max_redirects + 1:
                raise Refused(chain[0], f"more than {self.max_redirects} redirects (last to {url})")
            if resp.status_code == 303:
                method, data = "GET", None

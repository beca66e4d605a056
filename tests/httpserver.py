"""A real HTTP/1.1 package-repository server on 127.0.0.1 for tests.

The fetcher, the catalogue reader and the package cache are tested against
real sockets rather than mocks, so that keep-alive, Range requests, 304s and
broken connections behave exactly as they do against pkg.freebsd.org.

Usage::

    with RepoServer(repo_dir) as srv:
        srv.fail("/meta.conf", status=503, times=1)
        fetch(srv.url + "/meta.conf")
        assert [r.status for r in srv.requests] == [503, 200]

Features: GET and HEAD of regular files under the served directory (no
listings), a strong content-based ETag and Last-Modified, If-None-Match /
If-Modified-Since -> 304, If-Range, single byte ranges (206 + Content-Range,
416 when unsatisfiable).  Faults, keyed by URL path ("/All/x.pkg"):

- ``fail(path, status=500, times=1)``: answer the next *times* requests with *status*;
- ``reset_mid_body(path, after_bytes, times=1)``: send the headers and *after_bytes*
  bytes of the body, then reset the connection (TCP RST);
- ``truncate(path, after_bytes)``: from now on the file appears to end at byte
  offset *after_bytes* although every response announces the full length, so a
  client can never complete it, even with Range requests;
- ``delay(path, seconds)``: wait before answering every request for *path*;
- ``redirect(path, location, status=302)``: answer every request for *path* with a
  redirect to *location* (absolute, or relative to the server).

``RepoServer(root, tls=True)`` serves https with a certificate no CA vouches for.

``requests`` logs every request (:class:`Request`); ``peak_concurrency`` is the
largest number of requests the server was working on at the same moment.
Leaving the ``with`` block always stops the server and closes its port and
every open connection.  The ``repo_server`` fixture wraps all this for a test
and checks afterwards that the port is closed.
"""
from __future__ import annotations

import contextlib
import email.utils
import hashlib
import http.server
import socket
import ssl
import struct
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path

import pytest

CHUNK = 1 << 16


@dataclass
class Request:
    """One request as the server saw it.

    *headers* are the request headers the client sent (case-insensitive
    lookups: ``r.headers["range"]``, None when absent); *bytes_sent* counts
    response body bytes.  Both *status* and *bytes_sent* are filled in before
    the bytes go out, so the log is complete once the client has its answer.
    """

    method: str
    path: str
    headers: Message
    status: int = 0
    bytes_sent: int = 0


@dataclass
class _Faults:
    fail: list[tuple[int, int]] = field(default_factory=list)  # [(status, times left)]
    reset: list[tuple[int, int]] = field(default_factory=list)  # [(after_bytes, times left)]
    truncate: int | None = None
    delay: float = 0.0
    redirect: tuple[int, str] | None = None


class _Closed(Exception):
    """The handler reset the connection on purpose."""


def _etag(path: Path) -> str:
    """Strong validator from the content, as a CDN in front of a mirror would send."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return '"' + h.hexdigest()[:32] + '"'


def _parse_range(value: str | None, size: int) -> tuple[int, int] | None | str:
    """(first, last) for one satisfiable byte range, None to ignore, "416" if unsatisfiable."""
    if not value or not value.startswith("bytes=") or "," in value:
        return None
    first_text, _, last_text = value[len("bytes="):].strip().partition("-")
    try:
        if first_text == "":
            n = int(last_text)
            return (max(size - n, 0), size - 1) if n > 0 and size else "416"
        first = int(first_text)
        last = int(last_text) if last_text else size - 1
    except ValueError:
        return None
    if first >= size or last < first:
        return "416"
    return first, min(last, size - 1)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # never let a forgotten keep-alive connection hold a thread forever
    server: _Server

    def log_message(self, format: str, *args) -> None:  # keep test output clean
        pass

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        owner = self.server.owner
        rel = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        record = owner._record(self.command, rel, self.headers)
        faults = owner._faults_for(rel)
        owner._enter()
        try:  # the "working on it" window that peak_concurrency measures
            if faults.delay:
                time.sleep(faults.delay)
            status = owner._take(faults.fail)
            target = owner._resolve(rel)
        finally:
            owner._leave()
        if faults.redirect is not None and status is None:
            record.status = faults.redirect[0]
            self.send_response(faults.redirect[0])
            self.send_header("Location", faults.redirect[1])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        try:
            if status is None and target is None:
                status = 404
            if status is not None:
                record.status = status
                self.send_error(status)
                return
            self._send_file(target, record, faults, body)
        except _Closed:
            self.close_connection = True

    def _send_file(self, target: Path, record: Request, faults: _Faults, body: bool) -> None:
        st = target.stat()
        size = st.st_size
        etag = _etag(target)
        last_modified = email.utils.formatdate(st.st_mtime, usegmt=True)
        if self._not_modified(etag, int(st.st_mtime)):
            record.status = 304
            self.send_response(304)
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", last_modified)
            self.end_headers()
            return
        wanted = _parse_range(self.headers["Range"], size)
        if_range = self.headers["If-Range"]
        if if_range is not None and if_range != etag and if_range != last_modified:
            wanted = None
        if wanted == "416":
            record.status = 416
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        first, last = wanted if wanted else (0, size - 1)
        record.status = 206 if wanted else 200
        self.send_response(record.status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(last - first + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", last_modified)
        if wanted:
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.end_headers()
        if body:
            self._send_body(target, first, last + 1, record, faults)

    def _not_modified(self, etag: str, mtime: int) -> bool:
        """RFC 9110 §13.2.2: If-None-Match wins; otherwise If-Modified-Since."""
        inm = self.headers["If-None-Match"]
        if inm is not None:
            tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
            return "*" in tags or etag in tags
        ims = self.headers["If-Modified-Since"]
        if ims is not None:
            try:
                since = email.utils.parsedate_to_datetime(ims).timestamp()
            except (TypeError, ValueError):
                return False
            return mtime <= since
        return False

    def _send_body(self, target: Path, start: int, end: int, record: Request, faults: _Faults) -> None:
        stop = end
        if faults.truncate is not None:
            stop = min(stop, max(faults.truncate, start))
        reset_after = self.server.owner._take(faults.reset)
        if reset_after is not None:
            stop = min(stop, start + reset_after)
        with open(target, "rb") as f:
            f.seek(start)
            pos = start
            while pos < stop:
                chunk = f.read(min(CHUNK, stop - pos))
                if not chunk:
                    break
                record.bytes_sent += len(chunk)
                self.wfile.write(chunk)
                pos += len(chunk)
        if reset_after is not None:
            self._reset()
        if stop < end:  # truncated: close cleanly, the announced length is a lie
            self.wfile.flush()
            raise _Closed

    def _reset(self) -> None:
        """Close with SO_LINGER 0: the peer sees ECONNRESET, like a dropped mirror."""
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        raise _Closed


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True
    owner: RepoServer

    def process_request(self, request, client_address) -> None:
        self.owner._opened(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        self.owner._closed(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up (a test's fault injection, a stopped fetch) is not news."""
        import sys
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class RepoServer:
    """Serve *root* over HTTP on 127.0.0.1 (port chosen by the kernel)."""

    def __init__(self, root: Path, *, tls: bool = False) -> None:
        self.root = Path(root).resolve()
        self.tls = tls
        self.requests: list[Request] = []
        self.peak_concurrency = 0
        self._in_flight = 0
        self._faults: dict[str, _Faults] = {}
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """Base URL without a trailing slash: ``srv.url + "/meta.conf"``."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def publish(self, rel: str, data: bytes) -> str:
        """Put *data* at *rel* under the served directory; returns its URL."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return f"{self.url}/{rel}"

    def __enter__(self) -> RepoServer:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.port = self._server.server_address[1]
        if self.tls:
            from tests.registry_support import self_signed_certificate
            cert, key = self_signed_certificate(self.root.parent / f".tls-{self.port}")
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"repo-server-{self.port}",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving, drop open keep-alive connections and close the port."""
        if self._server is None:
            return
        stop_server(self._server, self._thread, self._lock, self._connections)
        self._server = None

    # fault injection -------------------------------------------------------
    def fail(self, path: str, status: int = 500, times: int = 1) -> None:
        with self._lock:
            self._fault(path).fail.append((status, times))

    def reset_mid_body(self, path: str, after_bytes: int, times: int = 1) -> None:
        with self._lock:
            self._fault(path).reset.append((after_bytes, times))

    def truncate(self, path: str, after_bytes: int) -> None:
        with self._lock:
            self._fault(path).truncate = after_bytes

    def delay(self, path: str, seconds: float) -> None:
        with self._lock:
            self._fault(path).delay = seconds

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        with self._lock:
            self._fault(path).redirect = (status, location)

    def requests_for(self, path: str, method: str = "GET") -> list[Request]:
        """The log entries for one URL path (handy for counting downloads)."""
        path = "/" + path.lstrip("/")
        with self._lock:
            return [r for r in self.requests if r.path == path and r.method == method]

    # internals used by the handler -----------------------------------------
    def _fault(self, path: str) -> _Faults:
        return self._faults.setdefault("/" + path.lstrip("/"), _Faults())

    def _faults_for(self, path: str) -> _Faults:
        with self._lock:
            return self._faults.get(path) or _Faults()

    def _take(self, queue: list[tuple[int, int]]) -> int | None:
        """Consume one use of the first pending fault in *queue*."""
        with self._lock:
            if not queue:
                return None
            value, times = queue[0]
            if times <= 1:
                queue.pop(0)
            else:
                queue[0] = (value, times - 1)
            return value

    def _record(self, method: str, path: str, headers: Message) -> Request:
        record = Request(method, path, headers)
        with self._lock:
            self.requests.append(record)
        return record

    def _resolve(self, rel: str) -> Path | None:
        target = (self.root / rel.lstrip("/")).resolve()
        if not target.is_relative_to(self.root) or not target.is_file():
            return None
        return target

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.peak_concurrency = max(self.peak_concurrency, self._in_flight)

    def _leave(self) -> None:
        """Called before the first response byte, so overlapping windows are truly concurrent requests."""
        with self._lock:
            self._in_flight -= 1

    def _opened(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)

    def _closed(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)


def stop_server(server: http.server.HTTPServer, thread: threading.Thread | None, lock: threading.Lock,
                connections: set[socket.socket]) -> None:
    """Stop serving, drop open keep-alive connections (so handlers end) and close the port."""
    server.shutdown()
    with lock:
        open_now = list(connections)
    for conn in open_now:
        with contextlib.suppress(OSError):   # the peer may have gone already
            conn.shutdown(socket.SHUT_RDWR)
    server.server_close()  # joins the handler threads
    if thread is not None:
        thread.join()


def port_is_closed(port: int) -> bool:
    """True when nothing accepts connections on 127.0.0.1:*port* any more."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return False
    except ConnectionRefusedError:
        return True


@pytest.fixture
def repo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RepoServer]:
    """A RepoServer over a fresh empty directory; checks its port is closed afterwards.

    A test names it as a parameter (tests/conftest.py loads this module as a
    plugin) and puts files under ``repo_server.root``.
    """
    with RepoServer(tmp_path_factory.mktemp("repo")) as srv:
        yield srv
    assert port_is_closed(srv.port), f"port {srv.port} still accepts connections after stop()"

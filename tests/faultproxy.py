"""A fault-injecting HTTP proxy for registry tests (see tests/registry_support.py)."""
from __future__ import annotations

import http.client
import http.server
import json
import re
import socket
import ssl
import struct
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


from tests.httpserver import port_is_closed, stop_server

CHUNK = 1 << 16
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
              "upgrade", "proxy-authorization", "proxy-authenticate"}


@dataclass
class ProxyRecord:
    """One request as the proxy saw it; status 0 when the proxy dropped the connection."""

    method: str
    target: str                                   # path?query as the client sent it
    headers: dict[str, str]                       # request headers, lower-case names
    status: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    body_bytes: int = 0                           # request body bytes received from the client
    fault: str = ""

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> dict[str, list[str]]:
        return urllib.parse.parse_qs(urllib.parse.urlsplit(self.target).query)


@dataclass
class _Rule:
    method: str
    pattern: re.Pattern
    nth: int
    times: int
    status: int | None = None
    message: str = "fault injected by the test proxy"
    drop_after: int | None = None
    header: tuple[str, str] | None = None
    seen: int = 0


class _Dropped(Exception):
    pass


class FaultProxy:
    """An HTTP/1.1 proxy on 127.0.0.1 in front of *upstream* (``http://127.0.0.1:port``).

    A hostile registry is made of two: ``locations_to`` makes this proxy send
    clients' uploads (every Location it relays) to another origin, and
    ``inject`` adds request headers on the way upstream (a storage endpoint
    that authorises by URL).  *tls* serves https, with a certificate no CA
    vouches for (written under *certificates*).
    """

    def __init__(self, upstream: str, *, inject: dict[str, str] | None = None, tls: bool = False,
                 certificates: str | None = None) -> None:
        parts = urllib.parse.urlsplit(upstream)
        self.inject = dict(inject or {})
        self.tls = tls
        self.certificates = certificates
        self.locations_to: str | None = None
        self.upstream = f"{parts.scheme}://{parts.netloc}"
        self.upstream_host, self.upstream_port = parts.hostname, parts.port
        self.requests: list[ProxyRecord] = []
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def fail(self, method: str, pattern: str, *, status: int = 500, nth: int = 1, times: int = 1,
             message: str = "fault injected by the test proxy") -> None:
        """Answer *status* (with *message* in a distribution error body) to the *nth* (and following,
        *times* in all) *method* request matching *pattern*."""
        with self._lock:
            self._rules.append(_Rule(method, re.compile(pattern), nth, times, status=status, message=message))

    def drop(self, method: str, pattern: str, *, after_bytes: int, nth: int = 1, times: int = 1) -> None:
        """Reset the connection after *after_bytes* body bytes of the *nth* matching request."""
        with self._lock:
            self._rules.append(_Rule(method, re.compile(pattern), nth, times, drop_after=after_bytes))

    def clear(self) -> None:
        """Forget every fault: from now on everything is forwarded as is."""
        with self._lock:
            self._rules.clear()

    def override(self, method: str, pattern: str, header: str, value: str, *, nth: int = 1,
                 times: int = 1) -> None:
        """Forward the *nth* matching request but set response *header* to *value* (a lying registry)."""
        with self._lock:
            self._rules.append(_Rule(method, re.compile(pattern), nth, times, header=(header, value)))

    def log(self, method: str | None = None) -> list[ProxyRecord]:
        with self._lock:
            return [r for r in self.requests if method is None or r.method == method]

    def _take_rule(self, method: str, path: str) -> _Rule | None:
        with self._lock:
            chosen = None
            for rule in self._rules:             # every rule counts the request; the first due one acts
                if rule.method == method and rule.pattern.search(path):
                    rule.seen += 1
                    if chosen is None and rule.seen >= rule.nth and rule.times > 0:
                        rule.times -= 1
                        chosen = rule
            return chosen

    def _record(self, record: ProxyRecord) -> None:
        with self._lock:
            self.requests.append(record)

    def rewrite_location(self, value: str) -> str:
        to = self.locations_to or self.url
        return to + value[len(self.upstream):] if value.startswith(self.upstream) else value

    def __enter__(self) -> FaultProxy:
        self._server = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
        self._server.owner = self
        self.port = self._server.server_address[1]
        if self.tls:
            from tests.registry_support import self_signed_certificate
            assert self.certificates, "a TLS proxy needs a directory for its certificate"
            cert, key = self_signed_certificate(Path(self.certificates) / f"proxy-{self.port}")
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name=f"fault-proxy-{self.port}")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._server is None:
            return
        stop_server(self._server, self._thread, self._lock, self._connections)
        self._server = None
        assert port_is_closed(self.port)


class _ProxyServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True
    owner: FaultProxy

    def process_request(self, request, client_address) -> None:
        with self.owner._lock:
            self.owner._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self.owner._lock:
            self.owner._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        import sys
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, _Dropped)):
            super().handle_error(request, client_address)


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60
    server: _ProxyServer

    def log_message(self, format: str, *args) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _handle(self) -> None:
        owner = self.server.owner
        record = ProxyRecord(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
        owner._record(record)
        rule = owner._take_rule(self.command, record.path)
        if rule is not None and rule.drop_after is not None:
            for piece in self._body(limit=rule.drop_after):
                record.body_bytes += len(piece)
            record.fault = f"dropped after {record.body_bytes} body bytes"
            self._reset()
        if rule is not None and rule.header is not None:
            record.fault = f"{rule.header[0]} set to {rule.header[1]!r}"
            return self._forward(record, rule.header)
        if rule is not None:
            for piece in self._body():
                record.body_bytes += len(piece)
            record.fault = f"answered {rule.status}"
            body = json.dumps({"errors": [{"code": "UNKNOWN", "message": rule.message}]})
            record.status = rule.status
            self.send_response_only(rule.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body.encode())
            return
        self._forward(record)

    def _body(self, limit: int | None = None) -> Iterator[bytes]:
        """The request body as it arrives (de-chunked), stopping after *limit* bytes."""
        left = limit if limit is not None else float("inf")
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while left > 0:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                data = self.rfile.read(int(min(size, left)))
                left -= len(data)
                yield data
                if len(data) == size:
                    self.rfile.readline()
            return
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining and left > 0:
            data = self.rfile.read(int(min(CHUNK, remaining, left)))
            if not data:
                return
            remaining -= len(data)
            left -= len(data)
            yield data

    def _forward(self, record: ProxyRecord, override: tuple[str, str] | None = None) -> None:
        owner = self.server.owner
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        conn = http.client.HTTPConnection(owner.upstream_host, owner.upstream_port, timeout=60)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", f"{owner.upstream_host}:{owner.upstream_port}")
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP and name.lower() != "host" and \
                        name.lower() not in {k.lower() for k in owner.inject}:
                    conn.putheader(name, value)
            for name, value in owner.inject.items():
                conn.putheader(name, value)
            if chunked:
                conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            for piece in self._body():
                record.body_bytes += len(piece)
                conn.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if chunked:
                conn.send(b"0\r\n\r\n")
            resp = conn.getresponse()
            self._relay(resp, record, override)
        finally:
            conn.close()

    def _relay(self, resp: http.client.HTTPResponse, record: ProxyRecord,
               override: tuple[str, str] | None) -> None:
        owner = self.server.owner
        headers = []
        for name, value in resp.getheaders():
            if name.lower() in HOP_BY_HOP:
                continue
            if override and name.lower() == override[0].lower():
                value = override[1]
            if name.lower() == "location":
                value = owner.rewrite_location(value)
            headers.append((name, value))
        record.response_headers = {k.lower(): v for k, v in headers}
        record.status = resp.status
        bodyless = self.command == "HEAD" or resp.status in (204, 304) or resp.status < 200
        rechunk = bool(resp.chunked) and not bodyless
        self.send_response_only(resp.status, resp.reason)
        for name, value in headers:
            self.send_header(name, value)
        if rechunk:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if bodyless:
            return
        while piece := resp.read(CHUNK):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if rechunk else piece)
        if rechunk:
            self.wfile.write(b"0\r\n\r\n")

    def _reset(self) -> None:
        """Close with SO_LINGER 0: the client sees a reset in the middle of its request."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        raise _Dropped



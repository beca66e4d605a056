"""Real OCI registries on loopback for tests: distribution itself, a token server, a fault proxy.

- :class:`RegistryServer`: Debian's ``docker-registry`` (distribution 2.8) on
  127.0.0.1 with filesystem storage in a temporary directory, anonymous, with
  htpasswd basic auth, or with token auth; its log (access log included) is
  kept for assertions such as "a mount= request was made".
- :class:`TokenServer`: the token endpoint of the distribution token spec.  It
  checks basic credentials (or an OAuth2 refresh token), then issues an RS256
  JWT granting exactly the scopes asked for, signed by a throw-away key whose
  self-signed certificate is the registry's ``rootcertbundle``.  distribution
  2.8 finds the signing key from the JWT header's ``x5c`` chain (verified
  against that bundle), its ``jwk`` or a libtrust ``kid``; ``x5c`` needs no
  libtrust key-id computation, so it is what this server sends.
- :class:`FaultProxy`: a threaded HTTP proxy in front of a registry that
  forwards byte for byte (``Location`` headers rewritten to point back at the
  proxy), logs every request, and on demand answers an error status to the
  Nth matching request or drops the connection after N bytes of a request
  body.  A dropped request is never forwarded: distribution cancels an upload
  whose stored size disagrees with the client's upload state, so a
  half-forwarded chunk could only be restarted, and the drop models the
  resumable case, a connection lost before the registry took the chunk.

Fixtures: ``plain_registry``, ``basic_registry`` (user USER, password
PASSWORD) and ``token_registry`` (a (RegistryServer, TokenServer) pair).
Every server is stopped and its port closed when the test ends.
"""
from __future__ import annotations

import base64
import datetime
import http.client
import http.server
import ipaddress
import json
import os
import secrets
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.conftest import need_tool
from tests.httpserver import port_is_closed

USER = "releng"
PASSWORD = "hunter2-registry-secret"      # test-only; asserted absent from messages and logs
SERVICE = "freebsd-test-registry"
ISSUER = "freebsd-test-token-issuer"
from tests.faultproxy import FaultProxy, ProxyRecord  # noqa: E402,F401 (re-exported for the tests)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- distribution

class RegistryServer:
    """``docker-registry serve`` on 127.0.0.1 with its storage and log under *base*."""

    def __init__(self, base: Path, *, auth: dict | None = None, binary: str | None = None,
                 tls: bool = False) -> None:
        self.base = Path(base)
        self.auth = auth
        self.tls = tls
        self.binary = binary or need_tool("docker-registry", "docker-registry")
        self.port = 0
        self.log_path = self.base / "registry.log"
        self._proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> RegistryServer:
        self.base.mkdir(parents=True, exist_ok=True)
        for _ in range(5):                       # another process may grab the free port first
            self.port = free_port()
            if self._start():
                return self
        raise RuntimeError(f"docker-registry did not start: {self.log_text()[-2000:]}")

    def _start(self) -> bool:
        config = {
            "version": "0.1",
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(self.base / "data")},
                        "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": self.host, "secret": "registry-tests-upload-state"},
        }
        if self.auth:
            config["auth"] = self.auth
        if self.tls:
            cert, key = self_signed_certificate(self.base / "tls")
            config["http"]["tls"] = {"certificate": str(cert), "key": str(key)}
        path = self.base / "config.yml"
        path.write_text(json.dumps(config, indent=2))       # JSON is YAML
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen([self.binary, "serve", str(path)], stdout=log, stderr=log,
                                          stdin=subprocess.DEVNULL, env={"PATH": os.environ.get("PATH", "")})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(self.url + "/v2/", timeout=2, context=_UNVERIFIED):
                    return True
            except urllib.error.HTTPError as e:
                if e.code == 401:                     # up, and asking for credentials
                    return True
                self.stop()
                return False
            except OSError:
                time.sleep(0.05)
        self.stop()
        return False

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __exit__(self, *exc) -> None:
        self.stop()


_UNVERIFIED = ssl.create_default_context()
_UNVERIFIED.check_hostname = False
_UNVERIFIED.verify_mode = ssl.CERT_NONE


def self_signed(key: rsa.RSAPrivateKey, common_name: str, extension: x509.ExtensionType) -> x509.Certificate:
    """A throw-away certificate valid from yesterday to tomorrow."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(extension, critical=isinstance(extension, x509.BasicConstraints))
            .sign(key, hashes.SHA256()))


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A server certificate for 127.0.0.1 that no CA vouches for: (certificate, key) PEM files."""
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = self_signed(key, "127.0.0.1", x509.SubjectAlternativeName([x509.IPAddress(
        ipaddress.ip_address("127.0.0.1"))]))
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def htpasswd_auth(path: Path, users: dict[str, str]) -> dict:
    """An ``auth.htpasswd`` section with bcrypt entries made by Apache's htpasswd."""
    tool = need_tool("htpasswd", "apache2-utils")
    lines = [subprocess.run([tool, "-Bbn", user, password], capture_output=True, text=True,
                            check=True).stdout.strip() for user, password in users.items()]
    path.write_text("\n".join(lines) + "\n")
    return {"htpasswd": {"realm": "registry-tests", "path": str(path)}}


# --------------------------------------------------------------------------- token server

def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class Issued:
    """One answer of the token server."""

    user: str | None
    scopes: list[str]
    status: int
    expires: int = 0           # the JWT's exp claim
    token: str = field(default="", repr=False)


class TokenServer:
    """A distribution token endpoint on 127.0.0.1 (``/token``), serving tokens for *users*.

    *lifetime*: seconds a token stays acceptable to the registry (which adds
    60 s of leeway to exp, taken off here); *expires_in*: what the answer
    claims, which may be longer, to make a client meet an expired token.
    """

    def __init__(self, base: Path, users: dict[str, str], *, identity_tokens: dict[str, str] | None = None,
                 lifetime: int = 300, expires_in: int | None = None) -> None:
        self.users = dict(users)
        self.identity_tokens = dict(identity_tokens or {})
        self.lifetime = lifetime
        self.expires_in = expires_in if expires_in is not None else lifetime
        self.issued: list[Issued] = []
        self.cert_path = Path(base) / "token-issuer.pem"
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = self_signed(self._key, "registry test token issuer", x509.BasicConstraints(ca=True, path_length=None))
        self.cert_path.parent.mkdir(parents=True, exist_ok=True)
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))   # the rootcertbundle
        self._cert_der = cert.public_bytes(serialization.Encoding.DER)
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def registry_auth(self) -> dict:
        """The ``auth.token`` section of a registry trusting this server."""
        return {"token": {"realm": self.url + "/token", "service": SERVICE, "issuer": ISSUER,
                          "rootcertbundle": str(self.cert_path)}}

    def token(self, user: str | None, scopes: list[str]) -> tuple[str, int]:
        """A JWT for *user* granting every requested action (anonymous: none), and its exp."""
        now = int(time.time())
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind and name and user is not None:
                access.append({"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]})
        exp = now + self.lifetime - 60
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self._cert_der).decode("ascii")]}
        claims = {"iss": ISSUER, "sub": user or "", "aud": SERVICE, "exp": exp, "nbf": now - 5, "iat": now,
                  "jti": secrets.token_hex(8), "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}", exp

    def _record(self, issued: Issued) -> None:
        with self._lock:
            self.issued.append(issued)

    def __enter__(self) -> TokenServer:
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TokenHandler)
        self._server.daemon_threads = True
        self._server.owner = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name=f"token-server-{self.port}")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None


class _TokenHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30

    def log_message(self, format: str, *args) -> None:
        pass

    def do_GET(self) -> None:
        owner: TokenServer = self.server.owner
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        scopes = [s for value in query.get("scope", []) for s in value.split()]
        user = None
        header = self.headers.get("Authorization", "")
        if header:
            try:
                user, _, password = base64.b64decode(header.removeprefix("Basic ")).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user, password = "", None
            if owner.users.get(user) != password:
                return self._answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]},
                                    Issued(user, scopes, 401))
        self._grant(user, scopes)

    def do_POST(self) -> None:
        """OAuth2 refresh-token grant: what clients holding an identity token use."""
        owner: TokenServer = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        scopes = [s for value in form.get("scope", []) for s in value.split()]
        user = owner.identity_tokens.get(form.get("refresh_token", [""])[0])
        if form.get("grant_type") != ["refresh_token"] or user is None:
            return self._answer(401, {"error": "invalid_grant"}, Issued(None, scopes, 401))
        self._grant(user, scopes)

    def _grant(self, user: str | None, scopes: list[str]) -> None:
        owner: TokenServer = self.server.owner
        token, exp = owner.token(user, scopes)
        self._answer(200, {"token": token, "access_token": token, "expires_in": owner.expires_in},
                     Issued(user, scopes, 200, exp, token))

    def _answer(self, status: int, doc: dict, issued: Issued) -> None:
        self.server.owner._record(issued)
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


# --------------------------------------------------------------------------- fixtures and auth files

def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def write_auth_file(path: Path, host: str, user: str, password: str, *, key: str | None = None) -> Path:
    """A containers-auth.json(5) file holding one login."""
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {key or host: {"auth": auth}}}))
    return path


def _closed_after(server: RegistryServer) -> None:
    port = server.port
    server.stop()
    assert port_is_closed(port), f"registry port {port} still open"


@pytest.fixture
def plain_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    server = RegistryServer(tmp_path_factory.mktemp("registry"))
    with server:
        yield server
    _closed_after(server)


@pytest.fixture
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    base = tmp_path_factory.mktemp("registry-basic")
    server = RegistryServer(base, auth=htpasswd_auth(base / "htpasswd", {USER: PASSWORD}))
    with server:
        yield server
    _closed_after(server)


@pytest.fixture
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegistryServer, TokenServer]]:
    base = tmp_path_factory.mktemp("registry-token")
    with TokenServer(base, {USER: PASSWORD}) as tokens:
        server = RegistryServer(base, auth=tokens.registry_auth())
        with server:
            yield server, tokens
        _closed_after(server)
    assert port_is_closed(tokens.port)


# --------------------------------------------------------------------------- pushing the demo release

DEMO_TAGS = ("14.2-DEMO", "14.2", "14")
DEMO_FLAVOURS = ("static", "dynamic", "minimal")
SIBLINGS = {"static": (), "dynamic": ("freebsd-static",), "minimal": ("freebsd-static", "freebsd-dynamic")}


def flavour_index(work: Path, flavour: str, release: str = "demo") -> dict:
    """The multi-arch index descriptor of a built flavour (its layout's only index.json entry)."""
    top = json.loads((work / "out" / release / "oci" / flavour / "index.json").read_text())
    (desc,) = top["manifests"]
    return desc


def push_demo(registry, work: Path, *, tags: tuple[str, ...] = DEMO_TAGS,
              flavours: tuple[str, ...] = DEMO_FLAVOURS) -> dict:
    """Push each flavour's index as freebsd-<flavour>, parents first so children can mount."""
    return {flavour: registry.push_index_tree(f"freebsd-{flavour}", work / "blobs" / "sha256",
                                              flavour_index(work, flavour), tags=list(tags),
                                              mount_from=SIBLINGS[flavour])
            for flavour in flavours}


def skopeo(*args: str, env: dict | None = None) -> str:
    tool = need_tool("skopeo", "skopeo")
    proc = subprocess.run([tool, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, f"skopeo {' '.join(args)}: {proc.stderr.strip()[-2000:]}"
    return proc.stdout

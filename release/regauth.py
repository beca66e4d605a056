"""Registry credentials and the distribution-spec authentication flows.

Credentials come from the files podman, skopeo and docker already use
(containers-auth.json(5) order), so a release engineer who ran
``podman login`` needs nothing else.  A registry says how it wants to be
authenticated only when it answers 401, in ``WWW-Authenticate``:

- ``Basic realm=...``: send the user and password with every request;
- ``Bearer realm=...,service=...,scope=...``: trade the credentials (or
  nothing, anonymously) at *realm* for a short-lived token that grants exactly
  the scopes asked for, and send that.  Tokens are cached per scope set and
  fetched again when the registry refuses one (it expired).

Secrets never leave this module except inside an Authorization header bound
to one origin (release.http.Credential): the registry's, or the token
server's.  The token server is named by the registry, whose answers are not
trusted, so the credentials go to it only over https (plain http only on
loopback) and only when it is on the registry's host or in the registry's
parent domain (registry-1.docker.io -> auth.docker.io); any other token
server is refused by name.  The reprs hide secrets and every error names the
registry and the user only.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import FetchError, InputError
from .http import Credential, Origin, Transport, TransportError, is_loopback, read_capped, status_transient
from .run import run

log = logging.getLogger("release.regauth")

AUTH_FILE_ENV = "REGISTRY_AUTH_FILE"
DOCKER_HUB_KEYS = ("docker.io", "index.docker.io", "registry-1.docker.io")
TOKEN_MARGIN = 10.0          # seconds: refresh a cached token this long before it says it expires
DEFAULT_TOKEN_LIFETIME = 60  # the token spec's default when expires_in is missing
MAX_TOKEN_ANSWER = 1 << 20   # bytes of a token server's answer ever read
_PARAM_START = re.compile(r"[A-Za-z][\w.-]*\s*=")


class CredentialsError(InputError):
    """An auth file or credential helper cannot be used (the message names it, never a secret)."""


class AuthenticationError(FetchError):
    """A registry or its token server refused our credentials."""


@dataclass(frozen=True, repr=False)
class Credentials:
    """A user and a secret for one registry, and where they were found.

    *identity_token* is the OAuth2 refresh token ``docker login`` stores for
    registries that use one instead of a password.
    """

    username: str
    password: str = field(default="", compare=False)
    identity_token: str = field(default="", compare=False)
    source: str = ""

    def __repr__(self) -> str:
        kind = "identity token" if self.identity_token else "password"
        return f"Credentials(username={self.username!r}, {kind}=<hidden>, source={self.source!r})"

    __str__ = __repr__

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


# --------------------------------------------------------------------------- auth files

def auth_files(env: Mapping[str, str] | None = None) -> list[tuple[Path, bool]]:
    """(path, explicitly configured) in the order containers-auth.json(5) reads them."""
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or Path.home())
    out: list[tuple[Path, bool]] = []
    if env.get(AUTH_FILE_ENV):
        out.append((Path(env[AUTH_FILE_ENV]), True))
    if env.get("XDG_RUNTIME_DIR"):
        out.append((Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json", False))
    config_home = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else home / ".config"
    out.append((config_home / "containers" / "auth.json", False))
    out.append((home / ".docker" / "config.json", False))
    return out


def find_credentials(registry_host: str, *, env: Mapping[str, str] | None = None) -> Credentials | None:
    """The first credentials for *registry_host* (``host[:port]``) in the auth files, or None.

    A missing default file is normal and skipped; a missing REGISTRY_AUTH_FILE
    or any unreadable or malformed file is a CredentialsError naming the file.
    """
    wanted = _host_aliases(registry_host)
    for path, explicit in auth_files(env):
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            if explicit:
                raise CredentialsError(f"{path}: auth file named by {AUTH_FILE_ENV} does not exist") from None
            continue
        except OSError as e:
            raise CredentialsError(f"{path}: cannot read auth file: {e.strerror}") from None
        creds = _credentials_in(path, text, wanted, registry_host)
        if creds is not None:
            return creds
    return None


def _host_aliases(host: str) -> set[str]:
    host = normalise_key(host)
    return set(DOCKER_HUB_KEYS) if host in DOCKER_HUB_KEYS else {host}


def normalise_key(key: str) -> str:
    """``https://host:port/v1/`` -> ``host:port``: docker writes URLs, podman plain hosts."""
    key = key.strip()
    if "://" in key:
        key = urllib.parse.urlsplit(key).netloc
    return key.split("/", 1)[0].lower()


def _credentials_in(path: Path, text: bytes, wanted: set[str], host: str) -> Credentials | None:
    try:
        doc = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        where = f" (line {e.lineno})" if isinstance(e, json.JSONDecodeError) else ""
        raise CredentialsError(f"{path}: not a JSON auth file{where}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("auths", {}), dict):
        raise CredentialsError(f"{path}: not a JSON auth file (expected an object with \"auths\")")
    for key, entry in doc.get("auths", {}).items():
        if normalise_key(key) in wanted:
            creds = _entry_credentials(path, key, entry)
            if creds is not None:
                return creds
    helper = _helper_for(doc, wanted)
    return helper_credentials(helper, host, path) if helper else None


def _helper_for(doc: dict[str, Any], wanted: set[str]) -> str | None:
    """The credential helper holding the host's secret: credHelpers, else credsStore
    when docker left an empty ``auths`` entry as the sign of a login."""
    helpers = doc.get("credHelpers")
    if isinstance(helpers, dict):
        for key, helper in helpers.items():
            if normalise_key(key) in wanted and helper:
                return str(helper)
    if doc.get("credsStore") and any(normalise_key(k) in wanted for k in doc.get("auths", {})):
        return str(doc["credsStore"])
    return None


def _entry_credentials(path: Path, key: str, entry: object) -> Credentials | None:
    """One ``auths`` entry; an empty one means "ask the credential store"."""
    if not isinstance(entry, dict):
        raise CredentialsError(f"{path}: auths[{key!r}] is not an object")
    user, password = entry.get("username", ""), entry.get("password", "")
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(str(entry["auth"]), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise CredentialsError(f"{path}: auths[{key!r}].auth is not base64 of \"user:password\"") from None
        user, sep, password = decoded.partition(":")
        if not sep:
            raise CredentialsError(f"{path}: auths[{key!r}].auth is not base64 of \"user:password\"")
    token = entry.get("identitytoken", "")
    if not (user or token):
        return None
    return Credentials(str(user), str(password), str(token), str(path))


def helper_credentials(helper: str, host: str, path: Path) -> Credentials | None:
    """Ask ``docker-credential-<helper> get`` (the docker credential-helper protocol)."""
    proc = run([f"docker-credential-{helper}", "get"], input=host.encode(), check=False,
               purpose=f"read the credentials for {host} that {path} keeps in a credential helper")
    if proc.returncode != 0:
        if b"credentials not found" in proc.stdout + proc.stderr:
            return None
        raise CredentialsError(f"docker-credential-{helper} get {host}: exit status {proc.returncode} "
                               f"(configured in {path})")
    try:
        doc = json.loads(proc.stdout)
        user, secret = str(doc["Username"]), str(doc["Secret"])
    except (ValueError, KeyError, TypeError):
        raise CredentialsError(f"docker-credential-{helper} get {host}: unexpected output "
                               f"(configured in {path})") from None
    if user == "<token>":  # the protocol's spelling of an identity token
        return Credentials("<token>", "", secret, f"{path} via docker-credential-{helper}")
    return Credentials(user, secret, "", f"{path} via docker-credential-{helper}")


# --------------------------------------------------------------------------- challenges

@dataclass(frozen=True)
class Challenge:
    scheme: str               # lower case: "basic", "bearer"
    params: dict[str, str]


def parse_challenges(header: str) -> list[Challenge]:
    """The challenges of a WWW-Authenticate value (commas inside quoted scope= values kept)."""
    out: list[Challenge] = []
    for item in _split_commas(header):
        item = item.strip()
        if not item:
            continue
        if not _PARAM_START.match(item):           # "Bearer realm=..." or a bare "Basic"
            scheme, _, item = item.partition(" ")
            out.append(Challenge(scheme.lower(), {}))
            item = item.strip()
            if not item:
                continue
        if out:
            name, _, value = item.partition("=")
            value = value.strip()
            if value.startswith('"') and value.endswith('"') and len(value) >= 2:
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            out[-1].params[name.strip().lower()] = value
    return out


def _split_commas(text: str) -> list[str]:
    items: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            items.append("".join(current))
            current = []
            continue
        current.append(ch)
    items.append("".join(current))
    return items


# --------------------------------------------------------------------------- the flow

@dataclass
class _Token:
    header: str
    expires: float


class Authenticator:
    """Authorization headers for one registry, learnt from its 401 challenges (thread-safe).

    *registry* is the host[:port] used in messages.  Scopes are the token
    spec's ``repository:<name>:<actions>`` strings; the caller passes every
    scope a request needs, so one token serves a whole push of a repository.
    """

    def __init__(self, registry: str, credentials: Credentials | None, *, transport: Transport | None = None,
                 origin: Origin | None = None, user_agent: str = "freebsd-oci-release") -> None:
        self.registry = registry
        self.credentials = credentials
        self.transport = transport or Transport(user_agent=user_agent, timeout=60)
        self.origin = origin or Origin.of(f"https://{registry}")
        self.user_agent = self.transport.user_agent
        self.scheme: str | None = None          # None until the registry first says 401
        self.bearer: dict[str, str] = {}        # realm, service of the last bearer challenge
        self.tokens_fetched = 0
        self._tokens: dict[tuple[str, ...], _Token] = {}
        self._refused: dict[tuple[str, ...], AuthenticationError] = {}   # () for every scope
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Authenticator({self.registry!r}, {self.credentials!r}, scheme={self.scheme!r})"

    def who(self) -> str:
        if self.credentials is None:
            return "anonymous: no credentials found for it"
        return f"user {self.credentials.username}"

    def authorization(self, scopes: tuple[str, ...]) -> str | None:
        """The Authorization value to send for a request needing *scopes* (None: anonymous).

        Credentials refused once are not tried again (by this or another
        thread): a wrong password does not become right, and hammering a token
        server with it can lock the account.
        """
        key = tuple(sorted(scopes))
        with self._lock:
            refused = self._refused.get(()) or self._refused.get(key)
            if refused is not None:
                raise refused
            if self.scheme == "basic":
                return self.credentials.basic_header() if self.credentials else None
            if self.scheme != "bearer":
                return None
            token = self._tokens.get(key)
            if token is None or token.expires <= time.monotonic():
                try:
                    token = self._tokens[key] = self._fetch_token(key)
                except AuthenticationError as e:
                    self._refused[key] = e
                    raise
            return token.header

    def unauthorized(self, header: str | None, scopes: tuple[str, ...], sent: str | None, rounds: int) -> None:
        """Learn from a 401 to a request that carried *sent*; raise when trying again cannot help.

        *rounds* counts the 401s this request already met.  A cached bearer
        token may be refused because it expired, and a fresh one because it
        expired on the way; a third refusal, or a refused password, is final.
        """
        challenges = {c.scheme: c for c in parse_challenges(header or "")}
        key = tuple(sorted(scopes))
        with self._lock:
            if "bearer" in challenges and challenges["bearer"].params.get("realm"):
                if rounds >= 2:
                    raise self._refuse(key, key)
                params = challenges["bearer"].params
                self.scheme = "bearer"
                self.bearer = {"realm": params["realm"], "service": params.get("service", "")}
                cached = self._tokens.get(key)
                if cached is not None and cached.header == sent:    # not one another thread just fetched
                    del self._tokens[key]
                return
            if "basic" in challenges:
                if sent is not None and sent.startswith("Basic "):
                    raise self._refuse((), key)
                if self.credentials is None or not self.credentials.password:
                    raise AuthenticationError(f"{self.registry} requires a user name and password "
                                              f"({self.who()}; see {AUTH_FILE_ENV})")
                self.scheme = "basic"
                return
        raise AuthenticationError(f"{self.registry}: HTTP 401 without a usable WWW-Authenticate challenge "
                                  f"requesting {' '.join(key)}")

    def _refuse(self, memo: tuple[str, ...], scopes: tuple[str, ...]) -> AuthenticationError:
        error = self._failed(" ".join(scopes))
        self._refused[memo] = error
        return error

    def _failed(self, scope_text: str) -> AuthenticationError:
        return AuthenticationError(f"authentication failed for {self.registry} ({self.who()}) "
                                   f"requesting {scope_text}")

    # token server ---------------------------------------------------------
    def _fetch_token(self, scopes: tuple[str, ...]) -> _Token:
        """A fresh token for *scopes*, retrying the token server's transient failures."""
        realm = self.bearer["realm"]
        return self.transport.retry.run(
            lambda: self._token_request(scopes),
            lambda why, n: FetchError(f"token server {realm} for {self.registry}: {why} (gave up after {n} attempts)"))

    def _token_origin(self, realm: str) -> Origin:
        """The token server's origin, if the credentials may go there (see the module's docstring)."""
        origin = Origin.of(realm)
        if origin.scheme not in ("http", "https") or not origin.host:
            raise AuthenticationError(f"{self.registry}: token server {realm!r} is not an http(s) URL")
        if self.credentials is None:
            return origin
        if origin.scheme == "http" and not is_loopback(origin.host):
            raise AuthenticationError(f"{self.registry}: refusing to send credentials to token server "
                                      f"{origin} (https needed)")
        if not _same_site(origin.host, self.origin.host):
            raise AuthenticationError(f"{self.registry}: refusing to send credentials to token server {origin}, "
                                      f"which is neither on {self.origin.host} nor in its domain")
        return origin

    def _token_request(self, scopes: tuple[str, ...]) -> _Token:
        realm, service = self.bearer["realm"], self.bearer["service"]
        creds = self.credentials
        origin = self._token_origin(realm)
        if creds is not None and creds.identity_token:
            # OAuth2 refresh-token grant, as docker does for identity tokens
            form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                    "service": service, "scope": " ".join(scopes), "client_id": self.user_agent}
            method, url, data, credential = "POST", realm, urllib.parse.urlencode(form), None
        else:
            query = [("service", service)] if service else []
            query += [("scope", s) for s in scopes]
            parts = urllib.parse.urlsplit(realm)
            url = urllib.parse.urlunsplit(parts._replace(query="&".join(
                x for x in (parts.query, urllib.parse.urlencode(query)) if x)))
            method, data = "GET", None
            credential = Credential(origin, creds.basic_header()) if creds and creds.password else None
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if data else {}
        try:
            # a POST carries the refresh token in its body: never re-sent anywhere by a redirect
            with self.transport.open(method, url, headers=headers, data=data, credential=credential,
                                     follow=method == "GET") as resp:
                status, body = resp.status_code, read_capped(resp, MAX_TOKEN_ANSWER)
                busy = status_transient(resp)
        except TransportError as e:
            raise FetchError(f"token server {realm} for {self.registry}: {e.cause}") from None
        if busy is not None:
            raise busy
        if status in (401, 403):
            raise self._failed(" ".join(scopes))
        if status != 200:
            raise FetchError(f"token server {realm} for {self.registry}: HTTP {status}")
        return self._token_from(body, realm, scopes)

    def _token_from(self, body: bytes, realm: str, scopes: tuple[str, ...]) -> _Token:
        try:
            doc = json.loads(body)
            token = doc.get("token") or doc.get("access_token")
            lifetime = float(doc.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
        except (ValueError, AttributeError, TypeError):
            token = None
        if not token or not isinstance(token, str):
            raise FetchError(f"token server {realm} for {self.registry}: answer carries no token")
        self.tokens_fetched += 1
        log.debug("token for %s from %s (expires in %g s)", " ".join(scopes), realm, lifetime)
        return _Token("Bearer " + token, time.monotonic() + max(lifetime - TOKEN_MARGIN, 1.0))


def _same_site(host: str, registry_host: str) -> bool:
    """*host* is the registry's host or in its parent domain (at least two labels: not a bare TLD)."""
    if host == registry_host:
        return True
    labels = registry_host.split(".")
    parent = ".".join(labels[1:])
    return len(labels) >= 3 and not _is_ip(registry_host) and (host == parent or host.endswith("." + parent))


def _is_ip(host: str) -> bool:
    return host.replace(".", "").isdigit() or ":" in host

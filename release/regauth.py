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

Secrets never leave this module except inside an Authorization header: the
reprs hide them and every error names the registry and the user only.
"""
from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import os
import re
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

import requests

from .errors import FetchError, InputError
from .run import run

log = logging.getLogger("release.regauth")

AUTH_FILE_ENV = "REGISTRY_AUTH_FILE"
DOCKER_HUB_KEYS = ("docker.io", "index.docker.io", "registry-1.docker.io")
TOKEN_MARGIN = 10.0          # seconds: refresh a cached token this long before it says it expires
DEFAULT_TOKEN_LIFETIME = 60  # the token spec's default when expires_in is missing
_PARAM_START = re.compile(r"[A-Za-z][\w.-]*\s*=")


class CredentialsError(InputError):
    """An auth file or credential helper cannot be used (the message names it, never a secret)."""


class AuthenticationError(FetchError):
    """A registry or its token server refused our credentials."""


class TokenServerBusy(Exception):
    """The token server failed in a way worth retrying (5xx, timeout, reset)."""


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


def _helper_for(doc: dict, wanted: set[str]) -> str | None:
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


def transport_cause(exc: BaseException) -> str:
    """A short reason for a transport failure ("connection refused"), without the long URL."""
    for e in exception_chain(exc):
        if isinstance(e, OSError) and e.strerror:
            return e.strerror.lower()
    if isinstance(exc, requests.Timeout):
        return "timed out"
    return "connection broken" if isinstance(exc, requests.ConnectionError) else type(exc).__name__


def is_loopback(host: str) -> bool:
    """Plain http is acceptable for credentials only when they never leave the machine."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def tls_cause(exc: BaseException) -> str:
    """The reason of a TLS failure ("certificate verify failed: self-signed certificate")."""
    for e in exception_chain(exc):
        if isinstance(e, ssl.SSLCertVerificationError) and e.verify_message:
            return f"certificate verify failed: {e.verify_message}"
        if isinstance(e, ssl.SSLError):
            return (e.reason or str(e)).lower().replace("_", " ")
    return "handshake failed"


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
    items, current, quoted, escaped = [], [], False, False
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

    def __init__(self, registry: str, credentials: Credentials | None, *, verify: bool = True,
                 timeout: float = 60, retries: int = 4, backoff: float = 0.5,
                 user_agent: str = "freebsd-oci-release") -> None:
        self.registry = registry
        self.credentials = credentials
        self.verify = verify
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.user_agent = user_agent
        self.scheme: str | None = None          # None until the registry first says 401
        self.bearer: dict[str, str] = {}        # realm, service of the last bearer challenge
        self.tokens_fetched = 0
        self._tokens: dict[tuple[str, ...], _Token] = {}
        self._refused: dict[tuple[str, ...], AuthenticationError] = {}   # () for every scope
        self._lock = threading.Lock()
        self._session = requests.Session()
        self._session.headers["User-Agent"] = user_agent

    def __repr__(self) -> str:
        return f"Authenticator({self.registry!r}, {self.credentials!r}, scheme={self.scheme!r})"

    def close(self) -> None:
        self._session.close()

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
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(self.backoff * 2 ** (attempt - 1), 30.0))
            try:
                return self._token_request(scopes)
            except TokenServerBusy as e:
                problem = str(e)
        raise FetchError(f"token server {self.bearer['realm']} for {self.registry}: {problem} "
                         f"(gave up after {self.retries + 1} attempts)")

    def _token_request(self, scopes: tuple[str, ...]) -> _Token:
        realm, service = self.bearer["realm"], self.bearer["service"]
        creds = self.credentials
        parts = urllib.parse.urlsplit(realm)
        if parts.scheme not in ("http", "https") or (
                creds is not None and parts.scheme == "http" and not is_loopback(parts.hostname or "")):
            raise AuthenticationError(f"{self.registry}: refusing to send credentials to token server "
                                      f"{parts.scheme}://{parts.netloc} (https needed)")
        try:
            if creds is not None and creds.identity_token:
                # OAuth2 refresh-token grant, as docker does for identity tokens
                form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                        "service": service, "scope": " ".join(scopes), "client_id": self.user_agent}
                resp = self._session.post(realm, data=form, timeout=self.timeout, verify=self.verify)
            else:
                query = [("service", service)] if service else []
                query += [("scope", s) for s in scopes]
                headers = {"Authorization": creds.basic_header()} if creds and creds.password else {}
                resp = self._session.get(realm, params=query, headers=headers, timeout=self.timeout,
                                         verify=self.verify)
        except requests.exceptions.SSLError as e:
            raise FetchError(f"token server {realm} for {self.registry}: TLS: {tls_cause(e)}") from None
        except (requests.ConnectionError, requests.Timeout) as e:
            raise TokenServerBusy(transport_cause(e)) from None
        except requests.RequestException as e:
            raise FetchError(f"token server {realm} for {self.registry}: {type(e).__name__}") from None
        if resp.status_code >= 500 or resp.status_code == 429:
            raise TokenServerBusy(f"HTTP {resp.status_code}")
        if resp.status_code in (401, 403):
            raise self._failed(" ".join(scopes))
        if resp.status_code != 200:
            raise FetchError(f"token server {realm} for {self.registry}: HTTP {resp.status_code}")
        try:
            doc = resp.json()
            token = doc.get("token") or doc.get("access_token")
            lifetime = float(doc.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
        except (ValueError, AttributeError, TypeError):
            token = None
        if not token:
            raise FetchError(f"token server {realm} for {self.registry}: answer carries no token")
        self.tokens_fetched += 1
        log.debug("token for %s from %s (expires in %g s)", " ".join(scopes), realm, lifetime)
        return _Token("Bearer " + token, time.monotonic() + max(lifetime - TOKEN_MARGIN, 1.0))

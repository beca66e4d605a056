"""The release's OpenPGP key, through GnuPG: who signs, and checking what it signed.

Why GnuPG (python-gnupg over the gpg binary) and not an in-process library
such as pysequoia: release engineers keep the release key in their GnuPG home,
often on a hardware token (OpenPGP card, YubiKey) or behind gpg-agent's
passphrase cache, and only gpg can use a key kept that way; pysequoia signs
about 60 times faster once a key is unlocked (bench/signing.py measures both;
for a release's few dozen signatures unlocking the key dominates either way),
but only with the secret key in its own hands.  One code path for both
ways of keeping the key, through the same gpg that podman's and skopeo's GPGME
verifies with, and a signing cost that stays under a second for a release
(see the README), decided it.

Where the key comes from (:func:`open_signer`):

- ``[signing] openpgp_key = "<fingerprint>"``: a key in the GnuPG home
  (``[signing] gnupg_home``, else ``$GNUPGHOME``, else ``~/.gnupg``).  gpg asks
  gpg-agent for each signature, so pinentry, a cached passphrase or a token
  work exactly as for ``gpg --sign``; this process never holds the secret.
- else ``$RELEASE_OPENPGP_KEY_FILE`` (a file) or ``$RELEASE_OPENPGP_KEY`` (the
  armoured text, what a CI secret holds): one secret key as ``gpg
  --export-secret-keys --armor`` writes it, its passphrase in
  ``$RELEASE_OPENPGP_PASSPHRASE``.  It is imported into a throw-away GnuPG home
  (mode 0700, removed with its agent when signing is done) whose agent
  re-protects it with the lowest S2K count: gpg-agent derives the key from the
  passphrase again for every signature (~0.1-0.5 s each at the calibrated
  count), and that home lives no longer than the passphrase in the
  environment it is protected by.

Signatures are made by the primary key (``--local-user <fpr>!``):
containers/image 5.23 (skopeo 1.9, podman 4.3; signature/mechanism_gpgme.go)
compares the signing key's fingerprint with the primary fingerprints of the
trusted keys, so a subkey signature would be refused.

Neither key material nor a passphrase reaches a log line, an exception message
or a repr: python-gnupg's own debug logging (which prints the first bytes of
imported key data) is held at WARNING, the passphrase travels only through
gpg's stdin, and a signer refuses to be pickled into doit's state.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import NoReturn, Protocol

from .errors import InputError, SignatureError, ToolError
from .run import require_tool

logging.getLogger("gnupg").setLevel(logging.WARNING)   # before python-gnupg logs key data at DEBUG
import gnupg  # noqa: E402

log = logging.getLogger("release.openpgp")

KEY_FILE_ENV = "RELEASE_OPENPGP_KEY_FILE"
KEY_ENV = "RELEASE_OPENPGP_KEY"
PASSPHRASE_ENV = "RELEASE_OPENPGP_PASSPHRASE"
_FINGERPRINT = re.compile(r"^([0-9A-F]{40}|[0-9A-F]{64})$")
_AGENT_CONF = "s2k-count 65536\n"          # gpg-agent's minimum: one cheap derivation per signature


class OpenPGPError(InputError):
    """The OpenPGP key is missing, unreadable, locked or cannot sign."""


def normal_fingerprint(text: str) -> str:
    """A fingerprint as gpg prints it (upper-case hex, no spaces, no 0x); '' when *text* is not one."""
    value = re.sub(r"\s+", "", text).upper().removeprefix("0X")
    return value if _FINGERPRINT.match(value) else ""


def _gpg(home: str | None, options: list[str] | None = None) -> gnupg.GPG:
    gpg = require_tool("gpg", "sign or verify with OpenPGP", "gnupg")
    try:
        return gnupg.GPG(gpgbinary=gpg, gnupghome=home, options=options)
    except (OSError, ValueError) as e:
        raise ToolError(f"gpg does not run with home {home or 'default'}: {e}") from None


@contextlib.contextmanager
def throwaway_home(agent_conf: str = "") -> Iterator[str]:
    """A private GnuPG home (0700) that is removed, its agent and sockets with it, on leaving."""
    home = tempfile.mkdtemp(prefix="gnupg-")          # short: gpg's socket paths have a length limit
    try:
        if agent_conf:
            Path(home, "gpg-agent.conf").write_text(agent_conf)
        yield home
    finally:
        if shutil.which("gpgconf"):
            for args in (["--kill", "all"], ["--remove-socketdir"]):
                subprocess.run(["gpgconf", "--homedir", home, *args], capture_output=True,
                               stdin=subprocess.DEVNULL, timeout=30)
        shutil.rmtree(home, ignore_errors=True)


class _GpgOutcome(Protocol):
    """What this module reads of python-gnupg's result objects (the library ships no types)."""

    stderr: str | None
    status: str | None


class _GpgVerdict(_GpgOutcome, Protocol):
    """A decrypt or verify result: valid, the problems gpg reported and the signing key."""

    valid: bool
    problems: list[dict[str, str]] | None
    fingerprint: str | None


def _gpg_reason(result: _GpgOutcome) -> str:
    """gpg's last complaint ("signing failed: Bad passphrase"); its messages never echo a secret."""
    lines = [line[5:].strip() for line in (result.stderr or "").splitlines() if line.startswith("gpg: ")]
    return lines[-1] if lines else (result.status or "no signature made")


def _first_problem(result: _GpgOutcome, fallback: str) -> str:
    """gpg's reason, from its status lines, in a few words (no key material is ever in them)."""
    for problem in getattr(result, "problems", None) or []:
        if isinstance(problem, dict) and problem.get("status"):
            return str(problem["status"])
    status = getattr(result, "status", "") or ""
    return status if status and status not in ("signature valid",) else fallback


class Signer:
    """Signs with one OpenPGP primary key; never shows the key or its passphrase."""

    __slots__ = ("_gpg", "_passphrase", "fingerprint", "source")

    def __init__(self, gpg: gnupg.GPG, fingerprint: str, source: str, passphrase: str | None = None) -> None:
        self._gpg = gpg
        self._passphrase = passphrase
        self.fingerprint = fingerprint
        self.source = source

    def _sign(self, data: bytes, *, detach: bool) -> bytes:
        result = self._gpg.sign(data, passphrase=self._passphrase, binary=not detach, clearsign=False,
                                detach=detach, extra_args=["--local-user", self.fingerprint + "!"])
        if not result.data or result.status != "signature created":
            raise OpenPGPError(f"{self.source}: gpg could not sign with {self.fingerprint}: {_gpg_reason(result)}")
        if result.fingerprint and result.fingerprint.upper() != self.fingerprint:
            raise OpenPGPError(f"{self.source}: gpg signed with {result.fingerprint}, not the primary key "
                               f"{self.fingerprint}")
        return bytes(result.data)

    def sign(self, payload: bytes) -> bytes:
        """An OpenPGP signed message carrying *payload* (binary, as containers' simple signing stores it)."""
        return self._sign(payload, detach=False)

    def detach_sign(self, data: bytes) -> bytes:
        """An ASCII-armoured detached signature of *data* (what `gpg --verify sig data` checks)."""
        return self._sign(data, detach=True)

    def public_key(self) -> bytes:
        """The ASCII-armoured public key (primary key, user ids, subkeys; no third-party signatures)."""
        text = self._gpg.export_keys([self.fingerprint], armor=True, minimal=True)
        if not text:
            raise OpenPGPError(f"{self.source}: gpg cannot export the public key {self.fingerprint}")
        return text.encode() if isinstance(text, str) else bytes(text)

    def __repr__(self) -> str:
        return f"<OpenPGP signer {self.fingerprint} from {self.source}>"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("an OpenPGP signer cannot be pickled (it may hold a passphrase)")


def _home_signer(fingerprint: str, home: str | None) -> Signer:
    wanted = normal_fingerprint(fingerprint)
    where = f"signing.openpgp_key {fingerprint!r}"
    if not wanted:
        raise OpenPGPError(f"{where}: not a key fingerprint (40 or 64 hex digits)")
    gpg = _gpg(home)
    secret = {k["fingerprint"].upper() for k in gpg.list_keys(secret=True, keys=[wanted])}
    if wanted not in secret:
        raise OpenPGPError(f"{where}: no secret primary key with that fingerprint in the GnuPG home "
                           f"{home or os.environ.get('GNUPGHOME') or '~/.gnupg'}")
    return Signer(gpg, wanted, f"GnuPG home key {wanted}")


def _key_text(environ: Mapping[str, str]) -> tuple[bytes, str] | None:
    if environ.get(KEY_FILE_ENV):
        path = environ[KEY_FILE_ENV]
        try:
            return Path(path).read_bytes(), path
        except OSError as e:
            raise OpenPGPError(f"{path}: cannot read the OpenPGP key ({e.strerror})") from None
    if environ.get(KEY_ENV):
        return environ[KEY_ENV].encode(), f"${KEY_ENV}"
    return None


def _import_secret(home: str, data: bytes, source: str, passphrase: str | None) -> Signer:
    gpg = _gpg(home, ["--pinentry-mode", "loopback"])       # never a pinentry prompt: the passphrase or nothing
    if passphrase and not gpg.is_valid_passphrase(passphrase):
        raise OpenPGPError(f"{source}: {PASSPHRASE_ENV} must be one line")
    result = gpg.import_keys(data, passphrase=passphrase or None)
    secret = sorted({k["fingerprint"].upper() for k in gpg.list_keys(secret=True)})
    if not secret:
        if int(result.sec_read or 0) and not passphrase:
            raise OpenPGPError(f"{source}: the secret key is protected: set {PASSPHRASE_ENV}")
        raise OpenPGPError(f"{source}: no OpenPGP secret key in it (gpg --export-secret-keys --armor "
                           f"writes one){'' if not result.count else ': ' + _gpg_reason(result)}")
    if len(secret) != 1:
        raise OpenPGPError(f"{source}: {len(secret)} secret keys, one expected")
    signer = Signer(gpg, secret[0], f"{source} ({secret[0]})", passphrase or None)
    try:
        signer.sign(b"")                 # unlocks it once: a wrong passphrase is reported here, in one line
    except OpenPGPError as e:
        reason = str(e).rsplit(": ", 1)[-1]
        raise OpenPGPError(f"{source}: cannot unlock the secret key "
                           + (f"with {PASSPHRASE_ENV}" if passphrase else f"(set {PASSPHRASE_ENV})")
                           + f": {reason}") from None
    return signer


@contextlib.contextmanager
def open_signer(fingerprint: str = "", home: str = "", *,
                environ: Mapping[str, str] | None = None) -> Iterator[Signer | None]:
    """The configured OpenPGP signer for the length of a with block, or None when none is configured."""
    env = os.environ if environ is None else environ
    if fingerprint:
        yield _home_signer(fingerprint, home or None)
        return
    found = _key_text(env)
    if found is None:
        yield None
        return
    data, source = found
    with throwaway_home(_AGENT_CONF) as tmp:
        signer = _import_secret(tmp, data, source, env.get(PASSPHRASE_ENV))
        log.debug("OpenPGP key imported: %r", signer)
        yield signer


# --------------------------------------------------------------------------- checking

class Verifier:
    """Checks signatures against trusted public keys only (a private keyring of exactly those keys)."""

    def __init__(self, gpg: gnupg.GPG, trusted: set[str], source: str) -> None:
        self._gpg = gpg
        self.trusted = trusted
        self.source = source

    def _judge(self, result: _GpgVerdict, what: str) -> None:
        if not result.valid or result.problems:
            unknown = [p for p in result.problems or [] if isinstance(p, dict) and p.get("status") in
                       ("signature error", "no public key") and (p.get("fingerprint") or p.get("keyid"))]
            if unknown:
                raise SignatureError(f"{what}: signed by {unknown[0].get('fingerprint') or unknown[0]['keyid']}, "
                                     f"not by the trusted key {self.describe()}")
            raise SignatureError(f"{what}: {_first_problem(result, 'not a valid signature')} "
                                 f"(trusted key {self.describe()})")
        signer = (result.fingerprint or "").upper()
        if signer not in self.trusted:
            raise SignatureError(f"{what}: signed by {signer or 'an unknown key'}, not by the trusted "
                                 f"primary key {self.describe()}")

    def open(self, message: bytes, what: str) -> bytes:
        """The payload of a signed message by a trusted primary key; SignatureError otherwise."""
        result = self._gpg.decrypt(message, extra_args=["--no-auto-key-retrieve"])
        self._judge(result, what)
        return bytes(result.data)

    def check_detached(self, signature: bytes, data_path: Path, what: str) -> None:
        """*signature* (armoured or binary) is a trusted primary key's signature of the file *data_path*."""
        result = self._gpg.verify_file(io.BytesIO(signature), data_filename=str(data_path),
                                       extra_args=["--no-auto-key-retrieve"])
        self._judge(result, what)

    def fingerprints_in(self, key_data: bytes) -> set[str]:
        """Primary fingerprints of the keys in *key_data* (read, not imported)."""
        return {k["fingerprint"].upper() for k in self._gpg.scan_keys_mem(key_data) if k.get("fingerprint")}

    def describe(self) -> str:
        return ", ".join(sorted(self.trusted))


def read_public_key(source: str | os.PathLike[str]) -> bytes:
    try:
        return Path(source).read_bytes()
    except OSError as e:
        raise OpenPGPError(f"{source}: cannot read the OpenPGP public key ({e.strerror})") from None


@contextlib.contextmanager
def open_verifier(public_key: bytes, source: str) -> Iterator[Verifier]:
    """A Verifier trusting the primary keys in *public_key* (armoured or binary), nothing else."""
    with throwaway_home() as home:
        gpg = _gpg(home)
        result = gpg.import_keys(public_key)
        trusted = {k["fingerprint"].upper() for k in gpg.list_keys()}
        if not trusted or gpg.list_keys(secret=True):
            raise OpenPGPError(f"{source}: not an OpenPGP public key"
                               + ("" if not trusted else " (it holds a secret key: publish only the public part)"))
        log.debug("trusting %s (%d imported)", ", ".join(sorted(trusted)), result.count)
        yield Verifier(gpg, trusted, source)

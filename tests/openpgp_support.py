"""Throw-away OpenPGP keys for tests, made by the real gpg in a private GnuPG home.

``release_keys`` (session): a GnuPG home (short path under the system's
temporary directory, since gpg-agent's socket path is length-limited) holding

- the release key: ed25519, sign-only primary, protected by PASSPHRASE;
- another key, as an attacker would have, unprotected.

Each is also exported: the release key's secret part armoured (what CI keeps
in $RELEASE_OPENPGP_KEY_FILE) and both public keys.  The home's gpg-agent is
started with allow-preset-passphrase, so a test can put the passphrase into
the agent's cache the way a release engineer's unlocked session has it.  The
agent is stopped and the home removed when the session ends.  Nothing here
touches the user's own GnuPG home.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import need_tool

PASSPHRASE = "correct horse battery staple (test only)"


@dataclass
class Key:
    fingerprint: str
    keygrip: str
    secret: Path | None         # armoured secret key export
    public: Path                # armoured public key


@dataclass
class Keys:
    home: Path
    release: Key
    other: Key

    def env(self) -> dict[str, str]:
        """$RELEASE_OPENPGP_KEY_FILE and its passphrase: the key as CI holds it."""
        return {"RELEASE_OPENPGP_KEY_FILE": str(self.release.secret),
                "RELEASE_OPENPGP_PASSPHRASE": PASSPHRASE}


def gpg(home: Path, *args: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([need_tool("gpg", "gnupg"), "--homedir", str(home), "--batch", "--no-tty", *args],
                          input=input, capture_output=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"gpg {' '.join(args)}: {proc.stderr.decode(errors='replace')[-2000:]}")
    return proc


def _make(home: Path, uid: str, passphrase: str, out: Path, name: str) -> Key:
    gpg(home, "--pinentry-mode", "loopback", "--passphrase", passphrase, "--quick-gen-key", uid, "ed25519",
        "sign", "never")
    listing = gpg(home, "--with-colons", "--with-keygrip", "--list-secret-keys", uid).stdout.decode()
    fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    grip = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("grp:"))
    public = out / f"{name}.asc"
    public.write_bytes(gpg(home, "--armor", "--export", fpr).stdout)
    secret = out / f"{name}-secret.asc"
    secret.write_bytes(gpg(home, "--pinentry-mode", "loopback", "--passphrase", passphrase, "--armor",
                           "--export-secret-keys", fpr).stdout)
    return Key(fpr, grip, secret, public)


def stop_agent(home: Path) -> None:
    for args in (["--kill", "all"], ["--remove-socketdir"]):
        subprocess.run(["gpgconf", "--homedir", str(home), *args], capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def release_keys() -> Iterator[Keys]:
    need_tool("gpg", "gnupg")
    home = Path(tempfile.mkdtemp(prefix="gpg-"))
    out = Path(tempfile.mkdtemp(prefix="gpg-out-"))
    try:
        (home / "gpg-agent.conf").write_text("allow-preset-passphrase\n")
        release = _make(home, "FreeBSD test release key <re@example.org>", PASSPHRASE, out, "release")
        other = _make(home, "Someone else <mallory@example.org>", "", out, "other")
        yield Keys(home, release, other)
    finally:
        stop_agent(home)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)


def preset_passphrase(keys: Keys) -> None:
    """Put the release key's passphrase in the home's agent, as an unlocked desktop session has it."""
    tool = need_tool("/usr/lib/gnupg/gpg-preset-passphrase", "gpg-agent")
    gpg(keys.home, "--list-secret-keys")                       # make sure the agent runs for that home
    subprocess.run(["gpg-connect-agent", "--homedir", str(keys.home), "/bye"], capture_output=True, timeout=60)
    proc = subprocess.run([tool, "--preset", keys.release.keygrip], input=PASSPHRASE.encode(),
                          capture_output=True, timeout=60, env={**os.environ, "GNUPGHOME": str(keys.home)})
    assert proc.returncode == 0, proc.stderr


@contextlib.contextmanager
def consumer_gnupg(*public_keys: Path) -> Iterator[Path]:
    """A GnuPG home for a consumer (gpg --verify, skopeo standalone-verify) holding *public_keys* only."""
    home = Path(tempfile.mkdtemp(prefix="gpg-v-"))
    try:
        for key in public_keys:
            gpg(home, "--import", str(key))
        yield home
    finally:
        stop_agent(home)
        shutil.rmtree(home, ignore_errors=True)

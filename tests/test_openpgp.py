"""The OpenPGP key, both ways release engineers keep it, checked by gpg and skopeo themselves.

- a key file plus passphrase from the environment (CI), imported into a
  throw-away GnuPG home that is gone afterwards, agent included;
- a key in a GnuPG home chosen by fingerprint, signing through gpg-agent with
  a passphrase only the agent knows;
- simple-signing signatures that `skopeo standalone-verify` accepts, and
  skopeo's own signatures that the project's checks accept;
- errors in one line, and neither passphrase nor key material in any log,
  message, repr or pickle.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess

import pytest
import toml

from release import openpgp, sigstore
from release.config import from_dict
from release.errors import ConfigError, SignatureError, ToolError
from tests.conftest import PROJECT, need_tool
from tests.openpgp_support import PASSPHRASE, consumer_gnupg, preset_passphrase

DIGEST = "sha256:" + "ab" * 32
IDENTITY = "registry.example.org/freebsd/freebsd-static:14.2-RELEASE"


def test_a_key_file_with_its_passphrase_signs_in_a_home_that_is_gone_afterwards(release_keys, tmp_path):
    with openpgp.open_signer(environ=release_keys.env()) as signer:
        assert signer.fingerprint == release_keys.release.fingerprint
        home = signer._gpg.gnupghome
        assert os.stat(home).st_mode & 0o777 == 0o700
        message = signer.sign(b"payload")
        detached = signer.detach_sign(b"CHECKSUM data\n")
        public = signer.public_key()
    assert not os.path.exists(home)
    assert public.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----") and b"PRIVATE" not in public
    with openpgp.open_verifier(public, "release key") as verifier:
        assert verifier.open(message, "message") == b"payload"
        (tmp_path / "data").write_bytes(b"CHECKSUM data\n")
        verifier.check_detached(detached, tmp_path / "data", "data.asc")
        (tmp_path / "data").write_bytes(b"CHECKSUM data, altered\n")
        with pytest.raises(SignatureError, match="data.asc: signature bad"):
            verifier.check_detached(detached, tmp_path / "data", "data.asc")
        with pytest.raises(SignatureError, match="truncated:"):
            verifier.open(message[:len(message) // 2], "truncated")


def test_a_key_in_the_gnupg_home_signs_through_the_agent(release_keys):
    preset_passphrase(release_keys)                 # the agent knows it; this process never sees it
    with openpgp.open_signer(release_keys.release.fingerprint.lower(), str(release_keys.home),
                             environ={}) as signer:
        assert signer.fingerprint == release_keys.release.fingerprint
        message = signer.sign(b"from the agent")
    assert os.path.isdir(release_keys.home)        # the user's home is left alone
    with openpgp.open_verifier(release_keys.release.public.read_bytes(), "release key") as verifier:
        assert verifier.open(message, "message") == b"from the agent"
    with (pytest.raises(openpgp.OpenPGPError, match="no secret primary key with that fingerprint"),
          openpgp.open_signer("0" * 40, str(release_keys.home), environ={})):
        pass


def test_a_signature_by_another_key_is_refused(release_keys):
    with openpgp.open_signer(environ={"RELEASE_OPENPGP_KEY_FILE": str(release_keys.other.secret)}) as signer:
        forged = signer.sign(b"payload")
    refused = (f"forged: signed by {release_keys.other.fingerprint}, not by "
               f"the trusted key {release_keys.release.fingerprint}")
    with (openpgp.open_verifier(release_keys.release.public.read_bytes(), "release key") as verifier,
          pytest.raises(SignatureError, match=refused)):
        verifier.open(forged, "forged")


@pytest.mark.parametrize("env, error", [
    ({"RELEASE_OPENPGP_PASSPHRASE": "not the passphrase"}, "cannot unlock the secret key with "
                                                           "RELEASE_OPENPGP_PASSPHRASE: Bad passphrase"),
    ({}, "cannot unlock the secret key (set RELEASE_OPENPGP_PASSPHRASE)"),
    ({"RELEASE_OPENPGP_KEY_FILE": "PUBLIC"}, "no OpenPGP secret key in it"),
    ({"RELEASE_OPENPGP_KEY": "not a key"}, "$RELEASE_OPENPGP_KEY: no OpenPGP secret key in it"),
    ({"RELEASE_OPENPGP_KEY_FILE": "/nonexistent/key.asc"}, "/nonexistent/key.asc: cannot read the OpenPGP key"),
])
def test_key_problems_are_one_line_and_never_show_a_secret(release_keys, env, error, caplog):
    environ = {"RELEASE_OPENPGP_KEY_FILE": str(release_keys.release.secret), **env}
    if environ["RELEASE_OPENPGP_KEY_FILE"] == "PUBLIC":
        environ["RELEASE_OPENPGP_KEY_FILE"] = str(release_keys.release.public)
    if "RELEASE_OPENPGP_KEY" in env:
        del environ["RELEASE_OPENPGP_KEY_FILE"]
    caplog.set_level(logging.DEBUG)
    with pytest.raises(openpgp.OpenPGPError) as failure, openpgp.open_signer(environ=environ):
        pass
    message = str(failure.value)
    assert error in message and "\n" not in message
    secret = release_keys.release.secret.read_text().splitlines()[3]      # a line of key material
    for text in (message, caplog.text):
        assert "not the passphrase" not in text and PASSPHRASE not in text and secret not in text


def test_the_signer_keeps_its_secrets(release_keys, caplog):
    caplog.set_level(logging.DEBUG)                 # python-gnupg would log imported key data at DEBUG
    with openpgp.open_signer(environ=release_keys.env()) as signer:
        signer.sign(b"x")
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(signer)
        assert PASSPHRASE not in repr(signer)
    secret_lines = release_keys.release.secret.read_text().splitlines()[2:6]
    assert not any(line in caplog.text for line in secret_lines if len(line) > 20)
    assert PASSPHRASE not in caplog.text


def test_config_accepts_a_fingerprint_and_refuses_anything_else():
    data = toml.loads((PROJECT / "config.toml").read_text())
    data["signing"].update(openpgp_key="7D21 9B7E 79C5 CFC5 7E47  F47F B4B0 CC4A D671 269C",
                           lookaside_url="https://download.example.org/signatures")
    cfg = from_dict(data, path=PROJECT / "config.toml")
    assert cfg.signing.lookaside_url == "https://download.example.org/signatures"
    data["signing"].update(openpgp_key="release@freebsd.org", lookaside_url="ftp://x")
    with pytest.raises(ConfigError) as failure:
        from_dict(data, path=PROJECT / "config.toml")
    assert sorted(failure.value.problems) == [
        "config.toml: signing.lookaside_url: must be an https://, http:// or file:// URL, not 'ftp://x'",
        "config.toml: signing.openpgp_key: must be a key fingerprint (40 or 64 hex digits, as gpg "
        "--fingerprint prints it), not 'release@freebsd.org'"]


# --------------------------------------------------------------------------- the payload, by skopeo itself

def test_payload_is_what_containers_image_writes():
    assert sigstore.atomic_payload(IDENTITY, DIGEST, "freebsd-oci-release/1", 1732838400) == (
        b'{"critical":{"identity":{"docker-reference":"' + IDENTITY.encode() + b'"},'
        b'"image":{"docker-manifest-digest":"' + DIGEST.encode() + b'"},'
        b'"type":"atomic container signature"},'
        b'"optional":{"creator":"freebsd-oci-release/1","timestamp":1732838400}}')
    with pytest.raises(SignatureError, match="unrecognised signature type"):
        sigstore.parse_atomic(b'{"critical":{"identity":{"docker-reference":"a/b:1"},"image":{'
                              b'"docker-manifest-digest":"' + DIGEST.encode() + b'"},'
                              b'"type":"cosign container image signature"},"optional":null}')


def test_skopeo_standalone_verify_accepts_our_signature_and_we_accept_skopeos(release_keys, tmp_path):
    skopeo = need_tool("skopeo", "skopeo")
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": DIGEST, "size": 2}, "layers": []}).encode()
    (tmp_path / "manifest.json").write_bytes(manifest)
    digest = "sha256:" + __import__("hashlib").sha256(manifest).hexdigest()
    with openpgp.open_signer(environ=release_keys.env()) as signer:
        (tmp_path / "signature-1").write_bytes(signer.sign(sigstore.atomic_payload(IDENTITY, digest, "t", 1)))
    with consumer_gnupg(release_keys.release.public) as home:
        env = {**os.environ, "GNUPGHOME": str(home)}
        ok = subprocess.run([skopeo, "standalone-verify", str(tmp_path / "manifest.json"), IDENTITY,
                             release_keys.release.fingerprint, str(tmp_path / "signature-1")],
                            capture_output=True, text=True, env=env, timeout=60)
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.strip() == f"Signature verified, digest {digest}"     # skopeo 1.9's words
        wrong = subprocess.run([skopeo, "standalone-verify", str(tmp_path / "manifest.json"),
                                IDENTITY.replace("14.2-RELEASE", "14.1-RELEASE"), release_keys.release.fingerprint,
                                str(tmp_path / "signature-1")], capture_output=True, text=True, env=env, timeout=60)
        assert wrong.returncode != 0 and "does not match" in wrong.stderr
    # the other way round: skopeo's own signature, made with the same key in its GnuPG home
    preset_passphrase(release_keys)
    made = subprocess.run([skopeo, "standalone-sign", "-o", str(tmp_path / "by-skopeo"),
                           str(tmp_path / "manifest.json"), IDENTITY, release_keys.release.fingerprint],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "GNUPGHOME": str(release_keys.home)})
    assert made.returncode == 0, made.stderr
    with openpgp.open_verifier(release_keys.release.public.read_bytes(), "release key") as verifier:
        signed = sigstore.check_signature(verifier, (tmp_path / "by-skopeo").read_bytes(),
                                          "registry.example.org", "freebsd/freebsd-static", digest, "by-skopeo")
    assert signed.docker_reference == IDENTITY and signed.creator.startswith("atomic ")


def test_without_gpg_on_path_the_error_names_the_tool_and_its_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))               # an empty directory: no gpg
    with (pytest.raises(ToolError, match=r"^gpg: not found on PATH, needed to sign or verify with OpenPGP "
                                         r"\(install the gnupg package\)$"),
          openpgp.open_verifier(b"", "release.pub")):
        pass

"""The release signing key and the detached CHECKSUM signatures, checked with the openssl CLI."""
from __future__ import annotations

import base64
import logging
import pickle
import subprocess
import traceback
from pathlib import Path

import pytest

from release import signing
from release.checksum import write_checksums
from release.errors import InputError
from release.signing import SigningKeyError
from tests.conftest import need_tool

PASSWORD = "correct-horse-7f3a9c"


def openssl(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([need_tool("openssl", "openssl"), *args], input=input, capture_output=True)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """P-256 keys made by openssl: clear, encrypted PKCS#8, a second key, an RSA key, and public halves."""
    d = tmp_path_factory.mktemp("keys")
    out = {name: d / f"{name}.pem" for name in ("clear", "encrypted", "other", "rsa", "clear-pub", "other-pub")}
    for name in ("clear", "other"):
        assert openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(out[name])).returncode == 0
        assert openssl("ec", "-in", str(out[name]), "-pubout", "-out", str(out[f"{name}-pub"])).returncode == 0
    assert openssl("pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", str(out["clear"]), "-out",
                   str(out["encrypted"]), "-passout", f"pass:{PASSWORD}").returncode == 0
    assert openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                   "-out", str(out["rsa"])).returncode == 0
    return out


def secret_body(pem_path: Path) -> str:
    """The base64 body of a PEM file (what must never leak), without the armour lines."""
    return "".join(line for line in pem_path.read_text().splitlines() if not line.startswith("-----"))


def everything_about(exc: BaseException) -> str:
    return str(exc) + repr(exc) + "".join(traceback.format_exception(exc))


# --------------------------------------------------------------------------- loading the key

def test_key_from_file_env_file_and_env_pem_is_the_same_key(keys):
    public = signing.load_public_key(keys["clear-pub"])
    fingerprint = signing.key_fingerprint(public)
    from_path = signing.load_signing_key(keys["clear"], environ={})
    from_env_file = signing.load_signing_key(environ={signing.KEY_FILE_ENV: str(keys["clear"])})
    from_env_pem = signing.load_signing_key(environ={signing.KEY_ENV: keys["clear"].read_text()})
    encrypted = signing.load_signing_key(environ={signing.KEY_FILE_ENV: str(keys["encrypted"]),
                                                  signing.PASSWORD_ENV: PASSWORD})
    for key in (from_path, from_env_file, from_env_pem, encrypted):
        assert signing.key_fingerprint(key.public_key) == fingerprint
    assert from_env_pem.source == "$RELEASE_SIGNING_KEY"


@pytest.mark.parametrize("case, message", [
    ("encrypted-no-password", "encrypted, set RELEASE_SIGNING_KEY_PASSWORD"),
    ("encrypted-wrong-password", "cannot decrypt it: wrong RELEASE_SIGNING_KEY_PASSWORD"),
    ("clear-with-password", "not encrypted, but RELEASE_SIGNING_KEY_PASSWORD is set"),
    ("rsa", "not an ECDSA P-256"),
    ("garbage-in-env", "RELEASE_SIGNING_KEY: not a PEM private key"),
    ("nothing", "no signing key: set RELEASE_SIGNING_KEY_FILE"),
    ("missing-file", "cannot read the signing key"),
])
def test_key_problems_are_one_line_and_never_show_the_secret(keys, case, message):
    env = {
        "encrypted-no-password": {signing.KEY_FILE_ENV: str(keys["encrypted"])},
        "encrypted-wrong-password": {signing.KEY_ENV: keys["encrypted"].read_text(),
                                     signing.PASSWORD_ENV: PASSWORD + "x"},
        "clear-with-password": {signing.KEY_ENV: keys["clear"].read_text(), signing.PASSWORD_ENV: PASSWORD},
        "rsa": {signing.KEY_FILE_ENV: str(keys["rsa"])},
        # a PEM private key with one character damaged: its body must not be echoed back
        "garbage-in-env": {signing.KEY_ENV: keys["clear"].read_text().replace("M", "!", 1)},
        "nothing": {},
        "missing-file": {signing.KEY_FILE_ENV: str(keys["clear"]) + ".gone"},
    }[case]
    with pytest.raises(SigningKeyError) as info:
        signing.load_signing_key(environ=env)
    text = everything_about(info.value)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, InputError)
    # no cryptography error rides along in __context__ (only a file system error may)
    assert info.value.__context__ is None or isinstance(info.value.__context__, OSError)
    for secret in (PASSWORD, secret_body(keys["clear"])[:40], secret_body(keys["encrypted"])[:40],
                   secret_body(keys["clear"])[-40:]):
        assert secret not in text


def test_a_loaded_key_shows_only_its_fingerprint_and_refuses_pickling(keys, caplog):
    caplog.set_level(logging.DEBUG)
    key = signing.load_signing_key(environ={signing.KEY_ENV: keys["encrypted"].read_text(),
                                            signing.PASSWORD_ENV: PASSWORD})
    shown = repr(key) + str(key) + caplog.text
    assert "sha256:" in repr(key)
    for secret in (PASSWORD, secret_body(keys["clear"])[:40], secret_body(keys["encrypted"])[:40]):
        assert secret not in shown
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(key)


def test_cosign_key_format_gets_a_helpful_message(tmp_path):
    path = tmp_path / "cosign.key"
    path.write_text("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n"
                    "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    with pytest.raises(SigningKeyError, match="cosign's encrypted key format"):
        signing.load_signing_key(path, environ={})


# --------------------------------------------------------------------------- signatures

def test_signatures_are_der_and_interoperate_with_openssl(keys, tmp_path):
    key = signing.load_signing_key(keys["clear"], environ={})
    data = b"SHA256 (x.txz) = " + b"0" * 64 + b"\n"
    (tmp_path / "data").write_bytes(data)
    signature = key.sign(data)
    assert signature == key.sign(data)  # deterministic (RFC 6979)
    assert signing.verify(key.public_key, data, signature)
    assert not signing.verify(key.public_key, data + b" ", signature)
    assert not signing.verify(signing.load_public_key(keys["other-pub"]), data, signature)
    (tmp_path / "ours.der").write_bytes(signature)
    ok = openssl("dgst", "-sha256", "-verify", str(keys["clear-pub"]), "-signature", str(tmp_path / "ours.der"),
                 str(tmp_path / "data"))
    assert ok.returncode == 0 and b"Verified OK" in ok.stdout
    theirs = openssl("dgst", "-sha256", "-sign", str(keys["clear"]), str(tmp_path / "data")).stdout
    assert signing.verify(signing.load_public_key(keys["clear-pub"].read_bytes()), data, theirs)
    assert signing.load_public_key(key.public_pem()).public_numbers() == key.public_key.public_numbers()
    with pytest.raises(SigningKeyError, match="not an ECDSA P-256 public key"):
        signing.load_public_key(keys["rsa"])


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A download directory: two archives and their CHECKSUM files, as release.checksum writes them."""
    d = tmp_path / "amd64"
    d.mkdir()
    for flavour in ("static", "minimal"):
        (d / f"FreeBSD-14.2-RELEASE-amd64-container-image-{flavour}.txz").write_bytes(flavour.encode() * 1000)
    write_checksums(d, sorted(p.name for p in d.glob("*.txz")))
    return d


def test_signed_tree_verifies_with_stock_openssl_and_base64(keys, tree):
    key = signing.load_signing_key(keys["clear"], environ={})
    names = signing.sign_checksums(tree, key)
    assert names == ["CHECKSUM.SHA256.sig", "CHECKSUM.SHA512.sig", "SIGNING-KEY.pub"]
    assert (tree / "SIGNING-KEY.pub").read_bytes() == keys["clear-pub"].read_bytes()
    for name in ("CHECKSUM.SHA256", "CHECKSUM.SHA512"):
        text = (tree / f"{name}.sig").read_bytes()
        assert text.endswith(b"\n") and text.count(b"\n") == 1
        decoded = subprocess.run([need_tool("base64", "coreutils"), "-d", str(tree / f"{name}.sig")],
                                 capture_output=True, check=True).stdout
        (tree.parent / "sig.der").write_bytes(decoded)
        ok = openssl("dgst", "-sha256", "-verify", str(tree / "SIGNING-KEY.pub"), "-signature",
                     str(tree.parent / "sig.der"), str(tree / name))
        assert ok.returncode == 0, ok.stderr
    assert signing.verify_tree(tree, key.public_key) == []


def test_signing_again_changes_nothing(keys, tree):
    key = signing.load_signing_key(keys["clear"], environ={})
    signing.sign_checksums(tree, key)
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tree.iterdir()}
    signing.sign_checksums(tree, key)
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tree.iterdir()} == before


def test_verify_tree_names_every_problem(keys, tree):
    key = signing.load_signing_key(keys["clear"], environ={})
    other = signing.load_signing_key(keys["other"], environ={})
    signing.sign_checksums(tree, key)
    archive = tree / "FreeBSD-14.2-RELEASE-amd64-container-image-static.txz"
    archive.write_bytes(b"tampered")
    assert signing.verify_tree(tree, key.public_key) == [
        f"{archive.name}: SHA256 mismatch", f"{archive.name}: SHA512 mismatch"]
    write_checksums(tree, sorted(p.name for p in tree.glob("*.txz")))  # new sums, old signatures
    problems = signing.verify_tree(tree, key.public_key)
    assert problems[:2] == [p for p in problems if ".sig: does not verify" in p]
    assert [p.split(":")[0] for p in problems] == ["CHECKSUM.SHA256.sig", "CHECKSUM.SHA512.sig"]
    signing.sign_checksums(tree, key)
    assert signing.verify_tree(tree, key.public_key) == []
    assert signing.verify_tree(tree, other.public_key) == [
        f"CHECKSUM.SHA256.sig: does not verify CHECKSUM.SHA256 with key "
        f"sha256:{signing.key_fingerprint(other.public_key)[:16]}",
        f"CHECKSUM.SHA512.sig: does not verify CHECKSUM.SHA512 with key "
        f"sha256:{signing.key_fingerprint(other.public_key)[:16]}",
        f"SIGNING-KEY.pub: is not the trusted key sha256:{signing.key_fingerprint(other.public_key)[:16]}"]
    (tree / "CHECKSUM.SHA512.sig").write_bytes(b"%%% not base64 %%%\n")
    (tree / "CHECKSUM.SHA256.sig").unlink()
    assert signing.verify_tree(tree, key.public_key) == [
        "CHECKSUM.SHA256.sig: missing", "CHECKSUM.SHA512.sig: not a base64 signature"]
    (tree / "CHECKSUM.SHA512").unlink()
    assert "CHECKSUM.SHA512: missing" in signing.verify_tree(tree, key.public_key)
    with pytest.raises(InputError, match="CHECKSUM.SHA512 missing, nothing to sign"):
        signing.sign_checksums(tree, key)


def test_snapshot_suffix(keys, tmp_path):
    key = signing.load_signing_key(keys["clear"], environ={})
    (tmp_path / "a.txz").write_bytes(b"a")
    write_checksums(tmp_path, ["a.txz"], suffix="20241129-596a078c5f14-3")
    assert signing.sign_checksums(tmp_path, key, suffix="20241129-596a078c5f14-3")[0] == \
        "CHECKSUM.SHA256-20241129-596a078c5f14-3.sig"
    assert signing.verify_tree(tmp_path, key.public_key, suffix="20241129-596a078c5f14-3") == []
    assert base64.b64decode((tmp_path / "CHECKSUM.SHA512-20241129-596a078c5f14-3.sig").read_bytes())

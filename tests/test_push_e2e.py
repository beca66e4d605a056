"""push:<release> and publish:<release> through doit, against a real registry on loopback.

Checks the tags, a repeated push that uploads nothing, cosign signatures of
every manifest and index (verified independently, and refused for an altered
manifest or another key), SBOM artifacts found through the referrers tag, a
signed download tree and verify-tree, and a wrong password reported in one
line without the secret.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import toml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from release.cosign import parse_simple_signing, signature_tag, verify_cosign
from release.errors import SignatureError
from release.sbom import referrers_tag
from release.signing import load_public_key
from tests.conftest import PROJECT
from tests.pipeline_support import doit, error_lines
from tests.registry_support import PASSWORD, USER, skopeo, write_auth_file

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("push") / "work"
    doit(PROJECT / "config.toml", work, "build:demo")
    return work


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("keys")
    key = ec.generate_private_key(ec.SECP256R1())
    (d / "release.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    (d / "release.pub").write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                 serialization.PublicFormat.SubjectPublicKeyInfo))
    return d / "release.key", d / "release.pub"


def config_with(tmp_path: Path, registry_url: str | None, *, key: Path | None = None, pub: Path | None = None,
                tree: Path | None = None) -> Path:
    data = toml.loads((PROJECT / "config.toml").read_text())
    if registry_url:
        data["registries"] = {"test": {"url": registry_url}}
    data["signing"] = {"key": str(key or ""), "public_key": str(pub or "")}
    if tree:
        data["publish"] = {"root": str(tree), "keep": 7}
    path = tmp_path / "config.toml"
    path.write_text(toml.dumps(data))
    return path


def work_copy(built: Path, dest: Path) -> Path:
    shutil.copytree(built, dest, symlinks=True)
    return dest


def raw(registry, repo: str, ref: str) -> bytes:
    out = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/{repo}:{ref}"
                 if not ref.startswith("sha256:") else f"docker://{registry.host}/{repo}@{ref}")
    return out.encode()


def test_push_tags_signs_and_attaches_sboms(built, keys, plain_registry, tmp_path):
    key, pub = keys
    work = work_copy(built, tmp_path / "work")
    config = config_with(tmp_path, plain_registry.url, key=key)
    first = doit(config, work, "push:demo")
    assert re.search(r"freebsd-static: 14\.2-DEMO, 14\.2, 14 -> sha256:[0-9a-f]{64} \([1-9]\d* bytes uploaded",
                     first.stdout)
    layout = json.loads((work / "out/demo/oci/static/index.json").read_text())["manifests"][0]
    for tag in ("14.2-DEMO", "14.2", "14"):
        index = json.loads(raw(plain_registry, "freebsd-static", tag))
        assert index["mediaType"] == INDEX and len(index["manifests"]) == 2
    pushed = raw(plain_registry, "freebsd-static", "14.2-DEMO")
    assert pushed == (work / "blobs/sha256" / layout["digest"][7:]).read_bytes()

    # cosign signatures: one per per-arch manifest and one for the index, made with the configured key
    public = load_public_key(pub)
    image = json.loads((work / "build/demo/amd64/dynamic/image.json").read_text())
    for digest in (image["manifest"]["digest"],
                   json.loads((work / "out/demo/oci/dynamic/index.json").read_text())["manifests"][0]["digest"]):
        sig_manifest = raw(plain_registry, "freebsd-dynamic", signature_tag(digest))
        layer = json.loads(sig_manifest)["layers"][0]
        payload = raw_blob(plain_registry, "freebsd-dynamic", layer["digest"])
        signed = verify_cosign(sig_manifest, payload, public, digest)
        assert signed.docker_reference == f"{plain_registry.host}/freebsd-dynamic"
        with pytest.raises(SignatureError):                       # an altered manifest is refused
            verify_cosign(sig_manifest, payload, public, "sha256:" + "0" * 64)
        with pytest.raises(SignatureError):                       # so is another key
            verify_cosign(sig_manifest, payload, ec.generate_private_key(ec.SECP256R1()).public_key(), digest)
        assert parse_simple_signing(payload).manifest_digest == digest

    # the SBOM, found through the referrers tag of the image manifest
    referrers = json.loads(raw(plain_registry, "freebsd-dynamic", referrers_tag(image["manifest"]["digest"])))
    [entry] = referrers["manifests"]
    assert entry["artifactType"] == "application/spdx+json"
    artifact = json.loads(raw(plain_registry, "freebsd-dynamic", entry["digest"]))
    assert artifact["subject"]["digest"] == image["manifest"]["digest"]
    sbom = raw_blob(plain_registry, "freebsd-dynamic", artifact["layers"][0]["digest"])
    assert sbom == (work / "out/demo/amd64/FreeBSD-14.2-DEMO-amd64-container-image-dynamic.spdx.json").read_bytes()

    second = doit(config, work, "push:demo")                      # nothing new: zero bytes uploaded
    assert all(" (0 bytes uploaded" in line for line in second.stdout.splitlines() if " -> sha256:" in line)
    assert json.loads(raw(plain_registry, "freebsd-dynamic", referrers_tag(image["manifest"]["digest"])))[
        "manifests"] == [entry]                                   # the referrers list did not grow


def raw_blob(registry, repo: str, digest: str) -> bytes:
    import urllib.request
    with urllib.request.urlopen(f"{registry.url}/v2/{repo}/blobs/{digest}") as resp:
        return resp.read()


def test_a_wrong_password_is_one_line_without_the_secret(built, basic_registry, tmp_path):
    work = work_copy(built, tmp_path / "work")
    auth = write_auth_file(tmp_path / "auth.json", basic_registry.host, USER, "not-" + PASSWORD)
    proc = doit(config_with(tmp_path, basic_registry.url), work, "push:demo", check=False,
                env={"REGISTRY_AUTH_FILE": str(auth)})
    assert proc.returncode != 0
    [line] = error_lines(proc)
    assert line.startswith("push:demo: ") and "authentication failed" in line
    assert PASSWORD not in proc.stdout + proc.stderr and "not-" + PASSWORD not in proc.stdout + proc.stderr


def test_publish_pushes_and_signs_the_tree_and_verify_tree_checks_it(built, keys, plain_registry, tmp_path):
    key, pub = keys
    work = work_copy(built, tmp_path / "work")
    tree = tmp_path / "tree"
    config = config_with(tmp_path, plain_registry.url, key=key, pub=pub, tree=tree)
    proc = doit(config, work, "publish:demo")
    assert "push:demo" in proc.stdout
    latest = tree / "releases/OCI-IMAGES/14.2-DEMO/amd64/Latest"
    names = sorted(p.name for p in latest.iterdir())
    assert {"CHECKSUM.SHA256.sig", "CHECKSUM.SHA512.sig", "SIGNING-KEY.pub",
            "FreeBSD-14.2-DEMO-amd64-container-image-minimal.spdx.json"} <= set(names)
    assert "verified" in doit(config, work, "verify-tree").stdout

    archive = latest / "FreeBSD-14.2-DEMO-amd64-container-image-static.txz"
    data = bytearray(archive.read_bytes())
    data[-100] ^= 1
    archive.unlink()                        # a new file: the work directory's hardlinked original stays intact
    archive.write_bytes(bytes(data))
    bad = doit(config, work, "verify-tree", check=False)
    assert bad.returncode != 0
    assert "FreeBSD-14.2-DEMO-amd64-container-image-static.txz: SHA256 mismatch" in bad.stdout
    [line] = error_lines(bad)
    assert line.startswith("verify-tree: ")

    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    (tmp_path / "other.pub").write_bytes(other.public_bytes(serialization.Encoding.PEM,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo))
    wrong = doit(config_with(tmp_path, plain_registry.url, key=key, pub=tmp_path / "other.pub", tree=tree),
                 work, "verify-tree", check=False)
    assert wrong.returncode != 0 and "CHECKSUM.SHA256.sig" in wrong.stdout

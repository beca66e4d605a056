"""cosign-format image signatures: exact payload bytes, containers/image's parsing rules, openssl, and
skopeo's `sigstoreSigned` policy against a real registry (docker-registry) on 127.0.0.1."""
from __future__ import annotations

import base64
import hashlib
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from release import cosign, oci, signing
from release.errors import InputError, SignatureError
from tests.conftest import need_tool
from tests.oci_support import dir_entry, file_entry, write_image, write_layer

DIGEST = "sha256:" + "ab" * 32
REPO = "registry.example.org/freebsd/freebsd-runtime"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two P-256 key pairs made by openssl."""
    openssl = need_tool("openssl", "openssl")
    d = tmp_path_factory.mktemp("cosign-keys")
    out = {}
    for name in ("release", "stranger"):
        out[name], out[f"{name}-pub"] = d / f"{name}.pem", d / f"{name}.pub"
        subprocess.run([openssl, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", out[name]],
                       check=True)
        subprocess.run([openssl, "ec", "-in", out[name], "-pubout", "-out", out[f"{name}-pub"]],
                       check=True, capture_output=True)
    return out


def key(keys, name: str = "release") -> signing.SigningKey:
    return signing.load_signing_key(keys[name], environ={})


# --------------------------------------------------------------------------- the payload

def test_payload_is_byte_for_byte_what_cosign_writes():
    assert cosign.simple_signing_payload(REPO, DIGEST) == (
        b'{"critical":{"identity":{"docker-reference":"registry.example.org/freebsd/freebsd-runtime"},'
        b'"image":{"docker-manifest-digest":"sha256:' + b"ab" * 32 + b'"},'
        b'"type":"cosign container image signature"},"optional":null}')
    # cosign -a: a Go map, so sorted keys; Go's encoder escapes <, > and &
    assert cosign.simple_signing_payload(REPO, DIGEST, {"z": "1", "a": "<&>", "n": 3}).endswith(
        b'"optional":{"a":"\\u003c\\u0026\\u003e","n":3,"z":"1"}}')
    for bad in ((REPO + "@" + DIGEST, DIGEST), (REPO, "sha256:abc"), ("", DIGEST), (REPO + "\n", DIGEST)):
        with pytest.raises(InputError):
            cosign.simple_signing_payload(*bad)


# The cases containers/image's UntrustedSigstorePayload.UnmarshalJSON accepts and rejects
# (signature/internal/sigstore_payload.go and json.go: exact keys, no duplicates, typed values).
VALID = {"critical": {"identity": {"docker-reference": REPO}, "image": {"docker-manifest-digest": DIGEST},
                      "type": "cosign container image signature"}, "optional": None}


def mutated(path: list[str], value=None, delete: bool = False) -> bytes:
    doc = json.loads(json.dumps(VALID))
    target = doc
    for part in path[:-1]:
        target = target[part]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize("payload, error", [
    (mutated(["extra"], 1), "expected exactly"),
    (mutated(["optional"], delete=True), "expected exactly"),
    (mutated(["critical", "type"], "atomic container signature"), "unrecognised signature type"),
    (mutated(["critical", "identity", "extra"], "x"), "critical.identity: keys"),
    (mutated(["critical", "image", "docker-manifest-digest"], "sha256:ABC"), "invalid docker-manifest-digest"),
    (mutated(["critical", "image"], "sha256:" + "ab" * 32), "JSON object expected"),
    (mutated(["critical", "identity", "docker-reference"], 7), "not a string"),
    (mutated(["optional"], []), "JSON object expected"),
    (mutated(["optional"], {"creator": 1}), "creator is not a string"),
    (mutated(["optional"], {"timestamp": 1.5}), "timestamp is not an integer"),
    (json.dumps(VALID).encode()[:-1] + b',"optional":null}', "duplicate key 'optional'"),
    (json.dumps(VALID).encode() + b"[]", "not JSON"),
    (b"[]", "JSON object expected"),
])
def test_payload_parser_rejects_what_containers_image_rejects(payload, error):
    with pytest.raises(SignatureError, match=error):
        cosign.parse_simple_signing(payload)


def test_payload_parser_accepts_what_containers_image_accepts():
    signed = cosign.parse_simple_signing(cosign.simple_signing_payload(REPO, DIGEST))
    assert signed == cosign.SimpleSigning(REPO, DIGEST)
    # what containers/image itself writes: creator and an integral timestamp, unknown optional keys ignored
    extra = mutated(["optional"], {"creator": "containers/image 5.23", "timestamp": 1732838400.0, "x": [1]})
    assert cosign.parse_simple_signing(extra) == cosign.SimpleSigning(REPO, DIGEST, "containers/image 5.23",
                                                                      1732838400)


# --------------------------------------------------------------------------- the signature image

def test_signature_image_layout_and_openssl(keys, validate, tmp_path):
    sig = cosign.sign_image(key(keys), REPO, DIGEST)
    manifest = json.loads(sig.manifest)
    validate(manifest, "manifest")
    assert sig.tag == "sha256-" + "ab" * 32 + ".sig" and sig.fallback_tag == ""
    assert sig.media_type == manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert sig.digest == "sha256:" + hashlib.sha256(sig.manifest).hexdigest()
    assert list(manifest) == ["schemaVersion", "mediaType", "config", "layers"]  # go-containerregistry order
    [layer] = manifest["layers"]
    payload = sig.blobs[layer["digest"]]
    assert payload == cosign.simple_signing_payload(REPO, DIGEST)
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    assert layer["size"] == len(payload)
    config = sig.blobs[manifest["config"]["digest"]]
    assert manifest["config"] == {"mediaType": "application/vnd.oci.image.config.v1+json", "size": len(config),
                                  "digest": "sha256:" + hashlib.sha256(config).hexdigest()}
    assert json.loads(config) == {"architecture": "", "created": "0001-01-01T00:00:00Z",
                                  "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
                                  "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}, "config": {}}
    (tmp_path / "payload").write_bytes(payload)
    (tmp_path / "sig.der").write_bytes(base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"]))
    ok = subprocess.run([need_tool("openssl", "openssl"), "dgst", "-sha256", "-verify", keys["release-pub"],
                         "-signature", tmp_path / "sig.der", tmp_path / "payload"], capture_output=True)
    assert ok.returncode == 0, ok.stderr
    assert cosign.sign_image(key(keys), REPO, DIGEST) == sig  # deterministic


def test_verify_cosign(keys):
    release, stranger = key(keys), key(keys, "stranger")
    sig = cosign.sign_image(release, REPO, DIGEST)
    payload = sig.blobs[json.loads(sig.manifest)["layers"][0]["digest"]]
    assert cosign.verify_cosign(sig.manifest, payload, release.public_key, DIGEST, REPO).docker_reference == REPO
    with pytest.raises(SignatureError, match="cryptographic signature verification failed"):
        cosign.verify_cosign(sig.manifest, payload, stranger.public_key, DIGEST)
    other = "sha256:" + "cd" * 32
    with pytest.raises(SignatureError, match=f"sha256-{'cd' * 32}.sig: signature is for {DIGEST}"):
        cosign.verify_cosign(sig.manifest, payload, release.public_key, other)
    with pytest.raises(SignatureError, match="signature is for 'registry.example.org"):
        cosign.verify_cosign(sig.manifest, payload, release.public_key, DIGEST, "elsewhere.org/freebsd")
    with pytest.raises(SignatureError, match="no application/vnd.dev.cosign.simplesigning.v1\\+json layer"):
        cosign.verify_cosign(sig.manifest, payload.replace(b"freebsd-runtime", b"freebsd-minimal"),
                             release.public_key, DIGEST)
    stripped = json.loads(sig.manifest)
    del stripped["layers"][0]["annotations"]
    with pytest.raises(SignatureError, match="missing dev.cosignproject.cosign/signature annotation"):
        cosign.verify_cosign(json.dumps(stripped).encode(), payload, release.public_key, DIGEST)
    docker = json.loads(sig.manifest)
    docker["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json"
    with pytest.raises(SignatureError, match="manifest media type"):
        cosign.verify_cosign(json.dumps(docker).encode(), payload, release.public_key, DIGEST)


def test_signing_again_keeps_other_signatures(keys):
    release, stranger = key(keys), key(keys, "stranger")
    first = cosign.sign_image(stranger, REPO, DIGEST)
    both = cosign.sign_image(release, REPO, DIGEST, existing=first.manifest)
    layers = json.loads(both.manifest)["layers"]
    assert len(layers) == 2 and layers[0] == json.loads(first.manifest)["layers"][0]
    config = json.loads(both.blobs[json.loads(both.manifest)["config"]["digest"]])
    assert config["rootfs"]["diff_ids"] == [layer["digest"] for layer in layers]
    assert len(config["history"]) == 2
    payload = both.blobs[layers[1]["digest"]]
    cosign.verify_cosign(both.manifest, payload, release.public_key, DIGEST)
    cosign.verify_cosign(both.manifest, payload, stranger.public_key, DIGEST)
    assert cosign.sign_image(release, REPO, DIGEST, existing=both.manifest) == both


# --------------------------------------------------------------------------- containers/image against a real registry
#
# skopeo reads sigstore attachments with containers/image's own code (tag sha256-<hex>.sig, OCI manifest
# media type, payload blobs checked against their digests, MIME type and annotations kept) and, copying
# to a dir: destination, writes each one as signature-N in containers/image's format:
# "\x00sigstore-json\n" + {"mimeType", "payload" (base64), "annotations"}.  Debian 12's skopeo and
# podman are built with sigstore *verification* disabled ("Debian-local change: sigstore disabled");
# with an upstream build the policy tests below also see the cryptographic verdict.

SIGSTORE_PREFIX = b"\x00sigstore-json\n"
DEBIAN_DISABLED = "sigstore disabled"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """docker-registry (distribution 2.8) on 127.0.0.1 with storage in tmp_path; yields host:port."""
    binary = need_tool("docker-registry", "docker-registry")
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                      f"    rootdirectory: {tmp_path / 'storage'}\nhttp:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(400):
            try:
                if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None:
                pytest.fail(f"docker-registry exited: {proc.stderr.read().decode()[-500:]}")
            time.sleep(0.05)
        else:
            pytest.fail("docker-registry did not answer on /v2/")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def push(host: str, repository: str, attachment) -> None:
    """Upload an Attachment's blobs (POST, then a monolithic PUT) and its manifest under its tag."""
    base = f"http://{host}/v2/{repository}"
    for digest, data in attachment.blobs.items():
        start = requests.post(f"{base}/blobs/uploads/", timeout=30)
        assert start.status_code == 202, start.text
        location = start.headers["Location"]
        location = location if location.startswith("http") else f"http://{host}{location}"
        put = requests.put(location, params={"digest": digest}, data=data, timeout=30,
                           headers={"Content-Type": "application/octet-stream"})
        assert put.status_code == 201, put.text
    put = requests.put(f"{base}/manifests/{attachment.tag}", data=attachment.manifest, timeout=30,
                       headers={"Content-Type": attachment.media_type})
    assert put.status_code == 201, put.text


def push_image(tmp_path: Path, host: str, repository: str) -> dict:
    """A small real image pushed digest for digest by skopeo; its manifest descriptor."""
    blobs = tmp_path / "blobs"
    layer = write_layer(blobs, [(dir_entry("etc"), None), (file_entry("etc/motd", 5), b"hello")])
    image = write_image(blobs, [layer])
    layout = tmp_path / "layout"
    oci.write_layout(layout, blobs, oci.image_index([(oci.with_ref_name(image, "14.2"), {})], None))
    pushed = subprocess.run([need_tool("skopeo", "skopeo"), "--insecure-policy", "copy", "--dest-tls-verify=false",
                             "--preserve-digests", f"oci:{layout}:14.2", f"docker://{host}/{repository}:14.2"],
                            capture_output=True, text=True)
    assert pushed.returncode == 0, pushed.stderr
    return image


def registries_d(tmp_path: Path, host: str) -> Path:
    directory = tmp_path / "registries.d"
    directory.mkdir(exist_ok=True)
    (directory / "local.yaml").write_text(f"docker:\n  {host}:\n    use-sigstore-attachments: true\n")
    return directory


def skopeo_copy(tmp_path: Path, host: str, source: str, public_key: Path) -> subprocess.CompletedProcess:
    """`skopeo copy` to dir: under a policy requiring a sigstore signature by *public_key* for freebsd/*."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    policy = {"default": [{"type": "reject"}], "transports": {
        "docker": {f"{host}/freebsd": [{"type": "sigstoreSigned", "keyPath": str(public_key),
                                        "signedIdentity": {"type": "matchRepository"}}]},
        "dir": {"": [{"type": "insecureAcceptAnything"}]}}}
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    return subprocess.run([need_tool("skopeo", "skopeo"), "--policy", str(tmp_path / "policy.json"),
                           "--registries.d", str(registries_d(tmp_path, host)), "copy", "--src-tls-verify=false",
                           f"docker://{source}", f"dir:{tmp_path / 'copied'}"], capture_output=True, text=True)


def test_containers_image_reads_our_signatures_from_the_registry(keys, registry, tmp_path):
    repository = "freebsd/freebsd-runtime"
    image = push_image(tmp_path, registry, repository)
    reference = f"{registry}/{repository}"
    first = cosign.sign_image(key(keys, "stranger"), reference, image["digest"])
    push(registry, repository, first)
    push(registry, repository, cosign.sign_image(key(keys), reference, image["digest"], existing=first.manifest))
    out = tmp_path / "out"
    copied = subprocess.run([need_tool("skopeo", "skopeo"), "--insecure-policy", "--registries.d",
                             str(registries_d(tmp_path, registry)), "copy", "--src-tls-verify=false",
                             f"docker://{reference}:14.2", f"dir:{out}"], capture_output=True, text=True)
    assert copied.returncode == 0, copied.stderr
    assert "sha256:" + hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest() == image["digest"]
    found = sorted(out.glob("signature-*"))
    assert [p.name for p in found] == ["signature-1", "signature-2"]
    payload = cosign.simple_signing_payload(reference, image["digest"])
    for path, signer in zip(found, ("stranger", "release"), strict=True):
        blob = path.read_bytes()
        assert blob.startswith(SIGSTORE_PREFIX)
        seen = json.loads(blob[len(SIGSTORE_PREFIX):])
        assert seen["mimeType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
        assert base64.b64decode(seen["payload"]) == payload
        assert cosign.parse_simple_signing(payload) == cosign.SimpleSigning(reference, image["digest"])
        (tmp_path / "sig.der").write_bytes(base64.b64decode(seen["annotations"]["dev.cosignproject.cosign/signature"]))
        (tmp_path / "payload").write_bytes(payload)
        verdict = subprocess.run([need_tool("openssl", "openssl"), "dgst", "-sha256", "-verify",
                                  keys[f"{signer}-pub"], "-signature", tmp_path / "sig.der", tmp_path / "payload"],
                                 capture_output=True)
        assert verdict.returncode == 0, verdict.stderr


def test_skopeo_sigstore_signed_policy(keys, registry, tmp_path):
    repository = "freebsd/freebsd-runtime"
    image = push_image(tmp_path, registry, repository)
    source = f"{registry}/{repository}:14.2"
    unsigned = skopeo_copy(tmp_path / "unsigned", registry, source, keys["release-pub"])
    assert unsigned.returncode != 0 and "no signature exists" in unsigned.stderr

    push(registry, repository, cosign.sign_image(key(keys, "stranger"), f"{registry}/{repository}", image["digest"]))
    refused = skopeo_copy(tmp_path / "stranger", registry, source, keys["release-pub"])
    assert refused.returncode != 0
    assert "no signature exists" not in refused.stderr  # found and taken for a sigstore signature
    disabled = DEBIAN_DISABLED in refused.stderr
    if not disabled:
        assert "cryptographic signature verification failed" in refused.stderr

    push(registry, repository, cosign.sign_image(key(keys), f"{registry}/{repository}", image["digest"]))
    accepted = skopeo_copy(tmp_path / "signed", registry, source, keys["release-pub"])
    if disabled:
        assert accepted.returncode != 0 and DEBIAN_DISABLED in accepted.stderr
    else:
        assert accepted.returncode == 0, accepted.stderr

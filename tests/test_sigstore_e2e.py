"""OpenPGP image signatures end to end: publish:demo, then skopeo, podman and gpg judge the result.

The demo release is pushed to Debian's docker-registry on 127.0.0.1 (namespace
freebsd) and published into a download tree that a real HTTP server on
127.0.0.1 serves, with the OpenPGP key given as CI gives it (key file and
passphrase in the environment).  Then, with the tree's own policy.json
(signedBy the release key) and registries.d:

- skopeo copy of one architecture and of the whole index (--all), by tag and
  by digest, over HTTP and from the store as file://, is accepted; so is
  podman pull after the README's three commands;
- refused: an unsigned image, a manifest changed after signing, a signature by
  another key, a signature for another name or tag, a truncated signature file;
- gpg --verify accepts the CHECKSUM signatures and refuses an altered CHECKSUM;
- verify-tree checks the .asc files and every signature of the store;
- publishing again makes no signature and rewrites no file.

Every consumer runs with throw-away configuration: --policy/--registries.d for
skopeo, a private HOME, --signature-policy and storage for podman, a private
GNUPGHOME for gpg; the host's /etc/containers is checked to be untouched.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import toml

from release import openpgp, sigstore
from release.registry import Registry
from release.sigpublish import registries_d, registries_d_name
from tests.build_support import PrivatePodman, stamps
from tests.conftest import PROJECT, need_tool
from tests.httpserver import RepoServer, port_is_closed
from tests.openpgp_support import PASSPHRASE, Keys, consumer_gnupg, gpg
from tests.pipeline_support import doit, error_lines
from tests.registry_support import RegistryServer

NAMESPACE = "freebsd"
HOST_POLICY = Path("/etc/containers/policy.json")


@dataclass
class Published:
    work: Path
    tree: Path
    config: Path
    registry: RegistryServer
    web: RepoServer
    keys: Keys
    first: str

    @property
    def store(self) -> Path:
        return self.tree / "signatures"

    @property
    def host(self) -> str:
        return self.registry.host

    def ref(self, name: str, tag: str = "14.2-DEMO") -> str:
        return f"docker://{self.host}/{NAMESPACE}/{name}:{tag}"


def _host_policy() -> bytes | None:
    return HOST_POLICY.read_bytes() if HOST_POLICY.exists() else None


@pytest.fixture(scope="module")
def published(release_keys, tmp_path_factory) -> Iterator[Published]:
    before = _host_policy()
    base = tmp_path_factory.mktemp("sigstore")
    work = base / "work"
    doit(PROJECT / "config.toml", work, "build:demo")
    tree = base / "tree"
    tree.mkdir()
    with RegistryServer(base / "registry") as registry, RepoServer(tree) as web:
        data = toml.loads((PROJECT / "config.toml").read_text())
        data["registries"] = {"test": {"url": registry.url, "namespace": NAMESPACE}}
        data["publish"] = {"root": str(tree), "keep": 7}
        data["signing"].update(openpgp_public_key=str(release_keys.release.public),
                               lookaside_url=web.url + "/signatures")
        config = base / "config.toml"
        config.write_text(toml.dumps(data))
        first = doit(config, work, "publish:demo", env=release_keys.env())
        yield Published(work, tree, config, registry, web, release_keys, first.stdout + first.stderr)
    assert port_is_closed(registry.port) and port_is_closed(web.port)
    assert _host_policy() == before, "the host's /etc/containers/policy.json was changed"


def skopeo_copy(p: Published, *args: str, policy: Path | None = None, registries: Path | None = None,
                dest: Path | None = None) -> subprocess.CompletedProcess:
    """skopeo copy with the tree's policy and registries.d (or the given ones) into a scratch OCI layout."""
    dest = dest or Path(tempfile.mkdtemp(prefix="skopeo-dest-"))
    try:
        return subprocess.run([need_tool("skopeo", "skopeo"), "--policy", str(policy or p.store / "policy.json"),
                               "--registries.d", str(registries or p.store / "registries.d"),
                               "--override-os", "freebsd", "copy", "--remove-signatures",
                               "--src-tls-verify=false", *args, f"oci:{dest}:copy"],
                              capture_output=True, text=True, timeout=300)
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def accepted(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr
    print(f"skopeo accepted: {' '.join(proc.args[1:])}\n{proc.stdout}")
    return proc.stdout


def refused(proc: subprocess.CompletedProcess, reason: str) -> str:
    assert proc.returncode != 0, proc.stdout
    [line] = error_lines(proc)
    assert "Source image rejected: " in line and reason in line, line
    print(f"skopeo refused: {line}")                  # shown with pytest -s: the lines a release note quotes
    return line


def index_digest(p: Published, flavour: str) -> str:
    return json.loads((p.work / "out/demo/oci" / flavour / "index.json").read_text())["manifests"][0]["digest"]


def manifest_digest(p: Published, arch: str, flavour: str) -> str:
    return json.loads((p.work / "build/demo" / arch / flavour / "image.json").read_text())["manifest"]["digest"]


def store_copy(p: Published, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the tree's store and a registries.d naming it as file://: (store, registries.d)."""
    store = tmp_path / "store"
    shutil.copytree(p.store, store)
    registries = tmp_path / "registries.d"
    registries.mkdir()
    (registries / registries_d_name(p.host)).write_bytes(
        registries_d(p.host, [f"{p.host}/{NAMESPACE}"], store.as_uri()))
    return store, registries


def lookaside(store: Path, p: Published, name: str, digest: str) -> Path:
    return store / p.host / NAMESPACE / sigstore.lookaside_dir(name, digest)


def copy_image(p: Published, source: str, dest: str) -> None:
    """What anyone with push access can do: put a signed image under another name or tag."""
    anything = Path(tempfile.mkdtemp(prefix="policy-")) / "policy.json"
    anything.write_text('{"default":[{"type":"insecureAcceptAnything"}]}')
    proc = subprocess.run([need_tool("skopeo", "skopeo"), "--policy", str(anything), "copy", "--all",
                           "--src-tls-verify=false", "--dest-tls-verify=false", source, dest],
                          capture_output=True, text=True, timeout=300)
    shutil.rmtree(anything.parent)
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------- accepted

def test_publish_signs_every_manifest_and_index_per_tag_and_lays_out_the_store(published):
    p = published
    assert f"demo: OpenPGP signatures by {p.keys.release.fingerprint}: 27 made, 0 kept" in p.first
    secret = p.keys.release.secret.read_text().splitlines()[3]
    assert PASSPHRASE not in p.first and secret not in p.first          # nothing secret in doit's output
    for flavour in ("static", "dynamic", "minimal"):
        for digest in (index_digest(p, flavour), manifest_digest(p, "amd64", flavour),
                       manifest_digest(p, "aarch64", flavour)):
            directory = lookaside(p.store, p, f"freebsd-{flavour}", digest)
            assert sorted(x.name for x in directory.iterdir()) == ["signature-1", "signature-2", "signature-3"]
            with openpgp.open_verifier(p.keys.release.public.read_bytes(), "release key") as verifier:
                identities = [sigstore.check_signature(verifier, f.read_bytes(), p.host, f"{NAMESPACE}/freebsd-"
                                                       f"{flavour}", digest, f.name).docker_reference
                              for f in sorted(directory.iterdir())]
            assert identities == [f"{p.host}/{NAMESPACE}/freebsd-{flavour}:{t}" for t in ("14", "14.2", "14.2-DEMO")]
    assert (p.store / "SIGNING-KEY.asc").read_bytes().startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert json.loads((p.store / "policy.json").read_text())["transports"]["docker"][f"{p.host}/{NAMESPACE}"][0][
        "type"] == "signedBy"
    yaml = (p.store / "registries.d" / registries_d_name(p.host)).read_text()
    assert f'"lookaside": "{p.web.url}/signatures/{p.host}"' in yaml
    latest = p.tree / "releases/OCI-IMAGES/14.2-DEMO/amd64/Latest"
    assert {"CHECKSUM.SHA256.asc", "CHECKSUM.SHA512.asc", "SIGNING-KEY.asc"} <= {x.name for x in latest.iterdir()}


def test_skopeo_accepts_one_arch_and_the_whole_index_over_http(published):
    p = published
    before = len(p.web.requests)
    one = accepted(skopeo_copy(p, "--override-arch", "amd64", p.ref("freebsd-static")))
    assert "Writing manifest to image destination\nStoring signatures" in one
    accepted(skopeo_copy(p, "--override-arch", "arm64", p.ref("freebsd-dynamic", "14.2")))
    every = accepted(skopeo_copy(p, "--all", p.ref("freebsd-minimal", "14")))
    assert "Copying 2 of 2 images in list" in every and "Writing manifest list to image destination" in every
    by_digest = f"docker://{p.host}/{NAMESPACE}/freebsd-static@{manifest_digest(p, 'amd64', 'static')}"
    accepted(skopeo_copy(p, by_digest))
    fetched = {r.path for r in p.web.requests[before:] if r.status == 200}
    assert f"/signatures/{p.host}/{NAMESPACE}/freebsd-minimal@sha256=" \
           f"{manifest_digest(p, 'aarch64', 'minimal')[7:]}/signature-1" in fetched


def test_skopeo_accepts_the_store_as_a_file_url(published, tmp_path):
    p = published
    store, registries = store_copy(p, tmp_path)
    accepted(skopeo_copy(p, "--all", p.ref("freebsd-static"), registries=registries))


def test_podman_pull_verifies_after_the_three_readme_commands(published, tmp_path):
    p = published
    curl = need_tool("curl", "curl")
    home = tmp_path / "home"
    config = home / ".config/containers"
    (config / "registries.d").mkdir(parents=True)
    policy = config / "policy.json"
    policy.write_text('{"default":[{"type":"insecureAcceptAnything"}]}')     # what containers-common ships
    key = home / "pki/freebsd.asc"
    yaml = config / "registries.d" / registries_d_name(p.host)
    for url, dest in ((f"{p.web.url}/signatures/SIGNING-KEY.asc", key),
                      (f"{p.web.url}/signatures/registries.d/{registries_d_name(p.host)}", yaml)):
        subprocess.run([curl, "-fsS", "--create-dirs", "-o", str(dest), url], check=True, timeout=60)
    podman = PrivatePodman(tmp_path / "podman")
    try:
        env = {"HOME": str(home)}
        trust = podman.run("image", "trust", "set", "--policypath", str(policy), "-f", str(key),
                           f"{p.host}/{NAMESPACE}", env=env)
        assert trust.returncode == 0, trust.stderr
        assert json.loads(policy.read_text())["transports"]["docker"][f"{p.host}/{NAMESPACE}"] == [
            {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(key)}]
        pull = ("pull", "--signature-policy", str(policy), "--tls-verify=false", "--os", "freebsd", "--arch", "amd64")
        ok = podman.run(*pull, p.ref("freebsd-minimal")[len("docker://"):], env=env)
        assert ok.returncode == 0, ok.stderr
        assert "Storing signatures" in ok.stderr
        copy_image(p, p.ref("freebsd-minimal"), p.ref("freebsd-unsigned"))
        bad = podman.run(*pull, p.ref("freebsd-unsigned")[len("docker://"):], env=env)
        assert bad.returncode != 0
        assert "Source image rejected: A signature was required, but no signature exists" in bad.stderr
    finally:
        podman.close()


# --------------------------------------------------------------------------- refused

def test_skopeo_refuses_an_unsigned_image(published):
    p = published
    copy_image(p, p.ref("freebsd-static"), p.ref("freebsd-nosig"))
    refused(skopeo_copy(p, "--override-arch", "amd64", p.ref("freebsd-nosig")),
            "A signature was required, but no signature exists")


def test_skopeo_refuses_a_manifest_changed_after_signing(published, tmp_path):
    p = published
    original = manifest_digest(p, "amd64", "static")
    manifest = json.loads((p.work / "blobs/sha256" / original[7:]).read_bytes())
    manifest["annotations"] = {"org.example.changed": "after signing"}
    data = json.dumps(manifest).encode()
    changed = "sha256:" + hashlib.sha256(data).hexdigest()
    (p.work / "blobs/sha256" / changed[7:]).write_bytes(data)
    with Registry(p.registry.url) as client:
        client.push_manifest_tree(f"{NAMESPACE}/freebsd-static", p.work / "blobs/sha256",
                                  {"mediaType": manifest["mediaType"], "digest": changed, "size": len(data)},
                                  tags=["changed"])
    refused(skopeo_copy(p, f"docker://{p.host}/{NAMESPACE}/freebsd-static@{changed}"),
            "A signature was required, but no signature exists")
    # and with the original's signatures put where the changed manifest's would be
    store, registries = store_copy(p, tmp_path)
    shutil.copytree(lookaside(store, p, "freebsd-static", original), lookaside(store, p, "freebsd-static", changed))
    refused(skopeo_copy(p, f"docker://{p.host}/{NAMESPACE}/freebsd-static@{changed}", registries=registries),
            f"Signature for digest {original} does not match")


def test_skopeo_refuses_a_signature_by_another_key(published, tmp_path):
    p = published
    store, registries = store_copy(p, tmp_path)
    digest = manifest_digest(p, "amd64", "dynamic")
    directory = lookaside(store, p, "freebsd-dynamic", digest)
    with openpgp.open_signer(environ={"RELEASE_OPENPGP_KEY_FILE": str(p.keys.other.secret)}) as other:
        for n, tag in enumerate(("14", "14.2", "14.2-DEMO"), 1):
            identity = f"{p.host}/{NAMESPACE}/freebsd-dynamic:{tag}"
            (directory / f"signature-{n}").write_bytes(other.sign(sigstore.atomic_payload(identity, digest, "x", 1)))
    refused(skopeo_copy(p, "--override-arch", "amd64", p.ref("freebsd-dynamic"), registries=registries),
            "None of the signatures were accepted")


def test_skopeo_refuses_a_signature_for_another_name_or_tag(published, tmp_path):
    p = published
    copy_image(p, p.ref("freebsd-static"), p.ref("freebsd-static", "unsigned-tag"))
    refused(skopeo_copy(p, "--override-arch", "amd64", p.ref("freebsd-static", "unsigned-tag")),
            f"Signature for identity {p.host}/{NAMESPACE}/freebsd-static:14.2-DEMO is not accepted")
    copy_image(p, p.ref("freebsd-static"), p.ref("freebsd-renamed"))
    store, registries = store_copy(p, tmp_path)
    for digest in (index_digest(p, "static"), manifest_digest(p, "amd64", "static")):
        shutil.copytree(lookaside(store, p, "freebsd-static", digest), lookaside(store, p, "freebsd-renamed", digest))
    refused(skopeo_copy(p, "--override-arch", "amd64", p.ref("freebsd-renamed"), registries=registries),
            f"Signature for identity {p.host}/{NAMESPACE}/freebsd-static:14.2-DEMO is not accepted")


def test_skopeo_refuses_a_truncated_signature_file(published, tmp_path):
    p = published
    store, registries = store_copy(p, tmp_path)
    directory = lookaside(store, p, "freebsd-minimal", manifest_digest(p, "aarch64", "minimal"))
    for f in directory.iterdir():
        f.write_bytes(f.read_bytes()[:len(f.read_bytes()) // 2])
    refused(skopeo_copy(p, "--override-arch", "arm64", p.ref("freebsd-minimal"), registries=registries),
            "None of the signatures were accepted")


# --------------------------------------------------------------------------- checksums, verify-tree, republish

def test_gpg_verifies_the_checksum_signatures_and_refuses_an_altered_checksum(published, tmp_path):
    p = published
    latest = p.tree / "releases/OCI-IMAGES/14.2-DEMO/aarch64/Latest"
    with consumer_gnupg(latest / "SIGNING-KEY.asc") as home:
        for name in ("CHECKSUM.SHA256", "CHECKSUM.SHA512"):
            good = gpg(home, "--verify", str(latest / f"{name}.asc"), str(latest / name))
            assert 'Good signature from "FreeBSD test release key <re@example.org>"' in good.stderr.decode()
            print(f"gpg --verify {name}.asc {name}:\n{good.stderr.decode()}")
        altered = tmp_path / "CHECKSUM.SHA256"
        altered.write_bytes((latest / "CHECKSUM.SHA256").read_bytes().replace(b"= ", b"= 0", 1)[:-1])
        bad = gpg(home, "--verify", str(latest / "CHECKSUM.SHA256.asc"), str(altered), check=False)
        assert bad.returncode == 1
        assert 'BAD signature from "FreeBSD test release key <re@example.org>"' in bad.stderr.decode()
        print(f"gpg --verify CHECKSUM.SHA256.asc <altered CHECKSUM.SHA256>:\n{bad.stderr.decode()}")


def test_verify_tree_checks_the_asc_files_and_every_stored_signature(published, tmp_path):
    p = published
    assert "2 published directories verified" in doit(p.config, p.work, "verify-tree").stdout
    tree = tmp_path / "tree"
    shutil.copytree(p.tree, tree)
    data = toml.loads(p.config.read_text())
    data["publish"]["root"] = str(tree)
    config = tmp_path / "config.toml"
    config.write_text(toml.dumps(data))
    sig = lookaside(tree / "signatures", p, "freebsd-static", index_digest(p, "static")) / "signature-2"
    sig.write_bytes(sig.read_bytes()[:100])
    checksum = tree / "releases/OCI-IMAGES/14.2-DEMO/amd64/Latest/CHECKSUM.SHA512"
    checksum.unlink()                                   # a new file: the work directory's hardlink stays intact
    checksum.write_text("SHA512 (x) = 00\n")
    bad = doit(config, p.work, "verify-tree", check=False)
    assert bad.returncode != 0
    assert "releases/OCI-IMAGES/14.2-DEMO/amd64/Latest: CHECKSUM.SHA512.asc: signature bad" in bad.stdout
    assert f"signatures/{p.host}/{NAMESPACE}/freebsd-static@{index_digest(p, 'static').replace(':', '=')}/" \
           f"signature-2: " in bad.stdout


def test_publishing_again_signs_nothing_and_rewrites_no_file(published):
    p = published
    before = stamps(p.tree)
    again = doit(p.config, p.work, "publish:demo", env=p.keys.env())
    assert f"OpenPGP signatures by {p.keys.release.fingerprint}: 0 made, 27 kept" in again.stdout
    assert stamps(p.tree) == before

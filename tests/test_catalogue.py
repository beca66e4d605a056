"""Catalogues: meta.conf, writing signed archives like `pkg repo`, reading them back.

Signatures are cross-checked against the openssl CLI (the tool FreeBSD's
signing command uses) and archives against the system tar/zstd/xz.
"""
from __future__ import annotations

import hashlib
import io
import json
import lzma
import shutil
import subprocess
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import zstandard
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.serialization import (Encoding, NoEncryption, PrivateFormat,
                                                          load_pem_private_key)

from release.catalogue import RepoMeta, catalogue_candidates, open_catalogue, parse_meta
from release.pkgsig import load_fingerprints, read_fingerprint
from release.errors import ConfigError, RepositoryError, SignatureError
from release.demo.repowriter import compress, fingerprint_file, public_key_pem, write_repository
from release.sums import pkg2_sum, sha256_sum
from tests.conftest import need_tool

REAL_META_CONF = (b'version = 2;\npacking_format = "tzst";\nmanifests = "packagesite.yaml";\n'
                  b'data = "data";\nfilesite = "filesite.yaml";\nmanifests_archive = "packagesite";\n'
                  b'filesite_archive = "filesite";\n')
SOURCE = "https://pkg.example.org/FreeBSD:14:amd64/base_release_2/data.pkg"


# -- fixtures -------------------------------------------------------------------
@pytest.fixture(scope="session")
def keys() -> SimpleNamespace:
    def pem() -> bytes:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    signer, stranger = pem(), pem()
    return SimpleNamespace(signer=signer, stranger=stranger, signer_pub=public_key_pem(signer),
                           stranger_pub=public_key_pem(stranger))


def fp(pub: bytes) -> str:
    return hashlib.sha256(pub).hexdigest()


def trust_store(where: Path, trusted: list[bytes], revoked: list[bytes] = ()) -> Path:
    for sub, pubs in (("trusted", trusted), ("revoked", revoked)):
        (where / sub).mkdir(parents=True, exist_ok=True)
        for index, pub in enumerate(pubs):
            (where / sub / f"key-{index}").write_bytes(fingerprint_file(pub))
    return where


def make_entries(repo: Path) -> list[dict]:
    """Entries as a caller builds them from .pkg files written at the repo root."""
    specs = [
        ("FreeBSD-runtime", "Core system", {"FreeBSD-clibs": {"origin": "base", "version": "14.2"}}, "both"),
        ("FreeBSD-clibs", "Core C Libraries", {}, "path"),
        ("FreeBSD-zoneinfo", "Timezone database", {}, "repopath"),
    ]
    repo.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, (name, comment, deps, where) in enumerate(specs):
        blob = f"{name} package bytes\n".encode() * (50 + index)
        filename = f"{name}-14.2.pkg"
        (repo / filename).write_bytes(blob)
        row = {"name": name, "origin": "base", "version": "14.2", "comment": comment,
               "maintainer": "re@FreeBSD.org", "www": "https://www.FreeBSD.org",
               "abi": "FreeBSD:14:amd64", "arch": "freebsd:14:x86:64", "prefix": "/",
               "sum": pkg2_sum(blob) if index != 1 else sha256_sum(blob), "flatsize": 1000 * (index + 1)}
        if where in ("path", "both"):
            row["path"] = filename
        if where in ("repopath", "both"):
            row["repopath"] = filename
        row.update({"licenselogic": "single", "licenses": ["BSD2CLAUSE"], "desc": comment,
                    "deps": deps, "categories": ["base"], "annotations": {"set": "minimal"},
                    "pkgsize": len(blob)})
        rows.append(row)
    return rows


def tar_members(archive: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    """Independent reader: decompress by looking at the file, list the tar."""
    raw = archive.read_bytes()
    if raw.startswith(b"\x28\xb5\x2f\xfd"):
        raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()
    elif raw.startswith(b"\xfd7zXZ"):
        raw = lzma.decompress(raw)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return [(m, tar.extractfile(m).read()) for m in tar.getmembers()]


def write_archive(path: Path, members: list[tuple[str, bytes]], packing_format: str = "tzst") -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(compress(buffer.getvalue(), packing_format))
    return path


def sign(key_pem: bytes, payload: bytes) -> bytes:
    key = load_pem_private_key(key_pem, password=None)
    return key.sign(hashlib.sha256(payload).hexdigest().encode(), padding.PKCS1v15(), SHA256())


def signed_archive(path: Path, member: str, payload: bytes, keys: SimpleNamespace) -> Path:
    return write_archive(path, [(f"{member}.sig", sign(keys.signer, payload)),
                                (f"{member}.pub", keys.signer_pub), (member, payload)])


@pytest.fixture
def repo(tmp_path: Path, keys: SimpleNamespace) -> SimpleNamespace:
    root = tmp_path / "repo"
    entries = make_entries(root)
    write_repository(root, entries, signing_key=keys.signer, signature_type="fingerprints")
    return SimpleNamespace(root=root, entries=entries,
                           trust=trust_store(tmp_path / "keys", [keys.signer_pub]))


# -- meta.conf ---------------------------------------------------------------------
def test_meta_conf_is_byte_identical_to_pkg_repo_output(repo):
    assert (repo.root / "meta.conf").read_bytes() == REAL_META_CONF
    assert (repo.root / "meta").read_bytes() == REAL_META_CONF
    assert parse_meta(REAL_META_CONF, "meta.conf") == RepoMeta()


def test_parse_meta_values_and_case_insensitive_keys():
    meta = parse_meta(b'VERSION = 1;\nPacking_Format = "txz";\ndata_archive = "catalogue";\n'
                      b'eol = 1735689600;\nmaintainer = "re@FreeBSD.org"\nunknown_key = 7\n', "meta.conf")
    assert (meta.version, meta.packing_format, meta.eol, meta.maintainer) == \
        (1, "txz", 1735689600, "re@FreeBSD.org")
    assert meta.data_archive == "data"  # pkg's meta parser never reads data_archive
    assert meta.manifests == "packagesite.yaml"


@pytest.mark.parametrize("text, message", [
    (b'packing_format = "tzst";\n', "line 1: no 'version' key"),
    (b'\nversion = "2";\n', "line 2: version: expected an integer, found '2'"),
    (b'version = 3;\n', "line 1: version: unsupported repository meta version 3"),
    (b'version = 2;\npacking_format = "rar";\n', "line 2: packing_format: unknown packing format 'rar'"),
    (b'version = 2;\n\n\nmanifests_archive = "../../etc/passwd";\n',
     "line 4: manifests_archive: '../../etc/passwd' is not"),
    (b'version = 2;\nmanifests = [a];\n', "line 2: manifests: expected a string"),
    (b'version = 2;\nVersion = 2;\n', "line 2: duplicate key 'version'"),
    (b'version = 2;\npacking_format = "tzst"\ndata = \n', "line 3: missing value for key 'data'"),
    (b'version = 2;\n\xff\n', "not UTF-8 text"),
])
def test_malformed_meta_names_url_and_line(text, message):
    url = "https://pkg.example.org/FreeBSD:14:amd64/base_latest/meta.conf"
    with pytest.raises(RepositoryError) as info:
        parse_meta(text, url)
    assert str(info.value).startswith(url + ": ")
    assert message in str(info.value)


def test_catalogue_candidates_follow_pkg_order():
    assert catalogue_candidates(RepoMeta()) == ["data.pkg", "data.tzst", "packagesite.pkg", "packagesite.tzst"]
    meta = parse_meta(b'version = 2; packing_format = "txz"; manifests_archive = "site";\n', "m")
    assert catalogue_candidates(meta) == ["data.pkg", "data.txz", "site.pkg", "site.txz"]


# -- writing ------------------------------------------------------------------------
def test_archive_layout_matches_pkg_repo(repo, keys):
    data = tar_members(repo.root / "data.pkg")
    assert [m.name for m, _ in data] == ["data.sig", "data.pub", "data"]
    assert all((m.uname, m.gname, m.mode, m.mtime, m.uid, m.isfile()) == ("root", "wheel", 0o644, 0, 0, True)
               for m, _ in data)
    assert data[1][1] == keys.signer_pub
    payload = data[2][1]
    assert payload.startswith(b'{"groups":[],"expired_packages":[],"packages":[{"name":"FreeBSD-clibs",')
    assert b"\n" not in payload
    site = tar_members(repo.root / "packagesite.pkg")
    assert [m.name for m, _ in site] == ["packagesite.yaml.sig", "packagesite.yaml.pub", "packagesite.yaml"]
    lines = site[2][1].decode().splitlines()
    assert [line.split('"')[3] for line in lines] == ["FreeBSD-clibs", "FreeBSD-runtime", "FreeBSD-zoneinfo"]


def test_output_is_deterministic_whatever_the_entry_order(tmp_path, keys):
    entries = make_entries(tmp_path / "a")
    write_repository(tmp_path / "a", entries, signing_key=keys.signer, signature_type="fingerprints")
    make_entries(tmp_path / "b")
    write_repository(tmp_path / "b", list(reversed(entries)), signing_key=keys.signer,
                     signature_type="fingerprints")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert {"data.pkg", "packagesite.pkg", "meta", "meta.conf"} <= set(names)
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_system_tools_read_the_archives(repo, tmp_path):
    zstd, tar = need_tool("zstd", "zstd"), need_tool("tar", "tar")
    plain = subprocess.run([zstd, "-dc", repo.root / "data.pkg"], check=True, capture_output=True).stdout
    listing = subprocess.run([tar, "-tvf", "-"], input=plain, check=True,
                             capture_output=True).stdout.decode().splitlines()
    assert [line.split()[-1] for line in listing] == ["data.sig", "data.pub", "data"]
    assert all(line.split()[1] == "root/wheel" and line.startswith("-rw-r--r--") for line in listing)
    write_repository(tmp_path / "x", repo.entries, signing_key=None, signature_type="none",
                     packing_format="txz", formats={"packagesite"})
    need_tool("xz", "xz-utils")
    out = subprocess.run([tar, "-xJOf", str(tmp_path / "x" / "packagesite.pkg"), "packagesite.yaml"],
                         check=True, capture_output=True).stdout
    assert out.count(b"\n") == 3 and b'"name":"FreeBSD-zoneinfo"' in out


def test_signatures_match_the_openssl_cli(repo, keys, tmp_path):
    openssl = need_tool("openssl", "openssl")
    (tmp_path / "key.pem").write_bytes(keys.signer)
    (tmp_path / "pub.pem").write_bytes(keys.signer_pub)
    for archive, member in (("data.pkg", "data"), ("packagesite.pkg", "packagesite.yaml")):
        members = {m.name: blob for m, blob in tar_members(repo.root / archive)}
        (tmp_path / "sig").write_bytes(members[f"{member}.sig"])
        (tmp_path / "hex").write_bytes(hashlib.sha256(members[member]).hexdigest().encode())
        verify = subprocess.run([openssl, "dgst", "-sha256", "-verify", tmp_path / "pub.pem",
                                 "-signature", tmp_path / "sig", tmp_path / "hex"], capture_output=True, text=True)
        assert verify.returncode == 0 and "Verified OK" in verify.stdout
        made = subprocess.run([openssl, "dgst", "-sha256", "-sign", tmp_path / "key.pem", tmp_path / "hex"],
                              check=True, capture_output=True).stdout
        assert made == members[f"{member}.sig"]  # PKCS#1 v1.5 is deterministic


def test_pubkey_mode_signature_member_carries_a_trailing_nul(tmp_path, keys):
    openssl = need_tool("openssl", "openssl")
    write_repository(tmp_path / "r", make_entries(tmp_path / "r"), signing_key=keys.signer,
                     signature_type="pubkey", formats={"data"})
    members = tar_members(tmp_path / "r" / "data.pkg")
    assert [m.name for m, _ in members] == ["signature", "data"]
    signature, payload = members[0][1], members[1][1]
    assert len(signature) == 257 and signature.endswith(b"\0")
    (tmp_path / "key.pem").write_bytes(keys.signer)
    made = subprocess.run([openssl, "dgst", "-sha256", "-sign", tmp_path / "key.pem"],
                          input=hashlib.sha256(payload).hexdigest().encode(), check=True,
                          capture_output=True).stdout
    assert signature[:-1] == made
    assert not (tmp_path / "r" / "packagesite.pkg").exists()


def test_legacy_copies(repo, tmp_path, keys):
    write_repository(tmp_path / "c", repo.entries, signing_key=keys.signer, signature_type="fingerprints",
                     legacy_copies=True)
    for archive in ("data", "packagesite"):
        assert (tmp_path / "c" / f"{archive}.tzst").read_bytes() == (tmp_path / "c" / f"{archive}.pkg").read_bytes()


@pytest.mark.parametrize("kwargs, message", [
    (dict(signing_key=None, signature_type="fingerprints"), "needs a signing key"),
    (dict(signing_key=b"k", signature_type="none"), "a signing key makes no sense"),
    (dict(signing_key=None, signature_type="none", packing_format="rar"), "packing_format: unknown 'rar'"),
    (dict(signing_key=None, signature_type="none", formats={"filesite"}), "formats: expected"),
    (dict(signing_key=b"not a key", signature_type="pubkey"), "signing key: cannot read it"),
])
def test_writer_refuses_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        write_repository(tmp_path, [], **kwargs)


def test_writer_refuses_entries_the_reader_would_refuse(tmp_path, repo):
    with pytest.raises(RepositoryError, match="duplicate package FreeBSD-clibs"):
        write_repository(tmp_path, repo.entries + [repo.entries[1]], signing_key=None, signature_type="none")
    unsafe = dict(repo.entries[0], path="../../outside.pkg", repopath="../../outside.pkg")
    with pytest.raises(RepositoryError, match="package FreeBSD-runtime: unsafe path '../../outside.pkg'"):
        write_repository(tmp_path, [unsafe], signing_key=None, signature_type="none")


# -- reading ------------------------------------------------------------------------------
@pytest.mark.parametrize("signature_type", ["fingerprints", "pubkey"])
@pytest.mark.parametrize("archive, kind", [("data.pkg", "data"), ("packagesite.pkg", "packagesite")])
def test_round_trip(tmp_path, keys, signature_type, archive, kind):
    root = tmp_path / "repo"
    entries = make_entries(root)
    write_repository(root, entries, signing_key=keys.signer, signature_type=signature_type)
    trust = trust_store(tmp_path / "keys", [keys.stranger_pub, keys.signer_pub])
    catalogue = open_catalogue(root / archive, SOURCE, signature_type=signature_type,
                               fingerprints=trust, pubkey=keys.signer_pub)
    payload = tar_members(root / archive)[-1][1]
    assert catalogue.payload_kind == kind
    assert catalogue.payload_sha256 == hashlib.sha256(payload).hexdigest()
    assert catalogue.fingerprint == fp(keys.signer_pub)
    packages = catalogue.packages()
    assert list(packages) == ["FreeBSD-clibs", "FreeBSD-runtime", "FreeBSD-zoneinfo"]
    runtime = packages["FreeBSD-runtime"]
    assert (runtime.origin, runtime.version, runtime.abi, runtime.arch, runtime.prefix) == \
        ("base", "14.2", "FreeBSD:14:amd64", "freebsd:14:x86:64", "/")
    assert runtime.deps == {"FreeBSD-clibs": ("base", "14.2")}
    assert runtime.licenses == ("BSD2CLAUSE",) and runtime.annotations == {"set": "minimal"}
    assert runtime.raw == entries[0]
    for row in entries:
        entry = packages[row["name"]]
        blob = (root / entry.path).read_bytes()
        assert (entry.sum, entry.pkgsize, entry.flatsize) == (row["sum"], len(blob), row["flatsize"])
    packages.clear()
    assert len(catalogue.packages()) == 3


@pytest.mark.parametrize("packing_format", ["tzst", "txz", "tgz", "tbz", "tar"])
def test_archive_kind_is_found_by_magic_not_name(tmp_path, repo, packing_format):
    write_repository(tmp_path / "r", repo.entries, signing_key=None, signature_type="none",
                     packing_format=packing_format, formats={"data"})
    misnamed = tmp_path / "data.misleading.tzst"
    shutil.copy(tmp_path / "r" / "data.pkg", misnamed)
    catalogue = open_catalogue(misnamed, SOURCE, signature_type="none")
    assert catalogue.fingerprint is None and len(catalogue.packages()) == 3


def test_untrusted_key(repo, tmp_path, keys):
    trust = trust_store(tmp_path / "other", [keys.stranger_pub])
    with pytest.raises(SignatureError) as info:
        open_catalogue(repo.root / "data.pkg", SOURCE, signature_type="fingerprints", fingerprints=trust)
    assert str(info.value) == f"{SOURCE}: signed by an untrusted key (sha256 {fp(keys.signer_pub)})"


def test_revoked_key_wins_over_trusted(repo, tmp_path, keys):
    trust = trust_store(tmp_path / "both", [keys.signer_pub], revoked=[keys.signer_pub])
    with pytest.raises(SignatureError) as info:
        open_catalogue(repo.root / "packagesite.pkg", SOURCE, signature_type="fingerprints", fingerprints=trust)
    assert str(info.value) == f"{SOURCE}: key {fp(keys.signer_pub)} is revoked"


def test_missing_sig_member(repo, tmp_path):
    members = [(m.name, blob) for m, blob in tar_members(repo.root / "data.pkg") if m.name != "data.sig"]
    with pytest.raises(SignatureError, match=r": no signature in the archive"):
        open_catalogue(write_archive(tmp_path / "nosig.pkg", members), SOURCE,
                       signature_type="fingerprints", fingerprints=repo.trust)
    unsigned = write_archive(tmp_path / "bare.pkg", members[-1:])
    with pytest.raises(SignatureError, match=r"no signature in the archive"):
        open_catalogue(unsigned, SOURCE, signature_type="fingerprints", fingerprints=repo.trust)
    stray = write_archive(tmp_path / "stray.pkg", [("other.sig", b"1")] + members)
    with pytest.raises(SignatureError, match=r"data.pub has no matching data.sig"):
        open_catalogue(stray, SOURCE, signature_type="fingerprints", fingerprints=repo.trust)


def test_flipped_payload_byte_does_not_verify(repo, tmp_path, keys):
    members = [(m.name, blob) for m, blob in tar_members(repo.root / "data.pkg")]
    payload = members[-1][1]
    tampered = payload.replace(b'"version":"14.2"', b'"version":"14.3"', 1)
    assert tampered != payload and len(tampered) == len(payload)
    archive = write_archive(tmp_path / "tampered.pkg", members[:-1] + [("data", tampered)])
    with pytest.raises(SignatureError) as info:
        open_catalogue(archive, SOURCE, signature_type="fingerprints", fingerprints=repo.trust)
    assert str(info.value) == f"{SOURCE}: signature does not verify (key sha256 {fp(keys.signer_pub)})"


def test_pubkey_mode_failures(tmp_path, keys):
    root = tmp_path / "r"
    write_repository(root, make_entries(root), signing_key=keys.signer, signature_type="pubkey")
    with pytest.raises(SignatureError, match="signature does not verify against the configured public key"):
        open_catalogue(root / "data.pkg", SOURCE, signature_type="pubkey", pubkey=keys.stranger_pub)
    members = tar_members(root / "data.pkg")
    bare = write_archive(tmp_path / "bare.pkg", [("data", members[-1][1])])
    with pytest.raises(SignatureError, match=r"no signature in the archive \(no 'signature' member\)"):
        open_catalogue(bare, SOURCE, signature_type="pubkey", pubkey=keys.signer_pub)
    flipped = bytearray(members[-1][1])
    flipped[10] ^= 0x01
    broken = write_archive(tmp_path / "flip.pkg", [("signature", members[0][1]), ("data", bytes(flipped))])
    with pytest.raises(SignatureError, match="signature does not verify"):
        open_catalogue(broken, SOURCE, signature_type="pubkey", pubkey=keys.signer_pub)


def test_pubkey_mode_accepts_legacy_sha1_labelled_signatures(tmp_path, keys, repo):
    """pkg before OpenSSL 3 signed RSA_sign(NID_sha1, <hex text>): build one by hand."""
    payload = tar_members(repo.root / "data.pkg")[-1][1]
    numbers = load_pem_private_key(keys.signer, password=None).private_numbers()
    n, d = numbers.public_numbers.n, numbers.d
    digest_info = bytes.fromhex("304d300906052b0e03021a05000440") + hashlib.sha256(payload).hexdigest().encode()
    size = (n.bit_length() + 7) // 8
    block = b"\x00\x01" + b"\xff" * (size - len(digest_info) - 3) + b"\x00" + digest_info
    legacy = pow(int.from_bytes(block, "big"), d, n).to_bytes(size, "big") + b"\0"
    archive = write_archive(tmp_path / "legacy.pkg", [("signature", legacy), ("data", payload)])
    catalogue = open_catalogue(archive, SOURCE, signature_type="pubkey", pubkey=keys.signer_pub)
    assert catalogue.fingerprint == fp(keys.signer_pub)
    with pytest.raises(SignatureError, match="signature does not verify"):  # not accepted in fingerprints mode
        open_catalogue(write_archive(tmp_path / "l2.pkg", [("data.sig", legacy[:-1]),
                                                           ("data.pub", keys.signer_pub), ("data", payload)]),
                       SOURCE, signature_type="fingerprints", fingerprints=repo.trust)


def test_none_accepts_only_unsigned(repo, tmp_path):
    with pytest.raises(SignatureError, match=r"signed \(data.pub, data.sig\) but signature_type is none"):
        open_catalogue(repo.root / "data.pkg", SOURCE, signature_type="none")
    with pytest.raises(RepositoryError, match="unknown signature_type 'gpg'"):
        open_catalogue(repo.root / "data.pkg", SOURCE, signature_type="gpg")


def test_trust_store_problems(repo, tmp_path, keys):
    with pytest.raises(SignatureError, match="needs a fingerprints directory"):
        open_catalogue(repo.root / "data.pkg", SOURCE, signature_type="fingerprints")
    with pytest.raises(SignatureError, match="no trusted fingerprints in .*empty/trusted"):
        open_catalogue(repo.root / "data.pkg", SOURCE, signature_type="fingerprints", fingerprints=tmp_path / "empty")
    store = trust_store(tmp_path / "bad", [keys.signer_pub])
    (store / "trusted" / "broken").write_text('function: "md5"\nfingerprint: "00"\n')
    with pytest.raises(RepositoryError, match=r"trusted/broken: unsupported hashing function 'md5'"):
        open_catalogue(repo.root / "data.pkg", SOURCE, signature_type="fingerprints", fingerprints=store)


def test_fingerprint_files_like_freebsds(src_samples, keys):
    trusted = src_samples / "share" / "keys" / "pkg" / "trusted"
    assert load_fingerprints(trusted) == {"b0170035af3acc5f3f3ae1859dc717101b4e6c1d0a794ad554928ca0cbb2f438"}
    assert len(load_fingerprints(src_samples / "share" / "keys" / "pkgbase-15" / "trusted")) == 2
    sample = (src_samples / "share" / "keys" / "pkgbase-15" / "trusted" / "awskms-15").read_text()
    ours = fingerprint_file(keys.signer_pub).decode()
    assert [line.split('"')[0] for line in ours.splitlines()] == [line.split('"')[0] for line in sample.splitlines()]
    assert read_fingerprint(ours.encode(), "ours") == fp(keys.signer_pub)


# -- malformed payloads (properly signed, so only the parser can object) --------------------
def _row(**changes) -> str:
    row = {"name": "FreeBSD-runtime", "origin": "base", "version": "14.2", "abi": "FreeBSD:14:amd64",
           "sum": "a" * 64, "path": "FreeBSD-runtime-14.2.pkg", "pkgsize": 10}
    row.update(changes)
    return json.dumps({k: v for k, v in row.items() if v is not None})


@pytest.mark.parametrize("lines, message", [
    ([_row(), "{not json"], "packagesite.yaml: line 2: invalid JSON: Expecting property name"),
    ([_row(), "", _row(name="x")], "packagesite.yaml: line 2: empty line"),
    ([_row(), _row(version="14.3")], "packagesite.yaml: line 2: duplicate package FreeBSD-runtime"),
    ([_row(name="FreeBSD-clibs", sum=None)], "packagesite.yaml: package FreeBSD-clibs: missing field 'sum'"),
    ([_row(path="/usr/bin/su")], "package FreeBSD-runtime: unsafe path '/usr/bin/su'"),
    ([_row(path="All/../../x.pkg")], "package FreeBSD-runtime: unsafe path 'All/../../x.pkg'"),
    ([_row(path="All/%2e%2e/%2E%2e/x.pkg")], "package FreeBSD-runtime: unsafe path 'All/%2e%2e/%2E%2e/x.pkg'"),
    ([_row(path="All%2f..%2fx.pkg")], "package FreeBSD-runtime: unsafe path 'All%2f..%2fx.pkg'"),
    ([_row(repopath="All/other.pkg")], "package FreeBSD-runtime: 'path' and 'repopath' disagree"),
    ([_row(sum="md5:abc")], "package FreeBSD-runtime: unrecognised sum 'md5:abc'"),
    ([_row(pkgsize="10")], "package FreeBSD-runtime: field 'pkgsize' must be a non-negative integer"),
    ([_row(deps={"FreeBSD-clibs": {"origin": "base"}})], "dependency 'FreeBSD-clibs' needs string"),
    ([_row(name=None)], "packagesite.yaml: line 1: missing or empty field 'name'"),
    (["[1, 2]"], "packagesite.yaml: line 1: expected a JSON object"),
])
def test_malformed_packagesite(tmp_path, keys, repo, lines, message):
    payload = ("\n".join(lines) + "\n").encode()
    archive = signed_archive(tmp_path / "packagesite.pkg", "packagesite.yaml", payload, keys)
    with pytest.raises(RepositoryError) as info:
        open_catalogue(archive, SOURCE, signature_type="fingerprints", fingerprints=repo.trust)
    assert str(info.value).startswith(f"{SOURCE}: ") and message in str(info.value)


@pytest.mark.parametrize("payload, message", [
    (b'{"groups":[],"packages":[' + _row().encode() + b",]}", "data: line 1 column "),
    (b'{"groups":[]}', 'data: expected a JSON object with a "packages" array'),
    (b'{"packages":[' + _row().encode() + b"," + _row().encode() + b"]}",
     "data: package #2: duplicate package FreeBSD-runtime"),
    (b'{"packages":[' + _row(abi=None).encode() + b"]}", "data: package FreeBSD-runtime: missing field 'abi'"),
])
def test_malformed_data(tmp_path, keys, repo, payload, message):
    archive = signed_archive(tmp_path / "data.pkg", "data", payload, keys)
    with pytest.raises(RepositoryError, match=message.replace("(", r"\(").replace("[", r"\[")):
        open_catalogue(archive, SOURCE, signature_type="fingerprints", fingerprints=repo.trust)


def test_broken_archives(tmp_path, repo):
    garbage = tmp_path / "garbage.pkg"
    garbage.write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 40)
    with pytest.raises(RepositoryError, match=r"not a readable catalogue archive"):
        open_catalogue(garbage, SOURCE, signature_type="none")
    no_payload = write_archive(tmp_path / "empty.pkg", [("README", b"hello")])
    with pytest.raises(RepositoryError, match=r"holds neither 'data' nor 'packagesite.yaml'"):
        open_catalogue(no_payload, SOURCE, signature_type="none")
    twice = write_archive(tmp_path / "twice.pkg", [("data", b'{"packages":[]}'), ("data", b'{"packages":[]}')])
    with pytest.raises(RepositoryError, match=r"member 'data' appears twice"):
        open_catalogue(twice, SOURCE, signature_type="none")

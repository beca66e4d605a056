"""certctl rehash, checked against OpenSSL's own tools on real and generated certificates."""
from __future__ import annotations

import base64
import datetime
import os
import posixpath
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from release.builtins.certctl import read_certificates, rehash, subject_hash
from release.builtins.entries import Entry
from release.errors import StepError
from tests.conftest import need_tool

CN, ORG, OU = NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME
EPOCH = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)


def attr(oid, value, kind=None):
    return x509.NameAttribute(oid, value, _type=kind) if kind else x509.NameAttribute(oid, value)


def make_cert(subject: x509.Name, issuer: x509.Name | None = None, key=None, signer=None,
              ca: bool = True, serial: int = 1) -> tuple[bytes, object]:
    """A PEM certificate (with FreeBSD-style text in front) and its private key."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder()
               .subject_name(subject).issuer_name(issuer or subject)
               .public_key(key.public_key()).serial_number(serial)
               .not_valid_before(EPOCH).not_valid_after(EPOCH + datetime.timedelta(days=36500))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    cert = builder.sign(signer or key, hashes.SHA256())
    header = b"##\n##  Generated for a test\n##\nCertificate:\n    Data: ...\n"
    return header + cert.public_bytes(serialization.Encoding.PEM), key


NAMES = {
    "mixed-case-spaces": x509.Name([attr(CN, "  Mixed   CASE \t Name  "), attr(ORG, "Example\n\nOrg ")]),
    "printable": x509.Name([attr(CN, "Printable  Name", _ASN1Type.PrintableString)]),
    "ia5": x509.Name([attr(NameOID.EMAIL_ADDRESS, "Root@Example.ORG")]),
    "t61-latin1": x509.Name([attr(CN, "Caf\xe9  \xc9COLE", _ASN1Type.T61String)]),
    "bmp": x509.Name([attr(OU, " \xdcn\xefcode  MIXED ", _ASN1Type.BMPString)]),
    "universal": x509.Name([attr(ORG, "Wide  \U0001d518  CHARS", _ASN1Type.UniversalString)]),
    "numeric-not-folded": x509.Name([attr(x509.ObjectIdentifier("1.2.3.4"), "12  34",
                                          _ASN1Type.NumericString), attr(CN, "N")]),
    "multi-valued-rdn": x509.Name([x509.RelativeDistinguishedName([attr(ORG, "Zeta"), attr(CN, "Alpha")]),
                                   x509.RelativeDistinguishedName([attr(OU, "Unit")])]),
    # folding "a  b" shortens CN's encoding so the RDN's DER SET order flips: needs re-sorting
    "multi-valued-rdn-resorted": x509.Name([x509.RelativeDistinguishedName([attr(ORG, "xyz"),
                                                                            attr(CN, "a  b")])]),
    "empty-subject": x509.Name([]),
}


def openssl_hash(openssl: str, pem: bytes, tmp_path: Path) -> str:
    f = tmp_path / "c.pem"
    f.write_bytes(pem)
    return subprocess.run([openssl, "x509", "-noout", "-subject_hash", "-in", str(f)],
                          check=True, capture_output=True, text=True).stdout.strip()


def caroot(src_samples: Path, sub: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((src_samples / "secure/caroot" / sub).iterdir())}


def materialise(entries: list[Entry], root: Path) -> None:
    """Write *entries* under *root* the way the layer would unpack."""
    for e in entries:
        p = root / e.path.lstrip("/")
        if e.kind == "dir":
            p.mkdir(parents=True, exist_ok=True)
        elif e.kind == "file":
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(e.data)
        elif e.kind == "symlink":
            p.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(e.target, p)
        else:
            raise AssertionError(e)


def links(entries: list[Entry], directory: str) -> dict[str, str]:
    return {posixpath.basename(e.path): e.target for e in entries
            if posixpath.dirname(e.path) == directory and e.kind == "symlink"}


def openssl_rehash(openssl: str, files: dict[str, bytes], tmp_path: Path) -> dict[str, str]:
    d = tmp_path / "rehash"
    d.mkdir()
    for name, data in files.items():
        (d / name).write_bytes(data)
    subprocess.run([openssl, "rehash", str(d)], check=True, capture_output=True)
    return {p.name: os.readlink(p) for p in d.iterdir() if p.is_symlink()}


def test_subject_hash_of_freebsd_roots(src_samples, tmp_path):
    openssl = need_tool("openssl", "openssl")
    pems = sorted((src_samples / "secure/caroot").glob("*/*.pem"))
    assert len(pems) >= 15
    for pem in pems:
        cert, = read_certificates(pem.read_bytes(), pem.name)
        assert cert.subject_hash == openssl_hash(openssl, pem.read_bytes(), tmp_path), pem.name


@pytest.mark.parametrize("case", sorted(NAMES))
def test_subject_hash_canonicalisation(case, tmp_path):
    openssl = need_tool("openssl", "openssl")
    pem, _ = make_cert(NAMES[case])
    assert read_certificates(pem, case)[0].subject_hash == openssl_hash(openssl, pem, tmp_path)


def test_spellings_of_one_name_share_a_hash():
    a, _ = make_cert(x509.Name([attr(CN, "Dup  Name "), attr(ORG, "ORG")]))
    b, _ = make_cert(x509.Name([attr(CN, "dup name", _ASN1Type.PrintableString), attr(ORG, "org")]))
    c, _ = make_cert(x509.Name([attr(CN, "dup-name"), attr(ORG, "org")]))
    ha, hb, hc = (read_certificates(p, "x")[0].subject_hash for p in (a, b, c))
    assert ha == hb != hc


def dup_certs() -> dict[str, bytes]:
    """Three different certificates whose subjects canonicalise to the same name."""
    return {
        "dup-a.pem": make_cert(x509.Name([attr(CN, "Shared  ROOT")]))[0],
        "dup-b.crt": make_cert(x509.Name([attr(CN, " shared root ")]))[0],
        "dup-c.cer": make_cert(x509.Name([attr(CN, "SHARED   Root", _ASN1Type.PrintableString)]))[0],
    }


def test_symlinks_match_openssl_rehash(src_samples, tmp_path):
    openssl = need_tool("openssl", "openssl")
    trusted = caroot(src_samples, "trusted") | dup_certs()
    trusted["mixed.pem"] = make_cert(NAMES["mixed-case-spaces"])[0]
    trusted["README"] = b"not a certificate, and not linked\n"
    entries = rehash(trusted, {})
    ours = links(entries, "/etc/ssl/certs")
    theirs = openssl_rehash(openssl, trusted, tmp_path)
    assert {n: posixpath.basename(t) for n, t in ours.items()} == theirs
    assert len(ours) == len(trusted) - 1
    assert all(t.startswith("../../../usr/share/certs/trusted/") for t in ours.values())
    dup = read_certificates(trusted["dup-a.pem"], "x")[0].subject_hash
    assert [ours[f"{dup}.{n}"].rsplit("/", 1)[1] for n in range(3)] == ["dup-a.pem", "dup-b.crt", "dup-c.cer"]


def test_entries_describe_a_working_tree(src_samples, tmp_path):
    trusted = caroot(src_samples, "trusted")
    entries = rehash(trusted, caroot(src_samples, "untrusted"))
    by_path = {e.path: e for e in entries}
    assert len(by_path) == len(entries)
    for d in ("/etc/ssl/certs", "/etc/ssl/untrusted", "/usr/share/certs/trusted", "/usr/share/certs/untrusted"):
        assert (by_path[d].kind, by_path[d].mode) == ("dir", 0o755)
    for name, data in trusted.items():
        f = by_path[f"/usr/share/certs/trusted/{name}"]
        assert (f.kind, f.mode, f.uname, f.gname, f.data) == ("file", 0o444, "root", "wheel", data)
    for e in entries:
        if e.kind == "symlink":
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(e.path), e.target))
            assert by_path[resolved].kind == "file", e
            assert e.mode == 0o755
    materialise(entries, tmp_path / "root")
    assert (tmp_path / "root/etc/ssl/certs/02265526.0").read_bytes() == \
        trusted["Entrust_Root_Certification_Authority_-_G2.pem"]


@pytest.mark.parametrize("layout, sub, name", [
    ("untrusted", "untrusted", "DST_Root_CA_X3.pem"),
    ("blacklisted", "blacklisted", "GlobalSign_Root_CA_-_R2.pem"),
])
def test_untrusted_certificates_are_not_trusted(layout, sub, name, src_samples):
    bad = caroot(src_samples, sub)
    trusted = caroot(src_samples, "trusted") | {"copy-of-" + name: bad[name]}
    entries = rehash(trusted, bad, layout=layout)
    h = read_certificates(bad[name], name)[0].subject_hash
    assert links(entries, f"/etc/ssl/{layout}") == {f"{h}.0": f"../../../usr/share/certs/{sub}/{name}"}
    trusted_links = links(entries, "/etc/ssl/certs")
    assert not any(t.endswith("copy-of-" + name) for t in trusted_links.values())
    assert len(trusted_links) == len(trusted) - 1


def test_openssl_verifies_through_the_hash_directory(tmp_path):
    """OpenSSL finds an issuer by hash even when the leaf spells the issuer name differently."""
    openssl = need_tool("openssl", "openssl")
    ca_pem, ca_key = make_cert(x509.Name([attr(CN, "Test  ROOT  CA"), attr(ORG, "Example")]))
    evil_pem, evil_key = make_cert(x509.Name([attr(CN, "Evil CA")]))
    leaf_pem, _ = make_cert(x509.Name([attr(CN, "leaf")]), ca=False, serial=2, signer=ca_key,
                            issuer=x509.Name([attr(CN, "test root ca", _ASN1Type.PrintableString),
                                              attr(ORG, " EXAMPLE")]))
    evil_leaf, _ = make_cert(x509.Name([attr(CN, "leaf2")]), ca=False, serial=3, signer=evil_key,
                             issuer=x509.Name([attr(CN, "Evil CA")]))
    for style in ("symlink", "copy"):
        root = tmp_path / style
        materialise(rehash({"ca.pem": ca_pem, "evil.pem": evil_pem}, {"evil.pem": evil_pem},
                           style=style), root)
        (root / "leaf.pem").write_bytes(leaf_pem)
        (root / "evil-leaf.pem").write_bytes(evil_leaf)
        capath = str(root / "etc/ssl/certs")
        ok = subprocess.run([openssl, "verify", "-CApath", capath, str(root / "leaf.pem")],
                            capture_output=True, text=True)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        bad = subprocess.run([openssl, "verify", "-CApath", capath, str(root / "evil-leaf.pem")],
                             capture_output=True, text=True)
        assert bad.returncode != 0


def test_copy_style_is_the_c_certctl(src_samples, tmp_path):
    openssl = need_tool("openssl", "openssl")
    trusted = caroot(src_samples, "trusted") | dup_certs()
    untrusted = caroot(src_samples, "untrusted")
    trusted["also-bad.pem"] = untrusted["DST_Root_CA_X3.pem"]
    trusted["bundle.txt"] = trusted["ISRG_Root_X1.pem"] + trusted["ISRG_Root_X2.pem"]   # duplicates
    entries = rehash(trusted, untrusted, style="copy", install_sources=False)
    assert not any(e.path.startswith("/usr/share/certs") for e in entries)
    certs = {posixpath.basename(e.path): e for e in entries if e.path.startswith("/etc/ssl/certs/")}
    distinct = {n: d for n, d in trusted.items() if n not in ("also-bad.pem", "bundle.txt")}
    assert set(certs) == set(openssl_rehash(openssl, distinct, tmp_path))
    for name, e in certs.items():
        assert (e.kind, e.mode) == ("file", 0o444)
        assert e.data.startswith(b"-----BEGIN CERTIFICATE-----\n")
        assert openssl_hash(openssl, e.data, tmp_path) == name.split(".")[0]
    dup = read_certificates(trusted["dup-a.pem"], "x")[0].subject_hash
    fps = [read_certificates(certs[f"{dup}.{n}"].data, "x")[0].fingerprint for n in range(3)]
    assert fps == sorted(fps)
    bundle = {e.path: e for e in entries}["/etc/ssl/cert.pem"]
    in_bundle = read_certificates(bundle.data, "cert.pem")
    assert len(in_bundle) == len(certs)
    assert [c.fingerprint for c in in_bundle] == sorted(c.fingerprint for c in in_bundle)
    untrusted_files = [e for e in entries if e.path.startswith("/etc/ssl/untrusted/")]
    assert [posixpath.basename(e.path) for e in untrusted_files] == \
        [read_certificates(untrusted["DST_Root_CA_X3.pem"], "x")[0].subject_hash + ".0"]


def test_deterministic_and_order_independent(src_samples):
    trusted = caroot(src_samples, "trusted") | dup_certs()
    reversed_input = dict(reversed(list(trusted.items())))
    for style in ("symlink", "copy"):
        assert rehash(trusted, {}, style=style) == rehash(reversed_input, {}, style=style)


def test_only_certificate_suffixes_are_linked():
    pem, _ = make_cert(x509.Name([attr(CN, "x")]))
    entries = rehash({"a.pem": pem, "b.txt": pem, "c.PEM": pem}, {})
    assert [posixpath.basename(t) for t in links(entries, "/etc/ssl/certs").values()] == ["a.pem"]


def test_errors_name_the_file():
    pem, _ = make_cert(x509.Name([attr(CN, "x")]))
    with pytest.raises(StepError, match=r"^/usr/share/certs/trusted/empty.pem: no PEM certificate found$"):
        rehash({"empty.pem": b"just text\n"}, {})
    broken = pem.replace(b"-----BEGIN CERTIFICATE-----\n", b"-----BEGIN CERTIFICATE-----\n!!")
    with pytest.raises(StepError, match=r"^/usr/share/certs/untrusted/bad.pem: unreadable certificate"):
        rehash({}, {"bad.pem": broken})
    der = read_certificates(pem, "x")[0].der
    trailing = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der + b"\0\0\0") + b"-----END CERTIFICATE-----\n"
    with pytest.raises(StepError, match=r"^/usr/share/certs/trusted/long.pem: certificate: not a DER"):
        rehash({"long.pem": trailing}, {})
    cut = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der[:-30]) + b"-----END CERTIFICATE-----\n"
    with pytest.raises(StepError, match=r"^/usr/share/certs/trusted/cut.pem: certificate: "):
        rehash({"cut.pem": cut}, {})
    with pytest.raises(StepError, match="bad certificate file name '../x.pem'"):
        rehash({"../x.pem": pem}, {})
    with pytest.raises(StepError, match="unknown layout 'revoked'"):
        rehash({}, {}, layout="revoked")
    with pytest.raises(StepError, match="need the certificate files installed"):
        rehash({}, {}, install_sources=False)


def test_subject_hash_of_der():
    pem, _ = make_cert(x509.Name([]))
    cert = x509.load_pem_x509_certificate(pem[pem.index(b"-----BEGIN"):])
    der = cert.public_bytes(serialization.Encoding.DER)
    # an empty subject canonicalises to nothing: SHA-1 of the empty string, da39a3ee -> eea339da
    assert subject_hash(der) == "eea339da"

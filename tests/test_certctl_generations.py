"""certctl rehash and pwd_mkdb -p per FreeBSD release: what each generation leaves in a later layer.

The scenario the generations disagree on: the static layer's recipe already
hashed the source tree's certificates into /etc/ssl/certs (and, 15.x, wrote
/etc/ssl/cert.pem), then a later flavour installs FreeBSD-caroot, whose
post-install script runs `certctl rehash` again.  Each result is checked with
`openssl verify -CApath`, the consumer that reads these directories.
"""
from __future__ import annotations

import io
import posixpath
import subprocess

import pytest
from cryptography import x509

from release.builtins.certctl import SSL_DIR, read_certificates, rehash, style_for
from release.builtins.certctl_tree import rehash_tree
from release.builtins.entries import Entry
from release.builtins.generations import tool_generations
from release.builtins.pwdmkdb import pwd_mkdb
from release.install import put_with_parents
from release.tree import LayerTree, ParentView
from tests.conftest import need_tool
from tests.test_certctl import CN, attr, caroot, make_cert


def _static_layer(trusted: dict[str, bytes], untrusted: dict[str, bytes], style: str) -> ParentView:
    """The static layer's view after its recipe's `certctl -c rehash` of the release's generation."""
    spool = io.BytesIO()
    tree = LayerTree(ParentView(), spool)
    for e in rehash(trusted, untrusted, style="copy" if style.startswith("copy") else "link",
                    install_sources=False, copy=True):
        put_with_parents(tree, e, "caroot step")
    return tree.child_view()


def _later_layer(view: ParentView, caroot_files: dict[str, bytes], style: str) -> LayerTree:
    """FreeBSD-caroot installed over *view*, then its post-install `certctl rehash`."""
    tree = LayerTree(view, io.BytesIO())
    put_with_parents(tree, Entry("/usr/share/certs/trusted", "dir", 0o755), "FreeBSD-caroot")
    for name, data in caroot_files.items():
        tree.put(Entry(f"/usr/share/certs/trusted/{name}", "file", 0o444, data=data), "FreeBSD-caroot")
    rehash_tree(tree, "FreeBSD-caroot certctl_rehash", style, put_with_parents)
    return tree


def _hash_dir(tree: LayerTree) -> dict[str, bytes]:
    """/etc/ssl/certs as the image shows it: this layer over the view, whiteouts applied."""
    view = tree.child_view()
    files = {posixpath.basename(p): d for p, d in view.files.items() if posixpath.dirname(p) == f"{SSL_DIR}/certs"}
    for path, target in view.symlinks.items():
        if posixpath.dirname(path) == f"{SSL_DIR}/certs":
            files[posixpath.basename(path)] = view.files[posixpath.normpath(posixpath.join(posixpath.dirname(path),
                                                                                            target))]
    for path, item in tree.items.items():
        if posixpath.dirname(path) == f"{SSL_DIR}/certs" and item.entry.kind == "hardlink":
            files[posixpath.basename(path)] = tree.read(item.entry.target)
    return files


def _fingerprints(files: dict[str, bytes]) -> list[bytes]:
    return [read_certificates(d, n)[0].fingerprint for n, d in files.items()]


@pytest.fixture(scope="module")
def certificates(src_samples) -> tuple[dict[str, bytes], dict[str, bytes], dict[str, bytes]]:
    """(the static recipe's trusted, its untrusted, what FreeBSD-caroot ships: a subset plus one new)."""
    trusted = caroot(src_samples, "trusted")
    new_ca = make_cert(x509.Name([attr(CN, "Added by caroot")]))[0]
    shipped = {name: trusted[name] for name in sorted(trusted)[:4]} | {"New_CA.pem": new_ca}
    return trusted, caroot(src_samples, "untrusted"), shipped


@pytest.mark.parametrize("major,branch,style,comments", [
    (13, "releng/13.2", "symlink", True), (14, "releng/14.2", "link", True), (14, "stable/14", "link", True),
    (15, "releng/15.0", "copy-sticky", False), (15, "stable/15", "copy", False), (15, "releng/15.1", "copy", False),
    (16, "main", "copy", False)])
def test_each_release_branch_gets_its_srcs_generation(major, branch, style, comments):
    assert style_for(major, branch) == style
    assert tool_generations(major, branch) == {"certctl": style, "pwd_mkdb_copies_comments": comments}


@pytest.mark.parametrize("style", ["link", "copy-sticky", "copy"])
def test_no_certificate_gets_two_names_after_a_later_rehash(certificates, style):
    trusted, untrusted, shipped = certificates
    tree = _later_layer(_static_layer(trusted, untrusted, style), shipped, style)
    names = _hash_dir(tree)
    fingerprints = _fingerprints(names)
    assert len(fingerprints) == len(set(fingerprints)), "a certificate has two hash names"
    expected = shipped | (trusted if style == "copy-sticky" else {})
    assert sorted(set(fingerprints)) == sorted(set(_fingerprints(expected)))
    for name, data in names.items():
        assert name.split(".")[0] == read_certificates(data, name)[0].subject_hash


def test_the_13x_certctl_keeps_regular_files_and_names_links_after_them(certificates):
    """13.x certctl.sh only replaces symlinks: the static copies stay, and caroot's certificates that
    the static layer already had get a second name, as that certctl leaves them."""
    trusted, untrusted, shipped = certificates
    tree = _later_layer(_static_layer(trusted, untrusted, "link"), shipped, "symlink")
    names = _hash_dir(tree)
    assert len(names) == len(trusted) + len(shipped)
    assert len(set(_fingerprints(names))) == len(trusted) + 1


@pytest.mark.parametrize("style,bundle", [("link", None), ("copy-sticky", "union"), ("copy", "shipped")])
def test_the_bundle_is_regenerated_only_by_the_c_certctl(certificates, style, bundle):
    trusted, untrusted, shipped = certificates
    tree = _later_layer(_static_layer(trusted, untrusted, style), shipped, style)
    view = tree.child_view()
    if bundle is None:
        assert "/etc/ssl/cert.pem" not in view.files       # certctl.sh writes none, the static -c neither
        return
    in_bundle = [c.fingerprint for c in read_certificates(view.files["/etc/ssl/cert.pem"], "cert.pem")]
    expected = shipped | (trusted if bundle == "union" else {})
    assert sorted(in_bundle) == sorted(set(_fingerprints(expected)))   # not stale: caroot's new CA is in it


@pytest.mark.parametrize("style", ["link", "copy-sticky", "copy"])
def test_openssl_verifies_a_leaf_of_the_new_ca_through_the_rehashed_directory(certificates, style, tmp_path):
    openssl = need_tool("openssl", "openssl")
    trusted, untrusted, shipped = certificates
    ca_pem, ca_key = make_cert(x509.Name([attr(CN, "Late CA")]))
    leaf, _ = make_cert(x509.Name([attr(CN, "leaf")]), issuer=x509.Name([attr(CN, "Late CA")]), ca=False,
                        serial=7, signer=ca_key)
    tree = _later_layer(_static_layer(trusted, untrusted, style), shipped | {"Late_CA.pem": ca_pem}, style)
    capath = tmp_path / "certs"
    capath.mkdir()
    for name, data in _hash_dir(tree).items():
        (capath / name).write_bytes(data)
    (tmp_path / "leaf.pem").write_bytes(leaf)
    ok = subprocess.run([openssl, "verify", "-CApath", str(capath), str(tmp_path / "leaf.pem")],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_14x_links_certificates_of_the_same_layer_and_copies_lower_ones(certificates):
    trusted, untrusted, shipped = certificates
    view = _static_layer(trusted, untrusted, "link")
    lower = LayerTree(view, io.BytesIO())
    for name, data in shipped.items():
        put_with_parents(lower, Entry(f"/usr/share/certs/trusted/{name}", "file", 0o444, data=data), "caroot")
    tree = LayerTree(lower.child_view(), io.BytesIO())     # FreeBSD-certctl in a further layer
    rehash_tree(tree, "certctl", "link", put_with_parents)
    kinds = {item.entry.kind for p, item in tree.items.items() if p.startswith("/etc/ssl/certs/")}
    assert kinds == {"file"}                   # the sources are a layer below: no cross-layer hard link
    same = _later_layer(view, shipped, "link")
    assert {item.entry.kind for p, item in same.items.items() if p.startswith("/etc/ssl/certs/")} == {"hardlink"}


def test_14x_certctl_splits_bundles_and_skips_files_without_a_dump():
    one = make_cert(x509.Name([attr(CN, "one")]))[0]
    two = make_cert(x509.Name([attr(CN, "two")]))[0]
    bundle = b"# a bundle\n\n" + one + two
    bare = one.split(b"Certificate:\n", 1)[1].split(b"-----BEGIN", 1)[1]     # no "Certificate:" line
    entries = rehash({"bundle.pem": bundle, "plain.pem": b"-----BEGIN" + bare}, {}, style="link")
    certs = [e for e in entries if e.path.startswith("/etc/ssl/certs/")]
    assert [e.kind for e in certs] == ["file", "file"]
    assert all(e.data.startswith(b"Certificate:\n") and not e.data.startswith(b"#") for e in certs)
    assert sorted(read_certificates(e.data, "x")[0].subject_hash for e in certs) == sorted(
        read_certificates(pem, "x")[0].subject_hash for pem in (one, two))


MASTER = (b"# header comment\nroot:*:0:0::0:0:Charlie &:/root:/bin/sh\n\n  # indented\n"
          b"nobody:*:65534:65534::0:0:Nobody:/:/sbin/nologin\n")


def test_pwd_mkdb_copies_comment_lines_only_where_the_release_does():
    old = pwd_mkdb(MASTER, copy_comments=True).passwd
    new = pwd_mkdb(MASTER, copy_comments=False).passwd
    assert new == b"root:*:0:0:Charlie &:/root:/bin/sh\nnobody:*:65534:65534:Nobody:/:/sbin/nologin\n"
    assert old == (b"# header comment\nroot:*:0:0:Charlie &:/root:/bin/sh\n\n  # indented\n"
                   b"nobody:*:65534:65534:Nobody:/:/sbin/nologin\n")
    assert pwd_mkdb(MASTER, copy_comments=True).pwd_db == pwd_mkdb(MASTER).pwd_db   # the databases agree

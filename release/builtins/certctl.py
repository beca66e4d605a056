"""`certctl rehash` without the host's certctl or openssl.

FreeBSD-caroot's post-install script and the static flavour's recipe both run
the *build host's* certctl, which on a non-FreeBSD host does not exist: the
image would silently lack its OpenSSL hash directory.  This module computes the
same directory from the certificate bytes alone.

Three generations of FreeBSD's tool are reproduced (see style_for()):

- ``style="symlink"``: usr.sbin/certctl/certctl.sh as of 13.x (the version with
  $FreeBSD$ tags and `install -lrs`).  For each `*.pem|*.crt|*.cer|*.crl` file,
  in `ls` order, a relative symlink /etc/ssl/certs/<hash>.<n> ->
  ../../../usr/share/certs/trusted/<file>, with <n> the first free suffix.  The
  untrusted (older: blacklisted) certificates are linked into /etc/ssl/<layout>
  first, and a trusted certificate whose SHA-1 fingerprint matches one of them
  is left out.  A rehash deletes the old links only.
- ``style="link"``: certctl.sh as 14.x ships it (no $FreeBSD$ tag, `set -u`,
  cert_files_in()).  A rehash deletes every file and link in /etc/ssl/certs and
  /etc/ssl/untrusted, then installs each file holding exactly one
  "Certificate:" dump as a hard link (`install -lm`, mode 0444) named
  <hash>.<n>, splits files holding several into copies, skips files holding
  none, and leaves out a certificate whose fingerprint is already untrusted or
  already installed under its hash.  FreeBSD's static recipe runs it as
  `certctl -c rehash` (copies instead of links).  No bundle.
- ``style="copy"``: the C rewrite (15.x).  Every certificate of every file is
  written as PEM to /etc/ssl/certs/<hash>.<n> (mode 0444), untrusted ones to
  /etc/ssl/untrusted, duplicates dropped, suffixes given in the order of the
  certificates' SHA-1 fingerprints (OpenSSL's X509_cmp), plus the bundle
  /etc/ssl/cert.pem (usr.sbin/certctl/certctl.c, commit 03221b18 as the code
  index stores it).  As released in 15.0 a rehash also re-reads the
  certificates already installed in /etc/ssl/certs; later branches do not
  (certctl_tree).

<hash> is OpenSSL's X509_NAME_hash, implemented here on the DER bytes so that
it does not depend on the host's OpenSSL version.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import StepError
from .entries import Entry

SHARE_CERTS = "/usr/share/certs"
SSL_DIR = "/etc/ssl"
CERT_SUFFIXES = (".pem", ".crt", ".cer", ".crl")   # certctl.sh's FILEPAT
LAYOUTS = ("untrusted", "blacklisted")
STYLES = ("symlink", "link", "copy")
TREE_STYLES = STYLES + ("copy-sticky",)     # certctl_tree: "copy" that keeps the installed certificates
DIR_MODE = 0o755        # certctl: mkdir -p / install -d -m 0755
CERT_MODE = 0o444       # SHAREMODE for the installed certificates; C certctl's files
SYMLINK_MODE = 0o755    # what symlink(2) gets under umask 022 on FreeBSD

_PEM = re.compile(rb"-----BEGIN (X509 )?CERTIFICATE-----\r?\n(.*?)-----END \1?CERTIFICATE-----",
                  re.DOTALL)


@dataclass(frozen=True)
class Certificate:
    """One X.509 certificate as certctl sees it."""

    der: bytes
    subject_hash: str       # X509_NAME_hash, "%08x"
    fingerprint: bytes      # SHA-1 of the DER, what certctl compares

    @property
    def pem(self) -> bytes:
        """PEM_write_X509's spelling: base64 in 64-column lines."""
        b64 = base64.b64encode(self.der)
        lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
        return b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE-----\n"


def read_certificates(data: bytes, where: str) -> list[Certificate]:
    """Every PEM certificate in *data*, in file order; text around them is ignored.

    FreeBSD's files start with an `openssl x509 -text` dump and carry the PEM
    block at the end.  A file without any certificate is a StepError naming *where*.
    """
    certs = []
    for m in _PEM.finditer(data):
        try:
            der = base64.b64decode(b"".join(m.group(2).split()), validate=True)
        except binascii.Error as exc:
            raise StepError(f"{where}: unreadable certificate: {exc}") from None
        try:
            digest = subject_hash(der)
        except StepError as exc:
            raise StepError(f"{where}: {exc}") from None
        certs.append(Certificate(der, digest, hashlib.sha1(der).digest()))
    if not certs:
        raise StepError(f"{where}: no PEM certificate found")
    return certs


def has_certificate(data: bytes) -> bool:
    """Whether *data* holds a PEM certificate block at all (certctl.c skips files without one)."""
    return _PEM.search(data) is not None


def subject_hash(der: bytes) -> str:
    """`openssl x509 -noout -subject_hash` of a DER certificate."""
    md = hashlib.sha1(canonical_name(subject_der(der))).digest()
    return f"{int.from_bytes(md[:4], 'little'):08x}"


def subject_der(cert_der: bytes) -> bytes:
    """The subject Name's DER, exactly as encoded in the certificate.

    Read with the small DER walker below rather than `cryptography`, which
    refuses (or will refuse) real FreeBSD roots that OpenSSL accepts, such as
    Go Daddy and Starfield G2 with their serial number 0.
    """
    outer = _tlv(cert_der, 0)
    cert = _children(cert_der, outer)
    if outer.end != len(cert_der) or len(cert) != 3 or cert_der[0] != 0x30:
        raise StepError("certificate: not a DER Certificate SEQUENCE")
    tbs = _children(cert_der, cert[0])
    fields = tbs[1:] if cert_der[tbs[0].start] == 0xA0 else tbs   # [0] version is optional
    # serialNumber, signature, issuer, validity, subject
    if len(fields) < 5:
        raise StepError("certificate: TBSCertificate has too few fields")
    subject = fields[4]
    return cert_der[subject.start:subject.end]


def canonical_name(name_der: bytes) -> bytes:
    """OpenSSL's x509_name_canon: the bytes X509_NAME_hash digests.

    Each RDN becomes a DER SET of its attributes with string values converted to
    UTF8String, lower-cased (ASCII only), trimmed and with inner whitespace runs
    collapsed to one space; the RDN SETs are concatenated without the outer
    SEQUENCE header.  Certificates that spell the same name differently thus
    land in the same hash bucket, which is what OpenSSL's lookup expects.
    """
    out = []
    for rdn in _children(name_der, _tlv(name_der, 0)):
        atvs = []
        for atv in _children(name_der, rdn):
            parts = _children(name_der, atv)
            if len(parts) != 2:
                raise StepError("certificate: malformed attribute in subject")
            oid, value = parts
            body = name_der[oid.start:oid.end] + _canonical_value(name_der, value)
            atvs.append(_der(0x30, body))
        out.append(_der(0x31, b"".join(sorted(atvs))))
    return b"".join(out)


def rehash(trusted: Mapping[str, bytes], untrusted: Mapping[str, bytes], *,
           layout: str = "untrusted", style: str = "symlink",
           install_sources: bool = True, copy: bool = False) -> list[Entry]:
    """The entries `certctl rehash` leaves in an image whose certificate store is given.

    *trusted* and *untrusted* map file names (as in /usr/share/certs/trusted and
    /usr/share/certs/<layout>) to their bytes.  With *install_sources* the
    certificate files and their directories are described too (a package
    installs them); the static flavour, which hashes the source tree's copies
    directly, passes False with ``style="copy"``, or with ``style="link"`` and
    *copy* (its `certctl -c`).  ``style="link"`` always uses the untrusted layout.
    """
    if layout not in LAYOUTS:
        raise StepError(f"certctl rehash: unknown layout {layout!r} (expected one of {', '.join(LAYOUTS)})")
    if style not in STYLES:
        raise StepError(f"certctl rehash: unknown style {style!r} (expected one of {', '.join(STYLES)})")
    if style == "symlink" and not install_sources:
        raise StepError("certctl rehash: symlinks need the certificate files installed (install_sources)")
    if style == "link" and not (install_sources or copy):
        raise StepError("certctl rehash: hard links need the certificate files installed (install_sources)")
    entries: list[Entry] = []
    if install_sources:
        entries += _sources(trusted, "trusted") + _sources(untrusted, layout)
    entries += [Entry(f"{SSL_DIR}/certs", "dir", DIR_MODE), Entry(f"{SSL_DIR}/{layout}", "dir", DIR_MODE)]
    if style == "symlink":
        return entries + _symlinks(trusted, untrusted, layout)
    if style == "link":
        return entries + _linked(trusted, untrusted, copy)
    return entries + _copies(trusted, untrusted, layout)


def _sources(files: Mapping[str, bytes], sub: str) -> list[Entry]:
    directory = f"{SHARE_CERTS}/{sub}"
    out = [Entry(directory, "dir", DIR_MODE)]
    for name in _ls(files, directory):
        out.append(Entry(f"{directory}/{name}", "file", CERT_MODE, data=files[name]))
    return out


def _ls(files: Mapping[str, bytes], directory: str) -> list[str]:
    """File names in `ls` order (C locale: bytewise), refusing names that are not plain."""
    for name in files:
        if not name or "/" in name or name in (".", ".."):
            raise StepError(f"{directory}: bad certificate file name {name!r}")
    return sorted(files, key=lambda n: n.encode())


def _symlinks(trusted: Mapping[str, bytes], untrusted: Mapping[str, bytes], layout: str) -> list[Entry]:
    """certctl.sh: untrusted links first, then trusted ones not on the untrusted list."""
    out: list[Entry] = []
    rejected: set[tuple[str, bytes]] = set()
    for sub, files, dest in ((layout, untrusted, layout), ("trusted", trusted, "certs")):
        source_dir = f"{SHARE_CERTS}/{sub}"
        taken: set[str] = set()
        for name in _ls(files, source_dir):
            if not name.endswith(CERT_SUFFIXES):
                continue
            # `openssl x509 -in FILE` looks at the first certificate only
            cert = read_certificates(files[name], f"{source_dir}/{name}")[0]
            key = (cert.subject_hash, cert.fingerprint)
            if dest == layout:
                rejected.add(key)
            elif key in rejected:
                continue
            link = _first_free(cert.subject_hash, taken)
            target = posixpath.relpath(f"{source_dir}/{name}", f"{SSL_DIR}/{dest}")
            out.append(Entry(f"{SSL_DIR}/{dest}/{link}", "symlink", SYMLINK_MODE, target=target))
    return out


def style_for(abi_major: int, branch: str = "") -> str:
    """The certctl generation a FreeBSD release's src carries (see the module docstring).

    13.x "symlink", 14.x "link", releng/15.0 "copy-sticky" (certctl.c as
    released in 15.0: a rehash re-reads the installed certificates), later
    15.x branches and main "copy" (certctl.c since "certctl: Unstickify
    (un)trusted certificates", main 2fef18ff, merged to stable/15 and
    releng/15.1: a rehash starts from TRUSTPATH/UNTRUSTPATH alone).
    """
    if abi_major <= 13:
        return "symlink"
    if abi_major == 14:
        return "link"
    return "copy-sticky" if branch == "releng/15.0" else "copy"


def certificate_pieces(data: bytes) -> list[tuple[bytes, bool]]:
    """certctl.sh's do_scan(): (bytes to install, installable as a link) per certificate of a file.

    `grep -c '^Certificate:$'`: none -> the file is skipped; one -> the file
    itself; more -> `egrep '^[^#]' | split -p '^Certificate:$'`, each piece
    copied (a piece without a certificate fails openssl and is skipped).
    """
    lines = data.split(b"\n")
    dumps = sum(1 for line in lines if line == b"Certificate:")
    if dumps == 0:
        return []
    if dumps == 1:
        return [(data, True)]
    pieces: list[list[bytes]] = [[]]
    for line in lines:
        if not line or line.startswith(b"#"):
            continue
        if line == b"Certificate:" and pieces[-1]:
            pieces.append([])
        pieces[-1].append(line)
    return [(b"\n".join(p) + b"\n", False) for p in pieces if _PEM.search(b"\n".join(p))]


def _linked(trusted: Mapping[str, bytes], untrusted: Mapping[str, bytes], copy: bool) -> list[Entry]:
    """certctl.sh of 14.x: untrusted first (no checks), then trusted ones not untrusted nor installed."""
    out: list[Entry] = []
    installed: dict[str, dict[str, bytes]] = {"untrusted": {}, "certs": {}}      # dest -> name -> fingerprint
    for sub, files, dest in (("untrusted", untrusted, "untrusted"), ("trusted", trusted, "certs")):
        source_dir = f"{SHARE_CERTS}/{sub}"
        for name in _ls(files, source_dir):
            if not name.endswith(CERT_SUFFIXES):
                continue
            for piece, linkable in certificate_pieces(files[name]):
                cert = read_certificates(piece, f"{source_dir}/{name}")[0]
                if dest == "certs" and any(n.rsplit(".", 1)[0] == cert.subject_hash and fp == cert.fingerprint
                                           for d in installed.values() for n, fp in d.items()):
                    continue
                link = _first_free(cert.subject_hash, set(installed[dest]))
                installed[dest][link] = cert.fingerprint
                path = f"{SSL_DIR}/{dest}/{link}"
                if linkable and not copy:
                    out.append(Entry(path, "hardlink", CERT_MODE, target=f"{source_dir}/{name}"))
                else:
                    out.append(Entry(path, "file", CERT_MODE, data=piece))
    return out


def _copies(trusted: Mapping[str, bytes], untrusted: Mapping[str, bytes], layout: str) -> list[Entry]:
    """The C certctl: PEM copies named by hash, untrusted first, and the bundle."""
    bad = _cert_tree(untrusted, f"{SHARE_CERTS}/{layout}", exclude=set())
    good = _cert_tree(trusted, f"{SHARE_CERTS}/trusted", exclude={c.der for c in bad})
    out: list[Entry] = []
    for certs, dest in ((bad, layout), (good, "certs")):
        taken: set[str] = set()
        for cert in certs:
            name = _first_free(cert.subject_hash, taken)
            out.append(Entry(f"{SSL_DIR}/{dest}/{name}", "file", CERT_MODE, data=cert.pem))
    bundle = b"".join(c.pem for c in good)
    out.append(Entry(f"{SSL_DIR}/cert.pem", "file", CERT_MODE, data=bundle))
    return out


def _cert_tree(files: Mapping[str, bytes], directory: str, exclude: set[bytes]) -> list[Certificate]:
    """All distinct certificates of all files, in X509_cmp order (SHA-1 fingerprint, then DER)."""
    found: dict[bytes, Certificate] = {}
    for name in _ls(files, directory):
        for cert in read_certificates(files[name], f"{directory}/{name}"):
            if cert.der not in exclude:
                found.setdefault(cert.der, cert)
    return sorted(found.values(), key=lambda c: (c.fingerprint, len(c.der), c.der))


def _first_free(subject_hash: str, taken: set[str]) -> str:
    n = 0
    while f"{subject_hash}.{n}" in taken:
        n += 1
    name = f"{subject_hash}.{n}"
    taken.add(name)
    return name


# --- a minimal DER reader, enough for Certificate -> TBSCertificate -> Name ---------------

@dataclass(frozen=True)
class _Node:
    start: int          # first byte of the tag
    content: int        # first byte of the contents
    end: int            # one past the last byte


def _tlv(buf: bytes, pos: int, limit: int | None = None) -> _Node:
    """The DER element starting at *pos* (definite lengths only, as DER requires)."""
    limit = len(buf) if limit is None else limit
    try:
        i = pos + 1
        if buf[pos] & 0x1F == 0x1F:             # high tag number form
            while buf[i] & 0x80:
                i += 1
            i += 1
        first = buf[i]
        i += 1
        if first < 0x80:
            length = first
        elif first == 0x80:
            raise StepError("certificate: indefinite length in DER")
        else:
            count = first & 0x7F
            length = int.from_bytes(buf[i:i + count], "big")
            i += count
    except IndexError:
        raise StepError("certificate: truncated DER") from None
    if i + length > limit:
        raise StepError("certificate: DER element overruns its container")
    return _Node(pos, i, i + length)


def _children(buf: bytes, node: _Node) -> list[_Node]:
    if not buf[node.start] & 0x20:
        raise StepError("certificate: expected a constructed DER element")
    out = []
    pos = node.content
    while pos < node.end:
        child = _tlv(buf, pos, node.end)
        out.append(child)
        pos = child.end
    return out


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


# Universal tags OpenSSL canonicalises (ASN1_MASK_CANON) and how their bytes become text.
_UTF8, _BMP, _UNIVERSAL = 12, 30, 28
_ONE_BYTE = {19, 20, 22, 26}        # Printable, T61 (taken as Latin-1), IA5, Visible
_SPACE = b" \t\n\v\f\r"


def _canonical_value(buf: bytes, node: _Node) -> bytes:
    """asn1_string_canon: other types are copied as they are."""
    tag = buf[node.start]
    raw = buf[node.content:node.end]
    if tag == _UTF8:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise StepError("certificate: subject has invalid UTF8String") from None
    elif tag == _BMP:
        text = _wide(raw, 2)
    elif tag == _UNIVERSAL:
        text = _wide(raw, 4)
    elif tag in _ONE_BYTE:
        text = raw.decode("latin-1")
    else:
        return buf[node.start:node.end]
    return _der(_UTF8, _fold(text.encode("utf-8")))


def _wide(raw: bytes, width: int) -> str:
    if len(raw) % width:
        raise StepError("certificate: subject string has a partial character")
    points = [int.from_bytes(raw[i:i + width], "big") for i in range(0, len(raw), width)]
    if any(0xD800 <= p <= 0xDFFF or p > 0x10FFFF for p in points):
        raise StepError("certificate: subject string has an invalid character")
    return "".join(map(chr, points))


def _fold(data: bytes) -> bytes:
    """Trim, collapse whitespace runs to one space, lower-case ASCII; other bytes stay."""
    out = bytearray()
    for word in data.strip(_SPACE).split():     # bytes.split() splits on exactly _SPACE
        if out:
            out += b" "
        out += word.lower()                     # bytes.lower() touches ASCII only
    return bytes(out)

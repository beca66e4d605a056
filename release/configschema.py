"""The declarative table of config.toml's settings: every key, its type, default and check.

release/config.py validates a configuration against these tables and builds
its frozen dataclasses from the result; keeping the table apart keeps the
loader short and the list of settings readable in one place.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

REQUIRED = object()
LAYER_COMPRESSIONS = ("tar+gzip", "tar+zstd", "tar")
SIGNATURE_TYPES = ("fingerprints", "pubkey", "none")
SCRIPT_POLICIES = ("builtin", "emulate", "ignore")
RELEASE_KINDS = ("release", "snapshot")
PKGDB_SCHEMAS = (36, 42)


@dataclass(frozen=True)
class Setting:
    key: str
    type: str                       # "str", "int", "bool", "float", "list[str]", "str|int", "steps", "table"
    default: Any = REQUIRED
    check: Callable[[Any], str | None] | None = None
    doc: str = ""


def one_of(choices) -> Callable[[Any], str | None]:
    def check(value):
        if value not in choices:
            return f"must be one of {', '.join(map(str, choices))}, not {value!r}"
        return None
    return check


def positive(value) -> str | None:
    return None if value > 0 else f"must be positive, not {value}"


def in_range(lo: int, hi: int) -> Callable[[Any], str | None]:
    def check(value):
        return None if lo <= value <= hi else f"must be between {lo} and {hi}, not {value}"
    return check


def fingerprint_or_empty(value) -> str | None:
    """An OpenPGP fingerprint as gpg prints it (40 or 64 hex digits, spaces allowed), or ''."""
    digits = "".join(str(value).split()).upper().removeprefix("0X")
    if not value or (len(digits) in (40, 64) and all(c in "0123456789ABCDEF" for c in digits)):
        return None
    return f"must be a key fingerprint (40 or 64 hex digits, as gpg --fingerprint prints it), not {value!r}"


def url_or_empty(value) -> str | None:
    if not value or str(value).startswith(("https://", "http://", "file://")):
        return None
    return f"must be an https://, http:// or file:// URL, not {value!r}"


def epoch_policy(value) -> str | None:
    if isinstance(value, int) or value in ("src-inputs", "src-commit", "environment") or str(value).isdigit():
        return None
    return f'must be "src-inputs", "src-commit", "environment" or an epoch in seconds, not {value!r}'


SCHEMA: dict[str, list[Setting]] = {
    "pipeline": [
        Setting("workdir", "str", "work", doc="work directory (relative to the project)"),
        Setting("jobs", "int", 4, positive, "parallel downloads"),
        Setting("layer_compression", "str", "tar+gzip", one_of(LAYER_COMPRESSIONS)),
        Setting("gzip_level", "int", 6, in_range(0, 9)),
        Setting("gzip_engine", "str", "zlib", one_of(("zlib", "isal"))),
        Setting("zstd_level", "int", 3, in_range(1, 19)),
        Setting("xz_preset", "int", 6, in_range(0, 9)),
        Setting("source_date_epoch", "str|int", "src-inputs", epoch_policy),
        Setting("http_timeout", "float", 30.0, positive),
        Setting("http_retries", "int", 4, in_range(0, 20)),
        Setting("user_agent", "str", "freebsd-oci-release"),
    ],
    "src": [
        Setting("url", "str", "https://git.freebsd.org/src.git"),
        Setting("mirror", "str", "git/src.git", doc="bare mirror, relative to the work directory"),
    ],
    "pkgbase": [
        Setting("url", "str", "https://pkg.freebsd.org/${ABI}/${REPO}"),
        Setting("signature_type", "str", "fingerprints", one_of(SIGNATURE_TYPES)),
        Setting("fingerprints", "str", "src:share/keys/pkg"),
        Setting("pubkey", "str", ""),
        Setting("pkgdb_schema", "int", 42, one_of(PKGDB_SCHEMAS)),
        Setting("pkg_packages", "list[str]", ["FreeBSD-pkg-bootstrap", "FreeBSD-pkg"]),
    ],
    "publish": [
        Setting("root", "str", "", doc="download tree root (releases/ and snapshots/ go below it)"),
        Setting("keep", "int", 7, positive, "snapshot dates kept per version and architecture"),
    ],
    "push": [
        Setting("release_tags", "list[str]", ["${VERSION}", "${MAJOR}.${MINOR}", "${MAJOR}"]),
        Setting("snapshot_tags", "list[str]", ["${MAJOR}.snap", "${MAJOR}.snap${BUILDDATE}"]),
        Setting("sbom", "bool", True),
    ],
    "signing": [
        Setting("key", "str", "", doc="ECDSA P-256 PEM (cosign, CHECKSUM .sig)"),
        Setting("public_key", "str", "", doc="trusted ECDSA public key, for verify-tree"),
        Setting("openpgp_key", "str", "", fingerprint_or_empty,
                "fingerprint of the OpenPGP key in the GnuPG home (else $RELEASE_OPENPGP_KEY_FILE)"),
        Setting("gnupg_home", "str", "", doc="GnuPG home holding openpgp_key (default: $GNUPGHOME, ~/.gnupg)"),
        Setting("openpgp_public_key", "str", "", doc="trusted OpenPGP public key (armoured), for verify-tree"),
        Setting("lookaside_url", "str", "", url_or_empty,
                "public URL of the download tree's signatures/ (default: its file:// path)"),
    ],
    "registries.*": [
        Setting("url", "str"),
        Setting("namespace", "str", ""),
        Setting("tls_verify", "bool", True),
        Setting("chunk_size", "int", 8 << 20, positive),
    ],
    "architectures.*": [
        Setting("target", "str", ""),
        Setting("oci", "str"),
        Setting("variant", "str", ""),
        Setting("byte_order", "str", "little", one_of(("little", "big"))),
        Setting("legacy_arch", "str", ""),
    ],
    "flavours.*": [
        Setting("parent", "str", ""),
        Setting("packages", "list[str]", []),
        Setting("cmd", "list[str]", []),
        Setting("env", "list[str]", ["PATH=/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin"]),
        Setting("steps", "steps", []),
        Setting("scripts", "str", "builtin", one_of(SCRIPT_POLICIES)),
        Setting("ignore_scripts", "list[str]", []),
        Setting("description", "str", ""),
    ],
    "releases.*": [
        Setting("version", "str", ""),
        Setting("kind", "str", "release", one_of(RELEASE_KINDS)),
        Setting("branch", "str"),
        Setting("repo", "str"),
        Setting("abi_major", "int", check=positive),
        Setting("arches", "list[str]"),
        Setting("flavours", "list[str]"),
        Setting("mirror", "str", ""),
        Setting("src_url", "str", ""),
        Setting("source", "str", "", doc="org.opencontainers.image.source; needed when src_url is local"),
        Setting("signature_type", "str", "", one_of(("",) + SIGNATURE_TYPES)),
        Setting("fingerprints", "str", ""),
        Setting("pubkey", "str", ""),
        Setting("pkgdb_schema", "int", 0, one_of((0,) + PKGDB_SCHEMAS)),
        Setting("lock", "str", ""),
        Setting("demo", "bool", False),
        Setting("packages", "table", {}),
    ],
}

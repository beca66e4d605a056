"""The declarative table of config.toml's settings: every key, its type, default and check.

release/config.py validates a configuration against these tables and builds
its frozen dataclasses from the result; keeping the table apart keeps the
loader short and the list of settings readable in one place.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

REQUIRED = object()
# A setting's check: given a value of the setting's type, the problem with it or None.
Check = Callable[[Any], str | None]
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
    check: Check | None = None
    doc: str = ""
    example: str = ""               # a TOML value, for the configuration reference


def one_of(choices: tuple[object, ...]) -> Check:
    def check(value: object) -> str | None:
        if value not in choices:
            return f"must be one of {', '.join(map(str, choices))}, not {value!r}"
        return None
    return check


def pkgdb_generation(*, inherit: bool) -> Check:
    """A local.sqlite generation pkg writes (0 on a release: the [pkgbase] one)."""
    def check(value: int) -> str | None:
        if value in PKGDB_SCHEMAS or (inherit and value == 0):
            return None
        return f"unknown pkg database generation {value!r} (supported: {', '.join(map(str, PKGDB_SCHEMAS))})"
    return check


def positive(value: float) -> str | None:
    return None if value > 0 else f"must be positive, not {value}"


def non_negative(value: float) -> str | None:
    return None if value >= 0 else f"must not be negative, not {value}"


def gzip_block_size(value: int) -> str | None:
    """0 (one stream) or 64 KiB .. 64 MiB (compress.GZIP_BLOCK_RANGE)."""
    if value == 0 or (64 << 10) <= value <= (64 << 20):
        return None
    return f"must be 0 or between {64 << 10} and {64 << 20} bytes, not {value}"


def in_range(lo: int, hi: int) -> Check:
    def check(value: int) -> str | None:
        return None if lo <= value <= hi else f"must be between {lo} and {hi}, not {value}"
    return check


def fingerprint_or_empty(value: str) -> str | None:
    """An OpenPGP fingerprint as gpg prints it (40 or 64 hex digits, spaces allowed), or ''."""
    digits = "".join(str(value).split()).upper().removeprefix("0X")
    if not value or (len(digits) in (40, 64) and all(c in "0123456789ABCDEF" for c in digits)):
        return None
    return f"must be a key fingerprint (40 or 64 hex digits, as gpg --fingerprint prints it), not {value!r}"


def url_or_empty(value: str) -> str | None:
    if not value or str(value).startswith(("https://", "http://", "file://")):
        return None
    return f"must be an https://, http:// or file:// URL, not {value!r}"


NAME_CHARACTERS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
NAME_RULE = 'must start with a letter or digit and hold only letters, digits, ".", "_", "+" and "-"'


def path_name(value: str) -> str | None:
    """Names that become file and directory names (releases, versions, flavours, architectures)."""
    if value == "" or (NAME_CHARACTERS.fullmatch(value) and ".." not in value):
        return None
    return f"{value!r} {NAME_RULE} (it becomes a file name)"


def epoch_policy(value: str | int) -> str | None:
    if isinstance(value, int) or value in ("src-inputs", "src-commit", "environment") or str(value).isdigit():
        return None
    return f'must be "src-inputs", "src-commit", "environment" or an epoch in seconds, not {value!r}'


SECTIONS: dict[str, str] = {
    "pipeline": "How the pipeline runs: work directory, compression, reproducibility, HTTP.",
    "src": "The FreeBSD src repository the releases are built from.",
    "pkgbase": "Defaults for the pkgbase repositories (each release may override them).",
    "publish": "The download.freebsd.org-shaped tree `publish:<release>` writes.",
    "push": "Tags and attachments of `push:<release>`.",
    "signing": "The release signing keys: CHECKSUM signatures, cosign and OpenPGP image signatures.",
    "registries.*": "One table per OCI registry `push:<release>` pushes to.",
    "architectures.*": "One table per TARGET_ARCH: how FreeBSD and OCI name it. Its name becomes part of "
                       "file names: letters, digits, `.` `_` `+` `-`, starting with a letter or digit.",
    "flavours.*": "One table per image flavour; each is one layer on top of its parent's. Its name becomes part "
                  "of file names: letters, digits, `.` `_` `+` `-`, starting with a letter or digit.",
    "releases.*": "One table per release or branch built. Its name becomes part of file names: letters, digits, "
                  "`.` `_` `+` `-`, starting with a letter or digit.",
}

SCHEMA: dict[str, list[Setting]] = {
    "pipeline": [
        Setting("workdir", "str", "work", doc="work directory, relative to config.toml (`doit workdir=DIR` "
                "overrides it)", example='"/var/build/freebsd-oci"'),
        Setting("jobs", "int", 4, positive, "parallel package downloads", "8"),
        Setting("layer_compression", "str", "tar+gzip", one_of(LAYER_COMPRESSIONS),
                "media type of the layers: tar+gzip (what every client reads), tar+zstd or tar", '"tar+zstd"'),
        Setting("gzip_level", "int", 6, in_range(0, 9), "gzip level of tar+gzip layers", "9"),
        Setting("gzip_engine", "str", "zlib", one_of(("zlib", "isal")),
                "zlib (identical bytes on every CPU) or isal (about 9x faster, bytes depend on the CPU)",
                '"isal"'),
        Setting("gzip_block_size", "int", 1 << 20, gzip_block_size,
                "tar+gzip layers are one gzip member of blocks of this many bytes, each deflated on its "
                "own (primed with the 32 KiB before it) so every core compresses one, with the same bytes "
                "for any thread count; 0: one serial deflate stream (on one core)", "0"),
        Setting("compress_threads", "int", 0, non_negative,
                "threads compressing the blocks of a gzip layer (0: every CPU the build may use); "
                "never changes the bytes", "2"),
        Setting("zstd_level", "int", 3, in_range(1, 19), "zstd level of tar+zstd layers", "19"),
        Setting("xz_preset", "int", 6, in_range(0, 9), "xz preset of the .txz archives (documents and "
                "uncompressed blobs; gzip layers are stored as they are)", "9"),
        Setting("source_date_epoch", "str|int", "src-inputs", epoch_policy,
                "SOURCE_DATE_EPOCH: src-inputs (newest commit changing a src file the images read), "
                "src-commit (the branch head), environment, or an epoch; $SOURCE_DATE_EPOCH wins when set",
                '"src-commit"'),
        Setting("http_timeout", "float", 30.0, positive, "seconds before an HTTP connection or read gives up",
                "60"),
        Setting("http_retries", "int", 4, in_range(0, 20), "retries of a failed HTTP request (with backoff)", "8"),
        Setting("user_agent", "str", "freebsd-oci-release", doc="HTTP User-Agent", example='"re-builder/1"'),
    ],
    "src": [
        Setting("url", "str", "https://git.freebsd.org/src.git", doc="the src repository (git)",
                example='"https://github.com/freebsd/freebsd-src.git"'),
        Setting("mirror", "str", "git/src.git", doc="its bare mirror, relative to the work directory",
                example='"git/freebsd-src.git"'),
    ],
    "pkgbase": [
        Setting("url", "str", "https://pkg.freebsd.org/${ABI}/${REPO}",
                doc="repository URL template (${ABI}, ${REPO}, ${ARCH}, ${MAJOR}; file:// works too)",
                example='"https://pkg.example.org/${ABI}/${REPO}"'),
        Setting("signature_type", "str", "fingerprints", one_of(SIGNATURE_TYPES),
                "how catalogues are verified, as pkg's repository option of that name", '"pubkey"'),
        Setting("fingerprints", "str", "src:auto",
                doc='trust anchors for "fingerprints": src:<dir> reads trusted/ and revoked/ at the '
                    "release's src commit (src:auto: share/keys/pkgbase-<major> where the release's src has it, "
                    "else share/keys/pkg); otherwise a directory (relative to config.toml) holding them",
                example='"keys/my-repo"'),
        Setting("pubkey", "str", "", doc='the RSA public key (PEM) for "pubkey", relative to config.toml',
                example='"keys/repo.pub"'),
        Setting("pkgdb_schema", "int", 42, pkgdb_generation(inherit=False),
                "generation of /var/db/pkg/local.sqlite in images that ship pkg (42: pkg 2.8 and later, "
                "36: pkg 1.21 to 2.3)",
                "36"),
        Setting("pkg_packages", "list[str]", ["FreeBSD-pkg-bootstrap", "FreeBSD-pkg"],
                doc="packages whose presence in an image makes it ship a pkg database",
                example='["FreeBSD-pkg"]'),
    ],
    "publish": [
        Setting("root", "str", "", doc="download tree root, relative to config.toml (releases/ and snapshots/ "
                "go below it; `doit publish_root=DIR` or $RELEASE_PUBLISH_ROOT override it)",
                example='"/ftp/pub/FreeBSD"'),
        Setting("keep", "int", 7, positive, "snapshot dates kept per version and architecture", "14"),
    ],
    "push": [
        Setting("release_tags", "list[str]", ["${VERSION}", "${MAJOR}.${MINOR}", "${MAJOR}"],
                doc="tags of a release's images (${VERSION}, ${MAJOR}, ${MINOR})",
                example='["${VERSION}", "${MAJOR}.${MINOR}"]'),
        Setting("snapshot_tags", "list[str]", ["${MAJOR}.snap", "${MAJOR}.snap${BUILDDATE}"],
                doc="tags of a snapshot's images (also ${BUILDDATE}, YYYYMMDD)", example='["${MAJOR}-snapshot"]'),
        Setting("sbom", "bool", True, doc="push each image's SPDX SBOM as an OCI artifact referring to it",
                example="false"),
    ],
    "signing": [
        Setting("key", "str", "", doc="ECDSA P-256 private key (PEM) for cosign signatures and CHECKSUM .sig, "
                "relative to config.toml; else $RELEASE_SIGNING_KEY_FILE or $RELEASE_SIGNING_KEY "
                "($RELEASE_SIGNING_KEY_PASSWORD decrypts it)", example='"/secure/re-signing.pem"'),
        Setting("public_key", "str", "", doc="the trusted ECDSA public key verify-tree checks .sig files against",
                example='"keys/re-signing.pub"'),
        Setting("openpgp_key", "str", "", fingerprint_or_empty,
                "fingerprint of the OpenPGP release key in the GnuPG home (image signatures, CHECKSUM .asc); "
                "else $RELEASE_OPENPGP_KEY_FILE or $RELEASE_OPENPGP_KEY with $RELEASE_OPENPGP_PASSPHRASE",
                '"0123456789ABCDEF0123456789ABCDEF01234567"'),
        Setting("gnupg_home", "str", "", doc="GnuPG home holding openpgp_key (default: $GNUPGHOME, ~/.gnupg)",
                example='"/home/re/.gnupg"'),
        Setting("openpgp_public_key", "str", "", doc="the trusted OpenPGP public key (armoured) verify-tree "
                "checks .asc files and the signature store against", example='"keys/re-signing.asc"'),
        Setting("lookaside_url", "str", "", url_or_empty,
                "public URL of the download tree's signatures/ (default: its file:// path)",
                '"https://download.freebsd.org/signatures"'),
    ],
    "registries.*": [
        Setting("url", "str", doc="registry base URL", example='"https://registry.example.org"'),
        Setting("namespace", "str", "", doc="repositories are <namespace>/freebsd-<flavour>",
                example='"freebsd"'),
        Setting("tls_verify", "bool", True, doc="verify the registry's TLS certificate", example="false"),
        Setting("chunk_size", "int", 8 << 20, positive, "bytes per chunk of a chunked blob upload",
                "16777216"),
    ],
    "architectures.*": [
        Setting("target", "str", "", doc="TARGET (the table's name is TARGET_ARCH); empty: the same",
                example='"arm64"'),
        Setting("oci", "str", doc="OCI platform architecture", example='"arm64"'),
        Setting("variant", "str", "", doc="OCI platform variant", example='"v8"'),
        Setting("byte_order", "str", "little", one_of(("little", "big")),
                "byte order of the databases built for it (pwd.db, services.db ...)", '"big"'),
    ],
    "flavours.*": [
        Setting("parent", "str", "", doc="the flavour this one is layered on (empty: a base layer)",
                example='"dynamic"'),
        Setting("packages", "list[str]", [], doc="pkgbase packages to install (their dependencies come along)",
                example='["FreeBSD-runtime"]'),
        Setting("cmd", "list[str]", [], doc="the image's Cmd", example='["/bin/sh"]'),
        Setting("env", "list[str]", ["PATH=/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin"],
                doc="the image's Env", example='["PATH=/bin:/usr/bin", "LANG=C.UTF-8"]'),
        Setting("steps", "steps", [], doc="install steps besides the packages (see Step kinds below)",
                example='[{ kind = "accounts" }]'),
        Setting("scripts", "str", "builtin", one_of(SCRIPT_POLICIES),
                "package scripts: builtin (recognised ones as built-ins, others refused), emulate (run them "
                "under the executor) or ignore", '"emulate"'),
        Setting("ignore_scripts", "list[str]", [], doc='"<package>:<phase>" scripts to skip on purpose',
                example='["FreeBSD-sendmail:post-install"]'),
        Setting("description", "str", "", doc="the image's description annotation and layer comment",
                example='"Shell-based workloads"'),
    ],
    "releases.*": [
        Setting("version", "str", "", path_name, doc="what file names and tags say (empty: REVISION-BRANCH of "
                "the release's sys/conf/newvers.sh); letters, digits, `.` `_` `+` `-`", example='"14.2-RELEASE"'),
        Setting("kind", "str", "release", one_of(RELEASE_KINDS),
                "release (releases/ tree) or snapshot (snapshots/ tree, dated names)", '"snapshot"'),
        Setting("branch", "str", doc="src branch; a glob (releng/15.*) makes one release per matching branch, "
                "named by its version", example='"releng/14.2"'),
        Setting("newest", "int", 0, non_negative, "with a branch glob: only the newest N matching branches "
                "(0: every one)", "1"),
        Setting("repo", "str", "", doc="pkgbase repository name (${REPO}; empty: where pkg.FreeBSD.org "
                "publishes the release, base_release_<minor> for releases and base_latest for snapshots)",
                example='"base_release_2"'),
        Setting("abi_major", "int", 0, non_negative, "FreeBSD major version of the ABI (0: from newvers.sh)",
                "14"),
        Setting("arches", "list[str]", doc="TARGET_ARCHes to build", example='["amd64", "aarch64"]'),
        Setting("flavours", "list[str]", [], doc="flavours to build, parents first (empty: what the release's "
                "src builds: release/Makefile.oci OCI_IMAGES, else every release/tools/oci-image-*.conf); a "
                "listed flavour is defined by [flavours.<name>] when the configuration has it, else by the src",
                example='["static", "dynamic", "minimal"]'),
        Setting("image_repository", "str", "", doc="the pkgbase repository URL the image's own base.conf names "
                "(${ABI} is left for pkg); empty: as the release's src writes it (FreeBSD's pkg.FreeBSD.org), "
                "independent of where this build fetches from", example='"https://pkg.example.org/${ABI}/mine"'),
        Setting("image_name", "str", "", doc="image name template (${FLAVOUR}, ${MAJOR}); empty: as the "
                "release's make-oci-image.sh names them (freebsd${MAJOR}-${FLAVOUR} in 14.x), else "
                "freebsd-${FLAVOUR}", example='"freebsd${MAJOR}-${FLAVOUR}"'),
        Setting("mirror", "str", "", doc="pkgbase URL template for this release (overrides [pkgbase] url)",
                example='"file:///srv/pkgbase/${ABI}/${REPO}"'),
        Setting("src_url", "str", "", doc="src repository for this release (overrides [src] url)",
                example='"file:///srv/src.git"'),
        Setting("source", "str", "", doc="org.opencontainers.image.source; needed when src_url is local",
                example='"https://git.freebsd.org/src.git"'),
        Setting("signature_type", "str", "", one_of(("",) + SIGNATURE_TYPES),
                "overrides [pkgbase] signature_type", '"fingerprints"'),
        Setting("fingerprints", "str", "", doc="overrides [pkgbase] fingerprints",
                example='"src:share/keys/pkgbase-15"'),
        Setting("pubkey", "str", "", doc="overrides [pkgbase] pubkey", example='"keys/repo.pub"'),
        Setting("pkgdb_schema", "int", 0, pkgdb_generation(inherit=True), "overrides [pkgbase] pkgdb_schema "
                "(0: the default)", "36"),
        Setting("lock", "str", "", doc="directory of <arch>.json lock files pinning this release",
                example='"locks/14.2-RELEASE"'),
        Setting("demo", "bool", False, doc="inputs generated by the embedded demo generator", example="true"),
        Setting("packages", "table", {}, doc="per-flavour package lists replacing the flavour's",
                example='{ minimal = ["FreeBSD-runtime", "FreeBSD-caroot"] }'),
    ],
}

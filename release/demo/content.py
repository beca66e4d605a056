"""What goes into each package of the demo pkgbase repository.

The demo repository carries the packages FreeBSD's 14.x image recipes ask for
(static, dynamic and minimal flavours), with small but real contents: the
accounts, services and time zone files are FreeBSD's and the tz database's own
(under data/), the package scripts are the ones FreeBSD's pkgbase build puts
in its manifests, and the ownership/mode quirks the pipeline has to get right
(a set-uid su, hardlinks, a daemon-owned directory, @config files) are there.

Binaries are stand-ins: a valid ELF header for the target (class, byte order,
EI_OSABI 9 = FreeBSD, e_machine) followed by pseudo machine code derived from
SHAKE-256 of (arch, path).  Nothing is random at run time, so every run and
every host produces the same bytes.

Sizes follow ``scale``.  Each binary has a nominal size close to its FreeBSD
14.2/amd64 counterpart; it is written at ``nominal * scale / REAL_SCALE`` bytes
(at least MIN_ELF, at most MAX_FILE).  scale 1 is the small demo (binaries of
1-16 KiB); scale REAL_SCALE (256) gives real-size files, which is what
bench/genrepo.py uses for realistic timing.  The pseudo code mixes literal
runs drawn from a code-like byte distribution with copies from recent output
(within gzip's 32 KiB window) and from further back (only zstd/xz see those),
so it compresses like real binaries.  Measured on this project's Debian 12
build host: stripped amd64 ELF files (libc.so.6, libcrypto.so.3, libssl.so.3,
bash, ls, find, python3.11) compress 2.1-2.6x with gzip -6 and 2.3-3.1x with
zstd -19; the stand-ins come out at about 2.5x (gzip -6) and 2.8x (zstd -19).
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from .pkgtar import Member

DATA = Path(__file__).resolve().parent / "data"
DEFAULT_VERSION = "14.2"
BUILD_TIME = 1732838400          # 2024-11-29 00:00:00 UTC
REAL_SCALE = 256                 # the scale at which binaries have their nominal (real) sizes
MAX_FILE = 8 << 20               # per-file bound: package members are held in memory
KIB = 1024

RUNTIME_POST_INSTALL = (
    "pwd_mkdb -i -p -d  ${PKG_ROOTDIR}/etc ${PKG_ROOTDIR}/etc/master.passwd\n"
    "services_mkdb %s -q -o ${PKG_ROOTDIR}/var/db/services.db ${PKG_ROOTDIR}/etc/services\n"
    "chmod 1777 ${PKG_ROOTDIR}/tmp\n")
CERTCTL_POST_INSTALL = ("[ -x /usr/sbin/certctl ] && env DESTDIR=${PKG_ROOTDIR} \\\n"
                        "    /usr/sbin/certctl rehash\n")
CAROOT_POST_INSTALL = "/usr/sbin/certctl -D${PKG_ROOTDIR}/ ${PKG_METALOG:+-U -M $PKG_METALOG} rehash"
CAROOT_CERTS = ("DigiCert_Global_Root_G2.pem", "GTS_Root_R1.pem", "ISRG_Root_X1.pem", "ISRG_Root_X2.pem")


# --- architectures -----------------------------------------------------------

@dataclass(frozen=True)
class ArchInfo:
    """What the stand-in binaries and the manifests need to know about a TARGET_ARCH."""

    name: str
    elf_class: int        # 32 or 64
    byte_order: str       # "little" or "big"
    machine: int          # ELF e_machine
    flags: int            # ELF e_flags (ABI bits FreeBSD's toolchain sets)
    legacy: str           # pkg's old arch spelling after "freebsd:<major>:"


_ARCHES = {
    "amd64": (64, "little", 62, 0, "x86:64"),
    "aarch64": (64, "little", 183, 0, "aarch64:64"),
    "i386": (32, "little", 3, 0, "x86:32"),
    "riscv64": (64, "little", 243, 0x5, "riscv:64"),                 # RVC, double-float ABI
    "armv7": (32, "little", 40, 0x05000400, "armv7:32:el:eabi:hardfp"),
    "powerpc": (32, "big", 20, 0, "powerpc:32:eb"),
    "powerpc64": (64, "big", 21, 2, "powerpc:64:eb"),                # ELFv2
    "powerpc64le": (64, "little", 21, 2, "powerpc:64:el"),
}
_ARCH_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def arch_info(arch: str) -> ArchInfo:
    """Known FreeBSD TARGET_ARCHes get their real ELF identity; any other name a generic 64-bit LE one.

    Unknown names are accepted so a configuration can try a new architecture
    end to end before this table learns its machine number.
    """
    if not _ARCH_NAME.match(arch):
        raise InputError(f"architecture {arch!r}: expected a TARGET_ARCH name such as amd64")
    elf_class, order, machine, flags, legacy = _ARCHES.get(arch, (64, "little", 0, 0, f"{arch}:64"))
    return ArchInfo(arch, elf_class, order, machine, flags, legacy)


def abi_string(abi_major: int, arch: str) -> str:
    return f"FreeBSD:{abi_major}:{arch}"


def legacy_arch(abi_major: int, arch: str) -> str:
    return f"freebsd:{abi_major}:{arch_info(arch).legacy}"


# --- stand-in binaries ---------------------------------------------------------

def _skew_table() -> bytes:
    """A byte translation giving uniform noise the lopsided histogram of machine code."""
    common = bytes.fromhex("000000000000484848898b8bffffe80f2444"
                           "85c001747475eb834c418d5dc3100820313e")
    pick = hashlib.shake_256(b"FreeBSD demo code histogram").digest(256)
    return bytes(common[p % len(common)] if p < 110 else i for i, p in enumerate(pick))


_SKEW = _skew_table()
_LITERAL = 82          # of 256: a literal run (incompressible-ish)
_FAR = 15              # of 256: a copy from up to 1 MiB back (beyond gzip's window)
_NEAR_WINDOW = 32000
_FAR_WINDOW = 1 << 20


def pseudo_code(seed: bytes, size: int) -> bytes:
    """*size* bytes of deterministic code-like data; fast (C-level slicing, ~80 bytes per step)."""
    literals = hashlib.shake_256(b"L\0" + seed).digest(size + 128).translate(_SKEW)
    control = hashlib.shake_256(b"C\0" + seed).digest(size // 4 + 64)
    out = bytearray()
    lit = c = 0
    while len(out) < size:
        kind, length, hi, lo = control[c:c + 4]
        c += 4
        have = len(out)
        if kind < _LITERAL or have < 256:
            run = 24 + (length & 63)
            out += literals[lit:lit + run]
            lit += run
            continue
        run = 16 + (length & 63)
        window = _FAR_WINDOW if kind < _LITERAL + _FAR else _NEAR_WINDOW
        distance = run + ((hi << 8 | lo) * 131) % (min(have, window) - run + 1)
        start = have - distance
        out += out[start:start + run]
    return bytes(out[:size])


def elf_header(info: ArchInfo, shared: bool, seed: bytes) -> bytes:
    """An ELF header FreeBSD's file(1) and readelf accept: no program or section headers."""
    end = "<" if info.byte_order == "little" else ">"
    ident = b"\x7fELF" + bytes([1 if info.elf_class == 32 else 2, 1 if end == "<" else 2, 1, 9, 0]) + bytes(7)
    # 64-bit programs are PIE (ET_DYN) since FreeBSD 13; 32-bit ones stay ET_EXEC.
    e_type = 3 if shared or info.elf_class == 64 else 2
    entry = 0x1000 + (int.from_bytes(hashlib.sha256(seed).digest()[:2], "big") << 4)
    if info.elf_class == 64:
        return ident + struct.pack(end + "HHIQQQIHHHHHH", e_type, info.machine, 1, entry, 0, 0,
                                   info.flags, 64, 56, 0, 64, 0, 0)
    return ident + struct.pack(end + "HHIIIIIHHHHHH", e_type, info.machine, 1, entry, 0, 0,
                               info.flags, 52, 32, 0, 40, 0, 0)


def scaled_size(nominal_kib: float, scale: float) -> int:
    """Bytes for a binary of *nominal_kib* at *scale* (see the module docstring)."""
    floor = max(128, int(KIB * min(scale, 1.0)))
    return min(MAX_FILE, max(floor, round(nominal_kib * KIB * scale / REAL_SCALE)))


def binary(info: ArchInfo, path: str, nominal_kib: float, scale: float) -> bytes:
    """A stand-in binary for *path* on *info*'s architecture."""
    seed = f"{info.name}\0{path}".encode()
    header = elf_header(info, ".so" in path.rsplit("/", 1)[-1], seed)
    size = scaled_size(nominal_kib, scale)
    return header + pseudo_code(seed, max(0, size - len(header)))


# --- package descriptions ------------------------------------------------------

@dataclass(frozen=True)
class Build:
    """Parameters every package of one repository shares."""

    arch: ArchInfo
    abi_major: int
    version: str = DEFAULT_VERSION
    time: int = BUILD_TIME
    scale: float = 1.0


@dataclass(frozen=True)
class DemoPackage:
    """A package ready for pkgwriter.write_package: manifest fields and members."""

    name: str
    manifest: dict[str, Any]
    members: tuple[Member, ...]


def _data(rel: str) -> bytes:
    return (DATA / rel).read_bytes()


def _table(text: str) -> list[tuple[str, float]]:
    """'dir: name size ...' lines -> [(path, nominal KiB)]."""
    rows = []
    for line in text.strip().splitlines():
        directory, _, items = line.partition(":")
        words = items.split()
        pairs = zip(words[::2], words[1::2], strict=True)
        rows += [(f"{directory.strip()}/{name}", float(size)) for name, size in pairs]
    return rows


class _Files:
    """Collects members with the build's mtime and FreeBSD's usual owners and modes."""

    def __init__(self, b: Build) -> None:
        self.b = b
        self.members: list[Member] = []

    def elf(self, path: str, nominal_kib: float, mode: int | None = None) -> None:
        shared = ".so" in path.rsplit("/", 1)[-1]
        self.file(path, binary(self.b.arch, path, nominal_kib, self.b.scale),
                  mode if mode is not None else (0o444 if shared else 0o555))

    def file(self, path: str, data: bytes, mode: int = 0o444,
             owner: tuple[str, str] = ("root", "wheel")) -> None:
        self.members.append(Member(path, "file", mode, *owner, data=data, mtime=self.b.time))

    def link(self, path: str, source: str) -> None:
        mode = next(m.mode for m in self.members if m.path == source)
        self.members.append(Member(path, "hardlink", mode, target=source, mtime=self.b.time))

    def symlink(self, path: str, target: str) -> None:
        self.members.append(Member(path, "symlink", 0o755, target=target, mtime=self.b.time))

    def dir(self, path: str, mode: int = 0o755, owner: tuple[str, str] = ("root", "wheel")) -> None:
        self.members.append(Member(path, "dir", mode, *owner, mtime=self.b.time))

    def ordered(self) -> tuple[Member, ...]:
        """Path order, hardlinks after the files they share (pkg needs the source first)."""
        return tuple(sorted(self.members, key=lambda m: (m.kind == "hardlink", m.path)))


def _manifest(b: Build, name: str, comment: str, desc: str, *, deps: tuple[str, ...] = (),
              requires: tuple[str, ...] = (), provides: tuple[str, ...] = (), vital: bool = False,
              scripts: dict[str, str] | None = None, config: tuple[str, ...] = ()) -> dict[str, Any]:
    """A pkgbase manifest; empty fields are left out, as pkg does."""
    fields = {
        "name": name, "origin": "base", "version": b.version, "comment": comment,
        "maintainer": "re@FreeBSD.org", "www": "https://www.FreeBSD.org",
        "abi": abi_string(b.abi_major, b.arch.name), "arch": legacy_arch(b.abi_major, b.arch.name),
        "prefix": "/", "licenselogic": "single", "licenses": ["BSD2CLAUSE"], "desc": desc,
        "deps": {d: {"origin": "base", "version": b.version} for d in deps},
        "categories": ["base"], "shlibs_required": list(requires), "shlibs_provided": list(provides),
        "annotations": {"set": "minimal"}, "vital": vital, "scripts": scripts or {}, "config": list(config),
    }
    return {k: v for k, v in fields.items() if v not in ({}, [], False)}


def _zoneinfo(b: Build) -> DemoPackage:
    f = _Files(b)
    zones = DATA / "files/zoneinfo"
    for path in sorted(p for p in zones.rglob("*") if p.is_file()):
        f.file("/usr/share/zoneinfo/" + path.relative_to(zones).as_posix(), path.read_bytes())
    f.link("/usr/share/zoneinfo/UTC", "/usr/share/zoneinfo/Etc/UTC")
    return DemoPackage("FreeBSD-zoneinfo", _manifest(b, "FreeBSD-zoneinfo", "Timezone database",
                                                     "Compiled time zone information files"), f.ordered())


def _clibs(b: Build) -> DemoPackage:
    f = _Files(b)
    for path, kib in _table("/lib: libc.so.7 2048 libthr.so.3 132 libm.so.5 248 libgcc_s.so.1 124\n"
                            "/libexec: ld-elf.so.1 128"):
        f.elf(path, kib, 0o555 if path.startswith("/libexec") else None)
    f.symlink("/usr/lib/libthr.so", "../../lib/libthr.so.3")
    return DemoPackage("FreeBSD-clibs", _manifest(
        b, "FreeBSD-clibs", "Core C Libraries", "The C library, threads, maths and the run-time linker",
        provides=("libc.so.7", "libthr.so.3", "libm.so.5"), vital=True), f.ordered())


_RUNTIME_BINARIES = """
/bin: cat 24 chflags 16 chio 24 chmod 20 cp 32 date 36 dd 44 df 28 domainname 12 echo 12 ed 64 expr 20
/bin: getfacl 20 hostname 12 kenv 16 kill 16 ln 20 ls 52 mkdir 16 mv 24 nproc 12 pax 136 pkill 32 ps 72
/bin: pwait 16 pwd 12 realpath 12 rm 24 rmdir 12 setfacl 28 sh 184 sleep 12 stty 36 sync 12 tcsh 452
/bin: test 16 timeout 20 uuidgen 12
/sbin: adjkerntz 16 bectl 64 camcontrol 220 devd 740 devfs 28 dhclient 160 dmesg 16 dump 84 dumpfs 24
/sbin: fsck 28 fsck_ffs 152 fsdb 140 geom 60 ifconfig 280 init 1300 ipfw 220 kldconfig 16 kldload 16
/sbin: kldstat 16 kldunload 16 ldconfig 24 md5 52 mdconfig 36 mdmfs 32 mknod 16 mount 52 mount_cd9660 20
/sbin: mount_msdosfs 24 mount_nfs 36 mount_nullfs 16 mount_tmpfs 20 newfs 64 pfctl 560 ping 72 reboot 20
/sbin: route 88 savecore 28 setkey 96 shutdown 24 swapon 32 sysctl 60 tunefs 40 umount 24
/usr/bin: awk 220 basename 12 chpass 44 cmp 20 cut 20 diff 140 dirname 12 du 24 env 16 false 8 find 72
/usr/bin: fold 12 getent 24 getopt 12 grep 120 gzip 72 head 16 hexdump 36 id 20 install 36 jot 20
/usr/bin: killall 24 last 20 less 220 limits 28 locale 36 lockf 16 logger 20 login 44 logname 12
/usr/bin: mktemp 12 nice 12 nohup 12 passwd 20 printf 24 renice 12 sed 80 seq 16 sort 84 split 20
/usr/bin: stat 28 su 28 tail 32 tar 80 tee 12 top 100 touch 16 tr 28 true 8 truss 80 tty 12 uname 16
/usr/bin: uniq 20 vi 480 vmstat 52 w 40 wc 20 which 12 xargs 28 yes 12
/usr/sbin: chown 20 chroot 12 daemon 24 devinfo 20 iostat 36 jail 160 jexec 16 jls 24 kbdcontrol 60
/usr/sbin: nologin 8 pw 200 pwd_mkdb 28 services_mkdb 24 syslogd 80 tzsetup 72 vidcontrol 60 vipw 16
/lib: libbsdxml.so.4 170 libcam.so.7 64 libcrypt.so.5 64 libdevstat.so.7 32 libedit.so.8 200
/lib: libelf.so.2 110 libgeom.so.5 44 libipsec.so.4 56 libjail.so.1 28 libkvm.so.7 72 libmd.so.6 220
/lib: libncursesw.so.9 420 libnv.so.1 64 libsbuf.so.6 16 libutil.so.9 104 libxo.so.0 124 libz.so.6 104
/usr/lib: libbsm.so.3 100 libpam.so.6 48 pam_unix.so.6 32 libypclnt.so.4 20
"""
# FreeBSD installs these as hardlinks of one binary (LINKS= in the Makefiles).
_RUNTIME_LINKS = {
    "/bin/[": "/bin/test", "/bin/csh": "/bin/tcsh", "/bin/link": "/bin/ln", "/bin/pgrep": "/bin/pkill",
    "/sbin/halt": "/sbin/reboot", "/sbin/sha256": "/sbin/md5", "/sbin/sha512": "/sbin/md5",
    "/usr/bin/more": "/usr/bin/less", "/usr/bin/od": "/usr/bin/hexdump", "/usr/bin/uptime": "/usr/bin/w",
    "/usr/bin/zcat": "/usr/bin/gzip", "/usr/bin/egrep": "/usr/bin/grep", "/usr/bin/ex": "/usr/bin/vi",
}
_RUNTIME_CONFIG = {"/etc/master.passwd": ("src/etc/master.passwd", 0o600),
                   "/etc/group": ("src/etc/group", 0o644),
                   "/etc/services": ("files/etc/services", 0o644),
                   "/etc/login.conf": ("files/etc/login.conf", 0o644),
                   "/etc/shells": ("files/etc/shells", 0o644)}


def _runtime(b: Build) -> DemoPackage:
    f = _Files(b)
    libs = []
    for path, kib in _table(_RUNTIME_BINARIES):
        f.elf(path, kib, 0o4555 if path == "/usr/bin/su" else None)
        if ".so." in path:
            libs.append(path.rsplit("/", 1)[1])
    for path, source in _RUNTIME_LINKS.items():
        f.link(path, source)
    for path, (rel, mode) in _RUNTIME_CONFIG.items():
        f.file(path, _data(rel), mode)
    f.dir("/tmp")                    # 0755 here; the post-install script makes it 1777
    f.dir("/var/empty", 0o555)
    f.dir("/var/spool/output", 0o755, ("daemon", "daemon"))
    endian = "-l" if b.arch.byte_order == "little" else "-b"
    return DemoPackage("FreeBSD-runtime", _manifest(
        b, "FreeBSD-runtime", "FreeBSD Base System", "FreeBSD Base System",
        requires=("libc.so.7", "libcasper.so.1"), provides=tuple(libs), vital=True,
        scripts={"post-install": RUNTIME_POST_INSTALL % endian}, config=tuple(_RUNTIME_CONFIG)), f.ordered())


_CERTCTL = b"""#!/bin/sh
# certctl: manage the system's trusted certificate store (demo stand-in).
CERTDESTDIR="${DESTDIR}/etc/ssl/certs"
case "$1" in
rehash)	echo "certctl: rehash into ${CERTDESTDIR}" ;;
list)	ls "${DESTDIR}/usr/share/certs/trusted" ;;
*)	echo "usage: certctl [-v] rehash | list" >&2; exit 64 ;;
esac
"""


def _certctl(b: Build) -> DemoPackage:
    f = _Files(b)
    f.file("/usr/sbin/certctl", _CERTCTL, 0o555)
    return DemoPackage("FreeBSD-certctl", _manifest(
        b, "FreeBSD-certctl", "certctl utility", "Tool to manage the trusted certificate store",
        scripts={"post-install": CERTCTL_POST_INSTALL}), f.ordered())


def _caroot(b: Build) -> DemoPackage:
    f = _Files(b)
    for name in CAROOT_CERTS:
        f.file(f"/usr/share/certs/trusted/{name}", _data(f"src/secure/caroot/trusted/{name}"))
    return DemoPackage("FreeBSD-caroot", _manifest(
        b, "FreeBSD-caroot", "Root certificates", "Trusted root certificate authorities",
        deps=("FreeBSD-certctl",), scripts={"post-install": CAROOT_POST_INSTALL}), f.ordered())


def _binaries(name: str, comment: str, table: str, requires: tuple[str, ...],
              symlinks: tuple[tuple[str, str], ...] = ()) -> Callable[[Build], DemoPackage]:
    """Builder for the packages that are a few binaries; each shared library is also provided."""
    def build(b: Build) -> DemoPackage:
        f = _Files(b)
        rows = _table(table)
        for path, kib in rows:
            f.elf(path, kib)
        for path, target in symlinks:
            f.symlink(path, target)
        provides = tuple(path.rsplit("/", 1)[1] for path, _ in rows if ".so." in path)
        return DemoPackage(name, _manifest(b, name, comment, comment, requires=requires, provides=provides),
                           f.ordered())
    return build


_RC_SCRIPT = """#!/bin/sh
#
# PROVIDE: {name}
# REQUIRE: {require}
#

. /etc/rc.subr

name="{name}"
desc="{desc}"
start_cmd="{name}_start"
stop_cmd=":"

{name}_start()
{{
	echo "Starting {name}."
}}

load_rc_config $name
run_rc_command "$1"
"""
_RC_SCRIPTS = (("cleartmp", "mountcritremote", "Purge /tmp directories"),
               ("hostname", "FILESYSTEMS", "Set the system host name"),
               ("ldconfig", "FILESYSTEMS", "Configure the shared library cache"),
               ("netif", "FILESYSTEMS", "Bring up network interfaces"),
               ("syslogd", "mountcritremote", "System log daemon"))


_RC_FILES = {
    "/etc/rc": "#!/bin/sh\n#\n# System start-up: run the rc.d scripts in rcorder.\n#\n. /etc/rc.subr\n"
               "load_rc_config\nfor _rc_elem in $(rcorder /etc/rc.d/*); do\n"
               "\trun_rc_script ${_rc_elem} ${_boot}\ndone\nexit 0\n",
    "/etc/rc.subr": "# Functions shared by the rc.d scripts.\n\nload_rc_config()\n{\n"
                    "\t[ -r /etc/defaults/rc.conf ] && . /etc/defaults/rc.conf\n"
                    "\t[ -r /etc/rc.conf ] && . /etc/rc.conf\n}\n\n"
                    "run_rc_command()\n{\n\teval ${start_cmd}\n}\n",
    "/etc/defaults/rc.conf": "# Default settings for the rc.d scripts; override them in /etc/rc.conf.\n"
                             'hostname=""\nsyslogd_enable="YES"\nsyslogd_flags="-s"\nclear_tmp_enable="NO"\n'
                             'ldconfig_paths="/usr/lib/compat /usr/local/lib"\n',
}


def _rc(b: Build) -> DemoPackage:
    f = _Files(b)
    for path, text in _RC_FILES.items():
        f.file(path, text.encode(), 0o644)
    for name, require, desc in _RC_SCRIPTS:
        f.file(f"/etc/rc.d/{name}", _RC_SCRIPT.format(name=name, require=require, desc=desc).encode(), 0o555)
    return DemoPackage("FreeBSD-rc", _manifest(b, "FreeBSD-rc", "RC Scripts", "System start-up scripts"),
                       f.ordered())


def _pkg_bootstrap(b: Build) -> DemoPackage:
    f = _Files(b)
    f.elf("/usr/sbin/pkg", 48)
    f.file("/usr/share/keys/pkg/trusted/pkg.freebsd.org.2013102301",
           _data("src/share/keys/pkg/trusted/pkg.freebsd.org.2013102301"))
    f.dir("/usr/share/keys/pkg/revoked")
    return DemoPackage("FreeBSD-pkg-bootstrap", _manifest(
        b, "FreeBSD-pkg-bootstrap", "pkg bootstrap utility", "Bootstraps pkg(8); the repository keys",
        requires=("libc.so.7", "libfetch.so.6", "libprivateucl.so.1")), f.ordered())


def _mtree(b: Build) -> DemoPackage:
    f = _Files(b)
    f.elf("/usr/sbin/mtree", 80)
    for path in sorted((DATA / "src/etc/mtree").glob("BSD.*.dist")):
        f.file(f"/etc/mtree/{path.name}", path.read_bytes())
    return DemoPackage("FreeBSD-mtree", _manifest(
        b, "FreeBSD-mtree", "mtree utility", "Map a directory hierarchy; the BSD.*.dist specifications",
        requires=("libc.so.7",)), f.ordered())


BUILDERS: dict[str, Callable[[Build], DemoPackage]] = {
    "FreeBSD-caroot": _caroot,
    "FreeBSD-certctl": _certctl,
    "FreeBSD-clibs": _clibs,
    "FreeBSD-fetch": _binaries(
        "FreeBSD-fetch", "Fetch utility and library", "/usr/bin: fetch 40\n/usr/lib: libfetch.so.6 92",
        ("libc.so.7", "libcrypto.so.30", "libssl.so.30")),
    "FreeBSD-kerberos-lib": _binaries(
        "FreeBSD-kerberos-lib", "Kerberos Libraries", "/usr/lib: libkrb5.so.11 900 libasn1.so.11 700",
        ("libc.so.7", "libcrypto.so.30")),
    "FreeBSD-libarchive": _binaries(
        "FreeBSD-libarchive", "libarchive", "/usr/lib: libarchive.so.7 1000",
        ("libc.so.7", "libcrypto.so.30")),
    "FreeBSD-libcasper": _binaries(
        "FreeBSD-libcasper", "Capsicum casper library", "/lib: libcasper.so.1 40", ("libc.so.7",)),
    "FreeBSD-libexecinfo": _binaries(
        "FreeBSD-libexecinfo", "Backtrace library", "/usr/lib: libexecinfo.so.1 20", ("libc.so.7",)),
    "FreeBSD-libucl": _binaries(
        "FreeBSD-libucl", "UCL configuration library", "/usr/lib: libprivateucl.so.1 120", ("libc.so.7",)),
    "FreeBSD-mtree": _mtree,
    "FreeBSD-openssl-lib": _binaries(
        "FreeBSD-openssl-lib", "OpenSSL Libraries", "/lib: libcrypto.so.30 4096\n/usr/lib: libssl.so.30 700",
        ("libc.so.7", "libthr.so.3"), (("/usr/lib/libcrypto.so", "../../lib/libcrypto.so.30"),)),
    "FreeBSD-pkg-bootstrap": _pkg_bootstrap,
    "FreeBSD-rc": _rc,
    "FreeBSD-runtime": _runtime,
    "FreeBSD-zoneinfo": _zoneinfo,
}
PACKAGE_NAMES = tuple(sorted(BUILDERS))
# Packages FreeBSD renamed: from 15.0 the Kerberos libraries are FreeBSD-krb5-lib
# (release/tools/oci-image-runtime.conf installs that name).
RENAMED = {15: {"FreeBSD-kerberos-lib": "FreeBSD-krb5-lib"}}


def renames(abi_major: int) -> dict[str, str]:
    return {old: new for major, table in RENAMED.items() if abi_major >= major for old, new in table.items()}


def package_names(abi_major: int) -> tuple[str, ...]:
    """The demo packages of an ABI, as that major names them."""
    table = renames(abi_major)
    return tuple(sorted(table.get(n, n) for n in BUILDERS))


def build_package(name: str, b: Build) -> DemoPackage:
    """One demo package for *b*; built on demand so only one package's data is in memory."""
    old = {new: old for old, new in renames(b.abi_major).items()}.get(name, name)
    if old not in BUILDERS or name not in package_names(b.abi_major):
        raise InputError(f"{name}: not a demo package (known: {', '.join(package_names(b.abi_major))})")
    pkg = BUILDERS[old](b)
    if old != name:
        pkg = DemoPackage(name, dict(pkg.manifest, name=name), pkg.members)
    return pkg


def with_change(pkg: DemoPackage, version: str, change: bytes) -> DemoPackage:
    """*pkg* at *version* with *change* appended to its first regular, non-@config file.

    This is how a nightly rebuild is imitated: one package gets a new version
    and different contents, everything else stays byte for byte the same.
    """
    config = set(pkg.manifest.get("config", ()))
    index = next(i for i, m in enumerate(pkg.members) if m.kind == "file" and m.path not in config)
    members = list(pkg.members)
    members[index] = dataclasses.replace(members[index], data=members[index].data + change)
    manifest = dict(pkg.manifest, version=version)
    return DemoPackage(pkg.name, manifest, tuple(members))

"""The packages of FreeBSD 15's notoolchain and toolchain image flavours, at their real sizes.

FreeBSD 15's src defines notoolchain (release/tools/oci-image-notoolchain.conf:
some sixty packages, everything a jail needs) and toolchain (oci-image-
toolchain.conf: FreeBSD-set-devel, the compiler, the linker, the debugger,
static libraries and headers) on top of its runtime image:
hundreds of MB and over a GB of files, which is where a release build spends
its time and where memory could blow up.  The demo repository carries them
only when asked (generate_demo(toolchain=True)), so every other test keeps
its small repository; bench/build.py and bench/nightly.py ask.

Like content.py's packages these hold stand-ins: ELF binaries of pseudo code
for programs, libraries and static archives (content.binary: they differ per
architecture), and architecture-independent data of the same kind for
headers, locales and makefiles (the same bytes on every architecture, as
FreeBSD's are).  Sizes are nominal KiB at content.REAL_SCALE, each file at
most content.MAX_FILE; with the packages below them, notoolchain's layer is
about 330 MB and toolchain's 1.1 GB at real scale.  Names never collide with
a path another demo package installs.  FreeBSD-kerberos-lib, which
notoolchain.conf names although 15.x calls the package FreeBSD-krb5-lib,
is a set depending on it.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable

from .content import REAL_SCALE, Build, DemoPackage, _Files, _manifest, pseudo_code, scaled_size


def _sized(name: str, low: int, high: int) -> int:
    """A deterministic nominal size in KiB between *low* and *high* for *name*."""
    return low + int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % (high - low + 1)


def _data_file(f: _Files, path: str, nominal_kib: float, mode: int = 0o444) -> None:
    """Architecture-independent contents (headers, locale data): the same bytes on every architecture."""
    f.file(path, pseudo_code(b"data\0" + path.encode(), scaled_size(nominal_kib, f.b.scale)), mode)


# (package, comment, [(directory, name pattern, count, low KiB, high KiB, kind)], hardlinks {link: source})
# kind: "elf" (an architecture's binary) or "data" (architecture-independent).  Names are the stand-ins'
# own ("syslogd0", not FreeBSD-runtime's /usr/sbin/syslogd), so no path is installed twice.
_Spec = tuple[str, str, list[tuple[str, str, int, int, int, str]], dict[str, str]]


def _small(name: str, comment: str, directory: str, count: int, low: int, high: int) -> _Spec:
    """A package of a few programs named after it: FreeBSD-cron -> /usr/sbin/cron0 ..."""
    stem = name.removeprefix("FreeBSD-").replace("-", "_")
    return (name, comment, [(directory, stem + "{}", count, low, high, "elf")], {})


# the packages release/tools/oci-image-notoolchain.conf (15.x) lists that the demo repository lacks
_NOTOOLCHAIN: list[_Spec] = [
    ("FreeBSD-utilities", "Non-vital programs and libraries",
     [("/usr/bin", "util{}", 240, 80, 1600, "elf"), ("/usr/sbin", "admin{}", 120, 60, 900, "elf"),
      ("/usr/lib", "libutil{}.so.1", 60, 100, 1400, "elf")], {}),
    ("FreeBSD-locales", "Locale data", [("/usr/share/locale/loc{}", "LC_COLLATE", 120, 60, 360, "data")], {}),
    ("FreeBSD-rescue", "Statically linked programs for recovery", [("/rescue", "rescue", 1, 8192, 8192, "elf")],
     {f"/rescue/{n}": "/rescue/rescue" for n in ("sh", "ls", "cp", "mv", "rm", "mount", "fsck", "ifconfig")}),
    ("FreeBSD-zfs", "OpenZFS programs and libraries",
     [("/sbin", "zfs{}", 4, 300, 800, "elf"), ("/lib", "libzfs{}.so.4", 4, 1500, 5000, "elf")], {}),
    ("FreeBSD-ssh", "OpenSSH", [("/usr/bin", "ssh{}", 8, 200, 1100, "elf"),
                                ("/usr/lib", "libprivatessh.so.5", 1, 2000, 2000, "elf")], {}),
    ("FreeBSD-unbound", "Unbound DNS resolver", [("/usr/sbin", "local-unbound{}", 4, 100, 1500, "elf")], {}),
    ("FreeBSD-openssl", "OpenSSL command and engines",
     [("/usr/bin", "openssl", 1, 900, 900, "elf"), ("/usr/lib/engines-3", "engine{}.so", 6, 40, 240, "elf")], {}),
    ("FreeBSD-kerberos", "Kerberos programs", [("/usr/libexec/kerberos", "k{}", 24, 40, 320, "elf")], {}),
    ("FreeBSD-periodic", "Periodic maintenance scripts", [("/etc/periodic/daily", "{}00.job", 30, 2, 8, "data")],
     {}),
    ("FreeBSD-vi", "The nvi editor's message catalogues", [("/usr/share/vi/catalog", "cat{}", 20, 4, 16, "data")],
     {}),
    ("FreeBSD-libcompiler_rt-dev", "compiler-rt builtins",
     [("/usr/lib", "libcompiler_rt{}.a", 2, 200, 400, "elf")], {}),
    ("FreeBSD-console-tools", "Console fonts and keymaps",
     [("/usr/share/syscons", "font{}.fnt", 30, 4, 20, "data")], {}),
    _small("FreeBSD-acct", "Process accounting", "/usr/sbin", 2, 20, 40),
    _small("FreeBSD-at", "at and batch", "/usr/libexec", 2, 20, 60),
    _small("FreeBSD-audit", "Security event auditing", "/usr/sbin", 4, 20, 120),
    _small("FreeBSD-autofs", "Automounter", "/usr/sbin", 3, 30, 80),
    _small("FreeBSD-blocklist", "Blocklist daemon", "/usr/sbin", 2, 40, 80),
    _small("FreeBSD-bsnmp", "SNMP daemon and modules", "/usr/lib/snmp", 12, 20, 120),
    _small("FreeBSD-cron", "cron daemon", "/usr/sbin", 2, 40, 60),
    _small("FreeBSD-csh", "C shell helpers", "/usr/libexec", 1, 20, 40),
    _small("FreeBSD-dma", "DragonFly Mail Agent", "/usr/libexec", 2, 60, 160),
    _small("FreeBSD-ee", "Easy editor", "/usr/bin", 1, 60, 60),
    _small("FreeBSD-fd", "fdescfs helpers", "/usr/sbin", 1, 10, 20),
    _small("FreeBSD-ftp", "FTP client and server", "/usr/bin", 2, 80, 160),
    _small("FreeBSD-inetd", "Internet super-server", "/usr/sbin", 1, 60, 60),
    _small("FreeBSD-ipf", "IP Filter", "/sbin", 5, 60, 240),
    _small("FreeBSD-ipfw", "ipfw helpers", "/usr/sbin", 2, 20, 40),
    _small("FreeBSD-iscsi", "iSCSI initiator and target", "/usr/sbin", 3, 60, 200),
    _small("FreeBSD-jail", "Jail management tools", "/usr/libexec", 2, 40, 160),
    _small("FreeBSD-lp", "Line printer spooler", "/usr/libexec", 4, 40, 120),
    _small("FreeBSD-natd", "Network address translation daemon", "/sbin", 1, 60, 60),
    _small("FreeBSD-netmap", "netmap tools", "/usr/sbin", 1, 40, 40),
    _small("FreeBSD-newsyslog", "Log rotation", "/usr/sbin", 1, 40, 40),
    _small("FreeBSD-nfs", "NFS client and server", "/usr/sbin", 6, 40, 200),
    _small("FreeBSD-nuageinit", "Cloud instance initialisation", "/usr/libexec", 2, 10, 40),
    _small("FreeBSD-pf", "pf helpers", "/usr/sbin", 3, 60, 200),
    _small("FreeBSD-quotacheck", "Quota tools", "/sbin", 1, 20, 40),
    _small("FreeBSD-rcmds", "Remote commands", "/usr/bin", 3, 20, 60),
    _small("FreeBSD-resolvconf", "resolvconf", "/usr/libexec", 1, 10, 20),
    _small("FreeBSD-syslogd", "System log daemon helpers", "/usr/libexec", 1, 20, 40),
    _small("FreeBSD-tcpd", "TCP wrappers", "/usr/libexec", 1, 20, 40),
    _small("FreeBSD-telnet", "Telnet client and server", "/usr/libexec", 2, 150, 150),
    _small("FreeBSD-ufs", "UFS tools", "/usr/sbin", 4, 40, 200),
    _small("FreeBSD-yp", "NIS tools", "/usr/libexec", 4, 20, 80),
]
# the members of FreeBSD-set-devel (release/tools/oci-image-toolchain.conf installs the set)
_TOOLCHAIN: list[_Spec] = [
    ("FreeBSD-clang", "The Clang C/C++ compiler",
     [("/usr/bin", "clang{}", 12, 6000, 8192, "elf"),
      ("/usr/lib/clang/19/lib/freebsd", "libclang_rt.part{}.a", 60, 400, 3000, "elf")],
     {"/usr/bin/cc": "/usr/bin/clang0", "/usr/bin/c++": "/usr/bin/clang0", "/usr/bin/cpp": "/usr/bin/clang0"}),
    ("FreeBSD-lld", "The LLVM linker", [("/usr/bin", "ld.lld{}", 6, 6000, 8192, "elf")],
     {"/usr/bin/ld": "/usr/bin/ld.lld0"}),
    ("FreeBSD-lldb", "The LLVM debugger", [("/usr/bin", "lldb{}", 10, 6000, 8192, "elf")], {}),
    ("FreeBSD-toolchain", "Binary tools", [("/usr/bin", "llvm-tool{}", 40, 500, 5000, "elf")], {}),
    ("FreeBSD-clang-dev", "Compiler headers", [("/usr/lib/clang/19/include", "h{}.h", 400, 8, 160, "data")], {}),
    ("FreeBSD-clibs-dev", "C library headers and static libraries",
     [("/usr/lib", "libstatic{}.a", 150, 600, 6000, "elf"), ("/usr/include/sys", "s{}.h", 1200, 4, 40, "data")],
     {}),
    ("FreeBSD-libraries-dev", "Development files of the base libraries",
     [("/usr/lib", "libdev{}.a", 60, 300, 4000, "elf")], {}),
]


def _builder(spec: _Spec, devel: bool) -> Callable[[Build], DemoPackage]:
    name, comment, rows, links = spec

    def build(b: Build) -> DemoPackage:
        f = _Files(b)
        for directory, pattern, count, low, high, kind in rows:
            for n in range(count):
                path = f"{directory.format(n)}/{pattern.format(n)}"
                kib = _sized(path, low, high)
                if kind == "elf":
                    f.elf(path, kib, 0o444 if path.endswith((".a", ".so")) or ".so." in path else 0o555)
                else:
                    _data_file(f, path, kib)
        for link, source in links.items():
            f.link(link, source)
        manifest = _manifest(b, name, comment, comment, requires=("libc.so.7",))
        manifest["annotations"] = {"set": "devel" if devel else "minimal-jail"}
        return DemoPackage(name, manifest, f.ordered())
    return build


def _set(name: str, comment: str, deps: tuple[str, ...]) -> Callable[[Build], DemoPackage]:
    """A set: a package without files that depends on its members (pkgbase's FreeBSD-set-*)."""
    def build(b: Build) -> DemoPackage:
        return DemoPackage(name, _manifest(b, name, comment, comment, deps=deps), ())
    return build


BUILDERS: dict[str, Callable[[Build], DemoPackage]] = {
    **{s[0]: _builder(s, False) for s in _NOTOOLCHAIN},
    **{s[0]: _builder(s, True) for s in _TOOLCHAIN},
    "FreeBSD-set-devel": _set("FreeBSD-set-devel", "The compiler toolchain and development files",
                              tuple(s[0] for s in _TOOLCHAIN)),
    # 15.x's notoolchain.conf still names the Kerberos libraries by their 14.x name
    "FreeBSD-kerberos-lib": _set("FreeBSD-kerberos-lib", "Kerberos libraries (the 14.x name)",
                                 ("FreeBSD-krb5-lib",)),
}
PACKAGE_NAMES = tuple(sorted(BUILDERS))


def nominal_bytes(names: tuple[str, ...] | list[str]) -> int:
    """What the packages *names* hold at content.REAL_SCALE (each file capped at content.MAX_FILE)."""
    specs = [s for s in _NOTOOLCHAIN + _TOOLCHAIN if s[0] in names]
    return sum(scaled_size(_sized(f"{d.format(n)}/{pattern.format(n)}", low, high), REAL_SCALE)
               for _, _, rows, _ in specs for d, pattern, count, low, high, _ in rows for n in range(count))

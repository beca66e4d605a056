"""Running the image's own programs (package scripts, `run` steps) and keeping their effects.

FreeBSD's release build runs package scripts with the build host's tools; the
default here (scripts = "builtin") replaces the known ones by pure-Python
built-ins.  A flavour may instead ask for the real thing (scripts = "emulate",
or `run` steps): the image root is materialised on disk (release.rootfs), the
program runs inside it with chroot(8), and whatever it added, changed or
deleted becomes this layer's content — files streamed into the layer's spool,
owners named from the image's own master.passwd and group, mtimes clamped to
SOURCE_DATE_EPOCH, deletions of lower-layer paths as whiteouts.

How the target's code runs (Executor, chosen by choose_method):

- native: the host runs the TARGET_ARCH itself (amd64 on x86_64, i386 on any
  x86, aarch64 on arm64 ...).
- binfmt: Linux has a binfmt_misc handler /proc/sys/fs/binfmt_misc/qemu-<arch>
  registered with flag F (the interpreter is opened at registration, so it works
  inside any chroot; Debian: `update-binfmts --enable qemu-aarch64`).  Every
  program the script starts is emulated too.
- qemu: otherwise the static `qemu-<arch>-static` (Debian's qemu-user-static)
  is copied into the root for the run and the command is started through it.
  Only that first program is emulated: a program it execs as a separate binary
  fails with "Exec format error" (busybox applets that run in-process work).
  The copy is removed before the root is compared, and is never in a layer.

A FreeBSD host does the same with its own tools: chroot(8) for native code,
and for other architectures emulators/qemu-user-static (bsd-user), whose rc
script registers every architecture with binmiscctl(8)
(`service qemu_user_static onestart`).  imgact_binmisc looks the interpreter
up inside the chroot (there is no "fix binary" flag), so a full-fidelity run
copies /usr/local/bin/qemu-<arch>-static to the same path inside the root, as
poudriere does; without that, the "qemu" method above works there too, with
the same first-program-only limit.

A Linux host cannot run FreeBSD programs at all, not even under QEMU (the
system calls differ), so on Linux only images whose /bin/sh is a Linux program
(the tests' busybox images) can be run; a FreeBSD /bin/sh is refused by name.

Scripts get what pkg(8) gives them: `/bin/sh -c "set -- NAME-VERSION\\n<script>"`
with PKG_ROOTDIR=/ (the chroot is the root), PKG_NAME and PKG_PREFIX, stdin
closed; on top of a fixed environment (PATH, HOME=/root, LANG=C, TZ=UTC,
SOURCE_DATE_EPOCH), so nothing of the builder's environment leaks in.  A
non-zero exit stops the build (pkg only warns about a failed post-install
script; an image silently missing its effects is worse).

Whatever the method, the command runs in a sandbox (release.sandbox:
bubblewrap, namespaces and ids of its own, nothing of the host but the root and
the emulator), never in a plain chroot: the code comes from a repository.
"""
from __future__ import annotations

import contextlib
import logging
import os
import platform
import shutil
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .builtins.entries import Entry
from .steps import Step
from .accounts import id_to_name, lookup
from .errors import StepError, ToolError
from .rootfs import Changes, LayerBlob, Node, Root, diff, materialise, open_in_root, read_in_root, snapshot
from .run import run
from .sandbox import bwrap_path, opened_root, placeholders, run_sandboxed
from .tree import LayerTree

if TYPE_CHECKING:
    from .records import LayerRecord

log = logging.getLogger(__name__)

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
# FreeBSD TARGET_ARCH -> QEMU's name for it (qemu-<name>-static)
QEMU_ARCH = {"amd64": "x86_64", "aarch64": "aarch64", "i386": "i386", "riscv64": "riscv64",
             "powerpc64": "ppc64", "powerpc64le": "ppc64le", "armv7": "arm"}
# FreeBSD TARGET_ARCH -> host machine names (platform.machine()) that run its code natively
NATIVE = {"amd64": {"x86_64", "amd64"}, "aarch64": {"aarch64", "arm64"},
          "i386": {"i386", "i486", "i586", "i686", "x86_64", "amd64"}, "riscv64": {"riscv64"},
          "powerpc64": {"ppc64", "powerpc64"}, "powerpc64le": {"ppc64le", "powerpc64le"},
          "armv7": {"armv7l", "armv7"}}
INSTALL_HINT = "apt-get install qemu-user-static (Debian) / pkg install qemu-user-static (FreeBSD)"
IMAGE_PATH = "/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin"
SCRIPT_TIMEOUT = 600                # seconds per package script
ELFOSABI_FREEBSD = 9


# --------------------------------------------------------------------------- choosing how to run

@dataclass(frozen=True)
class Method:
    kind: str           # "native", "binfmt" or "qemu"
    arch: str
    emulator: str = ""  # host path of the QEMU binary (binfmt: the registered interpreter)
    version: str = ""   # first line of its --version

    @property
    def emulator_file(self) -> str:
        """Where the emulator sits inside the root during a run (kind "qemu")."""
        return f"/.qemu-{QEMU_ARCH[self.arch]}-static"

    def identity(self) -> dict[str, Any]:
        """What goes into a layer plan: a new QEMU may emulate differently, so its version is an input."""
        return {"method": self.kind, "arch": self.arch, "host": platform.system(),
                "emulator": os.path.basename(self.emulator), "version": self.version, "sandbox": "bubblewrap"}


def choose_method(arch: str, *, machine: str | None = None, search_path: str | None = None,
                  binfmt_dir: Path = BINFMT_DIR) -> Method:
    """native, binfmt or qemu for *arch* on this host; a one-line StepError when none is available."""
    if arch not in QEMU_ARCH:
        raise StepError(f"{arch}: no QEMU user emulator is known for this architecture")
    machine = (machine or platform.machine()).lower()
    if machine in NATIVE[arch]:
        return Method("native", arch)
    name = f"qemu-{QEMU_ARCH[arch]}-static"
    interpreter = binfmt_interpreter(binfmt_dir / f"qemu-{QEMU_ARCH[arch]}")
    if interpreter:
        return Method("binfmt", arch, interpreter, _version(interpreter))
    path = shutil.which(name, path=search_path)
    if path is None:
        raise StepError(f"{arch} programs need QEMU user emulation on this {machine} host, "
                        f"but {name} not found: {INSTALL_HINT}")
    return Method("qemu", arch, path, _version(path))


def binfmt_interpreter(handler: Path) -> str:
    """The interpreter of an enabled binfmt_misc handler with flag F (usable in a chroot), else ""."""
    try:
        lines = handler.read_text().splitlines()
    except OSError:
        return ""
    fields = dict(line.split(None, 1) for line in lines[1:] if len(line.split(None, 1)) == 2)
    if not lines or lines[0].strip() != "enabled" or "F" not in fields.get("flags:", ""):
        return ""
    return fields.get("interpreter", "").strip()


def _version(emulator: str) -> str:
    try:
        proc = run([emulator, "--version"], purpose="identify the QEMU user emulator", timeout=60, check=False)
    except ToolError:
        return "unknown"
    lines = proc.stdout.decode(errors="replace").strip().splitlines()
    return lines[0].strip() if proc.returncode == 0 and lines else "unknown"


def describe(arch: str) -> dict[str, Any]:
    """Method identity for doit's up-to-date check; never raises (the build reports problems)."""
    try:
        return choose_method(arch).identity()
    except StepError as e:
        return {"unavailable": str(e)}


# --------------------------------------------------------------------------- running

@dataclass(frozen=True)
class Result:
    label: str
    stdout: str
    stderr: str


class Executor:
    """Runs commands inside a root, natively or under QEMU, in the sandbox, with a fixed environment."""

    def __init__(self, method: Method, *, sde: int, euid: int | None = None) -> None:
        if (os.geteuid() if euid is None else euid) != 0:
            raise StepError("running programs inside the image needs root (the sandbox gives the image's users "
                            "their own ids): run the build as root, or use scripts = \"builtin\" and no run steps")
        self.method = method
        self.env = {"PATH": IMAGE_PATH, "HOME": "/root", "LANG": "C", "TZ": "UTC", "USER": "root",
                    "LOGNAME": "root", "SOURCE_DATE_EPOCH": str(sde)}
        self.bwrap = bwrap_path()

    @contextlib.contextmanager
    def prepared(self, root: Path) -> Iterator[list[str]]:
        """Mount points for /dev/null, /dev/zero and the emulator where the image lacks them; removed after."""
        with opened_root(root) as top:
            placed: list[tuple[str, str]] = []
            try:
                placed = placeholders(top, self.method.emulator_file if self.method.kind == "qemu" else None)
                yield [p for p, _ in placed]
            finally:
                for path, kind in reversed(placed):
                    _unplace(top, path, kind)

    def run(self, root: Path, argv: Sequence[str], *, env: dict[str, str], timeout: int, label: str) -> Result:
        """Run *argv* in *root*; output is logged and returned; failure is a one-line StepError."""
        _check_program(root, argv[0], label)
        qemu = self.method.kind == "qemu"
        prefix = [self.method.emulator_file] if qemu else []
        try:
            outcome = run_sandboxed(root, [*prefix, *argv], env={**self.env, **env}, timeout=timeout, label=label,
                                    emulator=(self.method.emulator, self.method.emulator_file) if qemu else None)
        except ToolError as e:
            raise StepError(str(e)) from None
        out, err = outcome.stdout.decode(errors="replace"), outcome.stderr.decode(errors="replace")
        for line in (out + err).splitlines():
            log.info("%s: %s", label, line)
        if outcome.timed_out:
            raise StepError(f"{label}: still running after {timeout} s, stopped (raise its timeout if it needs longer)")
        if outcome.returncode != 0:
            last = (err.strip() or out.strip()).splitlines()[-1:] or [""]
            raise StepError(f"{label}: exit status {outcome.returncode}" + (f": {last[0]}" if last[0] else ""))
        return Result(label, out, err)


def _unplace(top: int, path: str, kind: str) -> None:
    """Remove what prepared() placed, if it is still what was placed (a command may have replaced it)."""
    parent, _, name = path.lstrip("/").rpartition("/")
    try:
        dfd = os.open(parent or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=top)
    except OSError:
        return
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if kind == "dir" and stat.S_ISDIR(st.st_mode):
            with contextlib.suppress(OSError):
                os.rmdir(name, dir_fd=dfd)          # only if the command left nothing in it
        elif kind == "file" and stat.S_ISREG(st.st_mode) and st.st_size == 0:
            os.unlink(name, dir_fd=dfd)
    except FileNotFoundError:
        pass
    finally:
        os.close(dfd)


def resolve_in_root(top: Path, path: str, *, hops: int = 40) -> str | None:
    """*path* with symlinks resolved the way the chrooted kernel would, without leaving *top*."""
    pending = [p for p in path.split("/")][::-1]
    done: list[str] = []
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        real = os.path.join(top, *done, part)
        if os.path.islink(real):
            hops -= 1
            if hops < 0:
                return None
            target = os.readlink(real)
            if target.startswith("/"):
                done = []
            pending += target.split("/")[::-1]
            continue
        done.append(part)
    return "/" + "/".join(done)


def _check_program(root: Path, program: str, label: str) -> None:
    """The program must exist in the image, and be one this host's kernel can run at all."""
    candidates = [program] if "/" in program else [f"{d}/{program}" for d in IMAGE_PATH.split(":")]
    for candidate in candidates:
        resolved = resolve_in_root(root, candidate)
        head = None
        if resolved:
            with contextlib.suppress(OSError), open_in_root(root, resolved) as f:
                head = f.read(8)
        if head is None:
            continue
        if head[:4] == b"\x7fELF" and len(head) == 8 and head[7] == ELFOSABI_FREEBSD and \
                platform.system() == "Linux":
            raise StepError(f"{label}: {program} in the image is a FreeBSD program, which a Linux host cannot "
                            "run (not even under QEMU): build on FreeBSD, or use scripts = \"builtin\"")
        return
    raise StepError(f"{label}: {program} is not in the image")


# --------------------------------------------------------------------------- package scripts

@dataclass(frozen=True)
class PackageScript:
    """One script run as pkg runs it: `set -- NAME-VERSION [ARG]` then the text."""
    package: str
    version: str
    prefix: str
    phase: str          # pre-install, post-install, or install (with its PRE-/POST-INSTALL argument)
    argument: str
    text: str

    @property
    def label(self) -> str:
        return f"{self.package} {self.phase}" + (f" {self.argument}" if self.argument else "")

    def command(self) -> list[str]:
        head = f"set -- {self.package}-{self.version}" + (f" {self.argument}" if self.argument else "")
        return ["/bin/sh", "-c", f"{head}\n{self.text}"]

    def env(self) -> dict[str, str]:
        return {"PKG_ROOTDIR": "/", "PKG_NAME": self.package, "PKG_PREFIX": self.prefix or "/"}


def install_scripts(package: str, version: str, prefix: str, scripts: dict[str, str], when: str) -> list[PackageScript]:
    """The scripts pkg runs before ("pre") or after ("post") extracting a package, in pkg's order."""
    phases = {"pre": (("pre-install", ""), ("install", "PRE-INSTALL")),
              "post": (("post-install", ""), ("install", "POST-INSTALL"))}[when]
    return [PackageScript(package, version, prefix, phase, arg, scripts[phase])
            for phase, arg in phases if scripts.get(phase)]


# --------------------------------------------------------------------------- sessions

@dataclass(frozen=True)
class Job:
    label: str
    argv: list[str]
    env: dict[str, str]
    timeout: int


class Emulation:
    """A layer's access to the executor: each session materialises the root, runs, and records the effects."""

    def __init__(self, executor: Executor, tmp: Path, lowers: Sequence[LayerBlob], sde: int) -> None:
        self.executor, self.tmp, self.lowers, self.sde = executor, tmp, list(lowers), sde

    def run_scripts(self, tree: LayerTree, scripts: Sequence[PackageScript]) -> None:
        if scripts:
            self.session(tree, [Job(s.label, s.command(), s.env(), SCRIPT_TIMEOUT) for s in scripts],
                         "emulated " + ", ".join(s.label for s in scripts))

    def run_steps(self, tree: LayerTree, steps: Sequence[Step]) -> None:
        jobs = [Job(f"run step {i + 1} ({' '.join(s.get('command'))[:60]})", list(s.get("command")), {},
                    int(s.get("timeout"))) for i, s in enumerate(steps)]
        if jobs:
            self.session(tree, jobs, "run steps")

    def session(self, tree: LayerTree, jobs: Sequence[Job], owner: str) -> Changes:
        for job in jobs:
            if not job.argv:
                raise StepError(f"{job.label}: empty command")
            if job.timeout <= 0:
                raise StepError(f"{job.label}: timeout must be a positive number of seconds, not {job.timeout}")
        with materialise(self.tmp, self.lowers, tree, sde=self.sde) as root:
            before = snapshot(root.path, hashes=root.hashes)
            with self.executor.prepared(root.path) as placed:
                for job in jobs:
                    self.executor.run(root.path, job.argv, env=job.env, timeout=job.timeout, label=job.label)
            after = snapshot(root.path, known=before)
            leftovers = sorted(set(placed) & set(after) - set(before))
            if leftovers:
                raise StepError(f"{owner}: {leftovers[0]} placed for the run could not be removed")
            changes = diff(before, after)
            record_changes(tree, root, changes, after, owner, self.sde)
        log.info("%s: %d added, %d changed, %d deleted", owner, len(changes.added), len(changes.changed),
                 len(changes.deleted))
        return changes


def record_changes(tree: LayerTree, root: Root, changes: Changes, after: dict[str, Node], owner: str,
                   sde: int) -> None:
    """Turn a root's changes into layer content: puts, streamed files, whiteouts."""
    for path in _topmost(changes.deleted):
        tree.remove(path, owner)
        if path not in root.lower:
            tree.removed.discard(path)      # this layer's own path: it just vanishes, no whiteout
    users = id_to_name(read_in_root(root.path, "etc/master.passwd"), "root")
    groups = id_to_name(read_in_root(root.path, "etc/group"), "wheel")
    for path in sorted(changes.added + changes.changed, key=lambda p: p.encode()):
        node = after[path]
        uname = lookup(users, node.uid, "user", f"{owner}: {path}")
        gname = lookup(groups, node.gid, "group", f"{owner}: {path}")
        mtime = min(node.stamp[2] // 1_000_000_000, sde)
        if node.kind == "dir":
            tree.put(Entry(path, "dir", node.mode, uname, gname, mtime=mtime), owner)
        elif node.kind == "symlink":
            tree.put(Entry(path, "symlink", 0o755, uname, gname, target=node.target, mtime=mtime), owner)
        elif node.kind == "file":
            tree.items.pop(path, None)
            with open_in_root(root.path, path) as data:
                tree.add_stream(Entry(path, "file", node.mode, uname, gname, mtime=mtime), owner, data)
            tree.items[path].package = False    # made by a program, not owned by a package
        else:
            raise StepError(f"{owner}: {path}: created a device node, FIFO or socket, which a layer cannot carry")


def _topmost(paths: list[str]) -> list[str]:
    out: list[str] = []
    for p in sorted(paths, key=lambda p: p.encode()):
        if not any(p.startswith(q + "/") for q in out):
            out.append(p)
    return out


def emulation_for(arch: str, sde: int, parent_layers: Sequence[LayerRecord], tmp: Path, blobs: Path) -> Emulation:
    """The executor for *arch* over the layers below (layer records with digest and media_type)."""
    executor = Executor(choose_method(arch), sde=sde)
    lowers = [LayerBlob(blobs / p.digest.removeprefix("sha256:"), p.media_type, p.digest) for p in parent_layers]
    return Emulation(executor, tmp, lowers, sde)

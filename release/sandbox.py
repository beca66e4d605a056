"""Running target code in a sandbox: bubblewrap, with namespaces and ids of its own.

Package scripts and `run` steps are code from a repository, which is not
trusted even when signed (a mirror's key can leak).  chroot(8) as root is no
sandbox: a script could mount proc and reach the host through
/proc/<pid>/root.  So every command runs under bubblewrap (Debian's
`bubblewrap`, the sandbox flatpak uses) with:

- new user, mount, pid, IPC, UTS, network (only its own loopback) and, where
  available, cgroup namespaces; a fixed host name;
- a mount namespace holding nothing of the host but the root being built
  (read-write: that is the point), /dev/null and /dev/zero, and the emulator
  read-only when QEMU runs the code; no /proc, no /sys;
- ids 0-65535 of the user namespace mapped to the same host ids, written by
  the pipeline itself (bubblewrap's own map holds one id, and package scripts
  chown to others), and the namespace limited to zero nested user
  namespaces, so nothing inside can make one and gain capabilities there;
- no capabilities in any namespace but that user namespace, and in it only
  CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER and CAP_FSETID: what root in a
  FreeBSD chroot uses to install files for other users.  They act on what
  the mount namespace shows, which is the root being built; mount(2),
  mknod(2), chroot(2), ptrace of the host, raw sockets all fail;
- no inherited file descriptors but stdin (/dev/null), stdout and stderr; a
  new session (no terminal to push input into); killed with its whole pid
  namespace when it overstays or the build dies.

The pipeline writes the id maps while bubblewrap waits for them
(--userns-block-fd, --info-fd), as newuidmap(1) would for an unprivileged user.
On FreeBSD the equivalent is a jail; this module runs on Linux only.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import shutil
import signal
import stat
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .errors import StepError, ToolError
from .run import run, start

log = logging.getLogger("release.emulate")

BWRAP_HINT = "apt-get install bubblewrap (Debian)"
ID_COUNT = 65536                    # ids 0..65535 inside are the same ids outside
KEPT_CAPABILITIES = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID")
HOSTNAME = "localhost"
DEVICES = ("null", "zero")          # bound from the host for the run only
KILL_GRACE = 10                     # seconds between TERM and KILL when a command overstays
HANDSHAKE_TIMEOUT = 60


@dataclass(frozen=True)
class Outcome:
    returncode: int                 # None-free: -signal when killed
    stdout: bytes
    stderr: bytes
    timed_out: bool


def bwrap_path() -> str:
    """The bubblewrap binary, or a one-line StepError saying how to get it."""
    if platform.system() != "Linux":
        raise StepError(f"running programs inside the image needs a sandbox; on {platform.system()} that is a jail, "
                        "which this pipeline does not drive yet (use scripts = \"builtin\" and no run steps)")
    path = shutil.which("bwrap") or shutil.which("bwrap", path="/usr/bin:/bin")
    if path is None:
        raise StepError(f"bwrap not found: needed to run programs inside the image in a sandbox ({BWRAP_HINT})")
    return path


def placeholders(root_fd: int, emulator_file: str | None) -> list[tuple[str, str]]:
    """Mount points for the run where the image lacks them: (image path, "dir" | "file"), to remove after."""
    placed: list[tuple[str, str]] = []
    try:
        st = os.stat("dev", dir_fd=root_fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            raise StepError(f"/dev in the image is not a directory; the sandbox needs /dev/{DEVICES[0]} there")
    except FileNotFoundError:
        os.mkdir("dev", 0o755, dir_fd=root_fd)
        placed.append(("/dev", "dir"))
    names = [f"dev/{d}" for d in DEVICES] + ([emulator_file.lstrip("/")] if emulator_file else [])
    for name in names:
        with contextlib.suppress(FileExistsError):
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=root_fd)
            os.close(fd)
            placed.append(("/" + name, "file"))
    return placed


def sandbox_argv(bwrap: str, root: Path, argv: Sequence[str], *, block_fd: int, info_fd: int,
                 emulator: tuple[str, str] | None) -> list[str]:
    """The bwrap command line: namespaces, the root, devices, the emulator, capabilities, the command."""
    out = [bwrap, "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net",
           "--unshare-cgroup-try", "--userns-block-fd", str(block_fd), "--info-fd", str(info_fd),
           "--uid", "0", "--gid", "0", "--hostname", HOSTNAME, "--die-with-parent", "--new-session",
           "--bind", str(root), "/"]
    for device in DEVICES:
        out += ["--dev-bind", f"/dev/{device}", f"/dev/{device}"]
    if emulator is not None:
        out += ["--ro-bind", emulator[0], emulator[1]]
    out += ["--cap-drop", "ALL"]
    for cap in KEPT_CAPABILITIES:
        out += ["--cap-add", cap]
    out += ["--chdir", "/", "--", *argv]
    return out


def run_sandboxed(root: Path, argv: Sequence[str], *, env: dict[str, str], timeout: int, label: str,
                  emulator: tuple[str, str] | None = None) -> Outcome:
    """Run *argv* in *root* inside the sandbox; output is returned, never a host file descriptor shared."""
    bwrap = bwrap_path()
    info_r, info_w = os.pipe()
    block_r, block_w = os.pipe()
    try:
        proc = start(sandbox_argv(bwrap, root, argv, block_fd=block_r, info_fd=info_w, emulator=emulator),
                     purpose=f"run {label} in the image's sandbox", env=env, pass_fds=(block_r, info_w))
    finally:
        os.close(info_w)
        os.close(block_r)
    try:
        with os.fdopen(info_r, "rb") as info, os.fdopen(block_w, "wb") as block:
            child = _child_pid(info, proc, label)
            _map_ids(child, label)
            block.write(b"go")
        return _wait(proc, timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _child_pid(info: IO[bytes], proc: subprocess.Popen[bytes], label: str) -> int:
    """The sandbox's first process, from bwrap's --info-fd; bwrap's own error when it could not start."""
    data = info.read()              # bwrap closes it once the namespaces exist
    try:
        return int(json.loads(data)["child-pid"])
    except (ValueError, KeyError, TypeError):
        _, err = proc.communicate(timeout=HANDSHAKE_TIMEOUT)
        last = (err.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        raise ToolError(f"{label}: the sandbox could not be set up: {last}") from None


def _map_ids(pid: int, label: str) -> None:
    """Ids 0..65535 in, the same out; then no nested user namespace may ever be made in there."""
    try:
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(f"0 0 {ID_COUNT}\n")
    except OSError as e:
        raise ToolError(f"{label}: the sandbox's user namespace cannot be mapped ({e.strerror}); "
                        "the build needs root and user namespaces") from None
    # user.max_user_namespaces is per user namespace: set from inside it, it holds for everything in it
    run(["nsenter", f"--user=/proc/{pid}/ns/user", "--", "sh", "-c", "echo 0 > /proc/sys/user/max_user_namespaces"],
        purpose=f"forbid nested user namespaces in the sandbox of {label}", timeout=HANDSHAKE_TIMEOUT)


def _wait(proc: subprocess.Popen[bytes], timeout: int) -> Outcome:
    try:
        out, err = proc.communicate(timeout=timeout)
        return Outcome(proc.returncode, out, err, False)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)        # bwrap's death takes the pid namespace with it
        try:
            out, err = proc.communicate(timeout=KILL_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        return Outcome(proc.returncode, out, err, True)


@contextlib.contextmanager
def opened_root(root: Path) -> Iterator[int]:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)

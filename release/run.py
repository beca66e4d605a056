"""The one place the pipeline starts other programs.

argv lists only (no shell), logged with shlex.join, and failures turned into a
one-line ToolError that says which tool, why it was needed and how it ended.
"""
from __future__ import annotations

import logging
import shlex
import shutil
import signal
import subprocess
from collections.abc import Sequence

from .errors import ToolError

log = logging.getLogger("release.run")


def require_tool(name: str, purpose: str, package: str | None = None) -> str:
    """Absolute path of *name* on PATH, or a ToolError naming what needs it."""
    path = shutil.which(name)
    if path is None:
        hint = f" (install the {package} package)" if package else ""
        raise ToolError(f"{name}: not found on PATH, needed to {purpose}{hint}")
    return path


def run(argv: Sequence[str], *, purpose: str, timeout: float | None = None,
        input: bytes | None = None, cwd: str | None = None, env: dict[str, str] | None = None,
        capture: bool = True, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run *argv*; raise ToolError (one line) when it is missing, times out or fails."""
    argv = [str(a) for a in argv]
    log.debug("running: %s", shlex.join(argv))
    try:
        proc = subprocess.run(argv, input=input, cwd=cwd, env=env, timeout=timeout,
                              stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.PIPE if capture else None)
    except FileNotFoundError:
        raise ToolError(f"{argv[0]}: not found, needed to {purpose}") from None
    except subprocess.TimeoutExpired:
        raise ToolError(f"{argv[0]}: still running after {timeout:g} s while trying to {purpose}") from None
    if check and proc.returncode != 0:
        if proc.returncode < 0:
            how = f"killed by {signal.Signals(-proc.returncode).name}"
        else:
            how = f"exit status {proc.returncode}"
        detail = ""
        if capture and proc.stderr:
            lines = proc.stderr.decode(errors="replace").strip().splitlines()
            if lines:
                detail = f": {lines[-1]}"
        raise ToolError(f"{shlex.join(argv)}: {how} while trying to {purpose}{detail}")
    return proc


def start(argv: Sequence[str], *, purpose: str, env: dict[str, str] | None = None,
          pass_fds: Sequence[int] = ()) -> subprocess.Popen[bytes]:
    """Start *argv* for a caller that talks to it while it runs (stdin closed, output captured).

    Only *pass_fds* are inherited besides the three standard streams.
    """
    argv = [str(a) for a in argv]
    log.debug("starting: %s", shlex.join(argv))
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, pass_fds=tuple(pass_fds), close_fds=True)
    except FileNotFoundError:
        raise ToolError(f"{argv[0]}: not found, needed to {purpose}") from None

"""run: a command run inside the image being built (natively or under QEMU user emulation).

What the command adds, changes and deletes becomes the layer's content
(release.emulate); it runs after the flavour's packages and other steps.
"""
from __future__ import annotations

from typing import Any

from . import EXECUTOR, Option, StepKind


def check(options: dict[str, Any]) -> list[tuple[str, str]]:
    problems = []
    if not options.get("command", ["x"]):
        problems.append(("command", "must name a program"))
    timeout = options.get("timeout")
    if isinstance(timeout, int) and timeout <= 0:
        problems.append(("timeout", f"must be positive, not {timeout}"))
    return problems


KIND = StepKind(
    name="run",
    doc="Runs a command inside the image (native or QEMU user emulation); its changes become layer content.",
    options=(Option("command", "list[str]", "argv of the command, run with the image as its root"),
             Option("timeout", "int", "seconds before the command is stopped", 600)),
    phase=EXECUTOR,
    example='{ kind = "run", command = ["/bin/sh", "-c", "echo hello > /etc/motd"] }',
    check=check,
)

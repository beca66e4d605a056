"""src-file: one file of the release's src, copied to one or more image paths.

oci-image-static.conf installs share/termcap/termcap.small as
/etc/termcap.small and /usr/share/misc/termcap this way.
"""
from __future__ import annotations

import re
from typing import Any

from ..builtins.entries import Entry
from ..install import put_with_parents
from ..tree import LayerTree
from . import AFTER_PACKAGES, Option, Step, StepContext, StepKind


def apply(tree: LayerTree, step: Step, ctx: StepContext) -> None:
    data = ctx.read_src(step.get("src"))
    mode = int(step.get("mode"), 8)
    for dest in step.get("dest"):
        put_with_parents(tree, Entry(dest, "file", mode, step.get("uname"), step.get("gname"), data=data),
                         "step src-file")


def src_paths(step: Step) -> list[str]:
    return [step.get("src").rstrip("/")]


def check(options: dict[str, Any]) -> list[tuple[str, str]]:
    problems = []
    mode = options.get("mode")
    if isinstance(mode, str) and not re.fullmatch(r"[0-7]{3,4}", mode):
        problems.append(("mode", f'must be an octal mode like "0644", not {mode!r}'))
    problems += [("dest", f"{d!r} is not an absolute image path") for d in options.get("dest", ())
                 if not d.startswith("/") or "/../" in d + "/"]
    return problems


KIND = StepKind(
    name="src-file",
    doc="Copies one file of the release's src to image paths.",
    options=(Option("src", "str", "src path of the file"),
             Option("dest", "list[str]", "absolute image paths to write it to"),
             Option("mode", "str", "octal mode", "0644"),
             Option("uname", "str", "owner (a user of the image's master.passwd)", "root"),
             Option("gname", "str", "group (a group of the image's /etc/group)", "wheel")),
    phase=AFTER_PACKAGES,
    example='{ kind = "src-file", src = "share/termcap/termcap.small", dest = ["/etc/termcap.small"] }',
    apply=apply, src_paths=src_paths, check=check,
)

"""Which generation of FreeBSD's install-time tools the release being built carries.

The pipeline replaces tools that FreeBSD's own build runs (certctl, pwd_mkdb)
with built-ins; where their behaviour changed between branches, the built-in
must follow the src of the release, not whichever tool a build host has.  The
generation is chosen by the release's major version (its abi_major) and src
branch, from the sources of usr.sbin/ in freebsd-src that differ:

- usr.sbin/certctl: certctl.sh with symlinks (13.x), certctl.sh with hard
  links and full rehash (14.x: releng/14.x, stable/14), certctl.c re-reading
  the installed certificates (releng/15.0), certctl.c from TRUSTPATH alone
  (stable/15, releng/15.1 and later, main) -- see builtins.certctl;
- usr.sbin/pwd_mkdb/pwd_mkdb.c: copies comment lines of master.passwd into
  /etc/passwd up to 14.x, skips them from 15.x (main) on -- see builtins.pwdmkdb.

The result is part of every layer's plan, so a change of generation rebuilds
the layers it affects.
"""
from __future__ import annotations

from .certctl import style_for


def tool_generations(abi_major: int, branch: str) -> dict[str, str | bool]:
    """{"certctl": style, "pwd_mkdb_copies_comments": bool} for a release (major version, src branch)."""
    return {"certctl": style_for(abi_major, branch), "pwd_mkdb_copies_comments": abi_major <= 14}

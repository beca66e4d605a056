"""Recognise pkgbase package scripts and replace them with built-in steps.

pkg runs a package's scripts with the *build host's* /bin/sh and tools
(`pwd_mkdb`, `services_mkdb`, `certctl` ...).  On a Linux builder those do not
exist, and pkg only warns, so the image silently lacks its databases.  FreeBSD's
base packages use a handful of fixed commands, so instead of running them we
read them: each recognised command becomes a ScriptAction that a pure-Python builtin
carries out for the target architecture.  Anything else is refused by name, so
a new script in a future release cannot be skipped without someone deciding to
(the `ignorable` set).

The reader is deliberately narrow: one command per line or `;`/`&&`-separated,
backslash continuations, `[ -x /path ] &&` guards, `${PKG_ROOTDIR}` in front of
every path the command writes, `${CAP_MKDB_ENDIAN}` (or generate-ucl's
unsubstituted `%CAP_MKDB_ENDIAN%`) standing for the target's byte order, and
`${PKG_METALOG:+...}`, which expands to nothing outside FreeBSD's NO_ROOT builds.
"""
from __future__ import annotations

import getopt
import posixpath
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import StepError

KINDS = ("pwd_mkdb", "services_mkdb", "cap_mkdb", "chmod", "certctl_rehash")
# Scripts pkg runs when a package is installed; the others (deinstall, upgrade,
# and FreeBSD's misspelt "post-uninstall") never run while an image is built.
INSTALL_PHASES = ("pre-install", "post-install", "install")
BYTE_ORDERS = ("little", "big")

_ROOT = "\x00ROOT\x00"          # stands for ${PKG_ROOTDIR} while the line is split into words
_ENDIAN = "\x00ENDIAN\x00"      # stands for ${CAP_MKDB_ENDIAN}
_SUBSTITUTIONS = [
    (re.compile(r"\$\{PKG_METALOG:\+[^}]*\}"), ""),
    (re.compile(r"\$\{PKG_ROOTDIR\}|\$PKG_ROOTDIR\b"), _ROOT),
    (re.compile(r"\$\{CAP_MKDB_ENDIAN\}|\$CAP_MKDB_ENDIAN\b|%CAP_MKDB_ENDIAN%"), _ENDIAN),
]
_SPELLINGS = {_ROOT: "${PKG_ROOTDIR}", _ENDIAN: "${CAP_MKDB_ENDIAN}"}
_TOOL_DIRS = ("", "/bin", "/sbin", "/usr/bin", "/usr/sbin")
_GUARDS = ("-x", "-f", "-e")


@dataclass(frozen=True)
class ScriptAction:
    """One install-time action, with image paths (no ${PKG_ROOTDIR}) in args."""

    kind: str
    args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown step kind {self.kind!r}")

    def as_json(self) -> dict[str, Any]:
        """A plain value for canonical_json / identity()."""
        return {"kind": self.kind, "args": self.args}


class _Unrecognised(Exception):
    """Raised inside the reader; recognise() turns it into the one-line StepError."""


def recognise(package: str, phase: str, script: str, *, ignorable: set[str] | frozenset[str] = frozenset(),
              byte_order: str) -> list[ScriptAction]:
    """The steps *script* (url-decoded, from the manifest's `scripts` map) performs.

    *byte_order* ("little" or "big") is the target's, used where the script
    leaves the byte order to the host tool or to ${CAP_MKDB_ENDIAN}.
    """
    if byte_order not in BYTE_ORDERS:
        raise StepError(f"{package}: byte order {byte_order!r} is neither little nor big")
    if phase not in INSTALL_PHASES:
        return []
    steps: list[ScriptAction] = []
    for command in _commands(script):
        try:
            steps += _step(command, byte_order)
        except _Unrecognised as why:
            if f"{package}:{phase}" in ignorable:
                return []
            text = " ".join(_spell(w) for w in command)
            detail = f" ({why})" if str(why) else ""
            raise StepError(f'{package}: {phase} script: unrecognised command "{text}"{detail}') from None
    return steps


def _commands(script: str) -> list[list[str]]:
    """Simple commands of *script*, as word lists, guards and comments removed."""
    text = re.sub(r"\\\r?\n", " ", script)                  # line continuations
    for pattern, replacement in _SUBSTITUTIONS:
        text = pattern.sub(replacement, text)
    commands: list[list[str]] = []
    for line in text.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        try:
            words = list(lexer)
        except ValueError:                                    # unbalanced quotes
            commands.append(line.split())
            continue
        current: list[str] = []
        for word in words + [";"]:
            if word in (";", "&&"):
                if current and not (word == "&&" and _is_guard(current)):
                    commands.append(current)
                current = []
            else:
                current.append(word)
    return commands


def _is_guard(words: list[str]) -> bool:
    """`[ -x /usr/sbin/certctl ]` or `test -x ...` before &&: always true for our builtins."""
    if len(words) == 4 and words[0] == "[" and words[3] == "]":
        words = words[1:3]
    elif len(words) == 3 and words[0] == "test":
        words = words[1:]
    else:
        return False
    return words[0] in _GUARDS and _ROOT not in words[1]


def _step(words: list[str], byte_order: str) -> list[ScriptAction]:
    env, words = _split_env(words)
    if not words:
        raise _Unrecognised("")
    program = words[0]
    directory, name = posixpath.split(program)
    handler = _HANDLERS.get(name)
    if handler is None or directory not in _TOOL_DIRS:
        raise _Unrecognised("")
    if set(env) - {"DESTDIR"} or (env and name != "certctl"):
        raise _Unrecognised("unexpected environment")
    return handler(words[1:], env, byte_order)


def _split_env(words: list[str]) -> tuple[dict[str, str], list[str]]:
    """Leading `env` and VAR=value words."""
    env: dict[str, str] = {}
    if words and words[0] in ("env", "/usr/bin/env"):
        words = words[1:]
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        key, _, value = words[0].partition("=")
        env[key] = value
        words = words[1:]
    return env, words


def _options(args: list[str], spec: str) -> tuple[list[tuple[str, str]], list[str]]:
    """BSD getopt: options first, then operands."""
    try:
        return getopt.getopt(args, spec)
    except getopt.GetoptError as exc:
        raise _Unrecognised(str(exc)) from None


def _image_path(word: str, what: str) -> str:
    """The image path ${PKG_ROOTDIR}/PATH names; a path outside the root is the host's."""
    if not word.startswith(_ROOT) or _ROOT in word[len(_ROOT):] or _ENDIAN in word:
        raise _Unrecognised(f"{what} is not under ${{PKG_ROOTDIR}}")
    return "/" + posixpath.normpath("/" + word[len(_ROOT):]).lstrip("/")


def _endian(flags: dict[str, str], byte_order: str) -> str:
    if "-l" in flags and "-b" in flags:
        raise _Unrecognised("both -l and -b")
    return "little" if "-l" in flags else "big" if "-b" in flags else byte_order


def _expand_endian(args: list[str], byte_order: str) -> list[str]:
    return [{"little": "-l", "big": "-b"}[byte_order] if a == _ENDIAN else a for a in args]


def _pwd_mkdb(args: list[str], env: dict[str, str], byte_order: str) -> list[ScriptAction]:
    """pwd_mkdb [-BCiLNp] [-d dir] [-s cachesize] [-u name] file"""
    opts, operands = _options(args, "BCiLNpd:s:u:")
    flags = dict(opts)
    if "-C" in flags or "-u" in flags:
        raise _Unrecognised("only a full rebuild is supported")
    if "-B" in flags and "-L" in flags or len(operands) != 1 or "-d" not in flags:
        raise _Unrecognised("")
    order = "little" if "-L" in flags else "big" if "-B" in flags else byte_order
    return [ScriptAction("pwd_mkdb", {"source": _image_path(operands[0], "the source file"),
                              "directory": _image_path(flags["-d"], "the -d directory"),
                              "v7_passwd": "-p" in flags, "byte_order": order})]


def _services_mkdb(args: list[str], env: dict[str, str], byte_order: str) -> list[ScriptAction]:
    """services_mkdb [-b | -l] [-q] [-o database] [file]"""
    opts, operands = _options(_expand_endian(args, byte_order), "blqo:")
    flags = dict(opts)
    if len(operands) != 1 or "-o" not in flags:
        raise _Unrecognised("")
    source = _image_path(operands[0], "the services file")
    if source == "/":
        # runtime.ucl as stored in the tree ends in "${PKG_ROOTDIR}/": the file
        # name was lost, and /etc/services is the only file the line can mean.
        source = "/etc/services"
    return [ScriptAction("services_mkdb", {"source": source,
                                   "database": _image_path(flags["-o"], "the -o database"),
                                   "byte_order": _endian(flags, byte_order)})]


def _cap_mkdb(args: list[str], env: dict[str, str], byte_order: str) -> list[ScriptAction]:
    """cap_mkdb [-b | -l] [-iv] [-f outfile] file ..."""
    opts, operands = _options(_expand_endian(args, byte_order), "blivf:")
    flags = dict(opts)
    if not operands:
        raise _Unrecognised("")
    sources = [_image_path(o, "the capability file") for o in operands]
    database = _image_path(flags["-f"], "the -f output") if "-f" in flags else sources[0]
    return [ScriptAction("cap_mkdb", {"sources": sources, "database": database + ".db",
                              "byte_order": _endian(flags, byte_order)})]


def _chmod(args: list[str], env: dict[str, str], byte_order: str) -> list[ScriptAction]:
    """chmod MODE file ...: absolute (octal) modes only, no -R."""
    if len(args) < 2 or not re.fullmatch(r"[0-7]+", args[0]) or int(args[0], 8) > 0o7777:
        raise _Unrecognised("")
    mode = int(args[0], 8)
    return [ScriptAction("chmod", {"path": _image_path(a, "the file"), "mode": mode}) for a in args[1:]]


def _certctl(args: list[str], env: dict[str, str], byte_order: str) -> list[ScriptAction]:
    """certctl [-cUv] [-D destdir] [-M metalog] rehash, DESTDIR from -D or the environment."""
    opts, operands = _options(args, "cUvD:M:")
    flags = dict(opts)
    if operands != ["rehash"]:
        raise _Unrecognised("")
    destdir = flags.get("-D", env.get("DESTDIR"))
    if destdir is None or _image_path(destdir, "DESTDIR") != "/":
        raise _Unrecognised("DESTDIR is not ${PKG_ROOTDIR}")
    return [ScriptAction("certctl_rehash", {})]


_HANDLERS: dict[str, Callable[[list[str], dict[str, str], str], list[ScriptAction]]] = {
    "pwd_mkdb": _pwd_mkdb,
    "services_mkdb": _services_mkdb,
    "cap_mkdb": _cap_mkdb,
    "chmod": _chmod,
    "certctl": _certctl,
}


def _spell(word: str) -> str:
    for marker, spelling in _SPELLINGS.items():
        word = word.replace(marker, spelling)
    return word

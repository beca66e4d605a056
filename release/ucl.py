"""A small, strict reader and writer for the UCL that pkg and FreeBSD use.

pkg repositories describe themselves in UCL (``meta.conf``), trust stores hold
one UCL fingerprint file per key (``/usr/share/keys/pkg/trusted/*``) and
pkgbase package metadata lives in ``release/packages/*.ucl``.  The pipeline
must read all of them on hosts without libucl, so this module implements the
subset those files use, with libucl's rules where they matter:

- ``key = value;``, ``key: value``, ``key value`` and ``key { ... }`` entries,
  ended by ``;``, ``,`` or a newline; an optional ``{ ... }`` around the file;
- double-quoted strings with JSON escapes, single-quoted strings, heredocs
  (``<<EOD`` ... a line holding only ``EOD``), unquoted atoms (which may hold
  spaces, as in libucl), numbers, booleans (yes/no/true/false/on/off), null;
- ``#`` and (nested) ``/* */`` comments;
- not libucl's unit suffixes (``10k``, ``5min``): they are refused, not misread;
- macros such as ``.include(try=true) "file"`` are handed to a callback, or
  refused.

It is stricter than libucl on purpose: a key given twice is an error (libucl
would silently build an implicit array, and a trust decision must never depend
on which of two ``fingerprint`` lines wins), unknown escapes are errors, and
variables (``${VERSION}``) are left untouched.  Every error is a one-line
RepositoryError naming the source and the line.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from .errors import RepositoryError

MacroHandler = Callable[[str, dict[str, Any], str], None]

_VALUE_END = frozenset("\n\r;,]}#")
_NUMBER = re.compile(r"-?(?:0[xX][0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)")
_UNIT = re.compile(r"-?\d+(?:\.\d+)?(?:[kmg]b?|ms|min|[shdwy])", re.IGNORECASE)
_TRUE = frozenset(("true", "yes", "on"))
_FALSE = frozenset(("false", "no", "off"))
_HEREDOC = re.compile(r"<<([A-Z]+)\r?\n")
_BARE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
_MACRO = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def loads(text: str, source: str, *, macro: MacroHandler | None = None,
          key_lines: dict[str, int] | None = None) -> dict[str, Any]:
    """Parse UCL *text*; *source* (a path or URL) names it in error messages.

    *macro*, when given, is called as ``macro(name, params, argument)`` for
    each ``.name(params) "argument"`` line; without it macros are errors,
    because silently skipping an ``.include`` would drop configuration.
    *key_lines*, when given, is filled with the line of each top-level key so
    that callers validating values can point at the offending line too.
    """
    return _Parser(text, source, macro).document(key_lines)


def dumps(obj: Mapping[str, Any]) -> str:
    """UCL text for *obj* in the layout pkg's config emitter uses.

    A flat mapping comes out as ``key = value;`` lines, which is exactly how
    ``pkg repo`` writes meta.conf; nested mappings and lists are indented by
    four spaces.  ``loads(dumps(x), ...) == x`` for every supported value.
    """
    out: list[str] = []
    _emit_members(obj, 0, out)
    return "".join(out)


class _Parser:
    """Recursive-descent parser over one string; positions are str indexes."""

    def __init__(self, text: str, source: str, macro: MacroHandler | None) -> None:
        self.text = text
        self.source = source
        self.macro = macro
        self.pos = 0
        self.end = len(text)

    # -- scanning ---------------------------------------------------------
    def error(self, message: str, pos: int | None = None) -> RepositoryError:
        where = self.pos if pos is None else pos
        line = self.text.count("\n", 0, min(where, self.end)) + 1
        return RepositoryError(f"{self.source}: line {line}: {message}")

    def line_of(self, pos: int) -> int:
        return self.text.count("\n", 0, pos) + 1

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos:self.pos + n]

    def skip_comment(self) -> bool:
        """Skip one comment at pos (never its closing newline)."""
        if self.peek() == "#":
            nl = self.text.find("\n", self.pos)
            self.pos = self.end if nl < 0 else nl
            return True
        if self.peek(2) != "/*":
            return False
        start, depth = self.pos, 0
        while self.pos < self.end:
            if self.peek(2) == "/*":
                depth += 1
                self.pos += 2
            elif self.peek(2) == "*/":
                depth -= 1
                self.pos += 2
                if depth == 0:
                    return True
            else:
                self.pos += 1
        raise self.error("unterminated /* comment", start)

    def skip_space(self, newlines: bool) -> None:
        """Skip blanks and comments; newlines too when *newlines*."""
        blanks = " \t\r\n" if newlines else " \t\r"
        while self.pos < self.end:
            if self.text[self.pos] in blanks:
                self.pos += 1
            elif not self.skip_comment():
                return

    # -- structure -------------------------------------------------------
    def document(self, key_lines: dict[str, int] | None) -> dict[str, Any]:
        self.skip_space(True)
        if self.peek() == "{":
            self.pos += 1
            result = self.object_body("}", key_lines)
            self.skip_space(True)
            if self.pos < self.end:
                raise self.error(f"unexpected {self.text[self.pos]!r} after the closing brace")
            return result
        if self.peek() == "[":
            raise self.error("the top level must be an object, not an array")
        return self.object_body(None, key_lines)

    def object_body(self, closer: str | None, key_lines: dict[str, int] | None = None) -> dict[str, Any]:
        opened = self.pos
        result: dict[str, Any] = {}
        while True:
            self.skip_space(True)
            if self.pos >= self.end:
                if closer is None:
                    return result
                raise self.error("unterminated object (opened here)", opened - 1)
            char = self.text[self.pos]
            if char == closer:
                self.pos += 1
                return result
            if char in "}]":
                raise self.error(f"unexpected {char!r}")
            if char == ".":
                self.parse_macro()
            else:
                self.entry(result, key_lines)
            self.after_value(closer)

    def entry(self, result: dict[str, Any], key_lines: dict[str, int] | None) -> None:
        key_pos = self.pos
        key = self.key()
        self.skip_space(False)
        if self.peek() in ("=", ":"):
            self.pos += 1
            self.skip_space(False)
        if self.peek() in ("", "\n", ";", ",", "}", "]"):  # the value starts on the key's line
            raise self.error(f"missing value for key {key!r}", key_pos)
        if key in result:
            raise self.error(f"duplicate key {key!r}", key_pos)
        result[key] = self.value()
        if key_lines is not None:
            key_lines[key] = self.line_of(key_pos)

    def after_value(self, closer: str | None) -> None:
        """Consume the terminator after an entry: ';', ',' or a newline."""
        self.skip_space(False)
        char = self.peek()
        if char in (";", ",", "\n"):
            self.pos += 1
        elif char == "" or char == closer:
            return
        else:
            raise self.error(f"expected ';', ',' or a new line, found {char!r}")

    def key(self) -> str:
        char = self.peek()
        if char == '"':
            return self.json_string()
        if char == "'":
            return self.single_string()
        start = self.pos
        if not (char.isalpha() or char in "_/" or ord(char or "\0") > 127):
            raise self.error(f"invalid character {char!r} at the start of a key")
        while self.pos < self.end:
            c = self.text[self.pos]
            if c.isalnum() or c in "_-./" or ord(c) > 127:
                if self.peek(2) == "/*":
                    break
                self.pos += 1
            else:
                break
        return self.text[start:self.pos]

    def value(self) -> Any:
        char = self.peek()
        if char == "{":
            self.pos += 1
            return self.object_body("}")
        if char == "[":
            self.pos += 1
            return self.array()
        if char == '"':
            return self.json_string()
        if char == "'":
            return self.single_string()
        if self.peek(2) == "<<" and (opening := _HEREDOC.match(self.text, self.pos)):
            return self.heredoc(opening)
        return self.atom()

    def array(self) -> list[Any]:
        opened = self.pos - 1
        items: list[Any] = []
        while True:
            self.skip_space(True)
            if self.pos >= self.end:
                raise self.error("unterminated array (opened here)", opened)
            if self.peek() == "]":
                self.pos += 1
                return items
            items.append(self.value())
            self.skip_space(False)
            char = self.peek()
            if char in (",", ";", "\n"):
                self.pos += 1
            elif char != "]":
                raise self.error(f"expected ',' or ']' in array, found {char!r}" if char
                                 else "unterminated array")

    # -- scalars ---------------------------------------------------------
    def json_string(self) -> str:
        start = self.pos
        self.pos += 1
        parts: list[str] = []
        while True:
            if self.pos >= self.end:
                raise self.error("unterminated string", start)
            char = self.text[self.pos]
            if char == '"':
                self.pos += 1
                return "".join(parts)
            if char == "\\":
                parts.append(self.escape())
                continue
            if ord(char) < 0x20:
                raise self.error("unescaped control character in a quoted string")
            parts.append(char)
            self.pos += 1

    def escape(self) -> str:
        code = self.text[self.pos + 1:self.pos + 2]
        if code in _ESCAPES:
            self.pos += 2
            return _ESCAPES[code]
        if code == "u":
            digits = self.text[self.pos + 2:self.pos + 6]
            if not re.fullmatch(r"[0-9a-fA-F]{4}", digits):
                raise self.error("bad \\u escape in a quoted string")
            self.pos += 6
            unit = int(digits, 16)
            if 0xD800 <= unit < 0xDC00 and self.peek(2) == "\\u":
                low = self.text[self.pos + 2:self.pos + 6]
                if re.fullmatch(r"[dD][c-fC-F][0-9a-fA-F]{2}", low):
                    self.pos += 6
                    return chr(0x10000 + ((unit - 0xD800) << 10) + (int(low, 16) - 0xDC00))
            return chr(unit)
        raise self.error(f"unknown escape \\{code} in a quoted string")

    def single_string(self) -> str:
        """'...': only \\' is an escape; backslash-newline joins lines (libucl)."""
        start = self.pos
        self.pos += 1
        parts: list[str] = []
        while self.pos < self.end:
            char = self.text[self.pos]
            if char == "'":
                self.pos += 1
                return "".join(parts)
            if char == "\\" and self.peek(2) in ("\\'", "\\\n"):
                if self.peek(2) == "\\'":
                    parts.append("'")
                self.pos += 2
                continue
            parts.append(char)
            self.pos += 1
        raise self.error("unterminated string", start)

    def heredoc(self, match: re.Match[str]) -> str:
        """The text after *match* (the opening "<<TAG" line) up to a line holding only TAG."""
        start = self.pos
        tag = match.group(1)
        body = match.end()
        line_start = body
        while line_start <= self.end:
            nl = self.text.find("\n", line_start)
            line_end = self.end if nl < 0 else nl
            if self.text[line_start:line_end].rstrip("\r") == tag:
                self.pos = line_start + len(tag)
                return self.text[body:max(body, line_start - 1)]
            if nl < 0:
                break
            line_start = nl + 1
        raise self.error(f"unterminated heredoc <<{tag}", start)

    def atom(self) -> Any:
        start = self.pos
        while self.pos < self.end:
            char = self.text[self.pos]
            if char in _VALUE_END or self.peek(2) == "/*":
                break
            self.pos += 1
        word = self.text[start:self.pos].rstrip(" \t")
        if not word:
            raise self.error("missing value", start)
        if _UNIT.fullmatch(word):  # libucl would scale it (10k = 10000, 1min = 60.0)
            raise self.error(f"number with a unit suffix {word!r} is not supported; quote it", start)
        return interpret_atom(word)

    def parse_macro(self) -> None:
        start = self.pos
        match = _MACRO.match(self.text, self.pos)
        if match is None:
            raise self.error("invalid macro", start)
        name = match.group(1)
        self.pos = match.end()
        params: dict[str, Any] = {}
        if self.peek() == "(":
            close = self.text.find(")", self.pos)
            if close < 0:
                raise self.error(f"unterminated parameters of .{name}", start)
            for item in filter(None, (p.strip() for p in self.text[self.pos + 1:close].split(","))):
                key, sep, val = item.partition("=")
                if not sep:
                    key, sep, val = item.partition(":")
                params[key.strip()] = interpret_atom(val.strip()) if val.strip() else True
            self.pos = close + 1
        self.skip_space(False)
        if self.peek() not in ('"', "'"):
            raise self.error(f"macro .{name} needs a quoted argument")
        argument = self.json_string() if self.peek() == '"' else self.single_string()
        if self.macro is None:
            raise self.error(f"macro .{name} is not supported here", start)
        self.macro(name, params, argument)


def interpret_atom(word: str) -> Any:
    """An unquoted value as libucl types it: number, boolean, null or string."""
    lowered = word.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    if lowered == "null":
        return None
    if _NUMBER.fullmatch(word):
        if word.lstrip("-")[:2] in ("0x", "0X"):
            return int(word, 16)
        if any(c in word for c in ".eE"):
            return float(word)
        return int(word)
    return word


# -- writer -----------------------------------------------------------------
def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise TypeError(f"UCL cannot hold the float {value!r}")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"UCL cannot hold a {type(value).__name__}")


def _key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"UCL keys are strings, not {type(key).__name__}")
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _emit_value(prefix: str, value: Any, indent: int, out: list[str], end: str) -> None:
    pad = "    " * indent
    if isinstance(value, Mapping):
        out.append(f"{pad}{prefix}{{\n")
        _emit_members(value, indent + 1, out)
        out.append(f"{pad}}}{end.strip(';')}\n")
    elif isinstance(value, (list, tuple)):
        out.append(f"{pad}{prefix}[\n")
        for item in value:
            _emit_value("", item, indent + 1, out, ",")
        out.append(f"{pad}]{end.strip(';')}\n")
    else:
        out.append(f"{pad}{prefix}{_scalar(value)}{end}\n")


def _emit_members(obj: Mapping[str, Any], indent: int, out: list[str]) -> None:
    for key, value in obj.items():
        if isinstance(value, (Mapping, list, tuple)):
            _emit_value(f"{_key(key)} ", value, indent, out, ";")
        else:
            _emit_value(f"{_key(key)} = ", value, indent, out, ";")

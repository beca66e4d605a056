"""One large JSON document read a member at a time, and its rows kept on disk.

A catalogue of every port holds hundreds of thousands of package objects.
json.load would hold all of them at once (a 300,000-entry catalogue took 598
MB), so the catalogue reader and the lock step read the one big member (the
"packages" array of pkg's data payload, the "packages" object of
catalogue.json) element by element with json's own raw_decode over a sliding
buffer, and keep each element on disk in a RowSpool: memory holds the names
and offsets, and the rows a step actually looks at.
"""
from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

CHUNK = 1 << 20
MAX_VALUE = 64 << 20            # characters one element may span: the window never grows past it
_WHITESPACE = " \t\n\r"


class StreamError(ValueError):
    """Malformed JSON at a place in the document (line and column count characters, from 1)."""

    def __init__(self, msg: str, lineno: int, colno: int) -> None:
        super().__init__(f"line {lineno} column {colno}: {msg}")
        self.msg, self.lineno, self.colno = msg, lineno, colno

    def args_at(self) -> tuple[int, int]:
        return self.lineno, self.colno


class NotAnObject(StreamError):
    """The document is valid JSON so far, but not an object at the top."""


class _Reader:
    """A sliding window over a UTF-8 JSON text, with line and column bookkeeping for errors."""

    def __init__(self, f: IO[bytes]) -> None:
        self._text = io.TextIOWrapper(f, encoding="utf-8", errors="strict", newline="")
        self._decoder = json.JSONDecoder()
        self.buf, self.pos, self.eof = "", 0, False
        self._line, self._col = 1, 1          # where buf[0] is in the document

    def _fill(self) -> bool:
        """Drop what was consumed, read more; False at the end of the text."""
        if self.eof:
            return False
        chunk = self._text.read(CHUNK)
        if not chunk:
            self.eof = True
            return False                    # positions in buf stay valid
        consumed = self.buf[:self.pos]
        newlines = consumed.count("\n")
        self._line += newlines
        self._col = len(consumed) - consumed.rfind("\n") if newlines else self._col + len(consumed)
        self.buf, self.pos = self.buf[self.pos:] + chunk, 0
        return True

    def error(self, msg: str, at: int | None = None) -> StreamError:
        at = self.pos if at is None else at
        before = self.buf[:at]
        newlines = before.count("\n")
        col = at - before.rfind("\n") if newlines else self._col + at
        return StreamError(msg, self._line + newlines, col)

    def detach(self) -> None:
        """Leave the underlying file open: its owner closes it."""
        self._text.detach()

    def peek(self) -> str:
        """The next character that is not whitespace ("" at the end)."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WHITESPACE:
                self.pos += 1
            if self.pos < len(self.buf) or not self._fill():
                return self.buf[self.pos:self.pos + 1]

    def expect(self, chars: str) -> str:
        ch = self.peek()
        if not ch or ch not in chars:
            raise self.error(f"Expecting {' or '.join(repr(c) for c in chars)}")
        self.pos += 1
        return ch

    def value(self) -> Any:
        """The next complete JSON value; the window grows until it holds all of it."""
        self.peek()
        while True:
            try:
                obj, end = self._decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                if len(self.buf) - self.pos < MAX_VALUE and self._fill():
                    continue                    # perhaps only cut off by the end of the window
                raise self.error(e.msg, e.pos) from None
            if end == len(self.buf) and self._fill():   # a number may go on in the next chunk
                continue
            self.pos = end
            return obj


def read_document(f: IO[bytes], big: str, on_item: Callable[[Any, Any], None]) -> tuple[dict[str, Any], str | None]:
    """Read a top-level JSON object, streaming its member *big*.

    Each element of *big* goes to on_item(index, value) for an array,
    on_item(name, value) for an object.  Returns the other members (read
    whole: they are small) and what *big* was: "array", "object", None when
    absent, or "other" (its value is then in the returned members).
    Raises StreamError for malformed JSON, UnicodeDecodeError for bad UTF-8.
    """
    r = _Reader(f)
    try:
        return _document(r, big, on_item)
    finally:
        r.detach()


def _document(r: _Reader, big: str, on_item: Callable[[Any, Any], None]) -> tuple[dict[str, Any], str | None]:
    if r.peek() != "{":
        raise NotAnObject("Expecting '{'", *r.error("").args_at())
    r.pos += 1
    others: dict[str, Any] = {}
    kind = None
    if r.peek() == "}":
        r.pos += 1
        return others, kind
    while True:
        key = r.value()
        if not isinstance(key, str):
            raise r.error("Expecting property name enclosed in double quotes")
        r.expect(":")
        opener = r.peek()
        if key == big and opener in "[{" and opener:
            kind = "array" if opener == "[" else "object"
            _stream(r, opener, on_item)
        else:
            others[key] = r.value()
            kind = "other" if key == big else kind
        if r.expect(",}") == "}":
            break
    if r.peek():
        raise r.error("Extra data")
    return others, kind


def _stream(r: _Reader, opener: str, on_item: Callable[[Any, Any], None]) -> None:
    r.pos += 1
    closer = "]" if opener == "[" else "}"
    if r.peek() == closer:
        r.pos += 1
        return
    index = 0
    while True:
        if opener == "{":
            name = r.value()
            if not isinstance(name, str):
                raise r.error("Expecting property name enclosed in double quotes")
            r.expect(":")
        else:
            name = index
        on_item(name, r.value())
        index += 1
        if r.expect("," + closer) == closer:
            return


class RowSpool(Mapping[str, dict[str, Any]]):
    """JSON objects by name, kept in an anonymous temporary file; memory holds the index only."""

    def __init__(self, directory: str | None = None) -> None:
        self._file = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 (closed by close())
        self._index: dict[str, int] = {}          # name -> offset << 32 | size: one int per row, not a tuple
        self._order: list[str] | None = None

    def add(self, name: str, row: Any) -> None:
        data = json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode()
        if len(data) >= 1 << 32:
            raise ValueError(f"{name}: a row of {len(data)} bytes")
        offset = self._file.seek(0, io.SEEK_END)
        self._file.write(data)
        self._index[name] = offset << 32 | len(data)
        self._order = None

    def raw(self, name: str) -> bytes:
        where = self._index[name]
        self._file.seek(where >> 32)
        return self._file.read(where & 0xFFFFFFFF)

    def __getitem__(self, name: str) -> dict[str, Any]:
        row: dict[str, Any] = json.loads(self.raw(name))
        return row

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __iter__(self) -> Iterator[str]:
        if self._order is None:
            self._order = sorted(self._index)
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._index)

    def close(self) -> None:
        self._file.close()

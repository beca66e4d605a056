"""release.jsonstream: one big JSON member read element by element, rows kept on disk."""
from __future__ import annotations

import io
import json

import pytest

from release.fsutil import pretty_json
from release.jsonstream import CHUNK, NotAnObject, RowSpool, StreamError, read_document
from release.pkgrepo import catalogue_json


def stream(text: str, big: str = "packages"):
    items = []
    others, kind = read_document(io.BytesIO(text.encode()), big, lambda k, v: items.append((k, v)))
    return others, kind, items


def test_the_big_member_is_streamed_and_the_others_are_returned():
    assert stream('{"groups":[],"packages":[{"a":1},{"b":[2,3]}],"n":12345}') == (
        {"groups": [], "n": 12345}, "array", [(0, {"a": 1}), (1, {"b": [2, 3]})])
    assert stream('{ "packages" : { "x" : {"v": "ü"} , "y":null } }') == (
        {}, "object", [("x", {"v": "ü"}), ("y", None)])
    assert stream('{"packages": 3}') == ({"packages": 3}, "other", [])
    assert stream("{}") == ({}, None, [])


def test_values_cut_by_the_window_are_read_whole():
    big = "x" * (3 * CHUNK)
    text = json.dumps({"n": 1234567890123, "packages": [{"s": big}, 9876543210] * 2})
    others, kind, items = stream(text)
    assert others == {"n": 1234567890123} and [v for _, v in items] == [{"s": big}, 9876543210] * 2


@pytest.mark.parametrize("text, where", [
    ('{"packages":[{"a":1},]}', "line 1 column 22: Expecting value"),
    ('{"packages":[\n  {"a":1}\n  {"b":2}]}', "line 3 column 3: Expecting ',' or ']'"),
    ('{"packages":[]} x', "line 1 column 17: Extra data"),
    ('{"packages":[1', "line 1 column 15: Expecting ',' or ']'"),
])
def test_malformed_json_is_placed_by_line_and_column(text, where):
    with pytest.raises(StreamError) as err:
        stream(text)
    assert str(err.value) == where
    with pytest.raises(NotAnObject):
        stream("[1, 2]")
    with pytest.raises(UnicodeDecodeError):
        read_document(io.BytesIO(b'{"packages":["\xff"]}'), "packages", lambda k, v: None)


def test_a_row_spool_keeps_rows_on_disk_and_names_in_order():
    spool = RowSpool()
    spool.add("b", {"x": "é"})
    spool.add("a", {"y": [1]})
    assert list(spool) == ["a", "b"] and len(spool) == 2 and "a" in spool and "c" not in spool
    assert spool["b"] == {"x": "é"} and spool.raw("a") == b'{"y":[1]}'
    spool.close()


def test_catalogue_json_is_spelled_exactly_as_pretty_json_spells_it():
    header = {"repository": "https://pkg.example.org/x", "archive": "data.pkg", "payload": "data",
              "payload_sha256": "ab" * 32, "fingerprint": None}
    rows = {"FreeBSD-b": {"name": "FreeBSD-b", "deps": {"FreeBSD-a": {"origin": "o", "version": "1"}},
                          "licenses": ["BSD2CLAUSE"], "comment": "ünïcode"},
            "FreeBSD-a": {"name": "FreeBSD-a", "flatsize": 3, "shlibs_provided": []}}
    spool = RowSpool()
    for name, row in rows.items():
        spool.add(name, row)
    assert b"".join(catalogue_json(header, spool)) == pretty_json({**header, "packages": rows})
    assert b"".join(catalogue_json(header, RowSpool())) == pretty_json({**header, "packages": {}})

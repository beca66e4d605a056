"""tests/data is the suite's only third-party input: every file in it is accounted for in its README.

A file whose origin and licence are not written down, or a link to the demo's copy that no longer
resolves, would break the promise that a clone carries what its tests read, and where it came from.
"""
from __future__ import annotations

import re

from tests.conftest import DATA, PROJECT

README = (DATA / "README.md").read_text()
ROW = re.compile(r"^\| `([^`]+)` \| `([0-9a-f]{40})` \| (here|link to `([^`]+)`) \|$", re.M)


def entries(top):
    return {p.relative_to(top).as_posix(): p for p in sorted(top.rglob("*"))
            if (p.is_file() or p.is_symlink()) and p.name not in ("LICENSE", "README.md")}


def test_every_freebsd_file_has_its_row():
    rows = {m.group(1): m for m in ROW.finditer(README)}
    files = entries(DATA / "freebsd-src")
    assert sorted(rows) == sorted(files)
    for name, path in files.items():
        target = rows[name].group(4)
        if path.is_symlink():
            assert target, f"{name} is a link but its row says it is here"
            resolved = path.resolve()
            assert resolved.is_file() and resolved.is_relative_to(PROJECT), name
            assert resolved.relative_to(PROJECT).as_posix().startswith(target), (name, target)
        else:
            assert target is None, f"{name} is here but its row says it is a link"


def test_every_schema_is_named_with_its_licence_beside_it():
    for schema_set in sorted((DATA / "schemas").iterdir()):
        assert f"`schemas/{schema_set.name}/`" in README
        assert (schema_set / "LICENSE").is_file()
        for name in entries(schema_set):
            assert f"{name}`" in README, name
    assert (DATA / "freebsd-src" / "LICENSE").is_file()

"""The solver's providers: one kept as a name, several as a list, chosen the same way either way."""
from __future__ import annotations

from release.solver import Universe, closure


def package(name: str, **fields) -> dict:
    return {"name": name, "version": "1", **fields}


def test_a_library_with_one_provider_and_one_with_two_are_resolved_alike():
    u = Universe({
        "app": package("app", shlibs_required=["libone.so.1", "libtwo.so.1"]),
        "one": package("one", shlibs_provided=["libone.so.1"]),
        "two-a": package("two-a", shlibs_provided=["libtwo.so.1"], provides=["cap"]),
        "two-b": package("two-b", shlibs_provided=["libtwo.so.1"]),
    }, "test")
    assert u.shlib_providers["libone.so.1"] == "one" and u.shlib_providers["libtwo.so.1"] == ["two-a", "two-b"]
    assert u.providers_of("shlib", "libtwo.so.1") == ["two-a", "two-b"] and u.providers_of("shlib", "none") == []
    assert u.providers_of("require", "cap") == ["two-a"]
    added, unresolved = closure(u, "f", ["app"], set())
    assert [r.name for r in added] == ["app", "one", "two-a"] and unresolved == []
    added, _ = closure(u, "f", ["app"], {"two-b"})          # an installed provider is preferred
    assert [r.name for r in added] == ["app", "one"]

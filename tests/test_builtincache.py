"""The install-time tools' cache (release.builtincache): same outputs as the tools, run once per input.

Each tool runs on FreeBSD's own files (the demo's copies of etc/master.passwd,
etc/services, etc/login.conf and secure/caroot); the cached answers must be
byte-identical to a direct run, a second call must not run the tool, and a
changed input, a changed implementation or a damaged entry must run it again.
"""
from __future__ import annotations

import json

import pytest

from release import builtincache
from release.builtincache import UNCACHED, Builtins
from release.builtins import capmkdb, certctl, pwdmkdb, servicesmkdb
from release.demo.content import DATA
from tests.conftest import count_calls

ETC = DATA / "src" / "etc"
FILES = DATA / "files" / "etc"
CAROOT = DATA / "src" / "secure" / "caroot" / "trusted"


def certificates() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(CAROOT.glob("*.pem"))}


CALLS = {
    "pwd_mkdb": lambda t: t.pwd_mkdb((ETC / "master.passwd").read_bytes()),
    "services_mkdb": lambda t: t.services_mkdb((FILES / "services").read_bytes(), "big"),
    "cap_mkdb": lambda t: t.cap_mkdb((FILES / "login.conf").read_bytes(), "little"),
    "certctl_rehash": lambda t: t.certctl_rehash(certificates(), {}, layout="untrusted", style="symlink",
                                                 install_sources=True),
}
IMPLEMENTATIONS = {"pwd_mkdb": (pwdmkdb, "pwd_mkdb"), "services_mkdb": (servicesmkdb, "services_mkdb"),
                   "cap_mkdb": (capmkdb, "cap_mkdb"), "certctl_rehash": (certctl, "rehash")}


def counting(monkeypatch, tool: str) -> list:
    return count_calls(monkeypatch, *IMPLEMENTATIONS[tool])


@pytest.mark.parametrize("tool", sorted(CALLS))
def test_cached_outputs_are_the_tools_own_and_the_tool_runs_once(tmp_path, monkeypatch, tool):
    direct = CALLS[tool](UNCACHED)
    calls = counting(monkeypatch, tool)
    cached = Builtins(tmp_path)
    assert CALLS[tool](cached) == direct
    assert CALLS[tool](cached) == direct
    assert CALLS[tool](Builtins(tmp_path)) == direct       # another task or process: the same store
    assert len(calls) == 1
    assert len(list(tmp_path.glob("*.json"))) == 1


def test_a_changed_input_or_option_runs_the_tool_again(tmp_path, monkeypatch):
    calls = counting(monkeypatch, "services_mkdb")
    tools = Builtins(tmp_path)
    services = (FILES / "services").read_bytes()
    little, big = tools.services_mkdb(services, "little"), tools.services_mkdb(services, "big")
    changed = tools.services_mkdb(services + b"drift\t4242/tcp\n", "little")
    assert len(calls) == 3 and len({little, big, changed}) == 3


def test_a_changed_implementation_runs_the_tool_again(tmp_path, monkeypatch):
    CALLS["pwd_mkdb"](Builtins(tmp_path))
    calls = counting(monkeypatch, "pwd_mkdb")
    monkeypatch.setattr(builtincache, "code_identity", lambda: "another implementation")
    CALLS["pwd_mkdb"](Builtins(tmp_path))
    assert len(calls) == 1 and len(list(tmp_path.glob("*.json"))) == 2


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "wrong shape"])
def test_a_damaged_entry_is_computed_again(tmp_path, monkeypatch, damage):
    direct = CALLS["certctl_rehash"](UNCACHED)
    CALLS["certctl_rehash"](Builtins(tmp_path))
    [entry] = tmp_path.glob("*.json")
    raw = entry.read_bytes()
    doc = json.loads(raw)
    name = next(iter(doc["outputs"]))
    if damage == "truncate":
        entry.write_bytes(raw[:len(raw) // 2])
    elif damage == "flip":
        value = doc["outputs"][name]
        doc["outputs"][name] = ("B" if value[10] == "A" else "A").join((value[:10], value[11:]))
        entry.write_text(json.dumps(doc))
    elif damage == "garbage":
        entry.write_bytes(b"\x00" * 64)
    else:
        entry.write_text(json.dumps({"outputs": [], "sha256": 1}))
    calls = counting(monkeypatch, "certctl_rehash")
    assert CALLS["certctl_rehash"](Builtins(tmp_path)) == direct
    assert len(calls) == 1
    assert CALLS["certctl_rehash"](Builtins(tmp_path)) == direct and len(calls) == 1    # and repaired


def test_without_a_directory_nothing_is_kept(tmp_path, monkeypatch):
    calls = counting(monkeypatch, "cap_mkdb")
    CALLS["cap_mkdb"](UNCACHED)
    CALLS["cap_mkdb"](UNCACHED)
    assert len(calls) == 2

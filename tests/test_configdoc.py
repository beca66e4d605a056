"""The configuration reference is complete, its examples are valid, and docs/configuration.md is current."""
from __future__ import annotations

from pathlib import Path

import pytest
import toml

from release import config as config_mod
from release.configdoc import render
from release.configschema import SCHEMA
from release.errors import ConfigError
from release.steps import REGISTRY
from tests.conftest import PROJECT

DOC = PROJECT / "docs" / "configuration.md"
MINIMAL = {
    "architectures": {"amd64": {"oci": "amd64"}},
    "flavours": {"static": {}},
    "releases": {"r": {"branch": "main", "repo": "base_latest", "abi_major": 15, "arches": ["amd64"],
                       "flavours": ["static"]}},
}


def test_the_committed_reference_is_what_the_tables_render() -> None:
    assert DOC.read_text() == render(), \
        "docs/configuration.md is stale: python -m release.configdoc > docs/configuration.md"


@pytest.mark.parametrize("section,setting", [(sec, s) for sec, settings in SCHEMA.items() for s in settings],
                         ids=lambda v: v if isinstance(v, str) else v.key)
def test_every_setting_is_documented_with_an_example_the_loader_accepts(section, setting, tmp_path: Path) -> None:
    assert setting.doc and setting.example, f"{section}.{setting.key}: doc and example are required"
    value = toml.loads(f"x = {setting.example}")["x"]
    data = toml.loads(toml.dumps(MINIMAL))
    if section.endswith(".*"):
        top = section[:-2]
        name = {"releases": "r", "flavours": "extra", "architectures": "amd64"}.get(top, "example")
        table = data.setdefault(top, {}).setdefault(name, {})
        if top == "registries":
            table.setdefault("url", "https://registry.example.org")
    else:
        table = data.setdefault(section, {})
    table[setting.key] = value
    if section == "releases.*" and setting.key in ("flavours", "arches", "packages"):
        data["flavours"].update({"dynamic": {"parent": "static"}, "minimal": {"parent": "dynamic"}})
        data["architectures"]["aarch64"] = {"oci": "arm64"}
        data["releases"]["r"]["flavours"] = ["static", "dynamic", "minimal"]
        data["releases"]["r"]["arches"] = ["amd64", "aarch64"]
    if section == "flavours.*":
        data["flavours"]["dynamic"] = {}                        # the examples' parent
    if section == "releases.*" and setting.key == "newest":
        data["releases"]["r"]["branch"] = "releng/15.*"
    if section == "releases.*" and setting.key == "src_url":
        data["releases"]["r"]["source"] = "https://git.freebsd.org/src.git"
    path = tmp_path / "config.toml"
    path.write_text(toml.dumps(data))
    try:
        config_mod.load(path)
    except ConfigError as e:
        pytest.fail(f"{section}.{setting.key} = {setting.example}: {e}")


@pytest.mark.parametrize("kind", sorted(REGISTRY))
def test_every_step_kind_is_documented_and_its_example_loads(kind: str, tmp_path: Path) -> None:
    spec = REGISTRY[kind]
    assert spec.doc and all(o.doc for o in spec.options)
    step = toml.loads(f"x = {spec.example}")["x"]
    assert step["kind"] == kind
    data = toml.loads(toml.dumps(MINIMAL))
    data["flavours"]["static"]["steps"] = [step]
    path = tmp_path / "config.toml"
    path.write_text(toml.dumps(data))
    loaded = config_mod.load(path)
    assert loaded.flavours["static"].steps[0].kind == kind


def test_an_unknown_step_option_lists_the_known_ones(tmp_path: Path) -> None:
    data = toml.loads(toml.dumps(MINIMAL))
    data["flavours"]["static"]["steps"] = [{"kind": "src-file", "src": "a", "dest": ["/a"], "owner": "root"}]
    path = tmp_path / "config.toml"
    path.write_text(toml.dumps(data))
    with pytest.raises(ConfigError) as e:
        config_mod.load(path)
    assert e.value.problems == ["config.toml: flavours.static.steps[0].owner: unknown option for a src-file step "
                                "(known: src, dest, mode, uname, gname)"]

"""config.toml: the shipped matrix loads; every kind of mistake is reported, all at once, by location."""
from __future__ import annotations

from pathlib import Path

import pytest
import toml

from release import config
from release.errors import ConfigError
from tests.conftest import PROJECT


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(toml.dumps(data))
    return path


def shipped() -> dict:
    return toml.loads((PROJECT / "config.toml").read_text())


def test_the_shipped_matrix():
    cfg = config.load(PROJECT / "config.toml")
    assert {"14.2-RELEASE", "13.2-RELEASE", "13-STABLE", "14-STABLE", "15.0-CURRENT", "demo"} <= set(cfg.releases)
    r = cfg.release("14.2-RELEASE")
    assert (r.branch, r.repo, r.arches, r.flavours) == ("releng/14.2", "base_release_2", ("amd64", "aarch64"),
                                                       ("static", "dynamic", "minimal"))
    assert cfg.pkgbase_url(r, "aarch64") == "https://pkg.freebsd.org/FreeBSD:14:aarch64/base_release_2"
    assert cfg.release("15.0-CURRENT").flavours == ("static", "dynamic", "runtime", "notoolchain", "toolchain")
    assert cfg.release("13-STABLE").kind == "snapshot" and cfg.release("13-STABLE").repo == "base_latest"
    assert {a: cfg.architectures[a].oci for a in ("amd64", "aarch64", "i386", "riscv64")} == \
        {"amd64": "amd64", "aarch64": "arm64", "i386": "386", "riscv64": "riscv64"}
    assert cfg.architectures["aarch64"].file_arch == "arm64-aarch64"
    assert [f.name for f in cfg.chain("toolchain")] == ["static", "dynamic", "runtime", "notoolchain", "toolchain"]
    assert cfg.src.url == "https://git.freebsd.org/src.git"
    assert cfg.release("13.2-RELEASE").flavour_packages(cfg.flavours["minimal"])[1] == "FreeBSD-caroot"


def test_every_problem_is_reported_at_once(tmp_path):
    data = shipped()
    data["pipeline"]["jobs"] = "four"
    data["pipeline"]["colour"] = "blue"
    data["flavours"]["minimal"]["parent"] = "dinamic"
    data["flavours"]["static"]["steps"].append({"kind": "bogus"})
    data["flavours"]["a"] = {"parent": "b"}
    data["flavours"]["b"] = {"parent": "a"}
    data["releases"]["14.2-RELEASE"]["arches"] = ["amd64", "sparc64"]
    data["releases"]["14.2-RELEASE"]["flavours"].append("nope")
    with pytest.raises(ConfigError) as e:
        config.load(write(tmp_path, data))
    problems = e.value.problems
    assert 'config.toml: flavours.minimal.parent: unknown flavour "dinamic"' in problems
    assert "config.toml: pipeline.jobs: must be an integer, not 'four'" in problems
    assert any(p.startswith("config.toml: pipeline.colour: unknown key") for p in problems)
    assert any(p.startswith("config.toml: flavours.static.steps[5].kind: unknown step kind 'bogus'") for p in problems)
    assert "config.toml: flavours.a.parent: parent cycle: a -> b -> a" in problems
    assert any(p.startswith('config.toml: releases.14.2-RELEASE.arches: unknown architecture "sparc64"')
               for p in problems)
    assert 'config.toml: releases.14.2-RELEASE.flavours: unknown flavour "nope"' in problems
    assert len(problems) >= 8


def test_a_release_needs_its_flavours_parents_and_local_sources_a_name(tmp_path):
    data = shipped()
    data["releases"]["14.2-RELEASE"]["flavours"] = ["minimal"]
    data["releases"]["14.2-RELEASE"]["src_url"] = "file:///srv/src.git"
    with pytest.raises(ConfigError) as e:
        config.load(write(tmp_path, data))
    assert 'config.toml: releases.14.2-RELEASE.flavours: flavour "minimal" needs its parent "dynamic" in the ' \
           'same release' in e.value.problems
    assert any("releases.14.2-RELEASE.source: missing" in p for p in e.value.problems)


def test_not_toml_and_missing_file(tmp_path):
    (tmp_path / "config.toml").write_text("[pipeline\n")
    with pytest.raises(ConfigError, match=r"config.toml: not valid TOML"):
        config.load(tmp_path / "config.toml")
    with pytest.raises(ConfigError, match=r"config.toml: no such file"):
        config.load(tmp_path / "missing" / "config.toml")


def test_variables_and_overrides(tmp_path):
    cfg = config.load(PROJECT / "config.toml", workdir=tmp_path)
    demo = cfg.release("demo")
    assert cfg.pkgbase_url(demo, "amd64") == f"file://{tmp_path}/demo/pkgbase/FreeBSD:14:amd64/base_release_2"
    assert cfg.src_url(demo) == f"file://{tmp_path}/demo/src.git"
    assert cfg.source(demo).startswith("https://git.freebsd.org/src.git")
    assert config.expand("${ABI}/${REPO}", {"REPO": "base_latest"}) == "${ABI}/base_latest"   # pkg's ${ABI} stays
    step = cfg.flavours["static"].steps[0]
    assert step.kind == "mtree" and step.get("specs")[0] == "BSD.root.dist:/"

"""config.toml: the shipped matrix loads; every kind of mistake is reported, all at once, by location."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import toml

from release import config
from release.errors import ConfigError
from release.textvars import expand
from tests.conftest import PROJECT


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(toml.dumps(data))
    return path


def shipped() -> dict:
    return toml.loads((PROJECT / "config.toml").read_text())


def test_the_shipped_matrix():
    """What config.toml itself says: the releases and branches; the rest comes from each release's src."""
    cfg = config.load(PROJECT / "config.toml")
    assert {"14.2-RELEASE", "releases-15", "releases-14", "stable-15", "stable-14", "current", "13.2-RELEASE",
            "stable-13", "demo"} == set(cfg.releases)
    r = cfg.release("14.2-RELEASE")
    assert (r.branch, r.arches, r.flavours, r.version, r.repo) == ("releng/14.2", ("amd64", "aarch64"), (), "", "")
    assert cfg.release("releases-15").is_pattern and cfg.release("releases-15").newest == 2
    assert [cfg.release(n).kind for n in ("stable-15", "stable-14", "current", "stable-13")] == ["snapshot"] * 4
    assert cfg.pkgbase.fingerprints == "src:auto"
    assert {a: cfg.architectures[a].oci for a in ("amd64", "aarch64", "i386", "riscv64")} == \
        {"amd64": "amd64", "aarch64": "arm64", "i386": "386", "riscv64": "riscv64"}      # built-in defaults
    assert cfg.architectures["aarch64"].file_arch == "arm64-aarch64"
    assert cfg.src.url == "https://git.freebsd.org/src.git"
    thirteen = cfg.release("13.2-RELEASE")          # no images in 13.x's src: the built-in family, listed
    assert thirteen.flavours == ("static", "dynamic", "minimal")
    assert thirteen.flavour_packages(cfg.flavours["minimal"])[1] == "FreeBSD-caroot"


def test_every_problem_is_reported_at_once(tmp_path):
    data = shipped()
    data["pipeline"]["jobs"] = "four"
    data["pipeline"]["colour"] = "blue"
    data["flavours"] = {"minimal": {"parent": "dinamic"}, "static": {"steps": [{"kind": "bogus"}]},
                        "a": {"parent": "b"}, "b": {"parent": "a"}}
    data["releases"]["14.2-RELEASE"]["arches"] = ["amd64", "sparc64"]
    data["releases"]["14.2-RELEASE"]["newest"] = 2
    with pytest.raises(ConfigError) as e:
        config.load(write(tmp_path, data))
    problems = e.value.problems
    assert 'config.toml: flavours.minimal.parent: unknown flavour "dinamic"' in problems
    assert "config.toml: pipeline.jobs: must be an integer, not 'four'" in problems
    assert any(p.startswith("config.toml: pipeline.colour: unknown key") for p in problems)
    assert any(p.startswith("config.toml: flavours.static.steps[0].kind: unknown step kind 'bogus'") for p in problems)
    assert "config.toml: flavours.a.parent: parent cycle: a -> b -> a" in problems
    assert any(p.startswith('config.toml: releases.14.2-RELEASE.arches: unknown architecture "sparc64"')
               for p in problems)
    assert "config.toml: releases.14.2-RELEASE.newest: only a branch glob (releng/15.*) has matches to choose " \
           "from" in problems
    assert len(problems) >= 7


def test_a_release_needs_its_flavours_parents_and_local_sources_a_name(tmp_path):
    data = shipped()
    data["releases"]["14.2-RELEASE"]["flavours"] = ["minimal"]       # the built-in minimal, without its parent
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
    demo = dataclasses.replace(cfg.release("demo"), abi_major=14, repo="base_release_2")   # as its src says
    assert cfg.pkgbase_url(demo, "amd64") == f"file://{tmp_path}/demo/pkgbase/FreeBSD:14:amd64/base_release_2"
    assert cfg.src_url(demo) == f"file://{tmp_path}/demo/src.git"
    assert cfg.source(demo).startswith("https://git.freebsd.org/src.git")
    assert expand("${ABI}/${REPO}", {"REPO": "base_latest"}) == "${ABI}/base_latest"   # pkg's ${ABI} stays
    step = cfg.flavours["static"].steps[0]
    assert step.kind == "mtree" and step.get("specs")[0] == "BSD.root.dist:/"

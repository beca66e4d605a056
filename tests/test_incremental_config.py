"""A configuration change rebuilds exactly what reads it, to the bytes a fresh build gives.

Each stage's plan holds every setting its body reads, and the doit task's
config_changed is the plan's identity; these are the three cases that once
slipped through (settings read outside a plan), each checked against a fresh
work directory built with the changed configuration.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import pygit2
import pytest
import toml

from release.demo.generate import KEY_NAME
from release.demo.srcrepo import advance_branch
from tests.pipeline_support import doit, error_lines, ran, write_config

FLAVOURS = ["static", "dynamic"]


@pytest.fixture
def mirror(demo_tree: Path, tmp_path: Path) -> Path:
    root = tmp_path / "mirror"
    shutil.copytree(demo_tree, root, symlinks=True)
    return root


def config_for(tmp_path: Path, root: Path, name: str) -> Path:
    """The demo served from *root* as release "test": amd64, static and dynamic."""
    path = write_config(tmp_path / f"{name}.toml", mirror=f"file://{root}/pkgbase/${{ABI}}/${{REPO}}",
                        src_url=(root / "src.git").as_uri(), arches=["amd64"])
    change(path, flavours=FLAVOURS)
    return path


def outputs(work: Path) -> dict[str, str]:
    """sha256 of every released file and layout document of the test release."""
    out = work / "out/test"
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file()}


def base_conf(work: Path) -> str:
    layer = json.loads((work / "build/test/amd64/static/layer.json").read_text())
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress((work / "blobs/sha256" / layer["digest"][7:])
                                                         .read_bytes()))) as tar:
        return tar.extractfile("usr/local/etc/pkg/repos/base.conf").read().decode()


def change(config: Path, **release) -> None:
    data = toml.loads(config.read_text())
    data["releases"]["test"].update(release)
    config.write_text(toml.dumps(data))


def test_the_trust_settings_rebuild_the_layer_that_writes_base_conf(mirror, tmp_path):
    setting = {"fingerprints": "src:share/keys/pkgbase-15"}     # the demo key is trusted there too
    config = config_for(tmp_path, mirror, "config")
    work = tmp_path / "work"
    doit(config, work, "build:test")
    before = base_conf(work)
    change(config, **setting)
    proc = doit(config, work, "build:test")
    done = set(ran(proc))
    assert "layer:test:amd64:static" in done
    assert "layer:test:amd64:dynamic" not in done                  # its plan does not read the trust
    after = base_conf(work)
    assert after != before
    assert 'fingerprints: "/usr/share/keys/pkgbase-15"' in after
    fresh = tmp_path / "fresh"
    doit(config, fresh, "build:test")
    assert outputs(work) == outputs(fresh)


def test_the_source_rebuilds_the_images_that_name_it(mirror, tmp_path):
    config = config_for(tmp_path, mirror, "config")
    work = tmp_path / "work"
    doit(config, work, "build:test")
    change(config, source="https://git.example.org/freebsd-src.git")
    proc = doit(config, work, "build:test")
    done = set(ran(proc))
    assert {"image:test:amd64:static", "image:test:amd64:dynamic", "sbom:test:amd64:static"} <= done
    assert not [t for t in done if t.startswith(("layer:", "lock:", "download:"))]
    image = json.loads((work / "build/test/amd64/dynamic/image.json").read_text())
    manifest = json.loads((work / "blobs/sha256" / image["manifest"]["digest"][7:]).read_text())
    assert manifest["annotations"]["org.opencontainers.image.source"] == "https://git.example.org/freebsd-src.git"
    fresh = tmp_path / "fresh"
    doit(config, fresh, "build:test")
    assert outputs(work) == outputs(fresh)


def test_a_key_moved_to_revoked_in_src_refuses_an_unchanged_catalogue(mirror, tmp_path):
    config = config_for(tmp_path, mirror, "config")
    work = tmp_path / "work"
    doit(config, work, "build:test")
    src = mirror / "src.git"
    key = f"share/keys/pkg/trusted/{KEY_NAME}"
    repo = pygit2.Repository(str(src))
    branch = repo.references["refs/heads/releng/14.2"].peel(pygit2.Commit)
    data = branch.tree[key].data
    advance_branch(src, "releng/14.2", {key: None, f"share/keys/pkg/revoked/{KEY_NAME}": data},
                   time=branch.commit_time + 60, message="Revoke the demo signing key")
    proc = doit(config, work, "build:test", check=False)
    assert proc.returncode != 0
    [line] = error_lines(proc)
    assert line.startswith("fetch:test:amd64: ") and "revoked" in line
    assert "data.pkg" in line                                       # the catalogue that did not change

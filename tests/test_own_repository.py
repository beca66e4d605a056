"""docs/own-repository.md, run as written: its commands and configurations, in both signing modes.

The guide's fenced blocks marked `<!-- test: common -->`, `<!-- test: pubkey -->`
or `<!-- test: fingerprints -->` are taken from the document and run in order
(shell blocks with bash, configuration blocks written to ~/oci/config.toml,
with /home/you replaced by the test's home).  What the guide says the reader
starts with is made here: ~/packages made by the real `pkg create` from the
demo's content, and ~/src, a git repository whose branch `mine` is the demo's
14.x src.  `pkg` is the real pkg; `podman` a private store.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from release.demo import content
from release.demo.generate import src_files
from release.demo.srcrepo import make_src_repo
from tests.conftest import PROJECT, need_tool
from tests.realpkg_support import need_pkg, pkg_create

GUIDE = PROJECT / "docs" / "own-repository.md"
BLOCK = re.compile(r"<!-- test: (\w+) -->\n```(\w+)\n(.*?)\n```", re.S)


def guide_blocks() -> list[tuple[str, str, str]]:
    """(tag, language, text) of every tested block, in the document's order."""
    return BLOCK.findall(GUIDE.read_text())


def shim(bin_dir: Path, name: str, text: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o755)


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """The reader's ~/packages: every demo package (FreeBSD:14:amd64) made by the real `pkg create`."""
    base = tmp_path_factory.mktemp("own-packages")
    pkg = need_pkg("2.8.99.1", base / "pkg-home")
    build = content.Build(content.arch_info("amd64"), 14)
    out = base / "packages"
    for name in content.package_names(14):
        pkg_create(pkg, content.build_package(name, build), base / "create" / name, out)
    return out, pkg


@pytest.mark.parametrize("mode", ["pubkey", "fingerprints"])
def test_the_guide_builds_images_podman_loads_from_your_own_repository(packages, tmp_path, mode):
    need_tool("openssl", "openssl")
    podman = need_tool("podman", "podman")
    made, pkg = packages
    home = tmp_path / "home"
    (home / "packages").mkdir(parents=True)
    for p in made.glob("*.pkg"):
        os.link(p, home / "packages" / p.name)
    make_src_repo(home / "src", {"mine": src_files("releng/14.2")}, time=content.BUILD_TIME)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim(bin_dir, "pkg", f'exec "{pkg.binary}" "$@"\n')
    runroot = Path(tempfile.mkdtemp(prefix="podman-run-"))      # podman wants a short runroot path
    shim(bin_dir, "podman", f'exec "{podman}" --root "{tmp_path}/podman" --runroot "{runroot}" '
                            '--storage-driver vfs --cgroup-manager cgroupfs --events-backend none "$@"\n')
    env = {**os.environ, "HOME": str(home), "CHECKOUT": str(PROJECT), "LC_ALL": "C",
           "PATH": f"{bin_dir}:{os.environ['PATH']}", "TMPDIR": str(tmp_path)}
    blocks = [(tag, lang, text) for tag, lang, text in guide_blocks() if tag in ("common", mode)]
    assert [lang for _, lang, _ in blocks].count("toml") == 1
    outputs = []
    try:
        for tag, lang, text in blocks:
            if lang == "toml":
                config = text.replace("/home/you", str(home))
                assert len(config.strip().splitlines()) < 25
                (home / "oci" / "config.toml").write_text(config + "\n")
                continue
            proc = subprocess.run(["bash", "-e", "-c", text], cwd=home, env=env, capture_output=True, text=True,
                                  timeout=900)
            assert proc.returncode == 0, f"{tag} block failed:\n{text}\n{proc.stdout}\n{proc.stderr}"
            outputs.append(proc.stdout)
    finally:
        subprocess.run([str(bin_dir / "podman"), "rmi", "--all", "--force"], env=env, capture_output=True)
        subprocess.run(["rm", "-rf", str(runroot)])
    check, build = outputs[-2], outputs[-1]
    assert "mine: 14.2-RELEASE (release, sys/conf/newvers.sh), src mine of file://" in check
    assert "  minimal [release/tools/oci-image-minimal.conf] on dynamic: FreeBSD-runtime" in check
    assert "FreeBSD-14.2-RELEASE-amd64-container-image-minimal.txz" in build
    assert "Loaded image: localhost/freebsd14-minimal:14.2-RELEASE-amd64" in build
    base_conf = static_file(home / "oci/work", "usr/local/etc/pkg/repos/base.conf").decode()
    assert 'url: "https://pkg.example.org/${ABI}/mine"' in base_conf
    if mode == "pubkey":
        assert 'signature_type: "pubkey"' in base_conf and 'pubkey: "/usr/local/etc/pkg/keys/pkgbase.pub"' in base_conf
        installed = static_file(home / "oci/work", "usr/local/etc/pkg/keys/pkgbase.pub")
        assert installed == (home / "keys/repo.pub").read_bytes()
    else:
        assert 'fingerprints: "/usr/local/etc/pkg/keys/pkgbase"' in base_conf
        assert static_file(home / "oci/work", "usr/local/etc/pkg/keys/pkgbase/trusted/mine") == \
            (home / "keys/fingerprints/trusted/mine").read_bytes()


def static_file(work: Path, path: str) -> bytes:
    record = json.loads((work / "build/mine/amd64/static/layer.json").read_text())
    data = gzip.decompress((work / "blobs/sha256" / record["digest"][7:]).read_bytes())
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.extractfile(path).read()

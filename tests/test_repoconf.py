"""The base.conf FreeBSD's static image carries."""
from __future__ import annotations

import pytest

from release.builtins.repoconf import REPO_CONF, base_conf, base_repository
from release.errors import ConfigError

# What release/tools/oci-image-static.conf's heredoc produces for 14.2-RELEASE.
STATIC_14_2 = b"""\
FreeBSD-base: {
  url: "https://pkg.FreeBSD.org/${ABI}/base_release_2",
  mirror_type: "srv",
  signature_type: "fingerprints",
  fingerprints: "/usr/share/keys/pkg",
  enabled: yes
}
"""


def test_static_image_text():
    url = f"https://pkg.FreeBSD.org/${{ABI}}/{base_repository('RELEASE', 2)}"
    entry = base_conf(url, signature_type="fingerprints", fingerprints="/usr/share/keys/pkg")
    assert entry.path == REPO_CONF == "/usr/local/etc/pkg/repos/base.conf"
    assert (entry.kind, entry.mode, entry.uname, entry.gname) == ("file", 0o644, "root", "wheel")
    assert entry.data == STATIC_14_2


def test_fingerprints_directory_exists_in_the_tree(src_samples):
    # The conf points pkg at /usr/share/keys/<dir>/trusted, installed from src share/keys.
    for keys in ("pkg", "pkgbase-15"):
        assert any((src_samples / "share/keys" / keys / "trusted").iterdir())


@pytest.mark.parametrize("branch, minor, repo", [
    ("RELEASE", 2, "base_release_2"), ("RC1", 3, "base_release_3"), ("PRERELEASE", 4, "base_release_4"),
    ("CURRENT", 0, "base_latest"), ("STABLE", 1, "base_latest"), ("BETA2", 0, "base_latest"),
])
def test_repository_per_branch(branch, minor, repo):
    assert base_repository(branch, minor) == repo


def test_variants():
    entry = base_conf("pkg+https://pkg.FreeBSD.org/${ABI}/base_latest", signature_type="fingerprints",
                      fingerprints="/usr/share/keys/pkgbase-15", enabled=False)
    lines = entry.data.decode().splitlines()
    assert lines[1] == '  url: "pkg+https://pkg.FreeBSD.org/${ABI}/base_latest",'
    assert lines[4] == '  fingerprints: "/usr/share/keys/pkgbase-15",'
    assert lines[5] == "  enabled: no"
    local = base_conf("file:///repo/FreeBSD:14:amd64/latest", signature_type="none", fingerprints="none",
                      mirror_type="none", name="local")
    assert local.data.startswith(b'local: {\n  url: "file:///repo/FreeBSD:14:amd64/latest",\n  mirror_type: "none",')
    assert base_conf("u", signature_type="none", fingerprints="none") == \
        base_conf("u", signature_type="none", fingerprints="none")


def test_bad_values_are_reported_together():
    with pytest.raises(ConfigError) as exc:
        base_conf('https://x/"quoted"', signature_type="rsa", fingerprints="", mirror_type="dns")
    problems = exc.value.problems
    assert len(problems) == 4
    assert any("url" in p and "quoted" in p for p in problems)
    assert any("fingerprints ''" in p for p in problems)
    assert any("signature_type 'rsa'" in p for p in problems)
    assert any("mirror_type 'dns'" in p for p in problems)
    with pytest.raises(ConfigError, match="not a plain UCL key"):
        base_conf("u", signature_type="none", fingerprints="none", name="a b")
    with pytest.raises(ConfigError, match="control characters"):
        base_conf("u\nenabled: no", signature_type="none", fingerprints="none")

"""Hostile packages and repositories through `doit build`: refused in one line, exit status 2, nothing written.

Each test makes its hostile input itself (tests/hostile_support.py): a signed
repository whose packages were crafted the way an attacker with a leaked
mirror key would craft them.
"""
from __future__ import annotations

from pathlib import Path

from release.demo.pkgtar import Member
from tests.emulation_support import TIME
from tests.hostile_support import ARCH, RELEASE, Hostile, hostile_release
from tests.pipeline_support import doit, error_lines, partial_files


def refused(h: Hostile, task: str = f"build:{RELEASE}") -> str:
    """Run the build; it must fail with status 2 and one line, leaving no partial file."""
    proc = doit(h.config, h.work, task, check=False)
    lines = error_lines(proc)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert partial_files(h.work) == []
    assert not (h.out().exists() and any(h.out().glob("*.txz")))
    return lines[0]


def test_a_package_writing_through_its_own_symlink_is_refused(tmp_path: Path) -> None:
    h = hostile_release(tmp_path, {"FreeBSD-evil": [
        Member("/a/master.passwd", "file", 0o644, data=b"root::0:0::0:0::/:/bin/sh\n", mtime=TIME),
        Member("/a", "symlink", 0o755, target="/etc", mtime=TIME)]})
    assert refused(h) == (f"layer:{RELEASE}:{ARCH}:top: FreeBSD-evil: /a/master.passwd: parent /a is a symlink "
                          "(to /etc, from FreeBSD-evil); refusing to write through it")


def test_a_symlink_over_the_children_of_a_lower_layer_is_refused_naming_both(tmp_path: Path) -> None:
    base = [Member("/a/master.passwd", "file", 0o644, data=b"harmless\n", mtime=TIME)]
    h = hostile_release(tmp_path, {"FreeBSD-evil": [Member("/a", "symlink", 0o755, target="/etc", mtime=TIME)]},
                        base=base)
    assert refused(h) == (f"layer:{RELEASE}:{ARCH}:top: FreeBSD-base: /a/master.passwd (in a lower layer): "
                          "parent /a is a symlink (to /etc, from FreeBSD-evil); refusing to write through it")


def test_a_split_across_two_packages_is_refused(tmp_path: Path) -> None:
    h = hostile_release(tmp_path, {
        "FreeBSD-evil": [Member("/a", "symlink", 0o755, target="/etc", mtime=TIME)],
        "FreeBSD-victim": [Member("/a/group", "file", 0o644, data=b"wheel:*:0:evil\n", mtime=TIME)]})
    assert refused(h) == (f"layer:{RELEASE}:{ARCH}:top: FreeBSD-victim: /a/group: parent /a is a symlink "
                          "(to /etc, from FreeBSD-evil); refusing to write through it")


def test_a_path_with_children_later_claimed_as_a_file_is_refused(tmp_path: Path) -> None:
    h = hostile_release(tmp_path, {"FreeBSD-evil": [
        Member("/usr/share/evil/x", "file", 0o644, data=b"x", mtime=TIME),
        Member("/usr/share/evil", "file", 0o644, data=b"a file over a directory", mtime=TIME)]})
    assert refused(h) == (f"layer:{RELEASE}:{ARCH}:top: FreeBSD-evil: /usr/share/evil/x: parent /usr/share/evil "
                          "is a file (from FreeBSD-evil), not a directory")


def test_a_file_name_that_is_not_utf8_is_refused_by_name(tmp_path: Path) -> None:
    # pkg urlencodes such names in the manifest and installs them byte for byte (see pkgmanifest.urlencode)
    h = hostile_release(tmp_path, {"FreeBSD-evil": [
        Member("/usr/share/caf\udce9", "file", 0o644, data=b"latin-1 name", mtime=TIME)]})
    assert refused(h) == (f"layer:{RELEASE}:{ARCH}:top: FreeBSD-evil-14.2: /usr/share/caf\\xe9: "
                          "file name is not UTF-8")


def test_a_percent_encoded_climb_out_of_a_file_mirror_is_refused(tmp_path: Path) -> None:
    # the package sits outside the repository, where the catalogue's percent-encoded path leads
    climb = "All/%2e%2e/%2e%2e/%2e%2e/%2e%2e/secret.pkg"     # from pkgbase/FreeBSD:14:amd64/base_release_2/
    h = hostile_release(tmp_path, {"FreeBSD-evil": [Member("/usr/share/evil", "file", 0o644, data=b"x", mtime=TIME)]},
                        paths={"FreeBSD-evil": climb})
    (h.pkgbase / "FreeBSD-evil-14.2.pkg").rename(tmp_path / "secret.pkg")
    url = f"{(tmp_path / 'pkgbase').as_uri()}/FreeBSD:14:{ARCH}/base_release_2/data.pkg"
    assert refused(h) == (f"fetch:{RELEASE}:{ARCH}: {url}: data: package FreeBSD-evil: unsafe path '{climb}' "
                          "(must stay inside the repository)")
    assert not (h.work / "cache").exists() or not any(p.is_file() for p in (h.work / "cache").rglob("*"))


def test_an_oversized_meta_conf_is_refused_and_not_kept(tmp_path: Path) -> None:
    h = hostile_release(tmp_path, {})
    (h.pkgbase / "meta.conf").write_bytes(b"version = 2;\n" + b"#" * (2 << 20) + b"\n")
    url = f"{(tmp_path / 'pkgbase').as_uri()}/FreeBSD:14:{ARCH}/base_release_2/meta.conf"
    assert refused(h) == (f"fetch:{RELEASE}:{ARCH}: {url}: larger than 1048576 bytes, more than such a file may be "
                          "(it is read before its signature is checked)")
    assert not (h.work / "repos" / RELEASE / ARCH / "meta.conf").exists()


def test_a_malformed_meta_conf_is_not_kept_for_the_next_run(tmp_path: Path) -> None:
    h = hostile_release(tmp_path, {})
    (h.pkgbase / "meta.conf").write_bytes(b"version = 2;\npacking_format = \"rar\";\n")
    line = refused(h)
    assert line.startswith(f"fetch:{RELEASE}:{ARCH}: ") and "packing_format: unknown packing format 'rar'" in line
    repo = h.work / "repos" / RELEASE / ARCH
    assert not (repo / "meta.conf").exists() and not (repo / "meta.conf.http.json").exists()

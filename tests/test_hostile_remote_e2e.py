"""Hostile servers through `doit push` and `doit build`: credentials stay with their origin, loops end.

The registry is a real docker-registry with basic authentication; what makes
it hostile is a proxy in front of it that sends uploads to another origin (a
second proxy, which authorises uploads by itself, as a storage service with
pre-signed URLs would) or from https to plain http.  The mirror is the test
HTTP server answering with redirects that never end.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import toml

from release.demo.pkgtar import Member
from tests.emulation_support import TIME
from tests.hostile_support import ARCH, RELEASE, Hostile, hostile_release
from tests.httpserver import RepoServer
from tests.pipeline_support import doit, error_lines
from tests.registry_support import PASSWORD, USER, FaultProxy, basic_header, write_auth_file


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Hostile:
    h = hostile_release(tmp_path_factory.mktemp("remote"), {
        "FreeBSD-top": [Member("/usr/share/top/README", "file", 0o644, data=b"top\n", mtime=TIME)]})
    doit(h.config, h.work, f"build:{RELEASE}")
    return h


def push(h: Hostile, tmp: Path, registry_url: str, host: str):
    config = toml.loads(h.config.read_text())
    config["registries"] = {"hostile": {"url": registry_url, "tls_verify": False}}
    (tmp / "config.toml").write_text(toml.dumps(config))
    auth = write_auth_file(tmp / "auth.json", host, USER, PASSWORD)
    return doit(tmp / "config.toml", h.work, f"push:{RELEASE}", check=False, env={"REGISTRY_AUTH_FILE": str(auth)})


def test_push_sends_uploads_to_another_origin_without_the_credentials(built, basic_registry, tmp_path):
    with FaultProxy(basic_registry.url) as front, \
            FaultProxy(basic_registry.url, inject={"Authorization": basic_header(USER, PASSWORD)}) as storage:
        front.locations_to = storage.url
        proc = push(built, tmp_path, front.url, front.host)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert [r for r in storage.log() if r.method in ("PUT", "PATCH")]
        assert all("authorization" not in r.headers for r in storage.log())
        assert any(r.headers.get("authorization") == basic_header(USER, PASSWORD) for r in front.log())
    assert PASSWORD not in proc.stdout + proc.stderr


def test_push_refuses_an_upload_sent_from_https_to_http(built, basic_registry, tmp_path):
    with FaultProxy(basic_registry.url, tls=True, certificates=str(tmp_path)) as front, \
            FaultProxy(basic_registry.url) as plain:
        front.locations_to = plain.url
        proc = push(built, tmp_path, front.url, front.host)
        assert plain.log() == []
    assert proc.returncode == 2
    [warning, line] = error_lines(proc)
    assert warning == f"release.registry: {front.host}: TLS certificate verification is disabled"  # configured so
    assert re.fullmatch(rf"push:{RELEASE}: {front.host}: sent the upload to {plain.url}/v2/freebsd-base/blobs/"
                        r"uploads/[0-9a-f-]{36}: refusing to downgrade https to http", line), line


def test_a_mirror_that_redirects_in_a_loop_is_one_line(tmp_path: Path):
    h0 = hostile_release(tmp_path / "in", {})
    with RepoServer(tmp_path / "in" / "pkgbase") as mirror:
        base = f"/FreeBSD:14:{ARCH}/base_release_2"
        mirror.redirect(f"{base}/meta.conf", f"{base}/meta.conf.moved")
        mirror.redirect(f"{base}/meta.conf.moved", f"{base}/meta.conf")
        h = hostile_release(tmp_path / "in", {}, mirror=mirror.url + "/${ABI}/${REPO}")
        proc = doit(h.config, tmp_path / "work", f"build:{RELEASE}", check=False)
    assert h0.pkgbase == h.pkgbase and proc.returncode == 2
    url = f"{mirror.url}{base}/meta.conf"
    assert error_lines(proc) == [f"fetch:{RELEASE}:{ARCH}: {url}: redirect loop ({url} -> {url}.moved -> {url})"]


def test_a_registry_s_huge_error_body_is_cut_in_the_message(built, basic_registry, tmp_path):
    with FaultProxy(basic_registry.url) as front:
        front.fail("PUT", r"/manifests/", status=400, times=100, message="lies " * 200_000)   # a megabyte
        proc = push(built, tmp_path, front.url, front.host)
    assert proc.returncode == 1
    assert len(error_lines(proc)) == 1, proc.stderr[-3000:]
    [line] = error_lines(proc)
    assert line.startswith(f"push:{RELEASE}: {front.host}/freebsd-base: PUT manifest sha256:")
    assert ": HTTP 400 Bad Request: UNKNOWN: lies lies " in line and line.endswith("…") and len(line) < 400

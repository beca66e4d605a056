"""fetch / lock / download through doit, against the demo repositories served on 127.0.0.1.

Every bad input named by the backbone issue is one test: each must fail with one
line naming the culprit, and leave no partial file in the cache or the outputs.
"""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import zstandard
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from release.demo.generate import fingerprint as demo_fingerprint
from release.demo.repowriter import fingerprint_file, public_key_pem, write_repository
from tests.pipeline_support import doit, error_lines, partial_files, ran, repo_path, served_config, write_config

PREPARE = ["download:test:amd64", "download:test:aarch64"]


def package_requests(server) -> list:
    return [r for r in server.requests
            if r.path.endswith(".pkg") and r.path.rsplit("/", 1)[1] not in ("data.pkg", "packagesite.pkg")]


def test_first_run_locks_and_caches_then_an_unchanged_run_costs_one_request(served_demo, tmp_path):
    server, root = served_demo
    config = served_config(tmp_path, server, root)
    work = tmp_path / "work"
    first = doit(config, work, *PREPARE)
    assert {"fetch:test:amd64", "lock:test:amd64", "download:test:amd64"} <= set(ran(first))
    lock = json.loads((work / "locks/test/amd64.json").read_text())
    assert lock["repository"]["url"] == server.url + repo_path("amd64")
    assert lock["repository"]["fingerprint"] == demo_fingerprint()
    assert lock["src"]["branch"] == "releng/14.2" and len(lock["src"]["commit"]) == 40
    minimal = {p["name"]: p for p in lock["flavours"]["minimal"]["packages"]}
    assert minimal["FreeBSD-libcasper"]["reason"] == "libcasper.so.1 for FreeBSD-runtime"
    assert minimal["FreeBSD-runtime"]["sum"].startswith("2$")          # amd64: pkg >= 2.8 sums
    aarch64 = json.loads((work / "locks/test/aarch64.json").read_text())
    assert len(aarch64["flavours"]["minimal"]["packages"][0]["sum"]) == 64  # aarch64: sha256 hex
    assert aarch64["repository"]["archive"] == "packagesite.pkg"        # no data catalogue there
    cached = sorted((work / "cache/packages").rglob("*.pkg"))
    locked = {p["sum"] for lk in (lock, aarch64) for f in lk["flavours"].values() for p in f["packages"]}
    assert len(cached) == len(locked)
    assert len(package_requests(server)) == len(locked)

    stamp = {p: p.stat().st_mtime_ns for p in [*work.rglob("*.json"), *cached]}
    server.requests.clear()
    second = doit(config, work, *PREPARE)
    assert set(ran(second)) == {"fetch:src-test", "fetch:test:amd64", "fetch:test:aarch64"}
    assert sorted((r.path.rsplit("/", 1)[1], r.status, r.bytes_sent) for r in server.requests) == \
        [("data.pkg", 304, 0), ("packagesite.pkg", 304, 0)]
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp           # nothing rewritten


def test_a_package_shared_by_two_releases_is_stored_once(served_demo, tmp_path):
    server, root = served_demo
    mirror = server.url + "/pkgbase/${ABI}/${REPO}"
    src = (root / "src.git").as_uri()
    common = {"branch": "releng/14.2", "repo": "base_release_2", "abi_major": 14, "arches": ["amd64"],
              "flavours": ["static", "dynamic"], "mirror": mirror, "src_url": src, "source": "demo"}
    config = write_config(tmp_path / "config.toml", mirror=mirror, src_url=src,
                          releases={"one": dict(common, version="14.2-RELEASE"),
                                    "two": dict(common, version="14.2-RELEASE-p1")})
    work = tmp_path / "work"
    doit(config, work, "download:one:amd64", "download:two:amd64")
    assert len(list((work / "cache/packages").rglob("*.pkg"))) == 3     # zoneinfo, clibs, openssl-lib
    assert len(package_requests(server)) == 3


def test_tampered_package_is_refused_and_never_cached(served_demo, tmp_path):
    server, root = served_demo
    victim = next((root / repo_path("amd64").lstrip("/")).glob("FreeBSD-clibs-*.pkg"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    work = tmp_path / "work"
    proc = doit(served_config(tmp_path, server, root), work, "download:test:amd64", check=False)
    assert proc.returncode != 0
    [line] = error_lines(proc)
    assert line.startswith("download:test:amd64: FreeBSD-clibs-14.2: sum mismatch: catalogue says 2$")
    assert ", downloaded 2$" in line and victim.name in line
    assert not [p for p in (work / "cache/packages").rglob("*.pkg") if "clibs" in p.name]
    assert partial_files(work) == []


def test_truncated_download_fails_without_leaving_a_partial(served_demo, tmp_path):
    server, root = served_demo
    victim = next((root / repo_path("amd64").lstrip("/")).glob("FreeBSD-runtime-*.pkg"))
    server.truncate(f"{repo_path('amd64')}/{victim.name}", after_bytes=100)
    work = tmp_path / "work"
    proc = doit(served_config(tmp_path, server, root), work, "download:test:amd64", check=False)
    assert proc.returncode != 0
    [line] = error_lines(proc)
    assert line.startswith("download:test:amd64: FreeBSD-runtime-14.2: download incomplete, 100 of ")
    assert partial_files(work) == []
    assert not [p for p in (work / "cache/packages").rglob("*.pkg") if p.stat().st_size == 100]


def test_server_error_then_success_is_retried(served_demo, tmp_path):
    server, root = served_demo
    server.fail(f"{repo_path('amd64')}/data.pkg", status=500, times=1)
    doit(served_config(tmp_path, server, root), tmp_path / "work", "lock:test:amd64")
    statuses = [r.status for r in server.requests if r.path == f"{repo_path('amd64')}/data.pkg"]
    assert statuses == [500, 200]


def test_connection_reset_mid_body_resumes_with_a_range_request(served_demo, tmp_path):
    server, root = served_demo
    victim = next((root / repo_path("amd64").lstrip("/")).glob("FreeBSD-runtime-*.pkg"))
    path = f"{repo_path('amd64')}/{victim.name}"
    server.reset_mid_body(path, after_bytes=victim.stat().st_size // 2, times=1)
    work = tmp_path / "work"
    doit(served_config(tmp_path, server, root), work, "download:test:amd64")
    ranges = [r.headers["Range"] for r in server.requests if r.path == path]
    assert ranges[0] is None and ranges[1].startswith("bytes=") and ranges[1] != "bytes=0-"
    assert any(p.stat().st_size == victim.stat().st_size for p in (work / "cache/packages").rglob("*.pkg"))


def _resign(repo: Path, key_pem: bytes) -> None:
    """Re-sign a served repository's catalogues with another key (same entries)."""
    raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO((repo / "packagesite.pkg").read_bytes()))
    with tarfile.open(fileobj=raw, mode="r|") as tar:
        for member in tar:
            if member.name == "packagesite.yaml":
                rows = [json.loads(line) for line in tar.extractfile(member).read().splitlines() if line]
    formats = [k for k in ("data", "packagesite") if (repo / f"{k}.pkg").exists()]
    write_repository(repo, rows, signing_key=key_pem, signature_type="fingerprints", formats=formats)


def _new_key() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def test_catalogue_signed_by_an_untrusted_key_is_refused(served_demo, tmp_path):
    server, root = served_demo
    _resign(root / repo_path("amd64").lstrip("/"), _new_key())
    work = tmp_path / "work"
    proc = doit(served_config(tmp_path, server, root), work, "lock:test:amd64", check=False)
    [line] = error_lines(proc)
    assert line.startswith(f"fetch:test:amd64: {server.url}{repo_path('amd64')}/data.pkg: ")
    assert "untrusted key" in line
    assert not (work / "repos/test/amd64/catalogue.json").exists()
    assert not (work / "repos/test/amd64/data.pkg").exists()            # not kept for a later 304
    assert not (work / "locks/test/amd64.json").exists()


def test_catalogue_signed_by_a_revoked_key_is_refused(served_demo, tmp_path):
    server, root = served_demo
    trust = tmp_path / "trust"
    for sub in ("trusted", "revoked"):
        (trust / sub).mkdir(parents=True)
        pub = public_key_pem((Path(__file__).parent.parent / "release/demo/data/keys/demo-signing.key").read_bytes())
        (trust / sub / "demo").write_bytes(fingerprint_file(pub))
    config = served_config(tmp_path, server, root, fingerprints=str(trust))
    proc = doit(config, tmp_path / "work", "lock:test:amd64", check=False)
    [line] = error_lines(proc)
    assert "revoked" in line and demo_fingerprint() in line and "data.pkg" in line


def test_missing_signature_in_fingerprints_mode_is_refused(served_demo, tmp_path):
    server, root = served_demo
    repo = root / repo_path("amd64").lstrip("/")
    raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO((repo / "data.pkg").read_bytes()))
    out = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="r|") as tar, tarfile.open(fileobj=out, mode="w") as new:
        for member in tar:
            if not member.name.endswith((".sig", ".pub")):
                new.addfile(member, tar.extractfile(member))
    (repo / "data.pkg").write_bytes(zstandard.ZstdCompressor().compress(out.getvalue()))
    proc = doit(served_config(tmp_path, server, root), tmp_path / "work", "lock:test:amd64", check=False)
    [line] = error_lines(proc)
    assert "data.pkg" in line and "signature" in line


def test_package_missing_from_the_catalogue_names_flavour_package_and_repository(served_demo, tmp_path):
    server, root = served_demo
    config = served_config(tmp_path, server, root,
                           flavours={"minimal": {"packages": ["FreeBSD-runtime", "FreeBSD-nonexistent"]}})
    proc = doit(config, tmp_path / "work", "lock:test:amd64", check=False)
    [line] = error_lines(proc)
    assert line == (f"lock:test:amd64: flavour minimal: package FreeBSD-nonexistent is not in repository "
                    f"{server.url}{repo_path('amd64')}")


def test_malformed_meta_conf_names_the_file_and_line(served_demo, tmp_path):
    server, root = served_demo
    (root / repo_path("amd64").lstrip("/") / "meta.conf").write_text('version = 2;\npacking_format = "tzst\n')
    proc = doit(served_config(tmp_path, server, root), tmp_path / "work", "lock:test:amd64", check=False)
    [line] = error_lines(proc)
    assert line.startswith(f"fetch:test:amd64: {server.url}{repo_path('amd64')}/meta.conf: line 2")


def test_malformed_config_reports_every_problem_and_runs_nothing(served_demo, tmp_path):
    server, root = served_demo
    config = served_config(tmp_path, server, root, arches=["amd64", "sparc64"],
                           flavours={"minimal": {"parent": "dinamic", "colour": "blue"}})
    work = tmp_path / "work"
    proc = doit(config, work, "lock:test:amd64", check=False)
    assert proc.returncode == 2
    assert error_lines(proc) == [
        'config.toml: flavours.minimal.colour: unknown key (known: cmd, description, env, ignore_scripts, '
        'packages, parent, scripts, steps)',
        'config.toml: flavours.minimal.parent: unknown flavour "dinamic"',
        'config.toml: releases.test.arches: unknown architecture "sparc64" '
        '(known: aarch64, amd64, armv7, i386, powerpc64, powerpc64le, riscv64)',
    ]
    assert not work.exists() and server.requests == []


def test_a_pinned_lock_is_used_as_is_and_must_match_the_config(served_demo, tmp_path):
    server, root = served_demo
    work = tmp_path / "work"
    config = served_config(tmp_path, server, root)
    doit(config, work, "lock:test:amd64")
    pinned = tmp_path / "pinned"
    pinned.mkdir()
    (pinned / "amd64.json").write_bytes((work / "locks/test/amd64.json").read_bytes())
    work2 = tmp_path / "work2"
    config2 = served_config(tmp_path, server, root, lock=str(pinned))
    proc = doit(config2, work2, "download:test:amd64")
    assert "fetch:test:amd64" not in ran(proc)
    assert (work2 / "locks/test/amd64.json").read_bytes() == (pinned / "amd64.json").read_bytes()
    config3 = served_config(tmp_path, server, root, lock=str(pinned), flavours={"minimal": {"parent": "static"}})
    proc = doit(config3, tmp_path / "work3", "download:test:amd64", check=False)
    [line] = error_lines(proc)
    assert line.startswith(f"lock:test:amd64: {pinned / 'amd64.json'}: locks flavours")


def test_pubkey_signed_repository_verifies_against_the_configured_key(tmp_path):
    from release.demo.generate import generate_demo, pubkey_pem
    from tests.httpserver import RepoServer
    root = tmp_path / "served"
    generate_demo(root, arches=("amd64",), abi_major=14, repos={"base_release_2": "14.2"},
                  signature_type="pubkey")
    key = tmp_path / "demo.pub"
    key.write_bytes(pubkey_pem())
    other = tmp_path / "other.pub"
    other.write_bytes(public_key_pem(_new_key()))
    with RepoServer(root) as server:
        good = served_config(tmp_path, server, root, arches=["amd64"], signature_type="pubkey", pubkey=str(key))
        doit(good, tmp_path / "work", "lock:test:amd64")
        lock = json.loads((tmp_path / "work/locks/test/amd64.json").read_text())
        assert lock["repository"]["fingerprint"] is not None
        bad = served_config(tmp_path, server, root, arches=["amd64"], signature_type="pubkey", pubkey=str(other))
        proc = doit(bad, tmp_path / "work2", "lock:test:amd64", check=False)
        [line] = error_lines(proc)
        assert line.startswith(f"fetch:test:amd64: {server.url}{repo_path('amd64')}/data.pkg: ")
        assert "signature" in line

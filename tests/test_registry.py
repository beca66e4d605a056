"""Pushing the demo release to a real registry (distribution 2.8) and reading it back with skopeo and podman.

The release is built once per module by the project's own `doit build:demo`;
every check of what arrived is made by something other than our client:
the registry's own HTTP API, skopeo, podman.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
import requests

from release.errors import InputError, ReleaseError
from release.registry import PushReport, Registry, RegistryError, walk_tree
from tests.build_support import ARCHES, MEDIA_INDEX, MEDIA_MANIFEST, PrivatePodman, build_demo
from tests.registry_support import (DEMO_FLAVOURS, DEMO_TAGS, FaultProxy, RegistryServer, flavour_index, free_port,
                                    push_demo, skopeo)

KiB = 1024


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo(tmp_path_factory, "registry-demo").work


@pytest.fixture(scope="module")
def pushed(work: Path, tmp_path_factory: pytest.TempPathFactory):
    """One registry holding all three flavours, pushed once by our client; (server, reports)."""
    server = RegistryServer(tmp_path_factory.mktemp("pushed-registry"))
    with server, Registry(server.url) as registry:
        yield server, push_demo(registry, work)


def blob_bytes(work: Path, digest: str) -> bytes:
    return (work / "blobs/sha256" / digest.removeprefix("sha256:")).read_bytes()


def registry_get(server: RegistryServer, repo: str, reference: str, accept: str) -> requests.Response:
    resp = requests.get(f"{server.url}/v2/{repo}/manifests/{reference}", headers={"Accept": accept}, timeout=30)
    assert resp.status_code == 200, f"{repo}:{reference}: HTTP {resp.status_code} {resp.text}"
    return resp


# --------------------------------------------------------------------------- what arrives

@pytest.mark.parametrize("flavour", DEMO_FLAVOURS)
def test_every_tag_serves_the_built_index_byte_for_byte_with_its_media_type(pushed, work, flavour):
    server, reports = pushed
    desc = flavour_index(work, flavour)
    for tag in DEMO_TAGS:
        resp = registry_get(server, f"freebsd-{flavour}", tag, MEDIA_INDEX)
        assert resp.content == blob_bytes(work, desc["digest"])
        assert resp.headers["Content-Type"] == MEDIA_INDEX
        assert resp.headers["Docker-Content-Digest"] == desc["digest"]
    report = reports[flavour]
    assert (report.repository, report.digest, report.tags) == (f"freebsd-{flavour}", desc["digest"],
                                                               list(DEMO_TAGS))


@pytest.mark.parametrize("flavour", DEMO_FLAVOURS)
def test_each_manifest_and_blob_is_there_by_digest(pushed, work, flavour):
    server, _ = pushed
    documents, blobs = walk_tree(work / "blobs/sha256", flavour_index(work, flavour))
    assert len(documents) == 1 + len(ARCHES)
    for desc, data in documents[:-1]:
        resp = registry_get(server, f"freebsd-{flavour}", desc["digest"], MEDIA_MANIFEST)
        assert resp.content == data and resp.headers["Content-Type"] == MEDIA_MANIFEST
    for digest, size in blobs.items():
        resp = requests.get(f"{server.url}/v2/freebsd-{flavour}/blobs/{digest}", timeout=30)
        assert resp.status_code == 200 and len(resp.content) == size
        assert "sha256:" + hashlib.sha256(resp.content).hexdigest() == digest


def test_skopeo_inspects_the_index_and_every_per_arch_manifest(pushed, work):
    server, _ = pushed
    index = json.loads(skopeo("inspect", "--raw", "--tls-verify=false",
                              f"docker://{server.host}/freebsd-static:14.2"))
    assert index == json.loads(blob_bytes(work, flavour_index(work, "static")["digest"]))
    assert sorted(d["platform"]["architecture"] for d in index["manifests"]) == sorted(
        oci for _, oci, _ in ARCHES.values())
    for desc in index["manifests"]:
        raw = skopeo("inspect", "--raw", "--tls-verify=false",
                     f"docker://{server.host}/freebsd-static@{desc['digest']}")
        assert raw.encode() == blob_bytes(work, desc["digest"])


@pytest.mark.parametrize("flavour", DEMO_FLAVOURS)
def test_skopeo_copy_of_the_pushed_index_gives_the_local_build_digest_for_digest(pushed, work, tmp_path,
                                                                                flavour):
    server, _ = pushed
    copy = tmp_path / "copy"
    skopeo("copy", "--all", "--preserve-digests", "--src-tls-verify=false",
           f"docker://{server.host}/freebsd-{flavour}:14.2-DEMO", f"oci:{copy}:14.2-DEMO")
    desc = flavour_index(work, flavour)
    (theirs,) = json.loads((copy / "index.json").read_text())["manifests"]
    assert (theirs["digest"], theirs["size"]) == (desc["digest"], desc["size"])
    documents, blobs = walk_tree(work / "blobs/sha256", desc)
    ours = {d["digest"][7:] for d, _ in documents} | {digest[7:] for digest in blobs}
    copied = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (copy / "blobs/sha256").iterdir()}
    assert all(name == digest for name, digest in copied.items())
    assert set(copied) == ours


def test_podman_pulls_each_platform_of_the_pushed_index(pushed, work, tmp_path):
    server, _ = pushed
    podman = PrivatePodman(tmp_path / "podman")
    index = json.loads(blob_bytes(work, flavour_index(work, "minimal")["digest"]))
    try:
        for desc in index["manifests"]:
            platform = desc["platform"]
            variant = ["--variant", platform["variant"]] if platform.get("variant") else []
            ref = f"{server.host}/freebsd-minimal:14"
            podman("pull", "--tls-verify=false", "--os", platform["os"], "--arch", platform["architecture"],
                   *variant, ref)
            info = podman.inspect(ref)
            config = json.loads(blob_bytes(work, json.loads(blob_bytes(work, desc["digest"]))["config"]["digest"]))
            assert (info["Os"], info["Architecture"]) == ("freebsd", platform["architecture"])
            assert info["RootFS"]["Layers"] == config["rootfs"]["diff_ids"]
            assert f"{server.host}/freebsd-minimal@{desc['digest']}" in info["RepoDigests"]
    finally:
        podman.close()


# --------------------------------------------------------------------------- what it costs

def test_a_second_push_uploads_nothing_and_finds_every_blob_with_head(pushed, work):
    server, first = pushed
    before = server.log_text()
    with Registry(server.url) as registry:
        again = push_demo(registry, work)
    new_log = server.log_text()[len(before):]
    for flavour, report in again.items():
        blobs = walk_tree(work / "blobs/sha256", flavour_index(work, flavour))[1]
        assert report.bytes_uploaded == 0
        assert (report.blobs_present, report.blobs_uploaded, report.blobs_mounted) == (len(blobs), 0, 0)
        assert first[flavour].bytes_uploaded > 0
    assert "blobs/uploads" not in new_log
    assert registry.stats.bytes_uploaded == 0


def test_children_mount_their_parents_layers_instead_of_uploading_them(plain_registry, work):
    with Registry(plain_registry.url) as registry:
        reports = push_demo(registry, work)
    static_layers = {layer["digest"] for desc, data in walk_tree(work / "blobs/sha256",
                                                                  flavour_index(work, "static"))[0][:-1]
                     for layer in json.loads(data)["layers"]}
    assert reports["static"].blobs_mounted == 0
    assert reports["dynamic"].blobs_mounted == len(static_layers) > 0
    assert reports["minimal"].blobs_mounted > reports["dynamic"].blobs_mounted
    log_text = plain_registry.log_text()
    for digest in static_layers:
        assert f"/v2/freebsd-dynamic/blobs/uploads/?mount={digest}&from=freebsd-static" in log_text
    uploaded = sum(r.bytes_uploaded for r in reports.values())
    distinct = set()
    for flavour in DEMO_FLAVOURS:
        distinct |= set(walk_tree(work / "blobs/sha256", flavour_index(work, flavour))[1].items())
    assert uploaded == sum(size for _, size in distinct)     # every distinct blob crossed the wire once


def test_a_single_arch_manifest_tree_small_blobs_in_one_put_large_ones_in_chunks(plain_registry, work):
    index = json.loads(blob_bytes(work, flavour_index(work, "minimal")["digest"]))
    desc = next(d for d in index["manifests"] if d["platform"]["architecture"] == "amd64")
    _, blobs = walk_tree(work / "blobs/sha256", desc)
    limit = 64 * KiB
    assert min(blobs.values()) <= limit < max(blobs.values())
    with FaultProxy(plain_registry.url) as proxy:
        with Registry(proxy.url, chunk_size=limit, monolithic_limit=limit) as registry:
            report = registry.push_manifest_tree("freebsd-minimal", work / "blobs/sha256", desc, tags=["14-amd64"])
        records = proxy.log()
    assert report.blobs_uploaded == len(blobs) and report.bytes_uploaded == sum(blobs.values())
    resp = registry_get(plain_registry, "freebsd-minimal", "14-amd64", MEDIA_MANIFEST)
    assert resp.content == blob_bytes(work, desc["digest"])
    for digest, size in blobs.items():
        (put,) = [r for r in records if r.method == "PUT" and r.query.get("digest") == [digest]]
        session = [r for r in records if r.path == put.path and r.method == "PATCH"]
        assert put.status == 201 and put.headers["content-type"] == "application/octet-stream"
        if size <= limit:
            assert put.body_bytes == size and not session
        else:
            assert put.body_bytes == 0
            ranges = [r.headers["content-range"] for r in session]
            assert ranges == [f"{start}-{min(start + limit, size) - 1}" for start in range(0, size, limit)]
            assert all(r.headers["content-type"] == "application/octet-stream" for r in session)


# --------------------------------------------------------------------------- faults

def test_pushes_through_500s_and_resumes_a_chunked_upload_broken_mid_body(plain_registry, work, tmp_path):
    with FaultProxy(plain_registry.url) as proxy:
        proxy.fail("HEAD", r"/blobs/sha256:", nth=2)
        proxy.fail("PUT", r"/manifests/sha256:", nth=2)
        proxy.fail("PATCH", r"/blobs/uploads/", nth=2)
        proxy.drop("PATCH", r"/blobs/uploads/", nth=6, after_bytes=20 * KiB)
        with Registry(proxy.url, chunk_size=64 * KiB, monolithic_limit=64 * KiB, backoff=0.01,
                      max_workers=1) as registry:
            report = push_demo(registry, work, flavours=("static", "dynamic", "minimal"))["minimal"]
        records = proxy.log()
    assert sorted(r.fault for r in records if r.fault) == ["answered 500"] * 3 + ["dropped after 20480 body bytes"]
    dropped = next(i for i, r in enumerate(records) if r.fault.startswith("dropped"))
    session = records[dropped].path
    after = [r for r in records[dropped + 1:] if r.path == session]
    status, resumed = after[0], after[1]
    assert status.method == "GET" and status.status == 204
    held = int(status.response_headers["range"].split("-")[1]) + 1
    assert resumed.method == "PATCH" and resumed.headers["content-range"].startswith(f"{held}-")
    assert held == int(records[dropped].headers["content-range"].split("-")[0]) > 0
    assert registry.stats.uploads_resumed >= 2 and registry.stats.retries >= 4
    assert report.digest == flavour_index(work, "minimal")["digest"]
    copy = tmp_path / "copy"
    skopeo("copy", "--all", "--preserve-digests", "--src-tls-verify=false",
           f"docker://{plain_registry.host}/freebsd-minimal:14", f"oci:{copy}:14")
    copied = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (copy / "blobs/sha256").iterdir()}
    assert copied and all(name == digest for name, digest in copied.items())
    documents, blobs = walk_tree(work / "blobs/sha256", flavour_index(work, "minimal"))
    assert set(copied) == {d["digest"][7:] for d, _ in documents} | {d[7:] for d in blobs}


def test_an_upload_session_the_registry_lost_is_restarted_from_zero(plain_registry, work):
    documents, blobs = walk_tree(work / "blobs/sha256", flavour_index(work, "static"))
    digest, size = max(blobs.items(), key=lambda item: item[1])
    with FaultProxy(plain_registry.url) as proxy:
        proxy.drop("PATCH", r"/blobs/uploads/", nth=2, after_bytes=1 * KiB)
        proxy.fail("GET", r"/blobs/uploads/", status=404)
        with Registry(proxy.url, chunk_size=16 * KiB, monolithic_limit=16 * KiB, backoff=0.01) as registry:
            assert registry.push_blob("freebsd-static", digest, size, work / "blobs/sha256" / digest[7:]) \
                == "uploaded"
        posts = [r for r in proxy.log("POST")]
        patches = [r for r in proxy.log("PATCH") if not r.fault]
    assert registry.stats.uploads_restarted == 1 and len(posts) == 2
    assert patches[-1].path != patches[0].path and patches[1].headers["content-range"].startswith("0-")
    resp = requests.get(f"{plain_registry.url}/v2/freebsd-static/blobs/{digest}", timeout=30)
    assert "sha256:" + hashlib.sha256(resp.content).hexdigest() == digest


def test_persistent_5xx_gives_up_with_one_line_naming_registry_repository_and_step(plain_registry, work):
    desc = flavour_index(work, "static")
    with FaultProxy(plain_registry.url) as proxy:
        proxy.fail("HEAD", r"/blobs/", times=100)
        with Registry(proxy.url, retries=2, backoff=0.01) as registry:
            with pytest.raises(RegistryError) as head_err:
                registry.push_index_tree("freebsd-static", work / "blobs/sha256", desc, tags=["14"])
            proxy.clear()                                   # let the blobs through, fail the manifests
            proxy.fail("PUT", r"/manifests/", times=100)
            with pytest.raises(RegistryError) as put_err:
                registry.push_index_tree("freebsd-static", work / "blobs/sha256", desc, tags=["14"])
    head, put = str(head_err.value), str(put_err.value)
    assert "\n" not in head + put
    assert head.startswith(f"{proxy.host}/freebsd-static: HEAD blob sha256:")
    # the transport's one spelling of a status (the fetcher's too); a HEAD answer has no body
    assert head.endswith(": HTTP 500 Internal Server Error (gave up after 3 attempts)")
    assert put.startswith(f"{proxy.host}/freebsd-static: PUT manifest sha256:")
    assert put.endswith(": HTTP 500 Internal Server Error: UNKNOWN: fault injected by the test proxy "
                        "(gave up after 3 attempts)")


def test_a_registry_that_does_not_answer_is_a_one_line_error():
    port = free_port()                     # closed again: nothing listens there
    with Registry(f"http://127.0.0.1:{port}", retries=1, backoff=0.01) as registry, \
            pytest.raises(RegistryError) as err:
        registry.blob_exists("freebsd-static", "sha256:" + "0" * 64)
    assert str(err.value) == (f"127.0.0.1:{port}/freebsd-static: HEAD blob sha256:{'0' * 64}: "
                              "connection refused (gave up after 2 attempts)")


def test_registry_refusals_carry_the_status_and_the_registrys_error_code(plain_registry, work):
    index = blob_bytes(work, flavour_index(work, "static")["digest"])
    with Registry(plain_registry.url) as registry, pytest.raises(RegistryError) as err:
        registry.push_manifest("freebsd-static", index, MEDIA_INDEX, reference="14")
    message = str(err.value)
    assert message.startswith(f"{plain_registry.host}/freebsd-static: PUT index 14: HTTP 400 Bad Request: ")
    assert "MANIFEST_BLOB_UNKNOWN" in message or "MANIFEST_INVALID" in message, message


def test_a_digest_the_registry_reports_differently_is_an_error(plain_registry, work):
    desc = flavour_index(work, "static")
    documents, _ = walk_tree(work / "blobs/sha256", desc)
    manifest_desc, manifest = documents[0]
    with FaultProxy(plain_registry.url) as proxy, Registry(proxy.url) as registry:
        push_demo(registry, work, flavours=("static",), tags=())
        proxy.override("PUT", r"/manifests/", "Docker-Content-Digest", "sha256:" + "1" * 64)
        with pytest.raises(RegistryError, match=r"PUT manifest sha256:\w+: registry reports digest sha256:1{64}"):
            registry.push_manifest("freebsd-static", manifest, MEDIA_MANIFEST,
                                   reference=manifest_desc["digest"])


def test_manifest_bytes_must_match_the_digest_they_are_pushed_under(plain_registry):
    with Registry(plain_registry.url) as registry, pytest.raises(InputError, match="have digest sha256:"):
        registry.push_manifest("freebsd-static", b"{}", MEDIA_MANIFEST, reference="sha256:" + "2" * 64)
    with Registry(plain_registry.url) as registry, pytest.raises(InputError, match="not a valid tag"):
        registry.push_manifest("freebsd-static", b"{}", MEDIA_MANIFEST, reference="14.2 RELEASE")
    with pytest.raises(InputError, match="not a valid repository name"):
        Registry(plain_registry.url).blob_exists("FreeBSD-Static", "sha256:" + "0" * 64)
    assert isinstance(RegistryError("x"), ReleaseError)


# --------------------------------------------------------------------------- TLS

def test_tls_is_verified_unless_explicitly_disabled(tmp_path, work, caplog):
    desc = flavour_index(work, "static")
    with RegistryServer(tmp_path / "tls", tls=True) as server:
        assert server.url.startswith("https://")
        with Registry(server.url, retries=3) as registry, pytest.raises(RegistryError) as err:
            registry.push_index_tree("freebsd-static", work / "blobs/sha256", desc, tags=["14"])
        assert "TLS: certificate verify failed" in str(err.value)
        assert registry.stats.requests == 0 and registry.stats.retries == 0   # not retried
        caplog.set_level(logging.WARNING, logger="release.registry")
        with Registry(server.url, tls_verify=False) as registry:
            report = registry.push_index_tree("freebsd-static", work / "blobs/sha256", desc, tags=["14"])
        assert report.blobs_uploaded > 0
        assert "TLS certificate verification is disabled" in caplog.text


def test_credentials_are_never_sent_over_plain_http_to_a_remote_host():
    from release.regauth import Credentials
    with pytest.raises(InputError, match="plain http"):
        Registry("http://registry.example.org", credentials=Credentials("u", "p"))
    with pytest.raises(InputError, match="no path"):
        Registry("https://registry.example.org/v2/")
    with pytest.raises(InputError) as err:
        Registry("https://releng:s3cret@registry.example.org")
    assert "s3cret" not in str(err.value) and "auth file" in str(err.value)


def test_push_report_is_plain_data():
    report = PushReport(repository="r", tags=["a"])
    report.add(requests=2, bytes_uploaded=5)
    assert report.as_dict()["requests"] == 2 and report.as_dict()["tags"] == ["a"]
    assert json.dumps(report.as_dict())


"""release.fetcher (over release.http) against a real HTTP server on 127.0.0.1 and real file:// URLs."""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
import requests

from release.cache import PackageCache
from release.errors import FetchError, InputError, IntegrityError
from release.fetcher import DownloadJob, Fetcher, partial_path, sidecar_path
from release.progress import Progress
from release.sums import pkg2_sum, sha256_sum
from tests.httpserver import RepoServer, port_is_closed

PKG = "FreeBSD-runtime-14.2"


def payload(n: int, seed: bytes = b"runtime") -> bytes:
    """Deterministic, incompressible-looking bytes of length *n*."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:n])


@pytest.fixture
def fetcher() -> Fetcher:
    with Fetcher(retries=2, backoff=0, timeout=10, user_agent="freebsd-oci-release-tests") as f:
        yield f


def publish(srv: RepoServer, rel: str, data: bytes) -> str:
    return srv.publish(rel, data)


# --- the test server itself ---------------------------------------------------

def test_server_ranges_head_and_if_modified_since(repo_server: RepoServer) -> None:
    data = payload(5000)
    url = publish(repo_server, "All/x.pkg", data)
    with requests.Session() as s:
        r = s.get(url, headers={"Range": "bytes=4000-"})
        assert (r.status_code, r.content) == (206, data[4000:])
        assert r.headers["Content-Range"] == "bytes 4000-4999/5000"
        r = s.get(url, headers={"Range": "bytes=5000-"})
        assert r.status_code == 416 and r.headers["Content-Range"] == "bytes */5000"
        r = s.head(url)
        assert r.status_code == 200 and r.headers["Content-Length"] == "5000" and r.content == b""
        r = s.get(url, headers={"If-Modified-Since": r.headers["Last-Modified"]})
        assert r.status_code == 304 and r.content == b""
        assert s.get(f"{repo_server.url}/../etc/passwd").status_code == 404
    assert [r.status for r in repo_server.requests] == [206, 416, 200, 304, 404]
    assert repo_server.requests_for("All/x.pkg", "HEAD")[0].bytes_sent == 0


def test_server_stop_closes_port_and_idle_connections(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    session = requests.Session()
    with RepoServer(tmp_path) as srv:
        assert session.get(srv.url + "/f").content == b"x"  # leaves a keep-alive connection open
        port = srv.port
    assert port_is_closed(port)
    with pytest.raises(requests.ConnectionError):
        session.get(f"http://127.0.0.1:{port}/f", timeout=5)


# --- get ------------------------------------------------------------------------

def test_get_retries_a_500_once(repo_server: RepoServer, fetcher: Fetcher) -> None:
    url = publish(repo_server, "meta.conf", b'version = 2;\npacking_format = "tzst";\n')
    repo_server.fail("/meta.conf", status=500, times=1)
    assert fetcher.get(url).startswith(b"version = 2;")
    assert [r.status for r in repo_server.requests] == [500, 200]
    assert (fetcher.stats.requests, fetcher.stats.retries) == (2, 1)
    assert repo_server.requests[0].headers["User-Agent"] == "freebsd-oci-release-tests"


def test_get_gives_up_after_bounded_retries(repo_server: RepoServer, fetcher: Fetcher) -> None:
    url = publish(repo_server, "meta.conf", b"x")
    repo_server.fail("/meta.conf", status=503, times=10)
    with pytest.raises(FetchError, match=r"meta\.conf: HTTP 503 .*gave up after 3 attempts"):
        fetcher.get(url)
    assert len(repo_server.requests) == 3


def test_get_404_and_403_are_not_retried(repo_server: RepoServer, fetcher: Fetcher) -> None:
    with pytest.raises(FetchError, match=r"/nothing\.conf: not found \(HTTP 404\)"):
        fetcher.get(repo_server.url + "/nothing.conf")
    url = publish(repo_server, "meta.conf", b"x")
    repo_server.fail("/meta.conf", status=403)
    with pytest.raises(FetchError, match=r"meta\.conf: HTTP 403"):
        fetcher.get(url)
    assert fetcher.stats.retries == 0 and len(repo_server.requests) == 2


def test_get_connection_refused_names_url(fetcher: Fetcher, tmp_path: Path) -> None:
    with RepoServer(tmp_path) as srv:
        port = srv.port
    with pytest.raises(FetchError, match=rf"127\.0\.0\.1:{port}/meta\.conf: .*refused.*3 attempts"):
        fetcher.get(f"http://127.0.0.1:{port}/meta.conf")


def test_get_retries_timeouts(repo_server: RepoServer) -> None:
    url = publish(repo_server, "meta.conf", b"x")
    repo_server.delay("/meta.conf", 1.5)  # far longer than the client waits
    with Fetcher(retries=1, backoff=0, timeout=0.2, user_agent="t") as fetcher:
        with pytest.raises(FetchError, match=r"meta\.conf: timed out \(gave up after 2 attempts\)"):
            fetcher.get(url)
        assert fetcher.stats.retries == 1
    assert len(repo_server.requests) == 2


# --- conditional fetch ------------------------------------------------------------

def test_fetch_conditional_200_304_200(repo_server: RepoServer, fetcher: Fetcher, tmp_path: Path) -> None:
    url = publish(repo_server, "data.pkg", payload(3000))
    dest = tmp_path / "work" / "data.pkg"
    assert fetcher.fetch_conditional(url, dest) is True
    assert dest.read_bytes() == payload(3000)
    assert sidecar_path(dest).is_file()
    before = dest.stat().st_mtime_ns

    assert fetcher.fetch_conditional(url, dest) is False
    second = repo_server.requests[-1]
    assert second.status == 304 and second.headers["If-None-Match"] and second.headers["If-Modified-Since"]
    assert dest.stat().st_mtime_ns == before and dest.read_bytes() == payload(3000)
    assert fetcher.stats.not_modified == 1 and fetcher.stats.bytes == 3000

    publish(repo_server, "data.pkg", payload(3100, b"new catalogue"))
    assert fetcher.fetch_conditional(url, dest) is True
    assert dest.read_bytes() == payload(3100, b"new catalogue")
    assert [r.status for r in repo_server.requests] == [200, 304, 200]
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".partial-")]


def test_fetch_conditional_refetches_a_dest_changed_locally(repo_server: RepoServer, fetcher: Fetcher,
                                                            tmp_path: Path) -> None:
    url = publish(repo_server, "meta.conf", b"version = 2;\n")
    dest = tmp_path / "meta.conf"
    assert fetcher.fetch_conditional(url, dest)
    dest.write_bytes(b"edited by hand\n")
    assert fetcher.fetch_conditional(url, dest) is True
    assert dest.read_bytes() == b"version = 2;\n"
    assert repo_server.requests[-1].headers["If-None-Match"] is None


def test_fetch_conditional_keeps_dest_when_the_server_fails(repo_server: RepoServer, fetcher: Fetcher,
                                                            tmp_path: Path) -> None:
    url = publish(repo_server, "data.pkg", payload(100_000))
    dest = tmp_path / "data.pkg"
    dest.write_bytes(b"old catalogue")
    repo_server.reset_mid_body("/data.pkg", after_bytes=5000, times=3)
    with pytest.raises(FetchError, match=r"data\.pkg: .*gave up after 3 attempts"):
        fetcher.fetch_conditional(url, dest)
    assert dest.read_bytes() == b"old catalogue"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.pkg"]


# --- download -------------------------------------------------------------------

@pytest.mark.parametrize("spelling", ["sha256", "sha256-1$", "blake2b"])
def test_download_accepts_every_sum_spelling(repo_server: RepoServer, fetcher: Fetcher, tmp_path: Path,
                                             spelling: str) -> None:
    data = payload(10_000)
    expected = {"sha256": sha256_sum(data), "sha256-1$": "1$" + sha256_sum(data),
                "blake2b": pkg2_sum(data)}[spelling]
    url = publish(repo_server, f"All/{PKG}.pkg", data)
    dest = tmp_path / f"{PKG}.pkg"
    fetcher.download(url, dest, name=PKG, expected_sum=expected, expected_size=len(data))
    assert dest.read_bytes() == data
    assert oct(dest.stat().st_mode & 0o777) == oct(0o644)
    assert not partial_path(dest).exists()


def test_download_resumes_after_a_reset_mid_body(repo_server: RepoServer, fetcher: Fetcher,
                                                 tmp_path: Path) -> None:
    data = payload(300_000)
    url = publish(repo_server, f"{PKG}.pkg", data)
    repo_server.reset_mid_body(f"/{PKG}.pkg", after_bytes=100_000)
    dest = tmp_path / f"{PKG}.pkg"
    fetcher.download(url, dest, name=PKG, expected_sum=pkg2_sum(data), expected_size=len(data))
    assert dest.read_bytes() == data
    first, second = repo_server.requests
    assert first.status == 200 and first.headers["Range"] is None
    assert second.status == 206 and second.headers["Range"] == f"bytes={first.bytes_sent}-"
    assert first.bytes_sent == 100_000 and second.bytes_sent == 200_000
    assert fetcher.stats.retries == 1 and fetcher.stats.bytes == len(data)


def test_download_truncated_body_leaves_nothing_behind(repo_server: RepoServer, fetcher: Fetcher,
                                                       tmp_path: Path) -> None:
    data = payload(4096)
    url = publish(repo_server, f"{PKG}.pkg", data)
    repo_server.truncate(f"/{PKG}.pkg", after_bytes=1000)
    dest = tmp_path / f"{PKG}.pkg"
    with pytest.raises(FetchError, match=rf"{PKG}: download incomplete, 1000 of 4096 bytes arrived in 3 attempts"):
        fetcher.download(url, dest, name=PKG, expected_sum=sha256_sum(data), expected_size=len(data))
    assert not dest.exists() and not partial_path(dest).exists()
    assert list(tmp_path.iterdir()) == []
    assert [r.headers["Range"] for r in repo_server.requests] == [None, "bytes=1000-", "bytes=1000-"]


def test_download_resumes_the_partial_of_a_killed_run(repo_server: RepoServer, fetcher: Fetcher,
                                                      tmp_path: Path) -> None:
    data = payload(4096)
    url = publish(repo_server, f"{PKG}.pkg", data)
    dest = tmp_path / f"{PKG}.pkg"
    partial_path(dest).write_bytes(data[:1000])      # what a SIGKILLed run leaves
    fetcher.download(url, dest, name=PKG, expected_sum=sha256_sum(data), expected_size=len(data))
    assert dest.read_bytes() == data and not partial_path(dest).exists()
    assert [r.headers["Range"] for r in repo_server.requests] == ["bytes=1000-"]


def test_download_short_body_without_a_size_fails_verification(repo_server: RepoServer, fetcher: Fetcher,
                                                               tmp_path: Path) -> None:
    data = payload(4096)
    url = publish(repo_server, f"{PKG}.pkg", data)
    repo_server.truncate(f"/{PKG}.pkg", after_bytes=1000)
    dest = tmp_path / f"{PKG}.pkg"
    with pytest.raises(FetchError, match=rf"{PKG}: download incomplete, 1000 bytes arrived"):
        fetcher.download(url, dest, name=PKG, expected_sum=sha256_sum(data), expected_size=None)
    assert not dest.exists()


def test_download_discards_a_partial_that_is_not_a_prefix(repo_server: RepoServer, fetcher: Fetcher,
                                                          tmp_path: Path) -> None:
    data = payload(8000)
    url = publish(repo_server, f"{PKG}.pkg", data)
    dest = tmp_path / f"{PKG}.pkg"
    partial_path(dest).write_bytes(b"left by an older mirror state" * 10)
    fetcher.download(url, dest, name=PKG, expected_sum=sha256_sum(data), expected_size=len(data))
    assert dest.read_bytes() == data
    assert [r.headers["Range"] for r in repo_server.requests] == ["bytes=290-", None]

    dest.unlink()
    partial_path(dest).write_bytes(payload(9000))  # longer than the package can be
    fetcher.download(url, dest, name=PKG, expected_sum=sha256_sum(data), expected_size=len(data))
    assert dest.read_bytes() == data and repo_server.requests[-1].headers["Range"] is None


def test_download_complete_partial_needs_no_body(repo_server: RepoServer, fetcher: Fetcher,
                                                 tmp_path: Path) -> None:
    data = payload(8000)
    url = publish(repo_server, f"{PKG}.pkg", data)
    dest = tmp_path / f"{PKG}.pkg"
    partial_path(dest).write_bytes(data)
    fetcher.download(url, dest, name=PKG, expected_sum=sha256_sum(data), expected_size=None)
    assert dest.read_bytes() == data
    assert [(r.headers["Range"], r.status) for r in repo_server.requests] == [("bytes=8000-", 416)]


@pytest.mark.parametrize("sum_of", [sha256_sum, pkg2_sum])
def test_download_tampered_package(repo_server: RepoServer, fetcher: Fetcher, tmp_path: Path,
                                   sum_of) -> None:
    good = payload(6000)
    bad = bytearray(good)
    bad[3000] ^= 1
    url = publish(repo_server, f"{PKG}.pkg", bytes(bad))
    dest = tmp_path / f"{PKG}.pkg"
    with pytest.raises(IntegrityError) as err:
        fetcher.download(url, dest, name=PKG, expected_sum=sum_of(good), expected_size=len(good))
    assert str(err.value) == (f"{PKG}: sum mismatch: catalogue says {sum_of(good)}, "
                              f"downloaded {sum_of(bytes(bad))} ({url})")
    assert list(tmp_path.iterdir()) == []


def test_download_stops_a_server_sending_too_much(repo_server: RepoServer, fetcher: Fetcher,
                                                  tmp_path: Path) -> None:
    data = payload(300_000)
    url = publish(repo_server, f"{PKG}.pkg", data)
    dest = tmp_path / f"{PKG}.pkg"
    with pytest.raises(IntegrityError, match=rf"{PKG}: the server sent more than the catalogue's 1000 bytes"):
        fetcher.download(url, dest, name=PKG, expected_sum=sha256_sum(data[:1000]), expected_size=1000)
    assert list(tmp_path.iterdir()) == []


def test_download_rejects_an_unknown_sum_before_any_request(repo_server: RepoServer, fetcher: Fetcher,
                                                            tmp_path: Path) -> None:
    url = publish(repo_server, f"{PKG}.pkg", b"x")
    with pytest.raises(IntegrityError, match="unrecognised package sum"):
        fetcher.download(url, tmp_path / "x.pkg", name=PKG, expected_sum="md5:abc", expected_size=1)
    assert repo_server.requests == []


def test_download_404_names_the_package(repo_server: RepoServer, fetcher: Fetcher, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=rf"^{PKG}: not found \(HTTP 404\) \(http://127"):
        fetcher.download(repo_server.url + "/gone.pkg", tmp_path / "gone.pkg", name=PKG,
                         expected_sum=sha256_sum(b""), expected_size=0)


# --- file:// --------------------------------------------------------------------

def test_file_urls(fetcher: Fetcher, tmp_path: Path) -> None:
    repo = tmp_path / "repo dir"
    repo.mkdir()
    data = payload(20_000)
    (repo / "meta.conf").write_bytes(b"version = 2;\n")
    (repo / f"{PKG}.pkg").write_bytes(data)
    base = repo.as_uri()
    assert fetcher.get(base + "/meta.conf") == b"version = 2;\n"
    with pytest.raises(FetchError, match=r"missing\.conf: not found"):
        fetcher.get(base + "/missing.conf")

    dest = tmp_path / "out" / "meta.conf"
    assert fetcher.fetch_conditional(base + "/meta.conf", dest) is True
    mtime = dest.stat().st_mtime_ns
    assert fetcher.fetch_conditional(base + "/meta.conf", dest) is False
    assert dest.stat().st_mtime_ns == mtime and fetcher.stats.not_modified == 1
    (repo / "meta.conf").write_bytes(b"version = 2;\npacking_format = \"tzst\";\n")
    assert fetcher.fetch_conditional(base + "/meta.conf", dest) is True
    assert dest.read_bytes() == (repo / "meta.conf").read_bytes()

    pkg = tmp_path / "out" / f"{PKG}.pkg"
    partial_path(pkg).write_bytes(data[:7000])  # resumed like a Range request
    fetcher.download(f"{base}/{PKG}.pkg", pkg, name=PKG, expected_sum=pkg2_sum(data), expected_size=len(data))
    assert pkg.read_bytes() == data

    with pytest.raises(IntegrityError, match=rf"{PKG}: sum mismatch"):
        fetcher.download(f"{base}/{PKG}.pkg", tmp_path / "out" / "other.pkg", name=PKG,
                         expected_sum=sha256_sum(b"something else"), expected_size=len(data))
    # what is opened is checked, after percent-decoding
    with pytest.raises(InputError, match=r"the file path it opens, .*/repo dir/\.\./out/meta\.conf, climbs out"):
        fetcher.get(f"{base}/%2e%2E/out/meta.conf")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        f"{PKG}.pkg", "meta.conf", "meta.conf.http.json"]


# --- each: the one bounded pool ------------------------------------------------------

def test_each_bounds_concurrency_and_the_cache_fetches_duplicates_once(repo_server: RepoServer,
                                                                      tmp_path: Path) -> None:
    files = {f"FreeBSD-pkg{i}-14.2.pkg": payload(50_000 + i, bytes([i])) for i in range(6)}
    wanted = []
    for name, data in files.items():
        url = publish(repo_server, name, data)
        repo_server.delay(f"/{name}", 0.3)
        wanted.append((url, name.removesuffix(".pkg"), sha256_sum(data), len(data)))
    cache = PackageCache(tmp_path / "cache")
    progress = Progress("test", sum(len(d) for d in files.values()), stream=io.StringIO(), enabled=False)
    with Fetcher(max_workers=3, backoff=0, progress=progress, user_agent="t") as fetcher:
        fetcher.each(lambda w: cache.ensure(fetcher, w[0], name=w[1], sum=w[2], size=w[3]),
                     wanted + wanted[:2])  # duplicates are fetched once
    for _url, name, sum_, _ in wanted:
        assert cache.path_for(sum_).read_bytes() == files[f"{name}.pkg"]
    assert len(repo_server.requests) == 6
    assert 2 <= repo_server.peak_concurrency <= 3
    assert progress.done == progress.total


def test_each_reraises_the_first_error(repo_server: RepoServer, tmp_path: Path) -> None:
    good = {f"FreeBSD-ok{i}-14.2.pkg": payload(40_000, bytes([i])) for i in range(4)}
    jobs = [DownloadJob(publish(repo_server, n, d), tmp_path / n, n, sha256_sum(d), len(d)) for n, d in good.items()]
    bad = publish(repo_server, "FreeBSD-bad-14.2.pkg", payload(40_000, b"tampered"))
    jobs.insert(1, DownloadJob(bad, tmp_path / "FreeBSD-bad-14.2.pkg", "FreeBSD-bad-14.2",
                               sha256_sum(b"what the catalogue says"), 40_000))
    with (Fetcher(max_workers=2, backoff=0, user_agent="t") as fetcher,
          pytest.raises(IntegrityError, match="FreeBSD-bad-14.2: sum mismatch")):
        fetcher.each(lambda j: fetcher.download(j.url, j.dest, name=j.name, expected_sum=j.expected_sum,
                                                expected_size=j.expected_size), jobs)
    for p in tmp_path.iterdir():  # whatever landed is complete and verified; nothing half-written
        assert not p.name.startswith(".partial-") and p.read_bytes() == good[p.name]


def test_sidecar_survives_restart(repo_server: RepoServer, tmp_path: Path) -> None:
    url = publish(repo_server, "packagesite.pkg", payload(500))
    dest = tmp_path / "packagesite.pkg"
    with Fetcher(user_agent="t") as first:
        assert first.fetch_conditional(url, dest)
    with Fetcher(user_agent="t") as second:  # a new run: validators come from the sidecar
        assert second.fetch_conditional(url, dest) is False
        assert (second.stats.requests, second.stats.bytes, second.stats.not_modified) == (1, 0, 1)
    assert os.path.getsize(dest) == 500

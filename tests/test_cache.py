"""release.cache: content-addressed packages, fetched once, against a real server."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from release.cache import PackageCache
from release.errors import IntegrityError
from release.fetcher import Fetcher
from release.sums import pkg2_sum, sha256_sum
from tests.httpserver import RepoServer
from tests.test_http import payload

PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fetcher() -> Fetcher:
    with Fetcher(retries=1, backoff=0, timeout=10, user_agent="freebsd-oci-release-tests") as f:
        yield f


def publish(srv: RepoServer, rel: str, data: bytes) -> str:
    return srv.publish(rel, data)


def test_path_for_every_spelling(tmp_path: Path) -> None:
    cache = PackageCache(tmp_path)
    hexsum = sha256_sum(b"pkg")
    assert cache.path_for(hexsum) == tmp_path / "sha256" / f"{hexsum}.pkg"
    assert cache.path_for("1$" + hexsum) == cache.path_for(hexsum)
    b2 = pkg2_sum(b"pkg")
    assert cache.path_for(b2) == tmp_path / "blake2b" / f"{b2[2:]}.pkg"
    with pytest.raises(IntegrityError, match="unrecognised package sum"):
        cache.path_for("../../etc/passwd")


@pytest.mark.parametrize("sum_of", [sha256_sum, pkg2_sum])
def test_shared_package_is_downloaded_once(repo_server: RepoServer, fetcher: Fetcher, tmp_path: Path,
                                           sum_of) -> None:
    data = payload(70_000, b"FreeBSD-libucl")
    url_142 = publish(repo_server, "FreeBSD:14:amd64/base_release_2/FreeBSD-libucl-14.2.pkg", data)
    url_143 = publish(repo_server, "FreeBSD:14:amd64/base_release_3/FreeBSD-libucl-14.2.pkg", data)
    cache = PackageCache(tmp_path / "cache")
    assert not cache.has(sum_of(data))
    first = cache.ensure(fetcher, url_142, name="FreeBSD-libucl-14.2", sum=sum_of(data), size=len(data))
    second = cache.ensure(fetcher, url_143, name="FreeBSD-libucl-14.2", sum=sum_of(data), size=len(data))
    assert first == second == cache.path_for(sum_of(data)) and first.read_bytes() == data
    assert cache.has(sum_of(data))
    assert len(repo_server.requests) == 1 and fetcher.stats.bytes == len(data)


def test_concurrent_ensure_downloads_once(repo_server: RepoServer, fetcher: Fetcher, tmp_path: Path) -> None:
    data = payload(50_000, b"FreeBSD-clibs")
    url = publish(repo_server, "FreeBSD-clibs-14.2.pkg", data)
    repo_server.delay("/FreeBSD-clibs-14.2.pkg", 0.3)  # keep the first download in flight
    cache = PackageCache(tmp_path / "cache")
    start = threading.Barrier(2)
    results: list[Path] = []
    errors: list[BaseException] = []

    def worker() -> None:
        start.wait()
        try:
            results.append(cache.ensure(fetcher, url, name="FreeBSD-clibs-14.2", sum=sha256_sum(data),
                                        size=len(data)))
        except BaseException as e:  # reported below, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == [cache.path_for(sha256_sum(data))] * 2 and results[0].read_bytes() == data
    assert len(repo_server.requests_for("/FreeBSD-clibs-14.2.pkg")) == 1


def test_concurrent_ensure_across_processes_downloads_once(repo_server: RepoServer, tmp_path: Path) -> None:
    data = payload(50_000, b"FreeBSD-rc")
    url = publish(repo_server, "FreeBSD-rc-14.2.pkg", data)
    repo_server.delay("/FreeBSD-rc-14.2.pkg", 0.5)
    script = textwrap.dedent(f"""
        from pathlib import Path
        from release.cache import PackageCache
        from release.fetcher import Fetcher
        with Fetcher(retries=0, user_agent="t") as f:
            PackageCache(Path({str(tmp_path / "cache")!r})).ensure(
                f, {url!r}, name="FreeBSD-rc-14.2", sum={pkg2_sum(data)!r}, size={len(data)})
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], cwd=PROJECT) for _ in range(3)]
    assert [p.wait() for p in procs] == [0, 0, 0]
    assert PackageCache(tmp_path / "cache").path_for(pkg2_sum(data)).read_bytes() == data
    assert len(repo_server.requests_for("/FreeBSD-rc-14.2.pkg")) == 1


def test_tampered_package_never_enters_the_cache(repo_server: RepoServer, fetcher: Fetcher,
                                                 tmp_path: Path) -> None:
    good = payload(30_000)
    url = publish(repo_server, "FreeBSD-runtime-14.2.pkg", good[:-1] + b"\0")
    cache = PackageCache(tmp_path / "cache")
    with pytest.raises(IntegrityError) as err:
        cache.ensure(fetcher, url, name="FreeBSD-runtime-14.2", sum=pkg2_sum(good), size=len(good))
    assert str(err.value) == (f"FreeBSD-runtime-14.2: sum mismatch: catalogue says {pkg2_sum(good)}, "
                              f"downloaded {pkg2_sum(good[:-1] + bytes(1))} ({url})")
    assert not cache.has(pkg2_sum(good))
    assert [p.name for p in (tmp_path / "cache" / "blake2b").iterdir() if not p.name.startswith(".lock-")] == []


def test_verify_rehashes_entries(repo_server: RepoServer, fetcher: Fetcher, tmp_path: Path) -> None:
    data = payload(10_000)
    url = publish(repo_server, "FreeBSD-fetch-14.2.pkg", data)
    cache = PackageCache(tmp_path / "cache")
    assert cache.verify(sha256_sum(data)) is False  # missing
    path = cache.ensure(fetcher, url, name="FreeBSD-fetch-14.2", sum=sha256_sum(data), size=len(data))
    assert cache.verify(sha256_sum(data)) is True
    assert cache.verify("1$" + sha256_sum(data)) is True
    path.write_bytes(data[:-1] + b"!")  # bit rot or tampering after the fact
    assert cache.verify(sha256_sum(data)) is False


def test_gc_keeps_only_what_is_asked(repo_server: RepoServer, fetcher: Fetcher, tmp_path: Path) -> None:
    cache = PackageCache(tmp_path / "cache")
    sums = {}
    for i, spell in enumerate([sha256_sum, pkg2_sum, sha256_sum, pkg2_sum]):
        data = payload(2000 + i, bytes([i]))
        sums[i] = spell(data)
        cache.ensure(fetcher, publish(repo_server, f"p{i}.pkg", data), name=f"p{i}", sum=sums[i], size=len(data))
    stale_partial = cache.path_for(sums[3]).with_name(".partial-" + "y" * 103 + ".pkg")
    stale_partial.write_bytes(b"half")
    (cache.root / "sha256" / "README").write_text("not ours\n")

    removed = cache.gc({sums[0], "2$" + sums[1][2:]})
    assert removed == sorted([cache.path_for(sums[2]), cache.path_for(sums[3])])
    assert cache.has(sums[0]) and cache.has(sums[1])
    assert not cache.has(sums[2]) and not cache.has(sums[3]) and not stale_partial.exists()
    left = sorted(p.name for d in ("sha256", "blake2b") for p in (cache.root / d).iterdir())
    assert left == sorted([cache.path_for(sums[0]).name, ".lock-" + cache.path_for(sums[0]).stem,
                           cache.path_for(sums[1]).name, ".lock-" + cache.path_for(sums[1]).stem, "README"])
    assert cache.gc({sums[0], sums[1]}) == []
    # a removed package is fetched again on demand
    data = payload(2002, bytes([2]))
    cache.ensure(fetcher, f"{repo_server.url}/p2.pkg", name="p2", sum=sums[2], size=len(data))
    assert cache.verify(sums[2])


def test_gc_drops_unlocked_and_damaged_packages_and_the_next_build_fetches_again(tmp_path):
    """`doit gc` on a built demo: a package no lock names goes, a tampered one goes, the build heals."""
    from tests.pipeline_support import doit, ran
    from tests.conftest import PROJECT
    work = tmp_path / "work"
    doit(PROJECT / "config.toml", work, "build:demo:amd64")
    packages = sorted((work / "cache/packages").rglob("*.pkg"))
    stray = work / "cache/packages/sha256" / ("0" * 64 + ".pkg")
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"no lock names me")
    victim = packages[0]
    victim.write_bytes(victim.read_bytes()[:-1] + b"\0")
    proc = doit(PROJECT / "config.toml", work, "gc")
    assert "gc: 1 unused and 1 damaged packages removed" in proc.stdout
    assert not stray.exists() and not victim.exists()
    again = doit(PROJECT / "config.toml", work, "build:demo:amd64")
    assert "download:demo:amd64" in ran(again) and victim.is_file()

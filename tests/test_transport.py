"""release.http, the one transport, against real servers on 127.0.0.1 (plain and TLS).

Credentials go to their origin only, redirects never downgrade and end in one
line when they loop, 429 and 5xx are retried the same way for every client,
and a failure has one name wherever requests and urllib3 nested it.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
import urllib3

from release.fetcher import Fetcher
from release.errors import FetchError
from release.http import (Credential, Origin, RetryPolicy, Transient, Transport, TransportError, check_next, cut,
                          read_capped, transport_cause)
from tests.httpserver import RepoServer


@pytest.fixture
def served(tmp_path: Path):
    root = tmp_path / "a"
    root.mkdir()
    (root / "file").write_bytes(b"hello")
    with RepoServer(root) as a, RepoServer(tmp_path) as b:
        yield a, b


def transport(**kw) -> Transport:
    return Transport(user_agent="test", timeout=5, retry=RetryPolicy(2, 0.01), **kw)


def get(t: Transport, url: str, credential: Credential | None = None) -> bytes:
    with t.open("GET", url, credential=credential) as resp:
        return resp.content


def test_an_origin_is_scheme_host_and_port():
    assert Origin.of("https://Registry.Example.org/v2/") == Origin("https", "registry.example.org", 443)
    assert Origin.of("http://127.0.0.1:5000/x") == Origin("http", "127.0.0.1", 5000)
    cred = Credential(Origin.of("https://r.example.org"), "Basic c2VjcmV0")
    assert cred.for_url("https://r.example.org:443/v2/x") == "Basic c2VjcmV0"
    for other in ("http://r.example.org/v2/x", "https://r.example.org:8443/v2/x", "https://s.example.org/v2/x",
                  "https://r.example.org.evil.net/v2/x"):
        assert cred.for_url(other) is None, other
    assert "c2VjcmV0" not in repr(cred)


def test_a_same_origin_redirect_keeps_the_credential_another_origin_never_sees_it(served):
    a, b = served
    a.redirect("/here", "/file")
    a.redirect("/away", b.url + "/a/file")
    cred = Credential(Origin.of(a.url), "Bearer secret-token")
    with transport() as t:
        assert get(t, a.url + "/here", cred) == b"hello"
        assert get(t, a.url + "/away", cred) == b"hello"
    assert [r.headers["authorization"] for r in a.requests] == ["Bearer secret-token"] * 3
    assert [(r.path, r.headers["authorization"]) for r in b.requests] == [("/a/file", None)]


def test_a_redirect_loop_ends_in_one_line(served):
    a, _ = served
    a.redirect("/one", "/two")
    a.redirect("/two", "/one")
    with transport() as t, pytest.raises(TransportError) as err:
        get(t, a.url + "/one")
    assert str(err.value) == f"{a.url}/one: redirect loop ({a.url}/one -> {a.url}/two -> {a.url}/one)"
    assert len(a.requests) == 2


def test_too_many_redirects_end_in_one_line(served):
    a, _ = served
    for n in range(12):
        a.redirect(f"/r{n}", f"/r{n + 1}")
    with transport() as t, pytest.raises(TransportError, match=r"/r0: more than 10 redirects \(last to .*/r11\)$"):
        get(t, a.url + "/r0")


def test_https_is_never_downgraded_to_http(tmp_path: Path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "file").write_bytes(b"x")
    with RepoServer(tmp_path / "s", tls=True) as secure, RepoServer(tmp_path / "s") as plain:
        secure.redirect("/file", plain.url + "/file")
        with transport(verify=False) as t, pytest.raises(TransportError) as err:
            get(t, secure.url + "/file", Credential(Origin.of(secure.url), "Basic c2VjcmV0"))
        assert str(err.value) == (f"{secure.url}/file: redirected to {plain.url}/file: "
                                  "refusing to downgrade https to http")
        assert plain.requests == []
        with transport() as t, pytest.raises(TransportError, match=r"^https://127\.0\.0\.1:\d+/file: TLS: "
                                                                     r"certificate verify failed: self.signed"):
            get(t, secure.url + "/file")
    assert check_next("https://a.example.org/x", "/y") == "https://a.example.org/y"
    with pytest.raises(TransportError, match="not an http"):
        check_next("https://a.example.org/x", "file:///etc/passwd")


def test_the_fetcher_retries_429_and_honours_retry_after(served, tmp_path: Path):
    a, _ = served
    a.fail("/file", status=429, times=1)
    with Fetcher(retries=2, backoff=0.01, user_agent="test") as f:
        assert f.get(a.url + "/file") == b"hello"
        assert f.stats.retries == 1
    assert [r.status for r in a.requests] == [429, 200]
    policy = RetryPolicy(4, 0.5)
    assert policy.delay(1) == 0.5 and policy.delay(3) == 2.0 and policy.delay(1, 7) == 7 and policy.delay(1, 999) == 30
    started = time.monotonic()
    assert RetryPolicy(1, 0.01).run(_flaky(), _give_up) == "ok"          # waited for Retry-After, not 0.01 s
    assert time.monotonic() - started >= 0.2


def _flaky():
    calls = []

    def attempt():
        calls.append(1)
        if len(calls) == 1:
            raise Transient("HTTP 429 Too Many Requests", 0.2)
        return "ok"
    return attempt


def _give_up(why: str, n: int) -> Exception:
    return FetchError(f"{why} after {n}")


def test_a_failure_has_one_name_wherever_it_is_nested():
    timeout = urllib3.exceptions.ReadTimeoutError(None, "/x", "Read timed out.")
    nested = requests.ConnectionError(urllib3.exceptions.ProtocolError("broken", timeout))
    assert transport_cause(requests.ReadTimeout(timeout)) == "timed out"
    assert transport_cause(nested) == "timed out"              # was "connection broken" for the registry
    refused = requests.ConnectionError(urllib3.exceptions.NewConnectionError(
        None, "Failed to establish a new connection: [Errno 111] Connection refused"))
    refused.__context__ = ConnectionRefusedError(111, "Connection refused")
    assert transport_cause(refused) == "connection refused"
    assert transport_cause(requests.exceptions.ChunkedEncodingError(
        urllib3.exceptions.ProtocolError("x", urllib3.exceptions.IncompleteRead(10, 5)))) == \
        "connection closed before the end of the body"
    assert transport_cause(TimeoutError("timed out")) == "timed out"


def test_error_bodies_are_read_and_quoted_only_up_to_a_cap(tmp_path: Path):
    (tmp_path / "big").write_bytes(b"e" * (5 << 20))
    with RepoServer(tmp_path) as srv, transport() as t, t.open("GET", srv.url + "/big") as resp:
        assert len(read_capped(resp, 1000)) == 1000
    assert cut("x" * 1000) == "x" * 199 + "…" and cut("a\nb") == "a b"

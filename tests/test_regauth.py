"""Registry credentials (auth files, credential helpers) and the basic and token flows against real registries.

Every failing case also checks that no secret (password, its base64 form,
identity token, issued token) shows in the error, its repr, or anything
logged at DEBUG level while it happened.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import stat
import time
from pathlib import Path

import pytest

from release.regauth import (AUTH_FILE_ENV, AuthenticationError, Authenticator, Credentials, CredentialsError,
                             auth_files, find_credentials, parse_challenges)
from release.registry import Registry
from tests.build_support import build_demo
from tests.registry_support import (PASSWORD, USER, RegistryServer, TokenServer, basic_header, flavour_index,
                                    push_demo, skopeo, write_auth_file)

HOST = "registry.example.org:5000"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo(tmp_path_factory, "regauth-demo").work


def home_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment whose auth files all live under *tmp_path*."""
    return {"HOME": str(tmp_path / "home"), **extra}


def write_json(path: Path, doc) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def login(user: str, password: str) -> dict:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def assert_no_secret(*texts: str, secrets: tuple[str, ...]) -> None:
    for secret in secrets:
        assert secret, "an empty secret proves nothing"
        for text in texts:
            assert secret not in text


def secrets_of(password: str = PASSWORD, user: str = USER) -> tuple[str, ...]:
    return password, base64.b64encode(f"{user}:{password}".encode()).decode()


# --------------------------------------------------------------------------- auth files

def test_auth_files_are_read_in_containers_auth_json_order(tmp_path):
    env = home_env(tmp_path, XDG_RUNTIME_DIR=str(tmp_path / "run"), **{AUTH_FILE_ENV: str(tmp_path / "a.json")})
    files = [path for path, _ in auth_files(env)]
    assert files == [tmp_path / "a.json", tmp_path / "run/containers/auth.json",
                     tmp_path / "home/.config/containers/auth.json", tmp_path / "home/.docker/config.json"]
    for n, path in enumerate(files):
        write_json(path, {"auths": {HOST: login(f"user{n}", f"pw{n}")}})
    for n, path in enumerate(files):
        creds = find_credentials(HOST, env=env)
        assert (creds.username, creds.password, creds.source) == (f"user{n}", f"pw{n}", str(path))
        if n == 0:
            path.write_text(json.dumps({"auths": {"other.example.org": login("x", "y")}}))  # no entry: next file
        else:
            path.unlink()
    assert find_credentials(HOST, env=home_env(tmp_path)) is None      # no files at all: anonymous


def test_docker_style_keys_hub_aliases_and_identity_tokens(tmp_path):
    env = home_env(tmp_path)
    write_json(tmp_path / "home/.docker/config.json", {"auths": {
        f"https://{HOST}/v1/": login("docker-user", "docker-pw"),
        "https://index.docker.io/v1/": login("hub-user", "hub-pw"),
        "ghcr.example.org": {"auth": base64.b64encode(b"tok-user:").decode(), "identitytoken": "refresh-123"},
    }})
    assert find_credentials(HOST, env=env).username == "docker-user"
    assert find_credentials("docker.io", env=env).password == "hub-pw"
    token = find_credentials("ghcr.example.org", env=env)
    assert (token.username, token.password, token.identity_token) == ("tok-user", "", "refresh-123")
    assert find_credentials("REGISTRY.EXAMPLE.ORG:5000", env=env).username == "docker-user"
    assert find_credentials("registry.example.org", env=env) is None     # another port is another registry


def test_missing_or_malformed_auth_files_are_one_line_errors_naming_the_file_not_its_contents(tmp_path):
    named = tmp_path / "auth.json"
    with pytest.raises(CredentialsError, match=f"^{named}: auth file named by {AUTH_FILE_ENV} does not exist$"):
        find_credentials(HOST, env=home_env(tmp_path, **{AUTH_FILE_ENV: str(named)}))
    env = home_env(tmp_path, **{AUTH_FILE_ENV: str(named)})
    cases = {
        '{"auths": {"%s": {"auth": "%s"}' % (HOST, PASSWORD): "not a JSON auth file (line 1)",
        '["%s"]' % PASSWORD: 'not a JSON auth file (expected an object with "auths")',
        '{"auths": {"%s": {"auth": "%s!"}}}' % (HOST, PASSWORD): f"auths['{HOST}'].auth is not base64",
        '{"auths": {"%s": "%s"}}' % (HOST, PASSWORD): f"auths['{HOST}'] is not an object",
        '{"auths": {"%s": {"auth": "%s"}}}' % (HOST, base64.b64encode(PASSWORD.encode()).decode()):
            "is not base64 of \"user:password\"",
    }
    for text, problem in cases.items():
        named.write_text(text)
        with pytest.raises(CredentialsError) as err:
            find_credentials(HOST, env=env)
        message = str(err.value)
        assert message.startswith(f"{named}: ") and problem in message and "\n" not in message
        assert_no_secret(message, repr(err.value), secrets=(PASSWORD,))


def test_credentials_kept_by_a_docker_credential_helper(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-pipeline-test"
    helper.write_text("#!/bin/sh\n"
                      "read host\n"
                      'case "$host" in\n'
                      f'  {HOST}) echo \'{{"ServerURL":"{HOST}","Username":"helper-user","Secret":"helper-pw"}}\';;\n'
                      '  tokens.example.org) echo \'{"Username":"<token>","Secret":"refresh-xyz"}\';;\n'
                      '  *) echo "credentials not found in native keychain"; exit 1;;\n'
                      "esac\n")
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    env = home_env(tmp_path)
    write_json(tmp_path / "home/.docker/config.json", {
        "auths": {"store.example.org": {}},
        "credsStore": "pipeline-test",
        "credHelpers": {HOST: "pipeline-test", "tokens.example.org": "pipeline-test"}})
    creds = find_credentials(HOST, env=env)
    assert (creds.username, creds.password) == ("helper-user", "helper-pw")
    assert "docker-credential-pipeline-test" in creds.source
    assert find_credentials("tokens.example.org", env=env).identity_token == "refresh-xyz"
    assert find_credentials("store.example.org", env=env) is None          # the store has nothing for it
    assert find_credentials("elsewhere.example.org", env=env) is None      # no helper covers it


def test_credentials_never_show_their_secrets():
    creds = Credentials("releng", PASSWORD, "", "auth.json")
    token = Credentials("releng", "", "refresh-secret-token", "auth.json")
    for text in (repr(creds), str(creds), f"{creds}", repr([creds]), repr(token), str(token)):
        assert_no_secret(text, secrets=secrets_of() + ("refresh-secret-token",))
    assert "releng" in repr(creds) and "<hidden>" in repr(creds)
    assert creds.basic_header() == "Basic " + secrets_of()[1]


def test_challenges_are_parsed_with_commas_inside_quoted_scopes():
    (bearer,) = parse_challenges('Bearer realm="https://auth.example.org/token",service="registry",'
                                 'scope="repository:a/b:pull,push repository:c:pull",error="invalid_token"')
    assert bearer.scheme == "bearer"
    assert bearer.params == {"realm": "https://auth.example.org/token", "service": "registry",
                             "scope": "repository:a/b:pull,push repository:c:pull", "error": "invalid_token"}
    basic, bearer = parse_challenges('Basic realm="say \\"hi\\"", Bearer realm=https://x/token')
    assert (basic.scheme, basic.params) == ("basic", {"realm": 'say "hi"'})
    assert (bearer.scheme, bearer.params) == ("bearer", {"realm": "https://x/token"})
    assert parse_challenges("") == []


def test_credentials_are_not_sent_to_a_remote_token_server_over_plain_http():
    auth = Authenticator("registry.example.org", Credentials(USER, PASSWORD))
    auth.unauthorized('Bearer realm="http://auth.example.org/token",service="registry"',
                      ("repository:freebsd-static:pull",), None, 0)
    with pytest.raises(AuthenticationError) as err:
        auth.authorization(("repository:freebsd-static:pull",))
    assert str(err.value) == ("registry.example.org: refusing to send credentials to token server "
                              "http://auth.example.org (https needed)")
    assert auth.tokens_fetched == 0


# --------------------------------------------------------------------------- basic auth

def test_basic_auth_push_with_credentials_from_an_auth_file(basic_registry, work, tmp_path):
    auth = write_auth_file(tmp_path / "auth.json", basic_registry.host, USER, PASSWORD)
    creds = find_credentials(basic_registry.host, env=home_env(tmp_path, **{AUTH_FILE_ENV: str(auth)}))
    with Registry(basic_registry.url, credentials=creds) as registry:
        report = push_demo(registry, work, flavours=("static",))["static"]
        assert registry.auth.scheme == "basic"
    assert report.blobs_uploaded > 0
    raw = skopeo("inspect", "--raw", "--tls-verify=false", "--authfile", str(auth),
                 f"docker://{basic_registry.host}/freebsd-static:14")
    assert json.loads(raw)["manifests"] and report.digest == flavour_index(work, "static")["digest"]


def test_a_wrong_password_fails_in_one_line_without_the_password(basic_registry, work, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "not-the-" + PASSWORD
    registry = Registry(basic_registry.url, credentials=Credentials(USER, wrong, "", "auth.json"), backoff=0.01)
    with registry, pytest.raises(AuthenticationError) as err:
        push_demo(registry, work, flavours=("static",))
    message = str(err.value)
    assert message.startswith(f"authentication failed for {basic_registry.host} (user {USER}) requesting "
                              "repository:freebsd-static:")
    assert "\n" not in message and err.value.exit_status != 0
    assert_no_secret(message, repr(err.value), caplog.text, repr(registry), secrets=secrets_of(wrong))


def test_a_registry_asking_for_a_password_we_do_not_have(basic_registry, work):
    with Registry(basic_registry.url) as registry, pytest.raises(AuthenticationError) as err:
        push_demo(registry, work, flavours=("static",))
    assert str(err.value) == (f"{basic_registry.host} requires a user name and password "
                              f"(anonymous: no credentials found for it; see {AUTH_FILE_ENV})")


# --------------------------------------------------------------------------- token auth

def test_token_flow_end_to_end_with_exact_scopes_and_a_mount(token_registry, work, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    server, tokens = token_registry
    with Registry(server.url, credentials=Credentials(USER, PASSWORD)) as registry:
        reports = push_demo(registry, work, flavours=("static", "dynamic"))
        assert registry.auth.scheme == "bearer"
    assert reports["dynamic"].blobs_mounted > 0
    granted = [sorted(i.scopes) for i in tokens.issued if i.status == 200 and i.user == USER]
    assert ["repository:freebsd-static:pull,push"] in granted
    assert ["repository:freebsd-dynamic:pull,push", "repository:freebsd-static:pull"] in granted
    assert len(tokens.issued) <= 6                      # cached per scope set, not fetched per request
    auth = write_auth_file(tmp_path / "auth.json", server.host, USER, PASSWORD)
    raw = skopeo("inspect", "--raw", "--tls-verify=false", "--authfile", str(auth),
                 f"docker://{server.host}/freebsd-dynamic:14.2")
    assert json.loads(raw) == json.loads((work / "blobs/sha256" / reports["dynamic"].digest[7:]).read_bytes())
    assert_no_secret(caplog.text, secrets=secrets_of() + tuple(i.token for i in tokens.issued if i.token))


def test_token_server_refusing_the_password_is_one_line_without_secrets(token_registry, work, caplog):
    caplog.set_level(logging.DEBUG)
    server, tokens = token_registry
    wrong = "wrong-" + PASSWORD
    registry = Registry(server.url, credentials=Credentials(USER, wrong), backoff=0.01)
    with registry, pytest.raises(AuthenticationError) as err:
        push_demo(registry, work, flavours=("static",))
    assert str(err.value).startswith(f"authentication failed for {server.host} (user {USER}) requesting ")
    assert [i.status for i in tokens.issued] == [401]
    assert_no_secret(str(err.value), repr(err.value), caplog.text, repr(registry), secrets=secrets_of(wrong))


def test_anonymous_tokens_do_not_allow_a_push(token_registry, work):
    server, tokens = token_registry
    with Registry(server.url, backoff=0.01) as registry, pytest.raises(AuthenticationError) as err:
        registry.blob_exists("freebsd-static", "sha256:" + "0" * 64)
    assert str(err.value) == (f"authentication failed for {server.host} (anonymous: no credentials found for it) "
                              "requesting repository:freebsd-static:pull")
    assert [(i.user, i.status) for i in tokens.issued] == [(None, 200), (None, 200)]


def test_an_expired_token_is_fetched_again(work, tmp_path):
    with TokenServer(tmp_path, {USER: PASSWORD}, lifetime=3, expires_in=300) as tokens, \
            RegistryServer(tmp_path / "registry", auth=tokens.registry_auth()) as server, \
            Registry(server.url, credentials=Credentials(USER, PASSWORD)) as registry:
        push_demo(registry, work, flavours=("static",))
        fetched = registry.auth.tokens_fetched
        # the registry accepts a token until 60 s (its leeway) after exp; wait that out
        time.sleep(max(0.0, max(i.expires for i in tokens.issued) + 60 + 1.5 - time.time()))
        log_before = len(server.log_text())
        again = push_demo(registry, work, flavours=("static",))["static"]
        assert again.bytes_uploaded == 0 and again.blobs_present > 0
        assert '" 401 ' in server.log_text()[log_before:]       # the cached token was refused...
        assert registry.auth.tokens_fetched > fetched           # ...so a new one was fetched


def test_identity_tokens_use_the_oauth2_refresh_grant(work, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    refresh = "identity-refresh-token-42"
    with TokenServer(tmp_path, {USER: PASSWORD}, identity_tokens={refresh: USER}) as tokens, \
            RegistryServer(tmp_path / "registry", auth=tokens.registry_auth()) as server:
        path = write_json(tmp_path / "auth.json", {"auths": {server.host: {
            "auth": base64.b64encode(f"{USER}:".encode()).decode(), "identitytoken": refresh}}})
        creds = find_credentials(server.host, env=home_env(tmp_path, **{AUTH_FILE_ENV: str(path)}))
        with Registry(server.url, credentials=creds) as registry:
            report = push_demo(registry, work, flavours=("static",))["static"]
    assert report.blobs_uploaded > 0
    assert {(i.user, i.status) for i in tokens.issued} == {(USER, 200)}
    assert_no_secret(caplog.text, repr(creds), secrets=(refresh,) + tuple(i.token for i in tokens.issued))


# --------------------------------------------------------------------------- credentials stay with their origin

def test_a_token_server_off_the_registry_s_domain_never_gets_the_credentials():
    auth = Authenticator("registry.example.org", Credentials(USER, PASSWORD))
    auth.unauthorized('Bearer realm="https://collect.evil.example.net/token",service="registry"',
                      ("repository:freebsd-static:pull",), None, 0)
    with pytest.raises(AuthenticationError) as err:
        auth.authorization(("repository:freebsd-static:pull",))
    assert str(err.value) == ("registry.example.org: refusing to send credentials to token server "
                              "https://collect.evil.example.net, which is neither on registry.example.org "
                              "nor in its domain")
    assert auth.tokens_fetched == 0
    from release.regauth import _same_site
    assert _same_site("auth.docker.io", "registry-1.docker.io") and _same_site("ghcr.io", "ghcr.io")
    assert not _same_site("evil.io", "example.io") and not _same_site("auth.evil.org", "127.0.0.1")
    assert not _same_site("docker.io.evil.net", "registry-1.docker.io")


def test_an_upload_sent_to_another_origin_goes_there_without_the_credentials(basic_registry, work, tmp_path):
    from tests.registry_support import FaultProxy
    with FaultProxy(basic_registry.url) as registry_front, \
            FaultProxy(basic_registry.url, inject={"Authorization": basic_header(USER, PASSWORD)}) as storage:
        registry_front.locations_to = storage.url           # "upload over there": another port, another origin
        with Registry(registry_front.url, credentials=Credentials(USER, PASSWORD), backoff=0.01) as registry:
            report = push_demo(registry, work, flavours=("static",))["static"]
        assert report.blobs_uploaded > 0
        assert storage.log() and all("authorization" not in r.headers for r in storage.log())
        assert any(r.headers.get("authorization") == basic_header(USER, PASSWORD) for r in registry_front.log())


def test_a_401_from_another_origin_is_not_answered_with_the_credentials(basic_registry, work):
    from release.registry import RegistryRefused
    from tests.registry_support import FaultProxy
    with FaultProxy(basic_registry.url) as registry_front, FaultProxy(basic_registry.url) as other:
        registry_front.locations_to = other.url
        with Registry(registry_front.url, credentials=Credentials(USER, PASSWORD), backoff=0.01) as registry, \
                pytest.raises(RegistryRefused) as err:
            push_demo(registry, work, flavours=("static",))
        assert all("authorization" not in r.headers for r in other.log())
    assert str(err.value).endswith(f": HTTP 401 from {other.url}, which is not the registry; its credentials "
                                   f"go to {registry_front.url} only")
    assert err.value.exit_status == 2


def test_an_https_registry_cannot_send_an_upload_to_plain_http(basic_registry, work, tmp_path):
    from release.registry import RegistryRefused
    from tests.registry_support import FaultProxy
    with FaultProxy(basic_registry.url, tls=True, certificates=str(tmp_path)) as registry_front, \
            FaultProxy(basic_registry.url) as plain:
        registry_front.locations_to = plain.url
        with Registry(registry_front.url, credentials=Credentials(USER, PASSWORD), tls_verify=False,
                      backoff=0.01) as registry, pytest.raises(RegistryRefused) as err:
            push_demo(registry, work, flavours=("static",))
        assert plain.log() == []
    message = str(err.value)
    assert message.startswith(f"{registry_front.host}: sent the upload to {plain.url}/v2/freebsd-static/blobs/uploads/")
    assert message.endswith(": refusing to downgrade https to http") and "\n" not in message

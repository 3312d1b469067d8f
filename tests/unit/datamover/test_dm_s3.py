"""The S3 backend without a lab: URL and settings validation, ``open_backend``'s
``credentials`` (used or refused, never ignored), and the mapping of HTTP answers a real
endpoint rarely gives on demand (5xx, throttling, timeouts, malformed listings) to the
backend contract's errors, through httpx's mock transport. Everything against a real S3
endpoint is in tests/contract/test_backends_s3.py (Swift lab)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from haven.cli.main import app
from haven.datamover.backends import MemoryBackend, open_backend, register_scheme
from haven.datamover.backends.base import BackendError, ObjectNotFound, TransientBackendError
from haven.datamover.backends.s3 import (
    S3AuthError,
    S3Backend,
    S3Settings,
    from_url,
    parse_url,
)
from haven.datamover.backends.sigv4 import Credentials
from haven.datamover.backends.swift import TempAuth
from haven.datamover.backends.swift import from_url as swift_from_url
from haven.datamover.errors import InvalidArgument

SECRET = "s3cr3t-KEY-never-shown"
ENV = {
    "HAVEN_S3_ENDPOINT": "http://s3.example:9000",
    "HAVEN_S3_ACCESS_KEY": "AKIDTEST",
    "HAVEN_S3_SECRET_KEY": SECRET,
}
SETTINGS = S3Settings("http://s3.example:9000", Credentials("AKIDTEST", SECRET), "eu-1")


def error(code: str, status: int, extra: str = "") -> httpx.Response:
    body = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>{extra}</Message></Error>"
    return httpx.Response(status, content=body.encode())


def backend(handler: Callable[[httpx.Request], httpx.Response]) -> S3Backend:
    return S3Backend("bucket", "pre", SETTINGS, transport=httpx.MockTransport(handler))


# ------------------------------------------------------------------------- URLs
def test_url_forms() -> None:
    assert parse_url("s3://backups") == ("backups", "")
    assert parse_url("s3://backups/site-a/repo1") == ("backups", "site-a/repo1")
    b = from_url("s3://backups/site-a/repo1/", ENV)
    assert (b.bucket, b.prefix) == ("backups", "site-a/repo1/")
    assert (
        b.describe()
        == "s3://backups/site-a/repo1 (endpoint http://s3.example:9000, region us-east-1)"
    )


def test_url_with_userinfo_is_refused_without_echoing_it() -> None:
    for url in ("s3://AKID:topsecret@bucket/p", "s3://topsecret@bucket"):
        with pytest.raises(InvalidArgument, match="carry no credentials") as info:
            from_url(url, ENV)
        assert "topsecret" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "s3://bucket:9000/p",
        "s3://bucket/p?region=x",
        "s3://bucket/p#x",
        "s3://Bucket/p",
        "s3://my_bucket/p",
        "s3://ab/p",
        "s3:///p",
        "s3://a..b/p",
        "s3://-bucket/p",
        "s3://192.168.1.1/p",
        "s3://bucket/../p",
        "s3://bucket/a//b",
        "swift://c/p",
    ],
)
def test_bad_urls_are_refused_with_the_field(url: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        from_url(url, ENV)
    assert info.value.path in ("repo", "key")


# --------------------------------------------------------------------- settings
def test_settings_precedence_credentials_then_haven_then_aws() -> None:
    aws = {
        "AWS_ENDPOINT_URL": "https://aws.example",
        "AWS_ACCESS_KEY_ID": "AWSID",
        "AWS_SECRET_ACCESS_KEY": "awssecret",
        "AWS_REGION": "aws-region-1",
        "AWS_SESSION_TOKEN": "awstoken",
    }
    s = S3Settings.resolve(env=aws)
    assert (s.endpoint, s.region, s.credentials.access_key) == (
        "https://aws.example",
        "aws-region-1",
        "AWSID",
    )
    assert s.credentials.session_token == "awstoken"
    s = S3Settings.resolve(env={**aws, **ENV, "HAVEN_S3_REGION": "haven-1"})
    assert (s.endpoint, s.region, s.credentials.secret_key) == (
        "http://s3.example:9000",
        "haven-1",
        SECRET,
    )
    s = S3Settings.resolve({"secret_key": "from-spec", "region": "spec-1"}, {**aws, **ENV})
    assert (s.credentials.secret_key, s.region, s.credentials.access_key) == (
        "from-spec",
        "spec-1",
        "AKIDTEST",
    )
    assert s.sources["secret_key"] == "credentials.secret_key"
    assert S3Settings.resolve(env=ENV).region == "us-east-1"


def test_unknown_credential_names_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="not an S3 setting") as info:
        S3Settings.resolve({"aws_secret_access_key": SECRET}, ENV)
    assert info.value.path == "credentials.aws_secret_access_key"
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("drop", "field"),
    [
        ("HAVEN_S3_ENDPOINT", "HAVEN_S3_ENDPOINT"),
        ("HAVEN_S3_ACCESS_KEY", "HAVEN_S3_ACCESS_KEY"),
        ("HAVEN_S3_SECRET_KEY", "HAVEN_S3_SECRET_KEY"),
    ],
)
def test_missing_settings_name_the_variable(drop: str, field: str) -> None:
    env = {k: v for k, v in ENV.items() if k != drop}
    with pytest.raises(InvalidArgument) as info:
        S3Settings.resolve(env=env)
    assert info.value.path == field
    assert "credentials." in str(info.value)


@pytest.mark.parametrize(
    ("endpoint", "words"),
    [
        ("s3.example:9000", "http(s)://"),
        ("ftp://s3.example", "http(s)://"),
        (f"https://AKID:{SECRET}@s3.example", "must not carry credentials"),
        ("https://s3.example/?x=1", "no query"),
    ],
)
def test_bad_endpoints(endpoint: str, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words.replace("(", r"\(").replace(")", r"\)")) as i:
        S3Settings.resolve(env={**ENV, "HAVEN_S3_ENDPOINT": endpoint})
    assert i.value.path == "HAVEN_S3_ENDPOINT"
    assert SECRET not in str(i.value)


def test_timeout_region_and_ca_bundle_checked(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="seconds"):
        S3Settings.resolve(env={**ENV, "HAVEN_S3_TIMEOUT": "soon"})
    with pytest.raises(InvalidArgument, match="positive"):
        S3Settings.resolve(env={**ENV, "HAVEN_S3_TIMEOUT": "0"})
    with pytest.raises(InvalidArgument, match="region"):
        S3Settings.resolve(env={**ENV, "HAVEN_S3_REGION": "eu west"})
    s = S3Settings.resolve(env={**ENV, "HAVEN_S3_INSECURE": "1", "HAVEN_S3_TIMEOUT": "5"})
    assert s.verify is False and s.timeout == 5.0
    missing = tmp_path / "no-such-ca.pem"
    with pytest.raises(InvalidArgument, match="CA bundle") as info:
        from_url("s3://bucket", {**ENV, "HAVEN_S3_CA_CERT": str(missing)})
    assert info.value.path == "HAVEN_S3_CA_CERT"


def test_no_secret_in_settings_or_backend_text() -> None:
    s = S3Settings.resolve({"session_token": "tok-SECRET"}, ENV)
    b = S3Backend("bucket", "p", s)
    for text in (repr(s), str(s), s.describe(), b.describe(), repr(b)):
        assert SECRET not in text and "tok-SECRET" not in text


# ------------------------------------------------------- open_backend(credentials=)
def test_open_backend_uses_credentials_for_s3(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*ENV, "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(InvalidArgument, match="endpoint missing"):
        open_backend("s3://bucket/p")
    creds = {
        "endpoint": "http://127.0.0.1:9",
        "access_key": "A",
        "secret_key": SECRET,
        "region": "r-1",
    }
    b = open_backend("s3://bucket/p", credentials=creds)
    assert b.describe() == "s3://bucket/p (endpoint http://127.0.0.1:9, region r-1)"
    with pytest.raises(InvalidArgument) as info:
        open_backend("s3://bucket/p", credentials={**creds, "password": "x"})
    assert info.value.path == "credentials.password"


def test_open_backend_refuses_credentials_it_would_not_use(tmp_path: Path) -> None:
    creds = {"secret_key": SECRET}
    register_scheme("fakes3test", lambda url: MemoryBackend(url))
    for url in (str(tmp_path), f"file://{tmp_path}", "memory://x", "fakes3test://c/p"):
        with pytest.raises(InvalidArgument, match="take no credentials") as info:
            open_backend(url, credentials=creds)
        assert info.value.path == "credentials.secret_key"
        assert SECRET not in str(info.value)


def test_open_backend_only_knows_real_schemes() -> None:
    for url in ("keys://x", "wrappers://x", "ftp://x", "s4://b"):
        with pytest.raises(InvalidArgument, match="unsupported repository scheme"):
            open_backend(url)


def test_swift_uses_credentials_by_name_and_refuses_others() -> None:
    b = swift_from_url(
        "swift://c/p",
        {},
        credentials={"auth_url": "http://s/auth/v1.0", "user": "a:u", "key": SECRET},
    )
    assert b.auth == TempAuth("http://s/auth/v1.0", "a:u", SECRET)
    env = {"HAVEN_SWIFT_AUTH_URL": "http://s/auth/v1.0", "HAVEN_SWIFT_USER": "a:u"}
    b = swift_from_url("swift://c/p", {**env, "HAVEN_SWIFT_KEY": "env"}, credentials={"key": "k"})
    assert b.auth == TempAuth("http://s/auth/v1.0", "a:u", "k")
    with pytest.raises(InvalidArgument) as info:
        swift_from_url("swift://c/p", env, credentials={"secret_key": SECRET})
    assert info.value.path == "credentials.secret_key"


# ----------------------------------------------------------------- error mapping
@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(500),
        error("InternalError", 500),
        error("SlowDown", 503),
        httpx.Response(502),
        httpx.Response(408),
        httpx.Response(429),
        error("RequestTimeout", 400),
    ],
    ids=["500", "InternalError", "SlowDown", "502", "408", "429", "RequestTimeout"],
)
def test_transient_answers(answer: httpx.Response) -> None:
    b = backend(lambda r: answer)
    for call in (lambda: b.get("k"), lambda: b.put("k", b"v"), lambda: list(b.list())):
        with pytest.raises(TransientBackendError) as info:
            call()
        assert info.value.retryable


@pytest.mark.parametrize(
    "exc", [httpx.ReadTimeout, httpx.ConnectError, httpx.RemoteProtocolError, httpx.WriteError]
)
def test_transport_failures_are_transient(exc: type[httpx.TransportError]) -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise exc("failed", request=request)

    b = backend(boom)
    with pytest.raises(TransientBackendError, match=exc.__name__):
        b.stat("k")


def test_not_found_and_refusals() -> None:
    answers = {
        "/bucket/pre/gone": error("NoSuchKey", 404),
        "/bucket/pre/denied": error("AccessDenied", 403, f"echo {SECRET}"),
        "/bucket/pre/odd": error("InvalidObjectState", 403 + 0),
        "/bucket/pre/teapot": error("Teapot", 418, SECRET),
    }
    b = backend(lambda r: answers[r.url.path])
    with pytest.raises(ObjectNotFound):
        b.get("gone")
    with pytest.raises(ObjectNotFound):
        b.get_range("gone", 0, 5)
    for key in ("denied", "odd"):
        with pytest.raises(S3AuthError, match="check the access key") as auth:
            b.get(key)
        assert not auth.value.retryable and SECRET not in str(auth.value)
    with pytest.raises(BackendError, match="unexpected HTTP 418 Teapot") as other:
        b.get("teapot")
    assert not other.value.retryable and SECRET not in str(other.value)


def test_requests_are_signed_with_the_body_hash() -> None:
    seen: list[httpx.Request] = []

    def ok(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    b = backend(ok)
    b.put("data/ab/x", memoryview(b"payload" * 300_000))  # streamed in pieces
    req = seen[0]
    body = req.read()
    assert body == b"payload" * 300_000
    assert req.url.raw_path == b"/bucket/pre/data/ab/x"
    assert req.headers["host"] == "s3.example:9000"
    assert req.headers["x-amz-content-sha256"] == hashlib.sha256(body).hexdigest()
    assert req.headers["content-length"] == str(len(body))
    auth = req.headers["authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDTEST/")
    assert "/eu-1/s3/aws4_request" in auth and SECRET not in auth


def test_bucket_created_once_with_the_region_then_the_put_retried() -> None:
    calls: list[tuple[str, str, bytes]] = []
    state = {"bucket": False}

    def s3(request: httpx.Request) -> httpx.Response:
        calls.append((request.method, request.url.path, request.read()))
        if request.url.path == "/bucket":
            state["bucket"] = True
            return httpx.Response(200)
        return httpx.Response(200) if state["bucket"] else error("NoSuchBucket", 404)

    b = backend(s3)
    b.put("k", b"v")
    assert [c[:2] for c in calls] == [
        ("PUT", "/bucket/pre/k"),
        ("PUT", "/bucket"),
        ("PUT", "/bucket/pre/k"),
    ]
    assert b"<LocationConstraint>eu-1</LocationConstraint>" in calls[1][2]


def test_listing_pages_and_malformed_listings() -> None:
    pages = {
        "": "<ListBucketResult><IsTruncated>true</IsTruncated>"
        "<Contents><Key>pre/a</Key><Size>1</Size></Contents>"
        "<NextContinuationToken>t/1+=</NextContinuationToken></ListBucketResult>",
        "t/1+=": '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        "<Contents><Key>pre/b/c</Key><Size>22</Size></Contents>"
        "<IsTruncated>false</IsTruncated></ListBucketResult>",
    }

    def s3(request: httpx.Request) -> httpx.Response:
        token = request.url.params.get("continuation-token", "")
        assert request.url.params["prefix"] == "pre/" and request.url.params["list-type"] == "2"
        return httpx.Response(200, content=pages[token].encode())

    assert [(i.key, i.size) for i in backend(s3).list()] == [("a", 1), ("b/c", 22)]

    for body, exc in (
        (b"not xml at all", TransientBackendError),
        (b"<Error><Code>X</Code></Error>", TransientBackendError),
        (b"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>", BackendError),
        (
            b"<ListBucketResult><Contents><Key>elsewhere/x</Key><Size>1</Size></Contents>"
            b"</ListBucketResult>",
            BackendError,
        ),
    ):
        with pytest.raises(exc):
            list(backend(lambda r, body=body: httpx.Response(200, content=body)).list())


def test_missing_bucket_lists_empty_and_deletes_quietly() -> None:
    b = backend(lambda r: error("NoSuchBucket", 404))
    assert list(b.list()) == []
    b.delete("k")
    with pytest.raises(ObjectNotFound):
        b.stat("k")


# --------------------------------------------------------------------------- CLI
def test_cli_refuses_bad_s3_repositories_clearly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in [*ENV, "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"]:
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()
    env = {"HAVEN_REPO_PASSWORD": "pw"}
    res = runner.invoke(
        app, ["repo", "init", "--repo", f"s3://AKID:{SECRET}@bucket/p", "--json"], env=env
    )
    assert res.exit_code == 2, res.stdout
    err = json.loads(res.stdout)["error"]
    assert err["type"] == "InvalidArgument" and "carry no credentials" in err["message"]
    assert SECRET not in res.stdout
    res = runner.invoke(app, ["repo", "init", "--repo", "s3://bucket/p", "--json"], env=env)
    assert res.exit_code == 2, res.stdout
    assert "HAVEN_S3_ENDPOINT" in json.loads(res.stdout)["error"]["message"]

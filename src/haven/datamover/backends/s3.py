"""S3 backend (plain HTTP through httpx, AWS Signature V4 from ``sigv4.py``; extra
``haven-dr[s3]``).

URL: ``s3://<bucket>[/<prefix>]``. Keys are stored as objects named ``<prefix>/<key>`` in
``<bucket>``, addressed path-style (``<endpoint>/<bucket>/<object>``), which AWS, Ceph
RGW, MinIO and Swift's ``s3api`` all serve. The bucket is created on the first ``put``
that finds it missing (with a ``LocationConstraint`` of the region unless ``us-east-1``).

The URL names only the bucket and the prefix: a URL with user info, a port, a query or
a fragment is refused. Everything else is a *setting*, taken in this order:

1. the repository's ``credentials`` (``open_backend(url, credentials={...})``), by name;
2. the environment, ``HAVEN_S3_<NAME>``;
3. the usual AWS variables, where one exists (in brackets below).

Settings: ``endpoint`` (``http(s)://host[:port][/path]``; [``AWS_ENDPOINT_URL_S3``,
``AWS_ENDPOINT_URL``]), ``region`` (default ``us-east-1``; [``AWS_REGION``,
``AWS_DEFAULT_REGION``]), ``access_key`` [``AWS_ACCESS_KEY_ID``], ``secret_key``
[``AWS_SECRET_ACCESS_KEY``], ``session_token`` (temporary credentials;
[``AWS_SESSION_TOKEN``]), ``ca_cert`` (a CA bundle; [``AWS_CA_BUNDLE``]), ``insecure``
(``1`` turns certificate checks off, labs only) and ``timeout`` (seconds per request,
default 60). A credentials name outside this list is refused: nothing is accepted that
is not acted on.

Error mapping: connection errors, timeouts, 5xx, 408, 429 and S3's ``RequestTimeout``
raise :class:`TransientBackendError` (the retrying wrapper retries those); 404 on an
object raises :class:`ObjectNotFound`; a refused signature, key or region raises
:class:`S3AuthError`; anything else :class:`BackendError`. Messages name the operation,
the key, the HTTP status and S3's error code, never the secret key, the session token or
a signature; ``describe()`` and ``repr`` neither.

``put`` is one S3 PUT, atomic in S3 (an object is visible whole or not at all). The body's
SHA-256 is signed (``x-amz-content-sha256``) and the server checks it, so a body damaged
in transit is refused, not stored. Objects above S3's single-PUT limit (5 GiB) are not
supported; the repository's packs are tens of MiB.

This module does not import :mod:`haven.observability` (the secret is kept out of every
message instead); the engine registers the secrets it reads for log redaction.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit
from xml.etree import ElementTree

import httpx

from haven.datamover.backends.base import (
    BackendError,
    ObjectInfo,
    TransientBackendError,
)
from haven.datamover.backends.http import HttpObjectReads
from haven.datamover.backends.keys import check_key
from haven.datamover.backends.sigv4 import (
    EMPTY_SHA256,
    Credentials,
    canonical_query,
    sign,
    uri_encode,
)
from haven.datamover.backends.streams import pieces
from haven.datamover.errors import InvalidArgument

_LIST_PAGE = 1000  # S3's maximum page
_TRANSIENT_STATUS = frozenset({408, 429})
_TRANSIENT_CODES = frozenset({"RequestTimeout", "SlowDown", "InternalError", "ServiceUnavailable"})
_AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AuthorizationHeaderMalformed",
        "RequestTimeTooSkewed",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
    }
)
_CODE = re.compile(r"^[A-Za-z0-9.]{1,64}$")
_REGION = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_DEFAULT_REGION = "us-east-1"

# setting name -> environment variables, first found wins
SETTINGS: dict[str, tuple[str, ...]] = {
    "endpoint": ("HAVEN_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    "region": ("HAVEN_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
    "access_key": ("HAVEN_S3_ACCESS_KEY", "AWS_ACCESS_KEY_ID"),
    "secret_key": ("HAVEN_S3_SECRET_KEY", "AWS_SECRET_ACCESS_KEY"),
    "session_token": ("HAVEN_S3_SESSION_TOKEN", "AWS_SESSION_TOKEN"),
    "ca_cert": ("HAVEN_S3_CA_CERT", "AWS_CA_BUNDLE"),
    "insecure": ("HAVEN_S3_INSECURE",),
    "timeout": ("HAVEN_S3_TIMEOUT",),
}


class S3AuthError(BackendError):
    """The endpoint refused the credentials, the signature, the region or the clock (not
    retried: retrying will not fix it)."""


@dataclass(frozen=True)
class S3Settings:
    """Where and as whom to talk S3. ``repr`` and :meth:`describe` show no secret."""

    endpoint: str
    credentials: Credentials
    region: str = _DEFAULT_REGION
    verify: bool | str = True
    timeout: float = 60.0
    # the lookup used, for error messages: setting name -> where it came from
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.endpoint)
        field_name = self.sources.get("endpoint", "endpoint")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidArgument(
                field_name, "the S3 endpoint must be http(s)://host[:port], e.g. https://s3.example"
            )
        if parts.username is not None or parts.password is not None:
            raise InvalidArgument(
                field_name,
                "the S3 endpoint must not carry credentials; give access_key/secret_key",
            )
        if parts.query or parts.fragment:
            raise InvalidArgument(field_name, "the S3 endpoint takes no query or fragment")
        if not _REGION.match(self.region):
            raise InvalidArgument(
                self.sources.get("region", "region"), f"not a region name: {self.region!r}"
            )
        if not self.credentials.access_key or not self.credentials.secret_key:
            raise InvalidArgument(
                self.sources.get("access_key", "access_key"), "S3 access key or secret key missing"
            )

    def describe(self) -> str:
        parts = urlsplit(self.endpoint)
        where = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        return f"endpoint {where}, region {self.region}"

    @classmethod
    def resolve(
        cls,
        credentials: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> S3Settings:
        """Settings from ``credentials`` (by setting name), else the environment (see the
        module docstring). Errors name the field to fix, never a value."""
        given = dict(credentials or {})
        unknown = sorted(set(given) - set(SETTINGS))
        if unknown:
            raise InvalidArgument(
                f"credentials.{unknown[0]}",
                f"not an S3 setting; use {', '.join(SETTINGS)}",
            )
        environ = os.environ if env is None else env
        values: dict[str, str] = {}
        sources: dict[str, str] = {}
        for name, variables in SETTINGS.items():
            if given.get(name):
                values[name], sources[name] = given[name], f"credentials.{name}"
                continue
            for var in variables:
                if environ.get(var):
                    values[name], sources[name] = environ[var], var
                    break
            else:
                sources[name] = f"{variables[0]} (or credentials.{name})"
        for required in ("endpoint", "access_key", "secret_key"):
            if required not in values:
                raise InvalidArgument(
                    sources[required].split(" ")[0],
                    f"S3 {required.replace('_', ' ')} missing: set {sources[required]}",
                )
        verify: bool | str = True
        if values.get("ca_cert"):
            verify = values["ca_cert"]
        elif values.get("insecure", "").lower() in {"1", "true", "yes"}:
            verify = False
        try:
            timeout = float(values.get("timeout") or 60)
        except ValueError:
            raise InvalidArgument(sources["timeout"], "must be a number of seconds") from None
        if timeout <= 0:
            raise InvalidArgument(sources["timeout"], "must be a positive number of seconds")
        return cls(
            endpoint=values["endpoint"],
            credentials=Credentials(
                values["access_key"], values["secret_key"], values.get("session_token") or None
            ),
            region=values.get("region") or _DEFAULT_REGION,
            verify=verify,
            timeout=timeout,
            sources=sources,
        )


def check_bucket(bucket: str) -> None:
    """S3's (DNS-compatible) bucket naming rules, checked before any request."""
    ok = bool(_BUCKET.match(bucket)) and ".." not in bucket
    try:
        ipaddress.ip_address(bucket)
        ok = False
    except ValueError:
        pass
    if not ok:
        raise InvalidArgument(
            "repo",
            f"not an S3 bucket name: {bucket!r} (3-63 characters of a-z, 0-9, '.' and '-', "
            "starting and ending with a letter or digit)",
        )


def _verify(settings: S3Settings) -> bool | ssl.SSLContext:
    """Certificate checking as httpx takes it: on, off, or against a CA bundle."""
    if not isinstance(settings.verify, str):
        return settings.verify
    try:
        return ssl.create_default_context(cafile=settings.verify)
    except OSError as exc:  # ssl.SSLError included
        raise InvalidArgument(
            settings.sources.get("ca_cert", "ca_cert"),
            f"cannot load the CA bundle {settings.verify}: {exc.strerror or exc}",
        ) from None


def _local(tag: str) -> str:
    """An element's name without its XML namespace."""
    return tag.rsplit("}", 1)[-1]


def _xml(resp: httpx.Response) -> ElementTree.Element | None:
    if not resp.content or len(resp.content) > (1 << 22):
        return None
    try:
        return ElementTree.fromstring(resp.content)
    except ElementTree.ParseError:
        return None


def _child_text(elem: ElementTree.Element, name: str) -> str | None:
    for child in elem:
        if _local(child.tag) == name:
            return child.text or ""
    return None


def error_code(resp: httpx.Response) -> str:
    """S3's ``<Error><Code>`` of a response, if it is a plain identifier, else ``""``.
    Only the code is ever shown: an error's ``<Message>`` may echo the request."""
    root = _xml(resp)
    code = (_child_text(root, "Code") if root is not None else None) or ""
    return code if _CODE.match(code) else ""


class S3Backend(HttpObjectReads):
    store = "s3"
    """A :class:`~haven.datamover.backends.base.Backend` on one S3 bucket (and prefix).

    Thread-safe: one pooled HTTP client is shared; every request is signed afresh."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        settings: S3Settings,
        *,
        create_bucket: bool = True,
        connect_timeout: float = 10.0,
        max_connections: int = 32,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        check_bucket(bucket)
        prefix = prefix.strip("/")
        if prefix:
            check_key(prefix)
        self.bucket = bucket
        self.prefix = prefix + "/" if prefix else ""
        self.settings = settings
        self.create_bucket = create_bucket
        endpoint = httpx.URL(settings.endpoint)
        self._origin = f"{endpoint.scheme}://{endpoint.netloc.decode('ascii')}"
        self._host = endpoint.netloc.decode("ascii")
        self._base = endpoint.path.rstrip("/")
        self._clock = clock or (lambda: datetime.now(UTC))
        self._client = httpx.Client(
            timeout=httpx.Timeout(settings.timeout, connect=min(connect_timeout, settings.timeout)),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            verify=_verify(settings),
            follow_redirects=False,
            transport=transport,
        )
        self._lock = threading.Lock()
        self._bucket_ready = False

    # ------------------------------------------------------------------ plumbing
    def _path(self, key: str | None) -> str:
        path = f"{self._base}/{uri_encode(self.bucket)}"
        if key is not None:
            path += "/" + uri_encode(self.prefix + key, keep_slash=True)
        return path

    def _request(
        self,
        method: str,
        what: str,
        *,
        key: str | None = None,
        query: list[tuple[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | memoryview | None = None,
        payload_hash: str = EMPTY_SHA256,
    ) -> httpx.Response:
        """One signed request. Transport failures, 5xx, 408 and 429 raise
        :class:`TransientBackendError`; every other response is returned."""
        path = self._path(key)
        qs = canonical_query(query or [])
        to_sign = {"Host": self._host, "X-Amz-Content-SHA256": payload_hash, **(headers or {})}
        signed = sign(
            method=method,
            canonical_uri=path,
            query=qs,
            headers=to_sign,
            payload_hash=payload_hash,
            credentials=self.settings.credentials,
            region=self.settings.region,
            service="s3",
            now=self._clock(),
        )
        send = {**to_sign, **signed.headers, "Accept-Encoding": "identity"}
        body: bytes | Iterator[bytes] | None = content if isinstance(content, bytes) else None
        if isinstance(content, memoryview):
            body = pieces(content)  # streamed in pieces, afresh for every request
        if content is not None:
            send["Content-Length"] = str(len(content))
        url = f"{self._origin}{path}" + (f"?{qs}" if qs else "")
        try:
            resp = self._client.request(method, url, headers=send, content=body)
        except httpx.HTTPError as exc:
            raise TransientBackendError(f"s3 {what}: {type(exc).__name__}") from None
        if resp.status_code >= 500 or resp.status_code in _TRANSIENT_STATUS:
            code = error_code(resp)
            raise TransientBackendError(
                f"s3 {what}: HTTP {resp.status_code}" + (f" {code}" if code else "")
            )
        return resp

    def _fail(self, what: str, resp: httpx.Response, code: str | None = None) -> BackendError:
        """The error for a response no operation expects (never a secret in it)."""
        code = error_code(resp) if code is None else code
        detail = f"HTTP {resp.status_code}" + (f" {code}" if code else "")
        where = f"s3 {what} at {self.settings.describe()}"
        source = self.settings.sources.get
        if code in _TRANSIENT_CODES:
            return TransientBackendError(f"s3 {what}: {detail}")
        if code == "AuthorizationHeaderMalformed":
            root = _xml(resp)
            expected = (_child_text(root, "Region") if root is not None else None) or ""
            hint = (
                f"the endpoint expects region {expected!r}"
                if _REGION.match(expected)
                else "the region is probably wrong"
            )
            return S3AuthError(f"{where}: {detail}: {hint} (set {source('region', 'region')})")
        if code == "RequestTimeTooSkewed":
            return S3AuthError(f"{where}: {detail}: this host's clock is off")
        if code in _AUTH_CODES or resp.status_code in (401, 403):
            return S3AuthError(
                f"{where}: {detail}: check the access key and secret key "
                f"({source('access_key', 'access_key')}, {source('secret_key', 'secret_key')})"
            )
        if resp.status_code == 400 and not code:
            return BackendError(
                f"{where}: HTTP 400 without detail (as HEAD answers are); a wrong region is "
                f"the usual cause ({source('region', 'region')})"
            )
        if resp.status_code in (301, 307) or code in ("PermanentRedirect", "TemporaryRedirect"):
            return BackendError(
                f"{where}: {detail}: the bucket is served by another endpoint or region"
            )
        return BackendError(f"{where}: unexpected {detail}")

    def _create_bucket(self) -> None:
        with self._lock:
            if self._bucket_ready:
                return
            what = f"create bucket {self.bucket}"
            body = b""
            if self.settings.region != _DEFAULT_REGION:
                body = (
                    '<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                    f"<LocationConstraint>{self.settings.region}</LocationConstraint>"
                    "</CreateBucketConfiguration>"
                ).encode()
            resp = self._request(
                "PUT",
                what,
                headers={"Content-Type": "application/xml"} if body else None,
                content=body,
                payload_hash=hashlib.sha256(body).hexdigest(),
            )
            # 409: created meanwhile (by a concurrent put, or already ours): the put retries
            if resp.status_code not in (200, 409):
                raise self._fail(what, resp)
            self._bucket_ready = True

    # ------------------------------------------------------------------ Backend
    def put(self, key: str, data: bytes | memoryview) -> None:
        check_key(key)
        body = data if isinstance(data, bytes) else memoryview(data).cast("B")
        headers = {"Content-Type": "application/octet-stream"}
        digest = hashlib.sha256(body).hexdigest()
        what = f"put {key}"
        for _attempt in range(2):
            resp = self._request(
                "PUT", what, key=key, headers=headers, content=body, payload_hash=digest
            )
            if resp.status_code == 200:
                self._bucket_ready = True
                return
            code = error_code(resp)
            if code == "NoSuchBucket" and self.create_bucket and _attempt == 0:
                self._bucket_ready = False
                self._create_bucket()
                continue
            if code in ("BadDigest", "XAmzContentSHA256Mismatch", "IncompleteBody"):
                raise TransientBackendError(f"s3 {what}: body damaged in transit ({code})")
            raise self._fail(what, resp, code)
        raise AssertionError("unreachable")

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        what = f"list {prefix or '(all)'}"
        token = ""
        while True:
            query = [("list-type", "2"), ("max-keys", str(_LIST_PAGE))]
            query.append(("prefix", self.prefix + prefix))
            if token:
                query.append(("continuation-token", token))
            resp = self._request("GET", what, query=query)
            if resp.status_code == 404 and error_code(resp) == "NoSuchBucket":
                return
            if resp.status_code != 200:
                raise self._fail(what, resp)
            root = _xml(resp)
            if root is None or _local(root.tag) != "ListBucketResult":
                raise TransientBackendError(f"s3 {what}: malformed listing")
            for elem in root:
                if _local(elem.tag) != "Contents":
                    continue
                name, size = _child_text(elem, "Key"), _child_text(elem, "Size")
                if name is None or size is None or not name.startswith(self.prefix):
                    raise BackendError(f"s3 {what}: malformed listing entry")
                yield ObjectInfo(name[len(self.prefix) :], int(size))
            if (_child_text(root, "IsTruncated") or "").lower() != "true":
                return
            token = _child_text(root, "NextContinuationToken") or ""
            if not token:
                raise BackendError(f"s3 {what}: truncated listing without a continuation token")

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix.rstrip('/')}".rstrip("/")
        return f"{where} ({self.settings.describe()})"

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"S3Backend({self.describe()!r})"


# ---------------------------------------------------------------------- factory
def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> ``(bucket, prefix)``; anything else in it is refused."""
    if not url.lower().startswith("s3://"):
        raise InvalidArgument("repo", f"not an s3 URL: {url!r}")
    rest = url[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if "@" in bucket:
        raise InvalidArgument(
            "repo",
            "s3 URLs carry no credentials: use s3://bucket/prefix and give the keys as "
            "the repository's credentials or HAVEN_S3_ACCESS_KEY/HAVEN_S3_SECRET_KEY",
        )
    if "?" in rest or "#" in rest or ":" in bucket:
        raise InvalidArgument(
            "repo",
            "s3 URLs are s3://bucket/prefix: give the endpoint (host, port) and options as "
            "settings (HAVEN_S3_ENDPOINT ...), not in the URL",
        )
    check_bucket(bucket)
    return bucket, prefix


def from_url(
    url: str,
    env: Mapping[str, str] | None = None,
    *,
    credentials: Mapping[str, str] | None = None,
) -> S3Backend:
    """``s3://bucket/prefix`` -> :class:`S3Backend`, settings from ``credentials`` and the
    environment (see the module docstring)."""
    bucket, prefix = parse_url(url)
    return S3Backend(bucket, prefix, S3Settings.resolve(credentials, env))

"""OpenStack Swift backend (plain HTTP through httpx; extra ``haven-dr[swift]``).

URL: ``swift://<container>[/<prefix>]``. Keys are stored as objects named
``<prefix>/<key>`` in ``<container>``; the container is created on first use.

Credentials never appear in the URL. They come from the repository's ``credentials``
(``open_backend(url, credentials={"auth_url": ..., "user": ..., "key": ...})``: the name
``x`` stands for ``HAVEN_SWIFT_X`` below and wins over it), from the environment, or from a
file of ``NAME=value`` lines (such as the one ``lab/swift/up.sh`` writes) named by
``HAVEN_SWIFT_ENV_FILE``; the environment wins over the file:

- tempauth / v1: ``HAVEN_SWIFT_AUTH_URL`` (``.../auth/v1.0``), ``HAVEN_SWIFT_USER``
  (``account:user``), ``HAVEN_SWIFT_KEY``; ``HAVEN_SWIFT_AUTH_VERSION=1`` (the default
  when the auth URL does not end in ``/v3``).
- Keystone v3 (password): ``HAVEN_SWIFT_AUTH_VERSION=3``, ``HAVEN_SWIFT_AUTH_URL``
  (``.../v3``), ``HAVEN_SWIFT_USER``, ``HAVEN_SWIFT_KEY`` (the password),
  ``HAVEN_SWIFT_PROJECT``, ``HAVEN_SWIFT_USER_DOMAIN`` and ``HAVEN_SWIFT_PROJECT_DOMAIN``
  (default ``Default``), optional ``HAVEN_SWIFT_REGION`` and ``HAVEN_SWIFT_INTERFACE``
  (default ``public``). The usual ``OS_AUTH_URL``, ``OS_USERNAME``, ``OS_PASSWORD``,
  ``OS_PROJECT_NAME``, ``OS_USER_DOMAIN_NAME``, ``OS_PROJECT_DOMAIN_NAME`` and
  ``OS_REGION_NAME`` are used when the ``HAVEN_SWIFT_*`` ones are absent.
- TLS and timeouts: ``HAVEN_SWIFT_CACERT`` (or ``OS_CACERT``) names a CA bundle;
  ``HAVEN_SWIFT_INSECURE=1`` turns certificate checks off (labs only);
  ``HAVEN_SWIFT_TIMEOUT`` (seconds, default 60) bounds each request.

Error mapping: connection errors, timeouts, 5xx, 408 and 429 raise
:class:`TransientBackendError` (the retrying wrapper retries those); 404 on an object
raises :class:`ObjectNotFound`; an expired token (401) is renewed once transparently;
anything else raises :class:`BackendError`. Messages name the operation, the key and the
HTTP status, never a token, password or key.

``put`` is a single Swift PUT with an ``ETag`` (MD5) that the object server verifies, and
Swift makes an object visible only once it is completely written: atomic, as the contract
requires. Objects larger than Swift's single-object limit (5 GiB by default) are not
supported; the repository's packs are tens of MiB.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from haven.datamover.backends.base import (
    BackendError,
    ObjectInfo,
    TransientBackendError,
)
from haven.datamover.backends.http import HttpObjectReads
from haven.datamover.backends.keys import check_key
from haven.datamover.backends.streams import pieces
from haven.datamover.errors import InvalidArgument
from haven.observability.logging import register_secret

_LIST_PAGE = 10_000
_TRANSIENT_STATUS = frozenset({408, 429})


class SwiftAuthError(BackendError):
    """Swift/Keystone rejected the credentials (not retried)."""


class SwiftAuth(Protocol):
    def authenticate(self, client: httpx.Client) -> tuple[str, str]:
        """Return ``(token, storage_url)``."""
        ...

    def describe(self) -> str: ...


def _redact_url(url: str) -> str:
    """The URL without user info, query or fragment (nothing secret can leak)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _transport_error(what: str, exc: httpx.HTTPError) -> TransientBackendError:
    return TransientBackendError(f"swift {what}: {type(exc).__name__}")


@dataclass(frozen=True)
class TempAuth:
    """Swift's v1 auth (tempauth, swauth): ``GET auth_url`` with X-Auth-User/Key."""

    auth_url: str
    user: str
    key: str

    def authenticate(self, client: httpx.Client) -> tuple[str, str]:
        try:
            resp = client.get(
                self.auth_url, headers={"X-Auth-User": self.user, "X-Auth-Key": self.key}
            )
        except httpx.HTTPError as exc:
            raise _transport_error("auth", exc) from None
        if resp.status_code >= 500 or resp.status_code in _TRANSIENT_STATUS:
            raise TransientBackendError(f"swift auth: HTTP {resp.status_code}")
        if resp.status_code not in (200, 204):
            raise SwiftAuthError(
                f"swift auth rejected at {self.describe()}: HTTP {resp.status_code}"
            )
        token = resp.headers.get("X-Auth-Token") or resp.headers.get("X-Storage-Token")
        url = resp.headers.get("X-Storage-Url")
        if not token or not url:
            raise SwiftAuthError(f"swift auth at {self.describe()}: no token or storage URL")
        return token, url

    def describe(self) -> str:
        return _redact_url(self.auth_url)

    def __repr__(self) -> str:  # never show the key
        return f"TempAuth({self.describe()!r})"


@dataclass(frozen=True)
class KeystoneV3:
    """Keystone v3 password auth, project-scoped; the Swift endpoint comes from the
    catalog (``object-store``, chosen by interface and, if given, region)."""

    auth_url: str
    username: str
    password: str
    project_name: str
    user_domain_name: str = "Default"
    project_domain_name: str = "Default"
    region: str | None = None
    interface: str = "public"

    def authenticate(self, client: httpx.Client) -> tuple[str, str]:
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": self.username,
                            "domain": {"name": self.user_domain_name},
                            "password": self.password,
                        }
                    },
                },
                "scope": {
                    "project": {
                        "name": self.project_name,
                        "domain": {"name": self.project_domain_name},
                    }
                },
            }
        }
        url = self.auth_url.rstrip("/")
        if not url.endswith("/v3"):
            url += "/v3"
        try:
            resp = client.post(url + "/auth/tokens", json=body)
        except httpx.HTTPError as exc:
            raise _transport_error("keystone auth", exc) from None
        if resp.status_code >= 500 or resp.status_code in _TRANSIENT_STATUS:
            raise TransientBackendError(f"keystone auth: HTTP {resp.status_code}")
        if resp.status_code != 201:
            raise SwiftAuthError(
                f"keystone rejected the credentials at {self.describe()}: HTTP {resp.status_code}"
            )
        token = resp.headers.get("X-Subject-Token")
        if not token:
            raise SwiftAuthError(f"keystone at {self.describe()}: no X-Subject-Token")
        try:
            catalog = resp.json()["token"]["catalog"]
        except (ValueError, KeyError, TypeError):
            raise SwiftAuthError(f"keystone at {self.describe()}: no service catalog") from None
        for service in catalog:
            if service.get("type") != "object-store":
                continue
            for ep in service.get("endpoints", []):
                if ep.get("interface") != self.interface:
                    continue
                if self.region and self.region not in (ep.get("region"), ep.get("region_id")):
                    continue
                return token, str(ep["url"])
        raise SwiftAuthError(
            f"keystone at {self.describe()}: no object-store endpoint "
            f"(interface {self.interface}, region {self.region or 'any'})"
        )

    def describe(self) -> str:
        return _redact_url(self.auth_url)

    def __repr__(self) -> str:  # never show the password
        return f"KeystoneV3({self.describe()!r})"


class SwiftBackend(HttpObjectReads):
    store = "swift"
    """A :class:`~haven.datamover.backends.base.Backend` on one Swift container.

    Thread-safe: one pooled HTTP client is shared; the token is renewed under a lock.
    """

    def __init__(
        self,
        container: str,
        prefix: str,
        auth: SwiftAuth,
        *,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        max_connections: int = 32,
        verify: bool | str = True,
        create_container: bool = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not container or "/" in container:
            raise InvalidArgument("repo", "swift URL needs a container: swift://container/prefix")
        prefix = prefix.strip("/")
        if prefix:
            check_key(prefix)
        self.container = container
        self.prefix = prefix + "/" if prefix else ""
        self.auth = auth
        self.create_container = create_container
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            verify=verify,
            follow_redirects=False,
            transport=transport,
        )
        self._lock = threading.Lock()
        self._token: str | None = None
        self._storage_url: str | None = None
        self._container_ready = False

    # ------------------------------------------------------------------ plumbing
    def _credentials(self, stale_token: str | None = None) -> tuple[str, str]:
        with self._lock:
            if self._token is None or self._token == stale_token:
                self._token, self._storage_url = self.auth.authenticate(self._client)
                register_secret(self._token)
            assert self._storage_url is not None
            return self._token, self._storage_url

    def _container_url(self, storage_url: str) -> str:
        return f"{storage_url.rstrip('/')}/{quote(self.container, safe='')}"

    def _object_url(self, storage_url: str, key: str) -> str:
        return f"{self._container_url(storage_url)}/{quote(self.prefix + key, safe='/')}"

    def _request(
        self,
        method: str,
        what: str,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str | int] | None = None,
        content: bytes | memoryview | None = None,
    ) -> httpx.Response:
        """One request with the token; renews the token once on 401."""
        stale: str | None = None
        for _attempt in range(2):
            token, storage_url = self._credentials(stale)
            url = (
                self._object_url(storage_url, key)
                if key is not None
                else self._container_url(storage_url)
            )
            try:
                resp = self._client.request(
                    method,
                    url,
                    headers={"X-Auth-Token": token, **(headers or {})},
                    params=params,
                    # a view is streamed in pieces, afresh on every attempt
                    content=pieces(content) if isinstance(content, memoryview) else content,
                )
            except httpx.HTTPError as exc:
                raise _transport_error(what, exc) from None
            if resp.status_code == 401 and stale is None:
                stale = token
                continue
            if resp.status_code >= 500 or resp.status_code in _TRANSIENT_STATUS:
                raise TransientBackendError(f"swift {what}: HTTP {resp.status_code}")
            if resp.status_code == 401:
                raise SwiftAuthError(f"swift {what}: HTTP 401 after renewing the token")
            return resp
        raise AssertionError("unreachable")

    def _fail(self, what: str, resp: httpx.Response) -> BackendError:
        return BackendError(f"swift {what}: unexpected HTTP {resp.status_code}")

    def _ensure_container(self) -> None:
        if self._container_ready:
            return
        resp = self._request("PUT", f"create container {self.container}")
        if resp.status_code not in (201, 202, 204):
            raise self._fail(f"create container {self.container}", resp)
        self._container_ready = True

    # ------------------------------------------------------------------ Backend
    def put(self, key: str, data: bytes | memoryview) -> None:
        check_key(key)
        body = memoryview(data).cast("B")
        headers = {
            "ETag": hashlib.md5(body, usedforsecurity=False).hexdigest(),
            "Content-Type": "application/octet-stream",
            # with an explicit length, httpx sends the iterable body as is (not chunked)
            "Content-Length": str(len(body)),
        }
        what = f"put {key}"
        for _attempt in range(2):
            resp = self._request("PUT", what, key=key, headers=headers, content=body)
            if resp.status_code == 201:
                self._container_ready = True
                return
            if resp.status_code == 404 and self.create_container:
                self._container_ready = False
                self._ensure_container()
                continue
            if resp.status_code == 422:  # ETag mismatch: corrupted in transit; retry
                raise TransientBackendError(f"swift {what}: checksum mismatch in transit")
            break
        raise self._fail(what, resp)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        full = self.prefix + prefix
        marker = ""
        while True:
            params: dict[str, str | int] = {"format": "json", "limit": _LIST_PAGE}
            if full:
                params["prefix"] = full
            if marker:
                params["marker"] = marker
            resp = self._request("GET", f"list {prefix or '(all)'}", params=params)
            if resp.status_code == 404:
                return
            if resp.status_code == 204:
                return
            if resp.status_code != 200:
                raise self._fail(f"list {prefix}", resp)
            try:
                page = json.loads(resp.content)
            except ValueError:
                raise TransientBackendError(f"swift list {prefix}: malformed listing") from None
            if not page:
                return
            for item in page:
                name = str(item["name"])
                yield ObjectInfo(name[len(self.prefix) :], int(item["bytes"]))
            if len(page) < _LIST_PAGE:
                return
            marker = str(page[-1]["name"])

    def describe(self) -> str:
        where = f"swift://{self.container}/{self.prefix.rstrip('/')}".rstrip("/")
        return f"{where} (auth {self.auth.describe()})"

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"SwiftBackend({self.describe()!r})"


# ---------------------------------------------------------------------- factory
def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """``NAME=value`` lines (``#`` comments, optional ``export``, optional quotes)."""
    out: dict[str, str] = {}
    for raw in Path(path).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[name.strip()] = value
    return out


def settings_from_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment (or ``env``) over the file named by ``HAVEN_SWIFT_ENV_FILE``."""
    source: dict[str, str] = {}
    base = dict(os.environ if env is None else env)
    env_file = base.get("HAVEN_SWIFT_ENV_FILE")
    if env_file:
        try:
            source.update(read_env_file(env_file))
        except OSError as exc:
            raise InvalidArgument(
                "HAVEN_SWIFT_ENV_FILE", f"cannot read {env_file}: {exc.strerror}"
            ) from None
    source.update(base)
    return source


def auth_from_env(env: Mapping[str, str] | None = None) -> SwiftAuth:
    """Build the auth method from ``HAVEN_SWIFT_*`` / ``OS_*`` variables (see module doc)."""
    source = settings_from_env(env)

    def get(*names: str, default: str | None = None) -> str | None:
        for n in names:
            if source.get(n):
                return source[n]
        return default

    auth_url = get("HAVEN_SWIFT_AUTH_URL", "OS_AUTH_URL")
    if not auth_url:
        raise InvalidArgument(
            "HAVEN_SWIFT_AUTH_URL",
            "swift credentials missing: set HAVEN_SWIFT_AUTH_URL/_USER/_KEY "
            "(or HAVEN_SWIFT_ENV_FILE, or the OS_* variables)",
        )
    version = get("HAVEN_SWIFT_AUTH_VERSION", "OS_IDENTITY_API_VERSION")
    if version is None:
        version = "3" if auth_url.rstrip("/").endswith("/v3") else "1"
    user = get("HAVEN_SWIFT_USER", "OS_USERNAME")
    key = get("HAVEN_SWIFT_KEY", "OS_PASSWORD")
    if not user or not key:
        raise InvalidArgument("HAVEN_SWIFT_USER", "swift user or key/password missing")
    register_secret(key)
    if version.startswith("1"):
        return TempAuth(auth_url, user, key)
    if version.startswith("3"):
        project = get("HAVEN_SWIFT_PROJECT", "OS_PROJECT_NAME")
        if not project:
            raise InvalidArgument("HAVEN_SWIFT_PROJECT", "keystone v3 needs a project name")
        return KeystoneV3(
            auth_url,
            user,
            key,
            project,
            user_domain_name=get(
                "HAVEN_SWIFT_USER_DOMAIN", "OS_USER_DOMAIN_NAME", default="Default"
            )
            or "Default",
            project_domain_name=get(
                "HAVEN_SWIFT_PROJECT_DOMAIN", "OS_PROJECT_DOMAIN_NAME", default="Default"
            )
            or "Default",
            region=get("HAVEN_SWIFT_REGION", "OS_REGION_NAME"),
            interface=get("HAVEN_SWIFT_INTERFACE", "OS_INTERFACE", default="public") or "public",
        )
    raise InvalidArgument("HAVEN_SWIFT_AUTH_VERSION", f"unsupported auth version {version!r}")


# names a repository's ``credentials`` may give; ``name`` stands for HAVEN_SWIFT_<NAME>
SETTINGS = (
    "auth_url",
    "auth_version",
    "user",
    "key",
    "project",
    "user_domain",
    "project_domain",
    "region",
    "interface",
    "cacert",
    "insecure",
    "timeout",
)


def from_url(
    url: str,
    env: Mapping[str, str] | None = None,
    *,
    credentials: Mapping[str, str] | None = None,
) -> SwiftBackend:
    """``swift://container/prefix`` -> :class:`SwiftBackend`. ``credentials`` (a
    repository's, by name: ``auth_url``, ``user``, ``key`` ... see ``SETTINGS``) override
    the matching ``HAVEN_SWIFT_<NAME>`` of the environment; any other name is refused."""
    if not url.lower().startswith("swift://"):
        raise InvalidArgument("repo", f"not a swift URL: {url!r}")
    rest = url[len("swift://") :]
    if "@" in rest.split("/", 1)[0] or "?" in rest or "#" in rest:
        raise InvalidArgument(
            "repo", "swift URLs carry no credentials or options: swift://container/prefix"
        )
    container, _, prefix = rest.partition("/")
    settings = settings_from_env(env)
    for name, value in sorted((credentials or {}).items()):
        if name not in SETTINGS:
            raise InvalidArgument(
                f"credentials.{name}", f"not a Swift setting; use {', '.join(SETTINGS)}"
            )
        settings[f"HAVEN_SWIFT_{name.upper()}"] = value
    verify: bool | str = True
    if settings.get("HAVEN_SWIFT_CACERT") or settings.get("OS_CACERT"):
        verify = settings.get("HAVEN_SWIFT_CACERT") or settings["OS_CACERT"]
    elif settings.get("HAVEN_SWIFT_INSECURE", "").lower() in {"1", "true", "yes"}:
        verify = False
    try:
        timeout = float(settings.get("HAVEN_SWIFT_TIMEOUT") or 60)
    except ValueError:
        raise InvalidArgument("HAVEN_SWIFT_TIMEOUT", "must be a number of seconds") from None
    return SwiftBackend(container, prefix, auth_from_env(settings), timeout=timeout, verify=verify)

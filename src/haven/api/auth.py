"""Keystone authentication: a caller's ``X-Auth-Token`` validated by Haven's own service
user (keystoneauth1), the answer cached for at most min(the token's expiry, the TTL).

Contracts:
- A missing, malformed, expired or revoked token is :class:`Unauthenticated` (401 with
  ``WWW-Authenticate: Keystone uri="<auth_url>"``); Keystone not answering (refused,
  timed out, 5xx) is :class:`IdentityUnavailable` (503, retryable): the API never lets a
  caller in because Keystone could not be asked.
- The cache is keyed by a hash of the token (the token itself is kept nowhere) and an
  entry lives at most ``ttl`` seconds and never past the token's ``expires_at``; TTL 0
  asks Keystone on every request, so a revocation is seen at once. With TTL > 0 a
  revoked token keeps working until its entry expires: that is the TTL's price.
- Tokens and the service password never reach a log line or an error message.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from haven.api.settings import KeystoneSettings
from haven.domain.errors import ExitCode, ExternalError, HavenError

MAX_TOKEN_CHARS = 8192
MAX_CACHED = 10_000
ADMIN_ROLE = "admin"


class Unauthenticated(HavenError):
    exit_code = ExitCode.SECURITY
    http_status = 401


class IdentityUnavailable(ExternalError):
    retryable = True
    http_status = 503


@dataclass(frozen=True, slots=True)
class Caller:
    user_id: str
    project_id: str
    roles: frozenset[str]
    is_admin: bool
    expires_at: float  # epoch seconds

    def credentials(self) -> dict[str, Any]:
        """The creds oslo.policy checks."""
        return {
            "user_id": self.user_id,
            "project_id": self.project_id,
            "roles": sorted(self.roles),
            "is_admin": self.is_admin,
        }


class KeystoneAuthenticator:
    def __init__(self, settings: KeystoneSettings, ttl: int) -> None:
        self.settings = settings
        self.ttl = ttl
        auth = v3.Password(
            auth_url=settings.auth_url,
            username=settings.username,
            password=settings.password,
            project_name=settings.project,
            user_domain_name=settings.user_domain,
            project_domain_name=settings.project_domain,
        )
        self._session = ks_session.Session(auth=auth, timeout=settings.timeout)
        self._cache: dict[str, tuple[Caller, float]] = {}  # token hash -> (caller, until)
        self._lock = threading.Lock()

    @property
    def challenge(self) -> str:
        return f'Keystone uri="{self.settings.auth_url}"'

    def authenticate(self, token: str | None) -> Caller:
        if not token:
            raise Unauthenticated("no X-Auth-Token: authenticate with Keystone and send the token")
        if len(token) > MAX_TOKEN_CHARS or not token.isascii() or not token.isprintable():
            raise Unauthenticated("the X-Auth-Token is not a token")
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.time()
        if self.ttl > 0:
            with self._lock:
                hit = self._cache.get(key)
            if hit is not None and now < hit[1]:
                return hit[0]
        caller = self._validate(token)
        if self.ttl > 0:
            with self._lock:
                if len(self._cache) >= MAX_CACHED:  # bounded: start over rather than grow
                    self._cache.clear()
                self._cache[key] = (caller, min(now + self.ttl, caller.expires_at))
        return caller

    def _validate(self, token: str) -> Caller:
        try:
            resp = self._session.get(
                f"{self.settings.auth_url}/auth/tokens",
                headers={"X-Subject-Token": token},
                authenticated=True,
                raise_exc=False,
            )
        except (ks_exc.ConnectFailure, ks_exc.ConnectTimeout, ks_exc.DiscoveryFailure) as exc:
            raise IdentityUnavailable(
                f"Keystone at {self.settings.auth_url} is unreachable ({type(exc).__name__}); "
                "retry later"
            ) from None
        except ks_exc.Unauthorized:
            raise IdentityUnavailable(
                "Haven's service user cannot authenticate with Keystone (check the API's "
                "username, project and password file)"
            ) from None
        except ks_exc.ClientException as exc:
            raise IdentityUnavailable(
                f"Keystone failed ({type(exc).__name__}); retry later"
            ) from None
        if resp.status_code in (401, 404):
            raise Unauthenticated("the token is invalid, expired or revoked")
        if resp.status_code != 200:
            raise IdentityUnavailable(f"Keystone answered {resp.status_code}; retry later")
        return _caller(resp.json().get("token", {}))


def _caller(token: dict[str, Any]) -> Caller:
    project = token.get("project") or {}
    if not project.get("id"):
        raise Unauthenticated(
            "the token is not scoped to a project; ask Keystone for a project token"
        )
    roles = frozenset(str(r.get("name", "")) for r in token.get("roles", []))
    expires = str(token.get("expires_at", ""))
    try:
        expires_at = datetime.fromisoformat(expires.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        raise Unauthenticated("the token carries no expiry") from None
    return Caller(
        user_id=str(token.get("user", {}).get("id", "")),
        project_id=str(project["id"]),
        roles=roles,
        is_admin=ADMIN_ROLE in roles,
        expires_at=expires_at.timestamp(),
    )

"""The API's settings: where Keystone is, Haven's service user, the token cache, the
policy file, how long an Idempotency-Key lives. Read from the environment
(``HAVEN_API_*``, the way the catalog's ``HAVEN_CATALOG_URL`` is); ``haven api`` options
override them.

The service user's password is never a setting value: ``HAVEN_API_PASSWORD_FILE`` names a
file it is read from (``observability.secretfiles``: bounded, registered as a secret so
no log line shows it). A missing or unreadable file is a ValidationError naming the
setting, raised when the API starts, not at the first request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from haven.domain.errors import ValidationError
from haven.observability.secretfiles import SecretFileError, read_secret_file

DEFAULT_PORT = 18799
DEFAULT_CACHE_TTL = 300  # seconds; 0: every request asks Keystone
DEFAULT_IDEMPOTENCY_TTL = 24 * 3600  # seconds an Idempotency-Key answers with its operation
MAX_BODY_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32


@dataclass(frozen=True)
class KeystoneSettings:
    auth_url: str  # e.g. http://keystone:5000/v3
    username: str = "haven"
    project: str = "service"
    user_domain: str = "Default"
    project_domain: str = "Default"
    password: str = field(default="", repr=False)
    timeout: float = 10.0


@dataclass(frozen=True)
class ApiSettings:
    keystone: KeystoneSettings
    token_cache_ttl: int = DEFAULT_CACHE_TTL
    policy_file: str | None = None
    idempotency_ttl: int = DEFAULT_IDEMPOTENCY_TTL
    max_body_bytes: int = MAX_BODY_BYTES
    max_json_depth: int = MAX_JSON_DEPTH


def _int(name: str, value: str, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise ValidationError(name, f"{value!r} is not a whole number >= {minimum}")
    return number


def password_from(path: str, setting: str = "HAVEN_API_PASSWORD_FILE") -> str:
    try:
        return read_secret_file(path).strip()
    except SecretFileError as exc:
        raise ValidationError(setting, f"the file {path!r} {exc.reason}") from None


def from_environment(**overrides: str | int | None) -> ApiSettings:
    """Settings from ``HAVEN_API_*``; ``overrides`` (the command line's options, by the
    variable's lower-case suffix: auth_url, username, project, password_file,
    token_cache_ttl, policy_file, idempotency_ttl) win where they are not None."""
    env = {
        k[len("HAVEN_API_") :].lower(): v
        for k, v in os.environ.items()
        if k.startswith("HAVEN_API_")
    }
    env.update({k: str(v) for k, v in overrides.items() if v is not None})
    auth_url = env.get("auth_url", "")
    if not auth_url.startswith(("http://", "https://")):
        raise ValidationError(
            "HAVEN_API_AUTH_URL",
            "set Keystone's URL (e.g. http://keystone:5000/v3) with HAVEN_API_AUTH_URL or "
            "--auth-url",
        )
    if not env.get("password_file"):
        raise ValidationError(
            "HAVEN_API_PASSWORD_FILE",
            "name the file holding the service user's password (HAVEN_API_PASSWORD_FILE "
            "or --password-file)",
        )
    keystone = KeystoneSettings(
        auth_url=auth_url.rstrip("/"),
        username=env.get("username", "haven"),
        project=env.get("project", "service"),
        user_domain=env.get("user_domain", "Default"),
        project_domain=env.get("project_domain", "Default"),
        password=password_from(env["password_file"]),
        timeout=float(_int("HAVEN_API_KEYSTONE_TIMEOUT", env.get("keystone_timeout", "10"), 1)),
    )
    return ApiSettings(
        keystone=keystone,
        token_cache_ttl=_int(
            "HAVEN_API_TOKEN_CACHE_TTL", env.get("token_cache_ttl", str(DEFAULT_CACHE_TTL)), 0
        ),
        policy_file=env.get("policy_file") or None,
        idempotency_ttl=_int(
            "HAVEN_API_IDEMPOTENCY_TTL",
            env.get("idempotency_ttl", str(DEFAULT_IDEMPOTENCY_TTL)),
            1,
        ),
    )

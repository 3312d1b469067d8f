"""``haven api``: serve the REST API (uvicorn) on ``--host``:``--port``.

Keystone and policy settings come from ``HAVEN_API_*`` (see ``haven/api/settings.py``);
each option given here overrides its variable. The app is loaded by uvicorn by name
(``haven.api.app:from_environment``): the CLI and the API are sibling interfaces and do
not import each other.
"""

from __future__ import annotations

import os

import typer

DEFAULT_PORT = 18799  # haven.api.settings.DEFAULT_PORT, the lab's disaster-recovery endpoint


def api(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(DEFAULT_PORT, "--port", min=1, max=65535, help="TCP port."),
    auth_url: str | None = typer.Option(
        None, "--auth-url", help="Keystone, e.g. http://keystone:5000/v3 [HAVEN_API_AUTH_URL]"
    ),
    username: str | None = typer.Option(
        None, "--username", help="Haven's service user [HAVEN_API_USERNAME, haven]"
    ),
    project: str | None = typer.Option(
        None, "--project", help="Its project [HAVEN_API_PROJECT, service]"
    ),
    password_file: str | None = typer.Option(
        None, "--password-file", help="File holding its password [HAVEN_API_PASSWORD_FILE]"
    ),
    token_cache_ttl: int | None = typer.Option(
        None,
        "--token-cache-ttl",
        min=0,
        help="Seconds a token is trusted, 0: no cache [HAVEN_API_TOKEN_CACHE_TTL, 300]",
    ),
    policy_file: str | None = typer.Option(
        None, "--policy-file", help="oslo.policy overrides (YAML) [HAVEN_API_POLICY_FILE]"
    ),
    idempotency_ttl: int | None = typer.Option(
        None,
        "--idempotency-ttl",
        min=1,
        help="Seconds an Idempotency-Key replays its operation [HAVEN_API_IDEMPOTENCY_TTL, 86400]",
    ),
) -> None:
    """Serve the REST API (Keystone authentication, oslo.policy, /v1)."""
    import uvicorn

    given = {
        "AUTH_URL": auth_url,
        "USERNAME": username,
        "PROJECT": project,
        "PASSWORD_FILE": password_file,
        "POLICY_FILE": policy_file,
        "TOKEN_CACHE_TTL": None if token_cache_ttl is None else str(token_cache_ttl),
        "IDEMPOTENCY_TTL": None if idempotency_ttl is None else str(idempotency_ttl),
    }
    for name, value in given.items():
        if value is not None:
            os.environ[f"HAVEN_API_{name}"] = value
    uvicorn.run(
        "haven.api.app:from_environment",
        factory=True,
        host=host,
        port=port,
        log_config=None,
        proxy_headers=False,
        server_header=False,
    )


def register(app: typer.Typer) -> None:
    app.command("api")(api)
